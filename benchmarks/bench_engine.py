"""Engine throughput: rows/s, wall time and peak RSS of synthreg's generator alone.

Each measurement runs in a fresh subprocess so peak RSS is that run's own.

    python benchmarks/bench_engine.py --schema three_table --total-rows 1000000 --repeat 3
    python benchmarks/bench_engine.py --json build/bench.json        # what `dvc repro bench` runs
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPECS = HERE / "specs"

_CHILD = """
import json, resource, sys, time, pathlib
from synthreg.generators.spec_io import load_spec, apply_overrides
from synthreg.generators.engine import generate
spec = load_spec(sys.argv[1])
scale = float(sys.argv[3]) / spec.total_rows
spec = apply_overrides(spec, scale=scale)
start = time.perf_counter()
result = generate(spec, pathlib.Path(sys.argv[2]), **json.loads(sys.argv[4]))
wall = time.perf_counter() - start
rows = sum(result.rows.values())
print(json.dumps({"rows": rows, "wall_s": wall, "rows_per_s": rows / wall,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "digest": result.content_digest, "params": result.params}))
"""


def run_once(
    schema: str, total_rows: int, engine_kwargs: dict[str, object] | None = None
) -> dict[str, object]:
    """Generate ``schema`` at ``total_rows`` in a subprocess; return its figures."""
    with tempfile.TemporaryDirectory(prefix="synthreg-bench-") as out:
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                _CHILD,
                str(SPECS / f"{schema}.yaml"),
                out,
                str(total_rows),
                json.dumps(engine_kwargs or {}),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
        result["bytes"] = sum(p.stat().st_size for p in Path(out).rglob("*.parquet"))
    result.update(tool="synthreg", schema=schema)
    return result


def median_of(runs: list[dict[str, object]]) -> dict[str, object]:
    """The run with the median rows/s, plus the spread."""
    ordered = sorted(runs, key=lambda r: float(r["rows_per_s"]))  # type: ignore[arg-type]
    mid = dict(ordered[len(ordered) // 2])
    mid["runs"] = len(runs)
    mid["rows_per_s_all"] = [round(float(r["rows_per_s"])) for r in runs]  # type: ignore[arg-type]
    mid["peak_rss_mb_max"] = max(float(r["peak_rss_mb"]) for r in runs)  # type: ignore[arg-type]
    return mid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schema", default="three_table", choices=["three_table", "people"])
    parser.add_argument("--total-rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    result = median_of([run_once(args.schema, args.total_rows) for _ in range(args.repeat)])
    print(f"{'schema':<12} {'rows':>12} {'wall s':>8} {'rows/s':>12} {'peak RSS MB':>12}")
    print(
        f"{args.schema:<12} {result['rows']:>12,} {float(result['wall_s']):>8.2f} "  # type: ignore[arg-type]
        f"{float(result['rows_per_s']):>12,.0f} {float(result['peak_rss_mb']):>12.0f}"
    )  # type: ignore[arg-type]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        metrics = {k: result[k] for k in ("rows", "wall_s", "rows_per_s", "peak_rss_mb", "bytes")}
        args.json.write_text(json.dumps({"engine": {args.schema: metrics}}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
