"""Story -> spec: the lock parser, the deterministic fixes, and draft_spec through real litellm
over HTTP to the loopback server (answers scripted per step)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from llm_server import LLMServer

from synthreg.errors import SpecError, UsageError
from synthreg.generators.llm import CallStore, Gateway, LiteLLMBackend
from synthreg.generators.llm.story import StoryResult, draft_spec, lock_story
from synthreg.generators.llm.story_fixes import apply_fixes
from synthreg.generators.llm.story_prompts import COLUMNS, REPAIR, TABLES
from synthreg.generators.spec import ENGINE_COLUMN_TYPES, VOCABULARIES
from synthreg.generators.spec_io import parse_spec

SECRET = "sk-test-STORYSECRET987"
KEY_ENV = "SYNTHREG_TEST_STORY_KEY"
MODEL = "openai/test-model"
FITNESS = "A fitness app with 50k users, subscriptions and workouts."


# --- the lock parser ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("story", "tables"),
    [
        (FITNESS, {"users": 50_000, "subscriptions": None, "workouts": None}),
        (
            "An online shop with 10,000 customers, 2 million orders and 1.5k products.",
            {"customers": 10_000, "orders": 2_000_000, "products": 1_500},
        ),
        ("A SaaS product: 3M events from 20k accounts.", {"events": 3_000_000, "accounts": 20_000}),
        ("a blog with posts and comments", {"posts": None, "comments": None}),
        ("users (50k) and orders: 2000000", {"users": 50_000, "orders": 2_000_000}),
        (
            "a marketplace with 2.5 million listings, 40k sellers & buyers for churn analysis",
            {"listings": 2_500_000, "sellers": 40_000, "buyers": None},
        ),
        (
            "a warehouse with 2 million order items and active suppliers",
            {"order_items": 2_000_000, "suppliers": None},
        ),
        ("10k rows of patients", {"patients": 10_000}),
    ],
)
def test_lock_tables_and_counts(story: str, tables: dict[str, int | None]) -> None:
    locked = lock_story(story)
    assert {t.name: t.rows for t in locked.tables} == tables
    assert [t.name for t in locked.tables] == list(tables)  # in story order


@pytest.mark.parametrize(
    "story",
    [
        "a clinic with 500 doctors, where each patient has about 4 visits",
        "each user logs 3 workouts per week over 2 years",
        "an app tracking users and workouts",
    ],
)
def test_lock_leaves_ratios_and_verbs_to_the_model(story: str) -> None:
    names = {t.name: t.rows for t in lock_story(story).tables}
    assert "visits" not in names and "workouts" not in names and "years" not in names
    assert not lock_story(story).enums


@pytest.mark.parametrize(
    ("story", "column", "values", "table"),
    [
        (
            "a fitness app with 50k users on plans free, pro and team",
            "plan",
            ("free", "pro", "team"),
            "users",
        ),
        (
            "orders with status pending, shipped or delivered",
            "status",
            ("pending", "shipped", "delivered"),
            None,
        ),
        (
            "a bank with 10k clients, tier one of bronze/silver/gold",
            "tier",
            ("bronze", "silver", "gold"),
            "clients",
        ),
        ("2k accounts. Plans: Free, Pro, Team", "plan", ("Free", "Pro", "Team"), None),
        (
            FITNESS + " Subscriptions have plans free, pro and team.",
            "plan",
            ("free", "pro", "team"),
            "subscriptions",
        ),
        ("users with plan in {free, pro}", "plan", ("free", "pro"), None),
        (
            "2k invoices with categories hardware and software",
            "category",
            ("hardware", "software"),
            "invoices",
        ),
    ],
)
def test_lock_enums(story: str, column: str, values: tuple[str, ...], table: str | None) -> None:
    (enum,) = lock_story(story).enums
    assert (enum.column, enum.values, enum.table) == (column, values, table)


def test_lock_enum_is_not_a_table_list() -> None:
    locked = lock_story("a shop with customers and orders in EUR and USD; plans free, pro and team")
    assert [t.name for t in locked.tables] == ["customers", "orders"]
    assert [e.column for e in locked.enums] == ["plan"]


_VOCABULARY = "a with and or , ; . 50k 1.5k 2 million users orders plans free pro team: each per ( ) / 10,000"
_STORY_WORDS = st.sampled_from(_VOCABULARY.split(" "))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(_STORY_WORDS, st.text(max_size=8)), max_size=40).map(" ".join))
def test_lock_story_is_total_and_deterministic(story: str) -> None:
    locked = lock_story(story)
    assert locked == lock_story(story)
    for table in locked.tables:
        assert parse_spec(
            {"tables": {table.name: {"rows": table.rows or 1, "columns": {"id": {"type": "int"}}}}}
        )
    assert all(len(e.values) >= 2 for e in locked.enums)


# --- deterministic fixes --------------------------------------------------------------------------


def _data(**columns: Any) -> dict[str, Any]:
    return {
        "tables": {"users": {"rows": 10, "primary_key": "id", "columns": {"id": {"type": "int"}, **columns}}}
    }


def _fixed(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    notes: list[str] = []
    for _ in range(10):
        try:
            parse_spec(data, "t")
            return data, notes
        except SpecError as exc:
            applied = apply_fixes(data, exc.problems)
        if not applied:
            raise AssertionError(f"no fix for {data}")
        notes += [note for _, _, note in applied]
    raise AssertionError("fixes did not converge")


def test_fixes_each_rule() -> None:
    data, notes = _fixed(
        _data(
            age={"type": "int", "distribution": {"kind": "weibull", "k": 1}, "min": 90, "max": 18},
            plan={"type": "category", "values": {"free": 0.8, "pro": 0.5}},
            score={"type": "float", "distribution": {"kind": "normal", "mean": 1, "std": 2, "zz": 3}},
            team_id={"type": "int", "foreign_key": "teams.id"},
            colour={"type": "bool", "p": 0.5, "shade": "red"},
            rate={"type": "float", "null_rate": 1.5},
        )
    )
    columns = data["tables"]["users"]["columns"]
    assert "distribution" not in columns["age"] and (columns["age"]["min"], columns["age"]["max"]) == (18, 90)
    assert sum(columns["plan"]["values"].values()) == pytest.approx(1.0)
    assert columns["score"]["distribution"] == {"kind": "normal", "mean": 1, "std": 2}
    assert "team_id" not in columns and "shade" not in columns["colour"]
    assert columns["rate"]["null_rate"] == 0.99
    assert any("renormalised" in n for n in notes) and any("foreign key" in n for n in notes)


def test_fixes_types_keys_and_time() -> None:
    data = {
        "tables": {
            "users": {
                "rows": 10,
                "primary_key": "user_id",
                "columns": {
                    "first": {"type": "text", "vocab": "first_name"},
                    "last": {"type": "text", "vocab": "last_name"},
                    "email": {"type": "text", "vocab": "email"},
                    "score": {"type": "integer", "distribution": {"kind": None}},
                    "seen": {"type": "datetime", "start": "2025-01-01", "end": "2024-01-01"},
                },
            }
        }
    }
    fixed, notes = _fixed(data)
    columns = fixed["tables"]["users"]["columns"]
    assert next(iter(columns)) == "user_id" and columns["user_id"] == {"type": "int"}
    assert columns["email"]["from"] == ["first", "last"]
    assert columns["score"] == {"type": "int"}
    assert (columns["seen"]["start"], columns["seen"]["end"]) == ("2024-01-01", "2025-01-01")
    assert len(notes) == 5


# --- draft_spec over HTTP -------------------------------------------------------------------------


def col(name: str, type_: str, **fields: Any) -> dict[str, Any]:
    """A column as the strict schema answers it: every field present, null where unused."""
    keys = ("distribution", "min", "max", "decimals", "p", "values", "start", "end", "vocab", "pattern")
    out: dict[str, Any] = {
        "name": name,
        "type": type_,
        "description": "",
        **dict.fromkeys(keys),
        "from": None,
    }
    out["null_rate"] = None
    out.update({("from" if k == "from_" else k): v for k, v in fields.items()})
    return out


def dist(kind: str, **params: float) -> dict[str, Any]:
    return {"kind": kind, "params": [{"name": k, "value": v} for k, v in params.items()]}


def probs(**values: float) -> list[dict[str, Any]]:
    return [{"value": k, "p": v} for k, v in values.items()]


def tables_answer(users: int = 50_000) -> dict[str, Any]:
    return {
        "description": "Synthetic fitness-app data.",
        "tables": [
            {
                "name": "users",
                "description": "App users.",
                "rows": users,
                "parents": [],
                "rows_per_parent": None,
            },
            {
                "name": "subscriptions",
                "description": "Paid plans.",
                "rows": round(users * 0.4),
                "parents": ["users"],
                "rows_per_parent": 0.4,
            },
            {
                "name": "workouts",
                "description": "Logged workouts.",
                "rows": users * 4,
                "parents": ["users"],
                "rows_per_parent": 4,
            },
        ],
    }


def columns_answer(
    age: dict[str, Any] | None = None, plan: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "tables": [
            {
                "name": "users",
                "columns": [
                    col("first_name", "text", vocab="first_name"),
                    col("last_name", "text", vocab="last_name"),
                    col("email", "text", vocab="email", from_=["first_name", "last_name"]),
                    col("age", "int", distribution=age or dist("normal", mean=34, std=11), min=16, max=85),
                    col("signed_up_at", "datetime", start="2022-01-01", end="2025-12-31"),
                ],
            },
            {
                "name": "subscriptions",
                "columns": [
                    col("plan", "category", values=plan or probs(monthly=0.6, quarterly=0.25, yearly=0.15)),
                    col("started_at", "datetime", start="2022-01-01", end="2025-12-31"),
                    col("auto_renew", "bool", p=0.7),
                ],
            },
            {
                "name": "workouts",
                "columns": [
                    col("duration_min", "int", distribution=dist("gamma", shape=4, scale=10), min=5, max=240),
                    col("logged_at", "datetime", start="2022-01-01", end="2025-12-31", null_rate=0.0),
                ],
            },
        ]
    }


def constraints_answer(parent: str = "users") -> dict[str, Any]:
    return {
        "primary_keys": [
            {"table": "users", "column": "user_id"},
            {"table": "subscriptions", "column": "subscription_id"},
            {"table": "workouts", "column": "workout_id"},
        ],
        "foreign_keys": [
            {"table": "subscriptions", "column": "user_id", "references": parent},
            {"table": "workouts", "column": "user_id", "references": "users"},
        ],
        "time_order": [{"table": "subscriptions", "column": "started_at", "after": "users.signed_up_at"}],
    }


GARBAGE_COLUMNS = columns_answer(
    age=dist("weibull", k=1.5), plan=probs(monthly=0.6, quarterly=0.4, yearly=0.3)
)  # unknown distribution, probabilities summing to 1.3
DANGLING = constraints_answer(parent="members")  # a foreign key to a table that does not exist


class Script:
    """The server's scripted answers: per step, answer k serves the step's k-th request (the last repeats)."""

    def __init__(self, **answers: list[Any]):
        self.answers = {"tables": [tables_answer()], "columns": [columns_answer()]}
        self.answers["constraints"] = [constraints_answer()]
        self.answers.update(answers)
        self.seen: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, body: dict[str, Any]) -> str:
        step = body["response_format"]["json_schema"]["name"].removeprefix("story_")
        answers = self.answers[step]
        answer = answers[min(self.seen[step], len(answers) - 1)]
        self.seen[step] += 1
        self.bodies.append(body)
        return answer if isinstance(answer, str) else json.dumps(answer)


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as srv:
        srv.answer = Script()
        yield srv


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "calls.sqlite"


def gateway(store: CallStore, mode: str = "live", **options: Any) -> Gateway:
    backend = LiteLLMBackend(api_key_env=KEY_ENV, timeout_s=10)
    return Gateway(store, backend, mode=mode, backoff_base=0.01, **options)


def draft(server: LLMServer, store: CallStore, story: str = FITNESS, **options: Any) -> StoryResult:
    return draft_spec(story, gateway(store), model=MODEL, api_base=server.api_base, seed=7, **options)


def step(result: StoryResult, name: str) -> Any:
    return next(s for s in result.steps if s.name == name)


def test_good_answers_make_the_locked_spec(server: LLMServer) -> None:
    with CallStore.memory() as store:
        result = draft(server, store)
    spec = result.spec
    assert list(spec.tables) == ["users", "subscriptions", "workouts"]
    assert spec.tables["users"].rows == 50_000 and spec.seed == 7
    assert spec.tables["subscriptions"].foreign_keys() == {"user_id": ("users", "user_id")}
    assert spec.tables["workouts"].foreign_keys() == {"user_id": ("users", "user_id")}
    assert spec.tables["subscriptions"].columns["started_at"].after == "users.signed_up_at"
    assert len(result.call_keys) == 3 == server.count
    assert [s.attempts for s in result.steps] == [("gen",), ("gen",), ("gen",)]
    assert result.spec_yaml == spec.frozen_yaml()
    assert parse_spec(yaml.safe_load(result.spec_yaml), "again").frozen_yaml() == result.spec_yaml
    assert result.model_answered == MODEL and FITNESS in result.prompt and TABLES.hash in result.prompt
    assert [t.name for t in result.locked.tables] == ["users", "subscriptions", "workouts"]
    json.dumps(result.to_dict())  # JSON-able


def test_requests_carry_schema_enums_templates_and_seed(server: LLMServer) -> None:
    with CallStore.memory() as store:
        result = draft(server, store)
        records = list(store.records(result.call_keys))
    body = server.requests[1]
    schema = body["response_format"]["json_schema"]["schema"]
    column = schema["properties"]["tables"]["items"]["properties"]["columns"]["items"]["properties"]
    assert column["type"]["enum"] == list(ENGINE_COLUMN_TYPES)  # llm_text is not offered to the story stage
    assert column["vocab"]["anyOf"][0]["enum"] == list(VOCABULARIES)
    assert (
        "weibull" not in json.dumps(column["distribution"]) and "lognormal" in body["messages"][1]["content"]
    )
    assert body["seed"] == 7
    template = records[1].request["template"]
    assert template == {"id": COLUMNS.id, "version": COLUMNS.version, "hash": COLUMNS.hash}
    assert [r.request["sample"]["stage"] for r in records] == [
        "story.tables",
        "story.columns",
        "story.constraints",
    ]


def test_locked_row_count_wins_and_is_logged(server: LLMServer) -> None:
    server.answer = Script(tables=[tables_answer(users=1000)])
    with CallStore.memory() as store:
        result = draft(server, store)
    assert result.spec.tables["users"].rows == 50_000
    assert result.spec.tables["subscriptions"].rows == 20_000  # follows its 0.4 rows per user
    fixes = step(result, "tables").fixes
    assert any("tables.users.rows" in f and "1000 -> 50000" in f and "50k users" in f for f in fixes)


def test_locked_enum_wins(server: LLMServer) -> None:
    server.answer = Script(columns=[columns_answer(plan=probs(basic=0.5, premium=0.5))])
    with CallStore.memory() as store:
        result = draft(server, store, story=FITNESS + " Subscriptions have plans free, pro and team.")
    assert result.spec.tables["subscriptions"].columns["plan"].categories == ["free", "pro", "team"]
    assert any("(locked)" in f for f in step(result, "columns").fixes)


def test_garbage_answer_is_repaired(server: LLMServer) -> None:
    script = Script(columns=[GARBAGE_COLUMNS, columns_answer()], constraints=[DANGLING, constraints_answer()])
    server.answer = script
    with CallStore.memory() as store:
        result = draft(server, store)
    assert server.count == 5 and len(result.call_keys) == 5
    assert step(result, "columns").attempts == ("gen", "repair#1")
    assert step(result, "constraints").attempts == ("gen", "repair#1")
    repair = next(b for b in script.bodies if len(b["messages"]) == 4)
    assert "tables.users.columns.age.distribution" in repair["messages"][-1]["content"]
    assert json.dumps(GARBAGE_COLUMNS) in repair["messages"][2]["content"]  # the previous answer
    assert any("weibull" in e for e in step(result, "columns").errors)
    assert any("members" in e for e in step(result, "constraints").errors)
    assert result.spec.tables["users"].columns["age"].distribution.kind == "normal"  # type: ignore[union-attr]


def test_deterministic_fixes_when_repairs_do_not_help(server: LLMServer) -> None:
    server.answer = Script(columns=[GARBAGE_COLUMNS], constraints=[DANGLING])
    with CallStore.memory() as store:
        result = draft(server, store, max_repairs=1)
    columns = result.spec.tables["subscriptions"].columns
    assert sum(columns["plan"].probabilities or []) == pytest.approx(1.0)
    assert result.spec.tables["users"].columns["age"].distribution is None
    assert "user_id" not in columns  # the dangling foreign key and its column dropped
    fixes = step(result, "columns").fixes + step(result, "constraints").fixes
    assert any("renormalised" in f for f in fixes) and any("distribution dropped" in f for f in fixes)
    assert any("foreign key" in f for f in step(result, "constraints").fixes)


def test_answers_that_stay_invalid_raise_spec_error(server: LLMServer) -> None:
    broken = columns_answer()
    broken["tables"][0]["columns"].append(col("tier", "category"))  # no values: no fix can invent them
    server.answer = Script(columns=[broken])
    with CallStore.memory() as store, pytest.raises(SpecError, match="still does not validate") as info:
        draft(server, store)
    assert (
        "tables.users.columns.tier",
        "a category column needs 'values': a list, or a map value -> probability",
    ) in (info.value.problems)
    assert "write the spec YAML by hand" in str(info.value)
    assert server.count == 5  # 3 steps + 2 repairs of the columns


def test_malformed_json_is_repaired_not_a_crash(server: LLMServer) -> None:
    server.fail("malformed", times=1)
    with CallStore.memory() as store:
        result = draft(server, store)
    assert server.count == 4
    assert step(result, "tables").attempts == ("gen", "repair#1")
    assert any("not valid JSON" in e for e in step(result, "tables").errors)
    assert REPAIR.render(problems="x").splitlines()[0] in server.requests[1]["messages"][-1]["content"]
    assert result.spec.tables["users"].rows == 50_000


def test_malformed_json_forever_is_a_spec_error(server: LLMServer) -> None:
    server.answer = Script(tables=["{not json"])
    with CallStore.memory() as store, pytest.raises(SpecError, match="step tables: answer"):
        draft(server, store)
    assert server.count == 3  # gen + 2 repairs, then give up


def test_replay_strict_rebuilds_with_the_server_stopped(server: LLMServer, store_path: Path) -> None:
    server.answer = Script(
        columns=[GARBAGE_COLUMNS, columns_answer()], constraints=[DANGLING, constraints_answer()]
    )
    with CallStore.open(store_path) as store:
        live = draft(server, store)
    api_base = server.api_base
    server.stop()
    with CallStore.open(store_path) as store:
        replayed = draft_spec(
            FITNESS, gateway(store, "replay-strict"), model=MODEL, api_base=api_base, seed=7
        )
    assert replayed.spec_yaml == live.spec_yaml
    assert replayed.call_keys == live.call_keys and replayed.steps == live.steps


def test_api_key_never_stored_or_returned(server: LLMServer, store_path: Path) -> None:
    with CallStore.open(store_path) as store:
        result = draft(server, store)
    assert all(h.get("authorization") == f"Bearer {SECRET}" for h in server.headers)  # the key was used
    stored = b"".join(p.read_bytes() for p in store_path.parent.glob("calls.sqlite*"))
    assert SECRET.encode() not in stored
    assert SECRET not in json.dumps(result.to_dict()) and SECRET not in repr(result)


def test_budget_exhausted_is_a_usage_error(server: LLMServer) -> None:
    # the budget holds for the whole draft: 0 calls stops the first step
    with CallStore.memory() as store, pytest.raises(UsageError, match="budget ran out"):
        draft_spec(FITNESS, gateway(store, max_calls=0), model=MODEL, api_base=server.api_base)
    assert server.count == 0


@pytest.mark.parametrize(
    ("model", "story", "match"), [("", FITNESS, "needs an LLM model"), (MODEL, " ", "empty")]
)
def test_usage_errors(model: str, story: str, match: str) -> None:
    with CallStore.memory() as store, pytest.raises(UsageError, match=match):
        draft_spec(story, gateway(store), model=model)
