"""The LLM layer under the LLM stages (story -> spec, labeled text, judge); see docs LLM.md.

Stages build ``CallRequest``s (never importing litellm) and hand them to a ``Gateway``,
which serves them from the append-only ``CallStore`` or calls a ``Backend`` (litellm,
imported lazily on the first live call) with retries, fallbacks, per-endpoint concurrency
limits and a budget guard, recording every answer under its call key.

>>> store = CallStore.open(".registry/llm/calls.sqlite")          # doctest: +SKIP
>>> gw = Gateway(store, LiteLLMBackend(api_key_env="OPENAI_API_KEY"), mode="record-missing")  # doctest: +SKIP
>>> results = gw.run(requests)                                    # doctest: +SKIP
"""

from __future__ import annotations

from synthreg.generators.llm.backend import Backend, FakeBackend, LiteLLMBackend, Response
from synthreg.generators.llm.callstore import CallRecord, CallRequest, CallStore, call_key
from synthreg.generators.llm.errors import (
    ApiKeyMissingError,
    BackendError,
    CallNotRecordedError,
    CallRequestError,
    ExportExistsError,
    ReadOnlyStoreError,
)
from synthreg.generators.llm.gateway import Gateway, Mode, Preflight, Result, Route, RunResult
from synthreg.generators.llm.prices import Cost, estimate

__all__ = [
    "ApiKeyMissingError",
    "Backend",
    "BackendError",
    "CallNotRecordedError",
    "CallRecord",
    "CallRequest",
    "CallRequestError",
    "CallStore",
    "Cost",
    "ExportExistsError",
    "FakeBackend",
    "Gateway",
    "LiteLLMBackend",
    "Mode",
    "Preflight",
    "ReadOnlyStoreError",
    "Response",
    "Result",
    "Route",
    "RunResult",
    "call_key",
    "estimate",
]
