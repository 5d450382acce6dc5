"""Running Great Expectations on pandas frames, and folding per-batch results into one.

One ephemeral context serves a whole ``validate_tables`` call; a ``GxSuite`` is one
suite, run on as many frames as needed (each batch of a table's parts) through GX's
``Batch.validate``. ``Tally`` sums a per-row expectation's counts over the batches and
judges ``mostly`` on the totals, as GX would on the whole table.

GX's own bookkeeping cost ~35 ms a run whatever the rows (14 runs at 10M rows); two things
halve it (``benchmarks/bench_gx_runs.py``): ``Batch.validate`` instead of a
``ValidationDefinition`` (which also serialised every result into the context's store,
which nothing reads), and ``memo_configurations`` (each expectation's configuration built
once per expectation object in a run, not each time GX reads it).

Frames are NumPy-backed (GX is ~30x slower on pyarrow-backed numeric columns), with
one dtype per column for the whole table, so every batch is judged alike.

Great Expectations is imported inside functions: it costs seconds to import.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import threading
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthreg.validators.plan import Planned
from synthreg.validators.results import EXAMPLES, GX_SOURCE, CheckResult, jsonable, unexpected_percent

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "GxRunner",
    "GxSuite",
    "Tally",
    "gx_check",
    "import_gx",
    "memo_configurations",
    "preload",
    "to_frame",
]

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
#: Modules GX imports at import time but synthreg's checks never use (see ``_defer_unused``).
_DEFERRED = ("scipy.stats", "altair")
_COUNT_KEYS = frozenset({"element_count", "missing_count", "unexpected_count", "unexpected_percent"})


def preload() -> None:
    """Import Great Expectations (seconds), e.g. in a helper process while the engine runs."""
    import_gx()


def import_gx() -> types.ModuleType:
    """``great_expectations``, imported with what it does not need for synthreg deferred: every
    synthreg module imports GX through this."""
    _defer_unused()
    import great_expectations

    return great_expectations


class _Deferred(types.ModuleType):
    """Stands in ``sys.modules`` for a module until it is used (an attribute read or set, or
    ``dir``): then the module is imported for real, replaces this one in ``sys.modules`` and on
    its package, and this one forwards to it. Two threads using it at once import it once
    (importlib's own module lock)."""

    def _load(self) -> types.ModuleType:
        real = self.__dict__.get("_real")
        if real is None:
            name = self.__name__
            if sys.modules.get(name) is self:
                sys.modules.pop(name, None)
            real = importlib.import_module(name)
            self.__dict__["_real"] = real
            parent, _, child = name.rpartition(".")
            if parent and getattr(sys.modules.get(parent), child, None) is self:
                setattr(sys.modules[parent], child, real)
        return real

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._load(), attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        if attr.startswith("__") and attr.endswith("__"):  # what the import system sets on it
            super().__setattr__(attr, value)
        else:  # e.g. a test patching a function: it must reach the real module
            setattr(self._load(), attr, value)

    def __dir__(self) -> list[str]:
        return dir(self._load())


_DEFER_LOCK = threading.Lock()


def _defer_unused() -> None:
    """GX imports scipy.stats and altair at import time for expectations synthreg never runs
    (KL divergence, KS tests, their charts): ~0.7 s of a cold ~2.7 s import. Each is
    imported when first used instead."""
    with _DEFER_LOCK:
        for name in _DEFERRED:
            if name in sys.modules or importlib.util.find_spec(name.partition(".")[0]) is None:
                continue
            module = _Deferred(name)
            module.__spec__ = importlib.util.find_spec(name)
            sys.modules[name] = module
            parent, _, child = name.rpartition(".")
            if parent:
                setattr(importlib.import_module(parent), child, module)


@dataclass
class GxSuite:
    """A suite registered in the runner's context, ready to run on any frame."""

    batch: Any
    suite: Any
    planned: list[Planned]

    def run(self, frame: pd.DataFrame) -> list[Any]:
        """GX's result for each planned expectation, in plan order."""
        with memo_configurations():
            batch = self.batch.get_batch(batch_parameters={"dataframe": frame})
            result = batch.validate(self.suite, result_format="BASIC")
        # Results do not come back in suite order: the ids the suite gave them map them back.
        by_id = {r.expectation_config.id: r for r in result.results}
        return [by_id[p.expectation.id] for p in self.planned]


class GxRunner:
    """An ephemeral GX context with progress bars off and one pandas dataframe asset."""

    def __init__(self) -> None:
        gx = import_gx()
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        datasource = self.context.data_sources.add_pandas(name="synthreg")
        # One asset for every suite: GX keeps the last frame it validated per asset, so
        # with one asset it never holds more than the latest batch.
        asset = datasource.add_dataframe_asset(name="frame")
        self.batch = asset.add_batch_definition_whole_dataframe("whole")

    def suite(self, name: str, planned: list[Planned]) -> GxSuite:
        """Register ``planned`` as suite ``name`` (unique within this runner)."""
        gx = import_gx()

        # Adding the suite to the context gives every expectation the id its result comes back under.
        expectations = [p.expectation for p in planned]
        suite = self.context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
        return GxSuite(self.batch, suite, planned)


class _Memo:
    """The state of :func:`memo_configurations`: how many runs are inside it (in any thread), the
    property it replaced, and each thread's kept configurations, per expectation object (by
    ``id``, the object kept too, so the id is not reused)."""

    lock = threading.Lock()
    depth = 0
    original: Any = None
    local = threading.local()


@contextlib.contextmanager
def memo_configurations() -> Iterator[None]:
    """Build each GX expectation's ``configuration`` once per object while inside, not on every read.

    ``Expectation.configuration`` is a property that serialises the expectation (a pydantic
    ``dict()``, a regex on the class name) each time it is read. One GX run makes ~10
    expectation objects per expectation of the suite and reads each one's configuration ~9
    times, to build each metric's kwargs: ~17 of GX's ~35 ms fixed cost a run. Inside, the first
    read per object is kept and returned after, in this thread only: GX does not change the
    objects it validates during a run (it deep-copies a configuration before adding to it), so a
    kept configuration is what the property would build again. Reads in other threads, and after
    leaving, build it as GX does; a thread's kept ones are dropped when it leaves, and GX's own
    property is back when no thread is inside (runs may nest, or overlap in threads).
    """
    from great_expectations.expectations.expectation import Expectation

    if not isinstance(Expectation.__dict__.get("configuration"), property):  # a GX that changed it
        yield
        return
    with _Memo.lock:
        if _Memo.depth == 0:
            _Memo.original = Expectation.__dict__["configuration"]
            build, local = _Memo.original.fget, _Memo.local

            def configuration(self: Any) -> Any:
                built: dict[int, tuple[Any, Any]] | None = getattr(local, "built", None)
                if built is None:  # a thread outside the memo
                    return build(self)
                kept = built.get(id(self))
                if kept is None or kept[0] is not self:
                    kept = built[id(self)] = (self, build(self))
                return kept[1]

            _set_configuration(Expectation, property(configuration, doc=_Memo.original.__doc__))
        _Memo.depth += 1
    outer = getattr(_Memo.local, "built", None) is not None  # nested: the outer run's memo serves
    if not outer:
        _Memo.local.built = {}
    try:
        yield
    finally:
        if not outer:
            _Memo.local.built = None
        with _Memo.lock:
            _Memo.depth -= 1
            if _Memo.depth == 0:
                _set_configuration(Expectation, _Memo.original)
                _Memo.original = None


def _set_configuration(cls: type, prop: property) -> None:
    cls.configuration = prop  # type: ignore[attr-defined]


@contextlib.contextmanager
def no_fingerprint() -> Iterator[None]:
    """Stop GX md5-hashing every frame under 1 GB (``HASH_THRESHOLD``) just to label the batch.

    The label (``pandas_data_fingerprint``) is never used by us, and hashing cost more
    than all the expectations together (~0.25 s per million rows and column set). The
    setting is process-wide while validation runs; left off, it would only skip labels.
    """
    from great_expectations.execution_engine import pandas_execution_engine as engine

    if not hasattr(engine, "HASH_THRESHOLD"):  # a GX that no longer hashes
        yield
        return
    saved = engine.HASH_THRESHOLD
    engine.HASH_THRESHOLD = 0
    try:
        yield
    finally:
        engine.HASH_THRESHOLD = saved


# ---------------------------------------------------------------- results


def gx_check(table: str, planned: Planned, result: Any) -> CheckResult:
    """One GX result as a ``CheckResult``."""
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
        observed=jsonable(observed),
        source=GX_SOURCE,
    )


@dataclass
class Tally:
    """A per-row expectation's results over a table's batches, folded into one."""

    planned: Planned
    batches: int = 0
    success: bool = True
    error: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    examples: list[Any] | None = None
    other: dict[str, Any] = field(default_factory=dict)

    def add(self, result: Any) -> None:
        """Fold in one batch's GX result."""
        self.batches += 1
        error = _exception_message(result.exception_info)
        if error is not None:
            self.error = self.error or error
            return
        self.success = self.success and bool(result.success)
        found = result.result or {}
        for key in ("element_count", "missing_count", "unexpected_count"):
            if key in found:
                self.counts[key] = self.counts.get(key, 0) + int(found[key] or 0)
        if "partial_unexpected_list" in found:
            self.examples = (self.examples or []) + list(found["partial_unexpected_list"] or [])
            del self.examples[EXAMPLES:]
        for key in _OBSERVED_KEYS:
            if key in found and key not in _COUNT_KEYS and key != "partial_unexpected_list":
                self.other.setdefault(key, found[key])

    def state(self) -> dict[str, Any]:
        """What was folded so far, without the expectation (small, picklable, JSON-able)."""
        return {
            "batches": self.batches,
            "success": self.success,
            "error": self.error,
            "counts": dict(self.counts),
            "examples": None if self.examples is None else list(self.examples),
            "other": dict(self.other),
        }

    def merge(self, state: dict[str, Any]) -> None:
        """Fold in another tally's :meth:`state` (the next part's), as if its batches came here."""
        self.batches += state["batches"]
        if state["error"] is not None:
            self.error = self.error or state["error"]
        self.success = self.success and state["success"]
        for key, count in state["counts"].items():
            self.counts[key] = self.counts.get(key, 0) + count
        if state["examples"] is not None:
            self.examples = (self.examples or []) + list(state["examples"])
            del self.examples[EXAMPLES:]
        for key, value in state["other"].items():
            self.other.setdefault(key, value)

    def check(self, table: str) -> CheckResult:
        """The folded result: counts summed, percent and ``mostly`` judged on the totals."""
        if self.error is not None:
            return CheckResult(
                table, self.planned.check, self.planned.column, self.planned.kwargs,
                False, {"exception": self.error}, GX_SOURCE,
            )  # fmt: skip
        observed, considered = self._observed()
        return CheckResult(
            table=table,
            check=self.planned.check,
            column=self.planned.column,
            kwargs=self.planned.kwargs,
            success=self._success(considered),
            observed=jsonable(observed),
            source=GX_SOURCE,
        )

    def _observed(self) -> tuple[dict[str, Any], int]:
        """GX's map-expectation keys over the whole table, and how many values were considered."""
        observed: dict[str, Any] = dict(self.other)
        if "unexpected_count" not in self.counts:
            return observed, 0
        elements, unexpected = self.counts.get("element_count", 0), self.counts["unexpected_count"]
        # GX leaves nulls out of the denominator where it reports missing_count (not for not_null).
        considered = elements - self.counts.get("missing_count", 0)
        observed.update(element_count=elements, unexpected_count=unexpected)
        observed["unexpected_percent"] = unexpected_percent(unexpected, considered) if elements else None
        if self.examples is not None:
            observed["partial_unexpected_list"] = self.examples
        if "missing_count" in self.counts:
            observed["missing_count"] = self.counts["missing_count"]
        return observed, considered

    def _success(self, considered: int) -> bool:
        mostly = getattr(self.planned.expectation, "mostly", None)
        if self.batches <= 1 or not isinstance(mostly, (int, float)) or mostly >= 1 or not considered:
            return self.success
        # A null-rate (or any ``mostly``) verdict is on the whole table, not part by part.
        return (considered - self.counts["unexpected_count"]) / considered >= mostly


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


# ---------------------------------------------------------------- frames


def to_frame(arrow: pa.Table, nullable: set[str]) -> pd.DataFrame:
    """A NumPy-backed pandas frame; ``nullable`` columns get a dtype that holds nulls."""
    import pandas as pd

    return pd.DataFrame(
        {name: _to_series(arrow.column(name), name in nullable) for name in arrow.column_names},
        copy=False,
    )


def _to_series(column: pa.ChunkedArray, nullable: bool) -> pd.Series:
    """int64/float64/datetime64[ns]/bool, strings as pandas' default string dtype, else object."""
    import pandas as pd

    typ = column.type
    if pa.types.is_dictionary(typ):
        column, typ = pc.cast(column, typ.value_type), typ.value_type
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        # What pandas would infer from the Python strings, without making them first.
        return column.to_pandas()
    return pd.Series(_to_numpy(column, nullable or column.null_count > 0), copy=False)


def _to_numpy(column: pa.ChunkedArray, nullable: bool) -> np.ndarray:
    typ = column.type
    if pa.types.is_integer(typ) or pa.types.is_floating(typ):
        wide = pa.int64() if pa.types.is_integer(typ) and not nullable else pa.float64()
        return pc.cast(column, wide).to_numpy()
    if pa.types.is_timestamp(typ) or pa.types.is_date(typ):
        # GX only vectorises "between" on datetime64[ns]; [ms] goes row by row. Outside
        # 1677..2262 the cast fails: keep the unit, slower but right.
        with contextlib.suppress(pa.ArrowInvalid):
            column = pc.cast(column, pa.timestamp("ns", getattr(typ, "tz", None)))
        return column.to_numpy()
    if pa.types.is_boolean(typ) and not nullable:
        return column.to_numpy()
    array = column.to_numpy(zero_copy_only=False)
    return array if array.dtype == object else array.astype(object)
