"""Labeled text samples: the plan, then real litellm over HTTP to the loopback server."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llm_server import LLMServer

from synthreg.errors import SpecError
from synthreg.generators.llm import CallNotRecordedError, CallStore, Gateway, LiteLLMBackend
from synthreg.generators.llm.callstore import canonical_json
from synthreg.generators.llm.labeled import (
    GEN_STAGE,
    JUDGE_STAGE,
    ROWS_SCHEMA,
    CurationPolicy,
    LabeledResult,
    LabeledTextSpec,
    curate,
    generate_labeled,
    is_refusal,
    load_labeled_spec,
    make_plan,
    normalize_text,
    parse_labeled_spec,
    render_requests,
)
from synthreg.generators.llm.labeled_prompts import GEN_TEMPLATE, JUDGE_TEMPLATE

KEY_ENV = "SYNTHREG_TEST_LLM_KEY"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "labeled" / "support_replies.yaml"
MODELS = ["openai/test-model", "openai/test-model-b"]
PAIRS = {"travel": ["air", "train"], "stores": ["appliances", "toys and games"]}


def make_spec(**changes: Any) -> LabeledTextSpec:
    """24 samples over 2 labels x 4 (category, type) pairs, 2 models."""
    data: dict[str, Any] = {
        "task": "Customer-service replies to complaints.",
        "labels": {"polite": "Courteous and helpful.", "impolite": "Curt and dismissive."},
        "categories": PAIRS,
        "examples": [
            {"label": "polite", "category": "travel", "type": "air", "text": "Thanks!", "reasoning": "r1"},
            {"label": "impolite", "category": "stores", "type": "appliances", "text": "Read the manual."},
            {"label": "polite", "category": "stores", "type": "toys and games", "text": "Happy to help."},
        ],
        "samples": 24,
        "models": MODELS,
        "temperature": 0.7,
        "max_tokens": 120,
        "min_length": 10,
        "max_length": 200,
        "few_shot": 2,
        "seed": 5,
    }
    data.update(changes)
    return parse_labeled_spec(data)


def by_seed(spec: LabeledTextSpec) -> dict[int, dict[str, Any]]:
    return {row["seed"]: row for row in make_plan(spec).to_pylist()}


def scripted(
    spec: LabeledTextSpec,
    texts: dict[str, str] | None = None,
    judge: Callable[[dict[str, Any]], str] | None = None,
) -> Callable[[dict[str, Any]], str | None]:
    """A server hook: a unique answer per sample (``texts`` overrides the content); ``judge`` labels."""
    plan = by_seed(spec)

    def answer(body: dict[str, Any]) -> str | None:
        row = plan[body["seed"]]
        if body["response_format"]["json_schema"]["name"] == "labeled_judge":
            return None if judge is None else json.dumps({"label": judge(row), "reasoning": "j"})
        if texts is not None and row["sample_id"] in texts:
            return texts[row["sample_id"]]
        unique = hashlib.sha256(str(row["seed"]).encode()).hexdigest()[:40]
        return json.dumps({"text": f"Reply {unique}", "reasoning": f"because {row['label']}"})

    return answer


def sample(text: str) -> str:
    return json.dumps({"text": text, "reasoning": "scripted"})


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[LLMServer]:
    monkeypatch.setenv(KEY_ENV, "sk-test")
    with LLMServer() as srv:
        yield srv


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CallStore]:
    with CallStore.open(tmp_path / "calls.sqlite") as st_:
        yield st_


def gateway(store: CallStore, mode: str = "live", **options: Any) -> Gateway:
    options.setdefault("concurrency", 8)
    backend = LiteLLMBackend(api_key_env=KEY_ENV, timeout_s=10)
    return Gateway(store, backend, mode=mode, backoff_base=0.01, **options)


def run(spec: LabeledTextSpec, server: LLMServer, store: CallStore, **options: Any) -> LabeledResult:
    return generate_labeled(spec, gateway(store, **options), api_base=server.api_base)


def ipc_sha256(table: pa.Table) -> str:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def ids_where(result: LabeledResult, column: str) -> set[str]:
    rows = result.rows.filter(pc.field(column) == True)  # noqa: E712 (an arrow expression)
    return set(rows.column("sample_id").to_pylist())


# --- plan and requests (no calls) -----------------------------------------------------------------


def test_plan_is_stratified_and_deterministic() -> None:
    spec = make_spec()
    plan = make_plan(spec)
    assert plan.column_names == ["sample_id", "label", "category", "type", "example_ids", "model", "seed"]
    rows = plan.to_pylist()
    assert [r["sample_id"] for r in rows] == sorted(r["sample_id"] for r in rows) and len(rows) == 24
    assert set(Counter((r["label"], r["category"], r["type"]) for r in rows).values()) == {3}
    assert Counter(r["model"] for r in rows) == {MODELS[0]: 12, MODELS[1]: 12}
    assert all(len(r["example_ids"]) == 2 and set(r["example_ids"]) <= {0, 1, 2} for r in rows)
    assert len({r["seed"] for r in rows}) == 24 and all(0 <= r["seed"] < 2**31 for r in rows)
    assert make_plan(make_spec()).equals(plan)
    assert not make_plan(make_spec(seed=6)).equals(plan)
    odd = make_plan(make_spec(samples=13)).to_pylist()  # 13 over 8 strata: 5 get two samples
    assert sorted(Counter((r["label"], r["type"]) for r in odd).values()) == [1, 1, 1, 2, 2, 2, 2, 2]
    assert sorted(Counter(r["label"] for r in odd).values()) == [6, 7]


@settings(max_examples=40, deadline=None)
@given(
    labels=st.integers(1, 4),
    types=st.integers(1, 5),
    samples=st.integers(1, 60),
    seed=st.integers(0, 10_000),
)
def test_plan_balance_holds_for_any_shape(labels: int, types: int, samples: int, seed: int) -> None:
    spec = LabeledTextSpec(
        task="t",
        labels={f"l{i}": "d" for i in range(labels)},
        categories={"c": [f"t{j}" for j in range(types)]},
        samples=samples,
        models=["openai/m"],
        few_shot=0,
        seed=seed,
    )
    rows = make_plan(spec).to_pylist()
    cells = Counter((r["label"], r["type"]) for r in rows)
    per_label = Counter(r["label"] for r in rows)
    per_type = Counter(r["type"] for r in rows)
    for counter, keys in ((cells, labels * types), (per_label, labels), (per_type, types)):
        counts = [*counter.values(), *[0] * (keys - len(counter))]
        assert max(counts) - min(counts) <= 1
    assert make_plan(spec).equals(make_plan(spec))


def test_requests_carry_the_plan() -> None:
    spec = make_spec()
    plan = make_plan(spec)
    requests = render_requests(spec, plan, "http://127.0.0.1:1/v1")
    assert len({r.key for r in requests}) == 24
    for request, row in zip(requests, plan.to_pylist(), strict=True):
        assert (request.stage, request.row_id, request.attempt) == (GEN_STAGE, row["sample_id"], "gen")
        assert (request.model, request.seed, request.temperature) == (row["model"], row["seed"], 0.7)
        assert request.template_id == GEN_TEMPLATE.id and request.template_hash == GEN_TEMPLATE.sha256
        assert request.response_schema is not None
        assert request.response_schema["required"] == ["text", "reasoning"]
        user = request.messages[1]["content"]
        assert f"Label: {row['label']} (" in user and f"Type: {row['type']}" in user
        assert all(spec.examples[i].text in user for i in row["example_ids"])


def test_spec_errors_name_the_fix() -> None:
    with pytest.raises(SpecError, match="Extra inputs are not permitted"):
        make_spec(colour="red")
    with pytest.raises(SpecError, match=r"label 'rude' is not in labels: add it"):
        make_spec(examples=[{"label": "rude", "category": "travel", "type": "air", "text": "x"}], few_shot=0)
    with pytest.raises(SpecError, match="provider-qualified"):
        make_spec(models=["gpt-4o"])
    with pytest.raises(SpecError, match="lower few_shot"):
        make_spec(few_shot=4)
    with pytest.raises(SpecError, match="not a pair in categories"):
        make_spec(
            examples=[{"label": "polite", "category": "travel", "type": "bus", "text": "x"}], few_shot=1
        )


def test_the_example_spec_loads_and_plans() -> None:
    spec = load_labeled_spec(EXAMPLE)
    rows = make_plan(spec).to_pylist()
    assert len(rows) == spec.samples == 400 and spec.judge_model is not None
    assert set(Counter((r["label"], r["category"], r["type"]) for r in rows).values()) == {25}


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("I'm sorry, but I can't help with that request.", True),
        ("I’m sorry, but I cannot assist with this.", True),
        ("As an AI language model, I cannot write an impolite reply.", True),
        ("I cannot write that.", True),
        ("I'm sorry for the delay; your train ticket has been refunded in full.", False),
        ("I cannot help you, read the manual next time.", False),
        ("We are sorry, but we cannot refund a used blender.", False),
    ],
)
def test_refusal_patterns(text: str, refusal: bool) -> None:
    assert is_refusal(text) is refusal


def test_normalize_text() -> None:
    text = "  Thank you -- we've REBOOKED\tyour flight!! "
    assert normalize_text(text) == "thank you weve rebooked your flight"


# --- runs over HTTP -------------------------------------------------------------------------------


def test_run_records_one_call_per_sample_with_provenance(server: LLMServer, store: CallStore) -> None:
    spec = make_spec()
    server.answer = scripted(spec)
    result = run(spec, server, store)
    assert server.count == 24 and len(store) == 24 and result.calls == 24 and not result.budget_exhausted
    assert Counter(b["model"] for b in server.requests) == {"test-model": 12, "test-model-b": 12}
    rows = result.rows
    assert rows.schema.equals(ROWS_SCHEMA) and rows.num_rows == 24 and result.rejects.num_rows == 0
    plan = make_plan(spec).to_pylist()
    assert rows.column("model_requested").to_pylist() == [r["model"] for r in plan]
    assert list(result.call_keys) == rows.column("call_key").to_pylist()
    for row in rows.to_pylist():
        record = store.get(row["call_key"])
        assert record is not None
        assert (row["tokens_in"], row["tokens_out"]) == (record.prompt_tokens, record.completion_tokens)
        assert (row["model_returned"], row["created_at"], row["cost_usd"]) == (
            record.model_returned,
            record.created_at,
            record.cost_usd,
        )
        assert record.model_returned == row["model_requested"].removeprefix("openai/") + "-0001"
        assert record.request["model"] == row["model_requested"] and record.request["sample"] == {
            "stage": GEN_STAGE,
            "row_id": row["sample_id"],
            "attempt": "gen",
        }
        params = record.request["params"]
        assert (params["seed"], params["temperature"], params["top_p"]) == (
            row["seed"],
            row["temperature"],
            row["top_p"],
        )
        assert record.request["template"]["hash"] == row["template_hash"] == GEN_TEMPLATE.sha256
        messages_sha = hashlib.sha256(canonical_json(record.request["messages"]).encode()).hexdigest()
        assert row["prompt_hash"] == messages_sha
        assert json.loads(record.content or "")["text"] == row["text"]
    assert result.tokens_in == sum(rows.column("tokens_in").to_pylist()) > 0
    assert result.cache_hits == 0 and result.run_log.num_rows == 24
    assert not any(result.run_log.column("cache_hit").to_pylist())
    assert not any(ids_where(result, c) for c in ("refusal", "label_conflict"))
    assert rows.column("dup_cluster").null_count == 24 and all(rows.column("length_ok").to_pylist())


def test_replay_strict_is_byte_identical_without_a_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test")
    spec = make_spec(judge_model="openai/test-judge")
    with LLMServer() as srv, CallStore.open(tmp_path / "calls.sqlite") as store:
        srv.answer = scripted(spec, {"s0003": '{"text": "unterminated'})
        live = run(spec, srv, store)
        api_base = srv.api_base
    assert srv.count == 47 and live.rows.num_rows == 23 and live.rejects.num_rows == 1
    with CallStore.open(tmp_path / "calls.sqlite", read_only=True) as store:
        replay = generate_labeled(spec, gateway(store, "replay-strict"), api_base=api_base)
    assert replay.rows.equals(live.rows) and ipc_sha256(replay.rows) == ipc_sha256(live.rows)
    assert replay.rejects.equals(live.rejects) and replay.call_keys == live.call_keys
    assert len(replay.call_keys) == 47 and replay.calls == 0 and replay.cache_hits == 47
    assert all(replay.run_log.column("cache_hit").to_pylist())
    more = make_spec(samples=25)
    with (
        CallStore.open(tmp_path / "calls.sqlite", read_only=True) as store,
        pytest.raises(CallNotRecordedError, match="rerun in record-missing mode") as info,
    ):
        generate_labeled(more, gateway(store, "replay-strict"), api_base=api_base)
    assert (GEN_STAGE, "s0024") in {(stage, row) for _, stage, row in info.value.missing}


def test_bad_answers_are_rejects_with_a_reason(server: LLMServer, store: CallStore) -> None:
    spec = make_spec()
    bad = {
        "s0001": '{"text": "unterminated',
        "s0002": '{"text": 3, "reasoning": "x"}',
        "s0003": '["a list"]',
        "s0004": '{"text": "   ", "reasoning": ""}',
        "s0005": '{"text": "no reasoning here"}',
        "s0006": "",
    }
    server.answer = scripted(spec, bad)
    result = run(spec, server, store)
    rejects = {r["sample_id"]: r for r in result.rejects.to_pylist()}
    assert set(rejects) == set(bad) and result.rows.num_rows == 18 and not result.missing
    assert "not valid JSON" in rejects["s0001"]["reason"]
    assert rejects["s0002"]["reason"] == "'text' is a JSON number, not a string"
    assert "JSON array" in rejects["s0003"]["reason"]
    assert rejects["s0004"]["reason"] == "'text' is empty"
    assert rejects["s0005"]["reason"] == "the answer has no 'reasoning' field"
    assert "empty content" in rejects["s0006"]["reason"]
    assert rejects["s0002"]["content"] == bad["s0002"] and rejects["s0002"]["stage"] == GEN_STAGE
    assert len(result.call_keys) == 24  # rejected answers are recorded calls the version used


def curation_texts(spec: LabeledTextSpec) -> tuple[dict[str, str], dict[str, list[str]]]:
    plan = make_plan(spec).to_pylist()
    p = [r["sample_id"] for r in plan if r["label"] == "polite"]
    i = [r["sample_id"] for r in plan if r["label"] == "impolite"]
    texts = {
        p[0]: "Thank you for your patience, we have rebooked your flight for tomorrow.",
        p[1]: "thank you for your patience -- we have rebooked your flight for tomorrow!!",
        p[2]: "Your refund for the toaster has been processed and should arrive within five business days.",
        p[3]: "Your refund for the toaster has been processed and should arrive within five busines days.",
        p[4]: "We will look into your complaint about the delayed train and reply soon.",
        i[0]: "We will look into your complaint about the delayed train and reply soon.",
        i[1]: "I'm sorry, but I can't help with that request.",
        i[2]: "As an AI language model, I cannot write an impolite reply.",
        p[5]: "I'm sorry for the delay; your train ticket has been refunded in full.",
        i[3]: "Too bad.",
        i[4]: "No. " * 60,
    }
    return {k: sample(v) for k, v in texts.items()}, {"polite": p, "impolite": i}


def test_flags_and_curation(server: LLMServer, store: CallStore) -> None:
    spec = make_spec()
    texts, ids = curation_texts(spec)
    p, i = ids["polite"], ids["impolite"]
    server.answer = scripted(spec, texts)
    result = run(spec, server, store)
    clusters = {r["sample_id"]: r["dup_cluster"] for r in result.rows.to_pylist()}
    expected = {p[0]: p[:2], p[1]: p[:2], p[2]: p[2:4], p[3]: p[2:4], p[4]: [p[4], i[0]], i[0]: [p[4], i[0]]}
    assert {k: v for k, v in clusters.items() if v is not None} == {k: min(v) for k, v in expected.items()}
    assert ids_where(result, "label_conflict") == {p[4], i[0]}
    assert ids_where(result, "refusal") == {i[1], i[2]}
    assert set(result.rows.filter(pc.invert(pc.field("length_ok"))).column("sample_id").to_pylist()) == {
        i[3],
        i[4],
    }

    default = curate(result.rows)
    assert default.dropped == {
        "refusal": 2,
        "length": 2,
        "label_conflict": 0,
        "judge_disagreement": 0,
        "duplicate": 3,
    }
    assert default.kept.num_rows == 17 and default.kept.schema.equals(ROWS_SCHEMA)
    assert {min(p[:2]), min(p[2:4]), min(p[4], i[0])} <= set(default.kept.column("sample_id").to_pylist())
    strict = curate(result.rows, CurationPolicy(drop_label_conflicts=True))
    assert strict.dropped["label_conflict"] == 2 and strict.dropped["duplicate"] == 2
    assert strict.kept.num_rows == 16 and strict.reasons[i[0]] == "label_conflict"
    keep_all = CurationPolicy(drop_duplicates=False, drop_refusals=False, drop_length=False)
    assert curate(result.rows, keep_all).kept.equals(result.rows)


def test_blind_judge_and_agreement(server: LLMServer, store: CallStore) -> None:
    spec = make_spec(judge_model="openai/test-judge")
    plan = make_plan(spec).to_pylist()
    wrong = {r["sample_id"] for r in plan[:6]}

    def judge(row: dict[str, Any]) -> str:
        if row["sample_id"] == "s0010":
            return "rude"  # not a label: a judge reject
        flip = {"polite": "impolite", "impolite": "polite"}
        return flip[row["label"]] if row["sample_id"] in wrong else row["label"]

    server.answer = scripted(spec, judge=judge)
    result = run(spec, server, store)
    judged = [b for b in server.requests if b["model"] == "test-judge"]
    assert server.count == 48 and len(judged) == 24 and len(store) == 48
    texts = set(result.rows.column("text").to_pylist())
    for body in judged:  # blind: only the task, the label descriptions and the text
        system, user = (m["content"] for m in body["messages"])
        assert user.removeprefix("Text:\n") in texts and "Category" not in system + user
        assert "because" not in system + user and body["temperature"] == 0.0
    assert result.judge_agreement == pytest.approx(17 / 23)
    rows = {r["sample_id"]: r for r in result.rows.to_pylist()}
    assert {s for s, r in rows.items() if r["judge_agrees"] is False} == wrong
    assert rows["s0010"]["judge_label"] is None and rows["s0010"]["judge_call_key"] is not None
    (reject,) = result.rejects.to_pylist()
    assert reject["stage"] == JUDGE_STAGE and "'rude' is not one of" in reject["reason"]
    assert len(result.call_keys) == 48 and result.call_keys[1] == rows["s0000"]["judge_call_key"]
    judge_record = store.get(rows["s0001"]["judge_call_key"])
    assert judge_record is not None and judge_record.request["sample"]["attempt"] == "judge"
    assert judge_record.request["template"]["id"] == JUDGE_TEMPLATE.id
    disagreements = CurationPolicy(drop_judge_disagreements=True)
    assert curate(result.rows, disagreements).dropped["judge_disagreement"] == 6


def test_budget_guard_then_resume_makes_only_missing_calls(server: LLMServer, store: CallStore) -> None:
    spec = make_spec()
    server.answer = scripted(spec)
    partial = run(spec, server, store, max_calls=10, concurrency=4)
    assert partial.budget_exhausted and partial.rows.num_rows == 10 and len(partial.missing) == 14
    assert server.count == 10 and len(store) == 10 and len(partial.call_keys) == 10

    full = run(spec, server, store, mode="record-missing")
    assert server.count == 24 and full.calls == 14 and full.cache_hits == 10
    assert not full.budget_exhausted and full.rows.num_rows == 24 and not full.missing
    done = pa.array(partial.rows.column("sample_id").to_pylist())
    assert full.rows.filter(pc.is_in(full.rows.column("sample_id"), done)).equals(partial.rows)


def test_budget_covers_the_judge_pass(server: LLMServer, store: CallStore) -> None:
    spec = make_spec(samples=8, judge_model="openai/test-judge")
    server.answer = scripted(spec)
    result = run(spec, server, store, max_calls=12)
    assert server.count == 12 and result.budget_exhausted and result.rows.num_rows == 8
    assert result.rows.column("judge_label").null_count == 4
