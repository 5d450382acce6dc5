"""What one Great Expectations run costs, whatever the rows, and what validation costs in all.

    python benchmarks/bench_gx_runs.py [--rows 10000000] [--repeat 7]

Part 1, one run of the orders table's per-row suite (8 expectations) on a 1,000-row frame (GX's
own bookkeeping: graphs, configurations, results) and on one validation batch (~1.3M rows),
medians of ``--repeat`` runs, three ways:

- ``definition``: a ``ValidationDefinition`` in the context, ``run`` (how ``GxSuite`` ran GX
  before 2026-12-05: it also checks the suite is saved and serialises the result into the
  context's results store);
- ``batch``: ``Batch.validate`` of the same suite;
- ``synthreg``: ``GxSuite.run`` (``Batch.validate`` inside ``memo_configurations``).

Part 2, ``validate_tables`` over the three-table schema at ``--rows`` (generated once, 2
workers), round-robin: ``synthreg`` as it is, and ``definition`` (the same with ``GxSuite.run``
put back the old way for the run); wall and CPU seconds, medians, and one result for both.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SPEC = ROOT / "benchmarks" / "specs" / "three_table.yaml"


def _median_ms(run: Callable[[], Any], repeat: int) -> float:
    run()  # warm: first-use imports and caches
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def _definition_run(suite: Any) -> Callable[[Any], list[Any]]:
    """``GxSuite.run`` as it was: a ValidationDefinition per suite, ``run`` on each frame."""
    import great_expectations as gx

    definition = suite.batch.data_asset.datasource.data_context.validation_definitions.add(
        gx.ValidationDefinition(data=suite.batch, suite=suite.suite, name=f"{suite.suite.name}.definition")
    )

    def run(frame: Any) -> list[Any]:
        result = definition.run(batch_parameters={"dataframe": frame}, result_format="BASIC")
        by_id = {r.expectation_config.id: r for r in result.results}
        return [by_id[p.expectation.id] for p in suite.planned]

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    from synthreg.generators.engine import generate
    from synthreg.generators.spec_io import apply_overrides, load_spec
    from synthreg.validators import gx_runner
    from synthreg.validators.gx_runner import GxRunner, GxSuite, no_fingerprint, to_frame
    from synthreg.validators.parts import open_parts
    from synthreg.validators.plan import BATCH, spec_plan
    from synthreg.validators.suite import validate_tables

    spec = apply_overrides(load_spec(str(SPEC)), scale=args.rows / 1_000_000)
    base = Path(tempfile.mkdtemp(prefix="bench-gx-"))
    try:
        generate(spec, base, workers=2)
        tables = base / "tables"
        print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; rows {args.rows:,}")

        parts = open_parts(tables, "orders")
        planned = [p for p in spec_plan(spec.tables["orders"]) if p.scope == BATCH]
        suite = GxRunner().suite("orders.rows", planned)
        old = _definition_run(suite)
        big = to_frame(next(parts.batches(parts.columns)), parts.nullable())
        frames = {"1,000 rows": big.iloc[:1000].copy(), f"{len(big):,} rows": big}
        ways: dict[str, Callable[[Any], Any]] = {
            "definition": old,
            "batch": lambda f: suite.batch.get_batch(batch_parameters={"dataframe": f}).validate(
                suite.suite, result_format="BASIC"
            ),
            "synthreg": suite.run,
        }
        print(f"\none GX run of orders' per-row suite ({len(planned)} expectations), median ms")
        print(f"{'frame':>16}" + "".join(f"{w:>12}" for w in ways) + f"{'x definition':>14}")
        with no_fingerprint():
            for label, frame in frames.items():
                ms = {
                    w: _median_ms(lambda run=run, frame=frame: run(frame), args.repeat)
                    for w, run in ways.items()
                }
                row = "".join(f"{v:>12.1f}" for v in ms.values())
                print(f"{label:>16}{row}{ms['definition'] / ms['synthreg']:>13.2f}x")

        real_run = GxSuite.run
        olds: dict[int, Callable[[Any], list[Any]]] = {}

        def definition_way(self: GxSuite, frame: Any) -> list[Any]:
            if id(self) not in olds:
                olds[id(self)] = _definition_run(self)
            return olds[id(self)](frame)

        wall: dict[str, list[float]] = {"synthreg": [], "definition": []}
        cpu: dict[str, list[float]] = {"synthreg": [], "definition": []}
        results: dict[str, Any] = {}
        for _ in range(max(3, args.repeat // 2)):
            for way in wall:
                gx_runner.GxSuite.run = definition_way if way == "definition" else real_run  # type: ignore[method-assign]
                olds.clear()
                started, cpu_started = time.perf_counter(), time.process_time()
                result = validate_tables(spec, tables, source=spec.source).to_dict()
                wall[way].append(time.perf_counter() - started)
                cpu[way].append(time.process_time() - cpu_started)
                result.pop("seconds", None)
                results.setdefault(way, result)
        gx_runner.GxSuite.run = real_run  # type: ignore[method-assign]
        print(f"\nvalidate_tables, {args.rows:,} rows, medians of {len(wall['synthreg'])} round-robin runs")
        print(f"{'way':>12}{'wall s':>9}{'cpu s':>9}")
        for way in wall:
            print(f"{way:>12}{statistics.median(wall[way]):>9.2f}{statistics.median(cpu[way]):>9.2f}")
        ratio = statistics.median(wall["definition"]) / statistics.median(wall["synthreg"])
        same = results["synthreg"] == results["definition"]
        print(f"definition / synthreg wall: {ratio:.2f}x; same result: {same}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
