"""Group constraints at scale: the shuffle by group hash against one bucket, and the engine alone.

    python benchmarks/bench_group_rules.py [--scales 10 50] [--repeat 3]

For each scale (x 1M rows of ``specs/three_table_groups.yaml``: a ``sum_limit`` cap on orders,
a ``max_rows_per_group`` drop on payments), fresh processes, round-robin, medians:

- ``engine``: the same tables without their group rules (``specs/three_table.yaml``);
- ``shuffle``: with the rules, as ``create`` runs them (buckets of at most 2M rows on the pool);
- ``one bucket``: with the rules, every group in one bucket (one reduce task holds the rule's
  columns of the whole table, as the client did before the shuffle).

It prints the wall time, rows/s, the ratio to the engine and the peak PSS summed over the
process tree (``tree_memory.py``), and checks that both ways give one content digest.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from tree_memory import run_measured  # noqa: E402

SPECS = {"engine": HERE / "specs" / "three_table.yaml", "shuffle": HERE / "specs" / "three_table_groups.yaml"}
SPECS["one bucket"] = SPECS["shuffle"]

_RUN = """
import json, sys, time, pathlib
from synthreg.generators import group_rules
from synthreg.generators.engine import generate
from synthreg.generators.spec_io import apply_overrides, load_spec
if sys.argv[4] == "one bucket":
    group_rules.BUCKET_ROWS = group_rules._SPLIT_MIN_ROWS = 1 << 62
spec = apply_overrides(load_spec(sys.argv[1]), scale=float(sys.argv[3]))
start = time.perf_counter()
result = generate(spec, pathlib.Path(sys.argv[2]))
print(json.dumps({"generate": time.perf_counter() - start, "rows": sum(result.rows.values()),
                  "digest": result.content_digest}))
"""


def once(mode: str, scale: float, work: Path) -> dict[str, object]:
    out, log = work / "out", work / "run.log"
    measured = run_measured([sys.executable, "-c", _RUN, str(SPECS[mode]), str(out), str(scale), mode], log)
    shutil.rmtree(out, ignore_errors=True)
    if measured.returncode != 0:
        raise SystemExit(f"{mode} at {scale}M failed: {log.read_text()[-2000:]}")
    figures = json.loads(log.read_text().strip().splitlines()[-1])
    return {"wall": measured.wall_s, "pss_mb": measured.peak_pss_mb, **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[10.0, 50.0], help="millions of rows")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"# bench_group_rules: medians of {args.repeat} fresh-process runs, round-robin")
    print("| rows | mode | wall s | generate s | x engine | rows/s | peak PSS MB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="bench-groups-") as tmp:
        for scale in args.scales:
            runs: dict[str, list[dict[str, object]]] = {mode: [] for mode in SPECS}
            for _ in range(args.repeat):
                for mode in SPECS:
                    runs[mode].append(once(mode, scale, Path(tmp)))
            digests = {str(r["digest"]) for mode in ("shuffle", "one bucket") for r in runs[mode]}
            if len(digests) != 1:
                raise SystemExit(f"the shuffle and one bucket disagree at {scale}M rows: {digests}")
            engine = statistics.median(float(r["wall"]) for r in runs["engine"])  # type: ignore[arg-type]
            for mode, done in runs.items():
                wall = statistics.median(float(r["wall"]) for r in done)  # type: ignore[arg-type]
                generate = statistics.median(float(r["generate"]) for r in done)  # type: ignore[arg-type]
                pss = statistics.median(float(r["pss_mb"]) for r in done)  # type: ignore[arg-type]
                rows = int(done[0]["rows"])  # type: ignore[call-overload]
                print(
                    f"| {scale:g}M | {mode} | {wall:.2f} | {generate:.2f} | {wall / engine:.2f} | "
                    f"{rows / generate:,.0f} | {pss:,.0f} |"
                )


if __name__ == "__main__":
    main()
