"""``registry show REF [--json]``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from synthreg.cli.common import emit_json, handles_errors, workspace_path


@handles_errors
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME, NAME@vN or NAME@ALIAS (NAME means NAME@current).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show everything recorded about a version."""
    import synthreg

    info = synthreg.open(workspace_path(ctx)).show(ref)
    if as_json:
        emit_json(info)
    else:
        _render(info)


def _render(info: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    names = ", ".join(info["aliases"])
    aliases = escape(f" [{names}]") if names else ""
    console.print(f"[bold]{info['ref']}[/bold]{aliases}: {info['status']}")
    facts = Table(show_header=False, box=None)
    val = info["validation"]
    gen = info["generation"] or {}
    for key, value in [
        ("content digest", info["content_digest"]),
        ("spec sha256", info["spec_sha256"]),
        ("seed", info["seed"]),
        ("rows", ", ".join(f"{k}={v:,}" for k, v in (info["rows"] or {}).items())),
        ("created", f"{info['created_at'][:19]} by {info['created_by']}"),
        ("parent", f"v{info['parent']}" if info["parent"] else "-"),
        ("message", info["message"] or "-"),
        ("tags", ", ".join(f"{k}={v}" for k, v in info["tags"].items()) or "-"),
        ("validation", f"{val['evaluated'] - val['failed']}/{val['evaluated']} passed ({val['engine']})"),
        (
            "quality",
            f"{(info.get('quality') or {}).get('quality_score', 0):.3f}" if info.get("quality") else "-",
        ),
        ("model", gen.get("model", "-")),
        ("engine time", f"{gen.get('seconds', 0):.2f}s ({gen.get('rows_per_s', 0):,.0f} rows/s)"),
        ("path", info["path"]),
        ("datacard", info["datacard"]),
        ("git commit", info["git_commit"]),
        ("dvc md5", info["dvc_md5"]),
        ("mlflow run", info["mlflow_run_id"]),
        ("mlflow db", info["mlflow_tracking_uri"]),
        ("versions", ", ".join(f"v{v['version']} ({v['status']})" for v in info["versions"])),
    ]:
        facts.add_row(f"[dim]{key}[/dim]", str(value))
    console.print(facts)
