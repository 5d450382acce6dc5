"""The ``registry`` command. It parses, calls the library and renders; nothing else.

Heavy modules are imported inside the commands so that ``registry --help`` is fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synthreg.cli import create, init, listing, materialize, show

app = typer.Typer(
    name="registry",
    help="synthreg: a versioned registry for synthetic datasets, with governance.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    workspace: Annotated[
        Path, typer.Option("--workspace", "-C", help="Run as if started in this directory.")
    ] = Path("."),
) -> None:
    """synthreg: a versioned registry for synthetic datasets, with governance.

    Exit codes: 0 ok, 1 error, 2 bad input, 3 validation failed, 4 not found, 5 conflict.
    """
    ctx.obj = {"workspace": str(workspace)}


app.command("init")(init.init)
app.command("create")(create.create)
app.command("list")(listing.list_)
app.command("show")(show.show)
app.command("materialize", hidden=True)(materialize.materialize)


def main() -> None:
    """Console-script entry point."""
    app()
