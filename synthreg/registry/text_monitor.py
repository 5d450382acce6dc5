"""The text quality monitor of a version: semantic figures for quality.json, its plots, the
same between two versions for ``registry diff``, and the per-row tags that search and export carry.

It runs only for a spec with free-text columns (:func:`synthreg.validators.semantic.text_columns`):
for any other, :func:`semantic_quality` returns None without importing torch. Without the
``text`` extra it records why it was skipped and the fix, and create goes on.

Embeddings are cached under the workspace's ``.registry/cache/embeddings/`` by content hash.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from synthreg.datacards.text_plots import MapSide, draw_label_bars, draw_lengths, draw_style_map, plot_names
from synthreg.generators.spec import Spec
from synthreg.validators.embeddings import MODEL_ID, embed, unavailable
from synthreg.validators.parts import open_parts
from synthreg.validators.semantic import (
    SAMPLE,
    TextColumn,
    TextSample,
    assign_topics,
    column_metrics,
    map_subset,
    read_sample,
    style_coordinates,
    text_columns,
    topic_centroids,
)

__all__ = [
    "TAG_COLUMNS",
    "cache_dir_of",
    "diff_markdown",
    "diff_page",
    "diff_semantic",
    "row_tags",
    "semantic_diff",
    "semantic_quality",
    "with_semantic",
]

#: The tags every row of a text column carries in search results and exports.
TAG_COLUMNS = ("tag_task_type", "tag_language", "tag_label", "tag_topic_cluster")
#: Tables with more distinct texts than this get no topic tag (each text would be embedded).
MAX_TAGGED_TEXTS = 10_000


def cache_dir_of(state_dir: Path) -> Path:
    """Where a workspace keeps embeddings (``.registry/cache/embeddings``)."""
    return Path(state_dir) / "cache" / "embeddings"


def _sample(version_dir: Path, spec: Spec, col: TextColumn, cache_dir: Path | None) -> TextSample:
    return read_sample(Path(version_dir) / "tables", col, spec.seed, SAMPLE, cache_dir)


def _map_side(name: str, sample: TextSample, seed: int) -> tuple[MapSide, np.ndarray]:
    pick = map_subset(len(sample.texts), seed)
    labels = None if sample.labels is None else [sample.labels[i] for i in pick]
    return MapSide(name, np.zeros((len(pick), 2)), labels), sample.vectors[pick]


def _draw(
    col: TextColumn, sides: list[tuple[str, TextSample]], plots_dir: Path, seed: int, what: str
) -> list[str]:
    """The style map (one t-SNE over every side), label bars and length histograms of one column."""
    names = plot_names(col.key)
    mapped = [_map_side(name, sample, seed) for name, sample in sides]
    xy = style_coordinates(np.concatenate([v for _, v in mapped]), seed)
    start, map_sides = 0, []
    for side, vectors in mapped:
        map_sides.append(MapSide(side.name, xy[start : start + len(vectors)], side.labels))
        start += len(vectors)
    points = sum(len(s.xy) for s in map_sides)
    draw_style_map(map_sides, plots_dir / names["style_map"], f"{col.key}: style map{what}, n={points:,}")
    drawn = [names["style_map"]]
    counts = [(n, _counts(s.labels)) for n, s in sides if s.labels is not None]
    if counts:
        draw_label_bars(counts, plots_dir / names["labels"], f"{col.key}: labels ({col.label}){what}")
        drawn.append(names["labels"])
    lengths = [(n, np.array([len(t) for t in s.texts], dtype=float)) for n, s in sides]
    draw_lengths(lengths, plots_dir / names["lengths"], f"{col.key}: text length{what}")
    drawn.append(names["lengths"])
    return drawn


def _counts(labels: list[str] | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for lab in labels or []:
        out[lab] = out.get(lab, 0) + 1
    return out


def semantic_quality(spec: Spec, version_dir: Path, cache_dir: Path | None) -> dict[str, Any] | None:
    """Semantic figures of every free-text column (plots drawn into ``version_dir/plots``), or
    None when the spec has no free text."""
    columns = text_columns(spec)
    if not columns:
        return None
    reason = unavailable()
    if reason is not None:
        return {"status": "skipped", "reason": reason, "columns": {c.key: None for c in columns}}
    out: dict[str, Any] = {"status": "measured", "model": MODEL_ID, "sample_max": SAMPLE, "columns": {}}
    for col in columns:
        sample = _sample(version_dir, spec, col, cache_dir)
        metrics = column_metrics(sample, spec.seed)
        drawn = _draw(col, [("this version", sample)], Path(version_dir) / "plots", spec.seed, "")
        metrics["plots"] = [f"plots/{name}" for name in drawn]
        out["columns"][col.key] = {"label": col.label, "llm": col.llm, **metrics}
    out["semantic_diversity"] = {k: c["semantic_diversity"] for k, c in out["columns"].items()}
    return out


def with_semantic(
    quality: dict[str, Any], spec: Spec, version_dir: Path, cache_dir: Path | None
) -> dict[str, Any]:
    """``quality`` plus its ``semantic`` figures (unchanged when the spec has no free text)."""
    semantic = semantic_quality(spec, version_dir, cache_dir)
    return quality if semantic is None else {**quality, "semantic": semantic}


def semantic_diff(
    specs: tuple[Spec, Spec],
    dirs: tuple[Path, Path],
    labels: tuple[str, str],
    plots_dir: Path,
    cache_dir: Path | None,
) -> dict[str, Any] | None:
    """Both versions of each free-text column the two have in common, on one style map each,
    with their semantic diversity and label agreement; None when they share no free text."""
    a_cols = {c.key: c for c in text_columns(specs[0])}
    shared = [c for c in text_columns(specs[1]) if c.key in a_cols]
    if not shared:
        return None
    reason = unavailable()
    if reason is not None:
        return {"status": "skipped", "reason": reason}
    out: dict[str, Any] = {"status": "measured", "model": MODEL_ID, "columns": {}}
    seed = specs[1].seed
    for col in shared:
        samples = [
            _sample(dirs[0], specs[0], a_cols[col.key], cache_dir),
            _sample(dirs[1], specs[1], col, cache_dir),
        ]
        metrics = [column_metrics(s, seed) for s in samples]
        sides = list(zip(labels, samples, strict=True))
        drawn = _draw(col, sides, Path(plots_dir), seed, f": {labels[0]} vs {labels[1]}")
        out["columns"][col.key] = {**_pairs(metrics[0], metrics[1]), "plots": drawn}
    return out


def _pairs(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The figures a diff shows, as ``{"a": ..., "b": ...}``."""

    def accuracy(m: dict[str, Any]) -> Any:
        return (m.get("semantic_label_agreement") or {}).get("accuracy")

    return {
        "semantic_diversity": {"a": a["semantic_diversity"], "b": b["semantic_diversity"]},
        "semantic_near_duplicate_rate": {
            "a": a["semantic_near_duplicates"]["rate"],
            "b": b["semantic_near_duplicates"]["rate"],
        },
        "semantic_label_accuracy": {"a": accuracy(a), "b": accuracy(b)},
        "labels": {"a": a.get("labels"), "b": b.get("labels")},
    }


def _task_type(spec: Spec, col: TextColumn) -> str:
    if spec.task_categories:
        return spec.task_categories[0]
    return "text-classification" if col.label else "text-generation"


def row_tags(spec: Spec, version_dir: Path, col: TextColumn, cache_dir: Path | None) -> pa.Table:
    """One row of tags per row of ``col``'s table: task type, language (the spec's first), label
    and topic cluster (the k-means topics of quality.json, each row at its nearest centroid;
    null without the text extra or past ``MAX_TAGGED_TEXTS`` distinct texts)."""
    parts = open_parts(Path(version_dir) / "tables", col.table)
    table = parts.read([col.column, *([col.label] if col.label else [])])
    texts = table.column(col.column).to_pylist()
    n = len(texts)
    topics: list[int | None] = [None] * n
    present = [t for t in texts if t is not None]
    if unavailable() is None and len(set(present)) <= MAX_TAGGED_TEXTS and present:
        sample = _sample(version_dir, spec, col, cache_dir)
        centroids = topic_centroids(sample.vectors, spec.seed)
        assigned = iter(assign_topics(embed([str(t) for t in present], cache_dir), centroids).tolist())
        topics = [None if t is None else next(assigned) for t in texts]
    label = table.column(col.label).cast(pa.string()) if col.label else pa.nulls(n, pa.string())
    return pa.table(
        {
            "tag_task_type": pa.array([_task_type(spec, col)] * n, pa.string()),
            "tag_language": pa.array([(spec.language or ["und"])[0]] * n, pa.string()),
            "tag_label": label,
            "tag_topic_cluster": pa.array(topics, pa.int64()),
        }
    )


def diff_semantic(
    dirs: tuple[Path, Path], labels: tuple[str, str], plots_dir: Path, state_dir: Path
) -> dict[str, Any] | None:
    """:func:`semantic_diff` of two version directories (their frozen specs), or None."""
    from synthreg.generators.spec_io import load_spec

    specs = (load_spec(Path(dirs[0]) / "spec.yaml"), load_spec(Path(dirs[1]) / "spec.yaml"))
    return semantic_diff(specs, dirs, labels, plots_dir, cache_dir_of(state_dir))


def diff_markdown(semantic: dict[str, Any] | None) -> str:
    """The semantic part of diff.md ("" without one)."""
    from synthreg.validators.semantic_report import semantic_diff_markdown

    return semantic_diff_markdown(semantic) if semantic else ""


def diff_page(page: str, semantic: dict[str, Any] | None, plots_dir: Path, html: bool) -> str:
    """A diff report (HTML or Markdown) with the semantic part added before its end."""
    if not semantic:
        return page
    from synthreg.validators.semantic_report import semantic_diff_html

    if not html:
        return page + diff_markdown(semantic)
    return page.replace("</body>", semantic_diff_html(semantic, plots_dir) + "\n</body>", 1)
