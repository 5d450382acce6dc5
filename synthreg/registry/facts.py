"""Facts about a run and its files: hashes, peak memory, library versions."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from synthreg.generators.engine import FileHash

__all__ = ["bytes_sha256", "file_facts", "known_md5", "library_versions", "peak_rss_mb"]


def peak_rss_mb() -> float:
    """Peak memory of this process and of the engine's worker processes, in MB.

    The figure is this process's own peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``) plus the
    sum over the generation pool's workers of each worker's own peak RSS, as each worker
    reports it with its results (``synthreg.generators.engine.worker_peak_rss_mb``: the
    largest such sum among the ``generate`` calls made in this process). It is an upper bound
    on the memory the process tree held at once: the peaks need not coincide, and RSS counts
    the pages a forked worker shares with the parent in both. Other children (git, dvc) are
    not counted. Without a pool (one worker) it is the process's own peak.
    """
    from synthreg.generators.engine import worker_peak_rss_mb

    try:
        import resource
    except ImportError:
        return worker_peak_rss_mb()
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    own_mb = own / 2**20 if sys.platform == "darwin" else own / 1024.0  # bytes on macOS, KB on Linux
    return own_mb + worker_peak_rss_mb()


def file_facts(
    version_dir: Path, rows_by_file: dict[Path, int], known: Mapping[Path, FileHash] | None = None
) -> list[dict[str, Any]]:
    """sha256, rows and bytes of every data file, paths relative to the version dir.

    ``known``: hashes the engine's workers took while writing (``TableResult.hashes``); one is
    used only while its file still has the size and modification time it had then, else the
    file is read and hashed here.
    """
    facts = []
    for path in sorted(rows_by_file):
        hashed = (known or {}).get(path)
        facts.append(
            {
                "path": path.relative_to(version_dir).as_posix(),
                "sha256": hashed.sha256
                if hashed is not None and hashed.matches(path)
                else bytes_sha256(path),
                "rows": rows_by_file[path],
                "bytes": path.stat().st_size,
            }
        )
    return facts


def bytes_sha256(path: Path) -> str:
    """sha256 (hex) of a file's bytes, read 1 MB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def known_md5(version_dir: Path, known: Mapping[Path, FileHash]) -> dict[str, tuple[str, int, int]]:
    """The workers' md5 of each file still as written, by path relative to ``version_dir``:
    (md5, size, mtime_ns), for DVC's hash cache when the version is tracked (``dvc.track_stage``)."""
    return {
        path.relative_to(version_dir).as_posix(): (h.md5, h.size, h.mtime_ns)
        for path, h in known.items()
        if h.matches(path)
    }


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for lib in ("numpy", "pyarrow", "pydantic", "sqlmodel", "dvc", "mlflow", "great_expectations"):
        try:
            out[lib] = version(lib.replace("_", "-"))
        except PackageNotFoundError:
            out[lib] = "not installed"
    return out
