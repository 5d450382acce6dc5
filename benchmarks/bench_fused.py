"""Validation fused into the generation workers against validation after generation, at 1..N workers.

Per worker count, on the process pool (GX imported in the parent first, so forked workers
inherit it, as in the warm server):

- ``engine``: ``generate`` alone;
- ``after``: ``generate``, then ``validate_tables`` reading every part in this process (what
  ``create`` does by default on one machine);
- ``fused``: ``generate`` with a ``fused.PartValidator`` (each worker runs the table's per-row
  GX suite on the part it just wrote), then ``validate_tables(from_parts=...)``, which merges
  the workers' tallies and runs only the whole-table checks here.

Prints the medians of wall seconds, rows/s end to end and the speed-up of fused over after, and
checks that both give the same validation result (every check, every observed value).

    python benchmarks/bench_fused.py --rows 10000000 --workers 1 2
    python benchmarks/bench_fused.py --rows 50000000 --workers 1 4 8 16 --runs 1   # 16 cores
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SPEC = ROOT / "benchmarks" / "specs" / "three_table.yaml"


def _without_seconds(result: Any) -> dict[str, Any]:
    data = result.to_dict()
    data.pop("seconds", None)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="where parts go (default: a temp dir)")
    args = parser.parse_args()

    import great_expectations  # noqa: F401  (the forked workers inherit it)

    from synthreg.generators.engine import generate
    from synthreg.generators.spec_io import apply_overrides, load_spec
    from synthreg.validators.fused import PartValidator
    from synthreg.validators.suite import validate_tables

    spec = apply_overrides(load_spec(str(SPEC)), scale=args.rows / 1_000_000)
    base = args.out or Path(tempfile.mkdtemp(prefix="bench-fused-"))
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, load {load:.2f}; rows {args.rows:,}; runs {args.runs}")
    table: dict[tuple[int, str], list[float]] = {}
    parts: dict[tuple[int, str], list[float]] = {}
    same = True
    for n in args.workers:
        for run in range(args.runs):
            results = {}
            for mode in ("engine", "after", "fused"):
                out = base / f"{mode}-{n}-{run}"
                started = time.perf_counter()
                observe = PartValidator(spec, spec.source) if mode == "fused" else None
                gen = generate(spec, out, workers=n, observe=observe)
                generated = time.perf_counter() - started
                if mode != "engine":
                    from_parts = gen.observed if mode == "fused" else None
                    results[mode] = validate_tables(
                        spec, out / "tables", source=spec.source, from_parts=from_parts
                    )
                table.setdefault((n, mode), []).append(time.perf_counter() - started)
                parts.setdefault((n, mode), []).append(generated)
                shutil.rmtree(out, ignore_errors=True)
            same = same and _without_seconds(results["after"]) == _without_seconds(results["fused"])
    print(f"{'workers':>7} {'mode':<7}{'wall s':>9}{'generate s':>12}{'rows/s':>14}{'fused vs after':>16}")
    for (n, mode), times in table.items():
        wall = statistics.median(times)
        gen_s = statistics.median(parts[(n, mode)])
        ratio = statistics.median(table[(n, "after")]) / wall if mode == "fused" else None
        extra = f"{ratio:>15.2f}x" if ratio else ""
        print(f"{n:>7} {mode:<7}{wall:>9.2f}{gen_s:>12.2f}{args.rows / wall:>14,.0f}{extra}")
    print(f"fused and after give the same validation result: {same}")


if __name__ == "__main__":
    main()
