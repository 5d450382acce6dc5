"""The engine on a Dask LocalCluster of 1, 2, ... workers against the local process pool.

Configurations: ``pool N`` (the process pool; N=1 runs in this process), ``dask N`` (``--cluster
local:N``: a LocalCluster started and stopped by each run) and ``tcp N`` (a LocalCluster started
once, with Dask's defaults, and reached by its address as a remote cluster is). Prints, per
configuration: wall seconds of ``generate`` (for ``dask N`` with its cluster's start and stop;
the start of one is timed apart), rows/s, the scaling efficiency against the first worker count,
CPU seconds (``pool``: this process and the workers it reaped; ``tcp``: the workers'; none for
``dask``, whose workers are not reaped here), the sum and the largest of the workers' peak RSS,
and checks that every configuration gives the same content digest. Medians of --runs runs.

    python benchmarks/bench_dask.py --rows 20000000 --workers 1 2
    python benchmarks/bench_dask.py --rows 200000000 --workers 1 4 8 16     # a 16-core machine
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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
    rows: dict[str, tuple[float, float, float, str, float | None]] = {}

    def measure(label: str, n: int, cluster: str | None, workers_cpu: Any = None) -> None:
        times, peaks, digests, cpus = [], [], set(), []
        for run in range(args.runs):
            out = base / f"{label.replace(' ', '-')}-{run}"
            started, cpu = time.perf_counter(), workers_cpu() if workers_cpu else _cpu()
            result = engine.generate(spec, out, workers=n, cluster=cluster)  # type: ignore[arg-type]
            times.append(time.perf_counter() - started)
            cpus.append((workers_cpu() if workers_cpu else _cpu()) - cpu)
            peaks.append(result.worker_peak_rss_mb)
            digests.add(result.content_digest)
            shutil.rmtree(out, ignore_errors=True)
        assert len(digests) == 1
        cold = cluster is not None and cluster.startswith("local:")  # its workers' CPU is not seen
        rows[label] = (
            statistics.median(times),
            statistics.median(peaks),
            peaks[-1] / max(n, 1),
            digests.pop(),
            None if cold else statistics.median(cpus),
        )

    for n in args.workers:
        measure(f"pool {n}", n, None)
        measure(f"dask {n}", n, f"local:{n}")
    for n in args.workers:  # last: a LocalCluster made here leaves Dask's variables in os.environ
        with LocalCluster(n_workers=n, threads_per_worker=1, dashboard_address=None, silence_logs=40) as c:
            import psutil

            procs = [psutil.Process(w.process.process.pid) for w in c.workers.values()]
            measure(f"tcp {n}", n, c.scheduler_address, functools.partial(_workers_cpu, procs))
    started = time.perf_counter()
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as c, Client(c):
        pass
    print(f"LocalCluster(1) start+stop: {time.perf_counter() - started:.1f} s (inside each dask row below)")
    one = {kind: rows[f"{kind} {args.workers[0]}"][0] * args.workers[0] for kind in ("pool", "dask", "tcp")}
    print(
        f"{'config':<10}{'seconds':>9}{'rows/s':>14}{'efficiency':>12}{'CPU s':>8}{'workers MB':>12}"
        f"{'per worker':>12}"
    )
    for label, (seconds, peak, per, _digest, cpu) in rows.items():
        kind, n = label.split()
        eff = one[kind] / (seconds * int(n))
        print(
            f"{label:<10}{seconds:>9.2f}{args.rows / seconds:>14,.0f}{eff:>12.2f}"
            f"{'' if cpu is None else f'{cpu:.2f}':>8}{peak:>12.0f}"
            f"{per:>12.0f}"
        )
    digests = {row[3] for row in rows.values()}
    print(f"one content digest for every configuration: {len(digests) == 1} ({next(iter(digests))[:16]})")


def _workers_cpu(procs: list[Any]) -> float:
    """User + system CPU seconds of running worker processes (psutil)."""
    return sum(p.cpu_times().user + p.cpu_times().system for p in procs)


def _cpu() -> float:
    """User + system CPU seconds of this process and of the children it has reaped."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


if __name__ == "__main__":
    main()
