"""DataCards: ``datacard.md`` (Hugging Face YAML header + sections) and ``datacard.json``.

Every field comes from facts the registry recorded; nothing is a placeholder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml

from synthreg.datacards.text_card import semantic_md
from synthreg.generators.spec import Spec

__all__ = ["CARD_FILES", "CardFacts", "build_card", "render_markdown", "size_category", "write_card"]

CARD_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class CardFacts:
    """The recorded facts a card is made from."""

    name: str
    version: int
    status: str
    created_at: str
    created_by: str
    spec: Spec
    spec_sha256: str
    content_digest: str
    model: str
    rows: dict[str, int]
    schemas: dict[str, pa.Schema]
    validation: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)
    parent: int | None = None
    files: list[dict[str, Any]] = field(default_factory=list)
    synthreg_version: str = ""
    aliases: list[str] = field(default_factory=list)
    consumers: list[dict[str, Any]] = field(default_factory=list)
    quality: dict[str, Any] | None = None
    audit_head: str = ""
    origin: dict[str, Any] = field(default_factory=dict)  # restored_from / derived_from / derivation
    changes: dict[str, Any] | None = None  # a diff against the parent, when one was made
    plots: list[str] = field(default_factory=list)  # relative paths of the plots (SVG; PNG before)
    pii: dict[str, Any] | None = None
    llm: dict[str, Any] | None = None  # the LLM calls behind the version (registry.cards.llm_card_facts)
    evaluation: dict[str, Any] | None = None  # registry evaluate's scores (cards.evaluation_card_facts)


def size_category(rows: int) -> str:
    """The Hugging Face ``size_categories`` bucket for a row count."""
    bounds = [
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
        (100_000_000, "10M<n<100M"),
        (1_000_000_000, "100M<n<1B"),
    ]
    for bound, label in bounds:
        if rows < bound:
            return label
    return "1B<n<10B"


def _hf_header(facts: CardFacts) -> dict[str, Any]:
    spec = facts.spec
    configs = [
        {
            "config_name": table,
            "data_files": [{"split": "train", "path": f"tables/{table}/*.parquet"}],
            **({"default": True} if i == 0 else {}),
        }
        for i, table in enumerate(spec.table_order())
    ]
    return {
        "license": spec.license,
        "language": list(spec.language),
        "pretty_name": f"{facts.name} v{facts.version}",
        "tags": sorted({*spec.tags, "synthetic", "synthreg"}),
        "task_categories": list(spec.task_categories),
        "size_categories": [size_category(sum(facts.rows.values()))],
        "annotations_creators": ["machine-generated"],
        "language_creators": ["machine-generated"],
        "multilinguality": ["monolingual"] if len(spec.language) == 1 else ["multilingual"],
        "source_datasets": ["original"],
        "configs": configs,
    }


def _fields(facts: CardFacts, table: str) -> list[dict[str, Any]]:
    columns = facts.spec.tables[table].columns
    schema = facts.schemas[table]
    if facts.spec.tables[table].llm is not None:
        return _llm_fields(schema)
    out = []
    for f in schema:
        col = columns[f.name]
        typ = f.type.value_type if pa.types.is_dictionary(f.type) else f.type
        out.append(
            {
                "name": f.name,
                "type": col.type,
                "arrow_type": str(typ),
                "description": col.description or _describe(col),
                "nullable": bool(col.null_rate),
            }
        )
    return out


_LLM_TYPES = {"int64": "int", "double": "float", "bool": "bool", "string": "text"}


def _llm_fields(schema: pa.Schema) -> list[dict[str, Any]]:
    """A table made by an LLM: labeled text with provenance and curation columns (docs LLM.md)."""
    return [
        {
            "name": f.name,
            "type": _LLM_TYPES.get(str(f.type), "text"),
            "arrow_type": str(f.type),
            "description": "labeled text sample: text, provenance or curation flag",
            "nullable": f.nullable,
        }
        for f in schema
    ]


def _describe(col: Any) -> str:
    if col.foreign_key:
        return f"references {col.foreign_key}"
    if col.type == "category":
        return "one of " + ", ".join(col.categories)
    if col.type == "llm_text" and col.llm is not None:
        return f"written by {', '.join(col.llm.models)} from the prompt: {col.llm.prompt}"
    if col.type == "text" and col.pattern:
        return f"pattern {col.pattern}" + (" (unique)" if col.unique else "")
    if col.type == "text" and col.words:
        return f"{col.min_words or 1}-{col.max_words or col.min_words or 1} of {len(col.words)} tokens"
    if col.type == "text":
        return f"{col.vocab} ({col.locale})"
    if col.expr:
        return f"derived: {col.expr}"
    if col.distribution is not None:
        params = ", ".join(
            f"{k}={v:g}" if not isinstance(v, list) else f"{k}=[{', '.join(f'{x:g}' for x in v)}]"
            for k, v in col.distribution.params.items()
        )
        return f"{col.distribution.kind}({params})"
    if col.type in ("datetime", "date"):
        return f"between {col.start} and {col.end}"
    return col.type


def _llm_line(llm: dict[str, Any] | None) -> str:
    if not llm:
        return ""
    tokens = f"{llm['tokens_in']:,} tokens in, {llm['tokens_out']:,} out"
    return f" ({tokens}; models asked: {', '.join(llm['models'])}; calls in `llm_calls.jsonl`)"


def _llm_table_lines(llm: dict[str, Any] | None) -> list[str]:
    """One line per LLM table: samples planned, rows kept, rejects, curation drops, judge agreement."""
    lines = []
    for name, t in ((llm or {}).get("tables") or {}).items():
        dropped = ", ".join(f"{k} {v}" for k, v in t["dropped"].items()) or "none"
        judge = "" if t["judge_agreement"] is None else f", judge agreement {t['judge_agreement']:.2f}"
        lines.append(
            f"- LLM table `{name}`: {t['samples']} samples planned, {t['rows']} rows kept, "
            f"{t['rejects']} rejected answers, dropped by curation: {dropped}{judge}"
        )
    return lines


def _prompt(llm: dict[str, Any] | None) -> str:
    """What the data was generated from, in words."""
    parts = ["declarative spec (spec.yaml in this directory)"]
    if llm and llm.get("story"):
        parts = [
            "a plain-language story, drafted into spec.yaml by an LLM (the story and the rendered "
            "prompts are in manifest.json, generation.prompt)"
        ]
    if llm and llm.get("data"):
        parts.append("tables or columns written by an LLM, replayable from llm_calls.jsonl")
    return "; ".join(parts)


def build_card(facts: CardFacts) -> dict[str, Any]:
    """The card as a JSON-serialisable dict (what ``datacard.json`` holds)."""
    spec = facts.spec
    return {
        "card_schema_version": CARD_SCHEMA_VERSION,
        "identity": {
            "name": facts.name,
            "version": facts.version,
            "parent": facts.parent,
            "status": facts.status,
            "created_at": facts.created_at,
            "created_by": facts.created_by,
            "content_digest": facts.content_digest,
            "license": spec.license,
        },
        "huggingface": _hf_header(facts),
        "summary": spec.description,
        "generation": {
            "model": facts.model,
            "seed": spec.seed,
            "spec_sha256": facts.spec_sha256,
            "prompt": _prompt(facts.llm),
            "parameters": facts.params,
            "llm_calls": (facts.llm or {}).get("calls", 0),
            "cost_usd": (facts.llm or {}).get("cost_usd", 0.0),
            **({"llm": facts.llm} if facts.llm else {}),
            "synthreg_version": facts.synthreg_version,
        },
        "composition": {
            "total_rows": sum(facts.rows.values()),
            "tables": [
                {
                    "name": t,
                    "rows": facts.rows[t],
                    "description": spec.tables[t].description,
                    "primary_key": spec.tables[t].primary_key,
                    "foreign_keys": {c: f"{p}.{k}" for c, (p, k) in spec.tables[t].foreign_keys().items()},
                    "fields": _fields(facts, t),
                }
                for t in spec.table_order()
            ],
        },
        "validation": {**facts.validation, "review_status": facts.status, "quality": facts.quality},
        **({"evaluation": facts.evaluation} if facts.evaluation else {}),
        "changes": {"origin": facts.origin, "diff": facts.changes},
        "uses": {
            "aliases": facts.aliases,
            "consumers": facts.consumers,
            "intended": "testing, development and evaluation of data pipelines and models",
            "out_of_scope": "estimating real-world statistics; decisions about real people",
        },
        "files": facts.files,
        "plots": facts.plots,
        "risks": _risks(spec, facts.pii),
        "maintenance": {
            "status": facts.status,
            "contact": facts.created_by,
            "audit_chain_head": facts.audit_head,
        },
    }


def _risks(spec: Spec, pii: dict[str, Any] | None = None) -> dict[str, Any]:
    email_cols = [
        f"{t}.{c}"
        for t, tab in spec.tables.items()
        for c, col in tab.columns.items()
        if col.type == "text" and col.vocab == "email"
    ]
    name_cols = [
        f"{t}.{c}"
        for t, tab in spec.tables.items()
        for c, col in tab.columns.items()
        if col.type == "text" and col.vocab in ("first_name", "last_name", "full_name")
    ]
    return {
        "synthetic": "Every value was sampled from the distributions in spec.yaml; no record "
        "describes a real person or event. Statistical relationships between "
        "columns exist only where the spec declares them (foreign keys).",
        "pii_scan": {
            "looks_like_real_personal_data": False,
            "email_columns": email_cols,
            "name_columns": name_cols,
            "finding": "names come from built-in vocabularies combined at random; email "
            "addresses use reserved example domains (RFC 2606/6761) only"
            if email_cols
            else "no email columns",
        },
        "limitations": "Not suitable for estimating real-world statistics; distributions are "
        "the spec author's assumptions.",
        **({"pii_scan_result": pii} if pii is not None else {}),
    }


def _table_md(card: dict[str, Any]) -> list[str]:
    lines = []
    for t in card["composition"]["tables"]:
        lines += [f"### {t['name']} ({t['rows']:,} rows)", ""]
        if t["description"]:
            lines += [t["description"], ""]
        lines += ["| field | type | description |", "|---|---|---|"]
        lines += [f"| `{f['name']}` | {f['arrow_type']} | {f['description']} |" for f in t["fields"]]
        lines.append("")
    return lines


def _pii_md(scan: dict[str, Any] | None) -> list[str]:
    if scan is None:
        return []
    columns = len(scan.get("columns_scanned", []))
    if not scan.get("looks_like_real_personal_data"):
        return [
            f"PII scan of {columns} text columns (sample {scan.get('sample')}): nothing looks like real "
            "personal data (emails on real domains, assignable phone numbers, card numbers, IBANs, SSNs)."
        ]
    return ["PII scan found values that look like real personal data:"] + [
        f"- {f['table']}.{f['column']}: {f['kind']} in {f['share']:.1%} of sampled values"
        for f in scan["findings"]
    ]


def _quality_md(quality: dict[str, Any] | None) -> list[str]:
    if not quality:
        return []
    return [f"- quality score: {quality.get('quality_score', 0):.3f} ({quality.get('formula', '')})"]


def _uses_md(card: dict[str, Any]) -> list[str]:
    uses, changes = card.get("uses", {}), card.get("changes", {})
    origin = changes.get("origin") or {}
    lines = ["## Changes vs the parent version", ""]
    if origin.get("restored_from"):
        lines.append(f"Restored from v{origin['restored_from']} (rollback): same content.")
    elif origin.get("derived_from"):
        lines.append(f"Derived from v{origin['derived_from']} by disabling rows: {origin.get('reason', '')}.")
    else:
        lines.append("Generated from the spec.")
    if changes.get("diff"):
        lines.append(f"Diff: {changes['diff'].get('summary', '')}")
    lines += [
        "",
        "## Uses and consumers",
        "",
        f"Intended: {uses.get('intended', '')}.",
        f"Out of scope: {uses.get('out_of_scope', '')}.",
        f"Aliases: {', '.join(uses.get('aliases') or []) or 'none'}.",
    ]
    consumers = uses.get("consumers") or []
    lines += [f"- MLflow run `{c['run_id']}` ({c.get('context', '')})" for c in consumers] or [
        "No recorded consumers yet."
    ]
    plots = card.get("plots") or []
    if plots:
        lines += ["", "## Distributions", ""] + [f"![{p}]({p})" for p in plots]
    return [*lines, ""]


def _evaluation_md(evaluation: dict[str, Any] | None) -> list[str]:
    if not evaluation:
        return []
    s = evaluation["summary"]
    num = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    against = ", ".join(f"{t} ({n:,} rows)" for t, n in evaluation["against"].items())
    lines = [
        "## Evaluation against real data",
        "",
        f"- real tables: {against}; holdout: {evaluation['split']}",
        f"- fidelity: {num(s.get('fidelity'))} (column shapes {num(s.get('column_shapes'))}, "
        f"pair trends {num(s.get('column_pair_trends'))}, cardinality {num(s.get('cardinality'))})",
        f"- privacy: DCR share {num(s.get('dcr_share'))} (0.5 is ideal), NNDR p10 {num(s.get('nndr'))}, "
        f"exact matches {s.get('exact_matches')}",
    ]
    if evaluation.get("target"):
        lines.append(f"- utility: TSTR/TRTR {num(s.get('tstr_ratio'))} for {evaluation['target']}")
    return [*lines, f"- report: `{evaluation['report']}`", ""]


def render_markdown(card: dict[str, Any]) -> str:
    """``datacard.md``: the Hugging Face YAML header, then the sections."""
    ident, gen, val = card["identity"], card["generation"], card["validation"]
    header = yaml.safe_dump(card["huggingface"], sort_keys=False, allow_unicode=True)
    lines = [
        "---",
        header.rstrip(),
        "---",
        "",
        f"# {ident['name']} v{ident['version']}",
        "",
        card["summary"] or "(no description in the spec)",
        "",
        "## Identity",
        "",
        f"- status: **{ident['status']}**",
        f"- created: {ident['created_at']} by {ident['created_by']}",
        f"- parent version: {ident['parent'] if ident['parent'] else 'none'}",
        f"- content digest: `{ident['content_digest']}`",
        f"- license: {ident['license']}",
        "",
        "## How it was generated",
        "",
        f"- model: `{gen['model']}` (synthreg {gen['synthreg_version']})",
        f"- seed: {gen['seed']}",
        f"- spec sha256: `{gen['spec_sha256']}` (the frozen spec is `spec.yaml`)",
        f"- parameters: `{json.dumps(gen['parameters'], sort_keys=True)}`",
        f"- generated from: {gen['prompt']}",
        f"- LLM calls: {gen['llm_calls']}, cost: ${gen['cost_usd']:.4f}" + _llm_line(gen.get("llm")),
        *_llm_table_lines(gen.get("llm")),
        "",
        "## Composition",
        "",
        f"{card['composition']['total_rows']:,} rows in {len(card['composition']['tables'])} tables.",
        "",
        *_table_md(card),
        "## Validation and review",
        "",
        f"- success: {val.get('success')}; {val.get('evaluated', 0)} checks, "
        f"{val.get('failed', 0)} failed ({val.get('engine', '')})",
        f"- review status: {ident['status']}",
        "",
        *_evaluation_md(card.get("evaluation")),
        *semantic_md(val.get("quality")),
        *_uses_md(card),
        "## Risks and limitations",
        "",
        card["risks"]["synthetic"],
        "",
        f"PII: {card['risks']['pii_scan']['finding']}.",
        *_pii_md(card["risks"].get("pii_scan_result")),
        "",
        card["risks"]["limitations"],
        "",
        "## Maintenance",
        "",
        f"Status {card['maintenance']['status']}; contact {card['maintenance']['contact']}.",
        "",
    ]
    return "\n".join(lines)


#: what ``write_card`` writes into a version directory
CARD_FILES = ("datacard.md", "datacard.json", "README.md", "croissant.json")


def write_card(version_dir: Path, facts: CardFacts) -> tuple[Path, Path]:
    """Write ``datacard.md``, ``datacard.json``, ``croissant.json`` and ``README.md``.

    ``README.md`` is the same card under the name Hugging Face ``datasets`` reads its
    ``configs`` from, so ``load_dataset(<version dir>, "<table>")`` works.
    """
    from synthreg.datacards.croissant import write_croissant

    card = build_card(facts)
    md_path, json_path = version_dir / "datacard.md", version_dir / "datacard.json"
    markdown = render_markdown(card)
    md_path.write_text(markdown, encoding="utf-8")
    (version_dir / "README.md").write_text(markdown, encoding="utf-8")
    json_path.write_text(json.dumps(card, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    write_croissant(card, version_dir, facts.pii)
    return md_path, json_path
