"""The create sidecar: one helper process that pays for the slow imports while the engine runs.

Importing Great Expectations costs ~3-4 s and MLflow ~1-2 s on this project's 2-core machine:
together more than generating, checking and carding fitness.yaml's 270k rows. ``create`` forks
one helper process before the engine starts. It imports Great Expectations while the engine
generates, then validates the tables (the same ``validate_tables`` call, so GX stays the
validator of record) while the parent computes the quality metrics, plots and PII scan. A second
helper imports MLflow (and opens its store) from the start, at a lower CPU priority
(``MLFLOW_NICE``): it takes the CPU time the others leave idle (the parent's start, its waits)
and yields to them otherwise; it logs the version's run when the parent asks. With one helper
(``SYNTHREG_SIDECAR=1``, and for specs past ``MLFLOW_HELPER_MAX_ROWS``, where validating keeps
the cores busy and a third process would cost memory, not time) the validation helper imports
MLflow after validating. The order of durability is
unchanged: the parent still commits (audit event, manifest, git, DB) only after the run exists,
and a failed create deletes the run.

The helper is forked, so in a long-lived process that already imported both (the library API,
a test session) it starts with them loaded: see :func:`start`.

Anything a helper cannot do is done in the parent as before: a check that raises, a helper
process that died, or ``SYNTHREG_SIDECAR=0`` (for measuring, or for debugging in one process).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from synthreg import env
from synthreg.errors import IntegrationError
from synthreg.generators.spec import Spec
from synthreg.integrations import mlflow as mlflow_int

__all__ = ["MLFLOW_HELPER_MAX_ROWS", "MLFLOW_NICE", "SIDECAR", "Sidecar", "start"]

#: ``0`` turns the sidecar off: everything runs in the ``create`` process; ``1`` keeps one helper
#: (validation, then MLflow); unset, a one-shot ``create`` gets the MLflow helper too.
SIDECAR = "SYNTHREG_SIDECAR"
#: How much nicer than its parent the MLflow helper runs (``os.nice``): it gets the CPU time the
#: others leave idle, and little more. On 2 cores (benchmarks/bench_create.py, medians of 5) a
#: fitness.yaml create took 3.98 s with 15, 4.02 s with 5 and 4.78 s with one helper; at 10M rows
#: 8.36 s with 15, 9.14 s with 5 (the import then slowed the engine) and 8.39 s with one helper.
#: The helper also held ~80-130 MB more of the tree's peak.
MLFLOW_NICE = 15
#: Specs of more rows (all tables) get one helper: the MLflow helper saved 15% of a create's time
#: at 1M rows and 9% at 4M, nothing at 10M, where validating keeps the cores busy (and then it
#: costs only memory).
MLFLOW_HELPER_MAX_ROWS = 1 << 23


def start(tracking_uri: str, *, rows: int = 0) -> Sidecar | None:
    """A started sidecar (already importing Great Expectations), or None when turned off.

    In a long-lived process (the library API, a test session) the imports are paid here, once:
    the forked helper inherits them, and later creates get the overlap for free (and one helper
    is enough). A one-shot ``create`` of at most ``MLFLOW_HELPER_MAX_ROWS`` ``rows`` also gets
    the MLflow helper."""
    mode = os.environ.get(SIDECAR, "")
    if mode == "0":
        return None
    if not env.one_shot():
        _preload("validators", tracking_uri)
        _preload("mlflow", tracking_uri)
    split = env.one_shot() and mode != "1" and rows <= MLFLOW_HELPER_MAX_ROWS
    return Sidecar(tracking_uri, mlflow_helper=split)


class Sidecar:
    """One forked process (two with ``mlflow_helper``); each runs its tasks in submission order."""

    def __init__(self, tracking_uri: str, *, mlflow_helper: bool = False) -> None:
        self._pool = _helper(0)
        self._tracking_uri = tracking_uri
        self._pool.submit(_preload, "validators", tracking_uri)
        self._mlflow_pool = _helper(MLFLOW_NICE) if mlflow_helper else None
        if self._mlflow_pool is not None:
            self._mlflow_pool.submit(_preload, "mlflow", tracking_uri)

    def validate(
        self, spec: Spec, tables_dir: Path, source: str, from_parts: dict[str, Any] | None = None
    ) -> Future[Any]:
        """Start validating (merging what the generation workers found, ``from_parts``); then, with
        no MLflow helper, import MLflow, ready for :meth:`log_version`."""
        future = self._pool.submit(_call, _validate, spec, tables_dir, source, from_parts)
        if self._mlflow_pool is None:
            self._pool.submit(_preload, "mlflow", self._tracking_uri)
        return future

    @staticmethod
    def validation(future: Future[Any]) -> tuple[dict[str, Any], float] | None:
        """``(validation dict, seconds the helper spent)``; None if the helper could not tell
        (the caller then validates in its own process, and gets the error there)."""
        try:
            outcome = future.result()
        except Exception:  # the helper died (BrokenProcessPool) or could not pickle
            return None
        return outcome[1] if outcome[0] == "ok" else None

    def log_version(self, tracking_uri: str, artifact_root: Path, record: mlflow_int.RunRecord) -> str:
        """The version's MLflow run, logged by the helper (MLflow is imported there already)."""
        return self.start_log_version(tracking_uri, artifact_root, record)[0]()

    def start_log_version(
        self, tracking_uri: str, artifact_root: Path, record: mlflow_int.RunRecord
    ) -> tuple[Callable[[], str], Callable[[], str | None]]:
        """Start logging the version's run in the helper, while this process does other work.

        Returns ``(wait, made)``: ``wait()`` gives the run's id (logging from this process if the
        helper could not, and raising what logging raised); ``made()`` gives the id of a run the
        helper made, or None, and never logs (for an undo)."""
        try:
            pool = self._mlflow_pool or self._pool
            task = pool.submit(_call, mlflow_int.log_version, tracking_uri, artifact_root, record)
        except Exception:  # the helper is gone: log from this process, when asked
            return (lambda: mlflow_int.log_version(tracking_uri, artifact_root, record)), (lambda: None)

        def wait() -> str:
            try:
                outcome = task.result()
            except Exception:  # the helper died meanwhile: log from this process
                return mlflow_int.log_version(tracking_uri, artifact_root, record)
            if outcome[0] == "ok":
                return str(outcome[1])
            kind, message = outcome[1], outcome[2]
            if kind == "IntegrationError":  # the server's answer, with its URL and fix
                raise IntegrationError(message)
            return mlflow_int.log_version(tracking_uri, artifact_root, record)  # reproduce it here

        def made() -> str | None:
            try:
                outcome = task.result()
            except BaseException:  # the helper died, or a second Ctrl-C: nothing to name
                return None
            return str(outcome[1]) if outcome[0] == "ok" else None

        return wait, made

    def close(self) -> None:
        """Stop the helpers now, whatever they are doing."""
        processes = []
        for pool in (self._pool, self._mlflow_pool):
            if pool is not None:
                processes += list(getattr(pool, "_processes", {}).values())
                pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.kill()
            process.join(timeout=5)


def _helper(nice: int) -> ProcessPoolExecutor:
    """A pool of one forked helper process (spawned where fork is not), ``nice`` nicer than this."""
    return ProcessPoolExecutor(
        max_workers=1,
        mp_context=env.worker_context(),
        initializer=_in_helper,
        initargs=(os.getpid(), nice),
    )


def _in_helper(parent: int, nice: int = 0) -> None:
    """Start-up of a helper process, right after the fork.

    The MLflow store's pooled connections inherited from the parent are dropped (the helper opens
    its own). And a create killed with SIGKILL (or by the OOM killer) cannot stop its helper: the
    helper watches for that and exits within half a second, instead of living on as an orphan
    (and holding the pipes its parent's own parent waits on)."""
    import signal
    import threading

    # Ctrl-C reaches the terminal's whole process group: the parent decides (it undoes, and stops
    # the helper with close()); a KeyboardInterrupt here would reach the parent's undo instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if nice:
        os.nice(nice)
    mlflow_int.forget_inherited_connections()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="synthreg-sidecar-watch", daemon=True).start()


def _preload(what: str, tracking_uri: str) -> None:
    if what == "validators":
        from synthreg.validators.gx_runner import preload

        preload()
    else:
        mlflow_int.preload(tracking_uri)


def _validate(
    spec: Spec, tables_dir: Path, source: str, from_parts: dict[str, Any] | None
) -> tuple[dict[str, Any], float]:
    from synthreg.validators.suite import validate_tables

    started = time.perf_counter()
    result = validate_tables(spec, tables_dir, source=source, from_parts=from_parts).to_dict()
    return result, time.perf_counter() - started


def _call(fn: Any, *args: Any) -> tuple[Any, ...]:
    """``("ok", value)``, or ``("error", type name, message)``: exceptions do not always pickle."""
    try:
        return "ok", fn(*args)
    except Exception as exc:
        return "error", type(exc).__name__, str(exc)
