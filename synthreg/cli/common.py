"""Shared CLI plumbing: error mapping, JSON output, option parsing."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from synthreg import env
from synthreg.errors import (
    SynthregError,
    UsageError,
    ValidationFailedError,
    VerificationError,
    exit_code_for,
)

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int) -> typer.Exit:
    """Print ``error: message`` to stderr and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def handles_errors(fn: F) -> F:
    """Map synthreg errors to a one-line message on stderr and their exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ValidationFailedError, VerificationError) as exc:
            result = getattr(exc, "result", None)
            if result is not None and kwargs.get("as_json"):
                emit_json(result.to_dict())
            raise fail(str(exc), exc.exit_code) from None
        except SynthregError as exc:
            raise fail(str(exc), exit_code_for(exc)) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            if os.environ.get(env.DEBUG):
                raise
            message = f"internal error: {type(exc).__name__}: {exc}"
            raise fail(f"{message} (set SYNTHREG_DEBUG=1 for the traceback)", 1) from None

    return wrapper  # type: ignore[return-value]


def emit_json(data: Any) -> None:
    """Machine output on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def parse_pairs(values: list[str] | None, option: str, as_int: bool = False) -> dict[str, Any]:
    """Parse repeated ``KEY=VALUE`` options."""
    out: dict[str, Any] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{option} {item!r}: use {option} KEY=VALUE")
        if as_int:
            try:
                out[key] = int(value)
            except ValueError:
                raise UsageError(f"{option} {item!r}: {value!r} is not an integer") from None
        else:
            out[key] = value
    return out


def workspace_path(ctx: typer.Context) -> Path:
    """The ``--workspace`` given to the app (default: the current directory)."""
    obj = ctx.find_root().obj or {}
    return Path(obj.get("workspace", "."))


def open_registry(ctx: typer.Context) -> Any:
    """The registry of the ``--workspace`` given to the app."""
    import synthreg

    return synthreg.open(workspace_path(ctx))


def say(data: Any, as_json: bool, text: str) -> None:
    """``--json``: the data on stdout; else one human line."""
    if as_json:
        emit_json(data)
    else:
        typer.echo(text)
