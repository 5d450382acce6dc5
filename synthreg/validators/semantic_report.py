"""The text monitor's figures as HTML (validation.html, diff reports) and Markdown (diff.md).

Plots are embedded as ``data:image/png;base64`` URIs, so the pages stay self-contained.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from synthreg.validators.report import _esc, _num, _table

__all__ = ["semantic_diff_html", "semantic_diff_markdown", "semantic_html"]


def _image(path: Path | None, caption: str) -> str:
    if path is None or not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{_esc(caption)}" style="max-width:100%" src="data:image/png;base64,{data}">'
        f"<figcaption>{_esc(caption)}</figcaption></figure>"
    )


def _column_rows(key: str, c: dict[str, Any]) -> list[str]:
    agreement = c.get("semantic_label_agreement") or {}
    near = c.get("semantic_near_duplicates") or {}
    accuracy = (
        f"{_num(agreement.get('accuracy'))} (chance {_num(agreement.get('chance'))})" if agreement else "–"
    )
    topics = ", ".join(
        f"{t['cluster']}: {' '.join(t['top_words'][:3])} ({t['rows']})"
        for t in (c.get("topics") or {}).get("clusters", [])
    )
    return [
        _esc(key),
        _num(c.get("sample")),
        _num(c.get("semantic_diversity")),
        _num(near.get("rate")),
        accuracy,
        _esc(topics or "–"),
    ]


def semantic_html(semantic: dict[str, Any], images_dir: Path | None) -> str:
    """The ``semantic`` part of quality.json: one row per text column, then its plots."""
    parts = ["<h2>Text: semantic quality</h2>"]
    if semantic.get("status") != "measured":
        return parts[0] + f"<p>Not measured: {_esc(semantic.get('reason', ''))}</p>"
    parts.append(
        f"<p>Sentence embeddings of {_esc(semantic.get('model'))}, on a seeded sample of at most "
        f"{_num(semantic.get('sample_max'))} rows per column.</p>"
    )
    headers = ["column", "sample", "semantic diversity", "near-dup rate", "label accuracy", "topics"]
    columns = semantic.get("columns", {})
    parts.append(_table(headers, [_column_rows(k, c) for k, c in columns.items()]))
    for key, c in columns.items():
        for rel in c.get("plots", []):
            parts.append(_image(None if images_dir is None else Path(images_dir) / rel, f"{key}: {rel}"))
    return "\n".join(p for p in parts if p)


def _pair(value: dict[str, Any]) -> str:
    return f"{_num(value.get('a'))} → {_num(value.get('b'))}"


def semantic_diff_html(semantic: dict[str, Any], plots_dir: Path | None) -> str:
    """A diff's semantic part: each shared text column's figures a → b and its plots."""
    parts = ["<h2>Text: semantic quality (a → b)</h2>"]
    if semantic.get("status") != "measured":
        return parts[0] + f"<p>Not measured: {_esc(semantic.get('reason', ''))}</p>"
    headers = ["column", "semantic diversity", "near-dup rate", "label accuracy"]
    rows = [
        [
            _esc(k),
            _pair(c["semantic_diversity"]),
            _pair(c["semantic_near_duplicate_rate"]),
            _pair(c["semantic_label_accuracy"]),
        ]
        for k, c in semantic["columns"].items()
    ]
    parts.append(_table(headers, rows))
    for key, c in semantic["columns"].items():
        for name in c.get("plots", []):
            parts.append(_image(None if plots_dir is None else Path(plots_dir) / name, f"{key}: {name}"))
    return "\n".join(p for p in parts if p)


def semantic_diff_markdown(semantic: dict[str, Any], plots_rel_dir: str = "plots") -> str:
    """The same for diff.md, plots linked from ``plots_rel_dir``."""
    if semantic.get("status") != "measured":
        return f"\n## Text: semantic quality\n\nNot measured: {semantic.get('reason', '')}\n"
    lines = ["", "## Text: semantic quality (a → b)", ""]
    lines += ["| column | semantic diversity | near-dup rate | label accuracy |", "|---|---|---|---|"]
    for key, c in semantic["columns"].items():
        cells = [
            c["semantic_diversity"],
            c["semantic_near_duplicate_rate"],
            c["semantic_label_accuracy"],
        ]
        lines.append(f"| {key} | " + " | ".join(f"{v['a']} → {v['b']}" for v in cells) + " |")
    for key, c in semantic["columns"].items():
        lines += ["", *[f"![{key}: {name}]({plots_rel_dir}/{name})" for name in c.get("plots", [])]]
    return "\n".join(lines) + "\n"
