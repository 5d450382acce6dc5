"""``registry card REF [--format md|json|croissant]``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from synthreg.cli.common import handles_errors, open_registry
from synthreg.errors import UsageError


@handles_errors
def card(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME[@vN|@ALIAS].")],
    fmt: Annotated[str, typer.Option("--format", help="md, json or croissant (JSON-LD).")] = "md",
    output: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None,
) -> None:
    """Print a version's DataCard: Hugging Face Markdown, JSON, or Croissant JSON-LD."""
    if fmt not in ("md", "json", "croissant"):
        raise UsageError(f"--format {fmt!r}: use md, json or croissant")
    data = open_registry(ctx).card(ref, fmt)
    text = data if isinstance(data, str) else json.dumps(data, indent=2, default=str) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}", err=True)
