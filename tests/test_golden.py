"""Golden replay: a committed call slice and story rebuild to the committed digest, with no server.

When the story stage or the engine changes on purpose, regenerate the golden files with
``python tests/golden/make_story_golden.py`` and say why in the commit.
"""

from __future__ import annotations

import json
from pathlib import Path

from synthreg.generators.engine import generate
from synthreg.generators.llm import CallStore, FakeBackend, Gateway
from synthreg.generators.llm.story import draft_spec
from synthreg.generators.spec_io import apply_overrides

GOLDEN = Path(__file__).resolve().parent / "golden"


def test_story_replays_to_the_committed_spec_and_digest(tmp_path: Path) -> None:
    facts = json.loads((GOLDEN / "story.json").read_text())
    store = CallStore.open(GOLDEN / "story_calls.jsonl")  # JSONL slices open read-only, in memory
    # replay-strict never calls the backend (a miss is an error), so a fake one proves no call is made
    gateway = Gateway(store, FakeBackend(), "replay-strict")
    result = draft_spec(
        facts["story"], gateway, model=facts["model"], api_base=facts["api_base"], seed=facts["seed"]
    )
    assert result.spec.sha256() == facts["spec_sha256"]
    spec = apply_overrides(result.spec, scale=facts["scale"])
    assert generate(spec, tmp_path, workers=2).content_digest == facts["content_digest"]
