"""Run the peer tool Misata on the benchmark schemas, in its own virtualenv.

Misata (PyPI ``misata``) is installed into ``benchmarks/.cache/misata-venv`` so that its
dependency pins (pandas, numpy, scipy, faker) never touch synthreg's environment. Each run
writes a Misata schema file (JSON, which Misata's YAML loader reads as YAML), then runs the
``misata generate --config ... --format parquet`` CLI as a child process, timed as a whole
process (interpreter start, imports, generation, Parquet write) with ``/usr/bin/time -v`` for
the peak RSS, or by polling the child with psutil where GNU time is missing.

Misata's batch-size knob is ``DataSimulator(batch_size=...)`` (default 10,000 rows); the CLI
exposes it as ``--db-batch-size``, which also sets the generator batch size when no
``--db-url`` is given (``misata/cli.py``: ``batch_size = db_batch_size or 10_000``).

Run ``python benchmarks/peer_misata.py`` to install Misata (once) and print a small table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from functools import cache
from pathlib import Path
from typing import Any

CACHE = Path(__file__).parent / ".cache"

MISATA_VERSION = "0.9.8"
"""The version pinned for comparisons; the newest release is used if this one is gone."""

MISATA_DEFAULT_BATCH = 10_000
"""Batch size ``misata generate`` uses when ``--db-batch-size`` is not given."""

SCHEMAS = ("three_table", "people")
SEED = 42
_GNU_TIME = Path("/usr/bin/time")
_DATE_RANGE = {"start": "2020-01-01", "end": "2024-12-31"}


def _venv_dir() -> Path:
    return CACHE / "misata-venv"


def _venv_python() -> Path:
    return _venv_dir() / "bin" / "python"


def _installed_version(python: Path) -> str | None:
    """Misata's version inside the venv, or None if misata or pyarrow is missing."""
    if not python.exists():
        return None
    probe = "import importlib.metadata as m, pyarrow; print(m.version('misata'))"
    proc = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def ensure_misata_venv() -> Path:
    """Create ``CACHE/misata-venv`` with Misata installed and return its python.

    The venv is made with ``python3 -m venv``; ``misata[parquet]`` is pip installed at
    ``MISATA_VERSION``, or the newest release if that pin cannot be installed. Nothing is
    done when Misata and pyarrow already import in the venv.
    """
    python = _venv_python()
    if _installed_version(python) is not None:
        return python
    CACHE.mkdir(parents=True, exist_ok=True)
    if not python.exists():
        base = shutil.which("python3") or sys.executable
        subprocess.run([base, "-m", "venv", str(_venv_dir())], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    pinned = subprocess.run([*pip, f"misata[parquet]=={MISATA_VERSION}"], check=False)
    if pinned.returncode != 0:
        subprocess.run([*pip, "misata[parquet]"], check=True)
    if _installed_version(python) is None:
        raise RuntimeError(f"misata did not install into {_venv_dir()}")
    _misata_version.cache_clear()
    return python


@cache
def _misata_version() -> str:
    version = _installed_version(_venv_python())
    if version is None:
        raise RuntimeError("misata is not installed; call ensure_misata_venv() first")
    return version


def _split_three_table(total_rows: int) -> tuple[int, int, int]:
    """Row counts for users (10%), orders (50%) and payments (the remaining 40%)."""
    users = max(1, total_rows // 10)
    orders = max(1, total_rows // 2)
    return users, orders, max(1, total_rows - users - orders)


def _datetime() -> dict[str, Any]:
    return {"type": "datetime", **_DATE_RANGE}


def _lognormal(mu: float, sigma: float) -> dict[str, Any]:
    return {"type": "float", "distribution": "lognormal", "mu": mu, "sigma": sigma}


def _categorical(choices: list[str], probabilities: list[float]) -> dict[str, Any]:
    return {"type": "categorical", "choices": choices, "probabilities": probabilities}


def misata_schema(schema: str, total_rows: int, *, email_column: str = "email") -> dict[str, Any]:
    """The Misata schema (the ``misata.yaml`` mapping form) for a benchmark schema.

    ``email_column`` names the people table's email column; Misata runs a per-row Python
    loop when a column is literally named ``email``, so other names are much faster.
    """
    if schema == "three_table":
        users, orders, payments = _split_three_table(total_rows)
        tables = {
            "users": {
                "rows": users,
                "columns": {
                    "id": {"type": "int"},  # an int column named id is a 1..n sequence
                    "name": {"type": "text", "text_type": "name"},
                    "email": {"type": "text", "text_type": "email"},
                    "created_at": _datetime(),
                },
            },
            "orders": {
                "rows": orders,
                "columns": {
                    "id": {"type": "int"},
                    "user_id": {"type": "foreign_key"},
                    "amount": _lognormal(3.5, 0.8),
                    "status": _categorical(
                        ["pending", "completed", "cancelled", "refunded"],
                        [0.10, 0.75, 0.10, 0.05],
                    ),
                    "ordered_at": _datetime(),
                },
            },
            "payments": {
                "rows": payments,
                "columns": {
                    "id": {"type": "int"},
                    "order_id": {"type": "foreign_key"},
                    "amount": _lognormal(3.5, 0.8),
                    "method": _categorical(
                        ["card", "paypal", "bank_transfer", "gift_card"],
                        [0.60, 0.20, 0.15, 0.05],
                    ),
                    "paid_at": _datetime(),
                },
            },
        }
        relationships = ["users.id → orders.user_id", "orders.id → payments.order_id"]
    elif schema == "people":
        tables = {
            "people": {
                "rows": total_rows,
                "columns": {
                    "first_name": {"type": "text", "text_type": "first_name"},
                    "last_name": {"type": "text", "text_type": "last_name"},
                    email_column: {"type": "text", "text_type": "email"},
                    "segment": _categorical(
                        ["consumer", "smb", "enterprise", "public"], [0.55, 0.25, 0.15, 0.05]
                    ),
                    "spend": _lognormal(4.0, 1.0),
                    "age": {"type": "int", "distribution": "uniform", "min": 18, "max": 90},
                    "signup_at": _datetime(),
                    "city": {"type": "text", "text_type": "city"},
                },
            }
        }
        relationships = []
    else:
        raise ValueError(f"unknown schema {schema!r}; expected one of {SCHEMAS}")
    return {"name": schema, "seed": SEED, "tables": tables, "relationships": relationships}


def _count_rows(paths: list[Path]) -> int:
    """Rows in the written Parquet files, read from their footers with pyarrow."""
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(path).metadata.num_rows for path in paths)


def _peak_rss_from_time(report: str) -> float:
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", report)
    if match is None:
        raise RuntimeError(f"no peak RSS in /usr/bin/time output:\n{report[-2000:]}")
    return int(match.group(1)) / 1024


def _run_polled(cmd: list[str], env: dict[str, str], log: Path) -> tuple[int, float]:
    """Run ``cmd``, polling its process tree's RSS with psutil; return (exit code, MB)."""
    import psutil

    peak = 0
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        watched = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                tree = [watched, *watched.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                pass
            time.sleep(0.02)
    return proc.returncode, peak / 2**20


def _run_timed(
    cmd: list[str], env: dict[str, str], work: Path, *, tree_memory: bool = False
) -> tuple[float, dict[str, Any], str]:
    """Run ``cmd`` to completion; return (wall seconds, memory figures, combined output)."""
    log = work / "misata.log"
    start = time.perf_counter()
    if tree_memory:
        from tree_memory import run_measured

        m = run_measured(cmd, log, env=env)
        code, wall = m.returncode, m.wall_s
        memory: dict[str, Any] = {
            "peak_rss_mb": round(m.peak_rss_mb, 1),
            "peak_pss_mb": round(m.peak_pss_mb, 1),
            "memory_method": "psutil tree poll (PSS and RSS sums)",
            "processes": m.processes,
        }
    elif _GNU_TIME.exists():
        time_report = work / "time.txt"
        with log.open("wb") as out:
            code = subprocess.run(
                [str(_GNU_TIME), "-v", "-o", str(time_report), *cmd],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            ).returncode
        wall = time.perf_counter() - start
        peak_mb = _peak_rss_from_time(time_report.read_text()) if code == 0 else 0.0
        memory = {"peak_rss_mb": round(peak_mb, 1), "memory_method": "/usr/bin/time -v max RSS"}
    else:
        code, peak_mb = _run_polled(cmd, env, log)
        wall = time.perf_counter() - start
        memory = {"peak_rss_mb": round(peak_mb, 1), "memory_method": "psutil tree poll (RSS sum)"}
    output = log.read_text(errors="replace")
    if code != 0:
        raise RuntimeError(f"misata exited with {code}:\n{output[-3000:]}")
    return wall, memory, output


def run_misata(
    schema: str,
    total_rows: int,
    *,
    batch_size: int | None = None,
    out_dir: Path,
    email_column: str = "email",
    oracle: bool = False,
    tree_memory: bool = False,
) -> dict[str, Any]:
    """Generate ``total_rows`` rows of ``schema`` with the Misata CLI into ``out_dir`` as Parquet.

    ``batch_size`` None keeps Misata's default (10,000); otherwise it is passed as
    ``--db-batch-size``. ``oracle=True`` keeps Misata's default post-write report (which
    re-reads every table); the default skips it with ``--no-oracle``. Wall time and peak RSS
    cover the whole Misata process; rows are counted from the written files. Peak memory is
    ``/usr/bin/time -v``'s max RSS, or with ``tree_memory=True`` the PSS and RSS sums over the
    process tree polled by ``tree_memory.run_measured`` (how ``bench_vs_misata.py`` measures
    both tools).
    """
    python = ensure_misata_venv()
    spec = misata_schema(schema, total_rows, email_column=email_column)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [out_dir / f"{table}.parquet" for table in spec["tables"]]
    for stale in files:
        stale.unlink(missing_ok=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="misata-run-", dir=CACHE) as tmp:
        work = Path(tmp)
        spec_path = work / f"{schema}.json"  # JSON is YAML; Misata's loader reads either
        spec_path.write_text(json.dumps(spec, indent=2, ensure_ascii=False), encoding="utf-8")
        cmd = [
            str(python.parent / "misata"),
            "generate",
            "--config",
            str(spec_path),
            "--output-dir",
            str(out_dir),
            "--format",
            "parquet",
            "--seed",
            str(SEED),
            "--oracle" if oracle else "--no-oracle",
        ]
        if batch_size is not None:
            cmd += ["--db-batch-size", str(batch_size)]
        env = {**os.environ, "MISATA_NO_HINTS": "1", "NO_COLOR": "1", "COLUMNS": "200"}
        env.pop("MISATA_JSON", None)
        wall, memory, output = _run_timed(cmd, env, work, tree_memory=tree_memory)
    rows = _count_rows(files)
    generation = re.search(r"Generation time: ([\d.]+) seconds", output)
    return {
        "tool": "misata",
        "schema": schema,
        "rows": rows,
        "wall_s": round(wall, 3),
        "rows_per_s": round(rows / wall, 1) if wall > 0 else 0.0,
        **memory,
        "batch_size": batch_size if batch_size is not None else MISATA_DEFAULT_BATCH,
        "version": _misata_version(),
        "misata_generation_s": float(generation.group(1)) if generation else None,
        "oracle": oracle,
        "email_column": email_column if schema == "people" else None,
    }


def format_table(results: list[dict[str, Any]]) -> str:
    """Results of ``run_misata`` (or any dicts with the same keys) as a plain-text table."""
    header = (
        f"{'tool':<14} {'schema':<12} {'rows':>11} {'wall_s':>8} {'rows/s':>11} "
        f"{'peak_rss_mb':>11} {'batch':>9}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        tool = f"{r['tool']} {r.get('version', '')}".strip()
        lines.append(
            f"{tool:<14} {r['schema']:<12} {r['rows']:>11,} {r['wall_s']:>8.2f} "
            f"{r['rows_per_s']:>11,.0f} {r['peak_rss_mb']:>11,.0f} {r['batch_size'] or '-':>9}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run Misata on both schemas at a small size and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="total rows per schema")
    parser.add_argument("--schema", choices=SCHEMAS, action="append", help="default: both")
    parser.add_argument(
        "--batch-size",
        type=int,
        action="append",
        help="Misata batch size(s) to try; default: Misata's own default",
    )
    parser.add_argument("--email-column", default="email", help="people's email column name")
    parser.add_argument("--oracle", action="store_true", help="keep Misata's post-write report")
    parser.add_argument("--out-dir", type=Path, default=CACHE / "misata-out")
    parser.add_argument("--json", action="store_true", help="print JSON lines, not a table")
    args = parser.parse_args(argv)
    results = []
    for schema in args.schema or SCHEMAS:
        for batch_size in args.batch_size or [None]:
            result = run_misata(
                schema,
                args.rows,
                batch_size=batch_size,
                out_dir=args.out_dir / schema,
                email_column=args.email_column,
                oracle=args.oracle,
            )
            results.append(result)
            if args.json:
                print(json.dumps(result), flush=True)
    if not args.json:
        print(format_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
