"""``registry spec draft --story TEXT`` : a spec from a story, for review before creating."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synthreg.cli.common import handles_errors, open_registry
from synthreg.errors import UsageError

spec_app = typer.Typer(help="Specs: draft one from a plain-language story.", no_args_is_help=True)


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
