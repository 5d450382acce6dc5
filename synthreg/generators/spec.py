"""The declarative dataset spec: a pydantic model for YAML/JSON specs.

A spec names tables, their row counts and their columns; columns draw from a
distribution, a category set, a date range or a text vocabulary, and may point at
another table's primary key. Every problem is reported with the file, the path
inside it (``tables.orders.columns.user_id``) and the fix.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import itertools
import re
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from synthreg.generators.llm.column_text import LlmTextColumn
from synthreg.generators.llm.labeled_prompts import LabeledTextSpec

__all__ = [
    "COLUMN_TYPES",
    "DISTRIBUTIONS",
    "ENGINE_COLUMN_TYPES",
    "VOCABULARIES",
    "Column",
    "Distribution",
    "Spec",
    "Table",
    "UserExpectation",
]

#: what the engine draws; ``llm_text`` columns are written by the LLM stage after it
ENGINE_COLUMN_TYPES = ("int", "float", "bool", "category", "datetime", "date", "text", "uuid")
COLUMN_TYPES = (*ENGINE_COLUMN_TYPES, "llm_text")

#: distribution name -> (required parameters, optional parameters)
DISTRIBUTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "uniform": ((), ("low", "high")),
    "normal": (("mean", "std"), ()),
    "lognormal": (("mean", "sigma"), ()),
    "exponential": (("scale",), ()),
    "gamma": (("shape", "scale"), ()),
    "beta": (("a", "b"), ()),
    "poisson": (("lam",), ()),
    "binomial": (("n", "p"), ()),
    "zipf": (("a",), ()),
    "pareto": (("a",), ()),
    "sequence": ((), ("start", "step")),
    "empirical": (("quantiles",), ()),
}

#: text vocabularies; ``email`` is derived from a first and a last name column.
VOCABULARIES = (
    "first_name",
    "last_name",
    "full_name",
    "email",
    "username",
    "city",
    "country",
    "street_address",
    "phone",
    "company",
    "job",
    "product",
    "url",
    "review",
)
LOCALES = ("en_US", "de_DE", "fr_FR")

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def _suggest(word: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


class _Strict(BaseModel):
    # inf and nan are no parameter anyone means (and YAML reads .inf / .nan as floats)
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)


class Distribution(_Strict):
    """A numeric distribution: ``{kind: normal, mean: 35, std: 10}``."""

    kind: str
    params: dict[str, float | list[float]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _gather_params(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"kind": data, "params": {}}
        if isinstance(data, dict) and "params" not in data:
            rest = {k: v for k, v in data.items() if k != "kind"}
            return {"kind": data.get("kind"), "params": rest}
        return data

    @model_validator(mode="after")
    def _check(self) -> Distribution:
        if self.kind not in DISTRIBUTIONS:
            raise ValueError(
                f"unknown distribution '{self.kind}'{_suggest(self.kind, tuple(DISTRIBUTIONS))} "
                f"Known distributions: {', '.join(DISTRIBUTIONS)}"
            )
        required, optional = DISTRIBUTIONS[self.kind]
        missing = [p for p in required if p not in self.params]
        unknown = [p for p in self.params if p not in required + optional]
        if missing:
            raise ValueError(f"distribution '{self.kind}' needs {', '.join(missing)}: add them")
        if unknown:
            allowed = ", ".join(required + optional) or "no parameters"
            raise ValueError(
                f"distribution '{self.kind}' takes {allowed}, not {', '.join(unknown)}: remove them"
            )
        self._check_ranges()
        return self

    def _check_quantiles(self) -> None:
        q = self.params["quantiles"]
        if not isinstance(q, list) or len(q) < 2:
            raise ValueError("distribution 'empirical': quantiles must be a list of at least 2 numbers")
        if any(b < a for a, b in itertools.pairwise(q)):
            raise ValueError("distribution 'empirical': quantiles must be in ascending order")

    def num(self, key: str, default: float = 0.0) -> float:
        """A numeric parameter."""
        value = self.params.get(key, default)
        assert not isinstance(value, list)
        return float(value)

    def _check_ranges(self) -> None:
        p: dict[str, Any] = {}
        if self.kind == "empirical":
            self._check_quantiles()
            return
        listed = [k for k, v in self.params.items() if isinstance(v, list)]
        if listed:
            raise ValueError(f"distribution '{self.kind}': {', '.join(listed)} must be a number, not a list")
        p = {k: float(v) for k, v in self.params.items() if not isinstance(v, list)}
        positive = {"std", "sigma", "scale", "shape", "a", "b", "lam", "n"}
        for key in positive & p.keys():
            if p[key] <= 0:
                raise ValueError(f"distribution '{self.kind}': {key} must be > 0, got {p[key]}")
        if self.kind == "binomial" and not 0 <= p["p"] <= 1:
            raise ValueError(f"distribution 'binomial': p must be in [0, 1], got {p['p']}")
        if self.kind == "zipf" and p["a"] <= 1:
            raise ValueError(f"distribution 'zipf': a must be > 1, got {p['a']}")
        if self.kind == "uniform" and "low" in p and "high" in p and p["low"] > p["high"]:
            raise ValueError(f"distribution 'uniform': low ({p['low']}) > high ({p['high']})")


class Column(_Strict):
    """One column of a table. Which keys apply depends on ``type``."""

    type: Literal["int", "float", "bool", "category", "datetime", "date", "text", "uuid", "llm_text"]
    description: str = ""
    distribution: Distribution | None = None
    min: float | None = None
    max: float | None = None
    decimals: int | None = Field(default=None, ge=0, le=12)
    values: dict[str, float] | list[str] | None = None
    p: float | None = Field(default=None, ge=0, le=1)
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    vocab: str | None = None
    pattern: str | None = None
    words: dict[str, float] | None = None  # a text column of tokens: token -> probability
    min_words: int | None = Field(default=None, ge=1, le=200)
    max_words: int | None = Field(default=None, ge=1, le=200)
    expr: str | None = None
    after: str | None = None
    via: str | None = None
    locale: str = "en_US"
    from_: list[str] | None = Field(default=None, alias="from")
    foreign_key: str | None = None
    skew: float = Field(default=0.0, ge=0, le=10)
    min_children: int | None = Field(default=None, ge=0, le=10**10)
    max_children: int | None = Field(default=None, ge=1, le=10**10)
    null_rate: float = Field(default=0.0, ge=0, lt=1)
    unique: bool = False
    label: bool = False  # the target column of a supervised task (diffs and cards report its balance)
    llm: LlmTextColumn | None = None  # an llm_text column: prompt, models, sampling

    @field_validator("type", mode="before")
    @classmethod
    def _known_type(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in COLUMN_TYPES:
            raise ValueError(
                f"unknown column type '{value}'{_suggest(value, COLUMN_TYPES)} "
                f"Known types: {', '.join(COLUMN_TYPES)}"
            )
        return value

    @field_validator("expr")
    @classmethod
    def _parsed_expr(cls, value: str | None) -> str | None:
        if value is not None:
            from synthreg.generators.expr import parse

            parse(value)  # ValueError: the message says what to change
        return value

    @field_validator("start", "end", mode="before")
    @classmethod
    def _dates_as_datetimes(cls, value: Any) -> Any:
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return dt.datetime(value.year, value.month, value.day)
        return value

    @field_validator("start", "end")
    @classmethod
    def _in_utc_range(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is not None:
            try:
                value.astimezone(dt.UTC)
            except OverflowError:
                raise ValueError(
                    f"{value} is out of range in UTC: use a date between years 1 and 9999"
                ) from None
        return value

    @model_validator(mode="after")
    def _check_by_type(self) -> Column:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) > max ({self.max}): swap them")
        check = {
            "category": self._check_category,
            "text": self._check_text,
            "datetime": self._check_range_dates,
            "date": self._check_range_dates,
            "llm_text": self._check_llm_text,
        }.get(self.type)
        if check:
            check()
        if self.distribution is not None and self.type not in ("int", "float"):
            raise ValueError(f"'distribution' applies to int and float columns, not {self.type}")
        if self.expr is not None:
            if self.type not in ("int", "float", "bool"):
                raise ValueError("'expr' (a derived column) applies to int, float and bool columns")
            if self.distribution is not None or self.foreign_key is not None:
                raise ValueError("a derived column ('expr') cannot also have a distribution or foreign_key")
        if self.llm is not None and self.type != "llm_text":
            raise ValueError(f"'llm' (a prompt for the LLM) applies to llm_text columns, not {self.type}")
        self._check_words_placement()
        if self.after is not None and self.type not in ("datetime", "date"):
            raise ValueError("'after' (time order) applies to datetime and date columns")
        if self.foreign_key is not None:
            if self.type != "int":
                raise ValueError("a foreign_key column must have type: int (keys are integers)")
            if not re.fullmatch(r"[A-Za-z_]\w*\.[A-Za-z_]\w*", self.foreign_key):
                raise ValueError(
                    f"foreign_key '{self.foreign_key}' must look like 'table.column', "
                    "e.g. foreign_key: users.user_id"
                )
        return self

    def _check_words_placement(self) -> None:
        if (self.words, self.min_words, self.max_words) != (None, None, None) and self.type != "text":
            raise ValueError("'words', 'min_words' and 'max_words' apply to text columns")
        if (self.min_words is not None or self.max_words is not None) and self.words is None:
            raise ValueError(
                "min_words and max_words apply to a text column with 'words': add words or remove them"
            )

    def _check_category(self) -> None:
        if not self.values:
            raise ValueError("a category column needs 'values': a list, or a map value -> probability")
        if isinstance(self.values, dict):
            probs = list(self.values.values())
            if any(p < 0 for p in probs):
                raise ValueError("category probabilities must be >= 0")
            total = sum(probs)
            if abs(total - 1.0) > 1e-6:
                raise ValueError(
                    f"category probabilities sum to {total:g}, not 1: adjust them so they add up to 1"
                )
        if len(set(self.categories)) != len(self.categories):
            raise ValueError("category values must be distinct")

    def _check_text(self) -> None:
        if sum(k is not None for k in (self.vocab, self.pattern, self.words)) != 1:
            raise ValueError(
                f"a text column needs either 'vocab' (one of {', '.join(VOCABULARIES)}), "
                "'pattern' (e.g. 'ORD-\\d{6}') or 'words' (a map token -> probability)"
            )
        if self.words is not None:
            self._check_words()
            return
        if self.pattern is not None:
            from synthreg.generators.pattern import parse_pattern

            parse_pattern(self.pattern)
            return
        if self.vocab not in VOCABULARIES:
            raise ValueError(
                f"unknown vocab '{self.vocab}'{_suggest(self.vocab or '', VOCABULARIES)} "
                f"Known vocabularies: {', '.join(VOCABULARIES)}"
            )
        if self.locale not in LOCALES:
            raise ValueError(f"unknown locale '{self.locale}'; known locales: {', '.join(LOCALES)}")
        if self.vocab == "email" and (self.from_ is None or len(self.from_) != 2):
            raise ValueError(
                "an email column is derived from names: add from: [first_name_column, last_name_column]"
            )

    def _check_words(self) -> None:
        words = self.words or {}
        if not words or any(p < 0 for p in words.values()) or abs(sum(words.values()) - 1.0) > 1e-6:
            raise ValueError("'words' needs tokens with probabilities >= 0 that add up to 1")
        if any(not w or any(ch.isspace() for ch in w) for w in words):
            raise ValueError("'words' tokens must be non-empty and hold no spaces: split them")
        low, high = self.min_words or 1, self.max_words or self.min_words or 1
        if low > high:
            raise ValueError(f"min_words ({low}) > max_words ({high}): swap them")
        if self.unique:
            raise ValueError("a 'words' column cannot be unique: use a pattern for unique text")

    def _check_llm_text(self) -> None:
        if self.llm is None:
            raise ValueError(
                "an llm_text column needs 'llm': at least a prompt over the row's columns and models, "
                "e.g. llm: {prompt: 'A review of an order rated {rating}/5', models: [openai/gpt-4o-mini]}"
            )
        keys = ["distribution", "vocab", "pattern", "expr", "foreign_key", "after", "values", "via", "from_"]
        keys += ["min", "max", "decimals", "start", "end", "p", "min_children", "max_children"]
        used = ["from" if k == "from_" else k for k in keys if getattr(self, k) is not None]
        if used or self.unique or self.null_rate:
            what = used + (["unique"] if self.unique else []) + (["null_rate"] if self.null_rate else [])
            raise ValueError(f"an llm_text column is written by the LLM alone: remove {', '.join(what)}")

    def _check_range_dates(self) -> None:
        if self.start is None or self.end is None:
            raise ValueError(f"a {self.type} column needs 'start' and 'end', e.g. start: 2024-01-01")
        if _as_datetime(self.start) > _as_datetime(self.end):
            raise ValueError(f"start ({self.start}) is after end ({self.end}): swap them")

    @property
    def categories(self) -> list[str]:
        """Category values in declaration order."""
        if isinstance(self.values, dict):
            return list(self.values)
        return list(self.values or [])

    @property
    def probabilities(self) -> list[float] | None:
        """Category probabilities, or None for equal weights."""
        return list(self.values.values()) if isinstance(self.values, dict) else None


def _as_datetime(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is None else value.astimezone(dt.UTC).replace(tzinfo=None)


class UserExpectation(_Strict):
    """A Great Expectations expectation declared in the spec, by its snake_case name."""

    expectation: str = Field(pattern=r"^expect_[a-z0-9_]+$")
    kwargs: dict[str, Any] = Field(default_factory=dict)


CONSTRAINT_KINDS = ("sum_limit", "max_rows_per_group", "inequality", "unique_combination")
CONSTRAINT_ACTIONS = ("cap", "redistribute", "drop", "error")


class Constraint(_Strict):
    """A rule over the whole table.

    - ``sum_limit``: per group (``group_by``), the sum of ``column`` is at most ``limit``;
      ``action`` cap (scale the group down to the limit), redistribute (move the excess
      to groups under the limit, keeping the column total), drop (drop the rows that
      overflow, in row order) or error.
    - ``max_rows_per_group``: at most ``limit`` rows per group; action drop or error.
    - ``inequality``: ``left op right`` on every row (op one of < <= > >=); rows that
      break it get ``left`` moved to ``right``.
    - ``unique_combination``: no two rows share the values of ``columns``; action drop or error.
    """

    kind: str
    group_by: list[str] = Field(default_factory=list)
    column: str | None = None
    columns: list[str] = Field(default_factory=list)
    limit: float | None = None
    action: str = "error"
    left: str | None = None
    op: Literal["<", "<=", ">", ">="] | None = None
    right: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Constraint:
        if self.kind not in CONSTRAINT_KINDS:
            raise ValueError(
                f"unknown constraint kind '{self.kind}'{_suggest(self.kind, CONSTRAINT_KINDS)} "
                f"Known kinds: {', '.join(CONSTRAINT_KINDS)}"
            )
        if self.action not in CONSTRAINT_ACTIONS:
            raise ValueError(f"unknown action '{self.action}'; use one of {', '.join(CONSTRAINT_ACTIONS)}")
        needs = {
            "sum_limit": ("group_by", "column", "limit"),
            "max_rows_per_group": ("group_by", "limit"),
            "inequality": ("left", "op", "right"),
            "unique_combination": ("columns",),
        }[self.kind]
        missing = [k for k in needs if not getattr(self, k)]
        if missing:
            raise ValueError(f"constraint '{self.kind}' needs {', '.join(missing)}")
        allowed = {
            "sum_limit": CONSTRAINT_ACTIONS,
            "max_rows_per_group": ("drop", "error"),
            "inequality": ("error", "cap"),
            "unique_combination": ("drop", "error"),
        }[self.kind]
        if self.action not in allowed:
            raise ValueError(
                f"constraint '{self.kind}' takes action {' or '.join(allowed)}, not {self.action}"
            )
        return self

    def referenced(self) -> list[str]:
        """Every column the constraint reads."""
        return [
            *self.group_by,
            *([self.column] if self.column else []),
            *self.columns,
            *([self.left] if self.left else []),
            *([self.right] if self.right else []),
        ]


NOISE_KINDS = ("outliers", "typos", "duplicates", "drift")


class Noise(_Strict):
    """Deliberate imperfection, recorded with the version.

    - ``outliers``: ``rate`` of ``column`` values multiplied by ``factor``;
    - ``typos``: ``rate`` of ``column`` (ASCII text) values get two adjacent letters swapped;
    - ``duplicates``: ``rate`` of rows repeat an earlier row of their block (keys excepted);
    - ``drift``: ``column`` grows by ``change`` (0.15 = +15%) linearly over ``over`` (a date column).
    """

    kind: str
    column: str | None = None
    rate: float = Field(default=0.0, ge=0, le=0.5)
    factor: float = 10.0
    over: str | None = None
    change: float = Field(default=0.0, ge=-0.99, le=100)

    @model_validator(mode="after")
    def _check(self) -> Noise:
        if self.kind not in NOISE_KINDS:
            raise ValueError(
                f"unknown noise kind '{self.kind}'{_suggest(self.kind, NOISE_KINDS)} "
                f"Known kinds: {', '.join(NOISE_KINDS)}"
            )
        needs = {
            "outliers": ("column", "rate"),
            "typos": ("column", "rate"),
            "duplicates": ("rate",),
            "drift": ("column", "over", "change"),
        }[self.kind]
        missing = [k for k in needs if not getattr(self, k)]
        if missing:
            raise ValueError(f"noise '{self.kind}' needs {', '.join(missing)}")
        return self


class Table(_Strict):
    """A table: its row count, columns, primary key, constraints, noise and user expectations.

    A table with ``llm`` (a labeled-text spec, docs LLM.md) is made by the LLM stage at
    ``registry create``, not by the engine: it has no ``columns`` (its columns are the
    labeled rows' text, provenance and curation columns) and ``rows`` is ``llm.samples``.
    """

    rows: int = Field(ge=0, le=10**10)
    description: str = ""
    primary_key: str | None = None
    columns: dict[str, Column] = Field(default_factory=dict)
    constraints: list[Constraint] = Field(default_factory=list)
    noise: list[Noise] = Field(default_factory=list)
    expectations: list[UserExpectation] = Field(default_factory=list)
    llm: LabeledTextSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _rows_from_samples(cls, data: Any) -> Any:
        if isinstance(data, dict) and "rows" not in data and isinstance(data.get("llm"), dict):
            samples = data["llm"].get("samples")
            if isinstance(samples, int):
                return {**data, "rows": samples}
        return data

    def foreign_keys(self) -> dict[str, tuple[str, str]]:
        """column -> (parent table, parent column)."""
        out = {}
        for name, col in self.columns.items():
            if col.foreign_key:
                table, column = col.foreign_key.split(".", 1)
                out[name] = (table, column)
        return out


class Spec(_Strict):
    """A whole dataset spec."""

    description: str = ""
    seed: int = Field(default=0, ge=0, lt=2**63)
    license: str = "cc-by-4.0"
    language: list[str] = Field(default_factory=lambda: ["en"])
    tags: list[str] = Field(default_factory=list)
    task_categories: list[str] = Field(default_factory=list)
    tables: dict[str, Table] = Field(min_length=1)
    _source: str = PrivateAttr(default="<spec>")

    @property
    def source(self) -> str:
        """The file the spec was read from, for messages (not part of the spec or its hash)."""
        return self._source

    def __eq__(self, other: object) -> bool:
        # the same spec read from two files is the same spec: compare fields, not the source
        return self.__dict__ == other.__dict__ if isinstance(other, Spec) else NotImplemented

    def with_source(self, source: str) -> Spec:
        """This spec, naming ``source`` in the errors raised while generating it."""
        self._source = source
        return self

    def table_order(self) -> list[str]:
        """Tables with every parent before its children (foreign keys form a DAG)."""
        order: list[str] = []
        visiting: set[str] = set()

        def visit(name: str) -> None:
            if name in order:
                return
            visiting.add(name)
            for parent, _ in self.tables[name].foreign_keys().values():
                if parent != name and parent not in visiting:
                    visit(parent)
            visiting.discard(name)
            order.append(name)

        for name in self.tables:
            visit(name)
        return order

    def frozen_yaml(self) -> str:
        """The resolved spec as YAML: what a version stores and hashes."""
        data = self.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        data["seed"] = self.seed
        # LLM settings go into call keys: freeze them whole, so a later change of a default
        # cannot make an old version's recorded calls unreachable.
        for name, table in self.tables.items():
            if table.llm is not None:
                data["tables"][name]["llm"] = table.llm.model_dump(mode="json")
            for cname, col in table.columns.items():
                if col.llm is not None:
                    data["tables"][name]["columns"][cname]["llm"] = col.llm.model_dump(mode="json")
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)

    def sha256(self) -> str:
        """sha256 of the frozen YAML."""
        return hashlib.sha256(self.frozen_yaml().encode()).hexdigest()

    @property
    def total_rows(self) -> int:
        """Rows over all tables."""
        return sum(t.rows for t in self.tables.values())

    def llm_tables(self) -> list[str]:
        """Tables made by the LLM stage (``llm``), in spec order."""
        return [name for name, table in self.tables.items() if table.llm is not None]

    def llm_columns(self) -> list[tuple[str, str]]:
        """``(table, column)`` of every ``llm_text`` column, tables in ``table_order()``."""
        return [
            (name, cname)
            for name in self.table_order()
            for cname, col in self.tables[name].columns.items()
            if col.type == "llm_text"
        ]

    def uses_llm(self) -> bool:
        """Whether making the data needs the LLM (``llm`` tables or ``llm_text`` columns)."""
        return bool(self.llm_tables() or self.llm_columns())

    def engine_order(self) -> list[str]:
        """``table_order()`` without the LLM tables: what the engine generates."""
        return [name for name in self.table_order() if self.tables[name].llm is None]
