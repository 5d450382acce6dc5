"""Story -> spec through the configured LLM: ``registry spec draft`` and ``create --story``.

The gateway records every call in the workspace call store
(``.registry/llm/calls.sqlite``); the accepted spec is frozen as YAML in the version, so a
rebuild needs no LLM. The calls a draft used are exported next to it (``llm_calls.jsonl``)
and can be replayed strictly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthreg.errors import UsageError
from synthreg.registry.workspace import Workspace

__all__ = ["draft", "gateway_for"]

_NO_MODEL = (
    'no LLM model is configured: set [llm] model = "openai/gpt-4o-mini" (or any litellm name; '
    '"openai/<name>" with api_base for an OpenAI-compatible server) in registry.toml, and put the '
    "provider's key in the environment (name it with [llm] api_key_env)"
)


def gateway_for(
    ws: Workspace, mode: str = "live", *, max_usd: float | None = None, max_calls: int | None = None
) -> Any:
    """A gateway over the workspace call store, configured from ``[llm]``; ``max_usd`` and
    ``max_calls`` override its budget for this run (``--max-usd``, ``--max-calls``)."""
    from synthreg.generators.llm import CallStore, Gateway, LiteLLMBackend

    llm = ws.settings.llm
    if not llm.model:
        raise UsageError(_NO_MODEL)
    path = ws.settings.state_dir / "llm" / "calls.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    backend = LiteLLMBackend(api_key_env=llm.api_key_env, timeout_s=llm.timeout_s)
    return Gateway(
        CallStore.open(path),
        backend,
        mode,
        max_usd=llm.max_usd if max_usd is None else max_usd,
        max_calls=llm.max_calls if max_calls is None else max_calls,
        concurrency=llm.concurrency,
        fallbacks=list(llm.fallbacks),
    )


def draft(
    ws: Workspace, story: str, *, seed: int = 0, mode: str = "live", budget: dict[str, Any] | None = None
) -> Any:
    """Draft a spec from a plain-language story (returns the stage's StoryResult).

    ``budget`` (``max_usd`` / ``max_calls``, overriding ``[llm]``) caps the whole draft, every
    step and repair together; when it runs out the draft stops with a ``UsageError`` and the
    calls made so far stay in the call store, so a rerun resumes without paying for them again.
    """
    if not story.strip():
        raise UsageError("the story is empty: describe the dataset, e.g. 'a fitness app with 50k users'")
    gateway = gateway_for(ws, mode, **(budget or {}))
    from synthreg.generators.llm.story import draft_spec

    llm = ws.settings.llm
    return draft_spec(story, gateway, model=llm.model, api_base=llm.api_base, seed=seed)


def export_calls(ws: Workspace, keys: list[str], path: Path) -> int:
    """Write the calls behind ``keys`` to ``path`` (JSONL): the version's slice of the store."""
    from synthreg.generators.llm import CallStore

    store = CallStore.open(ws.settings.state_dir / "llm" / "calls.sqlite")
    try:
        return int(store.export(keys, path))
    finally:
        store.close()
