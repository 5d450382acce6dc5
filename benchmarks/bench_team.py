"""The team backends under load, and beside the embedded ones (prints figures; not a test).

a) Concurrency on PostgreSQL: one workspace on the team backends (PostgreSQL 15, moto's S3 server,
   ``mlflow server``), W writer processes running ``registry -C WS create NAME --spec SPEC --seed K``
   until C creates in all, over 3 dataset names. Then: version numbers per dataset are exactly 1..n
   with n = successful creates, every create exited 0, ``audit verify`` and ``doctor`` pass, the
   audit log holds one create event per version and git is clean.
b) The same on an embedded workspace (SQLite, local DVC remote, MLflow DB).
c) Latency, embedded vs team: median and p90 wall time of ``registry create`` (tiny spec and
   examples/fitness.yaml), ``registry list`` and ``registry show NAME --json``, R runs each,
   interleaved so that a change in machine load hits both sides alike.

    python benchmarks/bench_team.py                      # 100 creates by 8 writers on PostgreSQL,
                                                         # 40 by 4 on SQLite, 5 latency runs
    python benchmarks/bench_team.py --quick              # 16 creates by 4 writers, 8 by 2, 3 runs
    python benchmarks/bench_team.py --creates 50 --writers 4 --sqlite-creates 100 --runs 7
    python benchmarks/bench_team.py --demo               # `make demo-team`: a registry on the servers

Everything runs on 127.0.0.1 (servers from tests/team_servers.py) and stops by itself; the servers
are stopped on the way out, error or not. Credentials reach the CLI through the environment only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from team_servers import PG_BIN, PG_PASSWORD, team  # noqa: E402

REGISTRY = [sys.executable, "-m", "synthreg"]
FITNESS = ROOT / "examples" / "fitness.yaml"
BUCKET = "synthreg-bench"
NAMES = ("alpha", "beta", "gamma")

TINY_SPEC = """\
description: Tiny two-table spec for the team-backend benchmark.
seed: 1
tables:
  users:
    rows: 200
    primary_key: user_id
    columns:
      user_id: {type: int}
      plan: {type: category, values: {free: 0.6, pro: 0.4}}
      age: {type: int, distribution: {kind: normal, mean: 35, std: 9}, min: 18, max: 90}
  orders:
    rows: 300
    primary_key: order_id
    columns:
      order_id: {type: int}
      user_id: {type: int, foreign_key: users.user_id}
      amount:
        {type: float, distribution: {kind: lognormal, mean: 3, sigma: 0.5}, min: 1, max: 500, decimals: 2}
"""


def say(*parts: object) -> None:
    print(*parts, flush=True)


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank, upper) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def base_env(team_env: dict[str, str] | None) -> dict[str, str]:
    """The CLI's environment: no tracking-URI override (each workspace uses its own), the team
    credentials when given (and none otherwise)."""
    env = dict(os.environ)
    for key in (
        "SYNTHREG_MLFLOW_TRACKING_URI",
        "MLFLOW_TRACKING_URI",
        "PGPASSWORD",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
    ):
        env.pop(key, None)
    env.update(team_env or {})
    return env


@dataclass
class Outcome:
    """One CLI run."""

    args: list[str]
    rc: int
    seconds: float
    stdout: str
    stderr: str

    def json(self) -> Any:
        """The JSON document on stdout, from its first line that starts with '{' or '['
        (an http MLflow URI may print a "View run" line before it)."""
        lines = self.stdout.splitlines()
        for i, line in enumerate(lines):
            if line.startswith(("{", "[")):
                return json.loads("\n".join(lines[i:]))
        raise ValueError(f"no JSON on stdout: {self.stdout[:300]!r}")

    def preamble(self) -> str:
        """Whatever stdout held before the JSON document (should be nothing)."""
        lines = self.stdout.splitlines()
        for i, line in enumerate(lines):
            if line.startswith(("{", "[")):
                return "\n".join(lines[:i])
        return self.stdout


def registry(ws: Path, env: dict[str, str], *args: str, timeout: float = 600) -> Outcome:
    """``registry -C WS ARGS`` in its own process, timed."""
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            [*REGISTRY, "-C", str(ws), *args], env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:  # killed: counted as a failure, the run goes on
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        err += f"\ntimed out after {timeout} s"
        return Outcome(list(args), 124, time.perf_counter() - started, "", err)
    return Outcome(list(args), proc.returncode, time.perf_counter() - started, proc.stdout, proc.stderr)


def must(out: Outcome) -> Outcome:
    if out.rc != 0:
        raise RuntimeError(f"registry {' '.join(out.args)} exited {out.rc}:\n{out.stderr[-3000:]}")
    return out


@dataclass
class Backend:
    """Where a workspace keeps things, and the environment its CLI runs with."""

    label: str
    env: dict[str, str]
    init_flags: list[str] = field(default_factory=list)

    def init(self, ws: Path) -> Path:
        must(registry(ws, self.env, "init", str(ws), *self.init_flags))
        return ws


class TeamServers:
    """The three servers, and fresh databases and S3 prefixes on them."""

    def __init__(self, pg: Any, s3: Any, ml: Any) -> None:
        self.pg, self.s3, self.ml = pg, s3, ml
        self.env = {"PGPASSWORD": PG_PASSWORD, **s3.env()}
        self._n = 0

    def backend(self, label: str) -> Backend:
        self._n += 1
        db = self.pg.create_db(label.replace("-", "_"))
        flags = [
            "--db",
            db,
            "--remote",
            f"s3://{BUCKET}/{label}{self._n}",
            "--endpoint",
            self.s3.endpoint,
            "--mlflow",
            self.ml.url,
        ]
        return Backend(label, base_env(self.env), flags)

    def s3_objects(self, prefix: str = "") -> int:
        pages = self.s3.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return sum(len(page.get("Contents", [])) for page in pages)


@contextlib.contextmanager
def servers() -> Iterator[TeamServers]:
    if not (PG_BIN / "initdb").exists():
        raise SystemExit(
            f"PostgreSQL 15 is missing ({PG_BIN}/initdb): apt-get install -y postgresql "
            "(as root; `make demo-team` does it)"
        )
    started = time.perf_counter()
    with team(BUCKET) as (pg, s3, ml):
        say(
            f"servers up in {time.perf_counter() - started:.1f} s: PostgreSQL 127.0.0.1:{pg.port} "
            f"(data {pg.data}), S3 {s3.endpoint} (moto), MLflow {ml.url} (log {ml.log})"
        )
        yield TeamServers(pg, s3, ml)
    say("servers stopped")


# ------------------------------------------------------------------------------- a) b) concurrency


def concurrency(backend: Backend, ws: Path, spec: Path, creates: int, writers: int, gen_workers: int) -> bool:
    """W threads, each keeping one ``registry create`` process running, until ``creates`` in all."""
    say(
        f"\n== concurrency on {backend.label}: {creates} creates by {writers} concurrent writer processes "
        f"over {len(NAMES)} datasets ({', '.join(NAMES)}), tiny spec, --workers {gen_workers}"
    )
    backend.init(ws)
    outcomes = run_writers(backend, ws, spec, creates, writers, gen_workers)
    reported = summarize(outcomes)
    return check(backend, ws, outcomes, reported)


def run_writers(
    backend: Backend, ws: Path, spec: Path, creates: int, writers: int, gen_workers: int
) -> list[tuple[str, int, Outcome]]:
    lock = threading.Lock()
    next_k = iter(range(1, creates + 1))
    outcomes: list[tuple[str, int, Outcome]] = []
    started = time.perf_counter()

    def writer() -> None:
        while True:
            with lock:
                k = next(next_k, None)
            if k is None:
                return
            name = NAMES[k % len(NAMES)]
            args = [
                "create",
                name,
                "--spec",
                str(spec),
                "--seed",
                str(k),
                "--workers",
                str(gen_workers),
                "--json",
            ]
            out = registry(ws, backend.env, *args)
            with lock:
                outcomes.append((name, k, out))
                if len(outcomes) % 10 == 0:
                    say(f"  {len(outcomes)}/{creates} done, {time.perf_counter() - started:.0f} s")

    threads = [threading.Thread(target=writer, daemon=True) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    seconds = [o.seconds for _, _, o in outcomes]
    say(
        f"  wall {wall:.1f} s, {len(outcomes) / wall * 60:.1f} creates/min; per create (queueing included): "
        f"median {statistics.median(seconds):.1f} s, p90 {pct(seconds, 0.9):.1f} s, max {max(seconds):.1f} s"
    )
    return outcomes


def summarize(outcomes: list[tuple[str, int, Outcome]]) -> dict[str, list[int]]:
    """Stage medians from the creates' --json, and the version numbers they reported, by dataset."""
    stages: dict[str, list[float]] = {}
    reported: dict[str, list[int]] = {n: [] for n in NAMES}
    preambles = 0
    for name, _, out in outcomes:
        if out.rc != 0:
            continue
        try:
            doc = out.json()
        except ValueError as exc:
            say(f"  ! {exc}")
            continue
        preambles += bool(out.preamble().strip())
        reported[name].append(int(doc["version"]))
        for stage, value in (doc.get("timings") or {}).items():
            stages.setdefault(stage, []).append(float(value))
    say("  stage medians (s): " + ", ".join(f"{s} {statistics.median(v):.2f}" for s, v in stages.items()))
    if preambles:
        say(f"  note: {preambles} --json outputs had text before the JSON (e.g. MLflow's 'View run' line)")
    return reported


def check(
    backend: Backend, ws: Path, outcomes: list[tuple[str, int, Outcome]], reported: dict[str, list[int]]
) -> bool:
    ok = [(n, k) for n, k, o in outcomes if o.rc == 0]
    failed = [(n, k, o) for n, k, o in outcomes if o.rc != 0]
    checks: list[tuple[str, bool, str]] = []
    checks.append((f"every create exited 0 ({len(ok)}/{len(outcomes)})", not failed, ""))
    for name, k, out in failed[:5]:
        tail = out.stderr.strip()[-1500:].replace("\n", "\n    ")
        say(f"  FAILED create {name} --seed {k}: exit {out.rc}\n    {tail}")
    for name in NAMES:
        expected = sum(1 for n, _ in ok if n == name)
        shown = registry(ws, backend.env, "show", name, "--json")
        numbers = [v["version"] for v in shown.json()["versions"]] if shown.rc == 0 else []
        audit = registry(ws, backend.env, "audit", "--dataset", name, "--format", "json")
        events = [e["version"] for e in audit.json() if e["action"] == "create"] if audit.rc == 0 else []
        good = (
            sorted(numbers) == list(range(1, expected + 1))
            and sorted(reported[name]) == numbers
            and sorted(events) == numbers
        )
        detail = f"n={len(numbers)}, successful creates={expected}"
        if not good:
            detail += f"; versions {numbers}; by create {sorted(reported[name])}; audit {sorted(events)}"
        checks.append(
            (f"{name}: versions exactly 1..n, n = successful creates, one audit event each", good, detail)
        )
    verify = registry(ws, backend.env, "audit", "verify")
    checks.append(("audit verify exits 0", verify.rc == 0, (verify.stdout + verify.stderr).strip()[-400:]))
    doctor = registry(ws, backend.env, "doctor")
    healthy = doctor.rc == 0 and "healthy" in doctor.stdout
    checks.append(("doctor healthy", healthy, "" if healthy else (doctor.stdout + doctor.stderr)[-1500:]))
    status = subprocess.run(["git", "status", "--porcelain"], cwd=ws, capture_output=True, text=True)
    checks.append(("git status clean", status.stdout == "", status.stdout[:400]))
    for what, good, detail in checks:
        say(f"  {'PASS' if good else 'FAIL'}  {what}" + (f"  [{detail}]" if detail else ""))
    return all(good for _, good, _ in checks)


# ------------------------------------------------------------------------------------ c) latency


def latency(backends: list[Backend], workdir: Path, spec: Path, runs: int, gen_workers: int) -> None:
    say(
        f"\n== latency: {runs} runs of each command per backend, interleaved (embedded, team) each round; "
        f"creates with --workers {gen_workers}"
    )
    ops = {
        "create tiny (500 rows)": lambda i: [
            "create",
            "tiny",
            "--spec",
            str(spec),
            "--seed",
            str(100 + i),
            "--workers",
            str(gen_workers),
        ],
        "create fitness (270k rows)": lambda i: [
            "create",
            "fitness",
            "--spec",
            str(FITNESS),
            "--seed",
            str(100 + i),
            "--workers",
            str(gen_workers),
        ],
        "list": lambda i: ["list"],
        "show tiny --json": lambda i: ["show", "tiny", "--json"],
    }
    workspaces = {b.label: b.init(workdir / f"lat-{b.label}") for b in backends}
    times: dict[tuple[str, str], list[float]] = {}
    for i in range(runs):
        for op, args in ops.items():
            for b in backends:
                out = must(registry(workspaces[b.label], b.env, *args(i)))
                if op.startswith("show"):
                    out.json()  # it parses
                times.setdefault((op, b.label), []).append(out.seconds)
        say(f"  round {i + 1}/{runs} done")
    emb, tm = backends[0].label, backends[1].label
    head = f"{emb + ' median':>16} {emb + ' p90':>13} {tm + ' median':>13} {tm + ' p90':>10} {'team/emb':>9}"
    say(f"\n  {'command':<28} {head}")
    for op in ops:
        a, b = times[(op, emb)], times[(op, tm)]
        ma, mb = statistics.median(a), statistics.median(b)
        pa, pb = pct(a, 0.9), pct(b, 0.9)
        say(f"  {op:<28} {ma:>14.2f} s {pa:>11.2f} s {mb:>11.2f} s {pb:>8.2f} s {mb / ma:>8.2f}x")


# ---------------------------------------------------------------------------------------- demo


def demo(ws: Path, hold: bool) -> int:
    """``make demo-team``: the servers, a registry on them, fitness v1 and v2, list/show/doctor."""
    with servers() as srv:
        backend = srv.backend("demo")
        shutil.rmtree(ws, ignore_errors=True)
        steps = [
            ["init", str(ws), *backend.init_flags],
            ["create", "fitness", "--spec", str(FITNESS), "-m", "first version"],
            ["create", "fitness", "--spec", str(FITNESS), "--seed", "7", "-m", "another seed"],
            ["list"],
            ["show", "fitness"],
            ["doctor"],
        ]
        for args in steps:
            say(f"\n$ registry -C {ws.name} {shlex.join(args)}")
            out = registry(ws, backend.env, *args)
            sys.stdout.write(out.stdout)
            sys.stderr.write(out.stderr)
            if out.rc != 0:
                say(f"registry {args[0]} exited {out.rc}")
                return out.rc
        prefix = backend.init_flags[backend.init_flags.index("--remote") + 1].removeprefix(f"s3://{BUCKET}/")
        say(f"\nWorkspace:  {ws}  (git, registry.toml with the URLs below, no credentials)")
        say(f"DB:         {backend.init_flags[1]}  (PGPASSWORD from the environment; data dir {srv.pg.data})")
        say(
            f"DVC remote: s3://{BUCKET}/{prefix} at {srv.s3.endpoint} "
            f"({srv.s3_objects(prefix + '/')} objects; moto, in memory)"
        )
        say(
            f"MLflow:     {srv.ml.url}  (runs in PostgreSQL, artifacts in s3://{BUCKET}/mlartifacts: "
            f"{srv.s3_objects('mlartifacts/')} objects)"
        )
        say(f"DataCard:   {ws}/data/fitness/v2/datacard.md")
        if hold:
            say(
                "\nServers up; environment for other shells: "
                f"PGPASSWORD={PG_PASSWORD} " + " ".join(f"{k}={v}" for k, v in srv.s3.env().items())
            )
            with contextlib.suppress(KeyboardInterrupt):
                input("Press Enter (or Ctrl-C) to stop the servers. ")
        say(
            "\nStopping the servers: the workspace stays, but its DB, S3 objects and MLflow runs go "
            "with them (a later command on it fails until servers answer at the same URLs)."
        )
    return 0


# ---------------------------------------------------------------------------------------- main


def versions() -> str:
    pg = subprocess.run(
        [str(PG_BIN / "postgres"), "--version"], capture_output=True, text=True
    ).stdout.strip()
    from importlib.metadata import version

    pkgs = ", ".join(
        f"{p} {version(p)}" for p in ("synthreg", "mlflow", "moto", "dvc", "sqlalchemy", "psycopg")
    )
    return f"{pg}; {pkgs}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (16/8 creates, 3 latency runs)")
    parser.add_argument("--creates", type=int, help="creates on PostgreSQL (default 100; quick 16)")
    parser.add_argument("--writers", type=int, help="concurrent writers on PostgreSQL (default 8; quick 4)")
    parser.add_argument("--sqlite-creates", type=int, help="creates on SQLite (default 40; quick 8)")
    parser.add_argument(
        "--sqlite-writers", type=int, help="concurrent writers on SQLite (default 4; quick 2)"
    )
    parser.add_argument("--runs", type=int, help="latency runs per command and backend (default 5; quick 3)")
    parser.add_argument("--gen-workers", type=int, default=1, help="registry create --workers (default 1)")
    parser.add_argument("--skip", choices=["pg", "sqlite", "latency"], action="append", default=[])
    parser.add_argument("--demo", action="store_true", help="make demo-team: a registry on the servers")
    parser.add_argument("--demo-dir", type=Path, default=ROOT / "demo-team-registry")
    parser.add_argument("--hold", action="store_true", help="with --demo: keep the servers up until Enter")
    args = parser.parse_args()
    os.environ.pop("SYNTHREG_MLFLOW_TRACKING_URI", None)
    if args.demo:
        return demo(args.demo_dir.resolve(), args.hold)

    q = args.quick
    creates = args.creates or (16 if q else 100)
    writers = args.writers or (4 if q else 8)
    sq_creates = args.sqlite_creates or (8 if q else 40)
    sq_writers = args.sqlite_writers or (2 if q else 4)
    runs = args.runs or (3 if q else 5)
    load = os.getloadavg()
    say(
        f"machine: {platform.node()}, {platform.machine()}, nproc {os.cpu_count()}, "
        f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; Python {platform.python_version()}"
    )
    say(f"versions: {versions()}")
    say(
        f"parameters: PostgreSQL {creates} creates by {writers} writers; SQLite {sq_creates} creates by "
        f"{sq_writers} writers; latency {runs} runs; create --workers {args.gen_workers}; skip {args.skip}"
    )
    say("tiny spec: users 200 rows + orders 300 rows (FK to users)")
    started = time.perf_counter()
    results: dict[str, bool] = {}
    with tempfile.TemporaryDirectory(prefix="synthreg-bench-team-") as tmp, servers() as srv:
        work = Path(tmp)
        spec = work / "tiny.yaml"
        spec.write_text(TINY_SPEC)
        if "pg" not in args.skip:
            results["team (PostgreSQL)"] = concurrency(
                srv.backend("team-pg"), work / "conc-team", spec, creates, writers, args.gen_workers
            )
        if "sqlite" not in args.skip:
            results["embedded (SQLite)"] = concurrency(
                Backend("embedded-sqlite", base_env(None)),
                work / "conc-sqlite",
                spec,
                sq_creates,
                sq_writers,
                args.gen_workers,
            )
        if "latency" not in args.skip:
            latency(
                [Backend("embedded", base_env(None)), srv.backend("team")], work, spec, runs, args.gen_workers
            )
    load = os.getloadavg()
    say(
        f"\ntotal {time.perf_counter() - started:.0f} s; "
        f"load at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    for what, good in results.items():
        say(f"concurrency checks on {what}: {'all passed' if good else 'FAILED'}")
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
