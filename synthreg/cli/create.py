"""``registry create NAME --spec FILE ...``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from synthreg.cli.common import emit_json, handles_errors, parse_pairs, workspace_path
from synthreg.errors import UsageError


@handles_errors
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset name: ^[a-z][a-z0-9_-]{0,63}$.")],
    spec: Annotated[Path | None, typer.Option("--spec", help="YAML or JSON spec file.")] = None,
    story: Annotated[str | None, typer.Option(help="The dataset in plain language (uses [llm]).")] = None,
    story_file: Annotated[Path | None, typer.Option(help="A file holding the story.")] = None,
    like: Annotated[
        list[Path] | None,
        typer.Option("--like", help="Infer the spec from real tables (as `spec infer`; repeatable)."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Override the spec's seed.")] = None,
    rows: Annotated[
        list[str] | None, typer.Option("--rows", help="Override a table's rows: TABLE=N (repeatable).")
    ] = None,
    scale: Annotated[float | None, typer.Option(help="Multiply every table's rows (before --rows).")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag the version: K=V (repeatable).")] = None,
    message: Annotated[str, typer.Option("--message", "-m", help="Why this version exists.")] = "",
    max_usd: Annotated[
        float | None, typer.Option("--max-usd", help="Stop LLM calls past this cost (overrides [llm]).")
    ] = None,
    max_calls: Annotated[
        int | None, typer.Option("--max-calls", help="Stop after this many LLM calls (overrides [llm]).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Generation processes (default: every core; never changes the data).")
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            help="Run generation on Dask: tcp://SCHEDULER:8786, or local:N (started and stopped here)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Generate a dataset version from a spec and register it (validated, tracked, logged)."""
    if like and (spec is not None or story is not None or story_file is not None):
        raise UsageError("give either --like PATH or --spec/--story, not both")
    if spec is None and story is None and story_file is None and not like:
        raise UsageError("create needs --spec FILE (see examples/fitness.yaml), --story TEXT or --like PATH")
    if spec is not None and (story is not None or story_file is not None):
        raise UsageError("give either --spec or --story/--story-file, not both")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers {workers}: use a positive number")
    row_overrides = parse_pairs(rows, "--rows", as_int=True)
    tags = parse_pairs(tag, "--tag")
    import synthreg

    if (max_usd is not None and max_usd < 0) or (max_calls is not None and max_calls < 0):
        raise UsageError("--max-usd and --max-calls must be >= 0")
    budget = {k: v for k, v in (("max_usd", max_usd), ("max_calls", max_calls)) if v is not None}
    reg = synthreg.open(workspace_path(ctx))
    source: Any = spec
    drafted: Any = None
    if like:
        from synthreg.registry.infer import infer_spec

        inferred = infer_spec(like)
        for note in inferred.notes:
            typer.echo(f"note: {note}", err=True)
        source = inferred.spec
    elif spec is None:
        from synthreg.cli.spec import read_story
        from synthreg.registry.story import draft

        drafted = draft(reg.workspace, read_story(story, story_file), seed=seed or 0, budget=budget)
        source = drafted.spec
    result = reg.create(
        name,
        source,
        seed=seed,
        rows=row_overrides,
        scale=scale,
        tags=tags,
        message=message,
        workers=workers,
        story=drafted,
        on_preflight=_print_preflight,
        llm_budget=budget,
        cluster=cluster,
    )
    if as_json:
        emit_json(result.to_dict())
    else:
        _render(result.to_dict())


def _print_preflight(estimate: dict[str, Any]) -> None:
    """The LLM cost estimate, on stderr, before any call is made."""
    unpriced = (
        f"; unpriced models: {', '.join(estimate['unpriced_models'])}" if estimate["unpriced_models"] else ""
    )
    typer.echo(
        f"LLM pre-flight: {estimate['calls']} calls to make ({estimate['cached']} already recorded), "
        f"~{estimate['est_prompt_tokens']:,} tokens in, ~{estimate['est_completion_tokens']:,} out, "
        f"~${estimate['est_usd']:.4f}{unpriced}",
        err=True,
    )


def _render(data: dict[str, Any]) -> None:
    val = data["validation"]
    typer.echo(
        f"{data['ref']}: {data['status']}, {sum(data['rows'].values()):,} rows "
        f"({', '.join(f'{k}={v:,}' for k, v in data['rows'].items())})"
    )
    typer.echo(f"  digest      {data['content_digest']}")
    typer.echo(f"  validation  {val['evaluated'] - val['failed']}/{val['evaluated']} checks passed")
    typer.echo(f"  path        {data['path']}")
    typer.echo(f"  mlflow run  {data['mlflow_run_id']}")
    timings = ", ".join(f"{k} {v:.2f}s" for k, v in data["timings"].items())
    typer.echo(f"  took        {data['seconds']:.2f}s ({timings})")
