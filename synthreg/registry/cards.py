"""DataCards regenerated from what the registry holds: status, aliases, consumers, diffs.

A card is written at publish time and rewritten whenever the facts it shows change
(review, alias, use, a diff against the parent), inside the same write as that change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

import synthreg
from synthreg.datacards.card import CARD_FILES, CardFacts, build_card, write_card
from synthreg.generators.spec_io import load_spec
from synthreg.integrations import git
from synthreg.registry.audit import head_hash
from synthreg.registry.checkout import ensure_local, read_manifest
from synthreg.registry.query import aliases_of
from synthreg.registry.store import Dataset, DiffRecord, Usage, Version
from synthreg.registry.workspace import Workspace

__all__ = ["card_for", "dir_facts", "evaluation_card_facts", "llm_card_facts", "plot_names", "refresh_card"]

#: The card's plots: SVG since the card drew them without matplotlib, PNG in older versions.
PLOT_SUFFIXES = (".svg", ".png")


def plot_names(plots_dir: Path) -> list[str]:
    """The file names of the card's plots in ``plots_dir`` (none when it does not exist), sorted."""
    if not plots_dir.is_dir():
        return []
    return sorted(p.name for p in plots_dir.iterdir() if p.suffix in PLOT_SUFFIXES and p.is_file())


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def dir_facts(vdir: Path) -> dict[str, Any]:
    """What a card shows from the version directory itself: quality, plots, PII scan, LLM calls."""
    return {
        "quality": _json(vdir / "quality.json"),
        "plots": [f"plots/{name}" for name in plot_names(vdir / "plots")],
        "pii": _json(vdir / "pii.json"),
        "llm": llm_card_facts(vdir),
        "evaluation": evaluation_card_facts(vdir),
    }


def evaluation_card_facts(vdir: Path) -> dict[str, Any] | None:
    """What a card shows of ``registry evaluate``'s evaluation.json (None before any evaluate)."""
    data = _json(vdir / "evaluation.json")
    if not isinstance(data, dict) or "summary" not in data:
        return None
    util = data.get("utility") or {}
    return {
        "summary": data["summary"],
        "against": {t: v.get("rows") for t, v in (data.get("inputs") or {}).get("against", {}).items()},
        "split": (data.get("inputs") or {}).get("split"),
        "target": util.get("target"),
        "mlflow_runs": data.get("mlflow_runs") or {},
        "report": "evaluation.html",
    }


def llm_card_facts(vdir: Path) -> dict[str, Any] | None:
    """The LLM calls behind a version, from its call slice (``llm_calls.jsonl``): how many, which
    models were asked, tokens, cost (pinned prices), and whether a story was drafted into the spec."""
    path = vdir / "llm_calls.jsonl"
    if not path.is_file():
        return None
    from synthreg.registry.llm_tables import read_slice

    try:
        records = read_slice(path)
    except ValueError:  # a damaged slice: registry verify says what is wrong with it
        return None
    stages = {str((r["request"].get("sample") or {}).get("stage", "")) for r in records}
    return {
        "calls": len(records),
        "models": sorted({str(r["request"]["model"]) for r in records}),
        "tokens_in": sum(int(r["usage"]["prompt_tokens"] or 0) for r in records),
        "tokens_out": sum(int(r["usage"]["completion_tokens"] or 0) for r in records),
        "cost_usd": round(sum(float(r.get("cost_usd") or 0.0) for r in records), 6),
        "story": any(s.startswith("story.") for s in stages),
        "data": any(not s.startswith("story.") for s in stages),
        "tables": {
            p.name.removesuffix(".summary.json"): _json(p) for p in sorted(vdir.glob("llm/*.summary.json"))
        },
    }


def _facts(ws: Workspace, session: Session, dataset: Dataset, version: Version) -> CardFacts:
    import pyarrow.parquet as pq

    vdir = ws.root / version.path
    m = read_manifest(vdir)
    spec = load_spec(vdir / "spec.yaml")
    schemas = {}
    for t in m["tables"]:
        ensure_local(ws, version, t)  # a clone on another machine may not have pulled this table yet
        schemas[t] = pq.read_schema(sorted((vdir / "tables" / t).glob("part-*.parquet"))[0])
    usages = session.exec(select(Usage).where(Usage.version_id == version.id)).all()
    diff = session.exec(
        select(DiffRecord)
        .where(
            DiffRecord.dataset_b == dataset.name,
            DiffRecord.version_b == version.number,
            DiffRecord.version_a == (version.parent or -1),
        )
        .order_by(DiffRecord.id.desc())  # type: ignore[union-attr]
    ).first()
    origin = {k: m.get(k) for k in ("restored_from", "derived_from") if m.get(k)}
    if m.get("derivation"):
        origin["reason"] = m["derivation"].get("last", {}).get("reason", "")
    recorded = version.validation or {}
    validation = {k: recorded.get(k) for k in ("success", "evaluated", "failed", "engine")}
    if recorded.get("override"):  # approved although it failed: who, when, why (registry review)
        validation["override"] = recorded["override"]
    return CardFacts(
        name=dataset.name,
        version=version.number,
        status=version.status,
        created_at=m["created_at"],
        created_by=m["created_by"],
        spec=spec,
        spec_sha256=m["spec_sha256"],
        content_digest=m["content_digest"],
        model=m["model"],
        rows={t: v["rows"] for t, v in m["tables"].items()},
        schemas=schemas,
        validation=validation,
        params=m.get("params") or {},
        parent=m.get("parent"),
        files=m["files"],
        synthreg_version=synthreg.__version__,
        aliases=sorted(a for a, n in aliases_of(session, dataset).items() if n == version.number),
        consumers=[{"run_id": u.run_id, "context": u.context, "at": u.at.isoformat()} for u in usages],
        audit_head=head_hash(session),
        origin=origin,
        changes=None if diff is None else {"summary": diff.summary, "path": diff.path},
        **dir_facts(vdir),
    )


def card_for(ws: Workspace, session: Session, dataset: Dataset, version: Version) -> dict[str, Any]:
    """The current card of a version, as a dict (what ``datacard.json`` would hold now)."""
    return build_card(_facts(ws, session, dataset, version))


def refresh_card(ws: Workspace, session: Session, dataset: Dataset, version: Version) -> None:
    """Rewrite the version's datacard.md/.json and stage them for the write's git commit."""
    vdir = ws.root / version.path
    if not (vdir / "manifest.json").is_file():
        return
    write_card(vdir, _facts(ws, session, dataset, version))
    git.add(ws.root, [f"{version.path}/{name}" for name in CARD_FILES])
