"""``registry search`` and ``registry export``: a version's text, found and handed to training."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synthreg.cli.common import emit_json, handles_errors, open_registry, say

_PREVIEW = 100


@handles_errors
def search(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME[@vN|@ALIAS].")],
    query: Annotated[str, typer.Argument(help="Words to find (every word must occur; stemmed).")],
    where: Annotated[
        str | None,
        typer.Option(help="Filter hits, e.g. \"label = 'impolite'\" or 'tag_topic_cluster = 2'."),
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many hits, best first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Full-text search over a version's free text (SQLite FTS5); hits carry tags and provenance."""
    data = open_registry(ctx).search(ref, query, where, limit)
    if as_json:
        emit_json(data)
        return
    typer.echo(f"{data['ref']}: {data['matches']} matching rows for {query!r}", err=True)
    for hit in data["hits"]:
        tags = hit["tags"]
        text = hit["text"] if len(hit["text"]) <= _PREVIEW else hit["text"][: _PREVIEW - 1] + "…"
        model = hit["provenance"].get("model_answered")
        where_from = f"{hit['table']}.{hit['column']}[{hit['row']}]" + (f" {model}" if model else "")
        typer.echo(
            f"{hit['score']:.2f}  {where_from}  label={tags['tag_label']} "
            f"topic={tags['tag_topic_cluster']}  {text}"
        )


@handles_errors
def export(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME[@vN|@ALIAS].")],
    fmt: Annotated[str, typer.Option("--format", help="jsonl, csv or hf (datasets.load_from_disk).")],
    dest: Annotated[
        Path | None, typer.Option(help="A new or empty directory (default: ./NAME-vN-FORMAT).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Export a version as JSONL shards, CSV or a Hugging Face dataset, with its DataCard (audited)."""
    data = open_registry(ctx).export(ref, fmt, dest).to_dict()
    rows = sum(data["rows"].values())
    say(data, as_json, f"{data['ref']}: {rows} rows as {data['format']} in {data['dest']}")
