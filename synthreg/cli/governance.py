"""CLI verbs that change a version's state: rollback, checkout, alias, review, use."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synthreg.cli.common import handles_errors, open_registry, say
from synthreg.errors import UsageError

alias_app = typer.Typer(help="Named pointers to versions (production, staging, ...).", no_args_is_help=True)


@handles_errors
def rollback(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    to: Annotated[str, typer.Option("--to", help="The version to restore: vN or N.")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit log).")] = "",
    force: Annotated[bool, typer.Option(help="Restore a rejected version (needs --reason).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Append a version whose content is vN's; current moves to it once the review policy
    approves it (nothing is deleted)."""
    number = to.lower().removeprefix("v")
    if not number.isdigit() or int(number) < 1:
        raise UsageError(f"--to {to!r}: use vN or N, e.g. --to v2")
    result = open_registry(ctx).rollback(name, int(number), reason=reason, force=force)
    data = result.to_dict()
    if data.get("noop"):
        say(data, as_json, data["message"])
        return
    restored = f"{data['ref']}: restored from v{data['restored_from']} (digest {data['content_digest'][:16]})"
    if data["status"] == "approved":
        say(data, as_json, f"{restored}, now current")
        return
    say(
        data,
        as_json,
        f"{restored}, {data['status']} by the review policy: current is unchanged; approve it with "
        f"registry review {data['ref']} --approve --note TEXT",
    )


@handles_errors
def checkout(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME[@vN|@ALIAS].")],
    dest: Annotated[Path | None, typer.Option(help="Copy the version directory here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Materialize a version's files (from the DVC cache, or dvc pull from the remote)."""
    data = open_registry(ctx).checkout(ref, dest).to_dict()
    say(data, as_json, f"{data['ref']}: {data['files']} files at {data['path']} (from {data['source']})")


@alias_app.command("set")
@handles_errors
def alias_set(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME@vN.")],
    alias: Annotated[str, typer.Argument(help="Alias name, e.g. production.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Point ALIAS at a version."""
    data = open_registry(ctx).alias(ref, alias).to_dict()
    say(data, as_json, f"{data['dataset']}@{alias} -> v{data['version']} (was {data['before']})")


@handles_errors
def review(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME@vN.")],
    approve: Annotated[bool, typer.Option("--approve", help="Approve the version.")] = False,
    reject: Annotated[bool, typer.Option("--reject", help="Reject the version.")] = False,
    note: Annotated[str, typer.Option(help="Why (recorded with the actor).")] = "",
    override_validation: Annotated[
        bool,
        typer.Option(
            "--override-validation",
            help="With --approve: approve a version that failed validation (needs --reason; audited).",
        ),
    ] = False,
    reason: Annotated[str, typer.Option(help="Why the validation is overridden (recorded).")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Approve or reject a version; current follows the newest approved one.

    A version that failed validation is approved only with --override-validation --reason TEXT;
    the override is recorded in the audit log and shown on its DataCard."""
    from synthreg.registry.review import review as review_version

    if approve == reject:
        raise UsageError("review needs exactly one of --approve or --reject")
    workspace = open_registry(ctx).workspace
    result = review_version(
        workspace, ref, approve=approve, note=note, override_validation=override_validation, reason=reason
    )
    data = result.to_dict()
    current = f"v{data['current']}" if data["current"] else "none"
    overridden = " (validation overridden)" if data["override_validation"] else ""
    say(
        data,
        as_json,
        f"{data['dataset']}@v{data['version']}: {data['before']} -> {data['after']}{overridden}; "
        f"current is {current}",
    )


@handles_errors
def use(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME[@vN|@ALIAS].")],
    run_id: Annotated[str, typer.Option("--run-id", help="The MLflow run that used the version.")],
    context: Annotated[str, typer.Option(help="How it was used: training, evaluation, ...")] = "training",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Log a version as a dataset input of an MLflow run and record the use."""
    data = open_registry(ctx).use(ref, run_id, context).to_dict()
    say(data, as_json, f"{data['ref']} logged as a {context} input of run {run_id}")


@handles_errors
def disable(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME[@vN|@ALIAS]: the version to derive from.")],
    reason: Annotated[str, typer.Option(help="Why these rows are disabled (required).")] = "",
    ids: Annotated[Path | None, typer.Option(help="A file of primary-key ids, one per line.")] = None,
    where: Annotated[
        str | None, typer.Option(help="A predicate, e.g. \"age < 18 AND plan = 'free'\".")
    ] = None,
    table: Annotated[str | None, typer.Option(help="The table the ids or predicate apply to.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Append a derived version without some rows (and their children); the old one stays."""
    from synthreg.registry.derive import read_ids

    id_list = read_ids(ids) if ids is not None else None
    result = open_registry(ctx).disable(ref, reason=reason, table=table, ids=id_list, where=where)
    data = result.to_dict()
    removed = ", ".join(f"{t}={n:,}" for t, n in data["details"]["removed"].items())
    say(
        data,
        as_json,
        f"{data['ref']}: derived from v{data['derived_from']}, removed {removed}; status {data['status']}",
    )
