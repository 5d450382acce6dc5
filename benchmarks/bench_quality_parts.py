"""Quality metrics by DuckDB in one process against counted part by part on a Dask cluster.

``registry create`` on a remote cluster (``tcp://``) whose workers write the parts into the
workspace measures quality there (``validators/quality_parts.py``): each generation task counts
the part it has just written (``QualityObserver``), a task per bucket of hashes counts what must
be distinct, and the client merges. This prints, for the three-table benchmark schema:

- ``duckdb``: the metrics by DuckDB over the whole tables in the measuring process;
- ``by parts``: generated on the cluster, then counted by a task per part (which reads it again)
  and a task per bucket;
- ``as written``: generated on the cluster with the counting in the generation tasks, then a
  task per bucket;
- with ``--staged``, the parts staged in S3 (moto's server on loopback, a Python server sharing
  the cores): ``staged, duckdb here`` (the client measures its downloaded copies, as for a table
  rewritten after the engine) against ``staged, as written`` (split objects beside the stage,
  bucket tasks reading their byte ranges).

For each: the generation's wall time (on the cluster), the quality step's wall time, the measuring
process's CPU seconds and peak RSS in that step, the workers' CPU seconds over generation and
quality together, the split files' (or objects') bytes per row when counted as written, and
whether the metrics are DuckDB's. Each measurement is a fresh process
(medians of --runs); the LocalCluster is started once per worker count, outside the timings, and
reached by its address as a remote cluster would be.

    python benchmarks/bench_quality_parts.py --scale 10 --workers 1 2 --runs 3 --staged
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
import json, resource, shutil, sys, time
from pathlib import Path
from synthreg.generators.engine import Observers, generate, observed_by
from synthreg.generators.spec_io import apply_overrides, load_spec
from synthreg.generators.staging import PartStage
from synthreg.validators.quality import table_quality
from synthreg.validators.quality_parts import QualityObserver
spec = apply_overrides(load_spec(sys.argv[1]), scale=float(sys.argv[2]))
out, mode = Path(sys.argv[3]), sys.argv[4]
cluster = (sys.argv[5] or None) if len(sys.argv) > 5 else None
endpoint = sys.argv[6] if len(sys.argv) > 6 else None
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
staged = mode.startswith("staged")
stage = PartStage(f"s3://bench-quality-parts/{out.name}/staging", endpoint) if staged else None
splits = PartStage(f"s3://bench-quality-parts/{out.name}/staging-quality", endpoint) if staged else None
written = mode.endswith("as written")
gen_s, observed, split_bytes, rows = 0.0, None, 0, 0
if mode != "duckdb":
    hot = QualityObserver(spec, None, splits) if staged else QualityObserver(spec, out / ".quality")
    observe = Observers(hot) if written else None
    wall = time.perf_counter()
    made = generate(spec, out, cluster=cluster, observe=observe, stage=stage)
    gen_s = time.perf_counter() - wall
    observed = observed_by(made.observed, 0) if observe else None
    rows = sum(made.rows.values())
    if written and splits is not None:  # the split objects, as the bucket tasks will read them
        import pyarrow.fs as pafs
        found = splits.filesystem().get_file_info(pafs.FileSelector(splits.root, recursive=True))
        split_bytes = sum(f.size for f in found if f.type == pafs.FileType.File)
    elif written:
        split_bytes = sum(f.stat().st_size for f in (out / ".quality").rglob("*") if f.is_file())
wall, start = time.perf_counter(), cpu()
if mode == "staged, duckdb here":
    found = table_quality(spec, out / "tables")
else:
    found = table_quality(spec, out / "tables", cluster, observed=observed, stage=splits if written else None)
quality_s, quality_cpu = time.perf_counter() - wall, cpu() - start
if splits is not None:
    splits.clear()
if mode != "duckdb":
    shutil.rmtree(out)
print(json.dumps({
    "gen": gen_s, "wall": quality_s, "cpu": quality_cpu, "split_per_row": split_bytes / rows if rows else 0,
    "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "metrics": json.dumps(found, sort_keys=True),
}))
"""


def _measure(out: Path, scale: float, mode: str, cluster: str | None, endpoint: str | None = None) -> dict:
    extra = [cluster or ""] + ([endpoint] if endpoint else [])
    args = [sys.executable, "-c", _MEASURE, str(SPEC), str(scale), str(out), mode, *extra]
    done = subprocess.run(args, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _moto() -> str:
    """moto's S3 server on a free loopback port, with the bucket (stopped when this process ends);
    its test credentials go into the environment, which the LocalCluster's workers inherit."""
    import atexit
    import socket
    import time

    import boto3

    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    atexit.register(server.terminate)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench-quality-parts")
            return endpoint
        except Exception:
            time.sleep(0.1)
    raise SystemExit(f"moto_server did not answer on {endpoint}")


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
    parser.add_argument(
        "--staged",
        action="store_true",
        help="also with parts staged in S3 (moto's server on loopback): DuckDB here over the "
        "downloaded copies against counted as written",
    )
    args = parser.parse_args()
    endpoint = _moto() if args.staged else None

    from distributed import LocalCluster

    from synthreg.generators.engine import generate
    from synthreg.generators.spec_io import apply_overrides, load_spec

    spec = apply_overrides(load_spec(SPEC), scale=args.scale)
    with tempfile.TemporaryDirectory(prefix="bench-quality-parts-") as tmp:
        made = generate(spec, Path(tmp) / "pool")
        tables = Path(tmp) / "pool" / "tables"
        parts = {t: len(list((tables / t).glob("*.parquet"))) for t in spec.table_order()}
        rows = sum(made.rows.values())
        print(f"machine: {os.cpu_count()} cores; rows {rows:,}; parts {parts}; runs {args.runs}")
        print(
            f"{'config':<34}{'generate s':>11}{'quality s':>10}{'client CPU-s':>14}{'client RSS MB':>15}"
            f"{'workers CPU-s':>15}{'split B/row':>12}  same"
        )
        base = [_measure(Path(tmp) / "pool", args.scale, "duckdb", None) for _ in range(args.runs)]
        _row("duckdb, this process", base, None, None)
        for workers in args.workers:
            before = set(os.environ)
            with LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=40,
            ) as cluster:
                address = cluster.scheduler_address
                for name in set(os.environ) - before:  # Dask's nanny set its pre-spawn variables here
                    del os.environ[name]  # too (MALLOC_TRIM_THRESHOLD_): not for the measuring processes
                _measure(Path(tmp) / "warm-up", args.scale, "as written", address)  # workers import all
                modes = ["by parts", "as written"]
                modes += ["staged, duckdb here", "staged, as written"] if endpoint else []
                runs: dict[str, list[dict]] = {mode: [] for mode in modes}
                spent: dict[str, list[float]] = {mode: [] for mode in modes}
                for i in range(args.runs):
                    for n, mode in enumerate(modes):  # round-robin
                        before = _workers_cpu(cluster)
                        out = Path(tmp) / f"run-{workers}-{i}-{n}"
                        runs[mode].append(_measure(out, args.scale, mode, address, endpoint))
                        spent[mode].append(_workers_cpu(cluster) - before)
            for mode in runs:
                _row(f"{mode}, {workers} worker(s)", runs[mode], spent[mode], base[0]["metrics"])


def _row(label: str, runs: list[dict], spent: list[float] | None, reference: str | None) -> None:
    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    gen = f"{med('gen'):>11.2f}" if reference is not None else f"{'':>11}"
    workers = f"{statistics.median(spent):>15.2f}" if spent else f"{'':>15}"
    same = "" if reference is None else str(all(r["metrics"] == reference for r in runs))
    split = f"{med('split_per_row'):>12.1f}" if med("split_per_row") else f"{'':>12}"
    client = f"{med('wall'):>10.2f}{med('cpu'):>14.2f}{med('rss_mb'):>15.0f}"
    print(f"{label:<34}{gen}{client}{workers}{split}  {same}")


if __name__ == "__main__":
    main()
