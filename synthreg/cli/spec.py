"""``registry spec draft --story TEXT`` and ``registry spec infer PATH...``: a spec for review
before creating, drafted from a story or inferred from real tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synthreg.cli.common import handles_errors, open_registry
from synthreg.errors import UsageError

spec_app = typer.Typer(
    help="Specs: draft one from a plain-language story, or infer one from real tables.", no_args_is_help=True
)


def read_story(story: str | None, story_file: Path | None) -> str:
    """The story text from --story or --story-file (exactly one)."""
    if (story is None) == (story_file is None):
        raise UsageError("give exactly one of --story TEXT or --story-file FILE")
    if story_file is not None:
        if not story_file.is_file():
            raise UsageError(f"--story-file {story_file}: no such file")
        return story_file.read_text(encoding="utf-8")
    return story or ""


@spec_app.command("draft")
@handles_errors
def draft(
    ctx: typer.Context,
    story: Annotated[str | None, typer.Option(help="The dataset in plain language.")] = None,
    story_file: Annotated[Path | None, typer.Option(help="A file holding the story.")] = None,
    seed: Annotated[int, typer.Option(help="Seed passed to the provider (best effort).")] = 0,
    max_usd: Annotated[
        float | None, typer.Option("--max-usd", help="Stop the draft past this cost (overrides [llm]).")
    ] = None,
    max_calls: Annotated[
        int | None,
        typer.Option("--max-calls", help="Stop the draft after this many calls (overrides [llm])."),
    ] = None,
) -> None:
    """Draft a spec from a story with the configured LLM; print it as YAML (nothing is registered).

    The budget ([llm] max_usd / max_calls, or the options) caps the whole draft; a rerun after
    it ran out reuses the recorded calls."""
    from synthreg.registry.story import draft as draft_story

    if (max_usd is not None and max_usd < 0) or (max_calls is not None and max_calls < 0):
        raise UsageError("--max-usd and --max-calls must be >= 0")
    budget = {k: v for k, v in (("max_usd", max_usd), ("max_calls", max_calls)) if v is not None}
    story_text = read_story(story, story_file)
    result = draft_story(open_registry(ctx).workspace, story_text, seed=seed, budget=budget)
    typer.echo(result.spec_yaml, nl=False)


@spec_app.command("infer")
@handles_errors
def infer(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Parquet or CSV files (one table each, named by the stem), or a DuckDB/SQLite file."
        ),
    ],
    min_count: Annotated[
        int, typer.Option(help="A real value enters the spec only if at least this many rows hold it...")
    ] = 5,
    min_share: Annotated[
        float, typer.Option(help="...and at least this share of the column's non-null rows.")
    ] = 0.01,
    quantiles: Annotated[
        int, typer.Option(help="Quantiles per numeric column (empirical distribution).")
    ] = 51,
    seed: Annotated[int, typer.Option(help="The spec's seed.")] = 0,
    memory_limit: Annotated[
        str, typer.Option(help="DuckDB's memory limit while profiling; it spills beyond.")
    ] = "1GB",
) -> None:
    """Infer a spec from real tables and print it as YAML (nothing is registered).

    Numbers become quantiles; text becomes its frequent categories or tokens (above the threshold),
    a pattern or a built-in vocabulary; keys, foreign keys and time order are found across tables.
    Notes go to stderr."""
    from synthreg.registry.infer import InferOptions, infer_spec

    if quantiles < 2:
        raise UsageError(f"--quantiles {quantiles}: use at least 2")
    result = infer_spec(
        paths,
        InferOptions(min_count=min_count, min_share=min_share, quantiles=quantiles),
        seed=seed,
        memory_limit=memory_limit,
    )
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(result.spec_yaml, nl=False)
