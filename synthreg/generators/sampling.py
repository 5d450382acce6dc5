"""The card's row samples: which rows, and taking them from the blocks the engine writes.

A DataCard's plots and PII scan read a seeded sample of each table (``sample_positions``: the
same row numbers for the same row count, in row order). Read back from Parquet, such a sample
decodes every row group of the columns it needs, since its rows are spread over the whole
table: ~1.2 s of a 10M-row create and ~9 s of a 100M-row one, for 200,000 rows. The engine's
workers take the same rows from the blocks they have in memory before writing them
(:func:`take_sample`), so the card can use those instead (``SampleRequest``); the rows and values
are the ones reading the files back would give (``tests/test_engine.py``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

__all__ = ["SAMPLE_SEED", "Drawn", "SampleRequest", "sample_positions", "take_sample"]

SAMPLE_SEED = 20240601


@dataclass(frozen=True)
class SampleRequest:
    """``limit`` rows of ``columns`` of ``table``, at :func:`sample_positions` (``rows``, ``limit``)."""

    table: str
    columns: tuple[str, ...]
    limit: int


#: Each request's rows, as the workers took them (``GenerationResult.samples``).
Drawn = dict[SampleRequest, pa.Table]


@functools.lru_cache(maxsize=16)
def sample_positions(rows: int, limit: int) -> np.ndarray:
    """``limit`` distinct row numbers below ``rows``, sorted, the same on every call (read-only)."""
    rng = np.random.default_rng(SAMPLE_SEED)
    positions = np.sort(rng.choice(rows, size=limit, replace=False))
    positions.flags.writeable = False
    return positions


def take_sample(block: pa.Table, first_row: int, rows: int, request: SampleRequest) -> pa.Table | None:
    """The sampled rows of ``block`` (rows ``first_row`` on of a ``rows``-row table), or None."""
    positions = sample_positions(rows, request.limit)
    low, high = np.searchsorted(positions, [first_row, first_row + block.num_rows])
    if high <= low:
        return None
    return block.select(list(request.columns)).take(pa.array(positions[low:high] - first_row))
