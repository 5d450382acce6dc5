"""API keys: read from the environment only, and scrubbed from everything we write or raise.

Keys are never part of a call request, a call key, the call store, an export, a result or
a log line. Two nets catch them anyway:

- ``scrub``: any mapping field whose name looks secret (key, token, authorization, secret,
  password, cookie) is replaced, except the token *counts* (``max_tokens``, ``prompt_tokens``...);
  text values are kept as they are (prompts and answers must replay byte for byte);
- ``redact``: in free text (exception messages), the values of secret-looking environment
  variables, ``sk-...`` style keys and ``Bearer ...`` credentials are replaced.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from synthreg.generators.llm.errors import ApiKeyMissingError

__all__ = ["REDACTED", "api_key_for", "env_secrets", "is_secret_name", "redact", "scrub"]

REDACTED = "[redacted]"
_SECRET_NAME = re.compile(r"key|token|authorization|secret|password|cookie|credential", re.IGNORECASE)
_COUNT_NAMES = frozenset(
    {"max_tokens", "max_completion_tokens", "prompt_tokens", "completion_tokens", "total_tokens"}
)
_PATTERNS = (
    re.compile(r"\b(sk|gsk|xai)-[A-Za-z0-9_\-]{6,}"),
    re.compile(r"(?i)\bbearer\s+[^\s'\",}]+"),
    re.compile(r"(?i)(api[_-]?key|x-api-key|authorization)(['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"),
)
_MIN_SECRET_LEN = 6


def is_secret_name(name: str) -> bool:
    """Whether a field or variable name looks like it holds a credential."""
    return name.lower() not in _COUNT_NAMES and bool(_SECRET_NAME.search(name))


def scrub(value: Any) -> Any:
    """A copy of a JSON-like value with every secret-named mapping field replaced."""
    if isinstance(value, Mapping):
        return {k: (REDACTED if is_secret_name(str(k)) else scrub(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value  # text is left as is: prompts and answers must replay byte for byte


def env_secrets() -> list[str]:
    """Values of environment variables whose names look secret (long enough to be keys)."""
    found = [v for k, v in os.environ.items() if is_secret_name(k) and len(v) >= _MIN_SECRET_LEN]
    return sorted(set(found), key=len, reverse=True)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with known secrets, key-shaped strings and auth headers replaced."""
    for secret in [*secrets, *env_secrets()]:
        if secret and len(secret) >= _MIN_SECRET_LEN:
            text = text.replace(secret, REDACTED)
    text = _PATTERNS[0].sub(REDACTED, text)
    text = _PATTERNS[1].sub("Bearer " + REDACTED, text)
    return _PATTERNS[2].sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)


def api_key_for(model: str, api_key_env: str | Mapping[str, str] | None) -> str | None:
    """The API key for ``model``, read from the environment variable configured for it.

    ``api_key_env`` is one variable name for every model, or a mapping from a model
    (``openai/gpt-4o``), a provider (``openai``) or ``*`` to a variable name. None (or
    no entry) returns None: litellm then reads the provider's usual variable
    (``OPENAI_API_KEY``, ``GROQ_API_KEY``...).
    """
    name = _env_name(model, api_key_env)
    if name is None:
        return None
    value = os.environ.get(name, "")
    if not value:
        raise ApiKeyMissingError(
            f"the API key for {model} is read from ${name}, which is not set: export {name}=<your key>"
        )
    return value


def _env_name(model: str, api_key_env: str | Mapping[str, str] | None) -> str | None:
    if api_key_env is None or isinstance(api_key_env, str):
        return api_key_env
    provider = model.split("/", 1)[0]
    for candidate in (model, provider, "*"):
        if candidate in api_key_env:
            return api_key_env[candidate]
    return None
