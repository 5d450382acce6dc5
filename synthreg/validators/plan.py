"""The expectations to check per table, and where each one runs.

The spec implies a suite per table (row count, column set, nulls, ranges, category
sets, date ranges, uniqueness); the user adds ``expectations`` by GX name. Each
planned expectation gets a scope, because a table comes in several Parquet parts and
only per-row expectations can be judged part by part:

- ``BATCH``: per-row (GX column/pair/multicolumn *map* expectations, except those whose
  verdict on a row depends on other rows): GX runs on each batch, counts are summed.
- ``WHOLE``: whole-table aggregates (mean, quantiles, distinct values, uniqueness asked
  by the user, column set...): GX runs once on a frame of just what they read.
- ``ROW_COUNT`` and ``UNIQUE``: the spec's own row count and key uniqueness, which we
  compute from Parquet metadata and over the whole column without GX.

Great Expectations is imported inside functions: it costs seconds to import.
"""

from __future__ import annotations

import datetime as dt
import difflib
import inspect
import math
from dataclasses import dataclass
from typing import Any

from synthreg.errors import SpecError
from synthreg.generators.constraints import GROUP_KINDS
from synthreg.generators.spec import Column, Spec, Table, UserExpectation
from synthreg.validators.results import jsonable

__all__ = [
    "BATCH",
    "ROW_COUNT",
    "UNIQUE",
    "WHOLE",
    "Planned",
    "llm_table_plan",
    "spec_plan",
    "user_expectations",
]

BATCH = "batch"
WHOLE = "whole"
ROW_COUNT = "row_count"
UNIQUE = "unique"

#: Map expectations whose verdict on one row depends on the other rows of the column.
_WHOLE_COLUMN_MAPS = frozenset(
    {
        "expect_column_values_to_be_unique",
        "expect_compound_columns_to_be_unique",
        "expect_column_values_to_be_increasing",
        "expect_column_values_to_be_decreasing",
        "expect_column_value_z_scores_to_be_less_than",
        "expect_column_values_to_not_be_outliers",
    }
)
#: Fields every GX expectation has; not worth listing as "its arguments".
_BASE_FIELDS = frozenset(
    {
        "id",
        "meta",
        "notes",
        "result_format",
        "description",
        "catch_exceptions",
        "rendered_content",
        "severity",
        "windows",
        "batch_id",
    }
)
_COLUMN_KWARGS = ("column", "column_A", "column_B")


@dataclass
class Planned:
    """A GX expectation to check, with what we report about it and where it runs."""

    check: str
    column: str | None
    kwargs: dict[str, Any]
    expectation: Any  # a great_expectations Expectation instance
    scope: str = BATCH

    def reads(self) -> tuple[str, ...]:
        """The columns it reads (``column``, ``column_A``/``column_B``, ``column_list``)."""
        named = [self.kwargs.get(key) for key in _COLUMN_KWARGS]
        listed = self.kwargs.get("column_list")
        named += listed if isinstance(listed, list) else []
        return tuple(dict.fromkeys(c for c in named if isinstance(c, str)))


# ---------------------------------------------------------------- user expectations


def _expectation_classes() -> dict[str, type]:
    """snake_case name -> GX expectation class, for every expectation GX ships."""
    from synthreg.validators.gx_runner import import_gx

    gx = import_gx()
    from great_expectations.expectations.expectation import Expectation

    found = {}
    for obj in vars(gx.expectations).values():
        if inspect.isclass(obj) and issubclass(obj, Expectation):
            name = getattr(obj, "expectation_type", "")
            if isinstance(name, str) and name.startswith("expect_"):
                found[name] = obj
    return found


def _scope(cls: type) -> str:
    from great_expectations.expectations.expectation import (
        ColumnMapExpectation,
        ColumnPairMapExpectation,
        MulticolumnMapExpectation,
    )

    per_row = issubclass(cls, (ColumnMapExpectation, ColumnPairMapExpectation, MulticolumnMapExpectation))
    return BATCH if per_row and getattr(cls, "expectation_type", "") not in _WHOLE_COLUMN_MAPS else WHOLE


def user_expectations(spec: Spec, source: str) -> dict[str, list[Planned]]:
    """Build every table's user expectations, or raise one SpecError listing all problems."""
    classes = _expectation_classes()
    planned: dict[str, list[Planned]] = {name: [] for name in spec.tables}
    problems: list[tuple[str, str]] = []
    for tname, table in spec.tables.items():
        for i, user in enumerate(table.expectations):
            loc = f"tables.{tname}.expectations.{i}"
            built = _build_user(classes, table, tname, user)
            if isinstance(built, Planned):
                planned[tname].append(built)
            else:
                problems.append((f"{loc}.{built[0]}", built[1]))
    if problems:
        raise SpecError(source, problems)
    return planned


def _build_user(
    classes: dict[str, type], table: Table, tname: str, user: UserExpectation
) -> Planned | tuple[str, str]:
    """The planned expectation, or (key inside the entry, message) when it is wrong."""
    cls = classes.get(user.expectation)
    if cls is None:
        return "expectation", _unknown_message(user.expectation, classes)
    for key in _COLUMN_KWARGS:
        column = user.kwargs.get(key)
        if isinstance(column, str) and column not in table.columns:
            hint = _did_you_mean(column, list(table.columns))
            return f"kwargs.{key}", (
                f"'{column}' is not a column of {tname}{hint}; columns: {', '.join(table.columns)}"
            )
    try:
        expectation = _construct(cls, user.kwargs)
    except Exception as exc:  # GX raises pydantic, ValueError or its own errors here
        return "kwargs", _kwargs_message(user.expectation, cls, exc)
    column = user.kwargs.get("column")
    column = column if isinstance(column, str) else None
    return Planned(user.expectation, column, jsonable(user.kwargs), expectation, _scope(cls))


def _construct(cls: type, kwargs: dict[str, Any]) -> Any:
    """``cls(**kwargs)``, with plain dates made datetimes.

    GX's pydantic fields turn ``min_value: "2024-01-01"`` into a ``datetime.date``, which
    pandas refuses to compare with a datetime64 column; a midnight datetime compares fine.
    """
    expectation = cls(**kwargs)
    dates = {
        key: _as_datetime(value)
        for key in kwargs
        if isinstance(value := getattr(expectation, key, None), dt.date)
        and not isinstance(value, dt.datetime)
    }
    return cls(**{**kwargs, **dates}) if dates else expectation


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    if not close:
        return ""
    quoted = [f"'{c}'" for c in close]
    listed = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    return f"; did you mean {listed}?"


def _unknown_message(name: str, classes: dict[str, type]) -> str:
    return (
        f"unknown Great Expectations expectation '{name}'{_did_you_mean(name, list(classes))} "
        f"Use the snake_case name of one of the {len(classes)} expectations in "
        "great_expectations.expectations (ExpectColumnValuesToBeBetween -> "
        "expect_column_values_to_be_between); see https://greatexpectations.io/expectations"
    )


def _kwargs_message(name: str, cls: type, exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        parts = []
        for item in errors():
            loc = ".".join(str(p) for p in item.get("loc", ()) if p != "__root__")
            parts.append(f"{loc}: {item.get('msg')}" if loc else str(item.get("msg")))
        detail = "; ".join(dict.fromkeys(parts))
    else:
        detail = str(exc).strip()
    fields = getattr(cls, "__fields__", {})
    allowed = ", ".join(f for f in fields if f not in _BASE_FIELDS)
    return f"invalid kwargs for {name}: {detail}. Fix them; {name} takes: {allowed}"


# ---------------------------------------------------------------- the spec's own suite


def _planned(class_name: str, column: str | None = None, *, scope: str = BATCH, **kwargs: Any) -> Planned:
    from synthreg.validators.gx_runner import import_gx

    gx = import_gx()

    cls = getattr(gx.expectations, class_name)
    args = {"column": column, **kwargs} if column is not None else kwargs
    return Planned(cls.expectation_type, column, jsonable(args), cls(**args), scope)


def llm_table_plan(table: Table) -> Planned:
    """An LLM table's row count: at least one row (when samples were asked for) and at most one
    per planned sample; samples the model answered unusably (rejects) or that curation dropped
    are kept aside in ``llm/``, not counted."""
    low = min(1, table.rows)
    return _planned("ExpectTableRowCountToBeBetween", scope=ROW_COUNT, min_value=low, max_value=table.rows)


def spec_plan(table: Table) -> list[Planned]:
    """The expectations the spec implies for one table, in a stable order."""
    if any(r.action == "drop" and r.kind in GROUP_KINDS for r in table.constraints):
        # a group rule that drops rows leaves at least the first row of a group, at most them all
        rows = _planned(
            "ExpectTableRowCountToBeBetween",
            scope=ROW_COUNT,
            min_value=min(1, table.rows),
            max_value=table.rows,
        )
    else:
        rows = _planned("ExpectTableRowCountToEqual", scope=ROW_COUNT, value=table.rows)
    planned = [
        rows,
        _planned(
            "ExpectTableColumnsToMatchSet", scope=WHOLE, column_set=list(table.columns), exact_match=True
        ),
    ]
    for name, col in table.columns.items():
        planned += _column_plan(name, col, table)
    return planned


def _column_plan(name: str, col: Column, table: Table) -> list[Planned]:
    planned = [_not_null(name, col, table.rows)]
    if col.type in ("int", "float") and (col.min is not None or col.max is not None):
        decimals = 0 if col.type == "int" else col.decimals
        low, high = _rounded_bounds(col.min, col.max, decimals)
        low, high, extra = _declared_deviations(name, table, low, high)
        if low is not None or high is not None:
            planned.append(
                _planned("ExpectColumnValuesToBeBetween", name, min_value=low, max_value=high, **extra)
            )
    elif col.type in ("datetime", "date") and col.start is not None and col.end is not None:
        low_dt, high_dt = _as_datetime(col.start), _as_datetime(col.end)
        if col.type == "date":  # the generator draws whole days: midnight to midnight
            low_dt, high_dt = _midnight(low_dt), _midnight(high_dt)
        planned.append(_planned("ExpectColumnValuesToBeBetween", name, min_value=low_dt, max_value=high_dt))
    elif col.type == "text" and col.pattern:
        from synthreg.generators.pattern import pattern_regex

        typos = [n for n in table.noise if n.column == name and n.kind == "typos"]
        extra = {"mostly": round(max(0.0, 1 - 2 * typos[0].rate - 0.01), 6)} if typos else {}
        planned.append(
            _planned("ExpectColumnValuesToMatchRegex", name, regex=pattern_regex(col.pattern), **extra)
        )
    elif col.type == "category":
        planned.append(_planned("ExpectColumnValuesToBeInSet", name, value_set=col.categories))
    elif col.type == "llm_text" and col.llm is not None:
        planned.append(
            _planned(
                "ExpectColumnValueLengthsToBeBetween",
                name,
                min_value=col.llm.min_length,
                max_value=col.llm.max_length,
            )
        )
    elif col.type == "bool":
        planned.append(_planned("ExpectColumnValuesToBeInSet", name, value_set=[True, False]))
    if col.unique or name == table.primary_key:
        planned.append(_planned("ExpectColumnValuesToBeUnique", name, scope=UNIQUE))
    return planned


def _declared_deviations(
    name: str, table: Table, low: float | None, high: float | None
) -> tuple[float | None, float | None, dict[str, Any]]:
    """Range bounds widened by what the spec itself asks for: drift moves values by up to
    ``change``, outliers put ``rate`` of them outside on purpose, and capped or
    redistributed sums rescale values below the minimum (or above the maximum)."""
    extra: dict[str, Any] = {}
    for noise in table.noise:
        if noise.column != name:
            continue
        if noise.kind == "drift":
            factor = 1.0 + noise.change
            high = None if high is None else max(high, high * factor)
            low = None if low is None else min(low, low * factor)
        elif noise.kind == "outliers":
            tolerance = max(0.01, 4 * math.sqrt(noise.rate * (1 - noise.rate) / max(table.rows, 1)))
            extra["mostly"] = round(max(0.0, 1 - noise.rate - tolerance), 6)
    for rule in table.constraints:
        if rule.kind == "sum_limit" and rule.column == name and rule.action in ("cap", "redistribute"):
            low = None if low is None else min(low, 0.0)
            high = None if rule.action == "redistribute" else high
    return low, high, extra


def _not_null(name: str, col: Column, rows: int) -> Planned:
    """Not null; for a nullable column, at most ``null_rate`` plus sampling noise null."""
    if not col.null_rate:
        return _planned("ExpectColumnValuesToNotBeNull", name)
    p = col.null_rate
    # 4 standard errors of a binomial proportion: a false alarm is ~1 in 30,000.
    tolerance = max(0.01, 4 * math.sqrt(p * (1 - p) / rows)) if rows else 1.0
    mostly = round(min(1.0, max(0.0, 1 - p - tolerance)), 6)
    return _planned("ExpectColumnValuesToNotBeNull", name, mostly=mostly)


def _rounded_bounds(
    low: float | None, high: float | None, decimals: int | None
) -> tuple[float | None, float | None]:
    """Bounds widened to what rounding after clipping can produce (0.05 -> 0.0 at 1 decimal)."""
    if decimals is None:
        return low, high
    scale = 10.0**decimals
    if low is not None:
        low = round(math.floor(low * scale + 1e-9) / scale, decimals)
    if high is not None:
        high = round(math.ceil(high * scale - 1e-9) / scale, decimals)
    return low, high


def _as_datetime(value: Any) -> Any:
    """Dates and aware datetimes -> naive UTC datetimes (how the engine writes them)."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is None else value.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    return value


def _midnight(value: dt.datetime) -> dt.datetime:
    return dt.datetime(value.year, value.month, value.day)
