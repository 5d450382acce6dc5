"""``registry audit``: the event log as rows, and as a readable audit document."""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

from sqlmodel import Session, select

from synthreg.errors import UsageError
from synthreg.registry.store import AuditEvent, Dataset, Usage, Version

__all__ = ["audit_events", "audit_report"]


def _since(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--since {text!r} is not a date: use YYYY-MM-DD or an ISO timestamp") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _at(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def audit_events(
    session: Session, dataset: str | None = None, since: str | None = None
) -> list[dict[str, Any]]:
    """Events, oldest first: seq, at, actor, action, dataset, version, details, prev_hash, hash."""
    start = _since(since)
    stmt = select(AuditEvent).order_by(AuditEvent.seq)  # type: ignore[arg-type]
    out = []
    for e in session.exec(stmt):
        if (dataset and e.dataset != dataset) or (start and _at(e.at) < start):
            continue
        out.append(
            {
                "seq": e.seq,
                "at": _at(e.at).isoformat(),
                "actor": e.actor,
                "action": e.action,
                "dataset": e.dataset,
                "version": e.version,
                "details": e.details or {},
                "prev_hash": e.prev_hash,
                "hash": e.hash,
            }
        )
    return out


def _versions(session: Session, name: str) -> list[dict[str, Any]]:
    ds = session.exec(select(Dataset).where(Dataset.name == name)).first()
    if ds is None:
        return []
    rows = []
    for v in session.exec(select(Version).where(Version.dataset_id == ds.id).order_by(Version.number)):  # type: ignore[arg-type]
        users = session.exec(select(Usage).where(Usage.version_id == v.id)).all()
        rows.append(
            {
                "version": v.number,
                "status": v.status,
                "created_at": _at(v.created_at).isoformat()[:19],
                "created_by": v.created_by,
                "rows": v.total_rows,
                "digest": v.content_digest[:12],
                "validation": f"{(v.validation or {}).get('failed', '?')} failed of "
                f"{(v.validation or {}).get('evaluated', '?')}",
                "origin": f"restored from v{v.restored_from}"
                if v.restored_from
                else (f"derived from v{v.derived_from}" if v.derived_from else "generated"),
                "consumers": ", ".join(f"{u.run_id[:8]} ({u.context})" for u in users) or "-",
            }
        )
    return rows


def _story(event: dict[str, Any]) -> str:
    d = event["details"]
    ref = f"{event['dataset']}@v{event['version']}" if event["version"] is not None else event["dataset"]
    extra = {
        "create": f"status {d.get('status')}",
        "rollback": f"restored from v{d.get('restored_from')}",
        "disable": f"derived from v{d.get('derived_from')}: {d.get('reason', '')}",
        "approve": d.get("note", ""),
        "reject": d.get("note", ""),
        "alias": f"alias {d.get('alias')}",
        "use": f"run {str(d.get('run_id', ''))[:12]} ({d.get('context', '')})",
    }.get(event["action"], "")
    return f"{event['at'][:19]} {event['actor']} {event['action']} {ref} {extra}".strip()


def audit_report(session: Session, events: list[dict[str, Any]], fmt: str, head: str, intact: bool) -> str:
    """A Markdown or self-contained HTML audit document."""
    names = sorted({e["dataset"] for e in events if e["dataset"]})
    md = [
        "# Audit report",
        "",
        f"Chain head `{head}`; chain {'verified intact' if intact else 'BROKEN'}; {len(events)} events.",
        "",
    ]
    for name in names:
        md += [
            f"## {name}",
            "",
            "| version | status | origin | created | by | rows | digest | validation | consumers |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        md += [
            f"| v{v['version']} | {v['status']} | {v['origin']} | {v['created_at']} | {v['created_by']} | "
            f"{v['rows']:,} | `{v['digest']}` | {v['validation']} | {v['consumers']} |"
            for v in _versions(session, name)
        ]
        md += ["", "### Events", ""] + [f"- {_story(e)}" for e in events if e["dataset"] == name] + [""]
    text = "\n".join(md)
    return text if fmt == "md" else _html(text)


def _html(markdown: str) -> str:
    """Minimal Markdown (headings, tables, lists) to self-contained HTML: no external URL."""
    out = [
        "<!doctype html><html><head><meta charset='utf-8'><title>synthreg audit</title><style>",
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:2px 6px}code{background:#eee}</style></head><body>",
    ]
    rows: list[str] = []
    for line in markdown.splitlines():
        if line.startswith("|"):
            if not set(line) <= set("|-"):
                cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
                rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
            continue
        if rows:
            out.append("<table>" + "".join(rows) + "</table>")
            rows = []
        level = len(line) - len(line.lstrip("#"))
        if level:
            out.append(f"<h{level}>{html.escape(line[level:].strip())}</h{level}>")
        elif line.startswith("- "):
            out.append(f"<li>{html.escape(line[2:])}</li>")
        elif line:
            out.append(f"<p>{html.escape(line)}</p>")
    if rows:
        out.append("<table>" + "".join(rows) + "</table>")
    return "\n".join([*out, "</body></html>"])
