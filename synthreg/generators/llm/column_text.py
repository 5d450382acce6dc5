"""LLM text columns inside a tabular table (spec column ``type: llm_text``).

A column such as ``orders.review`` conditioned on the order's ``rating``::

    review:
      type: llm_text
      llm:
        prompt: "Write a short review of a {category} order rated {rating} of 5 stars."
        models: [openai/gpt-4o-mini]

The engine writes the table with the column empty; this stage then renders one request per
row from the row's own values (``{column}`` or ``{column:.2f}`` placeholders, names of the
same table's non-LLM columns) and fills the column with the answers' ``text``. Everything a
request holds comes from the spec and the row: model (``models`` rotated by row), seed (from
``seed``, table, column and row), template hash, and the row id ``<table>.<column>:<row>``,
so N equal prompts never collapse to one answer and a replay finds every answer again.

An answer is used when it is JSON ``{"text": ...}`` with a non-empty text of ``min_length`` to
``max_length`` characters that is not a refusal. Otherwise one repair call (attempt
``repair#1``) carries the reason; if that fails too the cell stays null and the reason is
kept in the provenance table (one row per table row: call key, models, template and prompt
hashes, sampling, tokens, cost, time). The validation suite's not-null and length checks
then report the row. Every call counts: a table may have at most ``max_rows`` rows.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from synthreg.generators.llm.callstore import CallRequest
from synthreg.generators.llm.gateway import Gateway, Result
from synthreg.generators.llm.labeled_prompts import PromptTemplate
from synthreg.generators.rand import stable_id

__all__ = [
    "PROVENANCE_SCHEMA",
    "STAGE",
    "ColumnText",
    "LlmTextColumn",
    "column_requests",
    "fill_column",
    "format_specs",
    "placeholders",
]

STAGE = "column.text"
TEMPLATE_ID = "column.text"
TEMPLATE_VERSION = "1"
_SEED_MODULUS = 2**31
#: The output contract of one cell.
TEXT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"text": {"type": "string"}},
    "required": ["text"],
    "additionalProperties": False,
}
_SYSTEM = (
    "You write one realistic text value for a column of a synthetic dataset.\n"
    "${context}"
    'Answer with a JSON object with one string field, "text": the value itself, '
    "$min_length to $max_length characters, with no quotes or commentary around it."
)
_REPAIR = (
    'Your answer could not be used: $reason. Answer again with a JSON object whose "text" '
    "is $min_length to $max_length characters."
)

_STR, _F64, _I64, _BOOL = pa.string(), pa.float64(), pa.int64(), pa.bool_()
PROVENANCE_SCHEMA = pa.schema(
    [
        ("row", _I64),
        ("row_id", _STR),
        ("ok", _BOOL),
        ("reason", _STR),
        ("attempt", _STR),
        *[(n, _STR) for n in ("model_requested", "model_answered", "model_returned")],
        *[(n, _STR) for n in ("template_id", "template_version", "template_hash", "prompt_hash", "call_key")],
        *[("temperature", _F64), ("top_p", _F64), ("seed", _I64), ("tokens_in", _I64), ("tokens_out", _I64)],
        *[("cost_usd", _F64), ("created_at", _STR), ("content", _STR)],
    ]
)


def placeholders(prompt: str) -> list[str]:
    """The column names a prompt template reads, in order of first use.

    Raises ``ValueError`` for a placeholder that is not a plain name (``{0}``, ``{a.b}``,
    ``{a[0]}``, ``{}``) or for unbalanced braces (write ``{{`` and ``}}`` for literal ones).
    """
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(prompt))
    except ValueError as exc:
        raise ValueError(f"prompt template: {exc}; write {{{{ and }}}} for literal braces") from None
    for _, field, _, conversion in parsed:
        if field is None:
            continue
        if not field.isidentifier() or conversion:
            raise ValueError(
                f"prompt placeholder {{{field}}} is not a column name: write {{column}} or "
                "{column:.2f} with a column of the same table"
            )
        if field not in names:
            names.append(field)
    return names


def format_specs(prompt: str) -> list[tuple[str, str]]:
    """``(column, format spec)`` of every placeholder with a spec (``{price:.2f}`` -> ``price``, ``.2f``)."""
    return [(field, spec) for _, field, spec, _ in string.Formatter().parse(prompt) if field and spec]


class LlmTextColumn(BaseModel):
    """How an ``llm_text`` column is written: a prompt over the row's values, models, sampling."""

    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(min_length=1)
    context: str = ""
    models: list[str] = Field(min_length=1)
    temperature: float = Field(0.8, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int = Field(300, ge=1)
    min_length: int = Field(1, ge=0)
    max_length: int = Field(2000, ge=1)
    seed: int = Field(0, ge=0)
    max_rows: int = Field(1000, ge=1, le=1_000_000)

    @field_validator("models")
    @classmethod
    def _qualified(cls, models: list[str]) -> list[str]:
        from synthreg.generators.llm.labeled_prompts import qualified_model

        return [qualified_model(m) for m in models]

    @model_validator(mode="after")
    def _consistent(self) -> LlmTextColumn:
        placeholders(self.prompt)
        if self.min_length > self.max_length:
            raise ValueError(f"min_length {self.min_length} is above max_length {self.max_length}: swap them")
        return self

    def system(self) -> str:
        """The system message."""
        context = f"{self.context.strip()}\n" if self.context.strip() else ""
        return string.Template(_SYSTEM).substitute(
            context=context, min_length=self.min_length, max_length=self.max_length
        )

    def template_hash(self) -> str:
        """sha256 of the canonical template (id, version, system and user texts)."""
        return PromptTemplate(TEMPLATE_ID, TEMPLATE_VERSION, self.system(), self.prompt).sha256


class _Null:
    """A null value in a prompt: ``unknown``, whatever the placeholder's format spec."""

    def __format__(self, spec: str) -> str:
        return "unknown"


def _render(prompt: str, names: Sequence[str], row: Mapping[str, Any]) -> str:
    return prompt.format_map({name: _Null() if row.get(name) is None else row[name] for name in names})


def _seed(col: LlmTextColumn, table: str, column: str, row: int) -> int:
    return stable_id(f"{col.seed}\0{table}\0{column}\0{row}") % _SEED_MODULUS


def column_requests(
    table: str, column: str, col: LlmTextColumn, rows: Sequence[Mapping[str, Any]], api_base: str | None
) -> list[CallRequest]:
    """One generation request per row (``rows``: each row's values, in table order)."""
    system, template_hash, names = col.system(), col.template_hash(), placeholders(col.prompt)
    return [
        CallRequest(
            model=col.models[i % len(col.models)],
            messages=[
                {"role": "system", "content": system},
                {"role": "user", "content": _render(col.prompt, names, row)},
            ],
            api_base=api_base,
            temperature=col.temperature,
            top_p=col.top_p,
            max_tokens=col.max_tokens,
            seed=_seed(col, table, column, i),
            response_schema=TEXT_SCHEMA,
            schema_name="column_text",
            template_id=TEMPLATE_ID,
            template_version=TEMPLATE_VERSION,
            template_hash=template_hash,
            stage=STAGE,
            row_id=f"{table}.{column}:{i}",
            attempt="gen",
        )
        for i, row in enumerate(rows)
    ]


def _repair_request(col: LlmTextColumn, request: CallRequest, result: Result, reason: str) -> CallRequest:
    note = string.Template(_REPAIR).substitute(
        reason=reason, min_length=col.min_length, max_length=col.max_length
    )
    messages = [
        *request.messages,
        {"role": "assistant", "content": result.content or ""},
        {"role": "user", "content": note},
    ]
    return replace(request, messages=messages, attempt="repair#1")


def _problem(col: LlmTextColumn, result: Result) -> str | None:
    """Why an answer cannot fill the cell (None: it can)."""
    from synthreg.generators.llm.labeled import is_refusal

    if result.parse_error:
        return result.parse_error
    parsed = result.parsed
    if not isinstance(parsed, dict) or not isinstance(parsed.get("text"), str):
        return 'the answer is not a JSON object with a string "text"'
    text = parsed["text"].strip()
    if not text:
        return "'text' is empty"
    if is_refusal(text):
        return "the text is a refusal"
    if not col.min_length <= len(text) <= col.max_length:
        return f"the text has {len(text)} characters, outside {col.min_length}..{col.max_length}"
    return None


@dataclass(frozen=True)
class ColumnText:
    """What ``fill_column`` made: one text (or None) per row, and one provenance row per row.

    ``texts`` and ``provenance`` depend only on the spec, the rows and the call store (live or
    replayed, they are the same). ``call_keys`` are the recorded calls used, in row order (a
    row's generation call, then its repair call). ``missing`` are row ids with no answer at all
    (budget exhausted, or every route failed): a record-missing rerun fills them.
    """

    texts: list[str | None]
    provenance: pa.Table
    call_keys: tuple[str, ...]
    missing: tuple[str, ...]
    budget_exhausted: bool
    calls: int
    spent_usd: float


def fill_column(
    table: str,
    column: str,
    col: LlmTextColumn,
    rows: Sequence[Mapping[str, Any]],
    gateway: Gateway,
    api_base: str | None = None,
) -> ColumnText:
    """Answer one request per row through ``gateway`` (its mode, store and budget apply)."""
    requests = column_requests(table, column, col, rows, api_base)
    gen = gateway.run(requests)
    first = {r.row_id: r for r in gen if r.ok}  # a failed call is no answer: nothing to repair
    repairs: dict[str, CallRequest] = {}
    for request in requests:
        result = first.get(request.row_id)
        reason = None if result is None else _problem(col, result)
        if result is not None and reason is not None:
            repairs[request.row_id] = _repair_request(col, request, result, reason)
    repaired = gateway.rest_of_budget(gen).run(list(repairs.values())) if repairs else None
    second = {r.row_id: r for r in repaired or () if r.ok}
    texts: list[str | None] = []
    entries, keys, missing = [], [], []
    for i, request in enumerate(requests):
        result = first.get(request.row_id)
        if result is None:
            missing.append(request.row_id)
            texts.append(None)
            entries.append({"row": i, "row_id": request.row_id, "ok": False, "reason": "no answer"})
            continue
        keys.append(result.answered_key or result.key)
        used, used_request, reason = result, request, _problem(col, result)
        if reason is not None:
            retry = second.get(request.row_id)
            if retry is None:
                missing.append(request.row_id)
            else:
                keys.append(retry.answered_key or retry.key)
                used, used_request = retry, repairs[request.row_id]
                again = _problem(col, retry)
                reason = None if again is None else f"{reason}; after repair: {again}"
        text = used.parsed["text"].strip() if reason is None else None
        texts.append(text)
        entries.append(_provenance(gateway, i, used_request, used, reason))
    runs = [gen] if repaired is None else [gen, repaired]
    return ColumnText(
        texts=texts,
        provenance=pa.Table.from_pylist(entries, schema=PROVENANCE_SCHEMA),
        call_keys=tuple(keys),
        missing=tuple(missing),
        budget_exhausted=any(r.budget_exhausted for r in runs),
        calls=sum(r.calls for r in runs),
        spent_usd=round(sum(r.spent_usd for r in runs), 10),
    )


def _provenance(gateway: Gateway, row: int, request: CallRequest, result: Result, reason: str | None) -> dict:
    from synthreg.generators.llm.labeled import provenance

    record = gateway.store.get(result.answered_key or result.key)
    return {
        "row": row,
        "row_id": request.row_id,
        "ok": reason is None,
        "reason": reason,
        "attempt": request.attempt,
        **provenance(request, result, "" if record is None else record.created_at),
        "call_key": result.answered_key or result.key,
        "content": None if reason is None else result.content,
    }
