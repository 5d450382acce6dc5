"""Group constraints on a remote cluster: parts in a shared folder against parts staged in S3.

    python benchmarks/bench_staged_groups.py [--scale 2] [--repeat 3]

``specs/three_table_groups.yaml`` (x ``--scale`` million rows: a ``sum_limit`` cap on orders, a
``max_rows_per_group`` drop on payments) generated on a ``tcp://`` LocalCluster of 2 workers,
round-robin, medians:

- ``shared``: the workers write the parts to this machine's folder, the group rules' tasks read
  and write there;
- ``staged``: the workers upload their parts to S3 (moto's server, its own process, on loopback);
  the group rules' tasks read the staged parts, keep their pieces and the rewritten parts under
  the stage, and this process downloads the final parts and copies them into a DVC-style remote.

It prints the wall time, the time in ``group_rules.enforce``, the larger peak RSS of the two
workers (a fresh cluster per run), the S3 requests by method and the S3 server's CPU seconds
(``staged``), and checks that both give one content digest. On a small
machine moto, a Python server sharing the cores, is most of the ``staged`` overhead: read the
request counts as the figure that carries over to a real object store.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BUCKET = "bench-staged-groups"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mb() -> float:
    """This process's peak RSS in MB (run on each worker)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=2.0, help="millions of rows (default 2)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"
    )

    import boto3
    from distributed import Client, LocalCluster

    from synthreg.generators import group_rules
    from synthreg.generators.engine import generate
    from synthreg.generators.spec_io import apply_overrides, load_spec
    from synthreg.generators.staging import PartStage

    spent: dict[str, float] = collections.defaultdict(float)
    enforce = group_rules.enforce

    @functools.wraps(enforce)
    def timed(*a: Any, **k: Any) -> Any:
        started = time.perf_counter()
        try:
            return enforce(*a, **k)
        finally:
            spent["enforce"] += time.perf_counter() - started

    group_rules.enforce = timed  # type: ignore[assignment]
    spec = apply_overrides(load_spec(HERE / "specs" / "three_table_groups.yaml"), scale=args.scale)
    port = _port()
    work = Path(tempfile.mkdtemp(prefix="bench-staged-"))
    log = work / "moto.log"
    moto_server = str(Path(sys.executable).with_name("moto_server"))
    with open(log, "w") as out:
        server = subprocess.Popen([moto_server, "-H", "127.0.0.1", "-p", str(port)], stderr=out)
    endpoint = f"http://127.0.0.1:{port}"
    figures: dict[str, list[dict[str, Any]]] = {"shared": [], "staged": []}
    try:
        for _ in range(100):
            try:
                boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
                break
            except Exception:
                time.sleep(0.1)
        for rnd in range(args.repeat):
            for config in ("shared", "staged"):
                stage = None
                if config == "staged":
                    url = f"s3://{BUCKET}/run{rnd}"
                    stage = PartStage(f"{url}/staging", endpoint, remote=f"{url}/remote")
                # a cluster per run, so that its workers' peak RSS is this run's
                with (
                    LocalCluster(
                        n_workers=2,
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=None,
                        silence_logs=40,
                    ) as cluster,
                    Client(cluster) as client,
                ):
                    lines, cpu = len(log.read_text().splitlines()), _cpu_seconds(server.pid)
                    spent.clear()
                    out_dir = work / f"{config}-{rnd}"
                    started = time.perf_counter()
                    made = generate(spec, out_dir, cluster=cluster.scheduler_address, stage=stage)
                    wall = time.perf_counter() - started
                    worker_mb = max(client.run(_peak_rss_mb).values())
                requests = collections.Counter(
                    m.group(1)
                    for line in log.read_text().splitlines()[lines:]
                    if (m := re.search(r'"(GET|HEAD|PUT|POST|DELETE) ', line))
                )
                figures[config].append(
                    {
                        "wall": wall,
                        "enforce": spent["enforce"],
                        "worker_mb": worker_mb,
                        "requests": dict(requests),
                        "server_cpu": _cpu_seconds(server.pid) - cpu,
                        "digest": made.content_digest,
                        "rows": sum(made.rows.values()),
                    }
                )
                shutil.rmtree(out_dir)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    digests = {f["digest"] for runs in figures.values() for f in runs}
    assert len(digests) == 1, f"the configurations disagree: {digests}"
    rows = figures["shared"][0]["rows"]
    print(
        f"# bench_staged_groups: {rows:,} rows, medians of {args.repeat}, "
        f"tcp LocalCluster(2), {os.cpu_count()} cores"
    )
    print(
        "| config | wall s | enforce s | peak RSS per worker MB | S3 requests | by method | S3 server CPU s |"
    )
    print("|---|---|---|---|---|---|---|")
    for config, runs in figures.items():
        total = statistics.median(sum(r["requests"].values()) for r in runs)
        methods = " ".join(
            f"{m} {statistics.median(r['requests'].get(m, 0) for r in runs):g}"
            for m in ("GET", "HEAD", "PUT", "POST", "DELETE")
        )
        print(
            f"| {config} | {statistics.median(r['wall'] for r in runs):.2f} "
            f"| {statistics.median(r['enforce'] for r in runs):.2f} "
            f"| {statistics.median(r['worker_mb'] for r in runs):.0f} | {total:g} | {methods} "
            f"| {statistics.median(r['server_cpu'] for r in runs):.2f} |"
        )
    print(json.dumps({"content_digest": digests.pop()}))


if __name__ == "__main__":
    main()
