"""CLI verbs that read and check: lineage, audit, verify, doctor."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from synthreg.cli.common import emit_json, handles_errors, open_registry, say
from synthreg.errors import UsageError

audit_app = typer.Typer(help="The tamper-evident audit log.", invoke_without_command=True)


@handles_errors
def lineage(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME[@vN|@ALIAS].")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Parents, children, the generation run, and every MLflow run and model that used a version."""
    data = open_registry(ctx).lineage(ref)
    if as_json:
        emit_json(data)
        return
    typer.echo(f"{data['ref']}  digest {data['content_digest'][:16]}")
    typer.echo("  parents:   " + (", ".join(f"{k} v{v}" for k, v in data["parents"].items()) or "-"))
    typer.echo(
        "  children:  " + (", ".join(f"v{c['version']} ({c['relation']})" for c in data["children"]) or "-")
    )
    gen = data["generation"]
    typer.echo(
        f"  generated: {gen['model']} seed {gen['seed']}, run {gen['mlflow_run_id']}"
        if gen
        else f"  made by:   run {data['mlflow_run_id']}"
    )
    for run in data["consumers"]:
        typer.echo(f"  used by:   run {run['run_id']} (found by {', '.join(run['found_by'])})")
    for model in data["models"]:
        typer.echo(f"  model:     {model['name']} ({model['model_id']}) from run {model['source_run_id']}")


@audit_app.callback()
@handles_errors
def audit(
    ctx: typer.Context,
    dataset: Annotated[str | None, typer.Option(help="Only this dataset.")] = None,
    since: Annotated[str | None, typer.Option(help="Only events at or after this date.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, json, md or html.")] = "table",
    output: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None,
) -> None:
    """List audit events, or write a readable audit report (md, html)."""
    if ctx.invoked_subcommand:
        return
    if fmt not in ("table", "json", "md", "html"):
        raise UsageError(f"--format {fmt!r}: use table, json, md or html")
    reg = open_registry(ctx)
    if fmt in ("md", "html"):
        _write(reg.audit_report(fmt, dataset, since), output)
        return
    events = reg.audit(dataset, since)
    if fmt == "json":
        import json

        _write(json.dumps(events, indent=2, default=str) + "\n", output)
        return
    _write("".join(_line(e) + "\n" for e in events), output)


def _line(e: dict[str, Any]) -> str:
    ref = (e["dataset"] + (f"@v{e['version']}" if e["version"] else "")) if e["dataset"] else "-"
    return f"{e['seq']:>5} {e['at'][:19]} {e['actor']:<12} {e['action']:<9} {ref:<20} {e['hash'][:12]}"


def _write(text: str, output: Path | None) -> None:
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}", err=True)


@audit_app.command("verify")
@handles_errors
def audit_verify(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
) -> None:
    """Check the log in git, its anchors, the DB's copy and state (exit 1 naming what is wrong)."""
    data = open_registry(ctx).verify_audit().to_dict()
    checked = data["checked"]
    say(
        data,
        as_json,
        f"audit chain intact: {checked['events']} events, head {checked['head'][:16]}, "
        f"{checked['git_anchors']} git anchors; DB matches the log; signatures: {checked['signatures']}",
    )


@handles_errors
def verify(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME[@vN|@ALIAS].")],
    rebuild: Annotated[bool, typer.Option(help="Also regenerate from the frozen spec and compare.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check every file of a version; exit 1 naming each one that does not match.

    Data files and the content digest against the manifest and the DB, spec.yaml against its
    spec_sha256, every other file against git (the version's commit; HEAD for the DataCards)."""
    data = open_registry(ctx).verify(ref, rebuild=rebuild).to_dict()
    say(
        data,
        as_json,
        f"{data['ref']}: ok ({data['checked']['files']} data files, "
        f"{data['checked'].get('small_files', 0)} files in git, digest "
        f"{data['checked'].get('content_digest', '')[:16]}"
        f"{', rebuilt identically' if rebuild else ''})",
    )


@handles_errors
def doctor(
    ctx: typer.Context,
    repair: Annotated[bool, typer.Option(help="Fix what is safe to fix.")] = False,
    rebuild: Annotated[
        bool, typer.Option(help="Repair, then recreate what the DB lacks from git (log, manifests).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check that each backend answers (DB, DVC remote, MLflow, a remote [compute] scheduler) and that
    DB, files, DVC and git agree; list (and optionally fix) problems."""
    result = open_registry(ctx).doctor(repair=repair, rebuild=rebuild)
    data = result.to_dict()
    if as_json:
        emit_json(data)
    else:
        for b in data["backends"]:
            if b["ok"]:
                typer.echo(f"{'ok':<8} {'backend':<15} {b['backend']} at {b['url']}: {b['detail']}")
        for p in data["problems"]:
            typer.echo(f"{'fixed' if p['fixed'] else 'PROBLEM':<8} {p['kind']:<15} {p['detail']}")
        typer.echo("healthy" if data["healthy"] else "problems left: run with --repair or --rebuild")
    if not data["healthy"]:
        raise typer.Exit(1)


@handles_errors
def diff(
    ctx: typer.Context,
    ref_a: Annotated[str, typer.Argument(help="The old version, e.g. fitness@v1.")],
    ref_b: Annotated[str, typer.Argument(help="The new version, e.g. fitness@v2.")],
    report: Annotated[Path | None, typer.Option(help="Also write a report: FILE.md or FILE.html.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole diff as JSON.")] = False,
) -> None:
    """Compare two versions: generation, schema, rows by key, distributions (KS, PSI, JS), plots."""
    data = open_registry(ctx).diff(ref_a, ref_b, report)
    if as_json:
        emit_json(data)
        return
    typer.echo(data["summary"]["text"])
    for name, table in data["tables"].items():
        rows = table.get("rows", {})
        rd = table.get("rows_diff") or {}
        changed = [c for c, s in (table.get("columns") or {}).items() if s.get("changed")]
        typer.echo(
            f"  {name}: rows {rows.get('a')} -> {rows.get('b')}; added {rd.get('added')}, "
            f"removed {rd.get('removed')}, changed {rd.get('changed')}; "
            f"columns changed: {', '.join(changed) or 'none'}"
        )
    typer.echo(f"  stored in {data['stored_at']}" + (f"; report {report}" if report else ""))
