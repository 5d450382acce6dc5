"""Run facts: peak memory counts the engine's worker processes."""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

from synthreg.generators.engine import generate, worker_peak_rss_mb
from synthreg.generators.spec_io import apply_overrides
from synthreg.registry.facts import peak_rss_mb


def test_peak_rss_includes_the_worker_processes(small_spec_model: Any, tmp_path: Path) -> None:
    # 200k rows make several 64k-row segments, so two workers both run (no timing involved).
    spec = apply_overrides(small_spec_model, rows={"users": 50_000, "orders": 150_000})
    result = generate(spec, tmp_path, workers=2)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    assert result.worker_peak_rss_mb > 0
    assert worker_peak_rss_mb() >= result.worker_peak_rss_mb
    assert peak_rss_mb() >= own + result.worker_peak_rss_mb > own


def test_one_worker_adds_nothing(small_spec_model: Any, tmp_path: Path) -> None:
    result = generate(small_spec_model, tmp_path, workers=1)
    assert result.worker_peak_rss_mb == 0.0
