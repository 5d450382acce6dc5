"""The generation engine: spec -> Parquet, block by block, in bounded memory.

Each table is produced in logical blocks of ``logical_block_rows`` rows; every
block is a pure function of (spec, table, block index), sampled with vectorized
NumPy/Arrow, hashed and written to Parquet as soon as it is made. Peak memory is
bounded by the write chunk, not by the row count.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from synthreg import env, faults
from synthreg.digest import DIGEST_BLOCK_ROWS, TableHasher, combine_digests, table_digest
from synthreg.generators import group_rules
from synthreg.generators.columns import BlockContext, arrow_type, sample_column
from synthreg.generators.constraints import apply_row_rules
from synthreg.generators.filehash import FileHash, hash_file
from synthreg.generators.sampling import Drawn, SampleRequest, take_sample
from synthreg.generators.spec import Spec
from synthreg.generators.staging import PartStage, scratch_root

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "ENGINE_MODEL",
    "LOGICAL_BLOCK_ROWS",
    "FileHash",
    "GenerationResult",
    "Observers",
    "TableResult",
    "default_workers",
    "filled_later",
    "generate",
    "observed_by",
    "table_schema",
    "worker_peak_rss_mb",
]

#: Rows per logical block: the unit random streams are keyed by. Changing it
#: changes the data, so it is part of the engine's identity, not a tuning knob.
LOGICAL_BLOCK_ROWS = 1 << 16
#: Rows per Parquet row group (a tuning knob: it never changes the content digest).
DEFAULT_CHUNK_ROWS = 1 << 20
ENGINE_MODEL = "synthreg-numpy"


@dataclass(frozen=True)
class TableResult:
    """One generated table."""

    name: str
    rows: int
    digest: str
    files: tuple[Path, ...]
    schema: pa.Schema
    #: Per file (same order), the hashes its writer took of its bytes; empty when unknown (a
    #: table rewritten after writing, an LLM table).
    hashes: tuple[FileHash, ...] = ()


@dataclass
class GenerationResult:
    """What ``generate`` made."""

    tables: dict[str, TableResult]
    content_digest: str
    seconds: float
    params: dict[str, object] = field(default_factory=dict)
    #: Sum over this call's pool workers of each worker's own peak RSS, in MB (0.0 without a pool).
    worker_peak_rss_mb: float = 0.0
    #: What ``observe`` returned for each part, where the part was written: table -> [(file name,
    #: result)] in part order. A table the whole-table constraints rewrote has none.
    observed: dict[str, list[tuple[str, Any]]] = field(default_factory=dict)
    #: The rows each ``SampleRequest`` asked for, taken by the workers as they wrote the parts;
    #: a request whose table the whole-table constraints rewrote (or that got other rows) has none.
    samples: Drawn = field(default_factory=dict)

    @property
    def rows(self) -> dict[str, int]:
        """Rows per table."""
        return {name: t.rows for name, t in self.tables.items()}


def table_schema(spec: Spec, table: str) -> pa.Schema:
    """The Arrow schema a table is written with (an LLM table's is the labeled rows' schema)."""
    if spec.tables[table].llm is not None:
        from synthreg.generators.llm.labeled import ROWS_SCHEMA

        return ROWS_SCHEMA
    cols = spec.tables[table].columns
    fields = [pa.field(name, arrow_type(spec, table, name), nullable=True) for name in cols]
    return pa.schema(fields)


def _column_order(spec: Spec, table: str) -> list[str]:
    """Columns with derived ones (email from names, expressions) after what they read."""
    from synthreg.generators.expr import referenced_columns

    cols = spec.tables[table].columns
    needs = {
        n: set(c.from_ or []) | (referenced_columns(c.expr) if c.expr else set()) for n, c in cols.items()
    }
    order: list[str] = []
    while len(order) < len(cols):
        ready = [n for n in cols if n not in order and needs[n] <= set(order)]
        if not ready:
            raise ValueError(f"derived columns of {table} depend on each other in a cycle")
        order.extend(ready)
    return order


def make_block(
    spec: Spec, table: str, block: int, logical_block_rows: int, schema: pa.Schema
) -> pa.RecordBatch:
    """Logical block ``block`` of ``table``: a pure function of its arguments."""
    total = spec.tables[table].rows
    start = block * logical_block_rows
    ctx = BlockContext(spec, table, block, start, min(logical_block_rows, total - start))
    for name in _column_order(spec, table):
        ctx.done[name] = sample_column(ctx, name)
    batch = pa.RecordBatch.from_arrays([ctx.done[f.name] for f in schema], schema=schema)
    return apply_row_rules(spec, table, block, batch)


def _blocks(
    spec: Spec, table: str, start: int, stop: int, logical_block_rows: int, schema: pa.Schema
) -> Iterator[pa.RecordBatch]:
    """Rows [start, stop) of ``table``, from the logical blocks that cover them."""
    first, last = start // logical_block_rows, (stop - 1) // logical_block_rows
    for block in range(first, last + 1):
        batch = make_block(spec, table, block, logical_block_rows, schema)
        lo = max(start - block * logical_block_rows, 0)
        hi = min(stop - block * logical_block_rows, batch.num_rows)
        yield batch.slice(lo, hi - lo) if (lo, hi) != (0, batch.num_rows) else batch


def _rechunk(batches: Iterator[pa.RecordBatch], chunk_rows: int, schema: pa.Schema) -> Iterator[pa.Table]:
    """Regroup batches into tables of exactly ``chunk_rows`` rows (the last may be short)."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        while count >= chunk_rows:
            table = pa.Table.from_batches(pending, schema=schema)
            yield table.slice(0, chunk_rows)
            rest = table.slice(chunk_rows)
            pending, count = rest.to_batches(), rest.num_rows
    if count:
        yield pa.Table.from_batches(pending, schema=schema)


@dataclass(frozen=True)
class _Segment:
    """Rows [start, stop) of one table, written to one part file by one worker."""

    table: str
    index: int
    start: int
    stop: int


@dataclass(frozen=True)
class _Options:
    out_dir: Path
    chunk_rows: int
    logical_block_rows: int
    compression: str
    stage: PartStage | None = None  # cluster tasks upload their parts there (staging.py)
    samples: tuple[SampleRequest, ...] = ()  # rows the workers take from what they write


def _segments(spec: Spec, segment_rows: int) -> list[_Segment]:
    out = []
    for table in spec.engine_order():
        total = spec.tables[table].rows
        bounds = list(range(0, total, segment_rows)) or [0]
        for i, start in enumerate(bounds):
            out.append(_Segment(table, i, start, min(start + segment_rows, total)))
    return out


_Written = tuple[_Segment, Path, int, list[bytes], FileHash, Drawn]


def _write_segment(spec: Spec, seg: _Segment, opts: _Options) -> _Written:
    """Generate, hash and write one segment; runs in a worker process. The file's own hashes are
    taken here too, on as many cores as write parts, not by the client afterwards (``FileHash``).
    With a stage, the part is made in a scratch folder on this machine and uploaded (the client's
    folder may not be here); the scratch folder goes if anything fails."""
    if opts.stage is None:
        return _write_part(spec, seg, opts, opts.out_dir / "tables" / seg.table)
    scratch = Path(tempfile.mkdtemp(prefix="synthreg-part-", dir=scratch_root()))
    try:
        done = _write_part(spec, seg, opts, scratch)
        opts.stage.upload(done[1], seg.table)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return done


def _write_part(spec: Spec, seg: _Segment, opts: _Options, table_dir: Path) -> _Written:
    schema = table_schema(spec, seg.table)
    table_dir.mkdir(parents=True, exist_ok=True)
    path = table_dir / f"part-{seg.index:05d}.parquet"
    # written under a temporary name and renamed: a retried task (a Dask worker that died) rewrites
    # the same bytes, and no reader ever sees half a part
    partial = table_dir / f".part-{seg.index:05d}.parquet.{os.getpid()}.tmp"
    hasher = TableHasher(schema)
    # Dictionary-encode only what already is (categories, vocabularies): trying it on
    # high-cardinality numbers and falling back costs 3x the write time.
    dict_columns = [f.name for f in schema if pa.types.is_dictionary(f.type)]
    total = spec.tables[seg.table].rows
    wanted = [r for r in opts.samples if r.table == seg.table and r.limit < total]
    taken: dict[SampleRequest, list[pa.Table]] = {r: [] for r in wanted}
    first_row = seg.start
    with pq.ParquetWriter(
        partial,
        schema,
        compression=opts.compression,
        use_dictionary=dict_columns or False,
        write_statistics=True,
    ) as writer:
        if seg.stop > seg.start:
            batches = _blocks(spec, seg.table, seg.start, seg.stop, opts.logical_block_rows, schema)
            for chunk in _rechunk(batches, opts.chunk_rows, schema):
                hasher.update(chunk)
                writer.write_table(chunk, row_group_size=opts.chunk_rows)
                for request in wanted:
                    piece = take_sample(chunk, first_row, total, request)
                    if piece is not None:
                        taken[request].append(piece)
                first_row += chunk.num_rows
                faults.point(f"engine.segment.{seg.table}.{seg.index}")
    hashed = hash_file(partial)  # a rename keeps the size and the modification time
    os.replace(partial, path)
    return (
        seg,
        path,
        hasher.rows,
        hasher.block_digests(),
        hashed,
        {r: pa.concat_tables(pieces) for r, pieces in taken.items() if pieces},
    )


def _segment_rows(chunk_rows: int, total_rows: int, workers: int) -> int:
    """Rows per part file: whole digest blocks, at most a few row groups, and enough
    segments (about four per worker) to keep every core busy."""
    per_chunk = -(-chunk_rows // DIGEST_BLOCK_ROWS) * DIGEST_BLOCK_ROWS
    share = -(-total_rows // (workers * 4) // DIGEST_BLOCK_ROWS) * DIGEST_BLOCK_ROWS
    return max(DIGEST_BLOCK_ROWS, min(per_chunk * 4, 1 << 22, share))


def _own_peak_rss_mb() -> float:
    """This process's peak RSS in MB (``ru_maxrss``: KB on Linux, bytes on macOS); 0.0 off Unix."""
    try:
        import resource
    except ImportError:
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024.0


#: ``observe(table, part_path, first_row)``: called where a part was just written (a pool worker, a
#: Dask task, or this process; ``first_row`` is the part's first row number in its table), its
#: small, picklable result returned with the segment.
Observe = Callable[[str, Path, int], Any]


class Observers:
    """Several ``observe`` callables as one (picklable when they are): a tuple of their results
    (None for an observer that is None)."""

    def __init__(self, *observers: Observe | None) -> None:
        self.observers = observers

    def __call__(self, table: str, path: Path, first_row: int = 0) -> tuple[Any, ...]:
        return tuple(None if o is None else o(table, path, first_row) for o in self.observers)


def observed_by(observed: dict[str, list[tuple[str, Any]]], index: int) -> dict[str, list[tuple[str, Any]]]:
    """The results of ``Observers``' ``index``-th observer in ``GenerationResult.observed``."""
    return {
        t: [(name, r[index] if isinstance(r, tuple) else None) for name, r in found]
        for t, found in observed.items()
    }


def _write_segment_measured(
    spec: Spec, seg: _Segment, opts: _Options, observe: Observe | None = None
) -> tuple[_Written, int, float, Any]:
    """``_write_segment`` in a pool worker, with the worker's pid, its peak RSS so far and what
    ``observe`` made of the part (None without it)."""
    done = _write_segment(spec, seg, opts)
    seen = observe(seg.table, done[1], seg.start) if observe is not None else None
    if opts.stage is not None:  # uploaded: drop this machine's copy; the client's path goes back
        shutil.rmtree(done[1].parent, ignore_errors=True)
        done = (done[0], opts.out_dir / "tables" / seg.table / done[1].name, *done[2:])
    return done, os.getpid(), _own_peak_rss_mb(), seen


class _WorkerPeak:
    """The largest per-call sum of worker peaks seen in this process (what ``worker_peak_rss_mb`` reads)."""

    mb = 0.0


def worker_peak_rss_mb() -> float:
    """Peak memory of ``generate``'s pool workers in this process, in MB.

    For each ``generate`` call that used a process pool: the sum over its workers of each
    worker's own peak RSS (``ru_maxrss``, reported by the worker with every segment it writes;
    the last report per worker is its lifetime peak). Returns the largest such sum over the
    calls made in this process, 0.0 if none used a pool. RSS counts pages a forked worker
    shares with the parent in both, so added to the parent's peak this is an upper bound.
    """
    return _WorkerPeak.mb


def _run(
    spec: Spec,
    segments: list[_Segment],
    opts: _Options,
    workers: int,
    cluster: str | None = None,
    observe: Observe | None = None,
) -> tuple[list[_Written], float, list[Any]]:
    """Every segment written, the sum of the pool workers' peak RSS in MB (0.0 without a pool),
    and what ``observe`` returned for each segment (in segment order)."""
    from synthreg import progress

    total = sum(spec.tables[n].rows for n in spec.engine_order())
    rows_done = 0
    if cluster:
        from synthreg.compute.dask import run_tasks

        def done(_: int, result: Any) -> None:
            nonlocal rows_done
            rows_done += result[0][2]
            progress.report(stage="generate", rows_done=rows_done, rows_total=total)

        tasks = [(spec, seg, opts, observe) for seg in segments]
        measured = run_tasks(cluster, _write_segment_measured, tasks, done)
        return [r[0] for r in measured], _peaks(measured), [r[3] for r in measured]
    if workers <= 1 or len(segments) <= 1:
        written, seen = [], []
        for seg in segments:
            written.append(_write_segment(spec, seg, opts))
            seen.append(observe(seg.table, written[-1][1], seg.start) if observe is not None else None)
            rows_done += written[-1][2]
            progress.report(stage="generate", rows_done=rows_done, rows_total=total)
        return written, 0.0, seen
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=workers, mp_context=env.worker_context()) as pool:
        futures = {
            pool.submit(_write_segment_measured, spec, seg, opts, observe): i
            for i, seg in enumerate(segments)
        }
        results: dict[int, Any] = {}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            rows_done += results[futures[future]][0][2]
            progress.report(stage="generate", rows_done=rows_done, rows_total=total)
        measured = [results[i] for i in range(len(segments))]
    return [r[0] for r in measured], _peaks(measured), [r[3] for r in measured]


def _make(
    spec: Spec,
    segments: list[_Segment],
    opts: _Options,
    workers: int,
    cluster: str | None,
    observe: Observe | None,
) -> tuple[list[_Written], float, list[Any], dict[str, TableResult], dict[str, dict[str, object]]]:
    """Every segment written, the tables collected and their whole-table constraints applied
    (with their notes). With a stage, the constraints are applied to the staged parts (their
    tasks read them in S3 and stage what they rewrite), then the final parts are fetched and
    checked here, promoted into the DVC remote, and the staged copies deleted."""
    with _cleared(opts.stage):
        done, workers_mb, seen = _run(spec, segments, opts, workers, cluster, observe)
        for leftover in opts.out_dir.glob("tables/*/.part-*.tmp"):  # a worker killed mid-write (retried)
            leftover.unlink(missing_ok=True)
        tables = _collect(spec, done)
        staged: dict[str, PartStage] = {}  # where each table's final parts are, with a stage
        notes = {}
        for name in spec.engine_order():
            notes[name], at = _enforce(spec, name, tables, opts.out_dir, workers, cluster, opts.stage)
            if opts.stage is not None:
                staged[name] = at or opts.stage
        if staged:  # the parts are in the object store: fetched and checked here
            tables = _fetch_staged(tables, staged)
            _promote(spec, tables, staged)
    return done, workers_mb, seen, tables, notes


@contextlib.contextmanager
def _cleared(stage: PartStage | None) -> Iterator[None]:
    """Delete the staged copies when the block ends, also when a task or the fetch failed."""
    try:
        yield
    finally:
        if stage is not None:
            try:
                stage.clear()
            except Exception as exc:  # neither a finished result nor the first error is lost to it
                print(f"warning: staged parts left at {stage.url}: {exc}", file=sys.stderr)


def filled_later(spec: Spec) -> set[str]:
    """Tables whose parts change after the engine: their ``llm_text`` columns are filled in then."""
    return {n for n, t in spec.tables.items() if any(c.type == "llm_text" for c in t.columns.values())}


def _promote(spec: Spec, tables: dict[str, TableResult], staged: dict[str, PartStage]) -> None:
    """Copy the checked parts from where they are staged into the DVC remote
    (``PartStage.promote``), but not those of tables whose bytes will still change (``llm_text``
    columns, filled in after the engine). Only saves an upload: if the copy fails, ``dvc push``
    uploads them as usual."""
    later = filled_later(spec)
    try:
        for stage, parts in _by_stage(tables, staged, lambda t, path, hashed: (t, path.name, hashed.md5)):
            stage.promote([part for part in parts if part[0] not in later])
    except OSError as exc:  # pyarrow's S3 errors
        print(f"warning: parts not copied into the DVC remote (push uploads them): {exc}", file=sys.stderr)


def _fetch_staged(tables: dict[str, TableResult], staged: dict[str, PartStage]) -> dict[str, TableResult]:
    """Download every table's parts to their paths here from where they are staged, checked
    against the sha256 their tasks took; the file hashes then describe the local files."""
    for stage, parts in _by_stage(
        tables, staged, lambda name, path, hashed: (name, path, hashed.sha256, hashed.mtime_ns)
    ):
        stage.download(parts)
    out = {}
    for name, table in tables.items():
        local = []
        for path, hashed in zip(table.files, table.hashes, strict=True):
            info = path.stat()
            local.append(FileHash(hashed.md5, hashed.sha256, info.st_size, info.st_mtime_ns))
        out[name] = dataclasses.replace(table, hashes=tuple(local))
    return out


def _by_stage(
    tables: dict[str, TableResult], staged: dict[str, PartStage], item: Callable[[str, Path, FileHash], Any]
) -> list[tuple[PartStage, list[Any]]]:
    """``item(table, path, hashes)`` for every part, grouped by the stage each table is at."""
    groups: dict[PartStage, list[Any]] = {}
    for name, table in tables.items():
        for path, hashed in zip(table.files, table.hashes, strict=True):
            groups.setdefault(staged[name], []).append(item(name, path, hashed))
    return list(groups.items())


def _peaks(measured: list[Any]) -> float:
    """The sum over workers of each one's peak RSS (MB), remembered for ``worker_peak_rss_mb``."""
    peaks: dict[int, float] = {}
    for _, pid, peak, _seen in measured:
        peaks[pid] = max(peaks.get(pid, 0.0), peak)
    workers_mb = sum(peaks.values())
    _WorkerPeak.mb = max(_WorkerPeak.mb, workers_mb)
    return workers_mb


def _collect(spec: Spec, done: list[_Written]) -> dict[str, TableResult]:
    tables = {}
    for name in spec.engine_order():
        parts = sorted((r for r in done if r[0].table == name), key=lambda r: r[0].index)
        schema = table_schema(spec, name)
        blocks = [b for r in parts for b in r[3]]
        rows = sum(r[2] for r in parts)
        tables[name] = TableResult(
            name,
            rows,
            table_digest(schema, blocks),
            tuple(r[1] for r in parts),
            schema,
            tuple(r[4] for r in parts),
        )
    return tables


def _enforce(
    spec: Spec,
    name: str,
    tables: dict[str, TableResult],
    out_dir: Path,
    workers: int,
    cluster: str | None,
    stage: PartStage | None,
) -> tuple[dict[str, object], PartStage | None]:
    """Whole-table constraints; the table's digest and file hashes from the tasks that rewrote it
    (and, with a stage, where they staged its new parts). Their tasks run on a remote cluster,
    which wrote the parts itself (to this machine's folder, or staged in S3)."""
    result = tables[name]
    notes, rewritten = group_rules.enforce(
        spec,
        name,
        list(result.files),
        out_dir / ".groups",
        workers=workers,
        cluster=cluster,
        stage=stage,
        checksums=[h.sha256 for h in result.hashes],
    )
    if rewritten is None:
        return notes, None
    digest = table_digest(result.schema, rewritten.blocks)
    tables[name] = TableResult(name, rewritten.rows, digest, result.files, result.schema, rewritten.hashes)
    return notes, rewritten.staged


def default_workers() -> int:
    """``$SYNTHREG_WORKERS``, else every core."""
    value = os.environ.get(env.WORKERS)
    return max(1, int(value)) if value and value.isdigit() else max(1, os.cpu_count() or 1)


def generate(
    spec: Spec,
    out_dir: Path,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    logical_block_rows: int = LOGICAL_BLOCK_ROWS,
    compression: str = "snappy",
    workers: int | None = None,
    cluster: str | None = None,
    observe: Observe | None = None,
    stage: PartStage | None = None,
    samples: tuple[SampleRequest, ...] = (),
) -> GenerationResult:
    """Generate every table of ``spec`` as Parquet under ``out_dir/tables/<table>/``.

    Tables made by an LLM (``llm``) are skipped: the registry's create stage makes them.
    ``stage`` (with a ``cluster`` only): the tasks upload their parts there instead of writing
    to ``out_dir``, and this process downloads and checks them, then deletes the staged copies.
    ``samples``: rows the workers take from the blocks they write (``GenerationResult.samples``).

    The content digest is the same for any ``chunk_rows``, ``compression`` and
    ``workers``; ``logical_block_rows`` is part of the engine's identity.
    """
    if chunk_rows <= 0 or logical_block_rows <= 0:
        raise ValueError("chunk_rows and logical_block_rows must be positive")
    if cluster and workers is None:  # segments sized for the cluster's workers (local:N), else 8
        count = cluster.removeprefix("local:")
        workers = int(count) if cluster.startswith("local:") and count.isdigit() else 8
    workers = default_workers() if workers is None else max(1, workers)
    started = time.perf_counter()
    if stage is not None and not cluster:
        raise ValueError("a part stage is for cluster tasks: pass cluster= too")
    opts = _Options(out_dir, chunk_rows, logical_block_rows, compression, stage, samples)
    engine_rows = sum(spec.tables[n].rows for n in spec.engine_order())
    segments = _segments(spec, _segment_rows(chunk_rows, engine_rows, workers))
    done, workers_mb, seen, tables, notes = _make(spec, segments, opts, workers, cluster, observe)
    observed: dict[str, list[tuple[str, Any]]] = {}
    if observe is not None:
        for (seg, path, *_), result in zip(done, seen, strict=True):  # in segment order
            if not notes[seg.table]:  # a table the constraints rewrote: what was seen is stale
                observed.setdefault(seg.table, []).append((path.name, result))
    taken = _samples(done, notes, opts.samples)
    seconds = time.perf_counter() - started
    params: dict[str, object] = {
        "chunk_rows": chunk_rows,
        "logical_block_rows": logical_block_rows,
        "compression": compression,
        "workers": workers,
    }
    if cluster:
        params["cluster"] = cluster if cluster.startswith("local:") else "dask"  # no scheduler address
    if stage is not None:
        params["parts"] = "staged in S3 by the tasks, fetched and checked (sha256)"  # no bucket name
    if any(notes.values()):
        params["constraints"] = {k: v for k, v in notes.items() if v}
    noise = {
        n: [x.model_dump(exclude_defaults=True) for x in t.noise] for n, t in spec.tables.items() if t.noise
    }
    if noise:
        params["noise"] = noise
    digest = combine_digests({n: t.digest for n, t in tables.items()})
    return GenerationResult(
        tables, digest, seconds, params, worker_peak_rss_mb=workers_mb, observed=observed, samples=taken
    )


def _samples(
    done: list[_Written], notes: dict[str, dict[str, object]], requests: tuple[SampleRequest, ...]
) -> Drawn:
    """Each request's rows from the parts' pieces, in segment order; none for a table the
    constraints rewrote, or when the rows taken are not all those asked for (a table of no more
    rows than the limit is read whole, and gets none)."""
    out = {}
    for request in requests:
        pieces = [d[5][request] for d in done if d[0].table == request.table and request in d[5]]
        if pieces and not notes.get(request.table) and sum(p.num_rows for p in pieces) == request.limit:
            out[request] = pa.concat_tables(pieces)
    return out
