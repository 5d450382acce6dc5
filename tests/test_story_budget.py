"""One LLM budget across a whole story draft (every step and repair), through real litellm over
HTTP to the loopback server: a draft past ``max_calls`` / ``max_usd`` stops with the budget error
after at most that many requests, and a rerun with more budget resumes without repeating a call."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from llm_server import LLMServer
from test_llm_gateway import requests_for
from test_story import (
    DANGLING,
    FITNESS,
    GARBAGE_COLUMNS,
    KEY_ENV,
    MODEL,
    SECRET,
    Script,
    columns_answer,
    constraints_answer,
    gateway,
)
from typer.testing import CliRunner

from synthreg.cli.app import app
from synthreg.errors import UsageError
from synthreg.generators.llm import CallStore, Gateway
from synthreg.generators.llm.story import StoryResult, draft_spec

PRICED = "openai/gpt-4o-mini"  # in the pinned price table: the loopback server's usage costs money
TOTAL = 5  # 3 steps + a repair of the columns + a repair of the constraints

runner = CliRunner()


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as srv:
        srv.answer = repairing_script()
        yield srv


def repairing_script() -> Script:
    return Script(columns=[GARBAGE_COLUMNS, columns_answer()], constraints=[DANGLING, constraints_answer()])


def draft(server: LLMServer, gw: Gateway, model: str = MODEL) -> StoryResult:
    return draft_spec(FITNESS, gw, model=model, api_base=server.api_base, seed=7)


def bodies(server: LLMServer) -> list[str]:
    return [json.dumps(body, sort_keys=True) for body in server.requests]


def test_unlimited_draft_makes_five_calls(server: LLMServer) -> None:
    with CallStore.memory() as store:
        result = draft(server, gateway(store))
    assert server.count == TOTAL == len(result.call_keys)


@pytest.mark.parametrize("max_calls", [0, 1, 2, 3, 4])
def test_max_calls_caps_the_whole_draft_and_a_rerun_resumes(
    server: LLMServer, store_path: Path, max_calls: int
) -> None:
    with CallStore.open(store_path) as store, pytest.raises(UsageError, match="budget ran out") as info:
        draft(server, gateway(store, max_calls=max_calls))
    assert server.count == max_calls  # each step got what the earlier ones left, never a fresh budget
    assert f"after {max_calls} call(s)" in str(info.value) and "--max-calls" in str(info.value)
    made = bodies(server)
    with CallStore.open(store_path) as store:
        assert len(store) == max_calls  # the calls made before the stop are recorded
        # the rest of the calls exactly: the recorded ones are served from the store, free
        result = draft(server, gateway(store, max_calls=TOTAL - max_calls))
    assert server.count == TOTAL == len(result.call_keys)
    assert bodies(server)[:max_calls] == made
    assert len(set(bodies(server))) == TOTAL  # no request was sent twice
    server.answer = repairing_script()  # the same answers again, for a draft in one go
    with CallStore.memory() as fresh:
        unlimited = draft(server, gateway(fresh))
    assert result.spec_yaml == unlimited.spec_yaml and result.call_keys == unlimited.call_keys


def test_max_usd_caps_the_whole_draft(server: LLMServer, store_path: Path) -> None:
    # a call may start while the draft has spent less than max_usd: the first one, then nothing
    with CallStore.open(store_path) as store, pytest.raises(UsageError, match="budget ran out"):
        draft(server, gateway(store, max_usd=1e-9), model=PRICED)
    assert server.count == 1
    with CallStore.open(store_path) as store:
        spent = sum(record.cost_usd for record in store.records(store.keys()))
        assert spent > 1e-9
        result = draft(server, gateway(store, max_usd=1.0), model=PRICED)
    assert server.count == TOTAL == len(result.call_keys) and len(set(bodies(server))) == TOTAL


def test_rest_of_budget_subtracts_every_run(server: LLMServer) -> None:
    server.answer = None  # schema-derived answers, not the story script
    with CallStore.memory() as store:
        gw = gateway(store, max_calls=5, max_usd=1.0)
        first = gw.run(requests_for(server, 2))
        second = gw.run(requests_for(server, 3))  # 2 cache hits, 1 call
        assert (first.calls, second.calls, second.cache_hits) == (2, 1, 2)
        rest = gw.rest_of_budget(first, second)
        assert rest.max_calls == 2 and rest.max_usd == 1.0 and rest.store is store  # unpriced model
        assert gw.rest_of_budget(first).rest_of_budget(second).max_calls == 2  # chained: the same
        assert (gw.max_calls, gw.rest_of_budget().max_calls) == (5, 5)  # the original is untouched
        assert gw.rest_of_budget(first, first, first).max_calls == 0  # never negative
        unlimited = gateway(store).rest_of_budget(first)
        assert (unlimited.max_calls, unlimited.max_usd) == (None, None)


# --- the CLI: [llm] budget and --max-calls on `spec draft` --------------------------------------


@pytest.fixture
def llm_workspace(workspace: Path, server: LLMServer) -> Path:
    config = workspace / "registry.toml"
    text = config.read_text().replace('# model = "openai/gpt-4o-mini"', f'model = "{MODEL}"')
    text = text.replace('# api_base = "http://127.0.0.1:8000/v1"', f'api_base = "{server.api_base}"')
    text = text.replace('# api_key_env = "OPENAI_API_KEY"', f'api_key_env = "{KEY_ENV}"')
    config.write_text(text)
    return workspace


def spec_draft(root: Path, *options: Any) -> Any:
    return runner.invoke(app, ["-C", str(root), "spec", "draft", "--story", FITNESS, *map(str, options)])


def test_spec_draft_max_calls_stops_then_resumes(llm_workspace: Path, server: LLMServer) -> None:
    stopped = spec_draft(llm_workspace, "--max-calls", 2)
    assert stopped.exit_code != 0 and "budget ran out" in stopped.output
    assert server.count == 2
    done = spec_draft(llm_workspace, "--max-calls", TOTAL - 2)
    assert done.exit_code == 0, done.output
    assert yaml.safe_load(done.stdout)["tables"]["users"]["rows"] == 50_000
    assert server.count == TOTAL and len(set(bodies(server))) == TOTAL


def test_create_story_max_calls_caps_the_draft(llm_workspace: Path, server: LLMServer) -> None:
    args = ["-C", str(llm_workspace), "create", "fit", "--story", FITNESS, "--scale", "0.01"]
    stopped = runner.invoke(app, [*args, "--max-calls", "3"])
    assert stopped.exit_code != 0 and "budget ran out" in stopped.output
    assert server.count == 3
    done = runner.invoke(app, [*args, "--max-calls", str(TOTAL - 3), "--json"])
    assert done.exit_code == 0, done.output
    assert server.count == TOTAL and len(set(bodies(server))) == TOTAL
    assert json.loads(done.stdout)["rows"]["users"] == 500


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "calls.sqlite"
