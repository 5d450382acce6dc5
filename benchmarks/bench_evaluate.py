"""Evaluate benchmark: ``registry evaluate`` of a synthetic version against a 1M-row real table.

Builds the "real" data itself: a workspace version of the spec below (customers 200k rows,
purchases 1M rows) with seed 1 and shifted distributions, exported to ``real/customers.parquet``
and ``real/purchases.parquet``; then creates the synthetic version (seed 2, the unshifted spec)
and evaluates it with ``--target purchases.channel`` in a fresh subprocess, so the figures are the
evaluation's own: wall time and peak RSS per stage (read, fidelity, privacy, utility; the peak is
the Linux high-water mark, reset at the start of each stage), the store step, and the process's
peak RSS. Memory is bounded by the caps of ``synthreg.registry.evaluate_inputs`` (printed), not
by the table size, except for the row hashes of the exact-match count (8 bytes per row).

    python benchmarks/bench_evaluate.py                 # 1M-row purchases
    python benchmarks/bench_evaluate.py --rows 100000   # smaller
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = """
description: Evaluate benchmark.
seed: 1
tables:
  customers:
    rows: {customers}
    primary_key: customer_id
    columns:
      customer_id: {{type: int}}
      segment: {{type: category, values: {{retail: 0.6, smb: 0.3, enterprise: 0.1}}}}
      income:
        {{type: float, distribution: {{kind: lognormal, mean: {income}, sigma: 0.6}}, min: 1, decimals: 2}}
      age: {{type: int, distribution: {{kind: normal, mean: {age}, std: 11}}, min: 18, max: 95}}
      signed_up_at: {{type: datetime, start: 2020-01-01, end: 2024-12-31}}
      churned: {{type: bool, p: {churn}}}
  purchases:
    rows: {purchases}
    primary_key: purchase_id
    columns:
      purchase_id: {{type: int}}
      customer_id: {{type: int, foreign_key: customers.customer_id, skew: {skew}}}
      amount: {{type: float, distribution: {{kind: lognormal, mean: 3.2, sigma: 0.7}}, min: 1, decimals: 2}}
      channel: {{type: category, values: {{web: {web}, store: 0.3, app: {app}}}}}
      items: {{type: int, distribution: {{kind: poisson, lam: 2.5}}, min: 0, max: 40}}
      at: {{type: datetime, start: 2023-01-01, end: 2024-12-31}}
"""

_CHILD = """
import json, resource, sys, time
from pathlib import Path
import synthreg
from synthreg.registry import evaluate_inputs as caps
from synthreg.registry.evaluate import compute
from synthreg.registry.evaluate_store import store
root, real = Path(sys.argv[1]), Path(sys.argv[2])
ws = synthreg.open(root).workspace
start = time.perf_counter()
tables = [real / "customers.parquet", real / "purchases.parquet"]
run = compute(ws, "bench@v2", tables, target="purchases.channel")
t = time.perf_counter()
data = store(ws, run)
stored = time.perf_counter() - t
print(json.dumps({
    "stages": run.stages,
    "store_s": round(stored, 2),
    "wall_s": round(time.perf_counter() - start, 2),
    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    "summary": data["summary"],
    "utility": {k: data["utility"][k] for k in ("tstr", "trtr", "rows")},
    "caps": {"sample_rows": caps.SAMPLE_ROWS, "pair_rows": caps.PAIR_ROWS, "pair_columns": caps.PAIR_COLUMNS,
             "privacy_rows": caps.PRIVACY_ROWS, "utility_rows": caps.UTILITY_ROWS},
}))
"""


def _spec(path: Path, purchases: int, shifted: bool) -> Path:
    knobs = (
        {"income": 10.6, "age": 44, "churn": 0.2, "skew": 0.9, "web": 0.45, "app": 0.25}
        if shifted
        else {"income": 10.5, "age": 42, "churn": 0.15, "skew": 0.8, "web": 0.5, "app": 0.2}
    )
    path.write_text(SPEC.format(customers=max(purchases // 5, 10), purchases=purchases, **knobs))
    return path


def _export(root: Path, version: int, out: Path) -> None:
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    for table in ("customers", "purchases"):
        data = ds.dataset(root / f"data/bench/v{version}/tables/{table}", format="parquet").to_table()
        pq.write_table(data, out / f"{table}.parquet")


def main() -> None:
    """Build, create, evaluate; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the purchases table")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-evaluate-") as tmp:
        base = Path(tmp)
        os.environ["SYNTHREG_MLFLOW_TRACKING_URI"] = f"sqlite:///{base / 'mlflow.db'}"
        import synthreg

        reg = synthreg.init(base / "ws")
        t = time.perf_counter()
        reg.create("bench", _spec(base / "real.yaml", args.rows, shifted=True))
        _export(base / "ws", 1, base / "real")
        built = time.perf_counter() - t
        t = time.perf_counter()
        reg.create("bench", _spec(base / "synthetic.yaml", args.rows, shifted=False), seed=2)
        created = time.perf_counter() - t
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(base / "ws"), str(base / "real")],
            check=True,
            capture_output=True,
            text=True,
        )
        figures = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"evaluate benchmark: purchases {args.rows:,} rows, customers {max(args.rows // 5, 10):,} rows")
    print(f"build real data (create + export): {built:.1f} s; create the synthetic version: {created:.1f} s")
    print(f"caps: {json.dumps(figures['caps'])}")
    print(f"{'stage':<10} {'seconds':>8} {'peak RSS MB':>12}")
    for stage, v in figures["stages"].items():
        print(f"{stage:<10} {v['seconds']:>8.2f} {v['peak_rss_mb'] or float('nan'):>12.1f}")
    print(f"{'store':<10} {figures['store_s']:>8.2f}")
    print(f"evaluate total {figures['wall_s']:.1f} s, process peak RSS {figures['peak_rss_mb']:.0f} MB")
    print(f"summary: {json.dumps(figures['summary'])}")
    print(f"utility: {json.dumps(figures['utility'])}")


if __name__ == "__main__":
    main()
