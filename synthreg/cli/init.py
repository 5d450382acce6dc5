"""``registry init [PATH] [--db URL] [--remote URL [--endpoint URL]] [--mlflow URL]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synthreg.cli.common import emit_json, handles_errors, workspace_path


@handles_errors
def init(
    ctx: typer.Context,
    path: Annotated[
        Path | None, typer.Argument(help="Where to make the workspace (default: -C's, else here).")
    ] = None,
    remote: Annotated[
        str | None,
        typer.Option(help="DVC remote URL, e.g. s3://bucket/prefix (default: a local .registry/dvc-remote)."),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            help="Metadata DB URL, e.g. postgresql+psycopg://user@host:5432/db (password: PGPASSWORD). "
            "Default: SQLite in .registry/."
        ),
    ] = None,
    endpoint: Annotated[
        str | None, typer.Option(help="Endpoint of an S3-compatible server for an s3:// --remote.")
    ] = None,
    mlflow: Annotated[
        str | None,
        typer.Option(help="MLflow tracking server URL, e.g. http://host:5000 (default: SQLite in .registry)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Make a registry workspace: git, DVC with a remote, registry.toml, the metadata DB.

    Team backends are chosen by URL (each flag alone works too); credentials come from the
    environment only, never from a flag or a file.
    """
    from synthreg.registry.workspace import init_workspace

    # `registry -C DIR init` makes DIR the workspace, as every other command takes -C; an explicit
    # PATH is relative to the current directory, like every other file argument
    result = init_workspace(path or workspace_path(ctx), remote, db=db, endpoint=endpoint, mlflow=mlflow)
    if as_json:
        emit_json(result.to_dict())
    elif result.created:
        typer.echo(f"Initialized registry workspace in {result.root} (DVC remote: {result.remote})")
    else:
        typer.echo(f"{result.root} is already a registry workspace: nothing to do")
