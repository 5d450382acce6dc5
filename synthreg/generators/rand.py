"""Random numbers keyed by where they are used, never by how the work is split.

Two kinds:
- block streams: a NumPy Generator per (seed, table, column, logical block, purpose),
  for distributions (normal, gamma, ...) sampled a block at a time;
- counter-based uniforms: a splitmix64 hash of (key, row index), for values that must
  be computable at any row index without generating the rows before it (foreign key
  targets and timestamps, so that a child row can look up its parent's time).
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["PURPOSES", "block_rng", "counter_uniform", "stable_id", "stream_key"]

PURPOSES = {
    "values": 0,
    "nulls": 1,
    "email_number": 2,
    "email_domain": 3,
    "noise": 4,
    "outliers": 5,
    "typos": 6,
    "duplicates": 7,
    "pattern": 8,
    "uuid": 9,
    "extra": 10,
}
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def stable_id(text: str) -> int:
    """A 64-bit id of a name that does not change between runs (unlike ``hash``)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def stream_key(seed: int, table: str, column: str, purpose: str = "values") -> int:
    """One 64-bit key per (seed, table, column, purpose)."""
    text = f"{seed}\0{table}\0{column}\0{PURPOSES[purpose]}"
    return stable_id(text)


def block_rng(seed: int, table: str, column: str, block: int, purpose: str = "values") -> np.random.Generator:
    """The block stream for (seed, table, column, block, purpose)."""
    key = [seed, stable_id(table), stable_id(column), block, PURPOSES[purpose]]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(key)))


def _splitmix64(x: np.ndarray) -> np.ndarray:
    z = x * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def counter_uniform(key: int, index: np.ndarray) -> np.ndarray:
    """Uniform floats in [0, 1) for each row index: a pure function of (key, index)."""
    with np.errstate(over="ignore"):
        # SplitMix64's output function on a keyed counter: one round mixes well enough
        # for sampling, and this is the hottest loop of keys and timestamps.
        mixed = _splitmix64(index.astype(np.uint64) ^ np.uint64(key))
    return (mixed >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
