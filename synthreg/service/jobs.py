"""Generation jobs of ``registry serve``: a bounded queue of ``registry create`` processes.

Each job is the CLI's own ``create`` in a child process (the same code path, crash-safe as the CLI
is), run as the authenticated user (``SYNTHREG_ACTOR``). A job lives in the server, not in a
browser: closing the page does not stop it. Cancelling a queued job drops it; cancelling a running
one sends SIGTERM, which ``create`` turns into its undo (staging removed, nothing registered).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthreg import env, progress

__all__ = ["Job", "JobQueue"]


@dataclass
class Job:
    """One ``create`` asked for through the API."""

    id: str
    dataset: str
    user: str
    args: list[str]
    state: str = "queued"  # queued | running | succeeded | failed | cancelled
    stage: str = "queued"
    submitted_at: float = field(default_factory=time.time)
    started_at: float | None = None
    ended_at: float | None = None
    rows_done: int = 0
    rows_total: int = 0
    result: dict[str, Any] | None = None
    error: str = ""
    exit_code: int | None = None
    _proc: subprocess.Popen[str] | None = field(default=None, repr=False)
    _cancel: bool = field(default=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (no process handles)."""
        return {
            "id": self.id,
            "dataset": self.dataset,
            "user": self.user,
            "state": self.state,
            "stage": self.stage,
            "rows_done": self.rows_done,
            "rows_total": self.rows_total,
            "submitted_at": self.submitted_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "seconds": round((self.ended_at or time.time()) - (self.started_at or time.time()), 3),
            "result": self.result,
            "error": self.error,
            "exit_code": self.exit_code,
        }


class JobQueue:
    """At most ``workers`` creates at a time; the rest wait in order."""

    def __init__(
        self, root: Path, workers: int = 2, on_change: Callable[[Job, str], None] | None = None
    ) -> None:
        self.root = root
        self.on_change = on_change or (lambda job, event: None)
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="synthreg-job")
        self._dir = root / ".registry" / "jobs"

    def submit(self, dataset: str, user: str, spec_text: str, options: list[str]) -> Job:
        """Queue a create of ``dataset`` from ``spec_text`` (YAML) as ``user``."""
        job_id = uuid.uuid4().hex[:12]
        folder = self._dir / job_id
        folder.mkdir(parents=True)
        (folder / "spec.yaml").write_text(spec_text, encoding="utf-8")
        args = ["create", dataset, "--spec", str(folder / "spec.yaml"), "--json", *options]
        job = Job(job_id, dataset, user, args)
        with self._lock:
            self.jobs[job_id] = job
        self._pool.submit(self._run, job)
        return job

    def _run(self, job: Job) -> None:
        with self._lock:
            if job._cancel:
                return
            job.state, job.stage, job.started_at = "running", "generating", time.time()
            self.on_change(job, "started")
            out_file = open(self._dir / job.id / "out.json", "w+")  # noqa: SIM115
            job._proc = subprocess.Popen(
                [sys.executable, "-m", "synthreg", "-C", str(self.root), *job.args],
                env={**os.environ, env.ACTOR: job.user, progress.PROGRESS: "1"},
                stdout=out_file,
                stderr=subprocess.PIPE,
                text=True,
            )
        proc, tail = job._proc, list[str]()
        assert proc.stderr is not None
        for line in proc.stderr:  # progress lines as they come; the rest is kept for an error
            fields = progress.parse(line)
            if fields is None:
                tail = [*tail[-50:], line]
                continue
            job.stage = str(fields.get("stage", job.stage))
            job.rows_done = int(fields.get("rows_done", job.rows_done))  # type: ignore[call-overload]
            job.rows_total = int(fields.get("rows_total", job.rows_total))  # type: ignore[call-overload]
        proc.wait()
        out_file.seek(0)
        out, err = out_file.read(), "".join(tail)
        out_file.close()
        with self._lock:
            job.exit_code, job.ended_at = job._proc.returncode, time.time()
            job._proc = None
            if job.exit_code == 0:  # done before the cancel reached it: the version exists
                job.state, job.stage = "succeeded", "done"
                job.result = json.loads(out)
            elif job._cancel:
                job.state, job.stage = "cancelled", "cancelled"
            else:
                job.state, job.stage = "failed", "failed"
                job.error = (err.strip().splitlines() or ["failed"])[-1][:2000]
            self.on_change(job, "finished")
        self._cleanup(job)

    def _cleanup(self, job: Job) -> None:
        for path in sorted((self._dir / job.id).glob("*")):
            path.unlink(missing_ok=True)
        (self._dir / job.id).rmdir()

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a queued or running job; a finished one stays as it ended."""
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None or job.state not in ("queued", "running"):
                return job
            job._cancel = True
            if job.state == "queued":
                job.state, job.stage, job.ended_at = "cancelled", "cancelled", time.time()
                self.on_change(job, "dropped")
                self._pool.submit(self._cleanup, job)
            elif job._proc is not None:
                job._proc.send_signal(signal.SIGTERM)
            return job

    def get(self, job_id: str) -> Job | None:
        """A job by id."""
        return self.jobs.get(job_id)

    def shutdown(self) -> None:
        """Cancel what runs, wait for the threads."""
        for job_id in list(self.jobs):
            self.cancel(job_id)
        self._pool.shutdown(wait=True)
