"""The three steps of story -> spec: prompt templates, answer schemas, and their rendering.

Each step is one structured-output call:

1. ``story.tables``: tables, what each references (``parents``) and row counts/ratios;
2. ``story.columns``: the attribute columns of every table, with types and parameters
   limited to what ``synthreg.generators.spec`` accepts (the JSON schema's enums);
3. ``story.constraints``: primary keys, foreign keys and time order (``after``).

A failed answer is repaired with ``REPAIR``: the step's conversation, the previous answer
and the problems found. Templates are constants with an id, a version and a sha256
(``PromptTemplate.hash``) recorded in every call request: change a template's text and
bump its version, and old recordings stop matching instead of replaying stale answers.
Schemas are strict-mode JSON schemas (every property required, nullable where optional).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from synthreg.generators.llm.story_lock import Locked, ident
from synthreg.generators.spec import DISTRIBUTIONS, VOCABULARIES
from synthreg.generators.spec import ENGINE_COLUMN_TYPES as COLUMN_TYPES

__all__ = [
    "COLUMNS",
    "COLUMNS_SCHEMA",
    "CONSTRAINTS",
    "CONSTRAINTS_SCHEMA",
    "REPAIR",
    "SYSTEM",
    "TABLES",
    "TABLES_SCHEMA",
    "PromptTemplate",
    "columns_prompt",
    "constraints_prompt",
    "distributions_text",
    "tables_prompt",
]


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt template: ``text`` is filled with ``str.format`` fields."""

    id: str
    version: str
    text: str

    @property
    def hash(self) -> str:
        """sha256 of the id, version, system prompt and text (recorded in each call request)."""
        blob = json.dumps([self.id, self.version, SYSTEM, self.text], ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def render(self, **fields: str) -> str:
        """The text with ``fields`` filled in."""
        return self.text.format(**fields)


SYSTEM = (
    "You design the schema of a synthetic relational dataset from a short story. "
    "Answer with exactly one JSON object that matches the JSON schema you are given: no prose, no markdown."
)

TABLES = PromptTemplate(
    "story.tables",
    "1",
    """Story:
{story}

Facts stated explicitly in the story (locked: keep them exactly).
Tables (rows null: not stated):
{tables}
Enums:
{enums}

Step 1 of 3: the tables.
- Include every locked table with its locked row count; add another table only if the story needs it.
- name: a lowercase snake_case plural noun (users, order_items).
- parents: the tables this table references (a workout references users). No cycles.
- rows: an integer row count. Where the story gives no count, derive one from a realistic
  ratio to the first parent and give that ratio (rows per parent row) in rows_per_parent; else null.
- description: one sentence per table; the top-level description: one or two sentences about the dataset.""",
)

COLUMNS = PromptTemplate(
    "story.columns",
    "1",
    """Story:
{story}

Tables (from step 1):
{tables}

Locked enums (stated in the story; table null: the table it fits best):
{enums}

Step 2 of 3: the attribute columns of every table listed above.
- Leave out ids, primary keys and foreign keys: step 3 adds them.
- name: lowercase snake_case. type: one of {types}.
- int, float: distribution {{kind, params: [{{name, value}}]}} or null; kinds and their parameters
  ([optional]): {distributions}. min/max bound the values (min <= max); decimals for floats.
- bool: p, the probability of true.
- category: values, a list of {{value, p}} whose p add up to exactly 1.
- datetime, date: start and end as ISO dates (YYYY-MM-DD), start before end.
- text: vocab, one of {vocabularies}; or pattern, a regex-like template such as ORD-\\d{{6}}.
  vocab email needs from: [first name column, last name column] of the same table.
- null_rate: the share of missing values, in [0, 1).
- Every field that does not apply is null.
- Each locked enum is a category column with exactly its values, in the table it belongs to.""",
)

CONSTRAINTS = PromptTemplate(
    "story.constraints",
    "1",
    """Story:
{story}

Tables (parents they reference) and their columns:
{tables}

Step 3 of 3: keys and time order.
- primary_keys: one per table, an int column, usually <singular>_id (user_id).
- foreign_keys: for each parent of a table: the child table, its column (usually <parent singular>_id)
  and references: the parent table's name.
- time_order: a child's datetime column that cannot precede its parent's datetime column:
  {{table, column, after: "parent_table.datetime_column"}}, only along a foreign key; [] if none.""",
)

REPAIR = PromptTemplate(
    "story.repair",
    "1",
    """Your previous answer cannot be used. Problems (path: message):
{problems}

Paths name the assembled spec (tables.<table>.columns.<column>...) or your answer.
Answer again with the whole corrected JSON object for the same step and schema.
Keep what was right; change only what the problems name.""",
)


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    """A strict-mode object: every property required, nothing else allowed."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


_STR, _INT, _NUM = {"type": "string"}, {"type": "integer"}, {"type": "number"}
_PARAM_NAMES = sorted({p for required, optional in DISTRIBUTIONS.values() for p in required + optional})

TABLES_SCHEMA = _object(
    {
        "description": _STR,
        "tables": _array(
            _object(
                {
                    "name": _STR,
                    "description": _STR,
                    "rows": _INT,
                    "parents": _array(_STR),
                    "rows_per_parent": _nullable(_NUM),
                }
            )
        ),
    }
)

_DISTRIBUTION_SCHEMA = _object(
    {
        "kind": {"type": "string", "enum": list(DISTRIBUTIONS)},
        "params": _array(
            _object(
                {
                    "name": {"type": "string", "enum": _PARAM_NAMES},
                    "value": {"anyOf": [_NUM, _array(_NUM)]},
                }
            )
        ),
    }
)

_COLUMN_SCHEMA = _object(
    {
        "name": _STR,
        "type": {"type": "string", "enum": list(COLUMN_TYPES)},
        "description": _STR,
        "distribution": _nullable(_DISTRIBUTION_SCHEMA),
        "min": _nullable(_NUM),
        "max": _nullable(_NUM),
        "decimals": _nullable(_INT),
        "p": _nullable(_NUM),
        "values": _nullable(_array(_object({"value": _STR, "p": _NUM}))),
        "start": _nullable(_STR),
        "end": _nullable(_STR),
        "vocab": _nullable({"type": "string", "enum": list(VOCABULARIES)}),
        "pattern": _nullable(_STR),
        "from": _nullable(_array(_STR)),
        "null_rate": _nullable(_NUM),
    }
)

COLUMNS_SCHEMA = _object({"tables": _array(_object({"name": _STR, "columns": _array(_COLUMN_SCHEMA)}))})

CONSTRAINTS_SCHEMA = _object(
    {
        "primary_keys": _array(_object({"table": _STR, "column": _STR})),
        "foreign_keys": _array(_object({"table": _STR, "column": _STR, "references": _STR})),
        "time_order": _array(_object({"table": _STR, "column": _STR, "after": _STR})),
    }
)


def distributions_text() -> str:
    """``normal(mean, std), uniform([low, high]), ...`` for the columns prompt."""
    parts = []
    for kind, (required, optional) in DISTRIBUTIONS.items():
        params = [*(f"{p}: list" if p == "quantiles" else p for p in required), *(f"[{p}]" for p in optional)]
        parts.append(f"{kind}({', '.join(params)})")
    return ", ".join(parts)


# ------------------------------------------------------------------ rendering


def _json(items: list[Any]) -> str:
    """One JSON value a line: compact, and easy for a model to read."""
    return "\n".join(f"- {json.dumps(item, ensure_ascii=False)}" for item in items) or "- none"


def tables_prompt(story: str, locked: Locked) -> str:
    """The first step's user prompt."""
    facts = locked.to_dict()
    return TABLES.render(story=story.strip(), tables=_json(facts["tables"]), enums=_json(facts["enums"]))


def columns_prompt(story: str, locked: Locked, tables: list[dict[str, Any]]) -> str:
    """The second step's user prompt, over the tables after the locked facts were applied."""
    shown = [{k: t[k] for k in ("name", "description", "rows", "parents")} for t in tables]
    enums = [{"column": e.column, "values": list(e.values), "table": e.table} for e in locked.enums]
    return COLUMNS.render(
        story=story.strip(),
        tables=_json(shown),
        enums=_json(enums),
        types=", ".join(COLUMN_TYPES),
        distributions=distributions_text(),
        vocabularies=", ".join(VOCABULARIES),
    )


def constraints_prompt(story: str, tables: list[dict[str, Any]], columns: dict[str, Any]) -> str:
    """The third step's user prompt: the tables, their parents and the answered columns."""
    by_table = {ident(t["name"]): t["columns"] for t in columns.get("tables", [])}
    shown = [
        {
            "name": t["name"],
            "parents": t["parents"],
            "columns": [f"{c['name']}: {c['type']}" for c in by_table.get(t["name"], [])],
        }
        for t in tables
    ]
    return CONSTRAINTS.render(story=story.strip(), tables=_json(shown))
