"""Privacy of synthetic rows against the real rows they stand in for (holdout-based, in the style
of mostlyai-qa).

Rows are encoded as standardized numbers (mean and standard deviation of the real training
rows; a null becomes the mean) and one-hot categories (the :data:`TOP_CATEGORIES` most frequent
real values, the others and nulls each one more slot), then compared by Euclidean distance with
``sklearn.neighbors.NearestNeighbors``:

- **DCR share**: the share of synthetic rows whose nearest training row is closer than their
  nearest holdout row (a tie counts one half). Training and holdout samples have the same size,
  so a generator that does not copy its training rows scores about 0.5; near 1 means synthetic
  rows sit on training rows.
- **NNDR**: per synthetic row, the distance to its nearest training row over the distance to its
  second nearest (0 when both are 0); the 10th percentile is reported, for the holdout too. Values
  much lower than the holdout's mean synthetic rows that single out a real row.
- **Exact matches**: synthetic rows equal, on every compared column, to a real row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["TOP_CATEGORIES", "Encoder", "dcr_share", "nndr", "row_hashes"]

#: categories of a column that get their own one-hot slot (the most frequent in the real rows)
TOP_CATEGORIES = 20
#: the percentile of the NNDR reported
NNDR_PERCENTILE = 10


@dataclass
class Encoder:
    """Numbers standardized and categories one-hot, both fitted on the real training rows."""

    kinds: Mapping[str, str]
    means: dict[str, float]
    stds: dict[str, float]
    categories: dict[str, list[Any]]

    @classmethod
    def fit(cls, frame: Any, kinds: Mapping[str, str]) -> Encoder:
        """Learn the scaling and the category slots from ``frame``."""
        means, stds, cats = {}, {}, {}
        for name, kind in kinds.items():
            if kind == "numeric":
                values = np.asarray(frame[name], dtype="float64")
                present = values[~np.isnan(values)]
                means[name] = float(present.mean()) if len(present) else 0.0
                std = float(present.std()) if len(present) else 0.0
                stds[name] = std if std > 0 else 1.0
            else:
                counts = frame[name].value_counts(dropna=True)
                cats[name] = list(counts.index[:TOP_CATEGORIES])
        return cls(kinds, means, stds, cats)

    def transform(self, frame: Any) -> np.ndarray:
        """The encoded matrix (rows x features), float64."""
        parts = []
        for name, kind in self.kinds.items():
            if kind == "numeric":
                values = np.asarray(frame[name], dtype="float64")
                values = np.where(np.isnan(values), self.means[name], values)
                parts.append(((values - self.means[name]) / self.stds[name])[:, None])
            else:
                parts.append(self._one_hot(frame[name], self.categories[name]))
        return np.hstack(parts) if parts else np.zeros((len(frame), 0))

    @staticmethod
    def _one_hot(series: Any, categories: list[Any]) -> np.ndarray:
        values = series.astype("object")
        out = np.zeros((len(series), len(categories) + 2))
        known = np.zeros(len(series), dtype=bool)
        for i, cat in enumerate(categories):
            hit = (values == cat).to_numpy(dtype=bool, na_value=False)
            out[hit, i], known = 1.0, known | hit
        null = values.isna().to_numpy()
        out[null, -1] = 1.0
        out[~known & ~null, -2] = 1.0
        return out


def _nearest(fit_on: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    from sklearn.neighbors import NearestNeighbors

    model = NearestNeighbors(n_neighbors=min(k, len(fit_on)), algorithm="auto").fit(fit_on)
    distances, _ = model.kneighbors(query)
    return np.asarray(distances)


def dcr_share(train: np.ndarray, holdout: np.ndarray, synthetic: np.ndarray) -> dict[str, float]:
    """Share of synthetic rows closer to a training row than to a holdout row (ties count 1/2),
    with the median distances to each."""
    d_train = _nearest(train, synthetic, 1)[:, 0]
    d_hold = _nearest(holdout, synthetic, 1)[:, 0]
    closer = (d_train < d_hold).astype("float64") + 0.5 * (d_train == d_hold)
    return {
        "dcr_share": float(closer.mean()),
        "dcr_train_median": float(np.median(d_train)),
        "dcr_holdout_median": float(np.median(d_hold)),
    }


def nndr(real: np.ndarray, synthetic: np.ndarray) -> float:
    """The NNDR_PERCENTILE-th percentile of d1/d2 from each synthetic row to ``real``."""
    d = _nearest(real, synthetic, 2)
    if d.shape[1] < 2:
        return 0.0
    ratio = np.divide(d[:, 0], d[:, 1], out=np.zeros(len(d)), where=d[:, 1] > 0)
    return float(np.percentile(ratio, NNDR_PERCENTILE))


def row_hashes(frame: Any) -> np.ndarray:
    """A 64-bit hash of each row's values (the index left out), for exact-match counting."""
    import pandas as pd

    return np.asarray(pd.util.hash_pandas_object(frame, index=False), dtype="uint64")
