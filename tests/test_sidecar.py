"""The create sidecar (synthreg/registry/sidecar.py): same validation as in process, and it dies
with its parent."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

from synthreg.generators.engine import generate
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


def _parent_of_a_helper(pid_file: str, mlflow_uri: str) -> None:
    helper = sidecar.Sidecar(mlflow_uri)
    pids = list(getattr(helper._pool, "_processes", {}))  # the test needs the pid
    Path(pid_file).write_text(str(pids[0]))
    time.sleep(120)  # killed by the test long before


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead, waiting to be reaped
        return stat.read().split()[2] != "Z"


def test_a_helper_whose_create_is_sigkilled_exits_within_seconds(tmp_path: Path, mlflow_uri: str) -> None:
    pid_file = tmp_path / "helper.pid"
    proc = multiprocessing.get_context("fork").Process(
        target=_parent_of_a_helper, args=(str(pid_file), mlflow_uri)
    )
    proc.start()
    deadline = time.monotonic() + 60
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    helper_pid = int(pid_file.read_text())
    assert _alive(helper_pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL
    deadline = time.monotonic() + 5
    while _alive(helper_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(helper_pid), "the helper outlived its killed parent"


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
