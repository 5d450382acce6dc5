"""The create sidecar: one helper process that pays for the slow imports while the engine runs.

Importing Great Expectations costs ~3-4 s and MLflow ~1-2 s on this project's 2-core machine:
together more than generating, checking and carding fitness.yaml's 270k rows. ``create`` forks
one helper process before the engine starts. It imports Great Expectations while the engine
generates, then validates the tables (the same ``validate_tables`` call, so GX stays the
validator of record) while the parent computes the quality metrics, plots and PII scan; then it
imports MLflow while the parent writes the card and tracks the data with DVC, and logs the
version's run when the parent asks. The order of durability is unchanged: the parent still
commits (audit event, manifest, git, DB) only after the run exists, and a failed create deletes
the run.

The helper is forked, so in a long-lived process that already imported both (the library API,
a test session) it starts with them loaded: see :func:`start`.

Anything the helper cannot do is done in the parent as before: a check that raises, a helper
process that died, or ``SYNTHREG_SIDECAR=0`` (for measuring, or for debugging in one process).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from synthreg import env
from synthreg.errors import IntegrationError
from synthreg.generators.spec import Spec
from synthreg.integrations import mlflow as mlflow_int

__all__ = ["SIDECAR", "Sidecar", "start"]

#: ``0`` turns the sidecar off: everything runs in the ``create`` process.
SIDECAR = "SYNTHREG_SIDECAR"


def start(tracking_uri: str) -> Sidecar | None:
    """A started sidecar (already importing Great Expectations), or None when turned off.

    In a long-lived process (the library API, a test session) the imports are paid here, once:
    the forked helper inherits them, and later creates get the overlap for free."""
    if os.environ.get(SIDECAR, "1") == "0":
        return None
    if not env.one_shot():
        _preload("validators", tracking_uri)
        _preload("mlflow", tracking_uri)
    return Sidecar(tracking_uri)


class Sidecar:
    """One forked process; tasks run in the order they were submitted."""

    def __init__(self, tracking_uri: str) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        self._pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context(method),
            initializer=_in_helper,
            initargs=(os.getpid(),),
        )
        self._tracking_uri = tracking_uri
        self._pool.submit(_preload, "validators", tracking_uri)

    def validate(
        self, spec: Spec, tables_dir: Path, source: str, from_parts: dict[str, Any] | None = None
    ) -> Future[Any]:
        """Start validating (merging what the generation workers found, ``from_parts``); then import
        MLflow, ready for :meth:`log_version`."""
        future = self._pool.submit(_call, _validate, spec, tables_dir, source, from_parts)
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
            task = self._pool.submit(_call, mlflow_int.log_version, tracking_uri, artifact_root, record)
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
        """Stop the helper now, whatever it is doing."""
        processes = list(getattr(self._pool, "_processes", {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.kill()
            process.join(timeout=5)


def _in_helper(parent: int) -> None:
    """Start-up of the helper process, right after the fork.

    The MLflow store's pooled connections inherited from the parent are dropped (the helper opens
    its own). And a create killed with SIGKILL (or by the OOM killer) cannot stop its helper: the
    helper watches for that and exits within half a second, instead of living on as an orphan
    (and holding the pipes its parent's own parent waits on)."""
    import signal
    import threading

    # Ctrl-C reaches the terminal's whole process group: the parent decides (it undoes, and stops
    # the helper with close()); a KeyboardInterrupt here would reach the parent's undo instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
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
