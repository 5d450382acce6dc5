"""Facts about a run and its files: hashes, peak memory, library versions."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

__all__ = ["file_facts", "library_versions", "peak_rss_mb"]


def peak_rss_mb() -> float:
    """Peak resident memory of this process, in MB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def file_facts(version_dir: Path, rows_by_file: dict[Path, int]) -> list[dict[str, Any]]:
    """sha256, rows and bytes of every data file, paths relative to the version dir."""
    facts = []
    for path in sorted(rows_by_file):
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        facts.append(
            {
                "path": path.relative_to(version_dir).as_posix(),
                "sha256": digest.hexdigest(),
                "rows": rows_by_file[path],
                "bytes": path.stat().st_size,
            }
        )
    return facts


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for lib in ("numpy", "pyarrow", "pydantic", "sqlmodel", "dvc", "mlflow", "great_expectations"):
        try:
            out[lib] = version(lib.replace("_", "-"))
        except PackageNotFoundError:
            out[lib] = "not installed"
    return out
