"""What DVC costs a `create` as a workspace grows: tracking + `dvc push` of one new version in a
workspace that already holds N versions' stages, for both layouts side by side.

- `root`: every stage in the root `dvc.yaml`/`dvc.lock`, the new one added with DVC's
  `stage.add` + `commit` (synthreg's layout before per-version files; DVC parses and rewrites
  both files several times per call).
- `version`: every stage in its own `data/d/<stage>/dvc.yaml` + `dvc.lock`, the new one written by
  `dvc.track_stage` (synthreg's layout now).

Each workspace is a real git + DVC repository (local remote); the N earlier stages are written
straight into their files (their data need not exist), then one new version of one small file is
tracked and pushed, as `create` does. Prints seconds per N, medians of --runs runs.

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
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _entries(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A stage and its lock entry for version ``name`` of dataset ``d`` (root-relative paths)."""
    rel = f"data/d/{name}"
    stage = {
        "cmd": f"python -m synthreg materialize {rel}",
        "deps": [f"{rel}/spec.yaml"],
        "outs": [f"{rel}/tables"],
    }
    lock = {
        "cmd": stage["cmd"],
        "deps": [{"path": f"{rel}/spec.yaml", "hash": "md5", "md5": "0" * 32, "size": 10}],
        "outs": [
            {"path": f"{rel}/tables", "hash": "md5", "md5": "1" * 32 + ".dir", "size": 100, "nfiles": 2}
        ],
    }
    return stage, lock


def _workspace(root: Path, stages: int, layout: str) -> None:
    from synthreg.integrations import dvc

    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    dvc.init_workspace(root, "local", str(root / "remote"))
    names = [f"d-v{k}" for k in range(stages)]
    if layout == "root":
        entries = {n: _entries(n) for n in names}
        pipeline = {n: stage for n, (stage, _) in entries.items()}
        lock = {n: entry for n, (_, entry) in entries.items()}
        (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": pipeline}, sort_keys=False))
        (root / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": lock}, sort_keys=False))
    else:
        for n in names:
            stage, entry = _entries(n)
            folder = root / "data" / "d" / n
            folder.mkdir(parents=True)
            pipeline = {"stages": {n: {**stage, "wdir": "../../.."}}}
            (folder / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
            (folder / "dvc.lock").write_text(
                yaml.safe_dump({"schema": "2.0", "stages": {n: entry}}, sort_keys=False)
            )
    new = root / "data" / "d" / "new"
    (new / "tables").mkdir(parents=True)
    (new / "tables" / "part-00000.parquet").write_bytes(b"x" * 1000)
    (new / "spec.yaml").write_text("seed: 1\n")


def _track(root: Path, layout: str) -> str:
    """Track the new version as that layout does; the DVC target to push."""
    from synthreg.integrations import dvc

    stage, _ = _entries("new")
    if layout == "version":
        dvc.track_stage(root, "data/d/new/dvc.yaml", "d-new", stage["cmd"], stage["deps"], stage["outs"])
        return "data/d/new/dvc.yaml:d-new"
    with dvc._repo(root) as repo:
        repo.stage.add(name="d-new", force=True, **stage)  # type: ignore[attr-defined]
        repo.commit("d-new", force=True)  # type: ignore[attr-defined]
    return "d-new"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, nargs="+", default=[5, 50, 200])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--layouts", nargs="+", choices=["root", "version"], default=["root", "version"])
    args = parser.parse_args()
    from ruamel.yaml import YAML

    from synthreg.integrations import dvc

    dvc.preload_modules()
    libyaml = "C" in YAML(typ="safe").Parser.__name__
    print(f"ruamel.yaml safe loader in C (ruamel.yaml.clib): {libyaml}")
    print(f"{'layout':>8}{'stages':>7}{'track s':>10}{'push s':>9}{'total s':>10}")
    base = Path(tempfile.mkdtemp(prefix="bench-dvc-"))
    try:
        for n in args.stages:
            for layout in args.layouts:
                track, push = [], []
                for run in range(args.runs):
                    root = base / f"ws-{layout}-{n}-{run}"
                    _workspace(root, n, layout)
                    started = time.perf_counter()
                    target = _track(root, layout)
                    track.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    dvc.push(root, [target])
                    push.append(time.perf_counter() - started)
                t, p = statistics.median(track), statistics.median(push)
                print(f"{layout:>8}{n:>7}{t:>10.2f}{p:>9.2f}{t + p:>10.2f}", flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
