"""Record the golden story->spec call slice (run by hand when the stage or engine changes).

    python tests/golden/make_story_golden.py

Writes ``story_calls.jsonl`` (the calls, real HTTP to the loopback server) and
``story.json`` (story, model, api_base, seed, spec sha256, content digest at scale 0.01).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from llm_server import LLMServer  # noqa: E402
from test_story import FITNESS, KEY_ENV, MODEL, Script  # noqa: E402

import synthreg  # noqa: E402,F401
from synthreg.generators.engine import generate  # noqa: E402
from synthreg.generators.llm import CallStore, Gateway, LiteLLMBackend  # noqa: E402
from synthreg.generators.llm.story import draft_spec  # noqa: E402
from synthreg.generators.spec_io import apply_overrides  # noqa: E402


def main() -> None:
    os.environ[KEY_ENV] = "sk-golden-not-a-key"
    with LLMServer() as server, tempfile.TemporaryDirectory() as tmp:
        server.answer = Script()
        store = CallStore.open(Path(tmp) / "calls.sqlite")
        gateway = Gateway(store, LiteLLMBackend(api_key_env=KEY_ENV), "live")
        result = draft_spec(FITNESS, gateway, model=MODEL, api_base=server.api_base, seed=7)
        (HERE / "story_calls.jsonl").unlink(missing_ok=True)
        store.export(result.call_keys, HERE / "story_calls.jsonl")
        spec = apply_overrides(result.spec, scale=0.01)
        digest = generate(spec, Path(tmp) / "data", workers=1).content_digest
        facts = {
            "story": FITNESS,
            "model": MODEL,
            "api_base": server.api_base,
            "seed": 7,
            "spec_sha256": result.spec.sha256(),
            "scale": 0.01,
            "content_digest": digest,
        }
        (HERE / "story.json").write_text(json.dumps(facts, indent=2) + "\n")
        print(json.dumps(facts, indent=2))


if __name__ == "__main__":
    main()
