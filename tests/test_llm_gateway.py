"""The LLM gateway and call store: real litellm over real HTTP to a loopback server."""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llm_server import LLMServer

from synthreg.errors import exit_code_for
from synthreg.generators.llm import (
    ApiKeyMissingError,
    CallNotRecordedError,
    CallRecord,
    CallRequest,
    CallRequestError,
    CallStore,
    ExportExistsError,
    FakeBackend,
    Gateway,
    LiteLLMBackend,
    ReadOnlyStoreError,
    Route,
    call_key,
    estimate,
)
from synthreg.generators.llm.keys import redact, scrub

SECRET = "sk-test-SECRET123"
KEY_ENV = "SYNTHREG_TEST_LLM_KEY"
SCHEMA = {
    "type": "object",
    "properties": {
        "text": {"type": "string"},
        "reasoning": {"type": "string"},
        "label": {"enum": ["polite", "neutral"]},
        "score": {"type": "number"},
    },
    "required": ["text", "reasoning", "label", "score"],
    "additionalProperties": False,
}


def request(
    row: int | str = 0, api_base: str | None = "http://127.0.0.1:1/v1", **changes: Any
) -> CallRequest:
    """A labeled-text style request for plan row ``row``."""
    fields: dict[str, Any] = {
        "model": "openai/test-model",
        "messages": [
            {"role": "system", "content": "Write a customer-service reply."},
            {"role": "user", "content": "Category travel/air, label polite."},
        ],
        "api_base": api_base,
        "temperature": 0.7,
        "top_p": 1.0,
        "max_tokens": 200,
        "seed": 7,
        "response_schema": SCHEMA,
        "template_id": "reply",
        "template_version": "1",
        "template_hash": "abc123",
        "stage": "labeled_text",
        "row_id": str(row),
        "attempt": "gen",
    }
    fields.update(changes)
    return CallRequest(**fields)


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as srv:
        yield srv


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, SECRET)
    return KEY_ENV


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CallStore]:
    with CallStore.open(tmp_path / "calls.sqlite") as st:
        yield st


def gateway(store: CallStore, mode: str = "live", **options: Any) -> Gateway:
    options.setdefault("backoff_base", 0.01)
    return Gateway(store, LiteLLMBackend(api_key_env=KEY_ENV, timeout_s=10), mode=mode, **options)


def requests_for(server: LLMServer, n: int) -> list[CallRequest]:
    return [request(i, server.api_base) for i in range(n)]


# --- call key -------------------------------------------------------------------------------------


def test_call_key_is_stable_and_pinned() -> None:
    base = request(3)
    assert call_key(base) == call_key(request(3)) == base.key
    assert request(3, temperature=1).key == request(3, temperature=1.0).key  # 1 and 1.0 are one value
    # the layout of the canonical request is part of the on-disk format: changing it breaks replays
    assert base.key == "6be2c9bda4344eacf69065bc66a67185ef12dd10011888b761ce6e09cd218e67"


@pytest.mark.parametrize(
    "change",
    [
        {"model": "openai/other-model"},
        {"api_base": "http://127.0.0.1:2/v1"},
        {"api_base": "http://127.0.0.1:1/v2"},
        {"api_base": "http://example.org:1/v1"},
        {"messages": [{"role": "user", "content": "Category travel/air, label polite!"}]},
        {"temperature": 0.8},
        {"top_p": 0.9},
        {"max_tokens": 201},
        {"seed": 8},
        {"response_schema": {**SCHEMA, "required": ["text"]}},
        {"response_schema": None},
        {"schema_name": "reply"},
        {"template_id": "reply2"},
        {"template_version": "2"},
        {"template_hash": "abc124"},
        {"stage": "judge"},
        {"row_id": "4"},
        {"attempt": "repair#1"},
        {"attempt": "judge"},
        {"extra": {"frequency_penalty": 0.1}},
    ],
)
def test_call_key_changes_with_every_field(change: dict[str, Any]) -> None:
    assert request(3, **change).key != request(3).key


def test_call_key_ignores_credentials_scheme_and_query() -> None:
    plain = request(1, "http://127.0.0.1:1/v1")
    assert request(1, "https://user:pw@127.0.0.1:1/v1/?api-key=XYZ").key == plain.key
    assert request(1, "http://127.0.0.1:1/v1/").key == plain.key
    assert SECRET not in json.dumps(plain.canonical())


def test_call_request_validation() -> None:
    with pytest.raises(CallRequestError, match="provider-qualified"):
        request(model="gpt-4o")
    with pytest.raises(CallRequestError, match="repair#<k>"):
        request(attempt="repair")
    with pytest.raises(CallRequestError, match="never pass keys"):
        request(extra={"api_key": SECRET})
    with pytest.raises(CallRequestError, match="no messages"):
        request(messages=[])


# --- store, prices, keys --------------------------------------------------------------------------


def record_for(req: CallRequest, content: str = "hello", **changes: Any) -> CallRecord:
    fields: dict[str, Any] = {
        "key": req.key,
        "request": req.canonical(),
        "content": content,
        "finish_reason": "stop",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "model_returned": "m",
        "latency_ms": 1.0,
        "attempts": 1,
        "cost_usd": 0.0,
        "priced": False,
        "backend": "test",
        "backend_version": "0",
    }
    fields.update(changes)
    return CallRecord(**fields)


def test_store_is_append_only_first_answer_wins(store: CallStore) -> None:
    req = request(1)
    assert store.put(record_for(req, "first"))
    assert not store.put(record_for(req, "second"))
    assert store.get(req.key).content == "first"  # type: ignore[union-attr]
    assert store.keys() == [req.key] and len(store) == 1 and req.key in store
    conn = sqlite3.connect(store.path)  # type: ignore[arg-type]
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE calls SET response = '{}'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM calls")
    conn.close()


def test_store_scrubs_secret_fields(store: CallStore) -> None:
    req = request(1)
    canonical = {**req.canonical(), "headers": {"Authorization": f"Bearer {SECRET}"}, "api_key": SECRET}
    store.put(record_for(req, request=canonical))
    got = store.get(req.key)
    assert got is not None and got.request["params"]["max_tokens"] == 200
    assert got.request["api_key"] == "[redacted]" and got.request["headers"] == {
        "Authorization": "[redacted]"
    }
    assert SECRET.encode() not in Path(store.path).read_bytes() + _wal(store.path)  # type: ignore[arg-type]


def _wal(path: Path) -> bytes:
    wal = Path(f"{path}-wal")
    return wal.read_bytes() if wal.exists() else b""


def test_export_slices_to_jsonl_and_sqlite(store: CallStore, tmp_path: Path) -> None:
    reqs = [request(i) for i in range(5)]
    for r in reqs:
        store.put(record_for(r, f"answer {r.row_id}"))
    wanted = [reqs[3].key, reqs[1].key]
    assert store.export(wanted, tmp_path / "slice.jsonl") == 2
    assert store.export(wanted, tmp_path / "slice.sqlite") == 2
    for name in ("slice.jsonl", "slice.sqlite"):
        with CallStore.open(tmp_path / name, read_only=True) as part:
            assert part.keys() == wanted
            assert part.get(reqs[3].key).content == "answer 3"  # type: ignore[union-attr]
    with (
        CallStore.open(tmp_path / "slice.jsonl") as part,
        pytest.raises(ReadOnlyStoreError, match="read-only"),
    ):
        part.put(record_for(reqs[0]))
    shipped = (tmp_path / "slice.sqlite").read_bytes()
    with CallStore.open(tmp_path / "slice.sqlite", read_only=True) as part:
        assert part.keys() == wanted
        with pytest.raises(ReadOnlyStoreError, match="writable SQLite store"):
            part.put(record_for(reqs[0]))
    assert (tmp_path / "slice.sqlite").read_bytes() == shipped  # a tracked slice is never rewritten
    with pytest.raises(ExportExistsError, match="remove it"):
        store.export(wanted, tmp_path / "slice.jsonl")
    with pytest.raises(CallNotRecordedError, match="record them"):
        store.export([request(99).key], tmp_path / "other.jsonl")


def test_price_table() -> None:
    cost = estimate("openai/gpt-4o-mini", 1_000_000, 1_000_000)
    assert cost.priced and cost.usd == pytest.approx(0.75)
    assert estimate("openai/gpt-4o-mini-2024-07-18", 1000, 0).usd == pytest.approx(0.00015)
    assert estimate("groq/llama-3.3-70b-versatile", 0, 1_000_000).usd == pytest.approx(0.79)
    assert estimate("openai/test-model", 10**9, 10**9) == estimate("nobody/knows", 1, 1)
    assert not estimate("nobody/knows", 1, 1).priced and estimate("nobody/knows", 1, 1).usd == 0


def test_redact_and_scrub(monkeypatch: pytest.MonkeyPatch) -> None:
    text = f"Error: bad credentials: Bearer {SECRET}; api_key={SECRET}; sk-other-1234567890"
    assert SECRET not in redact(text) and "sk-other" not in redact(text)
    assert redact("plain words", ["plain words"]) == "[redacted]"
    monkeypatch.setenv("MY_SERVICE_TOKEN", "plainvalue123")  # no key shape: found by its variable's name
    assert redact("failed with plainvalue123") == "failed with [redacted]"
    assert scrub({"prompt_tokens": 3, "x_api_key": "v", "nested": [{"token": "t"}]}) == {
        "prompt_tokens": 3,
        "x_api_key": "[redacted]",
        "nested": [{"token": "[redacted]"}],
    }


def test_missing_key_variable_is_a_usage_error(store: CallStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNTHREG_NO_SUCH_KEY", raising=False)
    gw = Gateway(store, LiteLLMBackend(api_key_env="SYNTHREG_NO_SUCH_KEY"))
    with pytest.raises(ApiKeyMissingError, match="export SYNTHREG_NO_SUCH_KEY=") as info:
        gw.run([request(1)])
    assert exit_code_for(info.value) == 2


# --- gateway over HTTP ----------------------------------------------------------------------------


def test_live_calls_are_recorded_then_served_from_the_store(
    server: LLMServer, store: CallStore, api_key: str
) -> None:
    reqs = requests_for(server, 5)
    first = gateway(store).run(reqs)
    assert server.count == 5 and len(store) == 5 and first.calls == 5
    assert [r.row_id for r in first] == ["0", "1", "2", "3", "4"]
    one = first[0]
    assert one.ok and not one.cache_hit and one.attempts == 1 and one.parse_error is None
    assert one.parsed["label"] == "polite" and one.parsed["text"].startswith("text-")
    assert one.model_answered == "openai/test-model" and one.model_returned == "test-model-0001"
    assert one.prompt_tokens > 0 and one.completion_tokens > 0 and not one.priced
    assert server.requests[0]["seed"] == 7 and server.requests[0]["response_format"]["type"] == "json_schema"
    record = store.get(one.key)
    assert record is not None and record.backend == "litellm" and record.backend_version.startswith("1.")

    again = gateway(store, "record-missing").run(reqs)
    assert server.count == 5 and again.calls == 0 and again.cache_hits == 5
    assert all(r.cache_hit for r in again) and [r.content for r in again] == [r.content for r in first]


def test_duplicate_keys_are_called_once(server: LLMServer, store: CallStore, api_key: str) -> None:
    reqs = [request(1, server.api_base)] * 3 + [request(2, server.api_base)]
    result = gateway(store).run(reqs)
    assert server.count == 2 and len(result) == 4 and result[0].content == result[2].content


def test_record_missing_resumes_after_the_budget(server: LLMServer, store: CallStore, api_key: str) -> None:
    reqs = requests_for(server, 10)
    partial = gateway(store, "record-missing", max_calls=4, concurrency=3).run(reqs)
    assert partial.budget_exhausted and len(partial) == 4 and len(partial.skipped) == 6
    assert len(store) == 4 and server.count == 4

    rest = gateway(store, "record-missing").run(reqs)
    assert server.count == 10  # exactly 6 new HTTP requests: no call twice
    assert not rest.budget_exhausted and len(rest) == 10 and rest.cache_hits == 4 and len(store) == 10


def test_max_usd_stops_cleanly() -> None:
    store = CallStore.memory()
    reqs = [request(i, None, model="openai/gpt-4o") for i in range(10)]
    result = Gateway(store, FakeBackend(), max_usd=0.0001, concurrency=1).run(reqs)
    assert result.budget_exhausted and 0 < len(result) < 10 and result.spent_usd >= 0.0001
    assert len(store) == len(result)


def test_replay_strict_reproduces_without_a_server(tmp_path: Path, api_key: str) -> None:
    with CallStore.open(tmp_path / "calls.sqlite") as store, LLMServer() as srv:
        reqs = requests_for(srv, 4)
        live = gateway(store).run(reqs)
    assert srv.count == 4  # the server is stopped now: any call would fail
    with CallStore.open(tmp_path / "calls.sqlite") as store:
        replay = gateway(store, "replay-strict").run(reqs)
    assert [r.content for r in replay] == [r.content for r in live] and all(r.cache_hit for r in replay)
    assert replay.calls == 0


def test_replay_strict_miss_names_key_and_row(store: CallStore) -> None:
    missing = request("row-42")
    with pytest.raises(CallNotRecordedError, match="plan row row-42") as info:
        Gateway(store, FakeBackend(), mode="replay-strict").run([missing])
    assert missing.key in str(info.value) and "record-missing" in str(info.value)
    assert info.value.missing == [(missing.key, "labeled_text", "row-42")] and exit_code_for(info.value) == 4


def test_429_honours_retry_after_and_halves_concurrency(
    server: LLMServer, store: CallStore, api_key: str
) -> None:
    server.fail("429", times=1, retry_after="1")
    gw = gateway(store, concurrency=4, backoff_base=30.0)  # a backoff would wait 15-30 s, not 1 s
    waits: list[float] = []
    chosen = gw._delay
    gw._delay = lambda error, attempt, limiter: waits.append(chosen(error, attempt, limiter)) or waits[-1]  # type: ignore[method-assign]
    result = gw.run([request(1, server.api_base)])
    assert result[0].ok and result[0].attempts == 2 and server.count == 2
    assert waits == [1.0]  # the provider's Retry-After, not the exponential backoff
    assert gw.limit_for("openai/test-model", server.api_base) == 2
    server.fail("429", times=3, retry_after="0")
    assert gw.run([request(2, server.api_base)])[0].ok
    assert gw.limit_for("openai/test-model", server.api_base) == 1  # never below 1


def test_500s_fall_back_to_the_next_model(server: LLMServer, store: CallStore, api_key: str) -> None:
    server.fail("500", times=100, model="test-model")
    gw = gateway(store, retries=2, fallbacks=["openai/test-fallback"])
    result = gw.run([request(1, server.api_base)])[0]
    assert result.ok and result.fallback_used and result.attempts == 4
    assert result.model_requested == "openai/test-model" and result.model_answered == "openai/test-fallback"
    assert [b["model"] for b in server.requests] == ["test-model"] * 3 + ["test-fallback"]
    assert result.answered_key in store and result.key not in store
    replayed = gateway(store, "replay-strict", retries=2, fallbacks=["openai/test-fallback"]).run(
        [request(1, server.api_base)]
    )
    assert replayed[0].content == result.content and replayed[0].model_answered == "openai/test-fallback"


def test_failure_without_fallback_is_reported_not_raised(
    server: LLMServer, store: CallStore, api_key: str
) -> None:
    server.fail("500", times=3)
    result = gateway(store, retries=2).run([request(1, server.api_base)])[0]
    assert not result.ok and result.attempts == 3 and "HTTP 500" in (result.error or "")
    assert len(store) == 0


def test_routes_can_change_the_endpoint(server: LLMServer, store: CallStore, api_key: str) -> None:
    with LLMServer() as other:
        server.fail("500", times=100)
        gw = gateway(store, retries=0, fallbacks=[Route("openai/test-model", other.api_base)])
        result = gw.run([request(1, server.api_base)])[0]
    assert result.ok and result.fallback_used and other.count == 1


def test_bad_content_is_a_parse_failure(server: LLMServer, store: CallStore, api_key: str) -> None:
    server.fail("malformed")
    bad = gateway(store).run([request(1, server.api_base)])[0]
    assert bad.ok and bad.parsed is None and "not valid JSON" in (bad.parse_error or "")
    server.fail("empty")
    empty = gateway(store).run([request(2, server.api_base)])[0]
    assert empty.ok and "empty content" in (empty.parse_error or "")


def test_calls_run_concurrently(server: LLMServer, store: CallStore, api_key: str) -> None:
    server.delay_ms = 200  # long enough for the requests to overlap at the server
    result = gateway(store, concurrency=8).run(requests_for(server, 20))
    assert len(result) == 20 and all(r.ok for r in result) and server.count == 20
    assert 2 <= server.max_in_flight <= 8, f"{server.max_in_flight} requests were in flight at once"


def test_preflight_counts_only_missing_calls(server: LLMServer, store: CallStore, api_key: str) -> None:
    reqs = [request(i, server.api_base, model="openai/gpt-4o-mini") for i in range(4)]
    gw = gateway(store)
    before = gw.preflight(reqs)
    assert before.calls == 4 and before.cached == 0 and before.est_completion_tokens == 800
    assert before.est_prompt_tokens > 50 and before.est_usd > 0 and before.unpriced_models == ()
    gw.run(reqs[:1])
    after = gw.preflight([*reqs, request(9, server.api_base)]).as_dict()
    assert after["calls"] == 4 and after["cached"] == 1 and after["unpriced_models"] == ("openai/test-model",)


def test_fake_backend_is_deterministic() -> None:
    reqs = [request(i, None) for i in range(3)]
    one = Gateway(CallStore.memory(), FakeBackend()).run(reqs)
    two = Gateway(CallStore.memory(), FakeBackend()).run(reqs)
    assert [r.content for r in one] == [r.content for r in two]
    assert len({r.content for r in one}) == 3 and all(r.parsed["label"] == "polite" for r in one)


def test_litellm_is_imported_lazily() -> None:
    code = "import sys, synthreg.generators.llm as m; m.LiteLLMBackend(); print('litellm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- keys never leak ------------------------------------------------------------------------------


def test_api_key_never_leaks(
    server: LLMServer,
    tmp_path: Path,
    api_key: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    produced: list[str] = []
    with CallStore.open(tmp_path / "calls.sqlite") as store:
        server.fail("500", times=1)
        server.fail("401", times=1, model="test-bad-auth")
        gw = gateway(store, fallbacks=["openai/test-bad-auth"])
        good = gw.run(requests_for(server, 3))
        bad = gateway(store, retries=0).run([request(9, server.api_base, model="openai/test-bad-auth")])
        produced += [repr(good), repr(bad), *(json.dumps(r.as_dict()) for r in [*good, *bad])]
        store.export(store.keys(), tmp_path / "slice.jsonl")
        store.export(store.keys(), tmp_path / "slice.sqlite")
        with pytest.raises(CallNotRecordedError) as info:
            gateway(store, "replay-strict").run([request(10, server.api_base)])
        produced.append(str(info.value))
    assert all(h.get("authorization") == f"Bearer {SECRET}" for h in server.headers)  # the key was used
    assert bad[0].error is not None and "bad credentials" in bad[0].error  # the provider echoed it back
    out, err = capfd.readouterr()
    produced += [caplog.text, out, err, *(str(dataclasses.astuple(r)) for r in good)]
    leaks = [s for s in produced if SECRET in s]
    assert not leaks
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) >= 3
    assert not [p for p in written if SECRET.encode() in p.read_bytes()]
