"""synthreg vs Misata, side by side, from one run (issue 10 §5: README numbers from one honest run).

For each case (schema x rows) it runs every configuration of both tools ``--repeat`` times:
Misata at each ``--misata-batch`` size (its default 10,000 first), synthreg at each
``--synthreg-workers`` count. Runs go round-robin (one of each configuration per round), so
a change in the machine's load hits every configuration alike. It reports, per
configuration, the median wall time (and rows/s from it), the median of each tool's own
in-process generation timer, and the median peak memory; then each tool's best
configuration (lowest median wall time) from this same run and the ratio best vs best.

Both tools run as whole processes (interpreter start, imports, generation, Parquet write)
on the same schemas (benchmarks/specs/ for synthreg; the same tables and columns described
to Misata by benchmarks/peer_misata.py), and both are measured the same way by
``tree_memory.run_measured``: psutil polls the process tree every 50 ms and keeps the
largest sum of PSS (pages shared by forked workers counted once) and of RSS.

synthreg alone then runs at ``--big-rows`` (100M) to show how its memory grows with rows.

    python benchmarks/bench_vs_misata.py                 # the full set (~20 minutes on 2 cores)
    python benchmarks/bench_vs_misata.py --quick         # 1M rows only, no 100M
    python benchmarks/bench_vs_misata.py --repeat 5 --misata-batch 10000 --misata-batch 100000

Raw runs and the summary go to ``--out`` (``benchmarks/results/bench_vs_misata.{json,txt}``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peer_misata import MISATA_DEFAULT_BATCH, run_misata  # noqa: E402
from tree_memory import run_measured  # noqa: E402

SPECS = HERE / "specs"
RESULTS = HERE / "results"
MISATA_BATCHES = (MISATA_DEFAULT_BATCH, 100_000, 1_000_000)

_CHILD = """
import json, resource, sys, pathlib
from synthreg.generators.spec_io import load_spec, apply_overrides
from synthreg.generators.engine import generate
spec = load_spec(sys.argv[1])
spec = apply_overrides(spec, scale=float(sys.argv[3]) / spec.total_rows)
result = generate(spec, pathlib.Path(sys.argv[2]), workers=int(sys.argv[4]))
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"rows": sum(result.rows.values()), "engine_s": result.seconds,
                  "digest": result.content_digest, "self_rss_mb": own,
                  "self_plus_workers_rss_mb": own + result.worker_peak_rss_mb}))
"""


def run_synthreg(schema: str, total_rows: int, workers: int) -> dict[str, Any]:
    """synthreg's engine as a whole process; rows counted from the written files."""
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(prefix="synthreg-bench-") as tmp:
        out, log = Path(tmp) / "out", Path(tmp) / "log.txt"
        spec = str(SPECS / f"{schema}.yaml")
        cmd = [sys.executable, "-c", _CHILD, spec, str(out), str(total_rows), str(workers)]
        m = run_measured(cmd, log)
        text = log.read_text()
        if m.returncode != 0:
            raise RuntimeError(f"synthreg failed:\n{text[-3000:]}")
        info = json.loads(text.strip().splitlines()[-1])
        files = sorted(out.rglob("*.parquet"))
        rows = sum(pq.ParquetFile(p).metadata.num_rows for p in files)
        size = sum(p.stat().st_size for p in files)
    return {
        "tool": "synthreg",
        "config": f"workers={workers}",
        "schema": schema,
        "rows": rows,
        "wall_s": round(m.wall_s, 3),
        "own_timer_s": round(info["engine_s"], 3),
        "peak_pss_mb": round(m.peak_pss_mb, 1),
        "peak_rss_mb": round(m.peak_rss_mb, 1),
        "processes": m.processes,
        "generation_run_peak_rss_mb": round(info["self_plus_workers_rss_mb"], 1),
        "bytes": size,
        "digest": info["digest"],
    }


def run_peer(schema: str, total_rows: int, batch: int, out_dir: Path) -> dict[str, Any]:
    """Misata at one batch size, measured like synthreg (process-tree PSS and RSS)."""
    r = run_misata(schema, total_rows, batch_size=batch, out_dir=out_dir, tree_memory=True)
    default = " (default)" if batch == MISATA_DEFAULT_BATCH else ""
    r.update(config=f"batch={batch:,}{default}", own_timer_s=r.pop("misata_generation_s"))
    return r


def _version() -> str:
    import synthreg

    return synthreg.__version__


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the runs of one configuration, with every run's wall time kept."""
    first = runs[0]
    wall = statistics.median(r["wall_s"] for r in runs)
    timers = [r["own_timer_s"] for r in runs if r.get("own_timer_s") is not None]
    return {
        "tool": first["tool"],
        "config": first["config"],
        "schema": first["schema"],
        "rows": first["rows"],
        "runs": len(runs),
        "wall_s_median": round(wall, 3),
        "wall_s_all": [r["wall_s"] for r in runs],
        "rows_per_s_median": round(first["rows"] / wall),
        "own_timer_s_median": round(statistics.median(timers), 3) if timers else None,
        "peak_pss_mb_median": round(statistics.median(r["peak_pss_mb"] for r in runs), 1),
        "peak_pss_mb_max": max(r["peak_pss_mb"] for r in runs),
        "peak_rss_mb_median": round(statistics.median(r["peak_rss_mb"] for r in runs), 1),
    }


def run_case(
    schema: str, rows: int, configs: list[Callable[[], dict[str, Any]]], repeat: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every configuration ``repeat`` times, round-robin; (raw runs, one summary per configuration)."""
    raw: list[list[dict[str, Any]]] = [[] for _ in configs]
    for round_no in range(repeat):
        for runs, config in zip(raw, configs, strict=True):
            load = os.getloadavg()[0]
            run = config()
            run.update(round=round_no, load_1min_before=round(load, 2))
            runs.append(run)
            print(
                f"  {schema} {rows:>11,} {run['tool']:<8} {run['config']:<22} {run['wall_s']:>8.2f} s"
                f" {run['peak_pss_mb']:>7.0f} MB PSS  (load {load:.2f})",
                flush=True,
            )
    return [r for runs in raw for r in runs], [_summary(runs) for runs in raw]


def best_of(summaries: list[dict[str, Any]], tool: str) -> dict[str, Any]:
    """The tool's configuration with the lowest median wall time."""
    return min((s for s in summaries if s["tool"] == tool), key=lambda s: s["wall_s_median"])


def compare(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Each tool's best configuration, and the ratios between them (from the same run)."""
    ours, peer = best_of(summaries, "synthreg"), best_of(summaries, "misata")
    default = next((s for s in summaries if s["config"].endswith("(default)")), None)
    out = {
        "schema": ours["schema"],
        "rows": ours["rows"],
        "synthreg_best": ours["config"],
        "misata_best": peer["config"],
        "speedup_best_vs_best": round(peer["wall_s_median"] / ours["wall_s_median"], 2),
        "pss_ratio_synthreg_over_misata": round(ours["peak_pss_mb_median"] / peer["peak_pss_mb_median"], 2),
    }
    if default is not None:
        out["speedup_vs_misata_default"] = round(default["wall_s_median"] / ours["wall_s_median"], 2)
    if ours["own_timer_s_median"] and peer["own_timer_s_median"]:
        out["own_timer_ratio_best_vs_best"] = round(
            peer["own_timer_s_median"] / ours["own_timer_s_median"], 2
        )
    return out


def run_registry(total_rows: int) -> dict[str, Any]:
    """``registry init`` + ``registry create`` end to end (validation, DVC, MLflow, git), once."""
    with tempfile.TemporaryDirectory(prefix="synthreg-reg-") as tmp:
        root = Path(tmp) / "ws"
        registry = [sys.executable, "-m", "synthreg"]
        subprocess.run([*registry, "init", str(root)], check=True, capture_output=True)
        log = Path(tmp) / "create.log"
        spec = str(SPECS / "three_table.yaml")
        scale = str(total_rows / 1_000_000)
        m = run_measured(
            [*registry, "-C", str(root), "create", "bench", "--spec", spec, "--scale", scale, "--json"], log
        )
        text = log.read_text()
        if m.returncode != 0:
            raise RuntimeError(f"registry create failed:\n{text[-3000:]}")
        data = json.loads(text[text.index("{") :])
    return {
        "tool": "synthreg create",
        "rows": sum(data["rows"].values()),
        "wall_s": round(m.wall_s, 3),
        "peak_pss_mb": round(m.peak_pss_mb, 1),
        "timings": data["timings"],
        "status": data["status"],
    }


def _machine() -> dict[str, Any]:
    import psutil

    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "synthreg": _version(),
        "load_1_5_15_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def format_summaries(summaries: list[dict[str, Any]]) -> str:
    """One line per configuration: medians and the spread of wall times."""
    head = (
        f"{'schema':<12} {'rows':>11} {'tool':<8} {'config':<22} {'runs':>4} {'wall s (median)':>15} "
        f"{'min-max':>13} {'rows/s':>11} {'own timer s':>11} {'PSS MB':>7} {'RSS MB':>7}"
    )
    lines = [head, "-" * len(head)]
    for s in summaries:
        spread = f"{min(s['wall_s_all']):.2f}-{max(s['wall_s_all']):.2f}"
        timer = f"{s['own_timer_s_median']:.2f}" if s["own_timer_s_median"] is not None else "-"
        lines.append(
            f"{s['schema']:<12} {s['rows']:>11,} {s['tool']:<8} {s['config']:<22} {s['runs']:>4} "
            f"{s['wall_s_median']:>15.2f} {spread:>13} {s['rows_per_s_median']:>11,} {timer:>11} "
            f"{s['peak_pss_mb_median']:>7.0f} {s['peak_rss_mb_median']:>7.0f}"
        )
    return "\n".join(lines)


def format_comparison(c: dict[str, Any]) -> str:
    """Best vs best, in one sentence."""
    line = (
        f"{c['schema']} {c['rows']:,} rows: best synthreg ({c['synthreg_best']}) is "
        f"{c['speedup_best_vs_best']:.1f}x faster than best Misata ({c['misata_best']}), "
        f"median wall times; peak PSS ratio synthreg/Misata {c['pss_ratio_synthreg_over_misata']:.2f}"
    )
    if "speedup_vs_misata_default" in c:
        line += f"; {c['speedup_vs_misata_default']:.1f}x vs Misata's default batch"
    if "own_timer_ratio_best_vs_best" in c:
        line += f"; own generation timers {c['own_timer_ratio_best_vs_best']:.1f}x"
    return line


def _growth(summaries: list[dict[str, Any]], small: int, big: int, workers: int) -> str | None:
    """synthreg's median peak memory at ``small`` and ``big`` rows, and the change."""
    config = f"workers={workers}"
    pick = {
        s["rows"]: s
        for s in summaries
        if s["tool"] == "synthreg" and s["schema"] == "three_table" and s["config"] == config
    }
    if small not in pick or big not in pick:
        return None
    a, b = pick[small]["peak_pss_mb_median"], pick[big]["peak_pss_mb_median"]
    return (
        f"synthreg three_table ({config}) peak PSS {small:,} -> {big:,} rows: "
        f"{a:.0f} -> {b:.0f} MB ({(b - a) / a:+.0%})"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1M-row cases only, no --big-rows run")
    parser.add_argument("--repeat", type=int, default=3, help="runs of every configuration (default 3)")
    parser.add_argument(
        "--misata-batch", type=int, action="append", help="Misata batch sizes (default 10k, 100k, 1M)"
    )
    parser.add_argument(
        "--synthreg-workers",
        type=int,
        action="append",
        help="synthreg worker counts (default 1 and all cores)",
    )
    parser.add_argument("--big-rows", type=int, default=100_000_000, help="synthreg-alone memory case")
    parser.add_argument("--registry", action="store_true", help="also time `registry create` at 10M once")
    parser.add_argument(
        "--out", type=Path, default=RESULTS / "bench_vs_misata", help="writes OUT.json, OUT.txt"
    )
    return parser


def _cases(args: argparse.Namespace, workers: list[int], batches: list[int], out: Path) -> list[Any]:
    sizes = [1_000_000] if args.quick else [1_000_000, 10_000_000]
    cases = [("three_table", n) for n in sizes] + [("people", 1_000_000)]
    plans = []
    for schema, rows in cases:
        configs: list[Callable[[], dict[str, Any]]] = [
            lambda s=schema, n=rows, b=b: run_peer(s, n, b, out / f"{s}-{b}") for b in batches
        ]
        configs += [lambda s=schema, n=rows, w=w: run_synthreg(s, n, w) for w in workers]
        plans.append((schema, rows, configs))
    if not args.quick:
        top = max(workers)
        plans.append(
            ("three_table", args.big_rows, [lambda n=args.big_rows: run_synthreg("three_table", n, top)])
        )
    return plans


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    workers = sorted(set(args.synthreg_workers or [1, os.cpu_count() or 1]))
    batches = args.misata_batch or list(MISATA_BATCHES)
    report: dict[str, Any] = {"machine": _machine(), "repeat": args.repeat, "runs": [], "summaries": []}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="misata-out-") as mtmp:
        for schema, rows, configs in _cases(args, workers, batches, Path(mtmp)):
            raw, summaries = run_case(schema, rows, configs, args.repeat)
            report["runs"] += raw
            report["summaries"] += summaries
            if any(s["tool"] == "misata" for s in summaries):
                report.setdefault("comparisons", []).append(compare(summaries))
    if args.registry:
        report["registry_create"] = run_registry(10_000_000)
    report["machine"]["load_1_5_15_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["machine"]["total_s"] = round(time.perf_counter() - started)
    text = _render(report, max(workers))
    print("\n" + text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    args.out.with_suffix(".txt").write_text(text + "\n")
    print(f"\nwritten: {args.out.with_suffix('.json')}, {args.out.with_suffix('.txt')}")
    return 0


def _render(report: dict[str, Any], top_workers: int) -> str:
    m = report["machine"]
    lines = [
        f"{m['when']}: {m['machine']}, {m['cores']} cores, {m['memory_gb']} GB, Python {m['python']}, "
        f"synthreg {m['synthreg']}; load (1/5/15 min) {m['load_1_5_15_at_start']} at start, "
        f"{m['load_1_5_15_at_end']} at end; {m['total_s']} s in all",
        f"medians of {report['repeat']} runs per configuration, round-robin; memory = peak of the "
        "process-tree sum (PSS, and RSS), psutil poll every 50 ms, same for both tools",
        "",
        format_summaries(report["summaries"]),
        "",
        *(format_comparison(c) for c in report.get("comparisons", [])),
    ]
    rows = sorted({s["rows"] for s in report["summaries"] if s["schema"] == "three_table"})
    growth = _growth(report["summaries"], 10_000_000, rows[-1], top_workers) if len(rows) > 1 else None
    if growth and rows[-1] != 10_000_000:
        lines.append(growth)
    if "registry_create" in report:
        r = report["registry_create"]
        timings = ", ".join(f"{k} {v:.1f}s" for k, v in r["timings"].items())
        lines.append(
            f"registry create {r['rows']:,} rows: {r['wall_s']:.1f}s, {r['peak_pss_mb']:.0f} MB; {timings}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
