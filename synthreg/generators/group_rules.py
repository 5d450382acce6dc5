"""Group constraints as a shuffle by group hash: no process holds a whole table's columns.

``sum_limit``, ``max_rows_per_group`` and ``unique_combination`` need every row of a group, and
a group's rows are spread over every part. Each rule is one round of tasks:

- *split*, one task per part: the rule's columns of the part, each row with its number in the
  part, its keep flag and its current value (earlier rounds folded in), written a row group at
  a time as one Arrow batch per bucket (one file per part); a row's bucket is a hash of its
  group's key values, so all the rows of a group meet in one bucket, whatever part they come
  from;
- *reduce*, one task per bucket: its batch from every part, in part order (so each group's
  rows are in table order), the rule applied to its groups, and what it decided (keep, new
  value) written back as one batch per part.

A rule's outcome for a group depends only on that group's rows in table order (totals are
summed row by row within a group, running sums restart at each group), and what crosses
buckets (how many groups broke a rule, the largest total, the excess and room a redistribution
shares, as exact sums) is merged here; so the result is the same for any number of buckets,
parts or workers. Then an *apply* task per part folds every round into the part and writes it,
a row group at a time, under a temporary name, hashing what it writes (the file, and the table
digest's blocks wholly in the part: the caller joins the rows a block boundary splits between
parts); the parts are renamed over the engine's only when every part's moved values fit their
column, so a refused rule leaves the parts as generated. Validation measures a rule with the
same split and reduce (``measure``), in its own process.

The tasks run in a process pool on this machine, or on a remote Dask cluster whose workers
share the workspace's filesystem (where the engine's own tasks wrote the parts). The pieces live
in a scratch folder beside the tables, removed at the end. With parts staged in S3 by a cluster
that shares no folder with this machine (``staging.PartStage``), the tasks read the staged
parts, keep their pieces under ``<stage>/groups/`` and upload the rewritten parts to
``<stage>/rewritten/``, from where the client downloads them (checked as any staged part): no
table passes through the client before it is final.

Validation's checks by buckets work the same way: ``repeats`` (uniqueness), ``absent`` (foreign
keys) and ``late`` (time order) split by a hash of the value or key, a task per part, and count a
bucket at a time, a task per bucket; here, or on a cluster whose workers share the tables'
folder (with staged parts they run in the validating process, on its checked copies).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from synthreg import env, faults
from synthreg.digest import DIGEST_BLOCK_ROWS, TableHasher
from synthreg.errors import SpecError
from synthreg.generators.constraints import GROUP_KINDS, ConstraintViolation, _as_numbers, part_writer
from synthreg.generators.filehash import FileHash, hash_file
from synthreg.generators.spec import Constraint, Spec
from synthreg.generators.staging import PartStage, StagingError, cached_filesystem, scratch_root

__all__ = [
    "BUCKET_ROWS",
    "Absent",
    "GroupFacts",
    "Late",
    "Repeats",
    "Rewritten",
    "absent",
    "enforce",
    "group_ids",
    "late",
    "measure",
    "repeats",
]

#: Rows per bucket at most: a reduce task holds one bucket's columns, keep flags, values and
#: group numbers (at 50M rows with 2 workers the tree's peak stayed under 900 MB).
BUCKET_ROWS = 1 << 21
#: Below this many rows a table is one bucket, however many workers there are.
_SPLIT_MIN_ROWS = 100_000
_MAX_BUCKETS = 1 << 14
_ROW, _KEEP, _VALUE = "__row", "__keep", "__value"
_NULL_HASH = np.uint64(0x5BD1E995)
_MIX = np.uint64(0x9E3779B97F4A7C15)


# ---------------------------------------------------------------- group numbers and buckets


def _plain(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """One array, a dictionary column decoded to its values."""
    typ = column.type
    decoded = column.cast(typ.value_type) if pa.types.is_dictionary(typ) else column
    return decoded.combine_chunks() if isinstance(decoded, pa.ChunkedArray) else decoded


def _is_text(typ: pa.DataType) -> bool:
    return pa.types.is_string(typ) or pa.types.is_large_string(typ)


def _key(column: pa.ChunkedArray) -> np.ndarray:
    """One int64 per row such that equal values get equal keys (within this column)."""
    if pa.types.is_dictionary(column.type):  # its indices in the chunks' dictionaries made one
        return np.asarray(pc.fill_null(column.combine_chunks().indices, -1), dtype=np.int64)
    array = _plain(column)
    if _is_text(array.type):
        return np.asarray(pc.fill_null(pc.dictionary_encode(array).indices, -1), dtype=np.int64)
    if pa.types.is_boolean(array.type):
        return np.asarray(pc.fill_null(array, False), dtype=np.int64)
    values, _ = _as_numbers(array)
    return values.view(np.int64) if values.dtype == np.float64 else values.astype(np.int64)


def group_ids(data: pa.Table, columns: list[str]) -> np.ndarray:
    """Dense group numbers (0, 1, ...) for the rows of ``data`` grouped by ``columns``: equal
    keys, equal numbers. Which group gets which number is not part of the contract (the rules
    treat every group alike), so each column's keys are ranked the fastest way: a dictionary by
    its indices, text by first appearance, numbers by value (``np.unique(axis=0)`` on the
    stacked keys gives the same groups, 10-20x slower: it sorts the rows as structured values).

    The columns' ranks are combined in mixed radix, and the combination is ranked again
    whenever the next radix could overflow int64.
    """
    combined: np.ndarray | None = None
    for name in columns:
        codes, radix = _dense_ranks(_key(data.column(name)))
        if combined is None:
            combined = codes
            continue
        if combined.max(initial=0) >= np.iinfo(np.int64).max // max(radix, 1):
            combined = _dense_ranks(combined)[0]
        combined = combined * radix + codes
    assert combined is not None, "group rules name at least one column"
    return combined if len(columns) == 1 else _dense_ranks(combined)[0]


def _dense_ranks(keys: np.ndarray) -> tuple[np.ndarray, int]:
    """Each key's rank among the distinct keys (0, 1, ...), and how many there are. Keys within
    a span of a few times their count (row numbers, foreign keys, combined ranks) are ranked
    through a table of the span; others by sorting (``np.unique``)."""
    if not len(keys):
        return keys.astype(np.int64), 0
    low, high = int(keys.min()), int(keys.max())
    if high - low <= 4 * len(keys) + 1024:
        offsets = keys - low
        present = np.zeros(high - low + 1, dtype=bool)
        present[offsets] = True
        ranks = np.cumsum(present, dtype=np.int64) - 1
        return ranks[offsets], int(ranks[-1]) + 1
    uniques, inverse = np.unique(keys, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64, copy=False), len(uniques)


def _buckets(data: pa.Table, columns: list[str], buckets: int) -> np.ndarray:
    """Each row's bucket: a hash of its key values, the same in every part (text is hashed by
    its characters, numbers by their bits, as ``_key`` groups them)."""
    import pandas as pd

    mixed = np.zeros(data.num_rows, dtype=np.uint64)
    for name in columns:
        column = data.column(name)
        if pa.types.is_dictionary(column.type) and _is_text(column.type.value_type):
            array = column.combine_chunks()  # one dictionary: its words hashed once each
            codes = np.asarray(pc.fill_null(array.indices, -1), dtype=np.int64)
            column_hash = np.append(_text_hash(array.dictionary), _NULL_HASH)[codes]
        elif _is_text(column.type):
            column_hash = _text_hash(_plain(column))
        else:
            column_hash = pd.util.hash_array(_key(column))
        mixed = mixed * _MIX ^ column_hash
    return (mixed % np.uint64(buckets)).astype(np.int64)


def _text_hash(array: pa.Array) -> np.ndarray:
    """A hash of each string from its length and its first and last 8 bytes, vectorized (equal
    strings hash alike; strings differing only in the middle share a bucket, which is allowed);
    null strings get ``_NULL_HASH``."""
    import pandas as pd

    if not len(array):
        return np.zeros(0, dtype=np.uint64)
    binary = array.cast(pa.large_binary())
    offsets = np.frombuffer(binary.buffers()[1], dtype=np.int64)[
        binary.offset : binary.offset + len(binary) + 1
    ]
    data = binary.buffers()[2]
    padded = np.append(np.frombuffer(data, dtype=np.uint8) if data is not None else [], np.zeros(8, np.uint8))
    starts, ends = offsets[:-1], offsets[1:]
    ahead = np.arange(8)

    def eight(first: np.ndarray) -> np.ndarray:
        raw = padded.astype(np.uint8, copy=False)[first[:, None] + ahead] * (
            first[:, None] + ahead < ends[:, None]
        )
        return np.ascontiguousarray(raw, dtype=np.uint8).view(np.uint64).reshape(-1)

    hashed = pd.util.hash_array(ends - starts) * _MIX ^ pd.util.hash_array(eight(starts))
    hashed = hashed * _MIX ^ pd.util.hash_array(eight(np.maximum(ends - 8, starts)))
    valid = np.asarray(array.is_valid(), dtype=bool)
    return np.where(valid, hashed, _NULL_HASH)


def _bucket_count(rows: int, workers: int) -> int:
    wanted = max(workers if rows >= _SPLIT_MIN_ROWS else 1, -(-rows // BUCKET_ROWS))
    return max(1, min(wanted, _MAX_BUCKETS))


# ---------------------------------------------------------------- exact sums


def _exact(values: np.ndarray) -> dict[int, int]:
    """``values`` summed exactly, as integer sums of their mantissas by binary exponent: sums of
    disjoint sets add up key by key, so the total does not depend on how the values were split."""
    finite = values[np.isfinite(values)]
    mantissas, exponents = np.frexp(finite)
    ints = (mantissas * 2.0**53).astype(np.int64)  # exact: |mantissa| < 1
    high, low = ints >> 26, ints & ((1 << 26) - 1)  # each sum fits int64 up to 2**36 values
    out: dict[int, int] = {}
    for exponent in np.unique(exponents):
        chosen = exponents == exponent
        out[int(exponent)] = int(high[chosen].sum()) * (1 << 26) + int(low[chosen].sum())
    return out


def _merge_exact(sums: Sequence[dict[int, int]]) -> float:
    """The total of exact sums, correctly rounded to a float (as ``math.fsum`` would give)."""
    total = Fraction(0)
    merged: dict[int, int] = {}
    for part in sums:
        for exponent, value in part.items():
            merged[exponent] = merged.get(exponent, 0) + value
    for exponent, value in merged.items():
        total += Fraction(value) * Fraction(2) ** (exponent - 53)
    return float(total)


# ---------------------------------------------------------------- one rule over one bucket


@dataclass
class _Outcome:
    """What a reduce task tells the caller: rows changed, groups that broke the rule, the
    largest group total, and for a redistribution its excess and room (exact sums)."""

    changed: int = 0
    groups: int = 0
    over: int = 0
    worst: float = -math.inf
    excess: dict[int, int] = field(default_factory=dict)
    room: dict[int, int] = field(default_factory=dict)
    #: per part, how many of its rows in this bucket are kept after this rule
    kept: list[int] = field(default_factory=list)
    #: under a stage, where each part's piece starts in the bucket's object (and where it ends)
    offsets: list[int] | None = None


def _largest(totals: np.ndarray) -> float:
    return float(totals.max()) if len(totals) else -math.inf  # an empty bucket's are int64


def _drop_overflow(groups: np.ndarray, values: np.ndarray, limit: float, keep: np.ndarray) -> int:
    """Drop each row whose group's running sum (in row order, kept rows only) passes ``limit``."""
    if not len(groups):
        return 0
    running = _running_sums(groups, np.where(keep, values, 0.0))
    dropped = (running > limit + 1e-9) & keep
    keep[dropped] = False
    return int(dropped.sum())


def _running_sums(groups: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each row's sum of its group's values up to it, added in row order, restarting at each
    group. Whole numbers (row counts) that stay below 2**53 add up exactly in any order: one
    cumulative sum over the rows sorted by group, less each group's start. Other values are
    added one by one within their group (pandas' grouped cumsum), so no other group's rows
    round them."""
    if np.array_equal(values, np.floor(values)) and float(np.abs(values).sum()) < 2.0**53:
        order = np.argsort(groups, kind="stable")
        ordered = values[order]
        running = np.cumsum(ordered)
        starts = np.r_[0, np.flatnonzero(np.diff(groups[order])) + 1]
        running -= np.repeat(running[starts] - ordered[starts], np.diff(np.r_[starts, len(order)]))
        out = np.empty_like(running)
        out[order] = running
        return out
    import pandas as pd

    return pd.Series(values).groupby(groups, sort=False).cumsum().to_numpy()


def _sum_limit(
    rule: Constraint,
    groups: np.ndarray,
    keep: np.ndarray,
    values: np.ndarray,
    share: float | None,
    slack: float,
) -> tuple[_Outcome, np.ndarray | None]:
    assert rule.limit is not None
    values = np.where(keep, values, 0.0)
    totals = np.bincount(groups, weights=values)
    over = totals > rule.limit + slack
    outcome = _Outcome(groups=len(totals), over=int(over.sum()), worst=_largest(totals))
    if rule.action == "error":
        return outcome, None
    if rule.action == "drop":
        if outcome.over:
            outcome.changed = _drop_overflow(groups, values, rule.limit, keep)
        return outcome, None
    factor = np.where(over, rule.limit / np.maximum(totals, 1e-12), 1.0)
    new = values * factor[groups]
    outcome.changed = int(over[groups].sum())
    if rule.action == "redistribute":
        # every group with headroom gets its share, also in a bucket where no group is over
        headroom = np.maximum(rule.limit - totals, 0.0)
        if share is None:  # the first pass: how much there is to move, and room for it
            outcome.excess = _exact(np.maximum(totals - rule.limit, 0.0))
            outcome.room = _exact(headroom)
            return outcome, None
        counts = np.bincount(groups, minlength=len(totals))
        per_row = np.where(counts > 0, headroom * share / np.maximum(counts, 1), 0.0)
        new = new + np.where(headroom[groups] > 0, per_row[groups], 0.0)
    return outcome, new


def _at_most(rule: Constraint, groups: np.ndarray, keep: np.ndarray, limit: float) -> _Outcome:
    """``max_rows_per_group`` and ``unique_combination`` (at most one row per combination)."""
    ones = keep.astype(np.float64)
    counts = np.bincount(groups, weights=ones)
    outcome = _Outcome(groups=len(counts), over=int((counts > limit).sum()), worst=_largest(counts))
    if rule.action == "drop" and outcome.over:
        outcome.changed = _drop_overflow(groups, ones, limit, keep)
    return outcome


def _apply_rule(
    rule: Constraint, data: pa.Table, keep: np.ndarray, share: float | None, slack: float = 1e-9
) -> tuple[_Outcome, np.ndarray | None]:
    """The rule over the groups of ``data`` (whole groups, rows in table order): ``keep`` is
    updated in place; the new values of a ``sum_limit`` column are returned."""
    if rule.kind == "sum_limit":
        values = data.column(_VALUE).to_numpy()
        return _sum_limit(rule, group_ids(data, rule.group_by), keep, values, share, slack)
    if rule.kind == "max_rows_per_group":
        return _at_most(rule, group_ids(data, rule.group_by), keep, float(rule.limit or 0)), None
    return _at_most(rule, group_ids(data, rule.columns), keep, 1.0), None


def _violation(rule: Constraint, table: str, outcome: _Outcome) -> ConstraintViolation:
    if rule.kind == "sum_limit":
        assert rule.limit is not None
        return ConstraintViolation(
            f"{table}: {outcome.over} groups of {', '.join(rule.group_by)} exceed "
            f"sum({rule.column}) <= {rule.limit:g} (up to {outcome.worst:g}); "
            "use action cap, redistribute or drop"
        )
    if rule.kind == "max_rows_per_group":
        return ConstraintViolation(
            f"{table}: groups of {', '.join(rule.group_by)} exceed {rule.limit:g} rows; use action drop"
        )
    return ConstraintViolation(
        f"{table}: {outcome.over} combinations of {', '.join(rule.columns)} repeat; use action drop"
    )


# ---------------------------------------------------------------- the tasks


@dataclass(frozen=True)
class _Job:
    """One table's group rules: what every task needs (sent to each, so kept small)."""

    spec: Spec
    table: str
    #: the parts: files here, or with a ``stage`` its objects (``bucket/key``)
    files: tuple[PurePath, ...]
    #: the pieces' folder, here or under the stage
    work: PurePath
    buckets: int
    rules: tuple[Constraint, ...]
    slack: float = 1e-9  # a group's sum over its limit by no more than this holds
    #: where ``files`` and ``work`` are: None for this machine's filesystem
    stage: PartStage | None = None
    #: with a stage, where the rewritten parts go (``<stage>/rewritten``)
    out: PartStage | None = None
    #: with a stage, each part's sha256 (its worker's): a task reads a part only if it matches
    sha256: tuple[str, ...] = ()

    def split_file(self, rnd: int, part: int) -> PurePath:
        return self.work / f"r{rnd}" / f"split-{part:05d}.arrow"

    def reduce_file(self, rnd: int, bucket: int) -> PurePath:
        return self.work / f"r{rnd}" / f"reduce-{bucket:05d}.arrow"

    def parquet(self, part: int) -> pq.ParquetFile:
        """Part ``part`` here; under a stage, its object read whole into memory and checked
        against its worker's sha256 (``StagingError`` if it changed since it was staged)."""
        path = self.files[part]
        if self.stage is None:
            return pq.ParquetFile(path)
        return pq.ParquetFile(pa.BufferReader(self.stage.read_checked(str(path), self.sha256[part])))


#: Where one slot's pieces are in a pieces object under a stage: its (start, end) bytes.
_Span = tuple[int, int]


def _write_batches(
    path: PurePath,
    tables: Iterable[tuple[pa.Table, Sequence[int]]],
    stage: PartStage | None = None,
    slots: int = 1,
) -> list[int] | None:
    """Each table as consecutive batches of its ``counts`` rows (empty ones too), so that the
    file's batches are, for each table in turn, its pieces in order; written under a temporary
    name and renamed (a retried task rewrites the same file).

    With a ``stage``, the object ``path`` holds the same batches by slot instead (a slot is a
    reader's share: batch ``i`` is slot ``i % slots``), each slot one Arrow IPC stream, one after
    the other, and the slots' byte offsets are returned, so that a reader gets its pieces in one
    ranged GET (``_read_pieces``) rather than a request per batch. Written here, then put at
    its fixed key (one PUT below pyarrow's 10 MiB upload part, a multipart upload above; a
    retried task puts the same bytes, and a failed put raises, so no reader takes its key)."""
    if stage is not None:
        with tempfile.TemporaryDirectory(prefix="synthreg-pieces-", dir=scratch_root()) as local:
            _write_batches(Path(local) / "file.arrow", tables)
            offsets = _by_slot(Path(local) / "file.arrow", Path(local) / path.name, slots)
            stage.put(Path(local) / path.name, str(path))
        return offsets
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with contextlib.ExitStack() as stack:
        writer = None
        for table, counts in tables:
            if writer is None:
                sink = stack.enter_context(pa.OSFile(str(partial), "wb"))
                writer = stack.enter_context(pa.ipc.new_file(sink, table.schema))
            whole = table.combine_chunks()
            batch = whole.to_batches()[0] if whole.num_rows else pa.RecordBatch.from_pylist([], table.schema)
            offset = 0
            for count in counts:
                writer.write_batch(batch.slice(offset, count))
                offset += count
    partial.replace(path)
    return None


def _by_slot(source: Path, target: Path, slots: int) -> list[int]:
    """The Arrow file ``source``'s batches as ``slots`` IPC streams in ``target`` (batches ``s``,
    ``s + slots``, ... in stream ``s``); the streams' byte offsets (``slots + 1`` of them)."""
    with pa.memory_map(str(source)) as data, pa.OSFile(str(target), "wb") as sink:
        reader = pa.ipc.open_file(data)
        offsets = [0]
        for slot in range(slots):
            with pa.ipc.new_stream(sink, reader.schema) as writer:
                for i in range(slot, reader.num_record_batches, slots):
                    writer.write_batch(reader.get_batch(i))
            offsets.append(sink.tell())
    return offsets


def _read_pieces(
    path: PurePath, index: int, every: int, stage: PartStage | None = None, span: _Span | None = None
) -> list[pa.RecordBatch]:
    """Batches ``index``, ``index + every``, ... of an Arrow file (a bucket's pieces of a part);
    under a ``stage``, slot ``index`` of the object ``path``: the bytes ``span`` of it."""
    if stage is None:
        with pa.memory_map(str(path)) as source:
            reader = pa.ipc.open_file(source)
            return [reader.get_batch(i) for i in range(index, reader.num_record_batches, every)]
    assert span is not None, "a staged pieces object is read by the span of its slot"
    start, end = span
    with cached_filesystem(stage).open_input_file(str(path)) as source:
        return list(pa.ipc.open_stream(source.read_at(end - start, start)))


#: Objects a task reads at once under a stage: each read waits on the store (two requests).
_READS = 8


def _read_each(
    reads: Sequence[tuple[PurePath, int, int, _Span | None]], stage: PartStage | None
) -> list[list[pa.RecordBatch]]:
    """``_read_pieces(path, index, every, stage, span)`` for each read, in order; under a stage,
    ``_READS`` at a time."""
    if stage is None or len(reads) < 2:
        return [_read_pieces(path, index, every, stage, span) for path, index, every, span in reads]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=_READS, thread_name_prefix="synthreg-pieces") as pool:
        return list(pool.map(lambda read: _read_pieces(read[0], read[1], read[2], stage, read[3]), reads))


def _bucket_rows(splits: Sequence[Path], bucket: int, buckets: int) -> pa.Table:
    """A bucket's rows from every split file, in the files' order (table order)."""
    return pa.Table.from_batches([b for path in splits for b in _read_pieces(path, bucket, buckets)])


def _row_groups(source: pq.ParquetFile, columns: list[str]) -> Iterator[pa.Table]:
    """``columns`` of each row group of a part in turn; an empty part gives one empty table."""
    if not source.num_row_groups:
        yield source.schema_arrow.empty_table().select(columns)
    for group in range(source.num_row_groups):
        yield source.read_row_group(group, columns=columns)


def _by_bucket(table: pa.Table, keys: pa.Table, names: list[str], buckets: int) -> tuple[pa.Table, list[int]]:
    """``table``'s rows sorted by the bucket of their ``names`` in ``keys`` (stably, so each
    bucket keeps table order), and how many rows each bucket got."""
    bucket = _buckets(keys, names, buckets)
    return table.take(np.argsort(bucket, kind="stable")), np.bincount(bucket, minlength=buckets).tolist()


#: For a part task under a stage: by round, where the part's piece is in each bucket's object.
_PartSpans = dict[int, list[_Span]] | None


def _fold(
    job: _Job, rounds: int, valued: frozenset[int], part: int, rows: int, spans: _PartSpans = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The part's keep flags and moved values after the first ``rounds`` rules (the values of
    the rounds in ``valued``: those that changed some group); the part has ``rows`` rows."""
    keep = np.ones(rows, dtype=bool)
    moved: dict[str, np.ndarray] = {}
    for rnd in range(rounds):
        column = job.rules[rnd].column
        if job.rules[rnd].action == "error":  # checked, nothing changed, no pieces written
            continue
        reads = [
            (job.reduce_file(rnd, b), part, len(job.files), spans[rnd][b] if spans is not None else None)
            for b in range(job.buckets)
        ]
        for (piece,) in _read_each(reads, job.stage):
            where = piece.column(_ROW).to_numpy()
            keep[where] = piece.column(_KEEP).to_numpy(zero_copy_only=False)
            if rnd in valued and column:
                moved.setdefault(column, np.zeros(rows))[where] = piece.column(_VALUE).to_numpy()
    return keep, moved


def _split(
    job: _Job, rnd: int, valued: frozenset[int], part: int, spans: _PartSpans = None
) -> list[int] | None:
    """The part's rows by bucket, a row group at a time: for each row group, one batch per bucket
    (under a stage: the byte offsets of each bucket's pieces, see ``_write_batches``)."""
    rule = job.rules[rnd]
    keys = rule.group_by if rule.kind != "unique_combination" else rule.columns
    source = job.parquet(part)
    keep, moved = _fold(job, rnd, valued, part, source.metadata.num_rows, spans)
    needed = sorted({*keys, *([rule.column] if rule.column else [])})

    def pieces() -> Iterator[tuple[pa.Table, list[int]]]:
        offset = 0
        for data in _row_groups(source, needed):
            end = offset + data.num_rows
            columns: dict[str, Any] = {_ROW: np.arange(offset, end, dtype=np.int64), _KEEP: keep[offset:end]}
            if rule.kind == "sum_limit":
                assert rule.column
                value = moved.get(rule.column)
                columns[_VALUE] = (
                    value[offset:end]
                    if value is not None
                    else np.asarray(
                        pc.fill_null(data.column(rule.column), 0).to_numpy(zero_copy_only=False),
                        dtype=np.float64,
                    )
                )
            for name in keys:
                columns[name] = data.column(name)
            yield _by_bucket(pa.table(columns), data, keys, job.buckets)
            offset = end

    return _write_batches(job.split_file(rnd, part), pieces(), job.stage, job.buckets)


def _reduce(
    job: _Job, rnd: int, share: float | None, bucket: int, spans: list[_Span] | None = None
) -> _Outcome:
    """The rule over the bucket's rows from every part (under a stage, ``spans``: where the
    bucket's pieces are in each part's object)."""
    rule = job.rules[rnd]
    reads = [
        (job.split_file(rnd, p), bucket, job.buckets, spans[p] if spans else None)
        for p in range(len(job.files))
    ]
    pieces = _read_each(reads, job.stage)
    data = pa.Table.from_batches([b for part in pieces for b in part])
    keep = data.column(_KEEP).to_numpy().copy()
    outcome, values = _apply_rule(rule, data, keep, share, job.slack)
    if rule.action == "error" or (rule.action == "redistribute" and share is None):
        return outcome
    out: dict[str, Any] = {_ROW: data.column(_ROW), _KEEP: keep}
    if values is not None:
        out[_VALUE] = values
    counts = [sum(b.num_rows for b in part) for part in pieces]
    outcome.offsets = _write_batches(
        job.reduce_file(rnd, bucket), [(pa.table(out), counts)], job.stage, len(job.files)
    )
    bounds = np.cumsum([0, *counts])
    outcome.kept = [int(keep[a:b].sum()) for a, b in itertools.pairwise(bounds)]
    return outcome


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name}.groups.tmp")


@dataclass(frozen=True)
class _Applied:
    """A rewritten part: its file's hashes, and its rows' share of the table digest (it starts at
    row ``offset`` of the table): the digests of the blocks wholly in it, and the rows before the
    first block boundary (``head``) and after the last (``tail``), which share their blocks with
    the neighbouring parts' rows."""

    hashed: FileHash
    head: pa.Table | None
    blocks: list[bytes]
    tail: pa.Table | None


def _apply(
    job: _Job, valued: frozenset[int], part: int, offset: int, spans: _PartSpans = None
) -> _Applied | tuple[str, str]:
    """Fold every round into the part and write it beside it (``_partial``), a row group at a
    time, hashing what it writes; with a stage, write it here and upload it to ``job.out``. A
    moved value its column cannot hold is returned as (column, why), and nothing is written."""
    from synthreg.generators.columns import out_of_range

    source = job.parquet(part)
    keep, moved = _fold(job, len(job.rules), valued, part, source.metadata.num_rows, spans)
    schema = source.schema_arrow
    columns: dict[str, pa.Array] = {}
    for name, values in moved.items():
        decimals = job.spec.tables[job.table].columns[name].decimals
        if decimals is not None:  # round down: a capped group must not creep over its limit
            values = np.floor(values * 10.0**decimals + 1e-9) / 10.0**decimals
        typ = schema.field(name).type
        if pa.types.is_integer(typ):
            values = np.floor(values + 1e-9)
        why = out_of_range(values, typ)
        if why:
            return name, why
        columns[name] = pa.array(
            values.astype(np.dtype(str(typ))) if pa.types.is_integer(typ) else values, type=typ
        )
    with contextlib.ExitStack() as stack:
        if job.out is None:
            path = Path(job.files[part])
            # a name of this attempt's own, renamed when complete: a Dask task run twice (a worker
            # that died, or was thought dead) never writes into the other attempt's file
            attempt = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        else:
            made = tempfile.TemporaryDirectory(prefix="synthreg-apply-", dir=scratch_root())
            attempt = Path(stack.enter_context(made))
            attempt /= job.files[part].name
        head, hasher = _write_applied(job, part, source, columns, keep, offset, attempt)
        hashed = hash_file(attempt)  # a rename keeps the size and the modification time
        if job.out is None:
            attempt.replace(_partial(path))
        else:  # put at a fixed key: a retried task puts the same bytes
            job.out.upload(attempt, job.table)
    blocks, tail = hasher.complete_blocks()
    return _Applied(hashed, _compact(head), blocks, _compact([tail] if tail else []))


def _write_applied(
    job: _Job,
    part: int,
    source: pq.ParquetFile,
    columns: dict[str, pa.Array],
    keep: np.ndarray,
    offset: int,
    attempt: Path,
) -> tuple[list[pa.Table], TableHasher]:
    """The part with ``columns`` replaced and only the ``keep`` rows, written to ``attempt`` a row
    group at a time; the rows before the table's first block boundary in it (it starts at row
    ``offset``), and a hasher of the rest."""
    schema = source.schema_arrow
    head: list[pa.Table] = []
    head_left = -offset % DIGEST_BLOCK_ROWS  # rows until the table's next block boundary
    hasher = TableHasher(schema)
    start = 0
    with part_writer(Path(job.files[part]), schema, attempt, source.metadata) as write:
        for group in range(source.num_row_groups):
            data = source.read_row_group(group)
            end = start + data.num_rows
            for name, array in columns.items():
                data = data.set_column(schema.get_field_index(name), name, array.slice(start, data.num_rows))
            kept = data.filter(pa.array(keep[start:end]))
            write(kept)
            faults.point(f"groups.apply.{job.table}.{part}")
            if head_left:
                head.append(kept.slice(0, head_left))
                head_left -= head[-1].num_rows
                kept = kept.slice(head[-1].num_rows)
            hasher.update(kept)
            start = end
    return head, hasher


def _compact(pieces: list[pa.Table]) -> pa.Table | None:
    """The rows of ``pieces`` in buffers of their own: a slice pickles with the whole buffers
    it views (here a row group's), which would travel back with a few rows of it."""
    if not pieces:
        return None
    rows = pa.concat_tables(pieces)
    return rows.take(np.arange(rows.num_rows))


def _table_blocks(applied: Sequence[_Applied]) -> list[bytes]:
    """The table's block digests from its parts' (``_Applied``), in order: the rows a block
    boundary splits between parts are joined and hashed here."""
    blocks: list[bytes] = []
    pending: list[pa.Table] = []

    def add(rows: pa.Table | None) -> None:
        if rows is not None and rows.num_rows:
            pending.append(rows)
            if sum(t.num_rows for t in pending) == DIGEST_BLOCK_ROWS:
                blocks.append(TableHasher.hash_block(pa.concat_tables(pending)))
                pending.clear()

    for part in applied:
        add(part.head)
        if part.blocks or part.tail is not None:
            assert not pending, "a part's first block boundary must close the block before it"
        blocks.extend(part.blocks)
        add(part.tail)
    if pending:
        blocks.append(TableHasher.hash_block(pa.concat_tables(pending)))
    return blocks


# ---------------------------------------------------------------- running the rounds

_Run = Callable[[Callable[..., Any], list[tuple[Any, ...]]], list[Any]]


@contextlib.contextmanager
def _runner(workers: int, cluster: str | None, prefix: str = "synthreg-groups") -> Iterator[_Run]:
    """Run tasks on a remote Dask cluster (``tcp://``, ``tls://``), a process pool, or here."""
    from synthreg.compute.dask import remote

    if remote(cluster):
        from synthreg.compute.dask import mapper

        with mapper(cluster, prefix) as on_cluster:
            yield on_cluster
        return
    if workers <= 1:
        yield lambda fn, args: [fn(*a) for a in args]
        return
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers, mp_context=env.worker_context()) as pool:
        yield lambda fn, args: list(pool.map(fn, *zip(*args, strict=True))) if args else []


@dataclass(frozen=True)
class Rewritten:
    """A table the group rules rewrote: its rows, block digests (``table_digest``) and its
    files' hashes (in the order of its files)."""

    rows: int
    blocks: list[bytes]
    hashes: tuple[FileHash, ...]
    #: where the rewritten parts are, when the tasks uploaded them (the caller fetches them from
    #: there); None when they replaced the parts here
    staged: PartStage | None = None


def enforce(
    spec: Spec,
    table: str,
    files: list[Path],
    work: Path,
    *,
    workers: int = 1,
    cluster: str | None = None,
    stage: PartStage | None = None,
    checksums: Sequence[str] | None = None,
) -> tuple[dict[str, Any], Rewritten | None]:
    """Apply ``table``'s group rules over all its rows, rewrite its parts, say what changed
    (and what the table now is, when it changed).

    ``work``: a scratch folder for the pieces (made and removed here), on a filesystem the
    tasks share. ``cluster``: a remote Dask cluster to run the tasks on (``local:N`` and no
    cluster use a pool of ``workers`` processes here). ``stage``: the parts are not here yet
    but staged in S3 (at ``stage.key(table, file name)``): the tasks read them there, the pieces
    go under ``<stage>/groups/`` instead of ``work``, and the rewritten parts to
    ``Rewritten.staged`` (``<stage>/rewritten``), for the caller to fetch; a task reads a staged
    part only when it is the bytes of its sha256 in ``checksums`` (the worker's, in file order),
    and raises ``StagingError`` otherwise.
    """
    rules = [r for r in spec.tables[table].constraints if r.kind in GROUP_KINDS]
    if not rules:
        return {}, None
    run_id = uuid.uuid4().hex[:8]
    fs = None if stage is None else cached_filesystem(stage)
    if stage is None:
        sources: tuple[PurePath, ...] = tuple(files)
        scratch: PurePath = work / run_id
    else:
        assert checksums is not None and len(checksums) == len(files), "staged parts need their sha256"
        sources = tuple(PurePosixPath(stage.key(table, Path(f).name)) for f in files)
        scratch = PurePosixPath(stage.root) / "groups" / run_id
    kept = [_rows(f, fs) for f in sources]  # each part's rows after the rules
    job = _Job(
        spec,
        table,
        sources,
        scratch,
        # under a stage every piece costs requests to the store: no more buckets than their size asks
        _bucket_count(sum(kept), 1 if stage is not None else workers),
        tuple(rules),
        stage=stage,
        out=None if stage is None else stage.within("rewritten"),
        sha256=tuple(checksums or ()),
    )
    parts, buckets = range(len(files)), range(job.buckets)
    notes: dict[str, Any] = {}
    valued: set[int] = set()
    spans = _Spans(stage is not None)
    try:
        with _runner(workers, cluster) as run:
            for rnd, rule in enumerate(rules):
                spans.split = run(_split, [(job, rnd, frozenset(valued), p, spans.of_part(p)) for p in parts])
                share = None
                if rule.action == "redistribute":
                    first = run(_reduce, [(job, rnd, None, b, spans.of_bucket(b)) for b in buckets])
                    excess = _merge_exact([o.excess for o in first])
                    room = _merge_exact([o.room for o in first])
                    share = min(1.0, excess / room) if room > 0 else 0.0
                outcomes: list[_Outcome] = run(
                    _reduce, [(job, rnd, share, b, spans.of_bucket(b)) for b in buckets]
                )
                if rule.action != "error":
                    spans.reduced[rnd] = [o.offsets for o in outcomes]
                merged = _Outcome(
                    changed=sum(o.changed for o in outcomes),
                    over=sum(o.over for o in outcomes),
                    worst=max((o.worst for o in outcomes), default=-math.inf),
                )
                if rule.action == "error" and merged.over:
                    raise _violation(rule, table, merged)
                if rule.action != "error":
                    kept = [sum(o.kept[p] for o in outcomes) for p in parts]
                if rule.kind == "sum_limit" and rule.action in ("cap", "redistribute") and merged.over:
                    valued.add(rnd)
                notes[f"{rule.kind}#{rnd}"] = {"action": rule.action, "rows_changed": merged.changed}
            rewritten = None
            if valued or any(n["rows_changed"] for n in notes.values()):
                rewritten = _rewrite(spec, table, job, run, frozenset(valued), kept, spans)
    finally:
        _clean(job, work, files)
    return notes, rewritten


def _rows(path: PurePath, fs: Any) -> int:
    """A part's rows from its footer, here or (``fs``) staged; a staged object that is no Parquet
    file (changed since) is a ``StagingError``, as when a task reads it."""
    if fs is None:
        return int(pq.read_metadata(path).num_rows)
    try:
        return int(pq.read_metadata(str(path), filesystem=fs).num_rows)
    except (OSError, pa.ArrowInvalid) as exc:
        raise StagingError(f"staged part s3://{path} could not be read: {exc}") from exc


def _clean(job: _Job, work: Path, files: list[Path]) -> None:
    """Remove the job's pieces, and here a failed run's rewritten parts and attempts that died
    writing; a failed run's uploads under the stage go when the stage is cleared."""
    if job.stage is not None:
        with contextlib.suppress(OSError):
            cached_filesystem(job.stage).delete_dir(str(job.work))
        return
    shutil.rmtree(job.work, ignore_errors=True)
    with contextlib.suppress(OSError):
        work.rmdir()  # only when no other table's pieces are there
    for path in files:
        for left in (_partial(path), *path.parent.glob(f".{path.name}.*.tmp")):
            left.unlink(missing_ok=True)


@dataclass
class _Spans:
    """Under a stage, where each task's pieces are in the objects the tasks before it wrote:
    the split tasks' offsets (per part, by bucket) of the current round, the reduce tasks'
    (per round, per bucket, by part). Nothing to say for pieces here (``staged`` False)."""

    staged: bool
    split: list[list[int] | None] = field(default_factory=list)
    reduced: dict[int, list[list[int] | None]] = field(default_factory=dict)

    def of_bucket(self, bucket: int) -> list[_Span] | None:
        """For a reduce task: its bucket's pieces in each part's split object."""
        if not self.staged:
            return None
        return [_span(offsets, bucket) for offsets in self.split]

    def of_part(self, part: int) -> _PartSpans:
        """For a split or apply task: its part's piece in each bucket's object, by round."""
        if not self.staged:
            return None
        return {rnd: [_span(o, part) for o in by_bucket] for rnd, by_bucket in self.reduced.items()}


def _span(offsets: list[int] | None, slot: int) -> _Span:
    assert offsets is not None, "every task under a stage returns its object's offsets"
    return offsets[slot], offsets[slot + 1]


def _rewrite(
    spec: Spec,
    table: str,
    job: _Job,
    run: _Run,
    valued: frozenset[int],
    kept: list[int],
    spans: _Spans,
) -> Rewritten:
    """Every part rewritten beside itself, then renamed over it, unless a moved value does not
    fit its column: then the error, and the parts as they were."""
    offsets = np.cumsum([0, *kept[:-1]]).tolist()
    done = run(_apply, [(job, valued, p, offsets[p], spans.of_part(p)) for p in range(len(job.files))])
    refused = [r for r in done if not isinstance(r, _Applied)]
    if refused:  # the parts written beside the others are removed by ``enforce``
        name, why = refused[0]
        rules = [i for i, r in enumerate(spec.tables[table].constraints) if r.column == name]
        raise SpecError(
            spec.source,
            [
                (
                    f"tables.{table}.constraints.{rules[0] if rules else 0}",
                    f"moving {name} within its limit makes {why}: give {name} a max that holds the "
                    "limit, or use action cap",
                )
            ],
        )
    if job.out is None:
        for path in job.files:
            _partial(Path(path)).replace(path)
    return Rewritten(sum(kept), _table_blocks(done), tuple(a.hashed for a in done), job.out)


@dataclass(frozen=True)
class GroupFacts:
    """A group rule measured over a table without changing it: how many groups there are, how
    many break the rule, and the largest group total (``sum_limit``) or row count."""

    groups: int
    over: int
    largest: float


def measure(
    spec: Spec, table: str, rule: Constraint, files: Sequence[Path], *, slack: float = 1e-9
) -> GroupFacts:
    """``rule`` checked over the rows of ``files`` (a table of ``spec``) in this process, a bucket
    of at most ``BUCKET_ROWS`` rows at a time (a table of one bucket is read directly)."""
    checked = rule.model_copy(update={"action": "error"})
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    buckets = _bucket_count(rows, 1)
    if buckets == 1:
        keys = checked.group_by if checked.kind != "unique_combination" else checked.columns
        data = pq.read_table(
            list(files), columns=sorted({*keys, *([checked.column] if checked.column else [])})
        )
        if checked.column:
            values = pc.fill_null(data.column(checked.column), 0).to_numpy(zero_copy_only=False)
            data = data.append_column(_VALUE, pa.array(np.asarray(values, dtype=np.float64)))
        outcomes = [_apply_rule(checked, data, np.ones(data.num_rows, dtype=bool), None, slack)[0]]
    else:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="synthreg-groups-") as work:
            job = _Job(spec, table, tuple(files), Path(work), buckets, (checked,), slack)
            for part in range(len(files)):
                _split(job, 0, frozenset(), part)
            outcomes = [_reduce(job, 0, None, b) for b in range(buckets)]
    largest = max((o.worst for o in outcomes), default=-math.inf)
    return GroupFacts(
        sum(o.groups for o in outcomes),
        sum(o.over for o in outcomes),
        largest if largest > -math.inf else 0.0,
    )


# ---------------------------------------------------------------- repeated values of one column


@dataclass(frozen=True)
class Repeats:
    """A column's repeated values, counted a bucket at a time: its rows, those with a value (not
    null, not NaN), the rows whose value occurs more than once, and the first ``examples`` of
    those rows' values in row order (as Great Expectations lists them)."""

    rows: int
    present: int
    unexpected: int
    examples: list[Any]


def repeats(files: Sequence[Path], column: str, *, examples: int = 20, cluster: str | None = None) -> Repeats:
    """Repeated values of ``column`` over ``files`` (in order), a bucket of at most ``BUCKET_ROWS``
    rows at a time: a split by a hash of the value (a task per part), then a count per bucket (a
    task per bucket). The tasks run in this process, or on a remote Dask ``cluster`` whose
    workers share this filesystem (then the pieces go beside the tables: ``_scratch``)."""
    rows = sum(_part_rows(files))
    buckets = _bucket_count(rows, 1)
    with _scratch(files, cluster, "synthreg-repeats-") as work, _runner(1, cluster, _CHECKS) as run:
        splits, present = _split_column(run, work / "values", files, column, buckets, nan_missing=True)
        found = run(_repeated, [(splits, b, buckets, examples) for b in range(buckets)])
    return Repeats(rows, present, sum(n for n, _ in found), _first_examples(found, examples))


#: The task keys' prefix of the validation's tasks on a cluster (``repeats``, ``absent``).
_CHECKS = "synthreg-checks"


@contextlib.contextmanager
def _scratch(files: Sequence[Path], cluster: str | None, prefix: str) -> Iterator[Path]:
    """A scratch folder for a check's pieces, removed at the end: a temporary one here; for a remote
    cluster one its workers see, in ``.checks`` beside the tables folder of ``files``."""
    from synthreg.compute.dask import remote

    if not remote(cluster) or not files:
        with tempfile.TemporaryDirectory(prefix=prefix) as temporary:
            yield Path(temporary)
        return
    shared = Path(files[0]).resolve().parent.parent.parent / ".checks"
    folder = shared / f"{prefix}{uuid.uuid4().hex[:8]}"
    for attempt in range(5):  # another check (quality beside validation) may remove an empty .checks
        try:
            folder.mkdir(parents=True)
            break
        except FileNotFoundError:
            if attempt == 4:
                raise
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            shared.rmdir()  # only when no other check's pieces are there


def _part_rows(files: Sequence[Path]) -> list[int]:
    """Each part's rows, from its footer."""
    return [_rows(f, None) for f in files]


def _split_parts(
    run: _Run, folder: Path, files: Sequence[Path], task: Callable[..., Any], *args: Any
) -> tuple[list[Path], list[Any]]:
    """``task(part, split file, first row number, *args)`` for each part (a task each): the split
    files, in part order, and what the tasks returned."""
    splits = [folder / f"split-{part:05d}.arrow" for part in range(len(files))]
    starts = np.cumsum([0, *_part_rows(files)]).tolist()
    done = run(task, [(path, splits[i], starts[i], *args) for i, path in enumerate(files)])
    return splits, done


def _split_column(
    run: _Run, folder: Path, files: Sequence[Path], column: str, buckets: int, *, nan_missing: bool
) -> tuple[list[Path], int]:
    """Each part's rows with a value (not null; nor NaN, with ``nan_missing``), with their row
    number in the table, by bucket of the value (a task per part): the split files, and how many
    rows had one."""
    splits, counted = _split_parts(run, folder, files, _spread, column, buckets, nan_missing)
    return splits, sum(counted)


def _spread(path: Path, target: Path, start: int, column: str, buckets: int, nan_missing: bool) -> int:
    """One part's split file (see ``_split_column``); how many of its rows had a value."""
    counted: list[int] = []
    _write_batches(target, _present(pq.ParquetFile(path), column, start, buckets, nan_missing, counted))
    return sum(counted)


def _repeated(
    splits: Sequence[Path], bucket: int, buckets: int, examples: int
) -> tuple[int, list[tuple[int, Any]]]:
    """One bucket's repeated values (``_count_repeats``), read from every split file."""
    return _count_repeats(_bucket_rows(splits, bucket, buckets), examples)


def _present(
    source: pq.ParquetFile, column: str, start: int, buckets: int, nan_missing: bool, counted: list[int]
) -> Iterator[tuple[pa.Table, list[int]]]:
    """A part's (row number, value) rows with a value, a row group at a time, by bucket; how many
    each row group had is appended to ``counted``."""
    for data in _row_groups(source, [column]):
        values = _plain(data.column(column))
        rows = np.arange(start, start + len(values), dtype=np.int64)
        start += len(values)
        mask = values.is_valid()
        if nan_missing and pa.types.is_floating(values.type):  # NaN is missing, -0.0 is 0.0
            mask = pc.and_(mask, pc.invert(pc.is_nan(values)))
            values = pc.add(values, 0.0)
        keep = np.asarray(pc.fill_null(mask, False), dtype=bool)
        table = pa.table({_ROW: rows[keep], column: values.filter(pa.array(keep))})
        counted.append(table.num_rows)
        yield _by_bucket(table, table, [column], buckets)


def _marked(data: pa.Table, marked: np.ndarray, examples: int) -> tuple[int, list[tuple[int, Any]]]:
    """How many rows of ``data`` (row numbers, values) are ``marked``, and the first ``examples``
    of them by row number, as (row, value)."""
    rows = data.column(_ROW).to_numpy()[marked]
    order = np.argsort(rows, kind="stable")[:examples]
    shown = data.column(1).filter(pa.array(marked)).take(pa.array(order)).to_pylist()
    return int(marked.sum()), list(zip(rows[order].tolist(), shown, strict=True))


def _first_examples(found: list[tuple[int, list[tuple[int, Any]]]], examples: int) -> list[Any]:
    """The values of the first ``examples`` rows by row number, over every bucket's."""
    return [value for _, value in sorted(pair for _, pairs in found for pair in pairs)[:examples]]


def _count_repeats(data: pa.Table, examples: int) -> tuple[int, list[tuple[int, Any]]]:
    """Rows of a bucket whose value occurs more than once, and the first ``examples`` of them."""
    if not data.num_rows:
        return 0, []
    groups = group_ids(data, [data.column_names[1]])  # the values, beside the row numbers
    return _marked(data, np.bincount(groups)[groups] > 1, examples)


# ---------------------------------------------------------------- values missing from a key column


@dataclass(frozen=True)
class Absent:
    """A foreign key's values that are not keys of its parent: the child's rows, its nulls, the
    non-null values that are no key, and the first ``examples`` of those in row order."""

    rows: int
    nulls: int
    absent: int
    examples: list[Any]


def absent(
    files: Sequence[Path],
    column: str,
    parent_files: Sequence[Path],
    key: str,
    *,
    examples: int = 20,
    cluster: str | None = None,
) -> Absent:
    """Values of ``column`` (over ``files``, in order) that are not values of ``key`` (over
    ``parent_files``): both columns split by a hash of the value (a task per part), then each
    bucket's child values looked up among its parent values (a task per bucket); in this process,
    or on a remote Dask ``cluster`` whose workers share this filesystem."""
    rows, parent_rows = sum(_part_rows(files)), sum(_part_rows(parent_files))
    buckets = _bucket_count(rows + parent_rows, 1)
    with _scratch(files, cluster, "synthreg-absent-") as work, _runner(1, cluster, _CHECKS) as run:
        children, present = _split_column(run, work / "child", files, column, buckets, nan_missing=False)
        parents, _ = _split_column(run, work / "parent", parent_files, key, buckets, nan_missing=False)
        found = run(_unmatched, [(children, parents, b, buckets, examples) for b in range(buckets)])
    return Absent(rows, rows - present, sum(n for n, _ in found), _first_examples(found, examples))


def _unmatched(
    children: Sequence[Path], parents: Sequence[Path], bucket: int, buckets: int, examples: int
) -> tuple[int, list[tuple[int, Any]]]:
    """One bucket's child values that are no parent value (``_count_absent``)."""
    return _count_absent(
        _bucket_rows(children, bucket, buckets), _bucket_rows(parents, bucket, buckets), examples
    )


def _count_absent(child: pa.Table, parent: pa.Table, examples: int) -> tuple[int, list[tuple[int, Any]]]:
    """Child rows of a bucket whose value is no parent value of it, and the first ``examples``."""
    if not child.num_rows:
        return 0, []
    values = child.column(1).combine_chunks()
    keys = parent.column(1).combine_chunks() if parent.num_rows else pa.array([], type=values.type)
    if pa.types.is_integer(values.type) and pa.types.is_integer(keys.type):
        values, keys = values.cast(pa.int64()), keys.cast(pa.int64())
    else:
        keys = keys.cast(values.type)
    return _marked(child, np.asarray(pc.invert(pc.is_in(values, value_set=keys)), dtype=bool), examples)


# ---------------------------------------------------------------- child times before their parent's

_INT64_MIN = np.iinfo(np.int64).min


@dataclass(frozen=True)
class Late:
    """Child rows whose time is before their parent row's: how many were compared (a key value of
    at least 0, a time, a parent row with that key), how many of those came earlier, and the key
    values of the first ``examples`` of them in row order."""

    checked: int
    unexpected: int
    examples: list[Any]


def late(
    files: Sequence[Path],
    via: str,
    column: str,
    parent_files: Sequence[Path],
    key: str,
    parent_column: str,
    to_ms: Callable[[pa.ChunkedArray], np.ndarray],
    *,
    examples: int = 5,
    cluster: str | None = None,
) -> Late:
    """Child rows (over ``files``, in order) whose time ``column`` is before ``parent_column`` of
    the parent row (over ``parent_files``) whose integer ``key`` is their ``via`` value; the
    first parent row of a key, in table order, when keys repeat. Both sides are split by a hash of
    the key (a task per part), then each bucket's child rows are looked up among its parent rows
    (a task per bucket): no key or time column is held whole. ``to_ms``: times as epoch
    milliseconds, nulls as the int64 minimum (a module-level function: the tasks get it by
    reference); a null time is never compared. In this process, or on a remote Dask ``cluster``
    whose workers share this filesystem."""
    rows, parent_rows = sum(_part_rows(files)), sum(_part_rows(parent_files))
    buckets = _bucket_count(rows + parent_rows, 1)
    with _scratch(files, cluster, "synthreg-late-") as work, _runner(1, cluster, _CHECKS) as run:
        children, _ = _split_parts(run, work / "child", files, _timed, (via, column), buckets, to_ms, True)
        parents, _ = _split_parts(
            run, work / "parent", parent_files, _timed, (key, parent_column), buckets, to_ms, False
        )
        found = run(_earlier, [(children, parents, b, buckets, examples) for b in range(buckets)])
    marked = [(n, pairs) for _, n, pairs in found]
    return Late(sum(c for c, _, _ in found), sum(n for n, _ in marked), _first_examples(marked, examples))


def _timed(
    path: Path,
    target: Path,
    start: int,
    columns: tuple[str, str],
    buckets: int,
    to_ms: Callable[[pa.ChunkedArray], np.ndarray],
    child: bool,
) -> None:
    """One part's split file for ``late``, its (row number, key, epoch ms) rows by bucket of the
    key: a child's rows with a key of at least 0 and a time, a parent's rows with a key (a null
    key matches no child value)."""
    key, column = columns

    def pieces() -> Iterator[tuple[pa.Table, list[int]]]:
        at = start
        for data in _row_groups(pq.ParquetFile(path), [key, column]):
            keys = np.asarray(
                pc.fill_null(_plain(data.column(key)).cast(pa.int64()), _INT64_MIN), dtype=np.int64
            )
            ms = np.asarray(to_ms(data.column(column)), dtype=np.int64)
            keep = (keys >= 0) & (ms != _INT64_MIN) if child else keys != _INT64_MIN
            rows = np.arange(at, at + data.num_rows, dtype=np.int64)
            at += data.num_rows
            table = pa.table({_ROW: rows[keep], "key": keys[keep], "ms": ms[keep]})
            yield _by_bucket(table, table, ["key"], buckets)

    _write_batches(target, pieces())


def _earlier(
    children: Sequence[Path], parents: Sequence[Path], bucket: int, buckets: int, examples: int
) -> tuple[int, int, list[tuple[int, Any]]]:
    """One bucket's child rows with a parent (how many), those earlier than it (how many, and the
    first ``examples`` as (row, key))."""
    child = _bucket_rows(children, bucket, buckets)
    parent = _bucket_rows(parents, bucket, buckets) if child.num_rows else None
    if parent is None or not parent.num_rows:
        return 0, 0, []
    keys = parent.column("key").to_numpy()
    order = np.lexsort((parent.column(_ROW).to_numpy(), keys))  # by key, then table order
    keys, ms = keys[order], parent.column("ms").to_numpy()[order]
    first = np.concatenate([[True], keys[1:] != keys[:-1]])  # a key's first row in table order
    keys, ms = keys[first], ms[first]
    values = child.column("key").to_numpy()
    pos = np.minimum(np.searchsorted(keys, values), len(keys) - 1)
    found = keys[pos] == values
    earlier = found & (child.column("ms").to_numpy() < ms[pos])
    count, pairs = _marked(child.select([_ROW, "key"]), earlier, examples)
    return int(found.sum()), count, pairs
