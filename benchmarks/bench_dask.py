"""The engine on a Dask LocalCluster of 1, 2, ... workers against the local process pool.

Prints, per configuration: wall seconds of ``generate`` (cluster start excluded: it is timed apart),
rows/s, the scaling efficiency against 1 worker, the sum and the largest of the workers' peak RSS,
and checks that every configuration gives the same content digest. Medians of --runs runs.

    python benchmarks/bench_dask.py --rows 20000000 --workers 1 2
    python benchmarks/bench_dask.py --rows 200000000 --workers 1 4 8 16     # a 16-core machine
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SPEC = {
    "description": "Three tables with foreign keys, for scaling runs.",
    "seed": 7,
    "tables": {
        "users": {
            "rows": 0.1,
            "primary_key": "user_id",
            "columns": {
                "user_id": {"type": "int"},
                "plan": {"type": "category", "values": {"free": 0.6, "pro": 0.3, "team": 0.1}},
                "age": {"type": "int", "distribution": {"kind": "normal", "mean": 35, "std": 9},
                        "min": 18, "max": 90},
                "signed_up_at": {"type": "datetime", "start": "2023-01-01", "end": "2024-12-31"},
            },
        },
        "orders": {
            "rows": 0.5,
            "primary_key": "order_id",
            "columns": {
                "order_id": {"type": "int"},
                "user_id": {"type": "int", "foreign_key": "users.user_id", "skew": 0.5},
                "amount": {"type": "float", "distribution": {"kind": "lognormal", "mean": 3, "sigma": 0.5},
                           "min": 1, "max": 500, "decimals": 2},
            },
        },
        "payments": {
            "rows": 0.4,
            "primary_key": "payment_id",
            "columns": {
                "payment_id": {"type": "int"},
                "order_id": {"type": "int", "foreign_key": "orders.order_id"},
                "method": {"type": "category", "values": {"card": 0.7, "paypal": 0.2, "wire": 0.1}},
            },
        },
    },
}  # fmt: skip


def spec_for(rows: int) -> object:
    from synthreg.generators.spec_io import parse_spec

    data = {**SPEC, "tables": {k: {**v, "rows": int(rows * v["rows"])} for k, v in SPEC["tables"].items()}}
    return parse_spec(data, "bench_dask.yaml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="where parts go (default: a temp dir)")
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    from synthreg.generators import engine

    spec = spec_for(args.rows)
    base = args.out or Path(tempfile.mkdtemp(prefix="bench-dask-"))
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, load {load:.2f}; rows {args.rows:,}; runs {args.runs}")
    rows: dict[str, tuple[float, float, float, str]] = {}
    for n in args.workers:
        times, peaks, digests = [], [], set()
        for label, cluster in ((f"pool {n}", None), (f"dask {n}", f"local:{n}")):
            times, peaks, digests = [], [], set()
            for run in range(args.runs):
                out = base / f"{label.replace(' ', '-')}-{run}"
                started = time.perf_counter()
                result = engine.generate(spec, out, workers=n, cluster=cluster)  # type: ignore[arg-type]
                times.append(time.perf_counter() - started)
                peaks.append(result.worker_peak_rss_mb)
                digests.add(result.content_digest)
                shutil.rmtree(out, ignore_errors=True)
            assert len(digests) == 1
            rows[label] = (
                statistics.median(times),
                statistics.median(peaks),
                peaks[-1] / max(n, 1),
                digests.pop(),
            )
    started = time.perf_counter()
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as c, Client(c):
        pass
    print(f"LocalCluster(1) start+stop: {time.perf_counter() - started:.1f} s (inside each dask row below)")
    one = {kind: rows[f"{kind} {args.workers[0]}"][0] * args.workers[0] for kind in ("pool", "dask")}
    print(f"{'config':<10}{'seconds':>9}{'rows/s':>14}{'efficiency':>12}{'workers MB':>12}{'per worker':>12}")
    for label, (seconds, peak, per, _digest) in rows.items():
        kind, n = label.split()
        eff = one[kind] / (seconds * int(n))
        print(f"{label:<10}{seconds:>9.2f}{args.rows / seconds:>14,.0f}{eff:>12.2f}{peak:>12.0f}{per:>12.0f}")
    digests = {d for *_, d in rows.values()}
    print(f"one content digest for every configuration: {len(digests) == 1} ({next(iter(digests))[:16]})")


if __name__ == "__main__":
    main()
