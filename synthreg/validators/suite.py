"""Validate generated tables against their spec: Great Expectations plus our own checks.

``validate_tables`` derives an expectation suite per table from the spec (row count,
column set, nulls, ranges, category sets, date ranges, uniqueness) and adds the
user's own ``expectations``. Great Expectations runs them on a pandas frame; we add
the checks GX cannot express on one frame: the Arrow schema and foreign-key
integrity across tables. Every check comes back as a ``CheckResult`` in one format.

Great Expectations is imported inside functions: it costs seconds to import.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import inspect
import math
import time
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from synthreg.errors import NotFoundError, SpecError
from synthreg.generators.engine import table_schema
from synthreg.generators.spec import Column, Spec, Table, UserExpectation

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CheckResult", "ValidationResult", "validate_tables"]

GX_SOURCE = "great_expectations"
OUR_SOURCE = "synthreg"
SCHEMA_CHECK = "arrow_schema"
FK_CHECK = "foreign_key_integrity"
#: How many offending values a failed check reports (GX's BASIC result format also keeps 20).
EXAMPLES = 20
#: Keys of a GX result worth keeping; the index lists and counts are bulky.
_OBSERVED_KEYS = (
    "observed_value",
    "element_count",
    "missing_count",
    "unexpected_count",
    "unexpected_percent",
    "partial_unexpected_list",
    "details",
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


@dataclass(frozen=True)
class CheckResult:
    """One check on one table (GX's or ours), in one JSON-serialisable format."""

    table: str
    check: str
    column: str | None
    kwargs: dict[str, Any]
    success: bool
    observed: dict[str, Any]
    source: str


@dataclass(frozen=True)
class ValidationResult:
    """Every check of every table, and whether they all passed."""

    success: bool
    evaluated: int
    failed: int
    checks: tuple[CheckResult, ...]
    seconds: float
    engine: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary with every check."""
        ratio = (self.evaluated - self.failed) / self.evaluated if self.evaluated else 1.0
        return {
            "success": self.success,
            "evaluated": self.evaluated,
            "failed": self.failed,
            "success_ratio": ratio,
            "engine": self.engine,
            "seconds": self.seconds,
            "checks": [asdict(check) for check in self.checks],
        }


@dataclass
class _Planned:
    """A GX expectation to run, with what we report about it."""

    check: str
    column: str | None
    kwargs: dict[str, Any]
    expectation: Any  # a great_expectations Expectation instance


@dataclass
class _Run:
    """One ``validate_tables`` call: the GX context and what was already read."""

    context: Any
    datasource: Any
    tables_dir: Path
    keys: dict[str, pa.ChunkedArray] = field(default_factory=dict)


def validate_tables(spec: Spec, tables_dir: Path, *, source: str = "<spec>") -> ValidationResult:
    """Validate ``tables_dir/<table>/*.parquet`` against ``spec``.

    User expectations are checked (names and arguments) before any data is read;
    a bad one raises ``SpecError`` naming ``tables.<t>.expectations.<i>`` in ``source``.
    A table without Parquet files raises ``NotFoundError``.
    """
    import great_expectations as gx

    started = time.perf_counter()
    user = _user_expectations(spec, source)
    run = _Run(*_context(), Path(tables_dir))
    checks: list[CheckResult] = []
    for name in spec.table_order():
        checks += _validate_table(run, spec, name, user[name])
    failed = sum(not check.success for check in checks)
    return ValidationResult(
        success=failed == 0,
        evaluated=len(checks),
        failed=failed,
        checks=tuple(checks),
        seconds=round(time.perf_counter() - started, 3),
        engine=f"great_expectations {gx.__version__}",
    )


def _validate_table(run: _Run, spec: Spec, name: str, user: list[_Planned]) -> list[CheckResult]:
    arrow = _read_table(run.tables_dir, name)
    planned = _spec_plan(spec.tables[name]) + user
    checks = _run_suite(run, name, planned, _to_frame(arrow))
    checks.append(_schema_check(spec, name, arrow))
    for column, (parent, key) in spec.tables[name].foreign_keys().items():
        checks.append(_fk_check(run, name, column, arrow, parent, key))
    return checks


# ---------------------------------------------------------------- user expectations


def _expectation_classes() -> dict[str, type]:
    """snake_case name -> GX expectation class, for every expectation GX ships."""
    import great_expectations as gx
    from great_expectations.expectations.expectation import Expectation

    found = {}
    for obj in vars(gx.expectations).values():
        if inspect.isclass(obj) and issubclass(obj, Expectation):
            name = getattr(obj, "expectation_type", "")
            if isinstance(name, str) and name.startswith("expect_"):
                found[name] = obj
    return found


def _user_expectations(spec: Spec, source: str) -> dict[str, list[_Planned]]:
    """Build every table's user expectations, or raise one SpecError listing all problems."""
    classes = _expectation_classes()
    planned: dict[str, list[_Planned]] = {name: [] for name in spec.tables}
    problems: list[tuple[str, str]] = []
    for tname, table in spec.tables.items():
        for i, user in enumerate(table.expectations):
            loc = f"tables.{tname}.expectations.{i}"
            built = _build_user(classes, table, tname, user)
            if isinstance(built, _Planned):
                planned[tname].append(built)
            else:
                problems.append((f"{loc}.{built[0]}", built[1]))
    if problems:
        raise SpecError(source, problems)
    return planned


def _build_user(
    classes: dict[str, type], table: Table, tname: str, user: UserExpectation
) -> _Planned | tuple[str, str]:
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
    return _Planned(user.expectation, column, _jsonable(user.kwargs), expectation)


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


def _planned(class_name: str, column: str | None = None, **kwargs: Any) -> _Planned:
    import great_expectations as gx

    cls = getattr(gx.expectations, class_name)
    args = {"column": column, **kwargs} if column is not None else kwargs
    return _Planned(cls.expectation_type, column, _jsonable(args), cls(**args))


def _spec_plan(table: Table) -> list[_Planned]:
    """The expectations the spec implies for one table, in a stable order."""
    planned = [
        _planned("ExpectTableRowCountToEqual", value=table.rows),
        _planned("ExpectTableColumnsToMatchSet", column_set=list(table.columns), exact_match=True),
    ]
    for name, col in table.columns.items():
        planned += _column_plan(name, col, table)
    return planned


def _column_plan(name: str, col: Column, table: Table) -> list[_Planned]:
    planned = [_not_null(name, col, table.rows)]
    if col.type in ("int", "float") and (col.min is not None or col.max is not None):
        decimals = 0 if col.type == "int" else col.decimals
        low, high = _rounded_bounds(col.min, col.max, decimals)
        planned.append(_planned("ExpectColumnValuesToBeBetween", name, min_value=low, max_value=high))
    elif col.type in ("datetime", "date") and col.start is not None and col.end is not None:
        low_dt, high_dt = _as_datetime(col.start), _as_datetime(col.end)
        if col.type == "date":  # the generator draws whole days: midnight to midnight
            low_dt, high_dt = _midnight(low_dt), _midnight(high_dt)
        planned.append(_planned("ExpectColumnValuesToBeBetween", name, min_value=low_dt, max_value=high_dt))
    elif col.type == "category":
        planned.append(_planned("ExpectColumnValuesToBeInSet", name, value_set=col.categories))
    elif col.type == "bool":
        planned.append(_planned("ExpectColumnValuesToBeInSet", name, value_set=[True, False]))
    if col.unique or name == table.primary_key:
        planned.append(_planned("ExpectColumnValuesToBeUnique", name))
    return planned


def _not_null(name: str, col: Column, rows: int) -> _Planned:
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


# ---------------------------------------------------------------- running GX


def _context() -> tuple[Any, Any]:
    """An ephemeral GX context with progress bars off and one pandas datasource."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context, context.data_sources.add_pandas(name="synthreg")


def _run_suite(run: _Run, table: str, planned: list[_Planned], frame: Any) -> list[CheckResult]:
    import great_expectations as gx

    batch = run.datasource.add_dataframe_asset(name=table).add_batch_definition_whole_dataframe("whole")
    # In 1.x the suite and the definition must live in the context before they can run;
    # adding the suite gives every expectation an id, which is how results map back
    # (results do not come back in suite order).
    expectations = [p.expectation for p in planned]
    suite = run.context.suites.add(gx.ExpectationSuite(name=table, expectations=expectations))
    definition = run.context.validation_definitions.add(
        gx.ValidationDefinition(data=batch, suite=suite, name=table)
    )
    result = definition.run(batch_parameters={"dataframe": frame}, result_format="BASIC")
    by_id = {r.expectation_config.id: r for r in result.results}
    return [_to_check(table, p, by_id[p.expectation.id]) for p in planned]


def _to_check(table: str, planned: _Planned, result: Any) -> CheckResult:
    error = _exception_message(result.exception_info)
    if error is not None:
        observed: dict[str, Any] = {"exception": error}
    else:
        observed = {k: v for k, v in (result.result or {}).items() if k in _OBSERVED_KEYS}
    return CheckResult(
        table=table,
        check=planned.check,
        column=planned.column,
        kwargs=planned.kwargs,
        success=bool(result.success) and error is None,
        observed=_jsonable(observed),
        source=GX_SOURCE,
    )


def _exception_message(info: Any) -> str | None:
    """The first exception message in GX's exception_info (flat, or keyed by metric)."""
    if not isinstance(info, dict):
        return None
    if "raised_exception" in info:
        return str(info.get("exception_message")) if info.get("raised_exception") else None
    for nested in info.values():
        message = _exception_message(nested)
        if message is not None:
            return message
    return None


def _to_frame(arrow: pa.Table) -> pd.DataFrame:
    """A NumPy-backed pandas frame: GX is ~30x slower on pyarrow-backed columns."""
    import pandas as pd

    return pd.DataFrame(
        {name: pd.Series(_to_numpy(arrow.column(name)), copy=False) for name in arrow.column_names},
        copy=False,
    )


def _to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    """int64/float64/datetime64[ns]/bool or object: the dtypes GX compares vectorised."""
    typ = column.type
    if pa.types.is_dictionary(typ):
        column, typ = pc.cast(column, typ.value_type), typ.value_type
    if pa.types.is_integer(typ) or pa.types.is_floating(typ):
        wide = pa.int64() if pa.types.is_integer(typ) and not column.null_count else pa.float64()
        return pc.cast(column, wide).to_numpy()
    if pa.types.is_timestamp(typ) or pa.types.is_date(typ):
        # GX only vectorises "between" on datetime64[ns]; [ms] goes row by row. Outside
        # 1677..2262 the cast fails: keep the unit, slower but right.
        with contextlib.suppress(pa.ArrowInvalid):
            column = pc.cast(column, pa.timestamp("ns", getattr(typ, "tz", None)))
        return column.to_numpy()
    if pa.types.is_boolean(typ) and not column.null_count:
        return column.to_numpy()
    array = column.to_numpy(zero_copy_only=False)
    return array if array.dtype == object else array.astype(object)


# ---------------------------------------------------------------- our own checks


def _read_table(tables_dir: Path, name: str, columns: list[str] | None = None) -> pa.Table:
    files = sorted((tables_dir / name).glob("*.parquet"))
    if not files:
        raise NotFoundError(
            f"no Parquet files for table '{name}' under {tables_dir / name}: "
            "generate the data first, or point at the version's tables/ directory"
        )
    return pa.concat_tables([pq.read_table(path, columns=columns) for path in files])


def _value_type(typ: pa.DataType) -> pa.DataType:
    return typ.value_type if pa.types.is_dictionary(typ) else typ


def _schema_check(spec: Spec, table: str, arrow: pa.Table) -> CheckResult:
    """Each column's Arrow type (dictionary folded to its values) is the one the spec implies."""
    expected = {f.name: str(_value_type(f.type)) for f in table_schema(spec, table)}
    observed = {f.name: str(_value_type(f.type)) for f in arrow.schema}
    mismatched = {
        name: {"expected": typ, "observed": observed.get(name, "missing")}
        for name, typ in expected.items()
        if observed.get(name) != typ
    }
    return CheckResult(
        table=table,
        check=SCHEMA_CHECK,
        column=None,
        kwargs={"schema": expected},
        success=not mismatched,
        observed={"observed_value": observed, "mismatched": mismatched},
        source=OUR_SOURCE,
    )


def _fk_check(run: _Run, table: str, column: str, arrow: pa.Table, parent: str, key: str) -> CheckResult:
    """Every non-null child value is a key of the parent table."""
    kwargs = {"parent_table": parent, "parent_column": key}
    try:
        parent_keys = _parent_keys(run, parent, key)
        child = arrow.column(column)
    except (KeyError, pa.ArrowInvalid) as exc:
        observed: dict[str, Any] = {"exception": f"cannot read the key columns: {exc}"}
        return CheckResult(table, FK_CHECK, column, kwargs, False, observed, OUR_SOURCE)
    values = pc.drop_null(child)
    unexpected = values.filter(pc.invert(pc.is_in(values, value_set=parent_keys)))
    count = len(unexpected)
    observed = {
        "element_count": len(child),
        "missing_count": child.null_count,
        "unexpected_count": count,
        "unexpected_percent": 100.0 * count / len(values) if len(values) else 0.0,
        "partial_unexpected_list": _jsonable(unexpected.slice(0, EXAMPLES).to_pylist()),
    }
    return CheckResult(table, FK_CHECK, column, kwargs, count == 0, observed, OUR_SOURCE)


def _parent_keys(run: _Run, parent: str, key: str) -> pa.Array:
    cache_key = f"{parent}.{key}"
    if cache_key not in run.keys:
        run.keys[cache_key] = _read_table(run.tables_dir, parent, [key]).column(key)
    return run.keys[cache_key].combine_chunks()


# ---------------------------------------------------------------- JSON


def _jsonable(value: Any) -> Any:
    """Plain JSON types: NumPy/pandas scalars unwrapped, times as ISO strings, NaN as null."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return [_jsonable(v) for v in sorted(value, key=str)]
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    return _json_scalar(value)


def _json_scalar(value: Any) -> Any:
    if value is None or type(value).__name__ in ("NaTType", "NAType"):
        return None
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else str(np.datetime_as_string(value))
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
