"""Run a command and measure its whole process tree: wall time and peak memory.

Both tools in ``bench_vs_misata.py`` are measured by this one function, the same way:
psutil polls the command's process and all its descendants every ``interval`` seconds and
keeps the largest sum seen of

- PSS (proportional set size: a page shared by k processes counts 1/k in each, so pages
  forked workers share with their parent are counted once), and
- RSS (shared pages counted in every process that maps them; an upper bound).

Polling can miss a peak shorter than the interval; the processes measured here grow and
shrink over hundreds of milliseconds. Each poll reads ``/proc/<pid>/smaps_rollup``, which
costs CPU on the same machine, so the interval is kept coarse (50 ms).
"""

from __future__ import annotations

import os
import resource
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

POLL_S = 0.05


@dataclass(frozen=True)
class Measured:
    """What one run of a command cost."""

    returncode: int
    wall_s: float
    peak_pss_mb: float
    peak_rss_mb: float
    processes: int
    """The most processes seen in the tree at one poll."""
    cpu_s: float = 0.0
    """User + system CPU seconds of the command and the descendants it waited for (not of the
    ``also`` processes: a server's work is not counted)."""


def _sample(root: Any, also: tuple[Any, ...] = ()) -> tuple[int, int, int]:
    """(PSS sum, RSS sum, process count) over ``root``, ``also`` and their descendants, in bytes."""
    import psutil

    pss = rss = count = 0
    tree = [p for r in (root, *also) for p in [r, *r.children(recursive=True)]]
    for proc in tree:
        try:
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue  # exited between listing and reading
        pss += int(getattr(info, "pss", info.rss))
        rss += int(info.rss)
        count += 1
    return pss, rss, count


def run_measured(
    cmd: list[str],
    log: Path,
    *,
    env: dict[str, str] | None = None,
    interval: float | None = POLL_S,
    also: tuple[int, ...] = (),
) -> Measured:
    """Run ``cmd`` with stdout and stderr to ``log``; poll its tree's memory until it exits.

    ``also``: more processes counted with their descendants (a server that does the work).
    ``interval`` None: no polling (peaks 0), for a wall time the polls do not slow: on 2 cores a
    fitness.yaml create took ~0.3 s (10%) longer while polled every 50 ms."""
    import psutil

    others = tuple(psutil.Process(pid) for pid in also)
    peak_pss = peak_rss = most = 0
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env or dict(os.environ))
        root = psutil.Process(proc.pid)
        if interval is None:
            proc.wait()
        while proc.poll() is None:
            try:
                pss, rss, count = _sample(root, others)
            except psutil.Error:
                pss = rss = count = 0  # the root itself is exiting
            peak_pss, peak_rss, most = max(peak_pss, pss), max(peak_rss, rss), max(most, count)
            time.sleep(interval or POLL_S)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Measured(proc.returncode, wall, peak_pss / 2**20, peak_rss / 2**20, most, cpu)
