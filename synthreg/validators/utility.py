"""Utility of synthetic rows for training: train-synthetic-test-real (TSTR) against
train-real-test-real (TRTR), with scikit-learn's histogram gradient boosting.

A categorical or boolean target is a classification (accuracy, macro F1), a numeric one a
regression (R², mean absolute error). Both models see the same features (the other compared
columns, encoded as for the privacy metrics) and are scored on the same real holdout rows.
``tstr_ratio`` is the TSTR primary score (accuracy or R²) over the TRTR one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from synthreg.errors import UsageError
from synthreg.validators.privacy import Encoder

__all__ = ["PRIMARY", "UtilityResult", "check_target", "tstr"]

#: the score ``tstr_ratio`` divides, per task
PRIMARY = {"classification": "accuracy", "regression": "r2"}


@dataclass(frozen=True)
class UtilityResult:
    """The scores of the model trained on synthetic rows and of the one trained on real rows."""

    target: str
    task: str
    model: str
    tstr: dict[str, float]
    trtr: dict[str, float]
    rows: dict[str, int]

    @property
    def ratio(self) -> float | None:
        """TSTR over TRTR on the primary score (None when TRTR is not positive)."""
        key = PRIMARY[self.task]
        return self.tstr[key] / self.trtr[key] if self.trtr[key] > 0 else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "target": self.target,
            "task": self.task,
            "model": self.model,
            "primary": PRIMARY[self.task],
            "tstr": self.tstr,
            "trtr": self.trtr,
            "tstr_ratio": self.ratio,
            "rows": self.rows,
        }


def check_target(label: str, column: str, frames: Mapping[str, Any]) -> None:
    """UsageError when the target has fewer than two distinct values in one of ``frames``."""
    for where, frame in frames.items():
        values = frame[column].dropna().unique()
        if len(values) < 2:
            shown = "only nulls" if not len(values) else f"only {values[0]!r}"
            raise UsageError(
                f"--target {label} is constant in the {where} rows ({shown}): a model cannot learn it; "
                "pick a column that varies"
            )


def _score(task: str, y_true: Any, y_pred: Any) -> dict[str, float]:
    from sklearn import metrics

    if task == "classification":
        return {
            "accuracy": float(metrics.accuracy_score(y_true, y_pred)),
            "f1_macro": float(metrics.f1_score(y_true, y_pred, average="macro", zero_division=0)),
        }
    return {
        "r2": float(metrics.r2_score(y_true, y_pred)),
        "mae": float(metrics.mean_absolute_error(y_true, y_pred)),
    }


def _xy(frame: Any, encoder: Encoder, target: str, task: str) -> tuple[np.ndarray, np.ndarray]:
    frame = frame[frame[target].notna()]
    y = frame[target].astype(str) if task == "classification" else frame[target].astype("float64")
    return encoder.transform(frame), np.asarray(y)


def tstr(
    target: str,
    task: str,
    kinds: Mapping[str, str],
    *,
    real_train: Any,
    real_test: Any,
    synthetic: Any,
    seed: int,
    label: str = "",
) -> UtilityResult:
    """Train on ``synthetic`` and on ``real_train`` to predict column ``target``; score both on
    ``real_test``. ``label`` names the target in the result (default: the column)."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    features = {k: v for k, v in kinds.items() if k != target}
    encoder = Encoder.fit(real_train, features)
    x_test, y_test = _xy(real_test, encoder, target, task)
    scores, rows = {}, {"test": len(y_test)}
    for name, train in (("tstr", synthetic), ("trtr", real_train)):
        x, y = _xy(train, encoder, target, task)
        cls = HistGradientBoostingClassifier if task == "classification" else HistGradientBoostingRegressor
        model = cls(max_iter=100, random_state=seed).fit(x, y)
        scores[name], rows[name] = _score(task, y_test, model.predict(x_test)), len(y)
    model_name = "HistGradientBoosting" + ("Classifier" if task == "classification" else "Regressor")
    return UtilityResult(label or target, task, model_name, scores["tstr"], scores["trtr"], rows)
