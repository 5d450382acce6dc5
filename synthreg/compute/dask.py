"""Segments on a Dask cluster: ``--cluster tcp://scheduler:8786`` or ``--cluster local:N``.

The futures API over the same segments the process pool uses: ``client.map`` one task per
segment, each task writes its own part (a name fixed by table and segment, written to a temporary
name and renamed, so a retried task rewrites the same bytes; or, with a ``PartStage``, uploaded
to S3 under a fixed key, see ``generators/staging.py``), and only small facts come back to
the client (rows, block digests, file hashes, the worker's peak memory). A worker that dies mid-task is
replaced and its task rerun by the scheduler (``distributed.scheduler.allowed-failures``).
Dask is an optional extra (``pip install 'synthreg[dask]'``), imported only here.

A cluster reached by its address is checked before any task: it must have a worker (a scheduler
without one takes tasks and never runs them), and every worker must run what this machine runs
where the data could depend on it (:func:`environment`): the same Python minor version, the same
releases of the libraries that make, hash and check the rows, and the same synthreg code (a
digest of its source: a checkout with edits keeps its version number). Otherwise the version's
content digest would not be the one the process pool gives for the same spec and seed.

Dask's nanny starts each worker with ``MALLOC_TRIM_THRESHOLD_=65536``, which also turns off
glibc's growing mmap threshold: every NumPy array over 128 KiB is then a fresh ``mmap`` whose
pages the kernel faults in and zeroes: a worker spent 3.39 CPU-s on 20M rows that the pool
makes with 2.32 (``benchmarks/bench_dask.py``, its ``tcp 1`` row before this change). A
``local:N`` cluster is started without it, and a task on any other worker whose environment
carries that default first sets glibc's thresholds to where the dynamic ones settle
(:func:`steady_malloc`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeGuard

from synthreg.errors import UsageError

__all__ = ["check_cluster", "client_for", "environment", "mapper", "remote", "run_tasks"]

#: After a failed task, how long the running ones get to end before the error is raised.
_SETTLE_S = 60
#: How long a cluster reached by its address gets to have at least one worker.
WORKER_WAIT_S = 30.0
#: The distributions a worker must have in the same release as this machine: those that make
#: the rows and write the parts (numpy, pyarrow), count and check them (pandas, duckdb, Great
#: Expectations), and carry the tasks (distributed, cloudpickle).
MATCHED = ("numpy", "pyarrow", "pandas", "duckdb", "great_expectations", "distributed", "cloudpickle")
#: The value Dask's nanny gives ``MALLOC_TRIM_THRESHOLD_`` (``distributed.nanny.pre-spawn-environ``).
DASK_TRIM_DEFAULT = "65536"
#: glibc's bound for its dynamic mmap threshold on 64-bit (``DEFAULT_MMAP_THRESHOLD_MAX``); the
#: trim threshold is twice it, as glibc keeps it when the threshold moves.
MMAP_THRESHOLD = 32 * 2**20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (malloc.h)


def _parse(cluster: str) -> tuple[str, int]:
    if cluster.startswith("local:"):
        count = cluster.removeprefix("local:")
        if not count.isdigit() or not 1 <= int(count) <= 256:
            raise UsageError(f"--cluster {cluster}: use local:N with N workers (1..256), e.g. local:2")
        return "local", int(count)
    if cluster.startswith(("tcp://", "tls://")):
        return "remote", 0
    raise UsageError(f"--cluster {cluster}: use tcp://HOST:PORT (a Dask scheduler) or local:N")


def remote(cluster: str | None) -> TypeGuard[str]:
    """Whether ``cluster`` names a cluster reached by its address (``tcp://``, ``tls://``), whose
    workers may be other machines; not ``local:N`` (started here) nor None (the process pool)."""
    return bool(cluster) and not str(cluster).startswith("local:")


def check_cluster(cluster: str) -> None:
    """A bad ``--cluster`` value, or Dask not installed: UsageError (exit 2), before any work."""
    _parse(cluster)
    import importlib.util

    if importlib.util.find_spec("distributed") is None:
        raise UsageError("--cluster needs Dask: pip install 'synthreg[dask]'")


@contextlib.contextmanager
def client_for(cluster: str, wait_s: float | None = None) -> Iterator[Any]:
    """A client of ``cluster``; a ``local:N`` cluster is started here and stopped after. A cluster
    reached by its address is checked first (``_check_workers``): ``wait_s`` (default
    ``WORKER_WAIT_S``) bounds the wait for its scheduler and for a first worker."""
    kind, workers = _parse(cluster)
    wait_s = WORKER_WAIT_S if wait_s is None else wait_s
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise UsageError(f"--cluster needs Dask: pip install 'synthreg[dask]' ({exc})") from exc
    settings = {
        "distributed.worker.daemon": False,
        "distributed.logging.distributed": "error",
        # None: not set for the workers, nor (the nanny sets it here first) in this process
        "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    }
    with dask.config.set(settings):
        if kind == "local":
            with (
                LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                    silence_logs=40,
                ) as local,
                Client(local) as client,
            ):  # fmt: skip
                yield client
        else:
            try:
                client = Client(cluster, timeout=wait_s)
            except OSError as exc:
                raise UsageError(f"--cluster {cluster}: no Dask scheduler answered ({exc})") from exc
            with client:
                _check_workers(client, cluster, wait_s)
                yield client


def _probe() -> Callable[[], dict[str, str | None]]:
    """The function a worker runs to say what it runs. Made here, so that cloudpickle sends it by
    value: a worker without synthreg (or with another one) still runs it."""
    names = MATCHED

    def probe() -> dict[str, str | None]:
        import hashlib
        import importlib.metadata
        import importlib.util
        import sys
        from pathlib import Path

        found: dict[str, str | None] = {"python": "{}.{}".format(*sys.version_info[:2])}
        for name in names:
            try:
                found[name] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                found[name] = None
        spec = importlib.util.find_spec("synthreg")
        if spec is None or not spec.submodule_search_locations:
            found["synthreg"] = None
            return found
        root = Path(next(iter(spec.submodule_search_locations)))
        digest = hashlib.sha256()
        for path in sorted(root.rglob("*.py")):
            data = path.read_bytes()
            digest.update(f"{path.relative_to(root).as_posix()}\0{len(data)}\0".encode() + data)
        try:
            release = importlib.metadata.version("synthreg")
        except importlib.metadata.PackageNotFoundError:
            release = "?"
        found["synthreg"] = f"{release} (code {digest.hexdigest()[:12]})"
        return found

    return probe


@functools.cache
def environment() -> dict[str, str | None]:
    """What this machine runs, as a worker is asked: the Python minor version, the release of each
    of ``MATCHED`` (None: not installed), and synthreg's release with a digest of its code."""
    return _probe()()


def differences(theirs: Mapping[str, Any], ours: Mapping[str, Any]) -> list[str]:
    """What a worker runs that this machine does not, as ``name THEIRS (here OURS)``."""

    def said(value: Any) -> str:
        return "not installed" if value is None else str(value)

    return [f"{k} {said(theirs.get(k))} (here {said(v)})" for k, v in ours.items() if theirs.get(k) != v]


def _check_workers(client: Any, cluster: str, wait_s: float) -> None:
    """Refuse (UsageError, exit 2) a cluster with no worker, or with a worker whose environment
    differs from this machine's, before any task is sent. Workers that join later are not checked."""
    try:
        client.wait_for_workers(1, timeout=wait_s)
    except TimeoutError as exc:
        raise UsageError(
            f"--cluster {cluster}: the scheduler has no worker (waited {wait_s:g} s); start "
            f"one with 'dask worker {cluster}' on a machine with this synthreg installed"
        ) from exc
    answers = client.run(_probe(), on_error="return")
    ours = environment()
    wrong = {
        address: (
            [f"it could not say ({type(found).__name__}: {found})"]
            if isinstance(found, BaseException)
            else differences(found, ours)
        )
        for address, found in sorted(answers.items())
    }
    wrong = {address: found for address, found in wrong.items() if found}
    if wrong:
        address, found = next(iter(wrong.items()))
        raise UsageError(
            f"--cluster {cluster}: {len(wrong)} of {len(answers)} workers run other software than this "
            f"machine, so the data they make could differ from what it would make; worker {address}: "
            f"{'; '.join(found)}. Install on the workers what is installed here (the same "
            "requirements and this synthreg), or run without --cluster"
        )


def run_tasks(
    cluster: str,
    fn: Callable[..., Any],
    args: Sequence[tuple[Any, ...]],
    on_done: Callable[[int, Any], None] | None = None,
) -> list[Any]:
    """``fn(*a)`` for each ``a`` in ``args`` on the cluster; results in the order of ``args``."""
    with client_for(cluster) as client:
        from distributed import as_completed

        run = uuid.uuid4().hex[:8]
        columns = list(zip(*args, strict=True)) if args else []
        keys = [f"synthreg-segment-{run}-{i}" for i in range(len(args))]
        futures = client.map(functools.partial(_in_worker, fn), *columns, key=keys, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        results: dict[int, Any] = {}
        try:
            for future in as_completed(futures):
                i = index[future.key]
                results[i] = future.result()
                if on_done is not None:
                    on_done(i, results[i])
        except Exception:
            _settle(client, futures)
            raise
        return [results[i] for i in range(len(args))]


def _in_worker(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` on a worker, its allocator made steady first (:func:`steady_malloc`)."""
    steady_malloc()
    return fn(*args)


@functools.cache
def steady_malloc() -> bool:
    """In a process started with Dask's default ``MALLOC_TRIM_THRESHOLD_``, set glibc's mmap and
    trim thresholds to where its dynamic ones settle (``MMAP_THRESHOLD``), once; True if set. Not
    where the variable has another value (someone chose it) or is unset, nor off glibc."""
    if os.environ.get("MALLOC_TRIM_THRESHOLD_") != DASK_TRIM_DEFAULT:
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        done = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(
            _M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD
        )
    except (OSError, AttributeError):  # not glibc
        return False
    return bool(done)


def _settle(client: Any, futures: list[Any]) -> None:
    """After a failed task: cancel the tasks not started yet, and let those running end (at most
    ``_SETTLE_S``; they cannot be stopped on their workers), so that what they write is there
    for the caller's cleanup, and nothing starts after it."""
    from distributed import wait

    with contextlib.suppress(Exception):
        running = {key for keys in client.processing().values() for key in keys}
        client.cancel([f for f in futures if f.key not in running and not f.done()])
        wait([f for f in futures if f.key in running], timeout=_SETTLE_S)


@contextlib.contextmanager
def mapper(
    cluster: str, prefix: str = "synthreg"
) -> Iterator[Callable[[Callable[..., Any], Sequence[tuple[Any, ...]]], list[Any]]]:
    """One client of ``cluster`` for several rounds of tasks: ``run(fn, args)`` runs ``fn(*a)`` for
    each ``a`` on the cluster and returns the results in order (task keys
    ``<prefix>-<fn>-<id>-<i>``, which the scheduler groups by ``<prefix>-<fn>``)."""
    with client_for(cluster) as client:

        def run(fn: Callable[..., Any], args: Sequence[tuple[Any, ...]]) -> list[Any]:
            if not args:
                return []
            run_id = f"{prefix}-{fn.__name__.strip('_')}-{uuid.uuid4().hex[:8]}"
            keys = [f"{run_id}-{i}" for i in range(len(args))]
            futures = client.map(
                functools.partial(_in_worker, fn), *zip(*args, strict=True), key=keys, pure=False
            )
            try:
                return list(client.gather(futures))
            except Exception:
                _settle(client, futures)
                raise

        yield run
