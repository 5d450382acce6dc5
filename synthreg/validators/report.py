"""A validation report as one self-contained HTML page.

Inline CSS only: no scripts, no stylesheets or images fetched (the text monitor's plots are
embedded as ``data:`` URIs), no external URL at all. Every value from the data is HTML-escaped,
and ``://`` in it is written as ``:&#47;&#47;`` so that no ``http://`` or ``https://`` appears in
the page source (browsers still show the text as it was; nothing becomes a link).
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["render_validation_report"]

#: JSON of kwargs/observed longer than this is cut, so one huge check cannot bloat the page.
MAX_CELL_CHARS = 2000

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem; color: #1b1f24; }
h1 { font-size: 1.5rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #d0d7de; }
table { border-collapse: collapse; margin: .5rem 0 1rem; }
th, td { border: 1px solid #d0d7de; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.json { font: 12px ui-monospace, monospace; white-space: pre-wrap; max-width: 40rem;
  word-break: break-all; }
.pass { color: #1a7f37; font-weight: 600; } .fail { color: #cf222e; font-weight: 600; }
.score { font-size: 2rem; font-weight: 700; }
"""
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def render_validation_report(
    title: str,
    validation: dict[str, Any],
    quality: dict[str, Any] | None = None,
    images_dir: Path | None = None,
) -> str:
    """One HTML page: summary, failed checks, all checks per table, then quality metrics.

    ``validation`` is ``ValidationResult.to_dict()``; ``quality`` is ``quality_metrics(...)``.
    ``images_dir``: the version directory the semantic figures' plots are relative to (embedded).
    """
    checks = list(validation.get("checks") or [])
    failed = [c for c in checks if not c.get("success")]
    body = [
        f"<h1>{_esc(title)}</h1>",
        _summary(validation),
        "<h2>Failed checks</h2>",
        _checks_table(failed, with_table=True) if failed else "<p>No check failed.</p>",
        "<h2>All checks</h2>",
        _per_table(checks),
    ]
    if quality is not None:
        body.append(_quality(quality))
    if quality is not None and quality.get("semantic"):
        from synthreg.validators.semantic_report import semantic_html

        body.append(semantic_html(quality["semantic"], images_dir))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True).replace("://", ":&#47;&#47;")


class _Json(str):
    """An escaped JSON cell, set in monospace."""


def _json(value: Any) -> _Json:
    text = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    if len(text) > MAX_CELL_CHARS:
        text = text[:MAX_CELL_CHARS] + f"… ({len(text) - MAX_CELL_CHARS} more characters)"
    return _Json(_esc(text))


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return _esc(f"{value:.{digits}g}")
    return _esc(value)


def _verdict(success: Any) -> str:
    return '<span class="pass">pass</span>' if success else '<span class="fail">FAIL</span>'


def _table(headers: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    """An HTML table; ``headers`` are escaped here, cells must come escaped."""
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(content: str) -> str:
    if isinstance(content, _Json):
        return f'<td class="json">{content}</td>'
    return f"<td>{content}</td>"


def _summary(validation: dict[str, Any]) -> str:
    ratio = validation.get("success_ratio")
    rows = [
        ("Success", _verdict(validation.get("success"))),
        ("Checks evaluated", _num(validation.get("evaluated"))),
        ("Checks failed", _num(validation.get("failed"))),
        ("Success ratio", _esc(f"{ratio:.2%}") if isinstance(ratio, (int, float)) else "–"),
        ("Engine", _esc(validation.get("engine", "–"))),
        ("Seconds", _num(validation.get("seconds"))),
    ]
    return "<h2>Summary</h2>" + _table(["", "value"], rows)


def _checks_table(checks: list[dict[str, Any]], *, with_table: bool) -> str:
    headers = [
        *(["table"] if with_table else []),
        "check",
        "column",
        "result",
        "kwargs",
        "observed",
        "source",
    ]
    rows = [
        [
            *([_esc(c.get("table", ""))] if with_table else []),
            _esc(c.get("check", "")),
            _esc(c.get("column") or "–"),
            _verdict(c.get("success")),
            _json(c.get("kwargs", {})),
            _json(c.get("observed", {})),
            _esc(c.get("source", "")),
        ]
        for c in checks
    ]
    return _table(headers, rows)


def _per_table(checks: list[dict[str, Any]]) -> str:
    if not checks:
        return "<p>No checks were run.</p>"
    tables: dict[str, list[dict[str, Any]]] = {}
    for check in checks:
        tables.setdefault(str(check.get("table", "")), []).append(check)
    parts = []
    for name, group in tables.items():
        bad = sum(not c.get("success") for c in group)
        parts.append(f"<h3>{_esc(name)} — {len(group)} checks, {bad} failed</h3>")
        parts.append(_checks_table(group, with_table=False))
    return "\n".join(parts)


# ---------------------------------------------------------------- quality


def _quality(quality: dict[str, Any]) -> str:
    components = quality.get("components", {})
    parts = [
        "<h2>Quality metrics</h2>",
        f'<p>Quality score: <span class="score">{_num(quality.get("quality_score"), 3)}</span></p>',
        f"<p><code>{_esc(quality.get('formula', ''))}</code></p>",
        _table(
            ["component", "value", "weight", "measures"],
            [
                [_esc(k), _num(c.get("value")), _num(c.get("weight")), _esc(c.get("description", ""))]
                for k, c in components.items()
            ],
        ),
    ]
    for name, table in quality.get("tables", {}).items():
        parts.append(_quality_table(name, table))
    return "\n".join(parts)


def _quality_table(name: str, table: dict[str, Any]) -> str:
    columns: dict[str, Any] = table.get("columns", {})
    out = [
        f"<h3>{_esc(name)}</h3>",
        f"<p>{_num(table.get('rows'))} rows (declared {_num(table.get('declared_rows'))}); "
        f"exact duplicate rows: {_num(table.get('duplicate_rows'))} "
        f"({_num(table.get('duplicate_row_rate'))}, primary key excluded)</p>",
        _table(
            ["column", "type", "null rate", "declared", "diff", "TVD", "max |dev|", "proportions"],
            [_column_row(col, m) for col, m in columns.items()],
        ),
    ]
    labels = [(col, m["label_balance"]) for col, m in columns.items() if "label_balance" in m]
    if labels:
        out.append(_label_table(labels))
    texts = [(col, m["text"]) for col, m in columns.items() if "text" in m]
    if texts:
        out.append(_text_table(texts))
    return "\n".join(out)


def _label_table(labels: list[tuple[str, dict[str, Any]]]) -> str:
    rows = [
        [
            _esc(col),
            _json(balance["proportions"]),
            _num(balance["imbalance_ratio"]),
            _esc(", ".join(map(str, balance["missing_classes"])) or "–"),
        ]
        for col, balance in labels
    ]
    return _table(["label", "proportions", "imbalance ratio", "missing classes"], rows)


def _column_row(name: str, m: dict[str, Any]) -> list[str]:
    proportions = m.get("proportions")
    return [
        _esc(name),
        _esc(m.get("type", "")),
        _num(m.get("null_rate")),
        _num(m.get("declared_null_rate")),
        _num(m.get("null_rate_diff")),
        _num(m.get("tvd")),
        _num(m.get("max_abs_deviation")),
        _json(proportions) if proportions is not None else "–",
    ]


def _text_table(texts: list[tuple[str, dict[str, Any]]]) -> str:
    headers = [
        "text column", "length p5/p50/p95", "distinct ratio", "exact dup rate", "distinct-1",
        "distinct-2", "near-dup rate", "sample", "texts under 2+ labels", "scored",
    ]  # fmt: skip
    rows = []
    for col, t in texts:
        length = t.get("length", {})
        conflicts = t.get("label_conflicts")
        rows.append(
            [
                _esc(col),
                "/".join(_num(length.get(q)) for q in ("p5", "p50", "p95")),
                _num(t.get("distinct_ratio")),
                _num(t.get("exact_duplicate_rate")),
                _num(t.get("distinct_1")),
                _num(t.get("distinct_2")),
                _num(t.get("near_duplicate_rate")),
                _num(t.get("sample")),
                _esc(f"{conflicts['texts']} texts, {conflicts['rows']} rows") if conflicts else "–",
                _esc("yes" if t.get("scored") else "no"),
            ]
        )
    return _table(headers, rows)
