"""A bounded load test of ``registry serve`` on loopback: N readers and M writers for T seconds.

Readers loop over GET /api/datasets, /api/versions/small and a preview page; writers each submit a
create job through the API and wait for it, in a loop. Prints p50/p90/p99 latency per kind of
request, errors, requests/s, and checks that no version was lost or duplicated (numbers 1..n with n
= versions before + jobs that succeeded, audit verify passes).

    python benchmarks/bench_serve.py                 # 50 readers, 4 writers, 60 s
    python benchmarks/bench_serve.py --quick         # 10 readers, 2 writers, 15 s

Everything runs on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

SPEC = """
description: Load-test spec.
seed: 3
tables:
  users:
    rows: 2000
    primary_key: user_id
    columns:
      user_id: {type: int}
      plan: {type: category, values: {free: 0.6, pro: 0.4}}
      age: {type: int, distribution: {kind: normal, mean: 35, std: 9}, min: 18, max: 90}
"""


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def reader(
    client: object, url: str, headers: dict[str, str], stop: float, lat: dict, errors: list
) -> None:
    paths = {
        "list": "/api/datasets",
        "show": "/api/versions/small@v1",
        "preview": "/api/versions/small@v1/preview?table=users&offset=100&limit=50",
    }
    i = 0
    while time.monotonic() < stop:
        kind = list(paths)[i % 3]
        i += 1
        started = time.perf_counter()
        try:
            response = await client.get(url + paths[kind], headers=headers)  # type: ignore[attr-defined]
            ok = response.status_code == 200
        except Exception as exc:
            ok, response = False, exc
        lat.setdefault(kind, []).append(time.perf_counter() - started)
        if not ok:
            what = getattr(response, "status_code", None) or type(response).__name__
            errors.append(f"{kind}: {what}")


async def writer(
    client: object, url: str, headers: dict[str, str], stop: float, lat: dict, outcome: list
) -> None:
    seed = 1000 * (len(outcome) + 1)
    while time.monotonic() < stop:
        seed += 1
        started = time.perf_counter()
        response = await client.post(  # type: ignore[attr-defined]
            f"{url}/api/datasets/small/versions", json={"spec": SPEC, "seed": seed}, headers=headers
        )
        lat.setdefault("create-submit", []).append(time.perf_counter() - started)
        job = response.json()
        while job["state"] in ("queued", "running"):
            await asyncio.sleep(0.25)
            job = (await client.get(f"{url}/api/jobs/{job['id']}", headers=headers)).json()  # type: ignore[attr-defined]
        lat.setdefault("create-job", []).append(time.perf_counter() - started)
        outcome.append(job["state"])


async def load(url: str, token: str, readers: int, writers: int, seconds: float) -> tuple[dict, list, list]:
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    lat: dict[str, list[float]] = {}
    errors: list[str] = []
    outcome: list[str] = []
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=readers + writers + 4)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        await asyncio.gather(
            *(reader(client, url, headers, stop, lat, errors) for _ in range(readers)),
            *(writer(client, url, headers, stop, lat, outcome) for _ in range(writers)),
        )
    return lat, errors, outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=50)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--jobs", type=int, default=2, help="registry serve --workers")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.readers, args.writers, args.seconds = 10, 2, 15
    os.environ.setdefault("SYNTHREG_MLFLOW_TRACKING_URI", "")
    from team_servers import free_port

    import synthreg
    from synthreg.registry.tokens import create_token

    base = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    os.environ["SYNTHREG_MLFLOW_TRACKING_URI"] = f"sqlite:///{base}/mlflow.db"
    (base / "spec.yaml").write_text(SPEC)
    reg = synthreg.init(base / "ws")
    reg.create("small", spec=base / "spec.yaml")
    _, token = create_token(reg.workspace, "bench", "admin")
    port = free_port()
    log = open(base / "serve.log", "w")  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-m", "synthreg", "-C", str(base / "ws"), "serve", "--port", str(port),
         "--workers", str(args.jobs)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        for _ in range(200):
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
        shape = f"{args.readers} readers, {args.writers} writers, {args.seconds:.0f} s"
        print(f"load: {shape}, serve --workers {args.jobs}")
        started = time.perf_counter()
        lat, errors, outcome = asyncio.run(load(url, token, args.readers, args.writers, args.seconds))
        wall = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
    print(f"{'request':<15}{'n':>7}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}")
    for kind, values in sorted(lat.items()):
        print(f"{kind:<15}{len(values):>7}{1000 * pct(values, .5):>10.1f}{1000 * pct(values, .9):>10.1f}"
              f"{1000 * pct(values, .99):>10.1f}")  # fmt: skip
    reads = sum(len(lat.get(k, [])) for k in ("list", "show", "preview"))
    print(f"reads/s {reads / wall:.0f}; errors {len(errors)} {sorted(set(errors))[:5]}")
    print(f"jobs: {dict((s, outcome.count(s)) for s in sorted(set(outcome)))}")
    reg = synthreg.open(base / "ws")
    numbers = [v["version"] for v in reg.show("small@v1")["versions"]]
    expected = 1 + outcome.count("succeeded")
    intact = reg.verify_audit().ok
    lost_or_dup = numbers != list(range(1, expected + 1))
    print(f"versions: {len(numbers)} (expected {expected}); lost or duplicate: {lost_or_dup}")
    print(f"audit verify: {intact}")
    summary = {"wall_s": wall, "reads_per_s": reads / wall, "errors": len(errors), "versions": len(numbers),
               "lost_or_duplicate": lost_or_dup, "audit_ok": intact,
               "p50_ms": {k: 1000 * statistics.median(v) for k, v in lat.items()},
               "p99_ms": {k: 1000 * pct(v, .99) for k, v in lat.items()}}  # fmt: skip
    print(json.dumps(summary))
    if lost_or_dup or not intact:
        sys.exit(1)


if __name__ == "__main__":
    main()
