"""Test set-up: offline environment, loopback-only sockets, one MLflow DB per session."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import synthreg  # noqa: F401  (sets the offline environment defaults at import)
from synthreg import env

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_loopback(address: Any) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX
        return True
    host = str(address[0])
    return host.startswith("127.") or host in ("::1", "localhost", "0.0.0.0")


def _guarded(real: Any) -> Any:
    def connect(self: socket.socket, address: Any) -> Any:
        if not _is_loopback(address):
            raise RuntimeError(f"test tried to reach the network: {address!r}")
        return real(self, address)

    return connect


# No test's `registry create` goes to (or starts) a warm server, unless the test asks: tests/test_warm.py.
os.environ["SYNTHREG_WARM"] = "0"

socket.socket.connect = _guarded(_real_connect)  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded(_real_connect_ex)  # type: ignore[method-assign]

SMALL_SPEC = """
description: Small test spec.
seed: 3
tables:
  users:
    rows: 300
    primary_key: user_id
    columns:
      user_id: {type: int}
      first_name: {type: text, vocab: first_name}
      last_name: {type: text, vocab: last_name}
      email: {type: text, vocab: email, from: [first_name, last_name]}
      plan: {type: category, values: {free: 0.6, pro: 0.4}}
      age: {type: int, distribution: {kind: normal, mean: 35, std: 9}, min: 18, max: 90}
      signed_up_at: {type: datetime, start: 2023-01-01, end: 2024-12-31}
  orders:
    rows: 900
    primary_key: order_id
    columns:
      order_id: {type: int}
      user_id: {type: int, foreign_key: users.user_id, skew: 0.5}
      amount:
        type: float
        distribution: {kind: lognormal, mean: 3, sigma: 0.5}
        min: 1
        max: 500
        decimals: 2
      note_flag: {type: bool, p: 0.2, null_rate: 0.1}
"""


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow sqlite DB for the whole session (its first migration costs ~5 s)."""
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    uri = f"sqlite:///{path}"
    os.environ[env.MLFLOW_TRACKING_URI] = uri
    return uri


@pytest.fixture
def small_spec(tmp_path: Path) -> Path:
    """A small two-table spec file."""
    path = tmp_path / "small.yaml"
    path.write_text(SMALL_SPEC)
    return path


@pytest.fixture
def workspace(tmp_path: Path, mlflow_uri: str) -> Path:
    """A fresh, initialized workspace."""
    import synthreg as sr

    root = tmp_path / "ws"
    sr.init(root)
    return root


#: The model and key variable the LLM workspaces use (the loopback server accepts any key).
LLM_MODEL = "openai/test-model"
LLM_KEY_ENV = "SYNTHREG_TEST_TABLES_KEY"


@pytest.fixture
def llm_workspace(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Any]]:
    """A workspace whose ``[llm]`` points at a running loopback server (``tests/llm_server.py``)."""
    from llm_server import LLMServer

    monkeypatch.setenv(LLM_KEY_ENV, "sk-test")
    with LLMServer() as server:
        point_llm_at(workspace, server.api_base)
        yield workspace, server


def point_llm_at(root: Path, api_base: str, model: str = LLM_MODEL, key_env: str = LLM_KEY_ENV) -> None:
    """Set ``[llm] model``, ``api_base`` and ``api_key_env`` in a fresh workspace's registry.toml."""
    config = root / "registry.toml"
    text = config.read_text().replace('# model = "openai/gpt-4o-mini"', f'model = "{model}"')
    text = text.replace('# api_base = "http://127.0.0.1:8000/v1"', f'api_base = "{api_base}"')
    text = text.replace('# api_key_env = "OPENAI_API_KEY"', f'api_key_env = "{key_env}"')
    config.write_text(text)


@pytest.fixture(scope="session")
def small_spec_model() -> Any:
    """SMALL_SPEC parsed into a Spec."""
    import yaml

    from synthreg.generators.spec_io import parse_spec

    return parse_spec(yaml.safe_load(SMALL_SPEC), "small.yaml")


@pytest.fixture(scope="session")
def small_spec_text() -> str:
    """SMALL_SPEC as YAML text."""
    return SMALL_SPEC


# ----------------------------------------------------------------- team backends (issue 11)
# One PostgreSQL server, one S3 endpoint (moto) and one `mlflow server` per session, all real and on
# loopback (tests/team_servers.py). Each team workspace gets its own database and its own S3 prefix.


@dataclass
class Team:
    """The session's team servers and a counter for fresh databases and prefixes."""

    pg: Any
    s3: Any
    mlflow: Any
    bucket: str = "synthreg-tests"
    _n: int = 0

    def fresh(self) -> tuple[str, str]:
        """A new empty database URL and a new ``s3://`` remote prefix."""
        self._n += 1
        return self.pg.create_db("reg"), f"s3://{self.bucket}/ws{self._n}"

    def init(self, root: Path, **overrides: str | None) -> Path:
        """``registry init`` a workspace on all three team backends (or on those not overridden)."""
        import synthreg as sr

        db, remote = self.fresh()
        urls: dict[str, str | None] = {
            "db": db,
            "remote": remote,
            "endpoint": self.s3.endpoint,
            "mlflow": self.mlflow.url,
        }
        urls.update(overrides)
        sr.init(root, **urls)  # type: ignore[arg-type]
        return root

    def s3_keys(self, prefix: str = "") -> list[str]:
        """Object keys in the test bucket under ``prefix``."""
        pages = self.s3.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.fixture(scope="session")
def team(mlflow_uri: str) -> Iterator[Team]:
    """Real PostgreSQL 15, moto's S3 server and an MLflow server (PostgreSQL store, S3 artifacts).

    Their test credentials reach synthreg through the environment only (PGPASSWORD, AWS_*), as they
    would on a user's machine. A server that cannot start fails the tests that need it.
    """
    from team_servers import PG_PASSWORD
    from team_servers import team as start_team

    with start_team("synthreg-tests") as (pg, s3, ml):
        saved = {k: os.environ.get(k) for k in ("PGPASSWORD", *s3.env())}
        os.environ.update({"PGPASSWORD": PG_PASSWORD, **s3.env()})
        try:
            yield Team(pg, s3, ml)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@pytest.fixture
def team_env(team: Team, monkeypatch: pytest.MonkeyPatch) -> Team:
    """The team servers, with MLflow's tracking URI pointed at the server for this test."""
    monkeypatch.setenv(env.MLFLOW_TRACKING_URI, team.mlflow.url)
    return team


@pytest.fixture(params=["embedded", "team"])
def backend(request: pytest.FixtureRequest, mlflow_uri: str) -> str:
    """Run a test on the embedded backends (SQLite, local DVC remote, MLflow DB) and on the team ones."""
    if request.param == "team":
        request.getfixturevalue("team_env")
    return str(request.param)


def make_workspace(request: pytest.FixtureRequest, backend: str, root: Path) -> Path:
    """``registry init`` ``root`` on ``backend``."""
    import synthreg as sr

    if backend == "team":
        return request.getfixturevalue("team_env").init(root)
    sr.init(root)
    return root


def row_suite_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts GX runs of per-row suites in this process (the rows of each frame)."""
    from synthreg.validators import gx_runner

    runs: list[int] = []
    real = gx_runner.GxSuite.run

    def counted(self: Any, frame: Any) -> Any:
        if self.suite.name.endswith(".rows"):
            runs.append(len(frame))
        return real(self, frame)

    monkeypatch.setattr(gx_runner.GxSuite, "run", counted)
    return runs


@pytest.fixture(scope="session")
def capped_spec() -> Any:
    """Two tables; a ``sum_limit`` cap rewrites ``shifts`` after its parts are written."""
    from synthreg.generators.spec_io import parse_spec

    shifts = {
        "rows": 2000,
        "primary_key": "id",
        "columns": {
            "id": {"type": "int"},
            "user_id": {"type": "int", "foreign_key": "users.id"},
            "hours": {"type": "float", "distribution": {"kind": "uniform", "low": 1, "high": 4}},
        },
        "constraints": [
            {"kind": "sum_limit", "group_by": ["user_id"], "column": "hours", "limit": 20, "action": "cap"}
        ],
    }
    users = {"rows": 50, "primary_key": "id", "columns": {"id": {"type": "int"}}}
    return parse_spec({"seed": 2, "tables": {"users": users, "shifts": shifts}}, "constraints.yaml")
