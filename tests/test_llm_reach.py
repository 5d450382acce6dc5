"""A spec naming a model the workspace cannot reach (no endpoint serving it, no key) is refused at
pre-flight: exit 2, the model and the setting to add, before anything is generated or called."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from llm_server import LLMServer
from typer.testing import CliRunner

import synthreg
from synthreg.cli.app import app
from synthreg.config import LlmSettings
from synthreg.errors import SpecError
from synthreg.generators.llm.reach import unreachable_reason
from synthreg.generators.spec_io import parse_spec
from synthreg.registry.llm_tables import check_models_reachable

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _nothing_registered(root: Path, name: str) -> None:
    assert synthreg.open(root).list() == []
    assert not (root / "data" / name).exists()
    staging = root / ".registry" / "staging"
    assert not staging.exists() or not any(staging.iterdir())


def test_the_support_example_is_refused_before_any_call(llm_workspace: tuple[Path, LLMServer]) -> None:
    """examples/llm/support_replies.yaml asks gpt-4o-mini and claude; the workspace has one
    OpenAI-compatible endpoint: the claude half would fail after the run started."""
    root, server = llm_workspace
    spec = EXAMPLES / "llm" / "support_replies.yaml"
    result = runner.invoke(app, ["-C", str(root), "create", "support", "--spec", str(spec)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {spec}: tables.replies.llm.models: model anthropic/claude")
    assert f"every request goes to [llm] api_base ({server.api_base})" in result.stderr
    assert "which serves openai/ models ([llm] model = openai/test-model)" in result.stderr
    assert "remove api_base from registry.toml and export ANTHROPIC_API_KEY" in result.stderr
    assert "gpt-4o-mini" not in result.stderr  # the reachable models are not named
    assert "LLM pre-flight" not in result.stderr  # refused before the estimate, before the engine
    assert server.count == 0
    _nothing_registered(root, "support")


def _column_spec(models: list[str]) -> dict[str, Any]:
    review = {"prompt": "A note on order {order_id}", "models": models}
    columns = {"order_id": {"type": "int"}, "note": {"type": "llm_text", "llm": review}}
    return {"tables": {"orders": {"rows": 4, "primary_key": "order_id", "columns": columns}}}


def test_an_llm_text_column_with_an_unset_key_variable_is_refused(
    llm_workspace: tuple[Path, LLMServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import LLM_KEY_ENV

    root, server = llm_workspace
    monkeypatch.delenv(LLM_KEY_ENV)
    path = tmp_path / "notes.yaml"
    path.write_text(yaml.safe_dump(_column_spec(["openai/test-model"])))
    result = runner.invoke(app, ["-C", str(root), "create", "notes", "--spec", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{path}: tables.orders.columns.note.llm.models: model openai/test-model" in result.stderr
    assert f"its key is read from ${LLM_KEY_ENV} ([llm] api_key_env), which is not set" in result.stderr
    assert server.count == 0
    _nothing_registered(root, "notes")


def test_reachable_models_pass_and_each_unreachable_one_is_named() -> None:
    spec = parse_spec(_column_spec(["openai/a", "anthropic/b", "openai/c", "groq/d"]), "notes.yaml")
    settings = LlmSettings(model="openai/m", api_base="http://127.0.0.1:1/v1")
    with pytest.raises(SpecError) as info:
        check_models_reachable(spec, settings)
    assert [loc for loc, _ in info.value.problems] == ["tables.orders.columns.note.llm.models"] * 2
    assert [msg.split(":")[0] for _, msg in info.value.problems] == ["model anthropic/b", "model groq/d"]
    check_models_reachable(parse_spec(_column_spec(["openai/a", "hosted_vllm/b"]), "ok.yaml"), settings)


@pytest.mark.parametrize(
    ("model", "settings", "env", "says"),
    [
        # an OpenAI-compatible endpoint serves every OpenAI-compatible name, and nothing else
        ("openai/gpt-4o", {"api_base": "http://h/v1"}, {}, None),
        ("hosted_vllm/llama", {"api_base": "http://h/v1"}, {}, None),
        ("anthropic/claude", {"api_base": "http://h/v1"}, {}, "which serves openai/ models"),
        ("ollama_chat/llama3", {"model": "ollama_chat/x", "api_base": "http://h:11434"}, {}, None),
        (
            "openai/m",
            {"api_base": "http://h/v1", "api_key_env": "K"},
            {},
            "$K ([llm] api_key_env), which is not",
        ),
        ("openai/m", {"api_base": "http://h/v1", "api_key_env": "K"}, {"K": "sk"}, None),
        # no api_base: the provider's own endpoint, with the provider's key
        ("anthropic/claude", {}, {}, "no key for anthropic: export ANTHROPIC_API_KEY"),
        ("anthropic/claude", {}, {"ANTHROPIC_API_KEY": "sk"}, None),
        (
            "anthropic/claude",
            {"api_key_env": "OPENAI_API_KEY"},
            {"OPENAI_API_KEY": "sk"},
            "one key for every",
        ),
        ("openai/gpt-4o", {"api_key_env": "OPENAI_API_KEY"}, {"OPENAI_API_KEY": "sk"}, None),
        ("openai/gpt-4o", {"api_key_env": "OPENAI_API_KEY"}, {}, "$OPENAI_API_KEY ([llm] api_key_env)"),
        ("anthropic/claude", {"api_key_env": {"openai": "O", "anthropic": "A"}}, {"A": "sk"}, None),
        (
            "anthropic/claude",
            {"api_key_env": {"openai": "O", "anthropic": "A"}},
            {},
            "$A ([llm] api_key_env)",
        ),
        ("ollama/llama3", {}, {}, None),  # a local server needs no key
        ("bedrock/anthropic.claude", {}, {}, None),  # credentials from elsewhere: cannot tell, let it call
    ],
)
def test_the_reachability_rule(
    model: str,
    settings: dict[str, Any],
    env: dict[str, str],
    says: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "K", "A", "O"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    options = {"model": "openai/m", "api_base": None, "api_key_env": None, **settings}
    why = unreachable_reason(
        model,
        default_model=options["model"],
        api_base=options["api_base"],
        api_key_env=options["api_key_env"],
    )
    assert (why is None) == (says is None), why
    if says is not None:
        assert why is not None and says in why and why.startswith(f"model {model}")
