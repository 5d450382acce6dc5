"""The DataCard's text-quality section: the monitor's semantic figures and its plots
(style map, labels, lengths), from ``quality.json``'s ``semantic`` part."""

from __future__ import annotations

from typing import Any

__all__ = ["semantic_md"]


def _line(key: str, c: dict[str, Any]) -> str:
    parts = [f"semantic diversity {c.get('semantic_diversity')} (sample {c.get('sample')})"]
    near = c.get("semantic_near_duplicates") or {}
    parts.append(f"embedding near-duplicate rate {near.get('rate')}")
    agreement = c.get("semantic_label_agreement")
    if agreement:
        parts.append(
            f"labels recovered from the embeddings {agreement['accuracy']} (chance {agreement['chance']})"
        )
    topics = (c.get("topics") or {}).get("clusters") or []
    if topics:
        parts.append("topics: " + "; ".join(f"{' '.join(t['top_words'][:3])} ({t['rows']})" for t in topics))
    return f"- `{key}`: " + ", ".join(parts)


def semantic_md(quality: dict[str, Any] | None) -> list[str]:
    """Markdown lines (none when the version has no free text)."""
    semantic = (quality or {}).get("semantic")
    if not semantic:
        return []
    lines = ["## Text quality (semantic)", ""]
    if semantic.get("status") != "measured":
        return [*lines, f"Not measured: {semantic.get('reason', '')}", ""]
    lines += [f"Sentence embeddings of `{semantic.get('model')}` on a seeded sample per column.", ""]
    columns = semantic.get("columns") or {}
    lines += [_line(key, c) for key, c in columns.items()]
    for key, c in columns.items():
        lines += ["", *[f"![{key}: {p.rsplit('/', 1)[-1]}]({p})" for p in c.get("plots", [])]]
    return [*lines, ""]
