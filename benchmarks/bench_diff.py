"""Diff benchmark: wall time and peak RSS of ``diff_versions`` on two 10M-row versions.

Generates two versions of ``specs/three_table.yaml`` scaled to ``--scale`` (10 = 10M
rows: users 1M, orders 5M, payments 4M), the second with another seed, into a
temporary directory; then runs ``diff_versions`` (with plots) in a fresh subprocess, so
the peak RSS is the diff's own; prints the figures and removes the data.

    python benchmarks/bench_diff.py                      # 10M rows, targets < 60 s and < 2 GB
    python benchmarks/bench_diff.py --drift              # v2 also shifts two columns: plots are made
    python benchmarks/bench_diff.py --scale 1 --json build/bench_diff.json --check
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from synthreg.generators.spec import Spec

HERE = Path(__file__).resolve().parent
SPEC = HERE / "specs" / "three_table.yaml"
TARGET_S = 60.0
TARGET_RSS_MB = 2048.0

_CHILD = """
import json, resource, sys, time
from pathlib import Path
from synthreg.registry.diff import diff_versions
root = Path(sys.argv[1])
start = time.perf_counter()
result = diff_versions(root / "v1", root / "v2", "bench@v1", "bench@v2", plots_dir=root / "plots")
wall = time.perf_counter() - start
print(json.dumps({
    "wall_s": wall,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "summary": result.summary["text"],
    "rows": result.summary["rows"],
    "rows_diff": {t: {k: v for k, v in d["rows_diff"].items() if k != "examples"}
                  for t, d in result.tables.items()},
    "plots": len(list((root / "plots").glob("*.png"))),
}))
"""


def _drifted(spec: Spec) -> Spec:
    """The spec with orders' amounts and statuses shifted, so columns change and get plots."""
    from synthreg.generators.spec_io import parse_spec

    data = spec.model_dump(by_alias=True)
    orders = data["tables"]["orders"]["columns"]
    orders["amount"]["distribution"]["params"]["mean"] = 3.8
    orders["status"]["values"] = {"delivered": 0.7, "shipped": 0.15, "cancelled": 0.1, "returned": 0.05}
    return parse_spec(data)


def make_version(directory: Path, scale: float, seed: int, *, drift: bool = False) -> dict[str, object]:
    """Generate one version directory (tables, spec.yaml, a minimal manifest.json)."""
    from synthreg.generators.engine import ENGINE_MODEL, generate
    from synthreg.generators.spec_io import apply_overrides, load_spec

    spec = apply_overrides(load_spec(SPEC), scale=scale, seed=seed)
    spec = _drifted(spec) if drift else spec
    result = generate(spec, directory)
    (directory / "spec.yaml").write_text(spec.frozen_yaml())
    manifest = {
        "dataset": "bench",
        "version": seed,
        "seed": spec.seed,
        "spec_sha256": spec.sha256(),
        "content_digest": result.content_digest,
        "tables": {n: {"rows": t.rows, "digest": t.digest} for n, t in result.tables.items()},
        "generation": {"model": ENGINE_MODEL, "params": {"rows": result.rows, **result.params}},
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return {"rows": sum(result.rows.values()), "generate_s": round(result.seconds, 2)}


def run(scale: float, *, drift: bool = False) -> dict[str, object]:
    """Generate both versions, diff them in a subprocess, remove the data; return the figures."""
    with tempfile.TemporaryDirectory(prefix="synthreg-bench-diff-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        made = [make_version(root / f"v{seed}", scale, seed, drift=drift and seed == 2) for seed in (1, 2)]
        generate_s = time.perf_counter() - started
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, str(root)], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise SystemExit(f"the diff subprocess failed:\n{proc.stderr}")
        if proc.stderr.strip():
            print(proc.stderr, file=sys.stderr)
        result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    result.update(scale=scale, drift=drift, versions=made, generate_both_s=round(generate_s, 2))
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print wall seconds and peak RSS."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scale", type=float, default=10.0, help="10 = 10M rows in all (default)")
    parser.add_argument("--drift", action="store_true", help="also shift two columns of v2 (plots get made)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--check", action="store_true", help=f"exit 1 above {TARGET_S:g} s or {TARGET_RSS_MB:g} MB"
    )
    args = parser.parse_args(argv)
    result = run(args.scale, drift=args.drift)
    wall, rss = float(result["wall_s"]), float(result["peak_rss_mb"])  # type: ignore[arg-type]
    rows = result["rows"]
    assert isinstance(rows, dict)
    print(f"diff of {rows['a']:,} vs {rows['b']:,} rows: wall {wall:.1f} s, peak RSS {rss:.0f} MB")
    print(f"targets: < {TARGET_S:g} s, < {TARGET_RSS_MB:g} MB")
    print(result["summary"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"diff": result}, indent=2) + "\n")
    return 1 if args.check and (wall > TARGET_S or rss > TARGET_RSS_MB) else 0


if __name__ == "__main__":
    raise SystemExit(main())
