"""synthreg vs Misata, side by side, in one run (issue 3's benchmark).

Both tools run as whole processes (interpreter start, imports, generation, Parquet
write), on the same schemas (benchmarks/specs/ for synthreg, the same tables and
columns described to Misata by benchmarks/peer_misata.py). synthreg's peak RSS is
the sum of PSS over its process tree (parent + workers; PSS splits pages the forked
workers share), polled with psutil; Misata runs in one process and is measured with
/usr/bin/time -v (peak RSS).

    python benchmarks/bench_vs_misata.py                 # the full set (~10 minutes)
    python benchmarks/bench_vs_misata.py --quick         # 1M rows only, no 100M, no registry path
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peer_misata import format_table, run_misata  # noqa: E402

SPECS = HERE / "specs"
MISATA_BEST_BATCH = 100_000

_CHILD = """
import json, sys, time, pathlib
t0 = time.perf_counter()
from synthreg.generators.spec_io import load_spec, apply_overrides
from synthreg.generators.engine import generate
spec = load_spec(sys.argv[1])
spec = apply_overrides(spec, scale=float(sys.argv[3]) / spec.total_rows)
result = generate(spec, pathlib.Path(sys.argv[2]), workers=int(sys.argv[4]))
print(json.dumps({"rows": sum(result.rows.values()), "engine_s": result.seconds,
                  "digest": result.content_digest}))
"""


def _memory(proc: Any) -> int:
    """PSS where the kernel reports it (forked workers share pages: RSS would count them twice)."""
    try:
        return int(proc.memory_full_info().pss)
    except (AttributeError, OSError):
        return int(proc.memory_info().rss)


def _tree_peak(cmd: list[str], log: Path) -> tuple[int, float, float]:
    """Run ``cmd``; return (exit code, wall seconds, peak memory MB summed over its process tree)."""
    import psutil

    peak = 0
    start = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        watched = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                tree = [watched, *watched.children(recursive=True)]
                peak = max(peak, sum(_memory(p) for p in tree))
            except psutil.Error:
                pass
            time.sleep(0.01)
    return proc.returncode, time.perf_counter() - start, peak / 2**20


def run_synthreg(schema: str, total_rows: int, workers: int) -> dict[str, Any]:
    """synthreg's engine as a whole process; rows counted from the written files."""
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(prefix="synthreg-bench-") as tmp:
        out, log = Path(tmp) / "out", Path(tmp) / "log.txt"
        cmd = [
            sys.executable,
            "-c",
            _CHILD,
            str(SPECS / f"{schema}.yaml"),
            str(out),
            str(total_rows),
            str(workers),
        ]
        code, wall, peak = _tree_peak(cmd, log)
        text = log.read_text()
        if code != 0:
            raise RuntimeError(f"synthreg failed:\n{text[-3000:]}")
        info = json.loads(text.strip().splitlines()[-1])
        files = sorted(out.rglob("*.parquet"))
        rows = sum(pq.ParquetFile(p).metadata.num_rows for p in files)
        size = sum(p.stat().st_size for p in files)
    return {
        "tool": "synthreg",
        "version": _version(),
        "schema": schema,
        "rows": rows,
        "wall_s": wall,
        "rows_per_s": rows / wall,
        "peak_rss_mb": peak,
        "batch_size": None,
        "workers": workers,
        "engine_s": info["engine_s"],
        "bytes": size,
        "digest": info["digest"],
    }


def _version() -> str:
    import synthreg

    return synthreg.__version__


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median run by wall time, with every wall time kept."""
    ordered = sorted(runs, key=lambda r: r["wall_s"])
    best = dict(ordered[len(ordered) // 2])
    best["wall_s_all"] = [round(r["wall_s"], 3) for r in runs]
    best["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    return best


def run_registry(total_rows: int) -> dict[str, Any]:
    """``registry init`` + ``registry create`` end to end (validation, DVC, MLflow, git)."""
    with tempfile.TemporaryDirectory(prefix="synthreg-reg-") as tmp:
        root = Path(tmp) / "ws"
        registry = [sys.executable, "-m", "synthreg"]
        subprocess.run([*registry, "init", str(root)], check=True, capture_output=True)
        log = Path(tmp) / "create.log"
        cmd = [
            *registry,
            "-C",
            str(root),
            "create",
            "bench",
            "--spec",
            str(SPECS / "three_table.yaml"),
            "--scale",
            str(total_rows / 1_000_000),
            "--json",
        ]
        code, wall, peak = _tree_peak(cmd, log)
        text = log.read_text()
        if code != 0:
            raise RuntimeError(f"registry create failed:\n{text[-3000:]}")
        data = json.loads(text[text.index("{") :])
    rows = sum(data["rows"].values())
    return {
        "tool": "synthreg create",
        "schema": "three_table",
        "rows": rows,
        "wall_s": wall,
        "rows_per_s": rows / wall,
        "peak_rss_mb": peak,
        "timings": data["timings"],
        "status": data["status"],
        "batch_size": None,
        "version": _version(),
    }


def _ratio(ours: dict[str, Any], peer: dict[str, Any]) -> str:
    speed = ours["rows_per_s"] / peer["rows_per_s"]
    memory = ours["peak_rss_mb"] / peer["peak_rss_mb"]
    return (
        f"{ours['schema']} {ours['rows']:,} rows: synthreg is {speed:.1f}x faster than Misata "
        f"(batch {peer['batch_size']:,}) with {memory:.2f}x its peak RSS"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1M rows only")
    parser.add_argument("--repeat", type=int, default=3, help="synthreg runs per case (median)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, default=HERE / ".cache" / "bench_vs_misata.json")
    args = parser.parse_args(argv)
    sizes = [1_000_000] if args.quick else [1_000_000, 10_000_000]
    results: list[dict[str, Any]] = []
    ratios: list[str] = []
    with tempfile.TemporaryDirectory(prefix="misata-out-") as mtmp:
        cases = [("three_table", n) for n in sizes] + [("people", 1_000_000)]
        for schema, rows in cases:
            ours = median_run([run_synthreg(schema, rows, args.workers) for _ in range(args.repeat)])
            default = run_misata(schema, rows, out_dir=Path(mtmp) / "d")
            results += [ours, default]
            ratios.append(_ratio(ours, default))
            if schema == "three_table":
                best = run_misata(schema, rows, batch_size=MISATA_BEST_BATCH, out_dir=Path(mtmp) / "b")
                results.append(best)
                ratios.append(_ratio(ours, best))
            print(format_table(results[-3:]), flush=True)
    if not args.quick:
        results.append(median_run([run_synthreg("three_table", 100_000_000, args.workers)]))
        results.append(run_registry(10_000_000))
    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(format_table(results))
    print()
    for line in ratios:
        print(line)
    for r in results:
        if r["tool"] == "synthreg create":
            engine = next(
                x
                for x in results
                if x["tool"] == "synthreg" and x["rows"] == r["rows"] and x["schema"] == "three_table"
            )
            print(
                f"registry create at {r['rows']:,} rows: {r['wall_s']:.1f}s wall, "
                f"{r['wall_s'] / engine['wall_s']:.2f}x the engine alone; "
                + ", ".join(f"{k} {v:.1f}s" for k, v in r["timings"].items())
            )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(
        f"\nfigures written to {args.json}; medians of {args.repeat} synthreg runs",
        "(all wall times in wall_s_all); Misata once per case.",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
