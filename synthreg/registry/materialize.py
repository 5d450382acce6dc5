"""Rebuild a version's tables from what its directory records: the frozen spec, and for
derived versions the rows removed (``removed/<table>.parquet``). The DVC stage command
(``registry materialize``) and ``registry verify --rebuild`` both use it."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from synthreg.errors import ConflictError
from synthreg.generators.engine import generate
from synthreg.generators.spec import load_spec
from synthreg.registry.checkout import read_manifest

__all__ = ["materialize_in_place", "materialize_into"]


def materialize_into(vdir: Path, out_dir: Path) -> str:
    """Rebuild ``vdir``'s tables under ``out_dir/tables``; return the content digest."""
    spec = load_spec(vdir / "spec.yaml")
    removed = vdir / "removed"
    if not removed.is_dir():
        return generate(spec, out_dir).content_digest
    import pyarrow.parquet as pq

    from synthreg.registry.disable import write_without

    base = Path(tempfile.mkdtemp(prefix="synthreg-base-", dir=out_dir.parent))
    try:
        generate(spec, base)
        removal = {p.stem: pq.read_table(p).column(0) for p in sorted(removed.glob("*.parquet"))}
        return write_without(base, out_dir, spec, removal).content_digest
    finally:
        shutil.rmtree(base, ignore_errors=True)


def materialize_in_place(vdir: Path) -> str:
    """Regenerate ``vdir/tables``; refuse (and keep the old files) if the digest differs."""
    vdir = vdir.resolve()
    expected = read_manifest(vdir)["content_digest"]
    work = Path(tempfile.mkdtemp(prefix="synthreg-materialize-", dir=vdir.parent))
    try:
        digest = materialize_into(vdir, work)
        if digest != expected:
            raise ConflictError(
                f"rebuilt {vdir} has digest {digest}, not {expected}: the engine version "
                "differs; fetch the files with 'registry checkout' (dvc pull) instead"
            )
        shutil.rmtree(vdir / "tables", ignore_errors=True)
        (work / "tables").rename(vdir / "tables")
        return digest
    finally:
        shutil.rmtree(work, ignore_errors=True)
