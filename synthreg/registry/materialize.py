"""Rebuild a version's tables from what its directory records: the frozen spec, and for
derived versions the disable steps (``derivation.json``); tables made by an LLM are replayed
strictly from the version's ``llm_calls.jsonl``. The DVC stage command (``registry
materialize``) and ``registry verify --rebuild`` both use it."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from synthreg.digest import combine_digests
from synthreg.errors import ConflictError
from synthreg.generators.engine import generate
from synthreg.generators.spec import Spec
from synthreg.generators.spec_io import load_spec
from synthreg.registry.checkout import read_manifest

__all__ = ["materialize_in_place", "materialize_into"]


def materialize_into(vdir: Path, out_dir: Path) -> str:
    """Rebuild ``vdir``'s tables under ``out_dir/tables``; return the content digest.

    A derived version (``derivation.json``) is the regenerated base with every recorded
    disable step replayed in order.
    """
    spec = load_spec(vdir / "spec.yaml")
    steps_file = vdir / "derivation.json"
    if not steps_file.is_file():
        return _generate(vdir, spec, out_dir)
    from synthreg.registry.disable import plan_removal, write_without

    steps = json.loads(steps_file.read_text())
    work = Path(tempfile.mkdtemp(prefix="synthreg-derive-", dir=out_dir.parent))
    try:
        current = work / "step-0"
        digest = _generate(vdir, spec, current)
        for i, step in enumerate(steps, start=1):
            removal = plan_removal(current, spec, step["table"], ids=step.get("ids"), where=step.get("where"))
            target = out_dir if i == len(steps) else work / f"step-{i}"
            digest = write_without(current, target, spec, removal).content_digest
            current = target
        return digest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _generate(vdir: Path, spec: Spec, out_dir: Path) -> str:
    """The engine's tables, then the LLM tables and columns replayed from the version's calls;
    the content digest."""
    gen = generate(spec, out_dir)
    if not spec.uses_llm():
        return gen.content_digest
    from synthreg.registry.llm_tables import replay_llm_data

    llm = replay_llm_data(vdir, spec, out_dir, gen.tables)
    return combine_digests({n: t.digest for n, t in {**gen.tables, **llm.tables}.items()})


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
