"""The ``registry`` command. It parses, calls the library and renders; nothing else.

Heavy modules are imported inside the commands so that ``registry --help`` is fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synthreg.cli import (
    card,
    create,
    evaluate,
    governance,
    init,
    inspect,
    listing,
    materialize,
    serve,
    show,
    spec,
    text,
    warm,
)

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
        Path,
        typer.Option(
            "--workspace",
            "-C",
            help="The workspace to work in (default: the current directory); file arguments such as "
            "--spec stay relative to the current directory.",
        ),
    ] = Path("."),
    actor: Annotated[
        str | None,
        typer.Option("--actor", help="Who is acting (recorded in the audit log; default: OS user)."),
    ] = None,
) -> None:
    """synthreg: a versioned registry for synthetic datasets, with governance.

    Exit codes: 0 ok, 1 error, 2 bad input, 3 validation failed, 4 not found, 5 conflict.
    """
    ctx.obj = {"workspace": str(workspace)}
    if actor:
        import os

        from synthreg import env

        os.environ[env.ACTOR] = actor


app.command("init")(init.init)
app.command("create")(create.create)
app.command("list")(listing.list_)
app.command("show")(show.show)
app.command("diff")(inspect.diff)
app.command("rollback")(governance.rollback)
app.command("checkout")(governance.checkout)
app.command("search")(text.search)
app.command("export")(text.export)
app.add_typer(governance.alias_app, name="alias")
app.command("review")(governance.review)
app.command("disable")(governance.disable)
app.command("use")(governance.use)
app.command("lineage")(inspect.lineage)
app.add_typer(inspect.audit_app, name="audit")
app.command("verify")(inspect.verify)
app.command("card")(card.card)
app.command("evaluate")(evaluate.evaluate)
app.command("compare")(evaluate.compare)
app.add_typer(spec.spec_app, name="spec")
app.command("doctor")(inspect.doctor)
app.command("serve")(serve.serve)
app.add_typer(serve.token_app, name="token")
app.add_typer(warm.warm_app, name="warm")
app.command("materialize", hidden=True)(materialize.materialize)


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM (a cancelled job, a stopped container) unwinds like Ctrl-C: every write undoes itself."""
    raise KeyboardInterrupt(f"terminated by signal {signum}")


def main() -> None:
    """Console-script entry point: a ``create`` goes to the warm server when wanted and running
    (``synthreg.cli.warm``); otherwise the command runs here, and a wanted server is started for
    the next one."""
    import sys

    argv = sys.argv[1:]
    if warm.wanted(argv):
        code = warm.run_remote(argv)
        if code is not None:
            _exit_now(code)
        code = run_command()
        warm.start_in_background()
        _exit_now(code)
    _exit_now(run_command())


def run_command() -> int:
    """Run ``sys.argv`` as a ``registry`` command in this process; its exit code."""
    import signal
    import sys

    from synthreg import env

    signal.signal(signal.SIGTERM, _terminated)
    env.mark_one_shot()
    argv = sys.argv[1:]
    if warm.subcommand(argv) == "create" and not {"--help", "-h"} & set(argv):
        from synthreg.registry import sidecar

        sidecar.start_early()  # its helpers import Great Expectations while this process starts
    try:
        app()
    except SystemExit as done:
        if done.code is not None and not isinstance(done.code, int):
            raise
        return done.code or 0
    return 0


def _exit_now(code: int) -> None:
    """Exit without tearing the interpreter down object by object: after a create that is ~0.6 s
    of freeing what the process is about to lose anyway. Everything the command wrote is already
    closed; the output streams are flushed and atexit handlers run, as on a normal exit."""
    import atexit
    import contextlib
    import os
    import sys

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`registry list | head`)
            stream.flush()
    os._exit(code)
