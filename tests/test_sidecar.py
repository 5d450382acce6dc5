"""The create sidecar (synthreg/registry/sidecar.py): same validation as in process, and it dies
with its parent."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import types
from pathlib import Path
from typing import Any

import pytest

from synthreg import env
from synthreg.generators.engine import generate
from synthreg.integrations import mlflow as mlflow_int
from synthreg.registry import sidecar
from synthreg.validators.suite import validate_tables


def _without_seconds(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "seconds"}


def test_the_helper_validates_exactly_as_this_process_does(
    tmp_path: Path, small_spec_model: Any, mlflow_uri: str
) -> None:
    generate(small_spec_model, tmp_path)
    helper = sidecar.start(mlflow_uri)
    assert helper is not None
    try:
        done = sidecar.Sidecar.validation(helper.validate(small_spec_model, tmp_path / "tables", "<spec>"))
    finally:
        helper.close()
    assert done is not None
    here = validate_tables(small_spec_model, tmp_path / "tables").to_dict()
    assert _without_seconds(done[0]) == _without_seconds(here)
    assert here["evaluated"] > 0


def test_turned_off_by_the_environment(monkeypatch: Any, mlflow_uri: str) -> None:
    monkeypatch.setenv(sidecar.SIDECAR, "0")
    assert sidecar.start(mlflow_uri) is None


@pytest.mark.parametrize(
    ("mode", "one_shot", "rows", "split"),
    [
        ("", True, sidecar.MLFLOW_HELPER_MAX_ROWS, True),  # a one-shot create: both helpers
        ("1", True, 1000, False),  # one helper asked for
        ("", True, sidecar.MLFLOW_HELPER_MAX_ROWS + 1, False),  # validating will keep the cores busy
        ("", False, 1000, False),  # a long-lived process imported both already
    ],
)
def test_when_mlflow_gets_its_own_helper(
    monkeypatch: Any, mlflow_uri: str, mode: str, one_shot: bool, rows: int, split: bool
) -> None:
    monkeypatch.setenv(sidecar.SIDECAR, mode)
    monkeypatch.setattr(env._Process, "one_shot", one_shot)
    helper = sidecar.start(mlflow_uri, rows=rows)
    assert helper is not None
    try:
        assert (helper._mlflow_pool is not None) == split
    finally:
        helper.close()


def test_the_mlflow_helper_logs_the_run_at_a_lower_priority(tmp_path: Path, mlflow_uri: str) -> None:
    helper = sidecar.Sidecar(mlflow_uri, mlflow_helper=True)
    try:
        assert helper._mlflow_pool is not None
        validating = helper._pool.submit(os.getpid).result(timeout=60)
        logging_pid = helper._mlflow_pool.submit(os.getpid).result(timeout=60)
        assert logging_pid not in (validating, os.getpid())
        assert helper._mlflow_pool.submit(os.nice, 0).result() == os.nice(0) + sidecar.MLFLOW_NICE
        assert helper._pool.submit(os.nice, 0).result() == os.nice(0)  # validation keeps its priority
        (tmp_path / "card.md").write_text("card")
        record = mlflow_int.RunRecord(
            experiment="synthreg/sidecar-test",
            run_name="sidecar-test@1",
            params={"rows": 3},
            metrics={"checks_failed": 0.0},
            tags={"synthreg.version": "1"},
            artifacts=[tmp_path / "card.md"],
            dataset_name="sidecar-test",
            dataset_uri=tmp_path.as_uri(),
            content_digest="ab" * 32,
        )
        wait, made = helper.start_log_version(mlflow_uri, tmp_path / "artifacts", record)
        run_id = wait()
        assert made() == run_id
    finally:
        helper.close()
    run = mlflow_int.get_run(mlflow_uri, run_id)
    assert run is not None and run["run_name"] == "sidecar-test@1" and run["status"] == "FINISHED"


def _parent_of_a_helper(pid_file: str, mlflow_uri: str) -> None:
    helper = sidecar.Sidecar(mlflow_uri, mlflow_helper=True)
    pids = [pool.submit(os.getpid).result(timeout=60) for pool in (helper._pool, helper._mlflow_pool) if pool]
    Path(pid_file + ".tmp").write_text(" ".join(map(str, pids)))  # the test needs the pids
    os.replace(pid_file + ".tmp", pid_file)
    time.sleep(120)  # killed by the test long before


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead, waiting to be reaped
        return stat.read().split()[2] != "Z"


def test_helpers_whose_create_is_sigkilled_exit_within_seconds(tmp_path: Path, mlflow_uri: str) -> None:
    pid_file = tmp_path / "helper.pid"
    proc = multiprocessing.get_context("fork").Process(
        target=_parent_of_a_helper, args=(str(pid_file), mlflow_uri)
    )
    proc.start()
    deadline = time.monotonic() + 60
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    helper_pids = [int(pid) for pid in pid_file.read_text().split()]
    assert len(helper_pids) == 2 and all(_alive(pid) for pid in helper_pids)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in helper_pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in helper_pids), "a helper outlived its killed parent"


def test_ctrl_c_does_not_reach_into_the_helper(mlflow_uri: str) -> None:
    """Ctrl-C signals the terminal's whole process group: the helper leaves it to its parent, whose
    undo then still gets the helper's answers (a KeyboardInterrupt there skipped the undo)."""
    helper = sidecar.Sidecar(mlflow_uri)
    try:
        pid = next(iter(getattr(helper._pool, "_processes", {})))
        helper._pool.submit(time.sleep, 0).result(timeout=60)  # started, initializer done
        os.kill(pid, signal.SIGINT)
        assert helper._pool.submit(os.getpid).result(timeout=60) == pid  # still there, still answering
    finally:
        helper.close()


@pytest.mark.parametrize(
    ("workers", "cluster", "env_workers", "importing", "rows", "fewer"),
    [
        (None, None, "", True, 270_000, True),  # a one-shot create of fitness's size: one core fewer
        (None, None, "", True, sidecar.SHARED_CORE_MAX_ROWS, True),
        (None, None, "", True, sidecar.SHARED_CORE_MAX_ROWS + 1, False),  # generating outlasts the imports
        (None, None, "", False, 270_000, False),  # the helpers inherited their imports: every core
        (3, None, "", True, 270_000, False),  # --workers as asked
        (None, None, "3", True, 270_000, False),  # $SYNTHREG_WORKERS as asked
        (None, "local:2", "", True, 270_000, False),  # a cluster sizes its own segments
    ],
)
def test_a_create_whose_helpers_import_leaves_them_a_core(
    monkeypatch: Any,
    small_spec_model: Any,
    workers: int | None,
    cluster: str | None,
    env_workers: str,
    importing: bool,
    rows: int,
    fewer: bool,
) -> None:
    from synthreg.generators.engine import default_workers
    from synthreg.generators.spec_io import apply_overrides
    from synthreg.registry.create import _engine_workers

    monkeypatch.setenv(env.WORKERS, env_workers)
    first = next(iter(small_spec_model.tables))
    spec = apply_overrides(
        small_spec_model,
        rows={first: rows - small_spec_model.total_rows + small_spec_model.tables[first].rows},
    )
    assert spec.total_rows == rows
    helper = types.SimpleNamespace(importing=importing)  # what a started sidecar reports
    chosen = _engine_workers(spec, workers, cluster, helper)  # type: ignore[arg-type]
    assert chosen == (max(1, default_workers() - 1) if fewer else workers)


def test_helpers_forked_from_a_process_that_imported_gx_do_not_import_it() -> None:
    import great_expectations  # noqa: F401  (as in a test session or the warm server)

    helper = sidecar.Sidecar("sqlite:///:memory:")
    try:
        assert helper.importing is False
    finally:
        helper.close()


_EARLY_SCRIPT = """
import json, os, sys
from synthreg import env
from synthreg.registry import sidecar
at_fork = []
os.register_at_fork(before=lambda: at_fork.append([m for m in ("pandas", "sqlalchemy") if m in sys.modules]))
env.mark_one_shot()
sidecar.start_early()
early = sidecar._EARLY[0]
facts = {"pids": list(early._pool._processes), "importing": early.importing}
facts["imported before the fork"] = at_fork[0] if at_fork else None
if sys.argv[1] == "adopt":
    from synthreg.generators.engine import generate
    from synthreg.generators.spec_io import load_spec
    spec = load_spec(sys.argv[2])
    generate(spec, __import__("pathlib").Path(sys.argv[3]))
    helper = sidecar.start(sys.argv[4], rows=spec.total_rows)
    facts["adopted"] = helper is early and not sidecar._EARLY
    facts["mlflow_helper"] = helper._mlflow_pool is not None
    tables = __import__("pathlib").Path(sys.argv[3]) / "tables"
    done = sidecar.Sidecar.validation(helper.validate(spec, tables, "<spec>"))
    facts["validated"] = done is not None and done[0]["evaluated"] > 0 and done[0]["success"]
    helper.close()  # as create_version does
print(json.dumps(facts), flush=True)
import atexit
atexit._run_exitfuncs()  # then no interpreter teardown, as the registry command ends (cli.app._exit_now)
os._exit(0)
"""


def _run_early(*args: str) -> dict[str, Any]:
    import json
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _EARLY_SCRIPT, *args], capture_output=True, text=True, timeout=90, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"  # exited, not yet reaped


def test_an_early_helper_no_create_adopted_is_stopped_when_the_command_exits() -> None:
    """``registry create`` forks its validation helper at the start (start_early); a command that
    never reaches the create (a refused spec) stops it on the way out, not half a second later."""
    facts = _run_early("exit")
    assert facts["importing"] is True and len(facts["pids"]) == 1
    # what GX, MLflow and this process all import, imported once, before the helpers fork
    assert facts["imported before the fork"] == ["pandas", "sqlalchemy"]
    assert all(_gone(pid) for pid in facts["pids"])


def test_the_create_adopts_the_early_helper(tmp_path: Path, small_spec: Path, mlflow_uri: str) -> None:
    facts = _run_early("adopt", str(small_spec), str(tmp_path / "out"), mlflow_uri)
    assert facts["adopted"] is True  # start() returned the early helper, and no other
    assert facts["mlflow_helper"] is True  # forked at start(), for a small spec
    assert facts["validated"] is True
    assert all(_gone(pid) for pid in facts["pids"])


def test_dvc_preload_imports_what_a_commit_uses_and_skips_a_moved_module() -> None:
    """A fresh interpreter (this session may have imported DVC already)."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from synthreg.integrations import dvc\n"
        "dvc._LATER_MODULES = ('dvc.repo.index', 'dvc.no_such_module_here')\n"
        "before = 'dvc.repo.index' in sys.modules\n"
        "dvc.preload_modules()\n"
        "print(before, 'dvc.repo.index' in sys.modules, 'dvc.no_such_module_here' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "True", "False"]
