"""``registry init [PATH] [--remote URL]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synthreg.cli.common import emit_json, handles_errors


@handles_errors
def init(
    path: Annotated[Path, typer.Argument(help="Where to make the workspace.")] = Path("."),
    remote: Annotated[
        str | None, typer.Option(help="DVC remote URL (default: a local .registry/dvc-remote).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Make a registry workspace: git, DVC with a remote, registry.toml, the metadata DB."""
    from synthreg.registry.workspace import init_workspace

    result = init_workspace(path, remote)
    if as_json:
        emit_json(result.to_dict())
    elif result.created:
        typer.echo(f"Initialized registry workspace in {result.root} (DVC remote: {result.remote})")
    else:
        typer.echo(f"{result.root} is already a registry workspace: nothing to do")
