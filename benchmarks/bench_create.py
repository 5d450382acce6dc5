"""`registry create` end to end against the engine alone, stage by stage (issue 13, part 1).

Every measurement is a fresh process, as a user runs it: `registry create` (the whole command,
Python start-up included) and the engine alone (start-up, spec load, generate; the same rows
and workers). Configurations run round-robin, `--repeat` times, so load from other work hits all
of them alike; the table gives medians: wall time, process-tree peak PSS (forked workers and the
create sidecar included, shared pages counted once), each stage of `create --json`'s timings,
and the ratio create / engine, and the CPU seconds (user + system) of the command's process tree
(blank for create served by a warm server, whose work is not the command's). Wall times and
stages come from runs nobody polls; the peak PSS from a second run of each configuration,
polled every 50 ms (`--memory sampled`: one polled run gives both, as before 2026-12-05; the
polls cost ~10% of a small create's time on 2 cores).

`--sidecar both` also runs create with SYNTHREG_SIDECAR=0 (everything in one process, as before
the sidecar) beside the default, to show what the helper process buys. `--warm on` (the default)
adds create served by a warm server (`registry warm start` before the first round; its memory,
idle server included, is added to the tree's).

`--cluster-workers N` adds create (cold) with `--cluster` on a LocalCluster of N workers, started
once before the first round and reached by its tcp:// address as a remote cluster is (the per-row
expectations and quality counts then run in the workers; their CPU is not in `cpu s`).

`--variant LABEL:VAR=VALUE` adds create under other environment variables, in the same rounds
(an A/B: `--variant arenas2:MALLOC_ARENA_MAX=2` runs create with glibc limited to 2 arenas).

    python benchmarks/bench_create.py                                # fitness + 10M three-table
    python benchmarks/bench_create.py --cases fitness --repeat 5 --sidecar both
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from tree_memory import POLL_S, run_measured  # noqa: E402

ROOT = HERE.parent
REGISTRY = str(Path(sys.executable).with_name("registry"))
CASES = {
    "fitness": (ROOT / "examples" / "fitness.yaml", None),
    "three_table_10M": (HERE / "specs" / "three_table.yaml", 10.0),
    "three_table_1M": (HERE / "specs" / "three_table.yaml", 1.0),
    "three_table_4M": (HERE / "specs" / "three_table.yaml", 4.0),
    "three_table_100M": (HERE / "specs" / "three_table.yaml", 100.0),  # ~1.5 min a round here
    "groups_10M": (HERE / "specs" / "three_table_groups.yaml", 10.0),  # with two group constraints
}
STAGES = (
    "generate",
    "hash",
    "quality",
    "card",
    "validate",
    "validate.sidecar",
    "dvc",
    "dvc.push",
    "mlflow",
    "git",
    "db",
)

_ENGINE = """
import json, sys, time, pathlib
t0 = time.perf_counter()
from synthreg.generators.spec_io import load_spec, apply_overrides
from synthreg.generators.engine import generate
spec = load_spec(sys.argv[1])
if sys.argv[3] != "None":
    spec = apply_overrides(spec, scale=float(sys.argv[3]))
start = time.perf_counter()
result = generate(spec, pathlib.Path(sys.argv[2]))
print(json.dumps({"generate": time.perf_counter() - start, "rows": sum(result.rows.values())}))
"""


def engine_once(spec: Path, scale: float | None, work: Path, poll: float | None = POLL_S) -> dict[str, float]:
    out = work / "engine-out"
    log = work / "engine.log"
    cmd = [sys.executable, "-c", _ENGINE, str(spec), str(out), str(scale)]
    measured = run_measured(cmd, log, interval=poll)
    if measured.returncode != 0:
        raise SystemExit(f"engine failed: {log.read_text()[-2000:]}")
    figures = json.loads(log.read_text().strip().splitlines()[-1])
    subprocess.run(["rm", "-rf", str(out)], check=True)
    return {"wall": measured.wall_s, "pss_mb": measured.peak_pss_mb, "cpu": measured.cpu_s, **figures}


def start_warm(work: Path) -> tuple[dict[str, str], int]:
    """A warm server for the whole benchmark: (the environment that reaches it, its pid)."""
    env = {
        **os.environ,
        "SYNTHREG_WARM": "1",
        "SYNTHREG_WARM_DIR": str(work / "warm"),
        "SYNTHREG_WARM_IDLE": "3600",
    }
    subprocess.run([REGISTRY, "warm", "start"], env=env, check=True, capture_output=True)
    pid = int(next((work / "warm").glob("*.pid")).read_text())
    return env, pid


def create_once(
    spec: Path,
    scale: float | None,
    work: Path,
    sidecar: bool,
    seed: int,
    warm: tuple[dict[str, str], int] | None = None,
    extra: dict[str, str] | None = None,
    poll: float | None = POLL_S,
    cli: tuple[str, ...] = (),
) -> dict[str, float]:
    ws = work / f"ws-{spec.stem}-{scale}"  # one workspace per case: a 10M version slows DVC for the next
    if not ws.exists():
        subprocess.run([REGISTRY, "init", str(ws)], check=True, capture_output=True)
    cmd = [
        REGISTRY,
        "-C",
        str(ws),
        "create",
        "bench",
        "--spec",
        str(spec),
        "--seed",
        str(seed),
        "--json",
        *cli,
    ]
    if scale is not None:
        cmd += ["--scale", str(scale)]
    env = {
        **(warm[0] if warm else {**os.environ, "SYNTHREG_WARM": "0"}),
        "SYNTHREG_SIDECAR": "" if sidecar else "0",  # "": the default helpers
        **(extra or {}),
    }
    log = work / "create.log"
    measured = run_measured(cmd, log, env=env, also=(warm[1],) if warm else (), interval=poll)
    text = log.read_text()
    if measured.returncode != 0:
        raise SystemExit(f"create failed ({measured.returncode}): {text[-2000:]}")
    doc = json.loads(text[text.index("{") : text.rindex("}") + 1])
    return {"wall": measured.wall_s, "pss_mb": measured.peak_pss_mb, "rows": sum(doc["rows"].values()),
            **({} if warm else {"cpu": measured.cpu_s}), **doc["timings"]}  # fmt: skip


def _variant(text: str) -> tuple[str, dict[str, str]]:
    """``LABEL:VAR=VALUE[,VAR=VALUE]`` as (label, variables)."""
    label, _, pairs = text.partition(":")
    found = dict(pair.split("=", 1) for pair in pairs.split(",") if "=" in pair)
    if not label or not found:
        raise SystemExit(f"--variant {text!r}: write LABEL:VAR=VALUE[,VAR=VALUE]")
    return label, found


def _collect(
    args: argparse.Namespace,
    work: Path,
    modes: list[bool],
    variants: list[tuple[str, dict[str, str]]],
    warm: tuple[dict[str, str], int] | None,
    cluster: str | None = None,
) -> dict[tuple[str, str], list[dict[str, float]]]:
    """Every configuration of every case, round-robin, ``args.repeat`` times: (case, label) -> runs.

    With ``--memory separate`` a configuration's wall time and stages come from a run nobody
    polls, and its peak PSS from a second, polled run (with a seed of its own)."""
    seeds = itertools.count()
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    for run in range(args.repeat):
        for case in args.cases:
            spec, scale = CASES[case]
            # Every create gets a seed of its own: with one seed, the first configuration of a
            # round pushed its objects to the DVC remote and the others found them there.
            configs: list[tuple[str, Any]] = [("engine", functools.partial(engine_once, spec, scale, work))]
            for on in modes:
                configs.append(
                    (
                        "create" if on else "create (no sidecar)",
                        functools.partial(_create, spec, scale, work, on),
                    )
                )
            for label, extra in variants:
                configs.append(
                    (f"create ({label})", functools.partial(_create, spec, scale, work, True, extra=extra))
                )
            if warm:
                configs.append(
                    ("create (warm)", functools.partial(_create, spec, scale, work, True, warm=warm))
                )
            if cluster:
                configs.append(
                    (
                        f"create (tcp {args.cluster_workers})",
                        functools.partial(_create, spec, scale, work, True, cli=("--cluster", cluster)),
                    )
                )
            for label, fn in configs:
                if args.sync:
                    os.sync()  # outside the timing: earlier runs' dirty pages written back first
                if args.memory == "sampled":
                    figures = fn(POLL_S) if label == "engine" else fn(POLL_S, seed=next(seeds))
                elif label == "engine":
                    figures = {**fn(None), "pss_mb": fn(POLL_S)["pss_mb"]}
                else:
                    figures = {**fn(None, seed=next(seeds)), "pss_mb": fn(POLL_S, seed=next(seeds))["pss_mb"]}
                runs.setdefault((case, label), []).append(figures)
        print(f"run {run + 1}/{args.repeat} done; load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    return runs


def _create(
    spec: Path,
    scale: float | None,
    work: Path,
    sidecar: bool,
    poll: float | None,
    *,
    seed: int,
    extra: dict[str, str] | None = None,
    warm: tuple[dict[str, str], int] | None = None,
    cli: tuple[str, ...] = (),
) -> dict[str, float]:
    return create_once(spec, scale, work, sidecar, seed, warm, extra, poll=poll, cli=cli)


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--cases", nargs="+", default=["fitness", "three_table_10M"], choices=sorted(CASES))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sidecar", choices=["on", "off", "both"], default="both")
    parser.add_argument("--warm", choices=["on", "off"], default="on")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_create.txt")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL:VAR=VALUE[,VAR=VALUE]",
        help="also run create (cold, with the helper) under these environment variables, "
        "as the row 'create (LABEL)'; repeatable",
    )
    parser.add_argument(
        "--memory",
        choices=["separate", "sampled"],
        default="separate",
        help="separate (default): wall times from runs nobody polls, peak PSS from a second run of "
        "each; sampled: one polled run gives both (the polls cost ~10%% of a small create's time)",
    )
    parser.add_argument(
        "--cluster-workers",
        type=int,
        default=0,
        metavar="N",
        help="also run create (cold) with --cluster on a LocalCluster of N workers started once here "
        "and reached by its tcp:// address, as a remote cluster is (its workers' CPU is not counted)",
    )
    parser.add_argument(
        "--sync",
        action="store_true",
        help="write every dirty page back (os.sync) before each run, outside its timing: each run "
        "then starts as a lone create does, not behind the write-back of the runs before it",
    )
    args = parser.parse_args()
    variants = [_variant(text) for text in args.variant]
    modes = {"on": [True], "off": [False], "both": [True, False]}[args.sidecar]
    with tempfile.TemporaryDirectory(prefix="synthreg-bench-create-") as tmp:
        work = Path(tmp)
        warm = start_warm(work) if args.warm == "on" else None
        with contextlib.ExitStack() as stack:
            cluster = None
            if args.cluster_workers:
                from distributed import LocalCluster

                before = set(os.environ)
                local = stack.enter_context(
                    LocalCluster(
                        n_workers=args.cluster_workers, threads_per_worker=1, dashboard_address=None,
                        silence_logs=40,
                    )
                )  # fmt: skip
                cluster = local.scheduler_address
                # Dask's nanny also set its pre-spawn variables (MALLOC_TRIM_THRESHOLD_=65536) here,
                # which every process started after would inherit: the engine took 3.26 s, not 2.1
                for name in set(os.environ) - before:
                    del os.environ[name]
            runs = _collect(args, work, modes, variants, warm, cluster)
        if warm:
            subprocess.run([REGISTRY, "warm", "stop"], env=warm[0], check=False, capture_output=True)
            with contextlib.suppress(ProcessLookupError):  # its socket folder is about to go
                os.kill(warm[1], signal.SIGTERM)
    load = os.getloadavg()[0]
    synced = "; os.sync() before each run" if args.sync else ""
    lines = [f"# bench_create: medians of {args.repeat} fresh-process runs, round-robin; "
             f"{os.cpu_count()} cores; memory {args.memory}{synced}; load at end {load:.2f}", ""]  # fmt: skip
    for case in args.cases:
        engine = statistics.median(r["wall"] for r in runs[(case, "engine")])
        rows = int(runs[(case, "engine")][0]["rows"])
        lines.append(f"## {case}: {rows:,} rows")
        header = ["config", "wall s", "x engine", "peak PSS MB", "cpu s", *STAGES]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        labels = ["engine", "create", "create (no sidecar)", *(f"create ({v})" for v, _ in variants)]
        for label in [*labels, "create (warm)", f"create (tcp {args.cluster_workers})"]:
            got = runs.get((case, label))
            if not got:
                continue
            wall = statistics.median(r["wall"] for r in got)
            pss = statistics.median(r["pss_mb"] for r in got)
            cpu = [r["cpu"] for r in got if "cpu" in r]
            cells = [label, f"{wall:.2f}", f"{wall / engine:.2f}", f"{pss:.0f}"]
            cells.append(f"{statistics.median(cpu):.2f}" if cpu else "")
            for stage in STAGES:
                values = [r[stage] for r in got if stage in r]
                cells.append(f"{statistics.median(values):.2f}" if values else "")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
