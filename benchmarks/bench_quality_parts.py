"""Quality metrics by DuckDB in one process against counted part by part on a Dask cluster.

``registry create`` on a remote cluster (``tcp://``) whose workers wrote the parts into the
workspace measures quality there (``validators/quality_parts.py``): a task per part and a task per
bucket of hashes, merged by the client. This prints, for the three-table benchmark schema, the
wall time, the measuring process's CPU seconds and peak RSS, the workers' CPU seconds, and
whether the metrics are the same. Each measurement is a fresh process (medians of --runs); the
LocalCluster is started once per worker count, outside the timings, and reached by its address as
a remote cluster would be.

    python benchmarks/bench_quality_parts.py --scale 10 --workers 1 2 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SPEC = HERE / "specs" / "three_table.yaml"

_MEASURE = """
import json, resource, sys, time
from synthreg.generators.spec_io import apply_overrides, load_spec
from synthreg.validators.quality import table_quality
spec = apply_overrides(load_spec(sys.argv[1]), scale=float(sys.argv[2]))
cluster = sys.argv[4] if len(sys.argv) > 4 else None
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
wall, start = time.perf_counter(), cpu()
found = table_quality(spec, sys.argv[3], cluster)
print(json.dumps({
    "wall": time.perf_counter() - wall, "cpu": cpu() - start,
    "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "metrics": json.dumps(found, sort_keys=True),
}))
"""


def _measure(tables: Path, scale: float, cluster: str | None) -> dict:
    args = [sys.executable, "-c", _MEASURE, str(SPEC), str(scale), str(tables)] + (
        [cluster] if cluster else []
    )
    done = subprocess.run(args, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _workers_cpu(cluster: object) -> float:
    import psutil

    total = 0.0
    for worker in cluster.workers.values():  # type: ignore[attr-defined]
        process = getattr(worker, "process", None)
        pid = getattr(getattr(process, "process", None), "pid", None)
        if pid is not None:
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=10.0, help="three_table.yaml is 1M rows at scale 1")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from distributed import LocalCluster

    from synthreg.generators.engine import generate
    from synthreg.generators.spec_io import apply_overrides, load_spec

    spec = apply_overrides(load_spec(SPEC), scale=args.scale)
    with tempfile.TemporaryDirectory(prefix="bench-quality-parts-") as tmp:
        made = generate(spec, Path(tmp))
        tables = Path(tmp) / "tables"
        parts = {t: len(list((tables / t).glob("*.parquet"))) for t in spec.table_order()}
        rows = sum(made.rows.values())
        print(f"machine: {os.cpu_count()} cores; rows {rows:,}; parts {parts}; runs {args.runs}")
        print(
            f"{'config':<22}{'wall s':>9}{'client CPU-s':>14}{'client RSS MB':>15}{'workers CPU-s':>15}  same"
        )
        base = [_measure(tables, args.scale, None) for _ in range(args.runs)]
        _row("duckdb, this process", base, None, None)
        for workers in args.workers:
            with LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=40,
            ) as cluster:
                _measure(tables, args.scale, cluster.scheduler_address)  # workers import what they need
                runs, spent = [], []
                for _ in range(args.runs):
                    before = _workers_cpu(cluster)
                    runs.append(_measure(tables, args.scale, cluster.scheduler_address))
                    spent.append(_workers_cpu(cluster) - before)
            _row(f"by parts, {workers} worker(s)", runs, spent, base[0]["metrics"])


def _row(label: str, runs: list[dict], spent: list[float] | None, reference: str | None) -> None:
    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    workers = f"{statistics.median(spent):>15.2f}" if spent else f"{'':>15}"
    same = "" if reference is None else str(all(r["metrics"] == reference for r in runs))
    print(f"{label:<22}{med('wall'):>9.2f}{med('cpu'):>14.2f}{med('rss_mb'):>15.0f}{workers}  {same}")


if __name__ == "__main__":
    main()
