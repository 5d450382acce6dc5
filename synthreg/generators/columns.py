"""Column samplers: one logical block of one column -> an Arrow array, vectorized.

Random streams are keyed by (seed, table, column, logical block, purpose), never by
chunk or process, so the values do not depend on how the work is split.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthreg.generators import vocab
from synthreg.generators.spec import Column, Spec

__all__ = ["BlockContext", "arrow_type", "sample_column"]

_PURPOSES = {"values": 0, "nulls": 1, "email_number": 2, "email_domain": 3}


def _stable_id(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


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
        """The random stream for (seed, table, column, block, purpose)."""
        key = [self.spec.seed, _stable_id(self.table), _stable_id(column), self.block, _PURPOSES[purpose]]
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence(key)))


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
    params = col.distribution.params if col.distribution else {}
    start, step = params.get("start", 1), params.get("step", 1)
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
    col = spec.tables[table].columns[name]
    if col.type == "int":
        bounds = _int_bounds(spec, table, name)
        return _int_type(*bounds) if bounds else pa.int64()
    if col.type == "category":
        return pa.dictionary(_index_type(len(col.categories)), pa.string())
    if col.type == "text":
        if col.vocab == "email":
            return pa.string()
        return pa.dictionary(pa.int32(), pa.string())
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
    p = dist.params if dist else {}
    if kind == "sequence":
        return p.get("start", 1) + p.get("step", 1) * np.arange(start, start + n, dtype=np.int64)
    if kind == "uniform":
        low = p.get("low", col.min if col.min is not None else 0.0)
        high = p.get("high", col.max if col.max is not None else (1000.0 if col.type == "int" else 1.0))
        if col.type == "int":
            return rng.integers(int(np.ceil(low)), int(np.floor(high)) + 1, size=n)
        return rng.uniform(low, high, size=n)
    if kind == "beta":
        unit = rng.beta(p["a"], p["b"], size=n)
        low = col.min if col.min is not None else 0.0
        high = col.max if col.max is not None else 1.0
        return low + unit * (high - low)
    draws: dict[str, Callable[[], np.ndarray]] = {
        "normal": lambda: rng.normal(p["mean"], p["std"], size=n),
        "lognormal": lambda: rng.lognormal(p["mean"], p["sigma"], size=n),
        "exponential": lambda: rng.exponential(p["scale"], size=n),
        "gamma": lambda: rng.gamma(p["shape"], p["scale"], size=n),
        "poisson": lambda: rng.poisson(p["lam"], size=n),
        "binomial": lambda: rng.binomial(int(p["n"]), p["p"], size=n),
        "zipf": lambda: rng.zipf(p["a"], size=n),
        "pareto": lambda: (rng.pareto(p["a"], size=n) + 1.0) * (col.min if col.min else 1.0),
    }
    return draws[kind]()


def _numeric(col: Column, ctx: BlockContext, name: str, typ: pa.DataType) -> pa.Array:
    sequence = _is_sequence(ctx.spec, ctx.table, name)
    values = _draw(col, ctx.rng(name), ctx.rows, ctx.start, sequence)
    if col.min is not None or col.max is not None:
        values = np.clip(values, col.min, col.max)
    if col.type == "int":
        if values.dtype.kind == "f":
            values = np.rint(values)
        return pa.array(values.astype(typ.to_pandas_dtype(), copy=False), type=typ)
    values = values.astype(np.float64, copy=False)
    if col.decimals is not None:
        values = np.round(values, col.decimals)
    return pa.array(values, type=typ)


def _foreign_key(col: Column, ctx: BlockContext, name: str, typ: pa.DataType) -> pa.Array:
    assert col.foreign_key
    ptable, pcol = col.foreign_key.split(".", 1)
    parent_rows = ctx.spec.tables[ptable].rows
    pk = ctx.spec.tables[ptable].columns[pcol]
    params = pk.distribution.params if pk.distribution else {}
    u = ctx.rng(name).random(ctx.rows)
    if col.skew:
        u = u ** (1.0 + col.skew)  # skewed parent popularity: low indices are the popular ones
    idx = np.minimum((u * parent_rows).astype(np.int64), parent_rows - 1)
    keys = params.get("start", 1) + params.get("step", 1) * idx
    return pa.array(keys.astype(typ.to_pandas_dtype(), copy=False), type=typ)


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
    indices = pa.array(idx.astype(typ.index_type.to_pandas_dtype()), type=typ.index_type)
    return pa.DictionaryArray.from_arrays(indices, pa.array(cats, type=pa.string()))


def _text(col: Column, ctx: BlockContext, name: str, typ: pa.DataType) -> pa.Array:
    assert col.vocab
    if col.vocab == "email":
        return _email(col, ctx, name)
    values = vocab.pool(col.vocab, col.locale)
    idx = ctx.rng(name).integers(0, len(values), size=ctx.rows, dtype=np.int32)
    return pa.DictionaryArray.from_arrays(pa.array(idx, type=pa.int32()), values)


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
    number = ctx.rng(name, "email_number").integers(1, 1000, size=ctx.rows)
    domains = vocab.pool("email_domain")
    didx = ctx.rng(name, "email_domain").integers(0, len(domains), size=ctx.rows)
    return pc.binary_join_element_wise(
        pc.binary_join_element_wise(local, pc.cast(pa.array(number), pa.string()), ""),
        domains.take(pa.array(didx)),
        "@",
    )


def _epoch_ms(value: dt.datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return int(value.timestamp() * 1000)


def _datetime(col: Column, ctx: BlockContext, name: str, typ: pa.DataType) -> pa.Array:
    assert col.start is not None and col.end is not None
    low, high = _epoch_ms(col.start), _epoch_ms(col.end)
    rng = ctx.rng(name)
    if col.type == "date":
        days = rng.integers(low // 86_400_000, high // 86_400_000 + 1, size=ctx.rows, dtype=np.int32)
        return pa.array(days, type=pa.date32())
    ms = rng.integers(low, high + 1, size=ctx.rows, dtype=np.int64)
    return pa.array(ms, type=pa.timestamp("ms"))


def _bool(col: Column, ctx: BlockContext, name: str, typ: pa.DataType) -> pa.Array:
    p = 0.5 if col.p is None else col.p
    return pa.array(ctx.rng(name).random(ctx.rows) < p, type=pa.bool_())


def _with_nulls(array: pa.Array, col: Column, ctx: BlockContext, name: str) -> pa.Array:
    if not col.null_rate:
        return array
    mask = pa.array(ctx.rng(name, "nulls").random(ctx.rows) < col.null_rate)
    return pc.if_else(mask, pa.scalar(None, type=array.type), array)


def sample_column(ctx: BlockContext, name: str) -> pa.Array:
    """Sample one column for one logical block."""
    col = ctx.spec.tables[ctx.table].columns[name]
    typ = arrow_type(ctx.spec, ctx.table, name)
    if col.foreign_key:
        array = _foreign_key(col, ctx, name, typ)
    elif col.type in ("int", "float"):
        array = _numeric(col, ctx, name, typ)
    else:
        sampler = {
            "category": _category,
            "text": _text,
            "datetime": _datetime,
            "date": _datetime,
            "bool": _bool,
        }
        array = sampler[col.type](col, ctx, name, typ)
    return _with_nulls(array, col, ctx, name)
