"""``registry serve`` and ``registry token create|list|revoke``."""

from __future__ import annotations

from typing import Annotated

import typer

from synthreg.cli.common import emit_json, handles_errors, open_registry

token_app = typer.Typer(help="API tokens of registry serve (stored hashed).", no_args_is_help=True)


@handles_errors
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Generation jobs run at once.")] = 2,
) -> None:
    """Serve the registry: REST API under /api/ (spec at /openapi.json), tokens and roles, four eyes."""
    import uvicorn

    from synthreg.service.app import create_app

    app = create_app(open_registry(ctx).root, workers=workers)
    # keep-alive longer than clients keep idle connections (httpx: 5 s), so none races a server close
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_keep_alive=30)


@token_app.command("create")
@handles_errors
def create(
    ctx: typer.Context,
    user: Annotated[str, typer.Option(help="Who the token is (the audit actor of its writes).")],
    role: Annotated[str, typer.Option(help="viewer, editor, reviewer or admin.")],
    dataset: Annotated[str | None, typer.Option(help="Grant the role on this dataset only.")] = None,
) -> None:
    """Make a token; it is printed once, on the last line, and only its hash is stored."""
    from synthreg.registry.tokens import create_token

    token_id, token = create_token(open_registry(ctx).workspace, user, role, dataset)
    scope = f" on {dataset}" if dataset else ""
    typer.echo(f"token {token_id}: {user} as {role}{scope}; it is shown only now:", err=True)
    typer.echo(token)


@token_app.command("list")
@handles_errors
def list_(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Tokens: id, user, role, dataset, revoked (never the token)."""
    from synthreg.registry.tokens import list_tokens

    rows = list_tokens(open_registry(ctx).workspace)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        state = "revoked" if r["revoked"] else "active"
        typer.echo(f"{r['id']:>4}  {r['user']:<20} {r['role']:<9} {r['dataset'] or '*':<20} {state}")


@token_app.command("revoke")
@handles_errors
def revoke(
    ctx: typer.Context,
    token_id: Annotated[int, typer.Argument(help="The token's id (registry token list).")],
) -> None:
    """Revoke a token: it authenticates nobody from now on."""
    from synthreg.registry.tokens import revoke_token

    row = revoke_token(open_registry(ctx).workspace, token_id)
    typer.echo(f"token {token_id} ({row['user']}, {row['role']}) revoked")
