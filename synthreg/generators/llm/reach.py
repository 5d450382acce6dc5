"""Which models a workspace can call, decided from its ``[llm]`` settings before any call.

How a request is routed (``backend.litellm_kwargs``, ``keys.api_key_for``): litellm picks the
protocol from the model's provider prefix (``openai/``, ``anthropic/``...); every request carries
the workspace's ``[llm] api_base`` when one is set; the key is read from the variable
``[llm] api_key_env`` names (one name for every model, or a table by model / provider / ``*``),
else litellm reads the provider's usual variable (``OPENAI_API_KEY``...).

So a model is reachable when:

- ``api_base`` is set: the endpoint serves the protocol of ``[llm] model``'s provider (an
  OpenAI-compatible server for ``openai/``), so the model's provider must speak that same
  protocol (the same provider, or both OpenAI-compatible); and a key variable named for it is set;
- ``api_base`` is not set: the provider's own endpoint is called, so the model needs its key: the
  variable named for it must be set (a single ``api_key_env`` is the key of ``[llm] model``'s
  provider only: another provider would be sent that key), or, when none is named, the provider's
  usual variable. Providers that need no key (a local Ollama) pass, and so do providers this
  module does not know (their credentials may come from elsewhere: cloud roles, config files).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["PROVIDER_KEY_ENV", "unreachable_reason"]

#: the variable litellm reads a provider's key from when ``[llm] api_key_env`` names none
PROVIDER_KEY_ENV = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "groq": "GROQ_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "cohere": "COHERE_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "xai": "XAI_API_KEY",
    "together_ai": "TOGETHERAI_API_KEY",
    "fireworks_ai": "FIREWORKS_AI_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "perplexity": "PERPLEXITYAI_API_KEY",
}
_KEYLESS = frozenset({"ollama", "ollama_chat"})
#: providers litellm talks to in OpenAI's protocol, so one OpenAI-compatible api_base serves them all
_OPENAI_COMPATIBLE = frozenset({"openai", "hosted_vllm", "lm_studio", "llamafile", "custom_openai"})


def _provider(model: str) -> str:
    return model.split("/", 1)[0]


def _usual_env(provider: str) -> str:
    return PROVIDER_KEY_ENV.get(provider, provider.upper() + "_API_KEY")


def _unset(model: str, name: str) -> str:
    return f"model {model}: its key is read from ${name} ([llm] api_key_env), which is not set: export {name}"


def _same_protocol(a: str, b: str) -> bool:
    return a == b or (a in _OPENAI_COMPATIBLE and b in _OPENAI_COMPATIBLE)


def _named_env(model: str, api_key_env: str | Mapping[str, str] | None) -> str | None:
    if api_key_env is None or isinstance(api_key_env, str):
        return api_key_env
    return next((api_key_env[k] for k in (model, _provider(model), "*") if k in api_key_env), None)


def unreachable_reason(
    model: str, *, default_model: str, api_base: str | None, api_key_env: str | Mapping[str, str] | None
) -> str | None:
    """Why ``model`` cannot be called with these ``[llm]`` settings, ending in the setting to add;
    None when it can (or when this cannot be told without calling)."""
    provider, home = _provider(model), _provider(default_model)
    if api_base:
        if not _same_protocol(provider, home):
            return (
                f"model {model}: every request goes to [llm] api_base ({api_base}), which serves {home}/ "
                f"models ([llm] model = {default_model}), so a {provider}/ model would fail there; name a "
                f"model that endpoint serves ({home}/<name>), or remove api_base from registry.toml and "
                f"export {_usual_env(provider)} to call {provider} itself"
            )
        name = _named_env(model, api_key_env)
        return _unset(model, name) if name and not os.environ.get(name) else None
    return _key_reason(model, provider, home, api_key_env)


def _key_reason(
    model: str, provider: str, home: str, api_key_env: str | Mapping[str, str] | None
) -> str | None:
    usual = PROVIDER_KEY_ENV.get(provider)
    name = _named_env(model, api_key_env)
    if isinstance(api_key_env, str) and provider != home:
        return (
            f"model {model}: [llm] api_key_env = {api_key_env!r} is one key for every model, the key of "
            f"{home}/ models, and {provider} would be sent it; remove api_key_env so each provider's key is "
            f"read from its usual variable (export {_usual_env(provider)}), or make it a "
            f'table: [llm.api_key_env] {home} = "{api_key_env}", {provider} = "<VARIABLE>"'
        )
    if name is not None:
        return None if os.environ.get(name) else _unset(model, name)
    if provider in _KEYLESS or usual is None or os.environ.get(usual):
        return None
    return (
        f"model {model}: no key for {provider}: export {usual}=<your key> (or name the variable with "
        f"[llm] api_key_env), or set [llm] api_base to an endpoint that serves the model"
    )
