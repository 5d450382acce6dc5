"""Workspace settings: ``registry.toml`` resolved once into a frozen object."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from synthreg import env
from synthreg.errors import WorkspaceError

__all__ = [
    "CONFIG_FILE",
    "STATE_DIR",
    "LlmSettings",
    "Settings",
    "default_toml",
    "find_root",
    "is_local_db",
    "redact_url",
    "refuse_credentials",
]

CONFIG_FILE = "registry.toml"
STATE_DIR = ".registry"


def default_toml(
    remote_url: str,
    remote_name: str = "local",
    *,
    db_url: str | None = None,
    mlflow_uri: str | None = None,
    endpoint_url: str | None = None,
) -> str:
    """The ``registry.toml`` that ``registry init`` writes (team backends by URL, else the embedded ones)."""
    endpoint = f'endpoint_url = "{endpoint_url}"\n' if endpoint_url else ""
    return f"""# synthreg workspace settings. Paths are relative to this file.
# Credentials never live here: PostgreSQL reads PGPASSWORD (or ~/.pgpass), S3 reads
# AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or ~/.aws), from the environment of each machine.
[registry]
db_url = "{db_url or f"sqlite:///{STATE_DIR}/registry.db"}"

[mlflow]
tracking_uri = "{mlflow_uri or f"sqlite:///{STATE_DIR}/mlflow.db"}"
artifact_root = "{STATE_DIR}/mlartifacts"

[dvc]
remote = "{remote_name}"
url = "{remote_url}"
{endpoint}
[review]
# Versions whose validation passed are approved automatically, unless every
# version needs a human approval (require_human = true). Set auto_approve to
# "never" to leave every version pending.
auto_approve = "validation_passed"
require_human = false
# The author of a version may not approve it (always on in `registry serve`).
four_eyes = false
# Flag a new version whose distributions moved away from the current version's by
# more than this (quantile shift / parent p10-p90 spread; category TVD). Unset: no check.
# max_drift = 0.25

[llm]
# The model for `registry create --story` and LLM text columns (litellm names, e.g.
# "openai/gpt-4o-mini", "groq/llama-3.3-70b-versatile", "ollama_chat/llama3.1", or
# "openai/<name>" with api_base for an OpenAI-compatible server). Keys come only from the
# environment: name the variable with api_key_env (never the key itself).
# model = "openai/gpt-4o-mini"
# api_base = "http://127.0.0.1:8000/v1"
# api_key_env = "OPENAI_API_KEY"
# fallbacks = ["groq/llama-3.3-70b-versatile"]
# max_usd = 1.0
"""


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def refuse_credentials(url: str, what: str) -> None:
    """A URL that carries a password or key is refused: credentials come from the environment only."""
    if url and urlsplit(url).password is not None:
        raise WorkspaceError(
            f"{what} {redact_url(url)} carries a password: remove it from the URL and set it in the "
            "environment instead (PGPASSWORD or ~/.pgpass for PostgreSQL, "
            "MLFLOW_TRACKING_PASSWORD for MLflow, AWS_SECRET_ACCESS_KEY for S3)"
        )


def is_local_db(url: str) -> bool:
    """True for the embedded SQLite store."""
    return url.startswith("sqlite")


def _resolve_sqlite(url: str, root: Path) -> str:
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/"):
        return prefix + str((root / url[len(prefix) :]).resolve())
    return url


@dataclass(frozen=True)
class LlmSettings:
    """``[llm]`` of registry.toml. Keys never live here: only the name of the env variable."""

    model: str = ""
    api_base: str | None = None
    api_key_env: str | None = None
    fallbacks: tuple[str, ...] = ()
    temperature: float = 0.2
    max_tokens: int = 2048
    concurrency: int = 4
    timeout_s: float = 60.0
    max_usd: float | None = None
    max_calls: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> LlmSettings:
        """Parse the ``[llm]`` table (unknown keys are an error naming the known ones)."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise WorkspaceError(
                f"registry.toml [llm]: unknown keys {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        values = dict(data)
        if "fallbacks" in values:
            values["fallbacks"] = tuple(values["fallbacks"])  # type: ignore[arg-type]
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Settings:
    """Everything a workspace is configured with."""

    root: Path
    db_url: str
    mlflow_tracking_uri: str
    mlflow_artifact_root: Path
    dvc_remote: str
    dvc_url: str
    dvc_endpoint: str | None = None
    auto_approve: str = "validation_passed"
    require_human: bool = False
    four_eyes: bool = False
    compute_scheduler: str | None = None
    max_drift: float | None = None
    llm: LlmSettings = LlmSettings()

    @property
    def state_dir(self) -> Path:
        """``.registry/``: DB, MLflow store, staging and the write lock."""
        return self.root / STATE_DIR

    @classmethod
    def load(cls, root: Path) -> Settings:
        """Read ``registry.toml`` at ``root``; env overrides win (tests share one MLflow DB)."""
        path = root / CONFIG_FILE
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise WorkspaceError(f"{path} is missing: run 'registry init {root}'") from None
        except tomllib.TOMLDecodeError as exc:
            raise WorkspaceError(f"{path} is not valid TOML ({exc}): fix or restore it") from None
        reg, mlf = data.get("registry", {}), data.get("mlflow", {})
        dvc, review = data.get("dvc", {}), data.get("review", {})
        tracking = os.environ.get(env.MLFLOW_TRACKING_URI) or mlf.get(
            "tracking_uri", f"sqlite:///{STATE_DIR}/mlflow.db"
        )
        db_url = str(reg.get("db_url", f"sqlite:///{STATE_DIR}/registry.db"))
        for what, url in (
            ("[registry] db_url", db_url),
            ("[mlflow] tracking_uri", str(tracking)),
            ("[dvc] url", str(dvc.get("url", ""))),
            ("[dvc] endpoint_url", str(dvc.get("endpoint_url", ""))),
        ):
            refuse_credentials(url, f"{path}: {what}")
        return cls(
            root=root,
            db_url=_resolve_sqlite(db_url, root),
            mlflow_tracking_uri=_resolve_sqlite(tracking, root),
            mlflow_artifact_root=(root / mlf.get("artifact_root", f"{STATE_DIR}/mlartifacts")).resolve(),
            dvc_remote=dvc.get("remote", "local"),
            dvc_url=dvc.get("url", f"{STATE_DIR}/dvc-remote"),
            dvc_endpoint=dvc.get("endpoint_url") or None,
            auto_approve=str(review.get("auto_approve", "validation_passed")),
            require_human=bool(review.get("require_human", False)),
            four_eyes=bool(review.get("four_eyes", False)),
            compute_scheduler=str(data.get("compute", {}).get("scheduler", "")) or None,
            max_drift=float(review["max_drift"]) if "max_drift" in review else None,
            llm=LlmSettings.from_dict(data.get("llm", {})),
        )


def find_root(start: Path) -> Path:
    """The nearest directory at or above ``start`` holding ``registry.toml``."""
    start = start.resolve()
    for candidate in (start, *start.parents):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    raise WorkspaceError(
        f"{start} is not inside a registry workspace: run 'registry init' there, or cd into a workspace"
    )
