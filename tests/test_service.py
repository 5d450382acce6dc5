"""``registry serve``'s REST API through FastAPI's TestClient: every role against every route (a
table), four eyes, dataset-scoped tokens that leak nothing, jobs (run as the user, cancelled).

What each request gets: no or a bad or a revoked token -> 401; a role below the route's -> 403; a
dataset the token may not see -> 404, the same body as for a dataset that does not exist."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import synthreg
from synthreg.registry.tokens import create_token, revoke_token

ROLES = ("viewer", "editor", "reviewer", "admin")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, mlflow_uri: str) -> Iterator[dict[str, Any]]:
    """A workspace (human review required) with small@v1 by carol and other@v1, a token per role,
    one reviewer token scoped to 'other', and the app."""
    from conftest import SMALL_SPEC

    from synthreg.service.app import create_app

    base = tmp_path_factory.mktemp("serve")
    spec = base / "small.yaml"
    spec.write_text(SMALL_SPEC)
    root = base / "ws"
    reg = synthreg.init(root)
    config = root / "registry.toml"
    config.write_text(config.read_text().replace("require_human = false", "require_human = true"))
    os.environ["SYNTHREG_ACTOR"] = "carol"
    try:
        reg = synthreg.open(root)
        reg.create("small", spec=spec)
        reg.create("other", spec=spec, seed=5)
        tokens = {role: create_token(reg.workspace, f"{role}-user", role)[1] for role in ROLES}
        tokens["scoped"] = create_token(reg.workspace, "scoped-user", "reviewer", "other")[1]
        tokens["carol"] = create_token(reg.workspace, "carol", "reviewer")[1]
        revoked_id, tokens["revoked"] = create_token(reg.workspace, "gone", "admin")
        revoke_token(reg.workspace, revoked_id)
    finally:
        del os.environ["SYNTHREG_ACTOR"]
    with TestClient(create_app(root, workers=1)) as client:
        yield {"client": client, "tokens": tokens, "root": root, "spec": SMALL_SPEC}


def call(served: dict[str, Any], who: str | None, method: str, path: str, body: Any = None) -> Any:
    headers = {"Authorization": f"Bearer {served['tokens'][who]}"} if who else {}
    return served["client"].request(method, path, json=body, headers=headers)


#: (method, path, body, least role, dataset named); reads first, then writes that leave the
#: workspace usable for the rows after them.
ROUTES: list[tuple[str, str, Any, str, str | None]] = [
    ("GET", "/api/datasets", None, "viewer", None),
    ("GET", "/api/versions/small@v1", None, "viewer", "small"),
    ("GET", "/api/versions/small@v1/card?format=md", None, "viewer", "small"),
    ("GET", "/api/versions/small@v1/lineage", None, "viewer", "small"),
    ("GET", "/api/versions/small@v1/preview?table=users&limit=5", None, "viewer", "small"),
    ("GET", "/api/audit?dataset=small", None, "viewer", "small"),
    ("POST", "/api/versions/small@v1/verify", None, "editor", "small"),
    ("POST", "/api/diff?a=small@v1&b=small@v1", None, "editor", "small"),
    ("POST", "/api/versions/small@v1/use", {"run_id": "no-such-run"}, "editor", "small"),
    ("POST", "/api/datasets/small/rollback", {"to": 1, "reason": "table test"}, "editor", "small"),
    ("POST", "/api/versions/small@v1/alias", {"alias": "staging"}, "reviewer", "small"),
    ("POST", "/api/versions/small@v1/review", {"approve": False, "note": "table"}, "reviewer", "small"),
    ("POST", "/api/audit/verify", None, "reviewer", None),
    ("GET", "/api/tokens", None, "admin", None),
]
WHO = (None, "revoked", *ROLES, "scoped")


@pytest.mark.parametrize(("method", "path", "body", "least", "dataset"), ROUTES)
def test_every_role_against_every_route(
    served: dict[str, Any], method: str, path: str, body: Any, least: str, dataset: str | None
) -> None:
    for who in WHO:
        response = call(served, who, method, path, body)
        if who in (None, "revoked"):
            expected: int | str = 401
        elif who == "scoped" and dataset not in (None, "other"):
            expected = 404
        elif who == "scoped" and dataset is None and least != "viewer":
            expected = 403  # a dataset-scoped token does nothing workspace-wide but read
        elif ROLES.index("reviewer" if who == "scoped" else who) < ROLES.index(least):
            expected = 403
        else:
            expected = "allowed"
        got = response.status_code
        if expected == "allowed":
            hidden = got == 404 and response.json().get("detail", "").startswith("no dataset")
            assert got not in (401, 403) and got < 500 and not hidden, (who, method, path, got, response.text)
        else:
            assert got == expected, (who, method, path, got, response.text)


def test_a_scoped_token_learns_nothing_about_other_datasets(served: dict[str, Any]) -> None:
    names = [d["dataset"] for d in call(served, "scoped", "GET", "/api/datasets").json()]
    assert names == ["other"]
    hidden = call(served, "scoped", "GET", "/api/versions/small")
    missing = call(served, "scoped", "GET", "/api/versions/nosuch")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["detail"].replace("small", "X") == missing.json()["detail"].replace("nosuch", "X")
    events = call(served, "scoped", "GET", "/api/audit").json()
    assert events and {e["dataset"] for e in events} == {"other"}
    assert call(served, "scoped", "GET", "/api/versions/other@v1").status_code == 200


def _wait(served: dict[str, Any], who: str, job_id: str, until: tuple[str, ...]) -> dict[str, Any]:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        job = call(served, who, "GET", f"/api/jobs/{job_id}").json()
        if job["state"] in until:
            return job  # type: ignore[no-any-return]
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never reached {until}")


def test_a_job_runs_as_its_user_and_four_eyes_holds(served: dict[str, Any]) -> None:
    submitted = call(
        served, "reviewer", "POST", "/api/datasets/small/versions", {"spec": served["spec"], "seed": 11}
    )
    assert submitted.status_code == 202, submitted.text
    job = _wait(served, "reviewer", submitted.json()["id"], ("succeeded", "failed"))
    assert job["state"] == "succeeded", job
    assert job["rows_done"] == job["rows_total"] == 1200 and job["stage"] == "done"  # progress was read
    ref = f"small@v{job['result']['version']}"
    assert job["result"]["status"] == "pending"  # the workspace requires a human review
    assert call(served, "viewer", "GET", f"/api/jobs/{job['id']}").status_code == 403
    own = call(served, "reviewer", "POST", f"/api/versions/{ref}/review", {"approve": True, "note": "mine"})
    assert own.status_code == 403 and "four-eyes" in own.json()["detail"]
    other = call(served, "carol", "POST", f"/api/versions/{ref}/review", {"approve": True, "note": "looked"})
    assert other.status_code == 200, other.text
    events = call(served, "admin", "GET", "/api/audit?dataset=small").json()
    made = [e for e in events if e["action"] == "create" and e["version"] == job["result"]["version"]]
    approved = [e for e in events if e["action"] == "approve" and e["version"] == job["result"]["version"]]
    assert made[0]["actor"] == "reviewer-user" and approved[0]["actor"] == "carol"
    # carol made small@v1 herself (the CLI, as carol): the same rule refuses her here
    refused = call(served, "carol", "POST", "/api/versions/small@v1/review", {"approve": True, "note": "x"})
    assert refused.status_code in (403, 409)


def test_cancel_a_running_and_a_queued_job_leaves_nothing(served: dict[str, Any]) -> None:
    big = served["spec"].replace("rows: 900", "rows: 3000000")
    before = call(served, "admin", "GET", "/api/versions/small").json()["versions"]
    first = call(served, "editor", "POST", "/api/datasets/small/versions", {"spec": big}).json()
    second = call(served, "editor", "POST", "/api/datasets/small/versions", {"spec": big}).json()
    _wait(served, "editor", first["id"], ("running",))
    queued = call(served, "editor", "POST", f"/api/jobs/{second['id']}/cancel")
    assert queued.json()["state"] == "cancelled"
    assert call(served, "viewer", "POST", f"/api/jobs/{first['id']}/cancel").status_code == 403
    running = call(served, "editor", "POST", f"/api/jobs/{first['id']}/cancel")
    assert running.status_code == 200
    job = _wait(served, "editor", first["id"], ("cancelled", "succeeded", "failed"))
    assert job["state"] == "cancelled", job
    after = call(served, "admin", "GET", "/api/versions/small").json()["versions"]
    assert after == before
    staging = served["root"] / ".registry/staging"
    assert not list(staging.glob("*")) if staging.exists() else True
    doctor = subprocess.run(
        [sys.executable, "-m", "synthreg", "-C", str(served["root"]), "doctor"],
        capture_output=True,
        text=True,
    )
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr


def _token_cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "synthreg", "-C", str(root), "token", "create", *args]
    return subprocess.run(command, capture_output=True, text=True)


def test_tokens_through_the_cli_and_the_api(served: dict[str, Any]) -> None:
    root: Path = served["root"]
    made = _token_cli(root, "--user", "zoe", "--role", "viewer")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    headers = {"Authorization": f"Bearer {token}"}
    assert served["client"].get("/api/datasets", headers=headers).status_code == 200
    bad = _token_cli(root, "--user", "zoe", "--role", "boss")
    assert bad.returncode == 2 and "viewer, editor, reviewer, admin" in bad.stderr
    listed = call(served, "admin", "GET", "/api/tokens").json()
    zoe = next(t for t in listed if t["user"] == "zoe")
    assert "token" not in zoe and token not in str(listed)
    assert call(served, "admin", "DELETE", f"/api/tokens/{zoe['id']}").status_code == 200
    assert served["client"].get("/api/datasets", headers=headers).status_code == 401
    # only hashes are stored: the token is nowhere in the workspace
    for path in root.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            assert token.encode() not in path.read_bytes(), path


def test_health_and_openapi(served: dict[str, Any]) -> None:
    assert served["client"].get("/healthz").text == "ok"
    spec = served["client"].get("/openapi.json").json()
    assert {"/api/datasets", "/api/versions/{ref}/review", "/api/datasets/{name}/versions"} <= set(
        spec["paths"]
    )


def test_metrics_after_the_jobs(served: dict[str, Any]) -> None:
    """Runs after the job tests of this module: their outcomes and the routes are counted."""
    text = served["client"].get("/metrics").text
    assert (
        'synthreg_jobs_total{state="succeeded"}' in text
        and 'synthreg_jobs_total{state="cancelled"} 2.0' in text
    )
    assert (
        'route="/api/versions/{ref}"' in text
        and 'synthreg_create_stage_seconds_count{stage="generate"}' in text
    )
    assert "small@v1" not in text and not any(t in text for t in served["tokens"].values())
    rows = [line for line in text.splitlines() if line.startswith("synthreg_rows_generated_total")]
    assert float(rows[0].split()[-1]) >= 1200


def test_four_eyes_on_the_cli_when_the_workspace_asks(workspace: Path, small_spec: Path) -> None:
    config = workspace / "registry.toml"
    text = config.read_text().replace("require_human = false", "require_human = true")
    config.write_text(text.replace("four_eyes = false", "four_eyes = true"))
    base = [sys.executable, "-m", "synthreg", "-C", str(workspace)]
    made = subprocess.run(
        [*base, "--actor", "amy", "create", "small", "--spec", str(small_spec)], capture_output=True
    )
    assert made.returncode == 0, made.stderr
    own = subprocess.run([*base, "--actor", "amy", "review", "small@v1", "--approve", "--note", "x"],
                         capture_output=True, text=True)  # fmt: skip
    assert own.returncode == 5 and "four-eyes" in own.stderr
    other = subprocess.run([*base, "--actor", "ben", "review", "small@v1", "--approve", "--note", "x"],
                           capture_output=True, text=True)  # fmt: skip
    assert other.returncode == 0, other.stderr
