"""``registry materialize DIR``: the command of each version's DVC stage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synthreg.cli.common import handles_errors, workspace_path


@handles_errors
def materialize(
    ctx: typer.Context,
    version_dir: Annotated[Path, typer.Argument(help="A version directory (data/NAME/vN).")],
) -> None:
    """Regenerate a version's tables from its frozen spec; the digest must match."""
    import synthreg

    digest = synthreg.open(workspace_path(ctx)).materialize(version_dir)
    typer.echo(f"{version_dir}: regenerated, digest {digest}")
