"""``registry evaluate REF --against PATH...`` and ``registry compare REF_A REF_B``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from synthreg.cli.common import emit_json, handles_errors, workspace_path


@handles_errors
def evaluate(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME, NAME@vN or NAME@ALIAS.")],
    against: Annotated[
        list[Path],
        typer.Option("--against", help="A real table, Parquet or CSV, named by table (repeat per table)."),
    ],
    holdout: Annotated[
        list[Path] | None,
        typer.Option(
            "--holdout", help="Real rows kept out (one per --against table); default: a 50/50 split."
        ),
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="TABLE.COLUMN a model learns: TSTR against TRTR.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the samples, the split and the models.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print evaluation.json.")] = False,
) -> None:
    """Measure a version against real data: fidelity, privacy, utility; store the results with it.

    Writes evaluation.json and evaluation.html into the version directory (committed to git,
    recorded by an audit event), refreshes the DataCard, logs the scores to the version's MLflow
    run, and with --target logs a TSTR and a TRTR run that use the version."""
    import synthreg
    from synthreg.registry.evaluate import evaluate as run

    reg = synthreg.open(workspace_path(ctx))
    data = run(reg.workspace, ref, against, holdout, target, seed)
    if as_json:
        emit_json(data)
        return
    s = data["summary"]
    typer.echo(
        f"{data['ref']}: fidelity {_f(s['fidelity'])} (column shapes {_f(s['column_shapes'])}, "
        f"pair trends {_f(s['column_pair_trends'])}, cardinality {_f(s['cardinality'])})"
    )
    typer.echo(
        f"privacy: DCR share {_f(s['dcr_share'])} (0.5 is ideal), NNDR p10 {_f(s['nndr'])}, "
        f"exact matches {s['exact_matches']}"
    )
    util = data["utility"]
    if util is not None:
        key = util["primary"]
        typer.echo(
            f"utility ({util['target']}, {key}): TSTR {_f(util['tstr'][key])}, TRTR {_f(util['trtr'][key])}, "
            f"ratio {_f(s['tstr_ratio'])}; MLflow runs {', '.join(data['mlflow_runs'].values())}"
        )
    policy = data["policy"]
    if policy["before"] != policy["after"]:
        typer.echo(f"review policy {policy['rule']!r}: {policy['before']} -> {policy['after']}")
    typer.echo(f"report: {data['path']}/evaluation.html")


def _f(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


@handles_errors
def compare(
    ctx: typer.Context,
    ref_a: Annotated[str, typer.Argument(help="The first version.")],
    ref_b: Annotated[str, typer.Argument(help="The second version.")],
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write a bar chart of the common metrics (.png).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The training effect of two versions: the MLflow runs that used each, their metrics side by side.

    Runs come from the usage index (registry use, registry evaluate --target); metrics are compared
    by context (training, tstr, ...) and name, as the mean over the runs of each version."""
    import synthreg
    from synthreg.registry.training_effect import compare_training

    reg = synthreg.open(workspace_path(ctx))
    result = compare_training(reg.workspace, ref_a, ref_b, plot=plot)
    if as_json:
        emit_json(result)
        return
    _render(result)


def _render(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    a, b = result["a"]["ref"], result["b"]["ref"]
    for side in ("a", "b"):
        runs = result[side]["runs"]
        console.print(
            f"{result[side]['ref']}: {len(runs)} runs used it "
            f"({', '.join(r['run_id'][:8] + ' ' + r['context'] for r in runs) or 'none'})"
        )
    table = Table("context", "metric", a, b, "b - a")
    for row in result["metrics"]:
        table.add_row(row["context"], row["metric"], _f(row["a"]), _f(row["b"]), _f(row["delta"]))
    console.print(table if result["metrics"] else "no metric is common to runs of both versions")
    if result.get("plot"):
        console.print(f"plot: {result['plot']}")
