"""Column samplers: one logical block of one column -> an Arrow array, vectorized.

Distributions draw from block streams keyed by (seed, table, column, logical block,
purpose); foreign keys and timestamps use counter-based uniforms keyed by the row
index, so a child row can compute its parent's timestamp without generating the
parent table (time order holds for every row, in bounded memory). Nothing depends on
how the work is split into chunks or processes.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthreg.errors import SpecError
from synthreg.generators import pattern as patterns
from synthreg.generators import vocab
from synthreg.generators.expr import ExprOverflowError, evaluate, round_values
from synthreg.generators.rand import block_rng, counter_uniform, stream_key
from synthreg.generators.spec import Column, Spec

__all__ = [
    "STRING_VOCABS",
    "BlockContext",
    "arrow_type",
    "fk_index",
    "out_of_range",
    "sample_column",
    "time_ms",
]

#: vocabularies built per row (plain strings); the others are dictionary-encoded pools
STRING_VOCABS = ("email", "username", "street_address", "phone", "url")
_DAY_MS = 86_400_000
_PHONE = {
    "en_US": r"+1-\d{3}-555-01\d{2}",
    "de_DE": r"+49 30 0\d{6}",  # subscriber numbers never start with 0: unassignable
    "fr_FR": r"+33 1 99 \d{2} \d{2} \d{2}",
}


@dataclass
class BlockContext:
    """What a sampler needs to know about the block it fills."""

    spec: Spec
    table: str
    block: int
    start: int  # global index of the block's first row
    rows: int
    done: dict[str, pa.Array] = field(default_factory=dict)

    def rng(self, column: str, purpose: str = "values") -> np.random.Generator:
        """The block stream for (seed, table, column, block, purpose)."""
        return block_rng(self.spec.seed, self.table, column, self.block, purpose)

    def index(self) -> np.ndarray:
        """Global row indices of this block."""
        return np.arange(self.start, self.start + self.rows, dtype=np.int64)

    def spec_error(self, column: str, message: str) -> SpecError:
        """A spec error about ``column`` (``name`` or ``name.key``) of this table."""
        return SpecError(self.spec.source, [(f"tables.{self.table}.columns.{column}", message)])


def out_of_range(values: np.ndarray, typ: pa.DataType) -> str | None:
    """Why numbers cannot be stored as ``typ`` (an int or float Arrow type), or None.

    Checked before casting: NumPy wraps or garbles out-of-range values (with a warning at most).
    """
    if len(values) == 0 or values.dtype.kind == "b" or not pa.types.is_integer(typ):
        finite = values.dtype.kind != "f" or not pa.types.is_floating(typ) or bool(np.isfinite(values).all())
        return None if finite else "values beyond float64's range (±1.8e308)"
    info = np.iinfo(np.dtype(str(typ)))
    if values.dtype.kind in "iu":
        inside = info.min <= int(values.min()) and int(values.max()) <= info.max
    else:  # float64 holds int64's bounds only approximately: stay strictly inside them
        inside = bool((np.isfinite(values) & (values > info.min) & (values < info.max)).all())
    if inside:
        return None
    worst = float(np.max(np.abs(values.astype(np.float64))))
    return f"values up to {worst:.3g}, beyond the {typ} range ({info.min:.3g}..{info.max:.3g})"


def _arrow(values: np.ndarray, typ: pa.DataType) -> pa.Array:
    """A NumPy array as an Arrow array of ``typ``, zero-copy where possible.

    ``pa.array`` on NumPy input imports pandas (~0.5-1 s cold); building from
    buffers does not.
    """
    if pa.types.is_boolean(typ):
        bits = np.packbits(values.astype(bool, copy=False), bitorder="little")
        return pa.Array.from_buffers(typ, len(values), [None, pa.py_buffer(bits)])
    storage = {pa.types.is_timestamp: np.int64, pa.types.is_date32: np.int32}
    dtype = next((d for test, d in storage.items() if test(typ)), None) or np.dtype(str(typ))
    data = np.ascontiguousarray(values, dtype=dtype)
    return pa.Array.from_buffers(typ, len(data), [None, pa.py_buffer(data)])


def _int_type(low: float, high: float) -> pa.DataType:
    for t, info in (
        (pa.int8(), np.iinfo(np.int8)),
        (pa.int16(), np.iinfo(np.int16)),
        (pa.int32(), np.iinfo(np.int32)),
    ):
        if low >= info.min and high <= info.max:
            return t
    return pa.int64()


def _index_type(count: int) -> pa.DataType:
    return pa.int8() if count <= 127 else pa.int16() if count <= 32767 else pa.int32()


def _sequence_bounds(col: Column, rows: int) -> tuple[float, float]:
    dist = col.distribution
    start, step = (dist.num("start", 1), dist.num("step", 1)) if dist else (1.0, 1.0)
    last = start + step * max(rows - 1, 0)
    return min(start, last), max(start, last)


def _int_bounds(spec: Spec, table: str, name: str) -> tuple[float, float] | None:
    col = spec.tables[table].columns[name]
    if col.foreign_key:
        ptable, pcol = col.foreign_key.split(".", 1)
        return _sequence_bounds(spec.tables[ptable].columns[pcol], spec.tables[ptable].rows)
    if _is_sequence(spec, table, name):
        return _sequence_bounds(col, spec.tables[table].rows)
    if col.min is not None and col.max is not None:
        return col.min, col.max
    return None


def _is_sequence(spec: Spec, table: str, name: str) -> bool:
    col = spec.tables[table].columns[name]
    if col.distribution is not None:
        return col.distribution.kind == "sequence"
    return spec.tables[table].primary_key == name


def arrow_type(spec: Spec, table: str, name: str) -> pa.DataType:
    """The Arrow type a column is written with: narrow ints, dictionary categories."""
    from synthreg.generators.constraints import has_typos, widened

    col = spec.tables[table].columns[name]
    if col.type == "int" and widened(spec, table, name):
        return pa.int64()
    if col.type == "text" and has_typos(spec, table, name):
        return pa.string()
    if col.type == "int":
        bounds = _int_bounds(spec, table, name)
        return _int_type(*bounds) if bounds else pa.int64()
    if col.type == "category":
        return pa.dictionary(_index_type(len(col.categories)), pa.string())
    if col.type == "text":
        if col.pattern is not None or col.words is not None or col.vocab in STRING_VOCABS:
            return pa.string()
        return pa.dictionary(pa.int32(), pa.string())
    if col.type in ("uuid", "llm_text"):
        return pa.string()
    return {
        "float": pa.float64(),
        "bool": pa.bool_(),
        "datetime": pa.timestamp("ms"),
        "date": pa.date32(),
    }[col.type]


# ---------------------------------------------------------------- numeric


def _draw(col: Column, rng: np.random.Generator, n: int, start: int, sequence: bool) -> np.ndarray:
    dist = col.distribution
    kind = "sequence" if sequence else dist.kind if dist else "uniform"
    num = dist.num if dist else (lambda key, default=0.0: default)
    if kind == "sequence":
        return num("start", 1) + num("step", 1) * np.arange(start, start + n, dtype=np.int64)
    low = num("low", col.min if col.min is not None else 0.0)
    high = num("high", col.max if col.max is not None else (1000.0 if col.type == "int" else 1.0))
    if kind == "uniform":
        if col.type == "int":
            return rng.integers(int(np.ceil(low)), int(np.floor(high)) + 1, size=n)
        return rng.uniform(low, high, size=n)
    if kind == "beta":
        return low + rng.beta(num("a"), num("b"), size=n) * (high - low)
    if kind == "empirical":
        assert dist is not None
        quantiles = np.asarray(dist.params["quantiles"], dtype=np.float64)
        return np.interp(rng.random(n), np.linspace(0.0, 1.0, len(quantiles)), quantiles)
    draws: dict[str, Callable[[], np.ndarray]] = {
        "normal": lambda: rng.normal(num("mean"), num("std"), size=n),
        "lognormal": lambda: rng.lognormal(num("mean"), num("sigma"), size=n),
        "exponential": lambda: rng.exponential(num("scale"), size=n),
        "gamma": lambda: rng.gamma(num("shape"), num("scale"), size=n),
        "poisson": lambda: rng.poisson(num("lam"), size=n),
        "binomial": lambda: rng.binomial(int(num("n")), num("p"), size=n),
        "zipf": lambda: rng.zipf(num("a"), size=n),
        "pareto": lambda: (rng.pareto(num("a"), size=n) + 1.0) * (col.min if col.min else 1.0),
    }
    return draws[kind]()


def _permuted(key: int, space: int, idx: np.ndarray, count: int) -> np.ndarray:
    """Distinct values in [0, space) for the distinct indices 0..count-1 (count <= space).

    A pure function of (key, idx, count): an affine permutation when the space is
    small enough for exact int64 arithmetic, else evenly spaced strata of the space
    (one per row of the whole table) with a random offset inside each.
    """
    if space < 1 << 31:
        a = (key % space) | 1
        while math.gcd(a, space) != 1:
            a += 2
        b = (key >> 32) % space
        return (a * idx.astype(np.int64) + b) % space
    stride = min(space, 1 << 62) // max(count, 1)
    jitter = (counter_uniform(key, idx) * stride).astype(np.int64)
    return idx.astype(np.int64) * stride + np.minimum(jitter, stride - 1)


def _numeric(col: Column, ctx: BlockContext, name: str, typ: pa.DataType) -> pa.Array:
    if col.unique and not _is_sequence(ctx.spec, ctx.table, name):
        assert col.min is not None and col.max is not None
        space = int(col.max) - int(col.min) + 1
        key = stream_key(ctx.spec.seed, ctx.table, name)
        rows = ctx.spec.tables[ctx.table].rows
        return _arrow(int(col.min) + _permuted(key, space, ctx.index(), rows), typ)
    sequence = _is_sequence(ctx.spec, ctx.table, name)
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            values = _draw(col, ctx.rng(name), ctx.rows, ctx.start, sequence)
    except (ValueError, OverflowError) as exc:  # NumPy refusing the parameters (lam too large...)
        raise ctx.spec_error(
            name, f"the distribution cannot be drawn from ({exc}): change its parameters"
        ) from None
    if col.min is not None or col.max is not None:
        values = np.clip(values, col.min, col.max)
    if col.type == "int":
        if values.dtype.kind == "f":
            values = np.rint(values)
    else:
        values = values.astype(np.float64, copy=False)
        if col.decimals is not None:
            values = round_values(values, col.decimals)
    why = out_of_range(values, typ)
    if why:
        raise ctx.spec_error(name, f"the distribution draws {why}: lower its parameters, or set min and max")
    return _arrow(values, typ)


_FK_CACHE: dict[tuple[object, ...], np.ndarray] = {}


def _fk_index_cached(spec: Spec, table: str, column: str, idx: np.ndarray) -> np.ndarray:
    """fk_index for a block's own contiguous rows, computed once per block (the FK column
    and every ``after:`` that follows it ask for the same thing)."""
    if len(idx) < 2 or idx[-1] - idx[0] != len(idx) - 1:
        return fk_index(spec, table, column, idx)
    col = spec.tables[table].columns[column]
    parent_rows = spec.tables[(col.foreign_key or "").split(".", 1)[0]].rows
    # everything fk_index reads: an object id could be reused by another spec after GC
    key = (
        spec.seed,
        table,
        column,
        parent_rows,
        col.skew,
        col.min_children,
        col.max_children,
        int(idx[0]),
        len(idx),
    )
    if key not in _FK_CACHE:
        if len(_FK_CACHE) > 16:
            _FK_CACHE.clear()
        _FK_CACHE[key] = fk_index(spec, table, column, idx)
    return _FK_CACHE[key]


def fk_index(spec: Spec, table: str, column: str, idx: np.ndarray) -> np.ndarray:
    """0-based parent row of each child row ``idx`` (counter-based: any index, any order)."""
    col = spec.tables[table].columns[column]
    assert col.foreign_key
    parent_rows = spec.tables[col.foreign_key.split(".", 1)[0]].rows
    key = stream_key(spec.seed, table, column)
    if col.min_children is None and col.max_children is None:
        u = counter_uniform(key, idx)
        if col.skew:
            u = u ** (1.0 + col.skew)  # skewed parent popularity: low indices are the popular ones
        return np.minimum((u * parent_rows).astype(np.int64), parent_rows - 1)
    return _bounded_children(col, key, parent_rows, idx)


def _bounded_children(col: Column, key: int, parents: int, idx: np.ndarray) -> np.ndarray:
    """Parents such that each gets at least ``min_children`` and at most ``max_children``.

    The first min*parents child rows go round-robin (every parent reaches the minimum);
    the rest take slots of a permutation over (max-min) slots per parent, so no parent
    passes the maximum. Random access, like every foreign key. Skew does not apply.
    """
    low = col.min_children or 0
    prefix = low * parents
    out = idx % parents
    rest = idx >= prefix
    if rest.any():
        if col.max_children is None:
            u = counter_uniform(key, idx[rest])
            out[rest] = np.minimum((u * parents).astype(np.int64), parents - 1)
        else:
            room = col.max_children - low
            slots = _permuted(key, room * parents, idx[rest] - prefix, room * parents)
            out[rest] = slots // room
    return out


def _foreign_key(col: Column, ctx: BlockContext, name: str, typ: pa.DataType) -> pa.Array:
    assert col.foreign_key
    ptable, pcol = col.foreign_key.split(".", 1)
    pk = ctx.spec.tables[ptable].columns[pcol]
    start = pk.distribution.num("start", 1) if pk.distribution else 1
    step = pk.distribution.num("step", 1) if pk.distribution else 1
    keys = start + step * _fk_index_cached(ctx.spec, ctx.table, name, ctx.index())
    return _arrow(keys, typ)


# ---------------------------------------------------------------- other types


def _category(col: Column, ctx: BlockContext, name: str, typ: pa.DataType) -> pa.Array:
    cats = col.categories
    probs = col.probabilities
    u = ctx.rng(name).random(ctx.rows)
    if probs is None:
        idx = (u * len(cats)).astype(np.int64)
    else:
        cum = np.cumsum(probs)
        cum[-1] = 1.0
        idx = np.searchsorted(cum, u, side="right")
    idx = np.minimum(idx, len(cats) - 1)
    assert isinstance(typ, pa.DictionaryType)
    indices = _arrow(idx, typ.index_type)
    return pa.DictionaryArray.from_arrays(indices, pa.array(cats, type=pa.string()))


def _pool_take(
    ctx: BlockContext, name: str, vocab_name: str, locale: str, purpose: str = "values"
) -> pa.Array:
    values = vocab.pool(vocab_name, locale)
    idx = ctx.rng(name, purpose).integers(0, len(values), size=ctx.rows, dtype=np.int32)
    return pa.DictionaryArray.from_arrays(_arrow(idx, pa.int32()), values)


def _numbers(ctx: BlockContext, name: str, low: int, high: int, purpose: str) -> pa.Array:
    number = ctx.rng(name, purpose).integers(low, high, size=ctx.rows)
    return pc.cast(_arrow(number, pa.int32()), pa.string())


def _text(col: Column, ctx: BlockContext, name: str, typ: pa.DataType) -> pa.Array:
    if col.pattern is not None:
        return _pattern(col, ctx, name)
    if col.words is not None:
        return _words(col, ctx, name)
    assert col.vocab
    builders: dict[str, Callable[[], pa.Array]] = {
        "email": lambda: _email(col, ctx, name),
        "username": lambda: pc.binary_join_element_wise(
            _plain_strings(_pool_take(ctx, name, "username_word", "en_US")),
            _numbers(ctx, name, 1, 100, "extra"),
            "",
        ),
        "street_address": lambda: pc.binary_join_element_wise(
            _numbers(ctx, name, 1, 2000, "extra"),
            _plain_strings(_pool_take(ctx, name, "street", col.locale)),
            " ",
        ),
        "url": lambda: pc.binary_join_element_wise(
            "https://www.", _plain_strings(_pool_take(ctx, name, "url_host", "en_US")), ".example/", ""
        ),
        "phone": lambda: _pattern(col, ctx, name, _PHONE.get(col.locale, _PHONE["en_US"])),
    }
    if col.vocab in builders:
        return builders[col.vocab]()
    return _pool_take(ctx, name, col.vocab, col.locale)


def _pattern(col: Column, ctx: BlockContext, name: str, text: str | None = None) -> pa.Array:
    compiled = patterns.parse_pattern(text or col.pattern or "")
    if col.unique:
        key = stream_key(ctx.spec.seed, ctx.table, name, "pattern")
        rows = ctx.spec.tables[ctx.table].rows
        values = _permuted(key, patterns.space_size(compiled), ctx.index(), rows)
        return patterns.render_indices(compiled, patterns.decode_number(compiled, values))
    choice = ctx.rng(name, "pattern").integers(0, 1 << 30, size=(ctx.rows, len(compiled)))
    return patterns.render_indices(compiled, choice)


def _words(col: Column, ctx: BlockContext, name: str) -> pa.Array:
    """Tokens drawn by their probabilities, ``min_words``..``max_words`` of them, joined by spaces."""
    assert col.words is not None
    tokens = pa.array(list(col.words), type=pa.string())
    low = col.min_words or 1
    high = max(col.max_words or low, low)
    counts = ctx.rng(name, "extra").integers(low, high + 1, size=ctx.rows)
    cum = np.cumsum(list(col.words.values()))
    cum[-1] = 1.0
    u = ctx.rng(name).random(int(counts.sum()))
    idx = np.minimum(np.searchsorted(cum, u, side="right"), len(tokens) - 1)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    lists = pa.ListArray.from_arrays(_arrow(offsets, pa.int32()), tokens.take(_arrow(idx, pa.int32())))
    return pc.binary_join(lists, " ")


def _uuid(col: Column, ctx: BlockContext, name: str, typ: pa.DataType) -> pa.Array:
    key = stream_key(ctx.spec.seed, ctx.table, name, "uuid")
    idx = ctx.index()
    high = (counter_uniform(key, idx) * 2.0**53).astype(np.uint64) << np.uint64(11)
    low = (counter_uniform(key ^ 0x5BD1E995, idx) * 2.0**53).astype(np.uint64) << np.uint64(11)
    high ^= (counter_uniform(key ^ 0x1B873593, idx) * 2048).astype(np.uint64)
    low ^= (counter_uniform(key ^ 0xCC9E2D51, idx) * 2048).astype(np.uint64)
    return patterns.uuid_strings(high, low)


def _plain_strings(array: pa.Array) -> pa.Array:
    if pa.types.is_dictionary(array.type):
        return array.dictionary.take(array.indices)
    return array


def _email(col: Column, ctx: BlockContext, name: str) -> pa.Array:
    """first.last<NN>@<reserved domain>, lower-case, built with Arrow compute."""
    assert col.from_
    first, last = (_plain_strings(ctx.done[src]) for src in col.from_)
    local = pc.binary_join_element_wise(pc.utf8_lower(first), pc.utf8_lower(last), ".")
    local = pc.replace_substring(local, " ", "")
    domains = vocab.pool("email_domain")
    didx = ctx.rng(name, "email_domain").integers(0, len(domains), size=ctx.rows)
    return pc.binary_join_element_wise(
        pc.binary_join_element_wise(local, _numbers(ctx, name, 1, 1000, "email_number"), ""),
        domains.take(_arrow(didx, pa.int32())),
        "@",
    )


def epoch_ms(value: dt.datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return int(value.timestamp() * 1000)


def via_column(spec: Spec, table: str, column: str) -> str:
    """The foreign key column through which ``after`` reaches the parent table."""
    col = spec.tables[table].columns[column]
    assert col.after
    if col.via:
        return col.via
    parent = col.after.split(".", 1)[0]
    return next(n for n, (p, _) in spec.tables[table].foreign_keys().items() if p == parent)


def time_ms(spec: Spec, table: str, column: str, idx: np.ndarray) -> np.ndarray:
    """Epoch milliseconds of a datetime/date column at rows ``idx`` (random access).

    With ``after: parent.column`` each value lies between the parent row's value (or
    the column's start, whichever is later) and the column's end.
    """
    col = spec.tables[table].columns[column]
    assert col.start is not None and col.end is not None
    low, high = epoch_ms(col.start), epoch_ms(col.end)
    u = counter_uniform(stream_key(spec.seed, table, column), idx)
    lows: np.ndarray | int = low
    if col.after:
        ptable, pcol = col.after.split(".", 1)
        parent_rows = _fk_index_cached(spec, table, via_column(spec, table, column), idx)
        lows = np.maximum(time_ms(spec, ptable, pcol, parent_rows), low)
    if col.type == "date":  # whole days: the first day on or after the lower bound, to the end day
        first, last = -(-np.asarray(lows) // _DAY_MS), high // _DAY_MS
        days = first + (u * (np.maximum(last - first, 0) + 1)).astype(np.int64)
        return days * _DAY_MS
    span = np.maximum(high - lows, 0)
    return lows + (u * (span + 1)).astype(np.int64)


def _datetime(col: Column, ctx: BlockContext, name: str, typ: pa.DataType) -> pa.Array:
    ms = time_ms(ctx.spec, ctx.table, name, ctx.index())
    if col.type == "date":
        return _arrow((ms // _DAY_MS).astype(np.int32), pa.date32())
    return _arrow(ms, pa.timestamp("ms"))


def _bool(col: Column, ctx: BlockContext, name: str, typ: pa.DataType) -> pa.Array:
    p = 0.5 if col.p is None else col.p
    return _arrow(ctx.rng(name).random(ctx.rows) < p, pa.bool_())


def _derived(col: Column, ctx: BlockContext, name: str, typ: pa.DataType) -> pa.Array:
    assert col.expr
    columns = {
        k: np.asarray(v.to_numpy(zero_copy_only=False), dtype=np.float64)
        for k, v in ctx.done.items()
        if pa.types.is_integer(v.type) or pa.types.is_floating(v.type) or pa.types.is_boolean(v.type)
    }
    try:
        values = evaluate(col.expr, columns, ctx.rows)
    except ExprOverflowError as exc:
        raise ctx.spec_error(
            f"{name}.expr",
            f"{exc} on the generated values: bound the columns it reads (min/max) or rewrite it",
        ) from None
    missing = ~np.isfinite(values)
    if col.min is not None or col.max is not None:
        values = np.clip(values, col.min, col.max)
    if col.type == "int":
        values = np.rint(np.where(missing, 0, values))
        why = out_of_range(values, typ)
        if why:
            raise ctx.spec_error(
                f"{name}.expr", f"expr {col.expr!r} gives {why}: set min and max, or use type: float"
            )
    if col.type == "bool":
        array = _arrow(values != 0, typ)
    elif col.type == "int":
        array = _arrow(values, typ)
    else:
        array = _arrow(round_values(values, col.decimals) if col.decimals is not None else values, typ)
    if missing.any():
        array = pc.if_else(_arrow(missing, pa.bool_()), pa.scalar(None, type=typ), array)
    return array


def _with_nulls(array: pa.Array, col: Column, ctx: BlockContext, name: str) -> pa.Array:
    if not col.null_rate:
        return array
    mask = _arrow(ctx.rng(name, "nulls").random(ctx.rows) < col.null_rate, pa.bool_())
    return pc.if_else(mask, pa.scalar(None, type=array.type), array)


def _llm_placeholder(col: Column, ctx: BlockContext, name: str, typ: pa.DataType) -> pa.Array:
    """Nulls: the LLM stage fills an ``llm_text`` column after the engine (``column_text``)."""
    return pa.nulls(ctx.rows, typ)


_SAMPLERS: dict[str, Callable[[Column, BlockContext, str, pa.DataType], pa.Array]] = {
    "llm_text": _llm_placeholder,
    "category": _category,
    "text": _text,
    "datetime": _datetime,
    "date": _datetime,
    "bool": _bool,
    "uuid": _uuid,
    "int": _numeric,
    "float": _numeric,
}


def sample_column(ctx: BlockContext, name: str) -> pa.Array:
    """Sample one column for one logical block."""
    col = ctx.spec.tables[ctx.table].columns[name]
    typ = arrow_type(ctx.spec, ctx.table, name)
    if col.expr:
        array = _derived(col, ctx, name, typ)
    elif col.foreign_key:
        array = _foreign_key(col, ctx, name, typ)
    else:
        array = _SAMPLERS[col.type](col, ctx, name, typ)
    return _with_nulls(array, col, ctx, name)
