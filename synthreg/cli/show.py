"""``registry show REF [--spec] [--json]``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from synthreg.cli.common import emit_json, handles_errors, workspace_path


@handles_errors
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME, NAME@vN or NAME@ALIAS (NAME means NAME@current).")],
    spec: Annotated[
        bool, typer.Option("--spec", help="Print the frozen spec.yaml too (story versions always do).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show everything recorded about a version.

    A version made from a story (``create --story``) also shows the story and its frozen spec;
    ``--spec`` shows the frozen spec of any version. With ``--json`` they are ``story`` (None for
    a spec version) and ``spec_yaml``. A version that used an LLM shows its calls (``llm``)."""
    import synthreg
    from synthreg.registry.cards import evaluation_card_facts, llm_card_facts
    from synthreg.registry.query import frozen_spec

    reg = synthreg.open(workspace_path(ctx))
    info = reg.show(ref)
    made_from = frozen_spec(reg.root / info["path"])
    info["llm"] = llm_card_facts(reg.root / info["path"])
    info["evaluation"] = evaluation_card_facts(reg.root / info["path"])
    info["story"] = made_from["story"]
    if spec or made_from["story"] is not None:
        info["spec_yaml"] = made_from["spec_yaml"]
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
        *([("llm calls", _llm_line(info["llm"]))] if info.get("llm") else []),
        *([("evaluation", _evaluation_line(info["evaluation"]))] if info.get("evaluation") else []),
        ("path", info["path"]),
        ("datacard", info["datacard"]),
        ("git commit", info["git_commit"]),
        ("dvc md5", info["dvc_md5"]),
        ("mlflow run", info["mlflow_run_id"]),
        ("mlflow", info["mlflow_tracking_uri"]),
        ("versions", ", ".join(f"v{v['version']} ({v['status']})" for v in info["versions"])),
    ]:
        facts.add_row(f"[dim]{key}[/dim]", str(value))
    console.print(facts)
    if info.get("story") is not None:
        _section(console, "Story", info["story"].rstrip("\n"))
    if "spec_yaml" in info:
        where = f"{info['path']}/spec.yaml"
        text = info["spec_yaml"] if info["spec_yaml"] is not None else f"(no {where} in the workspace)"
        _section(console, f"Spec (frozen, {where})", text.rstrip("\n"))


def _llm_line(llm: dict[str, Any]) -> str:
    made = [w for w, on in (("the spec from a story", llm["story"]), ("data", llm["data"])) if on]
    return (
        f"{llm['calls']:,} ({', '.join(llm['models']) or 'no model'}), {llm['tokens_in']:,} tokens in, "
        f"{llm['tokens_out']:,} out, ${llm['cost_usd']:.4f}; made {' and '.join(made) or 'nothing'}; "
        "replayable from llm_calls.jsonl"
    )


def _evaluation_line(evaluation: dict[str, Any]) -> str:
    s = evaluation["summary"]
    num = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    util = f", TSTR/TRTR {num(s.get('tstr_ratio'))}" if s.get("tstr_ratio") is not None else ""
    return (
        f"fidelity {num(s.get('fidelity'))}, DCR share {num(s.get('dcr_share'))}, "
        f"exact matches {s.get('exact_matches')}{util} (evaluation.html)"
    )


def _section(console: Any, title: str, text: str) -> None:
    """A titled block printed verbatim: no markup, no highlighting, no wrapping."""
    from rich.markup import escape

    console.print()
    console.print(f"[bold]{escape(title)}[/bold]")
    console.print(text, markup=False, highlight=False, emoji=False, soft_wrap=True)
