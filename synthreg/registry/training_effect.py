"""``registry compare REF_A REF_B``: the training effect of two versions.

The MLflow runs that used each version come from the usage index (``registry use``,
``synthreg.log_input``, ``registry evaluate --target``); their metrics are read back from MLflow
and compared by (usage context, metric name), as the mean over each version's runs. Only
metrics that runs of both versions logged in the same context are compared; the rest are listed
per run. (``synthreg.registry.compare`` is ``registry diff``'s storage: this is another operation.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlmodel import select

from synthreg.errors import UsageError
from synthreg.integrations import mlflow_runs
from synthreg.registry.query import resolve
from synthreg.registry.refs import parse_ref
from synthreg.registry.store import Usage, read_session
from synthreg.registry.workspace import Workspace

__all__ = ["compare_training"]


def _side(ws: Workspace, ref: str) -> dict[str, Any]:
    with read_session(ws.engine) as session:
        dataset, version = resolve(session, parse_ref(ref))
        usages = session.exec(
            select(Usage).where(Usage.version_id == version.id).order_by(Usage.id)  # type: ignore[arg-type]
        ).all()
    contexts = {u.run_id: u.context for u in usages}
    runs = mlflow_runs.read_runs(ws.settings.mlflow_tracking_uri, list(contexts))
    for run in runs:
        run["context"] = contexts[run["run_id"]]
    return {
        "ref": f"{dataset.name}@v{version.number}",
        "content_digest": version.content_digest,
        "runs": runs,
    }


def _means(runs: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[float, int]]:
    sums: dict[tuple[str, str], list[float]] = {}
    for run in runs:
        for name, value in run["metrics"].items():
            sums.setdefault((run["context"], name), []).append(float(value))
    return {k: (sum(v) / len(v), len(v)) for k, v in sums.items()}


def compare_training(ws: Workspace, ref_a: str, ref_b: str, plot: Path | None = None) -> dict[str, Any]:
    """Runs of each version and their common metrics side by side; a bar chart at ``plot``."""
    if plot is not None and plot.suffix.lower() != ".png":
        raise UsageError(f"--plot {plot}: use a .png file name")
    a, b = _side(ws, ref_a), _side(ws, ref_b)
    ma, mb = _means(a["runs"]), _means(b["runs"])
    rows = [
        {
            "context": ctx,
            "metric": name,
            "a": ma[(ctx, name)][0],
            "b": mb[(ctx, name)][0],
            "delta": mb[(ctx, name)][0] - ma[(ctx, name)][0],
            "runs_a": ma[(ctx, name)][1],
            "runs_b": mb[(ctx, name)][1],
        }
        for ctx, name in sorted(set(ma) & set(mb))
    ]
    result: dict[str, Any] = {"a": a, "b": b, "metrics": rows, "plot": None}
    if plot is not None and rows:
        _draw(rows, a["ref"], b["ref"], plot)
        result["plot"] = str(plot)
    return result


def _draw(rows: list[dict[str, Any]], label_a: str, label_b: str, path: Path) -> None:
    from matplotlib.figure import Figure

    names = [f"{r['context']}\n{r['metric']}" for r in rows]
    fig = Figure(figsize=(max(5.0, 1.2 * len(rows)), 3.5), dpi=100)
    ax = fig.subplots()
    xs = list(range(len(rows)))
    ax.bar([x - 0.2 for x in xs], [r["a"] for r in rows], 0.4, label=label_a)
    ax.bar([x + 0.2 for x in xs], [r["b"] for r in rows], 0.4, label=label_b)
    ax.set_xticks(xs, names, fontsize=8)
    ax.set_title("Metrics of the runs that used each version (mean per version)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
