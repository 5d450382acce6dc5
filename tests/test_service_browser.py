"""The web UI in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) against
``registry serve`` on loopback: log in with a token, create a version and watch its job finish, open
it, fail to approve it as its author, approve it as another reviewer, diff two versions, disable
samples. Screenshots land in ``build/screenshots/`` (test artifacts to look at)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from team_servers import free_port

import synthreg
from synthreg.registry.tokens import create_token

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, mlflow_uri: str) -> Iterator[dict[str, Any]]:
    """``registry serve`` in its own process, on a workspace that requires human review."""
    from conftest import SMALL_SPEC

    base = tmp_path_factory.mktemp("browser")
    root = base / "ws"
    reg = synthreg.init(root)
    config = root / "registry.toml"
    config.write_text(config.read_text().replace("require_human = false", "require_human = true"))
    (base / "small.yaml").write_text(SMALL_SPEC)
    os.environ["SYNTHREG_ACTOR"] = "setup"
    try:
        synthreg.open(root).create("small", spec=base / "small.yaml")
        tokens = {u: create_token(reg.workspace, u, "reviewer")[1] for u in ("alice", "bob")}
    finally:
        del os.environ["SYNTHREG_ACTOR"]
    port = free_port()
    log = open(base / "serve.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "synthreg", "-C", str(root), "serve", "--port", str(port), "--workers", "1"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=2)
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, (base / "serve.log").read_text()
            time.sleep(0.2)
    yield {"url": url, "tokens": tokens, "root": root, "log": base / "serve.log"}
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module (Debian's; Playwright downloads nothing)."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: apt-get install -y chromium (make servers)"
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield chromium
        chromium.close()


def _login(browser: Any, server: dict[str, Any], user: str) -> Any:
    page = browser.new_context().new_page()
    page.goto(f"{server['url']}/")
    assert page.url.endswith("/login")
    page.fill("#token", server["tokens"][user])
    page.click("#login")
    page.wait_for_selector("#datasets")
    return page


def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_create_review_diff_and_disable_in_a_browser(browser: Any, server: dict[str, Any]) -> None:
    alice = _login(browser, server, "alice")
    assert "small" in alice.inner_text("#datasets")
    _shot(alice, "01-datasets")
    alice.click("text=small")
    alice.wait_for_selector("#timeline")
    alice.fill("#seed", "21")
    alice.click("#create")
    alice.wait_for_selector("#made", timeout=120_000)  # htmx polls the job until it is done
    assert alice.inner_text("#state") == "succeeded"
    _shot(alice, "02-job-done")
    alice.click("#made")
    alice.wait_for_selector("#datacard")
    assert alice.inner_text("#status") == "pending"
    ref = alice.url.rsplit("/", 1)[-1]
    alice.click("#next")  # the data preview pages through DuckDB
    alice.wait_for_selector("text=rows 21–40")
    alice.wait_for_function("[...document.images].every(i => i.complete)")
    plots = alice.eval_on_selector_all("img.plot", "imgs => imgs.map(i => [i.src, i.naturalWidth])")
    assert plots and all(src.endswith(".svg") and width == 600 for src, width in plots), plots  # drawn
    _shot(alice, "03-version")
    alice.fill("#note", "my own")
    alice.click("#approve")
    alice.wait_for_selector("#message")
    assert "four-eyes" in alice.inner_text("#message") and alice.inner_text("#status") == "pending"
    _shot(alice, "04-author-refused")

    bob = _login(browser, server, "bob")
    bob.goto(f"{server['url']}/versions/{ref}")
    bob.fill("#note", "looked at the card")
    bob.click("#approve")
    bob.wait_for_selector("#message")
    assert bob.inner_text("#status") == "approved", bob.inner_text("#message")
    _shot(bob, "05-approved-by-bob")
    bob.goto(f"{server['url']}/diff?a=small@v1&b={ref}")
    assert "seed 3 -> 21" in bob.inner_text("#summary")
    _shot(bob, "06-diff")
    bob.goto(f"{server['url']}/versions/{ref}")
    bob.select_option("#disable-table", "users")
    bob.fill("#where", "age < 25")
    bob.fill("#reason", "too young for this study")
    bob.click("#disable")
    bob.wait_for_selector("#datacard")
    derived = bob.url.rsplit("/", 1)[-1]  # the page of the new version
    assert derived != ref
    shown = synthreg.open(server["root"]).show(derived)
    assert shown["derived_from"] == int(ref.rsplit("@v", 1)[1]) and shown["created_by"] == "bob"
    _shot(bob, "07-disabled")
    bob.goto(f"{server['url']}/versions/{ref}/lineage")
    assert f"v{derived.split('@v')[1]} (derived_from" in (bob.locator("#lineage").text_content() or "")
    _shot(bob, "07b-lineage")
    bob.goto(f"{server['url']}/audit")
    bob.click("#verify")
    bob.wait_for_selector("#message")
    assert "verifies" in bob.inner_text("#message")
    events = bob.inner_text("#events")
    assert "approve" in events and "bob" in events and "alice" in events and "disable" in events
    _shot(bob, "08-audit")
    for user in ("alice", "bob"):  # no token in any page or the server's log
        assert server["tokens"][user] not in alice.content() + bob.content()
        assert server["tokens"][user] not in server["log"].read_text()


def test_a_script_planted_in_a_version_file_does_not_run(browser: Any, server: dict[str, Any]) -> None:
    """Someone who can write the workspace's files edits a plot and the validation report to carry
    a script: opened through the web UI, they are sandboxed (CSP ``sandbox``), so the script
    neither runs nor reaches the session; the file is still shown."""
    vdir = server["root"] / synthreg.open(server["root"]).show("small@v1")["path"]
    plot = next((vdir / "plots").glob("*.svg"))
    planted = "<script>document.title = 'pwned'; fetch('/api/datasets')</script>"
    plot.write_text(plot.read_text().replace("</svg>", planted + "</svg>"))
    report = vdir / "validation.html"
    report.write_text(report.read_text().replace("</body>", planted + "</body>"))
    alice = _login(browser, server, "alice")
    requests: list[str] = []
    alice.on("request", lambda r: requests.append(r.url))
    for name in (f"plots/{plot.name}", "validation.html"):
        response = alice.goto(f"{server['url']}/versions/small@v1/files/{name}")
        assert response is not None and response.status == 200
        assert "sandbox" in response.headers["content-security-policy"]
        assert alice.title() != "pwned"
        assert alice.content().count("<") > 10  # the document itself is there
    assert not any("/api/" in url for url in requests), requests
