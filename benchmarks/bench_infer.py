"""``registry spec infer`` and ``create --like`` on a real-shaped table set: time and peak memory.

Builds customers (250k rows) and orders (1M rows) as Parquet, and the same orders as CSV, written
in chunks: foreign keys with popular customers, order dates after sign-up dates, categories with a
long tail of rare values, skewed amounts with nulls, codes with a shape and free-text notes. Then
each stage runs as its own process, measured by ``tree_memory.run_measured`` (wall time, peak
PSS and RSS of the whole process tree):

1. ``registry spec infer customers.parquet orders.parquet``
2. ``registry spec infer customers.parquet orders.csv`` (the CSV is copied into DuckDB first), and
   again with ``--memory-limit 256MB`` (DuckDB's default here is 1GB)
3. ``registry create shop --like customers.parquet --like orders.parquet`` in a fresh workspace

    .venv/bin/python benchmarks/bench_infer.py                      # ~1-2 minutes on 2 cores
    .venv/bin/python benchmarks/bench_infer.py --orders 200000      # quicker
    .venv/bin/python benchmarks/bench_infer.py --customers 1000000 --orders 5000000 --infer-only \\
        --out benchmarks/results/bench_infer_5m.txt                 # memory as rows grow
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from tree_memory import run_measured  # noqa: E402

REGISTRY = str(Path(sys.executable).with_name("registry"))
CHUNK = 250_000


def build(root: Path, customers: int, orders: int) -> None:
    """Write customers.parquet, orders.parquet and orders.csv (chunk by chunk)."""
    rng = np.random.default_rng(20261204)
    start = np.datetime64("2021-01-01T00:00:00")
    signed = start + rng.integers(0, 3 * 365 * 86400, customers).astype("timedelta64[s]")
    tail = np.array([f"promo-{i:04d}" for i in range(2000)], dtype=object)  # 2,000 rare values
    channel = rng.choice(
        np.array(["web", "app", "store", "phone"], dtype=object), customers, p=[0.5, 0.3, 0.15, 0.05]
    )
    rare = rng.random(customers) < 0.02
    channel[rare] = rng.choice(tail, int(rare.sum()))
    pq.write_table(
        pa.table(
            {
                "customer_id": np.arange(1, customers + 1),
                "channel": channel,
                "country": rng.choice(["DE", "FR", "US", "ES", "IT"], customers, p=[0.3, 0.2, 0.3, 0.1, 0.1]),
                "age": np.clip(rng.normal(41, 13, customers).round(), 18, 95).astype(np.int64),
                "signed_up_at": pa.array(signed, pa.timestamp("s")),
                "code": [f"C-{x:07d}" for x in rng.permutation(9_000_000)[:customers] + 1_000_000],
            }
        ),
        root / "customers.parquet",
    )
    schema = None
    writer = csv = None
    for first in range(0, orders, CHUNK):
        n = min(CHUNK, orders - first)
        parent = (rng.random(n) ** 1.6 * customers).astype(np.int64)
        amount = np.round(rng.lognormal(3.2, 1.0, n), 2)
        table = pa.table(
            {
                "order_id": np.arange(first + 1, first + n + 1),
                "customer_id": parent + 1,
                "status": rng.choice(
                    ["paid", "shipped", "refunded", "cancelled"], n, p=[0.55, 0.3, 0.1, 0.05]
                ),
                "amount": pa.array(amount, mask=rng.random(n) < 0.05),
                "items": rng.poisson(1.5, n) + 1,
                "ordered_at": pa.array(
                    signed[parent] + rng.integers(0, 400 * 86400, n).astype("timedelta64[s]")
                ),
                "note": [f"deliver to door {k}" if k % 3 else None for k in rng.integers(0, 10**6, n)],
            }
        )
        schema = schema or table.schema
        writer = writer or pq.ParquetWriter(root / "orders.parquet", schema)
        csv = csv or pacsv.CSVWriter(root / "orders.csv", schema)
        writer.write_table(table)
        csv.write_table(table)
    assert writer is not None and csv is not None
    writer.close()
    csv.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=250_000)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_infer.txt")
    parser.add_argument(
        "--infer-only", action="store_true", help="Skip create --like (to scale inference up)."
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="synthreg-bench-infer-"))
    lines = []
    try:
        build(root, args.customers, args.orders)
        sizes = {p.name: p.stat().st_size / 2**20 for p in sorted(root.iterdir())}
        lines.append(
            f"input: customers {args.customers:,} rows, orders {args.orders:,} rows; "
            + ", ".join(f"{k} {v:.0f} MiB" for k, v in sizes.items())
        )
        lines.append(f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} at start")
        infer = [REGISTRY, "spec", "infer", str(root / "customers.parquet")]
        line, spec = _measure("spec infer (Parquet)", [*infer, str(root / "orders.parquet")], root)
        lines.append(line)
        csv = [*infer, str(root / "orders.csv")]
        lines.append(_measure("spec infer (orders as CSV)", csv, root)[0])
        lines.append(_measure("  same, --memory-limit 256MB", [*csv, "--memory-limit", "256MB"], root)[0])
        if args.infer_only:
            lines += ["", "the inferred spec (Parquet):", *spec.splitlines()]
            return _report(lines, args.out)
        init = run_measured([REGISTRY, "init", str(root / "ws")], root / "init.log")
        assert init.returncode == 0, (root / "init.log").read_text()
        like = ["--like", str(root / "customers.parquet"), "--like", str(root / "orders.parquet")]
        line, created = _measure(
            "create --like", [REGISTRY, "-C", str(root / "ws"), "create", "shop", *like], root
        )
        lines += [line, "", "create --like printed:", created.strip()]
        lines += ["", "the inferred spec (Parquet):", *spec.splitlines()]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    _report(lines, args.out)


def _report(lines: list[str], out: Path) -> None:
    text = "\n".join(lines) + "\n"
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


def _measure(name: str, cmd: list[str], root: Path) -> tuple[str, str]:
    """One stage in its own process: its figures as a line, and what it printed."""
    log = root / "stage.log"
    m = run_measured(cmd, log)
    if m.returncode != 0:
        raise SystemExit(f"{name} failed ({m.returncode}):\n{log.read_text()[-3000:]}")
    memory = f"peak PSS {m.peak_pss_mb:5.0f} MiB   peak RSS {m.peak_rss_mb:5.0f} MiB"
    line = f"{name:28s} {m.wall_s:6.1f} s   {memory}"
    return line, log.read_text()


if __name__ == "__main__":
    main()
