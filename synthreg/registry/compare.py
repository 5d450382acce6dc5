"""``registry diff REF_A REF_B``: compute a version diff, store it (files + DB record) and
optionally write a report. Stored under ``diffs/<a>__<b>/`` in the workspace (git-tracked):
``diff.json``, ``diff.md`` and ``plots/*.png``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from sqlmodel import select

from synthreg import env
from synthreg.errors import UsageError
from synthreg.integrations import git
from synthreg.registry.checkout import ensure_local
from synthreg.registry.diff import DiffResult, diff_versions
from synthreg.registry.diff_report import render_html, render_markdown
from synthreg.registry.events import record
from synthreg.registry.query import resolve
from synthreg.registry.refs import parse_ref
from synthreg.registry.store import DiffRecord, read_session, write_session
from synthreg.registry.text_monitor import diff_markdown, diff_page, diff_semantic
from synthreg.registry.workspace import Workspace

__all__ = ["diff", "diffs_of"]


def diff(ws: Workspace, ref_a: str, ref_b: str, report: Path | None = None) -> dict[str, Any]:
    """Diff two versions (of one dataset or two); store the result; write ``report`` if asked."""
    if report is not None and report.suffix not in (".md", ".html"):
        raise UsageError(f"--report {report}: use a .md or .html file name")
    with read_session(ws.engine) as session:
        (da, va), (db, vb) = resolve(session, parse_ref(ref_a)), resolve(session, parse_ref(ref_b))
    for version in (va, vb):
        ensure_local(ws, version)
    label_a, label_b = f"{da.name}@v{va.number}", f"{db.name}@v{vb.number}"
    rel = Path("diffs") / f"{da.name}_v{va.number}__{db.name}_v{vb.number}"
    out = ws.root / rel
    shutil.rmtree(out, ignore_errors=True)
    (out / "plots").mkdir(parents=True)
    result: DiffResult = diff_versions(
        ws.root / va.path, ws.root / vb.path, label_a, label_b, plots_dir=out / "plots"
    )
    dirs, labels = (ws.root / va.path, ws.root / vb.path), (label_a, label_b)
    semantic = diff_semantic(dirs, labels, out / "plots", ws.settings.state_dir)  # None: no shared text
    data = result.to_dict() | ({"semantic": semantic} if semantic else {})
    (out / "diff.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    (out / "diff.md").write_text(render_markdown(result, "plots") + diff_markdown(semantic))
    if report is not None:
        text = render_html(result, out / "plots") if report.suffix == ".html" else render_markdown(result)
        text = diff_page(text, semantic, out / "plots", report.suffix == ".html")
        report.write_text(text, encoding="utf-8")
    with ws.lock(), write_session(ws.engine) as session:
        session.add(
            DiffRecord(
                dataset_a=da.name,
                version_a=va.number,
                dataset_b=db.name,
                version_b=vb.number,
                path=(rel / "diff.json").as_posix(),
                summary=result.summary["text"],
                actor=env.actor(),
            )
        )
        git.add(ws.root, [rel.as_posix()])
        parent_diff = da.name == db.name and vb.parent == va.number  # shown on vb's card
        record(
            ws,
            session,
            actor=env.actor(),
            action="diff",
            dataset=db.name,
            version=vb.number,
            details={"a": label_a, "b": label_b, "summary": result.summary["text"], "path": rel.as_posix()},
            card=(db, vb) if parent_diff else None,
        )
    data["stored_at"] = rel.as_posix()
    return data


def diffs_of(session: Any, name: str, number: int) -> list[dict[str, Any]]:
    """Diffs already made that involve ``name@v<number>``."""
    rows = session.exec(select(DiffRecord).order_by(DiffRecord.id)).all()  # type: ignore[arg-type]
    return [
        {
            "a": f"{r.dataset_a}@v{r.version_a}",
            "b": f"{r.dataset_b}@v{r.version_b}",
            "path": r.path,
            "summary": r.summary,
            "at": r.at.isoformat(),
        }
        for r in rows
        if (r.dataset_a, r.version_a) == (name, number) or (r.dataset_b, r.version_b) == (name, number)
    ]
