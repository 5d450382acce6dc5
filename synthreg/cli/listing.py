"""``registry list [--tag K=V] [--json]``."""

from __future__ import annotations

from typing import Annotated

import typer

from synthreg.cli.common import emit_json, handles_errors, parse_pairs, workspace_path


@handles_errors
def list_(
    ctx: typer.Context,
    tag: Annotated[str | None, typer.Option(help="Only datasets with a version tagged K=V.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List datasets with their latest and current versions."""
    import synthreg

    pair = next(iter(parse_pairs([tag], "--tag").items())) if tag else None
    rows = synthreg.open(workspace_path(ctx)).list(tag=pair)
    if as_json:
        emit_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("dataset", "versions", "latest", "status", "current", "rows", "updated")
    for r in rows:
        table.add_row(
            r["dataset"],
            str(r["versions"]),
            f"v{r['latest']}",
            r["latest_status"] or "",
            f"v{r['current']}" if r["current"] else "-",
            f"{sum((r['rows'] or {}).values()):,}",
            (r["updated_at"] or "")[:19],
        )
    Console().print(table if rows else "no datasets yet: run 'registry create NAME --spec FILE'")
