"""Semantic quality of free text, from sentence embeddings (:mod:`synthreg.validators.embeddings`).

Which columns: an LLM table's ``text`` (labelled by its ``label``), ``llm_text`` columns, and
free ``text`` columns (no pattern, not a names/places vocabulary); an engine table's label is
its ``label: true`` column. A table without such a column is never read, and torch is never
imported for it.

Per column, on a seeded sample of at most ``SAMPLE`` non-null rows (all rows when fewer):

- ``semantic_diversity``: the mean pairwise cosine distance, ``1 - mean_{i != j} cos(e_i, e_j)``,
  exact over the sample (for unit vectors the mean of all pairs is ``(|sum e|^2 - n) / (n(n-1))``);
  0 when every text says the same, about 0.8-0.9 for unrelated sentences. Also per label.
- ``semantic_near_duplicates``: sampled rows whose text has a *different* text at cosine
  similarity >= ``NEAR_DUPLICATE_COSINE`` (paraphrases that character shingles miss), their
  rate, and the closest pairs as examples.
- ``semantic_label_agreement``: leave-one-out nearest-centroid accuracy: each text is given the
  label whose centroid (without the text itself) is closest; ``accuracy`` against ``chance``
  (the largest label's share) says whether the labels are visible in the texts. Per label recall.
- ``length``: character and word histograms; ``difficulty``: a readability histogram (the
  Flesch-Kincaid grade, syllables counted as vowel groups: English-centred) and, with labels,
  the label margin (own centroid's cosine minus the best other's; below 0 = looks like another label).
- ``topics``: k-means clusters of the embeddings (k from the sample size), their sizes and most
  frequent words.

Figures are rounded to 4 decimals. Same data, same numbers: the sample and k-means are seeded.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from synthreg.generators.spec import Spec
from synthreg.validators.embeddings import embed
from synthreg.validators.parts import open_parts
from synthreg.validators.quality import STRUCTURED_VOCABS

__all__ = [
    "MAP_POINTS",
    "NEAR_DUPLICATE_COSINE",
    "SAMPLE",
    "TextColumn",
    "TextSample",
    "assign_topics",
    "column_metrics",
    "map_subset",
    "read_sample",
    "style_coordinates",
    "text_columns",
    "topic_centroids",
]

SAMPLE = 500
#: Points per version on the style map (t-SNE is quadratic).
MAP_POINTS = 300
NEAR_DUPLICATE_COSINE = 0.95
LENGTH_BINS = 20
MAX_LABELS = 50
MAX_TOPICS = 8
EXAMPLES = 3
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_SENTENCE = re.compile(r"[.!?]+(?:\s|$)")
_VOWELS = re.compile(r"[aeiouy]+", re.IGNORECASE)
_STOP = frozenset(
    {
        "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "from", "has", "have", "i", "in",
        "is", "it", "its", "me", "my", "not", "of", "on", "or", "our", "so", "that", "the", "their",
        "them", "they", "this", "to", "was", "we", "were", "will", "with", "you", "your",
    }
)  # fmt: skip


@dataclass(frozen=True)
class TextColumn:
    """A free-text column the monitor reads: table, column, its label column, whether an LLM made it."""

    table: str
    column: str
    label: str | None
    llm: bool

    @property
    def key(self) -> str:
        """``table.column``."""
        return f"{self.table}.{self.column}"


@dataclass(frozen=True)
class TextSample:
    """Sampled rows of one text column: row positions, texts, labels (or None) and embeddings."""

    rows: np.ndarray
    texts: list[str]
    labels: list[str] | None
    vectors: np.ndarray


def text_columns(spec: Spec) -> list[TextColumn]:
    """The free-text columns of ``spec``, in table order (empty: the monitor does not run)."""
    out = []
    for name in spec.table_order():
        table = spec.tables[name]
        if table.llm is not None:
            out.append(TextColumn(name, "text", "label", True))
            continue
        label = next((c for c, col in table.columns.items() if col.label), None)
        for column, col in table.columns.items():
            free = col.type == "text" and col.pattern is None and col.vocab not in STRUCTURED_VOCABS
            if col.type == "llm_text" or free:
                own_label = label if label != column else None
                out.append(TextColumn(name, column, own_label, col.type == "llm_text"))
    return out


def _positions(rows: int, n: int, seed: int) -> np.ndarray:
    if rows <= n:
        return np.arange(rows, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(rows, size=n, replace=False))


def read_sample(
    tables_dir: Path, col: TextColumn, seed: int, n: int = SAMPLE, cache_dir: Path | None = None
) -> TextSample:
    """Up to ``n`` rows of ``col`` (seeded, in row order; rows with a null text dropped), embedded."""
    parts = open_parts(Path(tables_dir), col.table)
    wanted = _positions(parts.rows, n, seed)
    names = [col.column, *([col.label] if col.label else [])]
    rows: list[int] = []
    texts: list[str] = []
    labels: list[str] = []
    offset = 0
    for batch in parts.batches(names):
        lo, hi = np.searchsorted(wanted, [offset, offset + batch.num_rows])
        if hi > lo:
            taken = batch.take(pa.array(wanted[lo:hi] - offset))
            values = taken.column(col.column).to_pylist()
            label_values = taken.column(col.label).to_pylist() if col.label else [None] * len(values)
            for pos, text, lab in zip(wanted[lo:hi], values, label_values, strict=True):
                if text is not None:
                    rows.append(int(pos))
                    texts.append(str(text))
                    labels.append("(null)" if lab is None else str(lab))
        offset += batch.num_rows
    return TextSample(
        np.array(rows, dtype=np.int64), texts, labels if col.label else None, embed(texts, cache_dir)
    )


def _r(value: float) -> float:
    return round(float(value), 4)


def _mean_distance(vectors: np.ndarray) -> float | None:
    n = len(vectors)
    if n < 2:
        return None
    total = vectors.sum(axis=0, dtype=np.float64)
    mean_cos = (float(total @ total) - float(np.einsum("ij,ij->", vectors, vectors, dtype=np.float64))) / (
        n * (n - 1)
    )
    return _r(1.0 - mean_cos)


def _histogram(values: np.ndarray, bins: int = LENGTH_BINS) -> dict[str, Any]:
    if not len(values):
        return {"edges": [], "counts": []}
    low, high = float(values.min()), float(values.max())
    counts, edges = np.histogram(values, bins=bins, range=(low, high if high > low else low + 1))
    return {"edges": [_r(e) for e in edges], "counts": [int(c) for c in counts]}


def _syllables(word: str) -> int:
    return max(1, len(_VOWELS.findall(word)))


def grade(text: str) -> float:
    """Flesch-Kincaid grade level of one text (vowel-group syllables; 0 for a text without words)."""
    words = _WORD.findall(text)
    if not words:
        return 0.0
    sentences = max(1, len(_SENTENCE.findall(text.strip() + " ")))
    syllables = sum(_syllables(w) for w in words)
    return 0.39 * len(words) / sentences + 11.8 * syllables / len(words) - 15.59


def _near_duplicates(sample: TextSample) -> dict[str, Any]:
    distinct = sorted(set(sample.texts))
    index = {t: i for i, t in enumerate(distinct)}
    first: dict[str, int] = {}
    for pos, text in enumerate(sample.texts):
        first.setdefault(text, pos)
    vectors = sample.vectors[[first[t] for t in distinct]] if distinct else sample.vectors[:0]
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -1.0)
    close = sims >= NEAR_DUPLICATE_COSINE
    flagged = close.any(axis=1)
    rows = sum(1 for t in sample.texts if flagged[index[t]])
    pairs = np.argwhere(np.triu(close, 1))
    order = sorted(((float(sims[a, b]), int(a), int(b)) for a, b in pairs), key=lambda p: (-p[0], p[1], p[2]))
    n = len(sample.texts)
    return {
        "threshold": NEAR_DUPLICATE_COSINE,
        "pairs": len(pairs),
        "rows": rows,
        "rate": _r(rows / n) if n else 0.0,
        "examples": [
            {"cosine": _r(s), "a": distinct[a][:200], "b": distinct[b][:200]} for s, a, b in order[:EXAMPLES]
        ],
    }


def _label_agreement(sample: TextSample) -> tuple[dict[str, Any], np.ndarray] | None:
    """Leave-one-out nearest-centroid accuracy, and each text's margin (own minus best other)."""
    if sample.labels is None:
        return None
    names = sorted(set(sample.labels))
    if not 2 <= len(names) <= MAX_LABELS:
        return None
    y = np.array([names.index(lab) for lab in sample.labels])
    x = sample.vectors.astype(np.float64)
    sums = np.zeros((len(names), x.shape[1]))
    np.add.at(sums, y, x)
    counts = np.bincount(y, minlength=len(names)).astype(np.float64)
    scores = np.empty((len(x), len(names)))
    for c in range(len(names)):
        own = y == c
        centroid = np.where(own[:, None], sums[c] - x, sums[c])  # leave the text itself out
        norm = np.linalg.norm(centroid, axis=1)
        scores[:, c] = np.where(norm > 0, (centroid * x).sum(axis=1) / np.where(norm > 0, norm, 1), -1.0)
        if counts[c] == 1:
            scores[own, c] = -1.0  # a label seen once has no centroid without it
    predicted = scores.argmax(axis=1)
    own_score = scores[np.arange(len(x)), y]
    others = scores.copy()
    others[np.arange(len(x)), y] = -np.inf
    margin = own_score - others.max(axis=1)
    recall = {lab: _r(float((predicted[y == c] == c).mean())) for c, lab in enumerate(names) if counts[c]}
    out = {
        "method": "leave-one-out nearest centroid (cosine)",
        "accuracy": _r(float((predicted == y).mean())),
        "chance": _r(float(counts.max() / counts.sum())),
        "per_label_recall": recall,
    }
    return out, margin


def _per_label(sample: TextSample) -> dict[str, Any]:
    if sample.labels is None:
        return {}
    labels = np.array(sample.labels, dtype=object)
    out = {}
    for lab in sorted(set(sample.labels))[:MAX_LABELS]:
        mask = labels == lab
        texts = [t for t, m in zip(sample.texts, mask, strict=True) if m]
        out[lab] = {
            "rows": int(mask.sum()),
            "semantic_diversity": _mean_distance(sample.vectors[mask]),
            "mean_chars": _r(float(np.mean([len(t) for t in texts]))),
        }
    return out


def topic_centroids(vectors: np.ndarray, seed: int) -> np.ndarray:
    """k-means topic centroids (k = about sqrt(n/2), 1..``MAX_TOPICS``) of a sample's unit vectors."""
    n = len(vectors)
    k = min(MAX_TOPICS, int(np.sqrt(n / 2)))
    if k < 2:
        return vectors.mean(axis=0, keepdims=True) if n else np.zeros((1, vectors.shape[1]))
    from sklearn.cluster import KMeans

    model = KMeans(n_clusters=k, n_init=3, random_state=seed % 2**32).fit(vectors.astype(np.float64))
    return np.asarray(model.cluster_centers_)


def assign_topics(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The nearest centroid (Euclidean, as k-means) of each vector."""
    if not len(vectors):
        return np.zeros(0, dtype=np.int64)
    scores = vectors.astype(np.float64) @ centroids.T - 0.5 * (centroids**2).sum(axis=1)
    return np.asarray(scores.argmax(axis=1), dtype=np.int64)


def _topics(sample: TextSample, seed: int) -> dict[str, Any]:
    clusters = assign_topics(sample.vectors, topic_centroids(sample.vectors, seed))
    out = []
    for c in sorted(set(clusters.tolist())):
        words: Counter[str] = Counter()
        for text, cl in zip(sample.texts, clusters, strict=True):
            if cl == c:
                words.update(w for w in (x.lower() for x in _WORD.findall(text)) if w not in _STOP)
        top = [w for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))[:5]]
        out.append({"cluster": c, "rows": int((clusters == c).sum()), "top_words": top})
    return {"method": "k-means on the embeddings", "clusters": out}


def column_metrics(sample: TextSample, seed: int) -> dict[str, Any]:
    """The semantic figures of one column's sample (see the module docstring)."""
    chars = np.array([len(t) for t in sample.texts], dtype=np.float64)
    words = np.array([len(t.split()) for t in sample.texts], dtype=np.float64)
    grades = np.array([grade(t) for t in sample.texts], dtype=np.float64)
    agreement = _label_agreement(sample)
    out: dict[str, Any] = {
        "sample": len(sample.texts),
        "semantic_diversity": _mean_distance(sample.vectors),
        "semantic_near_duplicates": _near_duplicates(sample),
        "length": {"chars": _histogram(chars), "words": _histogram(words)},
        "difficulty": {"fk_grade": _histogram(grades)},
        "topics": _topics(sample, seed),
    }
    if sample.labels is not None:
        out["labels"] = dict(sorted(Counter(sample.labels).items()))
        out["semantic_per_label"] = _per_label(sample)
    if agreement is not None:
        out["semantic_label_agreement"] = agreement[0]
        out["difficulty"]["label_margin"] = _histogram(agreement[1])
    return out


def style_coordinates(vectors: np.ndarray, seed: int) -> np.ndarray:
    """2-D t-SNE coordinates of ``vectors`` (at most ``MAP_POINTS`` of them: callers subsample)."""
    n = len(vectors)
    if n < 4:
        return np.zeros((n, 2))
    from sklearn.manifold import TSNE

    tsne = TSNE(
        n_components=2,
        perplexity=float(min(30, max(2, (n - 1) // 3))),
        init="pca",
        learning_rate="auto",
        max_iter=300,
        method="exact",  # at most a few hundred points: faster here than Barnes-Hut, and deterministic
        random_state=seed % 2**32,
    )
    return np.asarray(tsne.fit_transform(vectors.astype(np.float64)))


def map_subset(n: int, seed: int, points: int | None = None) -> np.ndarray:
    """Which of ``n`` sampled rows go on the style map (seeded, at most ``MAP_POINTS``)."""
    return _positions(n, points or MAP_POINTS, seed)
