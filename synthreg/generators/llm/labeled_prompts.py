"""The labeled-text stage before any call: the spec, the plan, the prompt templates, the requests.

Everything here is decided from the spec alone (``labeled.py`` runs the calls and curates):

- ``LabeledTextSpec``: task, labels, category/type pairs, few-shot examples, models, sampling.
- ``make_plan``: the seeded, stratified plan table (``PLAN_SCHEMA``). Strata are label x
  (category, type); ``samples`` are spread so that stratum counts differ by at most 1 (and
  so do label counts and pair counts). Orders come from sha256 of (seed, purpose, index),
  never from a library RNG, so the plan is the same on every platform and NumPy version.
- ``render_requests`` / ``judge_requests``: one ``CallRequest`` per plan row (or per row
  to judge), with the template's id, version and sha256 in the call key.

A template is plain text with ``$name`` placeholders (``string.Template``): values are
substituted once and never re-read, so braces or dollars in a task description or an
example cannot break rendering. Editing a template changes its sha256 and so every key,
even if its version is not bumped: old answers are never silently reused.

The judge is blind: it sees the task and the label descriptions, and the text, but never
the label, category, type or reasoning the text was generated for.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import pyarrow as pa
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from synthreg.errors import NotFoundError, SpecError
from synthreg.generators.llm.callstore import CallRequest, canonical_json
from synthreg.generators.rand import stable_id

__all__ = [
    "GEN_SCHEMA",
    "GEN_STAGE",
    "GEN_TEMPLATE",
    "JUDGE_STAGE",
    "JUDGE_TEMPLATE",
    "PLAN_SCHEMA",
    "CurationPolicy",
    "LabeledExample",
    "LabeledTextSpec",
    "PromptTemplate",
    "judge_messages",
    "judge_requests",
    "judge_schema",
    "load_labeled_spec",
    "make_plan",
    "parse_labeled_spec",
    "prompt_hash",
    "qualified_model",
    "render_requests",
    "sample_messages",
]

GEN_STAGE = "labeled.gen"
JUDGE_STAGE = "labeled.judge"
_SEED_MODULUS = 2**31  # provider seeds are 32-bit signed integers

# ---------------------------------------------------------------- spec


def qualified_model(model: str) -> str:
    """``model`` if it is provider-qualified (``provider/model``), else ``ValueError`` with the fix."""
    if "/" not in model or model.startswith("/") or model.endswith("/"):
        raise ValueError(f"model {model!r} is not provider-qualified: write it as provider/model")
    return model


class LabeledExample(BaseModel):
    """A few-shot example: a text with its label, category, type and reasoning."""

    model_config = ConfigDict(extra="forbid")
    label: str
    category: str
    type: str
    text: str = Field(min_length=1)
    reasoning: str = ""


class CurationPolicy(BaseModel):
    """Which flagged rows ``curate`` drops (label conflicts and judge disagreements are kept by
    default); a registry LLM table applies its spec's ``curation`` and keeps what it drops aside."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    drop_duplicates: bool = True
    drop_refusals: bool = True
    drop_length: bool = True
    drop_label_conflicts: bool = False
    drop_judge_disagreements: bool = False


class LabeledTextSpec(BaseModel):
    """What to generate: the task, labels, category/type pairs, examples and sampling settings."""

    model_config = ConfigDict(extra="forbid")
    task: str = Field(min_length=1)
    labels: dict[str, str] = Field(min_length=1)
    categories: dict[str, list[str]] = Field(min_length=1)
    examples: list[LabeledExample] = Field(default_factory=list)
    samples: int = Field(ge=1, le=1_000_000)  # one call each (and a plan row): like llm_text max_rows
    models: list[str] = Field(min_length=1)
    temperature: float = Field(0.9, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int = Field(400, ge=1)
    min_length: int = Field(20, ge=0)
    max_length: int = Field(1000, ge=1)
    few_shot: int = Field(2, ge=0)
    seed: int = Field(0, ge=0)
    judge_model: str | None = None
    curation: CurationPolicy = Field(default_factory=CurationPolicy)

    @field_validator("models")
    @classmethod
    def _models(cls, models: list[str]) -> list[str]:
        return [qualified_model(m) for m in models]

    @field_validator("judge_model")
    @classmethod
    def _judge(cls, model: str | None) -> str | None:
        return None if model is None else qualified_model(model)

    @field_validator("categories")
    @classmethod
    def _categories(cls, categories: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, types in categories.items():
            if not types or len(set(types)) != len(types):
                raise ValueError(f"category {name!r} needs a non-empty list of distinct types")
        return categories

    @model_validator(mode="after")
    def _consistent(self) -> LabeledTextSpec:
        for n, ex in enumerate(self.examples):
            if ex.label not in self.labels:
                raise ValueError(f"examples[{n}]: label {ex.label!r} is not in labels: add it or fix it")
            if ex.type not in self.categories.get(ex.category, []):
                raise ValueError(f"examples[{n}]: {ex.category}/{ex.type} is not a pair in categories")
        if self.few_shot > len(self.examples):
            raise ValueError(
                f"few_shot is {self.few_shot} but only {len(self.examples)} example(s) exist: "
                "add examples or lower few_shot"
            )
        if self.min_length > self.max_length:
            raise ValueError(f"min_length {self.min_length} is above max_length {self.max_length}: swap them")
        return self

    def pairs(self) -> list[tuple[str, str]]:
        """Every (category, type) pair, in spec order."""
        return [(c, t) for c, types in self.categories.items() for t in types]


def parse_labeled_spec(data: Any, source: str = "<labeled spec>") -> LabeledTextSpec:
    """Validate parsed YAML/JSON into a ``LabeledTextSpec``, or raise ``SpecError``."""
    if not isinstance(data, dict):
        raise SpecError(source, [("", "a labeled-text spec must be a mapping; see examples/labeled/")])
    try:
        return LabeledTextSpec.model_validate(data)
    except ValidationError as exc:
        problems = [
            (".".join(str(p) for p in e["loc"]), str(e["msg"]).removeprefix("Value error, "))
            for e in exc.errors()
        ]
        raise SpecError(source, problems) from None


def load_labeled_spec(path: str | Path) -> LabeledTextSpec:
    """Read a labeled-text spec from a YAML (or JSON) file."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"labeled spec {path} does not exist: check the path (see examples/labeled/)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SpecError(str(path), [("", f"invalid YAML: {exc}; fix the syntax")]) from None
    return parse_labeled_spec(data, str(path))


# ---------------------------------------------------------------- plan

PLAN_SCHEMA = pa.schema(
    [
        ("sample_id", pa.string()),
        ("label", pa.string()),
        ("category", pa.string()),
        ("type", pa.string()),
        ("example_ids", pa.list_(pa.int32())),
        ("model", pa.string()),
        ("seed", pa.int64()),
    ]
)


def _hash_order(n: int, *key: object) -> list[int]:
    """A seeded permutation of range(n): indices sorted by sha256 of (key, index)."""
    prefix = "\0".join(str(k) for k in key)
    return sorted(range(n), key=lambda i: (stable_id(f"{prefix}\0{i}"), i))


def _strata(spec: LabeledTextSpec) -> list[tuple[str, str, str]]:
    """Every (label, category, type) once, ordered so that any prefix is balanced on labels and pairs.

    Position i takes label i mod L and pair (i + i // lcm(L, P)) mod P: each block of
    lcm(L, P) positions meets distinct strata, and the shift per block covers the rest.
    """
    names, all_pairs = list(spec.labels), spec.pairs()
    labels = [names[i] for i in _hash_order(len(names), spec.seed, "labels")]
    pairs = [all_pairs[i] for i in _hash_order(len(all_pairs), spec.seed, "pairs")]
    n_l, n_p = len(labels), len(pairs)
    lcm = n_l * n_p // math.gcd(n_l, n_p)
    return [(labels[i % n_l], *pairs[(i + i // lcm) % n_p]) for i in range(n_l * n_p)]


def make_plan(spec: LabeledTextSpec) -> pa.Table:
    """The seeded, stratified plan: one row per sample (``PLAN_SCHEMA``), sorted by sample id.

    Sample i of the cycle over ``_strata`` gets a hash-shuffled position; the model rotates
    over ``spec.models`` by position; few-shot example ids (indices into ``spec.examples``)
    and the provider seed are derived from (seed, sample id).
    """
    strata = _strata(spec)
    width = max(4, len(str(spec.samples - 1)))
    rows = []
    for position, cell in enumerate(_hash_order(spec.samples, spec.seed, "rows")):
        sample_id = f"s{position:0{width}d}"
        label, category, type_ = strata[cell % len(strata)]
        few = _hash_order(len(spec.examples), spec.seed, "few_shot", sample_id)[: spec.few_shot]
        rows.append(
            {
                "sample_id": sample_id,
                "label": label,
                "category": category,
                "type": type_,
                "example_ids": few,
                "model": spec.models[position % len(spec.models)],
                "seed": stable_id(f"{spec.seed}\0seed\0{sample_id}") % _SEED_MODULUS,
            }
        )
    return pa.Table.from_pylist(rows, schema=PLAN_SCHEMA)


# ---------------------------------------------------------------- prompts


@dataclass(frozen=True)
class PromptTemplate:
    """A versioned chat template: a system and a user message with ``$name`` placeholders."""

    id: str
    version: str
    system: str
    user: str

    @property
    def sha256(self) -> str:
        """sha256 (hex) of the canonical JSON of the template (id, version and both texts)."""
        body = {"id": self.id, "version": self.version, "system": self.system, "user": self.user}
        return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()

    def render(self, **values: str) -> list[dict[str, str]]:
        """The chat messages with every placeholder filled (a missing one raises ``KeyError``)."""
        return [
            {"role": "system", "content": Template(self.system).substitute(values)},
            {"role": "user", "content": Template(self.user).substitute(values)},
        ]


GEN_TEMPLATE = PromptTemplate(
    id="labeled.gen",
    version="1",
    system=(
        "You write realistic text samples for a labeled dataset.\n"
        "Task: $task\n"
        "Labels:\n$labels\n"
        'Answer with a JSON object with two string fields: "text", the sample itself '
        '($min_length to $max_length characters), and "reasoning", one or two sentences on '
        "why the text fits its label, category and type."
    ),
    user="${examples}Write one new sample, different from any example.\n"
    "Label: $label ($label_description)\nCategory: $category\nType: $type",
)

JUDGE_TEMPLATE = PromptTemplate(
    id="labeled.judge",
    version="1",
    system=(
        "You label text samples for a dataset.\n"
        "Task: $task\n"
        "Labels:\n$labels\n"
        'Answer with a JSON object: "label", exactly one of the label names above, and '
        '"reasoning", one sentence on why.'
    ),
    user="Text:\n$text",
)

#: The output contract of a generated sample (both fields required).
GEN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"text": {"type": "string"}, "reasoning": {"type": "string"}},
    "required": ["text", "reasoning"],
    "additionalProperties": False,
}


def judge_schema(labels: Sequence[str]) -> dict[str, Any]:
    """The judge's output contract: one of ``labels`` and a reasoning."""
    return {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": list(labels)}, "reasoning": {"type": "string"}},
        "required": ["label", "reasoning"],
        "additionalProperties": False,
    }


def _label_lines(labels: Mapping[str, str]) -> str:
    return "\n".join(f"- {name}: {description}" for name, description in labels.items())


def _example_block(examples: Sequence[Mapping[str, str]]) -> str:
    blocks = [
        f"Example {n}\nLabel: {ex['label']}\nCategory: {ex['category']}\nType: {ex['type']}\n"
        f"Text: {ex['text']}\nReasoning: {ex['reasoning']}\n\n"
        for n, ex in enumerate(examples, start=1)
    ]
    return "".join(blocks)


def sample_messages(
    task: str,
    labels: Mapping[str, str],
    cell: Mapping[str, str],
    examples: Sequence[Mapping[str, str]],
    length: tuple[int, int],
) -> list[dict[str, str]]:
    """The generation messages for one plan cell (``label``, ``category``, ``type``)."""
    return GEN_TEMPLATE.render(
        task=task,
        labels=_label_lines(labels),
        min_length=str(length[0]),
        max_length=str(length[1]),
        examples=_example_block(examples),
        label=cell["label"],
        label_description=labels[cell["label"]],
        category=cell["category"],
        type=cell["type"],
    )


def judge_messages(task: str, labels: Mapping[str, str], text: str) -> list[dict[str, str]]:
    """The blind judge's messages for one text."""
    return JUDGE_TEMPLATE.render(task=task, labels=_label_lines(labels), text=text)


def prompt_hash(messages: Sequence[Mapping[str, Any]]) -> str:
    """sha256 (hex) of the canonical JSON of rendered messages."""
    return hashlib.sha256(canonical_json([dict(m) for m in messages]).encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- render


def render_requests(spec: LabeledTextSpec, plan: pa.Table, api_base: str | None = None) -> list[CallRequest]:
    """One generation request per plan row, in plan order."""
    examples = [e.model_dump() for e in spec.examples]
    requests = []
    for row in plan.to_pylist():
        shots = [examples[i] for i in row["example_ids"]]
        messages = sample_messages(spec.task, spec.labels, row, shots, (spec.min_length, spec.max_length))
        requests.append(
            CallRequest(
                model=row["model"],
                messages=messages,
                api_base=api_base,
                temperature=spec.temperature,
                top_p=spec.top_p,
                max_tokens=spec.max_tokens,
                seed=row["seed"],
                response_schema=GEN_SCHEMA,
                schema_name="labeled_sample",
                template_id=GEN_TEMPLATE.id,
                template_version=GEN_TEMPLATE.version,
                template_hash=GEN_TEMPLATE.sha256,
                stage=GEN_STAGE,
                row_id=row["sample_id"],
                attempt="gen",
            )
        )
    return requests


def judge_requests(
    spec: LabeledTextSpec, rows: Sequence[Mapping[str, Any]], api_base: str | None = None
) -> list[CallRequest]:
    """One blind judge request per generated row (``sample_id``, ``text``, ``seed``), temperature 0."""
    if spec.judge_model is None:
        return []
    model = spec.judge_model
    return [
        CallRequest(
            model=model,
            messages=judge_messages(spec.task, spec.labels, row["text"]),
            api_base=api_base,
            temperature=0.0,
            max_tokens=spec.max_tokens,
            seed=row["seed"],
            response_schema=judge_schema(list(spec.labels)),
            schema_name="labeled_judge",
            template_id=JUDGE_TEMPLATE.id,
            template_version=JUDGE_TEMPLATE.version,
            template_hash=JUDGE_TEMPLATE.sha256,
            stage=JUDGE_STAGE,
            row_id=row["sample_id"],
            attempt="judge",
        )
        for row in rows
    ]
