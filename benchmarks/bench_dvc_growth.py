"""What DVC costs a `create` as a workspace grows: `dvc.track_stage` + `dvc.push` of one new
version in a workspace whose `dvc.yaml`/`dvc.lock` already hold N versions' stages.

Each workspace is a real git + DVC repository (local remote); the N earlier stages are written
straight into `dvc.yaml` and `dvc.lock` (their data need not exist for adding a stage), then one
new version of one small file is tracked and pushed, as `create` does. Prints seconds per N,
medians of --runs runs.

    python benchmarks/bench_dvc_growth.py                      # 5, 50, 200 stages
    python benchmarks/bench_dvc_growth.py --stages 10 100 1000 --runs 1
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _workspace(root: Path, stages: int) -> None:
    from synthreg.integrations import dvc

    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    dvc.init_workspace(root, "local", str(root / "remote"))
    names = [f"d-v{k}" for k in range(stages)]
    pipeline = {
        n: {"cmd": f"python -m synthreg materialize data/d/{n}", "deps": [f"data/d/{n}/spec.yaml"],
            "outs": [f"data/d/{n}/tables"]}
        for n in names
    }  # fmt: skip
    lock = {
        n: {"cmd": pipeline[n]["cmd"],
            "deps": [{"path": f"data/d/{n}/spec.yaml", "hash": "md5", "md5": "0" * 32, "size": 10}],
            "outs": [{"path": f"data/d/{n}/tables", "hash": "md5", "md5": "1" * 32 + ".dir", "size": 100,
                      "nfiles": 2}]}
        for n in names
    }  # fmt: skip
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": pipeline}, sort_keys=False))
    (root / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": lock}, sort_keys=False))
    new = root / "data" / "d" / "new"
    (new / "tables").mkdir(parents=True)
    (new / "tables" / "part-00000.parquet").write_bytes(b"x" * 1000)
    (new / "spec.yaml").write_text("seed: 1\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, nargs="+", default=[5, 50, 200])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from ruamel.yaml import YAML

    from synthreg.integrations import dvc

    dvc.preload_modules()
    libyaml = "C" in YAML(typ="safe").Parser.__name__
    print(f"ruamel.yaml safe loader in C (ruamel.yaml.clib): {libyaml}")
    print(f"{'stages':>7}{'track s':>10}{'push s':>9}{'total s':>10}")
    base = Path(tempfile.mkdtemp(prefix="bench-dvc-"))
    try:
        for n in args.stages:
            track, push = [], []
            for run in range(args.runs):
                root = base / f"ws-{n}-{run}"
                _workspace(root, n)
                started = time.perf_counter()
                cmd = "python -m synthreg materialize data/d/new"
                dvc.track_stage(root, "d-new", cmd, ["data/d/new/spec.yaml"], ["data/d/new/tables"])
                track.append(time.perf_counter() - started)
                started = time.perf_counter()
                dvc.push(root, ["d-new"])
                push.append(time.perf_counter() - started)
            t, p = statistics.median(track), statistics.median(push)
            print(f"{n:>7}{t:>10.2f}{p:>9.2f}{t + p:>10.2f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
