"""Quality counts taken part by part on a remote Dask cluster, and merged: the numbers of
``quality.table_quality``, without the client reading the tables.

A part's counts are the whole-table queries of ``quality`` run on that one file, in DuckDB (one
thread): rows, non-null counts, text length histograms, the value counts of category, bool and
label columns, and the sampled free texts (the rows of the table's evenly spaced sample that
fall in the part). What has to be distinct over the whole table is hashed there, with DuckDB's
same 64-bit ``hash`` (texts de-duplicated within the part), and split by bucket
(``hash % buckets``) into one Arrow file per part (``group_rules``' layout), a batch per set and
bucket: set by set, each set's buckets in order, so that a bucket's batches are one per set, in
the sets' order (the sets a table has are known from its layout, so no column says which set a
hash is of):

- set 0, the rows' hashes (all columns but the primary key);
- per text column ``i``, set ``1 + 2i``, its values' hashes; and set ``2 + 2i``, its normalised
  values' hashes (free text), or with a label each (normalised text hash, label hash) pair
  with its rows.

``create`` on a remote cluster whose workers write the parts into the workspace has each
generation task count the part it has just written (:class:`QualityObserver`, its split file in a
folder beside the tables); ``table_quality(..., cluster="tcp://...")`` then counts any other part
(rewritten since, or counted with other buckets) by a task of its own on the cluster, in
``.checks`` beside the tables' folder. A task per bucket counts each set's distinct hashes, and for
a (text, label) set the texts under 2+ labels and their labelled rows; each hash falls in one
bucket, so the sums over the buckets are the whole table's counts. The client sums the rest part
by part. A table whose parts do not all have one schema is measured by DuckDB here (its column
types might then differ between parts, and with them the hashes).

With parts staged in S3 (workers that share no folder with the client), the generation tasks
put their split files under a sibling of the stage, a slot per bucket, and the bucket tasks read
their slots by byte range; a table is counted there only when every part was counted as
written (the parts here are the downloaded copies, which no task sees), else by DuckDB here.

What is sent back is a few kilobytes per part and per bucket; the split files are removed after.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath
from typing import Any, TypeGuard

import numpy as np
import pyarrow as pa

from synthreg.generators import group_rules
from synthreg.generators.constraints import GROUP_KINDS
from synthreg.generators.spec import Spec
from synthreg.generators.staging import PartStage
from synthreg.validators.parts import TableParts
from synthreg.validators.quality import (
    _NORMALIZE,
    Counts,
    Layout,
    _connect,
    _groups,
    _ident,
    _layout,
    _pairs,
    _picked,
    _scan,
    _view,
    _wanted,
)

__all__ = ["PartQuality", "QualityObserver", "counts_by_parts"]

#: The task keys' prefix on a cluster (``<prefix>-part-...``, ``<prefix>-bucket-...``).
PREFIX = "synthreg-quality"
_HASH, _LABEL, _ROWS = "h", "label", "n"
_SCHEMA = pa.schema([(_HASH, pa.uint64())])
#: with (text, label) sets: their label hashes and rows (null in the other sets)
_PAIRS_SCHEMA = pa.schema([*_SCHEMA, (_LABEL, pa.uint64()), (_ROWS, pa.int64())])


@dataclass(frozen=True)
class _PartCounts:
    """What one part's task returns (its hashes went to its split file)."""

    rows: int
    non_null: dict[str, int]
    lengths: dict[str, list[tuple[int, int]]]
    groups: dict[str, list[tuple[str, int]]]
    samples: dict[str, list[str]]
    #: under a stage, where each bucket's slot is in the split object (buckets + 1 offsets)
    offsets: tuple[int, ...] | None = None


@dataclass(frozen=True)
class PartQuality:
    """A part's counts taken where it was written (:class:`QualityObserver`), its hashes in
    ``split``; used only for the same file (size, modification time), layout, buckets and place
    in the table (first row, table rows)."""

    counts: _PartCounts
    layout: Layout
    buckets: int
    size: int
    mtime_ns: int
    #: the split file, or under a stage its object (``bucket/key``)
    split: PurePath
    #: the part's first row and the table's rows, which chose its sampled rows
    first_row: int
    table_rows: int


class QualityObserver:
    """``observe`` for the engine: a part's quality counts taken by the task that just wrote it,
    while it is in that machine's page cache, its hashes split into ``folder`` (which the client
    and every worker see), or with a ``stage`` (S3, for workers that share no folder) into an
    object under it, a slot per bucket; the caller removes them. Picklable; a failure gives None
    (the part is then counted again: by a task of its own, or under a stage by DuckDB where its
    downloaded copy is)."""

    def __init__(self, spec: Spec, folder: Path | None = None, stage: PartStage | None = None) -> None:
        if (folder is None) == (stage is None):
            raise ValueError("a QualityObserver writes to a folder or to a stage")
        self.spec = spec
        self.folder = None if folder is None else Path(folder)
        self.stage = stage
        # decided here, as the client will count them (a worker's settings may differ)
        self.buckets = {
            name: _bucket_count(
                table.rows, sum(c.type in ("text", "llm_text") for c in table.columns.values())
            )
            for name, table in spec.tables.items()
        }

    def __call__(self, table: str, path: Path, first_row: int = 0) -> PartQuality | None:
        try:
            return self._count(table, Path(path), first_row)
        except Exception:  # counted again by counts_by_parts, which raises what it raises
            return None

    def _count(self, table: str, path: Path, first_row: int) -> PartQuality | None:
        import pyarrow.parquet as pq

        spec_table = self.spec.tables[table]
        if spec_table.llm is not None or any(c.type == "llm_text" for c in spec_table.columns.values()):
            return None  # filled in after the engine: these parts change
        if any(rule.kind in GROUP_KINDS for rule in spec_table.constraints):
            return None  # the group rules rewrite these parts after the engine
        info = os.stat(path)
        md = pq.read_metadata(path)
        layout, _ = _layout(spec_table, TableParts(table, (path,), (md,), (md.schema.to_arrow_schema(),)))
        buckets = self.buckets[table]
        wanted = _wanted(spec_table.rows)
        lo, hi = np.searchsorted(wanted, [first_row, first_row + md.num_rows])
        # a name of its own per attempt: a duplicate of this task (a worker wrongly declared dead)
        # that fails mid-upload leaves a cut object under its own key, never under the result's
        name = f"split-{path.stem}-{uuid.uuid4().hex[:8]}.arrow"
        split = (
            PurePosixPath(self.stage.root, table, name)
            if self.stage
            else Path(self.folder or "", table, name)
        )
        counts = _part(path, split, layout, buckets, wanted[lo:hi] - first_row, self.stage)
        return PartQuality(
            counts, layout, buckets, info.st_size, info.st_mtime_ns, split, first_row, spec_table.rows
        )


def counts_by_parts(
    layouts: dict[str, tuple[Layout, TableParts]],
    cluster: str | None,
    observed: Mapping[str, list[tuple[str, Any]]] | None = None,
    stage: PartStage | None = None,
) -> dict[str, Counts]:
    """Each table's ``Counts`` from tasks on ``cluster`` (tables whose parts differ in schema are
    left out: the caller counts them itself). ``observed``: ``GenerationResult.observed`` of a
    run with a :class:`QualityObserver`; a part counted there is not counted again when its file,
    layout and buckets are the same. With the observer's ``stage`` (the cluster's workers do not
    see the files here), only tables whose every part was counted as written are counted, by
    the bucket tasks reading the split objects; the caller counts the others."""
    chosen = {name: lp for name, lp in layouts.items() if _uniform(lp[1]) and lp[1].files}
    if stage is not None:
        chosen = {name: lp for name, lp in chosen.items() if _all_staged(lp, (observed or {}).get(name, []))}
    if not chosen:
        return {}
    files = [f for _, parts in chosen.values() for f in parts.files]
    buckets = {name: _buckets(layout, parts) for name, (layout, parts) in chosen.items()}
    with (
        group_rules._scratch(files, cluster, "synthreg-quality-") as work,
        group_rules._runner(1, cluster, PREFIX) as run,
    ):
        splits: dict[str, list[PurePath]] = {}
        per_part: dict[str, list[_PartCounts | None]] = {}
        tasks, slots = [], []
        for name, (layout, parts) in chosen.items():
            seen = dict((observed or {}).get(name, []))
            splits[name], per_part[name] = [], []
            wanted, offset = _wanted(parts.rows), 0
            for i, (path, md) in enumerate(zip(parts.files, parts.metadata, strict=True)):
                hot = seen.get(path.name)
                if _usable(hot, path, layout, buckets[name], (offset, parts.rows), staged=stage is not None):
                    splits[name].append(hot.split)
                    per_part[name].append(hot.counts)
                else:
                    lo, hi = np.searchsorted(wanted, [offset, offset + md.num_rows])
                    splits[name].append(work / name / f"split-{i:05d}.arrow")
                    per_part[name].append(None)
                    tasks.append((path, splits[name][-1], layout, buckets[name], wanted[lo:hi] - offset))
                    slots.append((name, i))
                offset += md.num_rows
        for (name, i), counted in zip(slots, run(_part, tasks), strict=True):
            per_part[name][i] = counted
        jobs = [(name, b) for name in chosen for b in range(buckets[name])]
        offsets = {name: [c.offsets for c in per_part[name] if c is not None] for name in chosen}
        found = run(
            _bucket,
            [
                (splits[name], b, buckets[name], _sets(chosen[name][0]), stage, _spans(offsets[name], b))
                for name, b in jobs
            ],
        )
    by_table: dict[str, list[dict[int, tuple[int, int, int]]]] = {name: [] for name in chosen}
    for (name, _), counted in zip(jobs, found, strict=True):
        by_table[name].append(counted)
    return {
        name: _merge(chosen[name][0], [c for c in per_part[name] if c is not None], by_table[name])
        for name in chosen
    }


def _all_staged(layout_parts: tuple[Layout, TableParts], found: list[tuple[str, Any]]) -> bool:
    """Every part of the table was counted as written, into a split object under the stage."""
    layout, parts = layout_parts
    seen, buckets = dict(found), _buckets(layout, parts)
    offset = 0
    for path, md in zip(parts.files, parts.metadata, strict=True):
        hot = seen.get(path.name)
        if not _usable(hot, path, layout, buckets, (offset, parts.rows), staged=True):
            return False
        offset += md.num_rows
    return True


def _spans(offsets: list[tuple[int, ...] | None], bucket: int) -> list[tuple[int, int]] | None:
    """Each split object's byte range of ``bucket``'s slot; None for split files here."""
    if not offsets or any(o is None for o in offsets):
        return None
    return [(o[bucket], o[bucket + 1]) for o in offsets if o is not None]


def _usable(
    found: Any, path: Path, layout: Layout, buckets: int, place: tuple[int, int], *, staged: bool = False
) -> TypeGuard[PartQuality]:
    """``found`` is what counting ``path`` here would give: the same file, layout and buckets, and
    the same ``place`` (the part's first row, the table's rows), which chose its sampled rows."""
    if not isinstance(found, PartQuality) or found.layout != layout or found.buckets != buckets:
        return False
    if (found.first_row, found.table_rows) != place:
        return False
    try:
        info = os.stat(path)
    except OSError:
        return False
    if (info.st_size, info.st_mtime_ns) != (found.size, found.mtime_ns):
        return False
    return found.counts.offsets is not None if staged else Path(found.split).is_file()


def _uniform(parts: TableParts) -> bool:
    first = parts.schemas[0] if parts.schemas else None
    return first is not None and all(s.equals(first, check_metadata=False) for s in parts.schemas)


def _sets(layout: Layout) -> tuple[tuple[int, bool], ...]:
    """The sets of hashes a table has, in the order its parts' split files hold them: (set, whether
    it is of (normalised text, label) pairs)."""
    pairs = _pair_sets(layout)
    return tuple((kind, kind in pairs) for kind, _ in _queries(layout))


def _pair_sets(layout: Layout) -> frozenset[int]:
    """The sets of (normalised text, label) pairs: text columns counted against a label."""
    return frozenset(2 + 2 * i for i, name in enumerate(layout.texts) if layout.text_label(name))


def _buckets(layout: Layout, parts: TableParts) -> int:
    return _bucket_count(parts.rows, len(layout.texts))


def _bucket_count(rows: int, texts: int) -> int:
    """Buckets of at most ``group_rules.BUCKET_ROWS`` hashes, counting every set's (the rows', and
    two per text column)."""
    return group_rules._bucket_count(rows * (1 + 2 * texts), 1)


# ---------------------------------------------------------------- a part's task


def _part(
    path: Path,
    split: PurePath,
    layout: Layout,
    buckets: int,
    sampled: np.ndarray,
    stage: PartStage | None = None,
) -> _PartCounts:
    """One part's counts, and its distinct hashes by bucket in ``split`` (under a ``stage``, the
    object ``split``, a slot per bucket)."""
    with _connect(threads=1) as con:
        _view(con, [path])
        rows, _, non_null, lengths = _scan(con, layout, distinct=False)
        groups = {name: _groups(con, name) for name in layout.shares}
        schema = _PAIRS_SCHEMA if _pair_sets(layout) else _SCHEMA
        hashed = [_by_bucket(_hashes(con, q, schema), buckets) for _, q in _queries(layout)]
    if not hashed:  # no set at all (only a key column): one empty batch per bucket
        hashed = [(schema.empty_table(), [0] * buckets)]
    offsets = group_rules._write_batches(split, hashed, stage, buckets)
    md = _metadata(path)
    samples = _picked(path, md, list(layout.free), np.asarray(sampled, dtype=np.int64))
    return _PartCounts(rows, non_null, lengths, groups, samples, None if offsets is None else tuple(offsets))


def _metadata(path: Path) -> Any:
    import pyarrow.parquet as pq

    return pq.read_metadata(path)


def _queries(layout: Layout) -> list[tuple[int, str]]:
    """SQL for each set of distinct hashes (columns h, and for pairs label and n)."""
    out = []
    if layout.hashed:  # rows are mostly distinct: DuckDB's DISTINCT here took 6x the hashing
        out.append((0, f"SELECT hash({', '.join(layout.hashed)}) AS h FROM t"))
    for i, name in enumerate(layout.texts):
        q, label, free = _ident(name), layout.text_label(name), name in layout.free
        out.append((1 + 2 * i, f"SELECT DISTINCT hash({q}) AS h FROM t WHERE {q} IS NOT NULL"))
        norm = _NORMALIZE.format("v") if free else "v"
        if label is not None:
            out.append(
                (
                    2 + 2 * i,
                    # a label by its hash: DuckDB's count(DISTINCT l) takes 0.0 and -0.0 (and NaN
                    # and -NaN) as one value, and so does its hash; their text would be two
                    f"SELECT hash({norm}) AS h, CASE WHEN l IS NULL THEN NULL ELSE hash(l) END AS label, "
                    f"sum(n)::BIGINT AS n FROM ({_pairs(q, label)}) GROUP BY h, label",
                )
            )
        elif free:
            values = f"SELECT DISTINCT {q} AS v FROM t WHERE {q} IS NOT NULL"
            out.append((2 + 2 * i, f"SELECT DISTINCT hash({norm}) AS h FROM ({values})"))
    return out


def _hashes(con: Any, sql: str, schema: pa.Schema) -> pa.Table:
    """One set's hashes (and with ``_PAIRS_SCHEMA`` its label hashes and rows, or nulls)."""
    found = con.sql(sql).to_arrow_table()
    rows = found.num_rows
    columns = {_HASH: found.column("h")}
    for name, typ, column in ((_LABEL, pa.uint64(), "label"), (_ROWS, pa.int64(), "n")):
        if name in schema.names:
            columns[name] = found.column(column) if column in found.column_names else pa.nulls(rows, typ)
    return pa.table({n: c.cast(schema.field(n).type) for n, c in columns.items()}, schema=schema)


def _by_bucket(data: pa.Table, buckets: int) -> tuple[pa.Table, list[int]]:
    """``data`` sorted by the bucket of its hashes (``hash % buckets``), and each bucket's rows."""
    bucket = (data.column(_HASH).to_numpy() % np.uint64(buckets)).astype(np.uint16)
    assert buckets <= 1 << 16, buckets  # group_rules._MAX_BUCKETS: as 16 bits, a radix sort
    return data.take(np.argsort(bucket, kind="stable")), np.bincount(bucket, minlength=buckets).tolist()


# ---------------------------------------------------------------- a bucket's task


def _bucket(
    splits: Sequence[PurePath],
    bucket: int,
    buckets: int,
    sets: tuple[tuple[int, bool], ...],
    stage: PartStage | None = None,
    spans: list[tuple[int, int]] | None = None,
) -> dict[int, tuple[int, int, int]]:
    """Per set, in one bucket over every part: distinct hashes; for a (text, label) set also the
    texts seen under 2+ labels and the labelled rows that carry them. ``sets``: the table's, as
    ``_sets`` gives them (a part's batches of the bucket, in order). Under a ``stage``, each split
    object's slot of the bucket is read by its byte range (``spans``), one GET each."""
    if stage is not None:
        assert spans is not None, "split objects are read by their slots' byte ranges"
    reads = [(split, bucket, buckets, spans[i] if spans else None) for i, split in enumerate(splits)]
    found = group_rules._read_each(reads, stage)
    out: dict[int, tuple[int, int, int]] = {}
    for i, (kind, pairs) in enumerate(sets):
        pieces = [batches[i] for batches in found if batches[i].num_rows]
        if not pieces:
            continue
        chosen = pa.Table.from_batches(pieces)
        if not pairs:
            out[kind] = (_distinct(chosen.column(_HASH).to_numpy()), 0, 0)
            continue
        import pyarrow.compute as pc

        labelled = pc.if_else(pc.is_valid(chosen.column(_LABEL)), chosen.column(_ROWS), 0)
        texts = pa.table({_HASH: chosen.column(_HASH), _LABEL: chosen.column(_LABEL), _ROWS: labelled})
        grouped = texts.group_by(_HASH).aggregate([(_LABEL, "count_distinct"), (_ROWS, "sum")])
        many = grouped.column(f"{_LABEL}_count_distinct").to_numpy() > 1
        rows = grouped.column(f"{_ROWS}_sum").to_numpy()[many]
        out[kind] = (grouped.num_rows, int(many.sum()), int(rows.sum()))
    return out


def _distinct(values: np.ndarray) -> int:
    """Distinct values, by sorting (NumPy 2.4's hash-based ``unique`` took 10x longer on 64-bit
    hashes)."""
    if not values.size:
        return 0
    ordered = np.sort(values)
    return 1 + int(np.count_nonzero(ordered[1:] != ordered[:-1]))


# ---------------------------------------------------------------- merged


def _merge(
    layout: Layout, parts: list[_PartCounts], buckets: list[dict[int, tuple[int, int, int]]]
) -> Counts:
    """A table's counts from its parts' and its buckets'."""
    totals: dict[int, list[int]] = {}
    for counted in buckets:
        for kind, values in counted.items():
            total = totals.setdefault(kind, [0, 0, 0])
            for i, v in enumerate(values):
                total[i] += v
    rows = sum(p.rows for p in parts)

    def distinct(kind: int) -> int:
        return totals.get(kind, [0, 0, 0])[0]

    texts: dict[str, tuple[int, int, tuple[int, int] | None]] = {}
    for i, name in enumerate(layout.texts):
        raw = distinct(1 + 2 * i)
        if layout.text_label(name) is not None:
            _, many, labelled = totals.get(2 + 2 * i, [0, 0, 0])
            texts[name] = (raw, distinct(2 + 2 * i), (many, labelled))
        else:
            texts[name] = (raw, distinct(2 + 2 * i) if name in layout.free else raw, None)
    return Counts(
        rows=rows,
        distinct=(distinct(0) if layout.hashed else rows) if rows else 0,
        non_null={c: sum(p.non_null[c] for p in parts) for c in layout.names},
        lengths={c: _added([p.lengths[c] for p in parts]) for c in layout.texts},
        groups={c: _added([p.groups[c] for p in parts]) for c in layout.shares},
        texts=texts,
        samples={c: [v for p in parts for v in p.samples[c]] for c in layout.free},
    )


def _added(counts: list[list[tuple[Any, int]]]) -> list[tuple[Any, int]]:
    """(key, count) lists summed key by key, by key."""
    out: dict[Any, int] = {}
    for pairs in counts:
        for key, n in pairs:
            out[key] = out.get(key, 0) + n
    return sorted(out.items())
