"""The warm server (synthreg/cli/warm.py): a `registry create` it serves is the same create, with the
client's streams, directory, variables and exit code; a killed client leaves no version; the
socket is refused to other users and to stale code."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from synthreg.cli import warm

REGISTRY = str(Path(sys.executable).with_name("registry"))


def _run(args: list[str], cwd: Path, env: dict[str, str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [REGISTRY, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        **kw,  # type: ignore[call-overload]
    )


def _wait_for(what: Callable[[], bool], timeout: float = 60, explain: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + timeout
    while not what() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert what(), f"timed out waiting: {explain()}"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[dict[str, str], Path]]:
    """A warm server for this module: (the environment that reaches it, its socket directory)."""
    folder = _short_dir()
    env = {**os.environ, warm.WARM_DIR: str(folder), warm.WARM: "1", warm.WARM_IDLE: "300"}
    started = subprocess.run(
        [REGISTRY, "warm", "start"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert started.returncode == 0, started.stderr
    yield env, folder
    subprocess.run([REGISTRY, "warm", "stop"], env=env, capture_output=True, timeout=60, check=False)
    for pid_file in folder.glob("*.pid"):
        with contextlib.suppress(ProcessLookupError, ValueError, FileNotFoundError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
    shutil.rmtree(folder.parent, ignore_errors=True)


def _short_dir() -> Path:
    """A socket folder with a short path: AF_UNIX allows ~107 bytes, and pytest-xdist's temporary
    paths are longer than that with a socket name. The caller removes its parent."""
    return Path(tempfile.mkdtemp(prefix="sw-", dir="/tmp")) / "s"


@pytest.fixture
def short_folder() -> Iterator[Path]:
    folder = _short_dir()
    yield folder
    shutil.rmtree(folder.parent, ignore_errors=True)


def _log(folder: Path) -> str:
    return "".join(p.read_text() for p in folder.glob("*.log"))


def _served(folder: Path) -> list[int]:
    return [
        int(line.split("pid ")[1].split(":")[0]) for line in _log(folder).splitlines() if ": create" in line
    ]


def test_a_served_create_is_the_same_version_as_one_in_its_own_process(
    server: tuple[dict[str, str], Path], workspace: Path, small_spec: Path
) -> None:
    env, folder = server
    cold = _run(["create", "cold", "--spec", str(small_spec), "--json"], workspace, {**env, warm.WARM: "0"})
    assert cold.returncode == 0, cold.stderr
    before = _served(folder)
    served = _run(["create", "served", "--spec", str(small_spec), "--json"], workspace, env)
    assert served.returncode == 0, served.stderr
    # the server ran it, not this process
    _wait_for(lambda: len(_served(folder)) == len(before) + 1, explain=lambda: _log(folder) + served.stderr)
    made = json.loads(served.stdout)  # its stdout reached this pipe
    assert made["content_digest"] == json.loads(cold.stdout)["content_digest"]
    shown = _run(["show", "served", "--json"], workspace, env)
    assert (
        json.loads(shown.stdout)["created_by"]
        == json.loads(_run(["show", "cold", "--json"], workspace, env).stdout)["created_by"]
    )


def test_bad_input_gets_its_exit_code_and_message_through_the_server(
    server: tuple[dict[str, str], Path], workspace: Path
) -> None:
    env, folder = server
    before = _served(folder)
    missing = _run(["create", "nope", "--spec", "no-such.yaml"], workspace, env)
    _wait_for(lambda: len(_served(folder)) == len(before) + 1)
    assert missing.returncode == 4  # not found, as without the server
    assert "no-such.yaml" in missing.stderr
    assert "Traceback" not in missing.stderr
    listed = _run(["list", "--json"], workspace, env)
    assert "nope" not in listed.stdout


def test_the_clients_variables_reach_the_command(
    server: tuple[dict[str, str], Path], workspace: Path, small_spec: Path
) -> None:
    env, _ = server
    made = _run(
        ["create", "by-actor", "--spec", str(small_spec)], workspace, {**env, "SYNTHREG_ACTOR": "ada"}
    )
    assert made.returncode == 0, made.stderr
    shown = json.loads(_run(["show", "by-actor", "--json"], workspace, env).stdout)
    assert shown["created_by"] == "ada"


def test_a_sigkilled_client_stops_its_create_and_leaves_no_version(
    server: tuple[dict[str, str], Path], workspace: Path
) -> None:
    env, folder = server
    spec = Path(__file__).resolve().parent.parent / "benchmarks" / "specs" / "three_table.yaml"
    before = _served(folder)
    progress = workspace.parent / "killed.err"
    with progress.open("w") as err:
        client = subprocess.Popen(
            [REGISTRY, "create", "killed", "--spec", str(spec), "--scale", "8"],
            cwd=workspace, env={**env, "SYNTHREG_PROGRESS": "1"}, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
        _wait_for(lambda: len(_served(folder)) > len(before))
        child = _served(folder)[-1]
        _wait_for(lambda: '"rows_done"' in progress.read_text())  # generating (progress on its stderr)
        client.kill()
        client.wait(30)
    _wait_for(lambda: not _alive(child), timeout=60)
    assert "Traceback" not in _log(folder)
    listed = _run(["list", "--json"], workspace, env)
    assert "killed" not in listed.stdout
    assert not list((workspace / "data").glob("killed*/*"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def test_only_create_goes_to_the_server_and_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(warm.WARM, "1")
    assert warm.wanted(["-C", "ws", "--actor", "create", "create", "x"])
    assert not warm.wanted(["-C", "create", "list"])  # "create" is -C's value here
    monkeypatch.setenv(warm.WARM, "0")
    assert not warm.wanted(["create", "x"])
    monkeypatch.delenv(warm.WARM)
    monkeypatch.setenv("CI", "true")
    assert not warm.wanted(["create", "x"])  # by default, never in CI (nor without a terminal)


def test_a_socket_directory_others_can_write_to_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "open"
    folder.mkdir(mode=0o700)
    monkeypatch.setenv(warm.WARM_DIR, str(folder))
    assert warm.socket_dir() == folder
    folder.chmod(0o777)
    assert warm.socket_dir() is None
    assert warm.run_remote(["create", "x"]) is None  # runs in its own process instead


def test_the_fingerprint_changes_when_a_source_file_does(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    shutil.copytree(Path(warm.__file__).parent, package)
    first = warm.fingerprint(package)
    assert warm.fingerprint(package) == first
    target = package / "warm.py"
    target.write_text(target.read_text() + "\n# edited\n")
    assert warm.fingerprint(package) != first


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to connect as another user (setuid)")
def test_another_user_is_refused_by_peer_credentials(server: tuple[dict[str, str], Path]) -> None:
    _env, folder = server
    sock = next(folder.glob("*.sock"))
    # A hard link in a directory the other user can enter, and the socket open to all: only the
    # server's credential check is left between that user and the server.
    reachable = Path(tempfile.mkdtemp(prefix="synthreg-peer-", dir="/tmp"))
    reachable.chmod(0o755)
    link = reachable / "peer.sock"
    os.link(sock, link)
    sock.chmod(0o666)
    try:
        code = (
            "import os, socket; os.setgid(65534); os.setuid(65534); s = socket.socket(socket.AF_UNIX);"
            f"s.connect({str(link)!r}); s.settimeout(20); print(repr(s.recv(100)))"
        )
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    finally:
        sock.chmod(0o600)
        shutil.rmtree(reachable)
    assert other.returncode == 0, other.stderr
    assert other.stdout.strip() == "b''"  # closed without an answer
    assert "refused a connection from uid 65534" in _log(folder)


def test_an_idle_server_exits_and_removes_its_socket(short_folder: Path) -> None:
    folder = short_folder
    env = {**os.environ, warm.WARM_DIR: str(folder), warm.WARM_IDLE: "1"}
    started = subprocess.run(
        [REGISTRY, "warm", "start"], env=env, capture_output=True, text=True, timeout=120
    )
    assert started.returncode == 0, started.stderr
    _wait_for(lambda: not list(folder.glob("*.sock")), timeout=30)
    assert "idle: exiting" in _log(folder)


def test_a_malformed_request_is_refused_and_the_server_keeps_serving(
    server: tuple[dict[str, str], Path], workspace: Path, small_spec: Path
) -> None:
    import socket
    import struct

    env, folder = server
    sock = next(folder.glob("*.sock"))
    body = json.dumps({"argv": [1, 2], "cwd": "/", "env": {}, "umask": 18}).encode()
    with socket.socket(socket.AF_UNIX) as conn:
        conn.connect(str(sock))
        socket.send_fds(conn, [b"synthreg-warm-1" + struct.pack("!I", len(body))], [0, 1, 2])
        conn.sendall(body)
        conn.settimeout(20)
        assert conn.recv(100) == b""  # closed, nothing ran
    _wait_for(lambda: "refused a request: ValueError" in _log(folder))
    before = _served(folder)
    made = _run(["create", "after-garbage", "--spec", str(small_spec)], workspace, env)
    assert made.returncode == 0, made.stderr
    _wait_for(lambda: len(_served(folder)) == len(before) + 1)


def test_a_dead_servers_socket_does_not_stop_a_new_server(tmp_path: Path, short_folder: Path) -> None:
    folder = short_folder
    env = {**os.environ, warm.WARM_DIR: str(folder), warm.WARM_IDLE: "120"}
    assert _run(["warm", "start"], tmp_path, env).returncode == 0
    first = int(next(folder.glob("*.pid")).read_text())
    os.kill(first, signal.SIGKILL)  # the OOM killer: its socket file stays behind
    _wait_for(lambda: not _alive(first))
    assert list(folder.glob("*.sock"))
    assert _run(["warm", "status"], tmp_path, env).returncode == 1  # not running, whatever the files say
    try:
        assert _run(["warm", "start"], tmp_path, env).returncode == 0
        status = _run(["warm", "status"], tmp_path, env)
        assert status.returncode == 0 and f"pid {first}," not in status.stdout
    finally:
        _run(["warm", "stop"], tmp_path, env)


def test_stop_never_signals_a_process_that_is_not_a_server(tmp_path: Path) -> None:
    folder = tmp_path / "reused"
    folder.mkdir(mode=0o700)
    env = {**os.environ, warm.WARM_DIR: str(folder)}
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        (folder / "0123456789abcdef0123.pid").write_text(f"{bystander.pid}\n")  # a reused pid
        (folder / "0123456789abcdef0123.lock").write_text("")
        stopped = _run(["warm", "stop"], tmp_path, env)
        assert stopped.returncode == 0 and "not running" in stopped.stdout
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


TEXT_SPEC = {
    "seed": 1,
    "tables": {
        "notes": {
            "rows": 300,
            "primary_key": "id",
            "columns": {
                "id": {"type": "int"},
                "body": {
                    "type": "text",
                    "words": dict.fromkeys(
                        ("late", "parcel", "refund", "kind", "staff", "broken", "seat"), 1 / 7
                    ),
                    "min_words": 4,
                    "max_words": 12,
                },
            },
        }
    },
}


def test_the_text_model_is_loaded_by_the_server_after_a_create_that_needed_it(
    server: tuple[dict[str, str], Path], workspace: Path, tmp_path: Path
) -> None:
    """The first create with free text loads the model itself; the idle server then loads it (never
    runs it: a fork after torch ran would hang), and the next create's child uses it."""
    import yaml

    env, folder = server
    spec = tmp_path / "notes.yaml"
    spec.write_text(yaml.safe_dump(TEXT_SPEC))
    first = _run(["create", "notes", "--spec", str(spec)], workspace, env)
    assert first.returncode == 0, first.stderr
    _wait_for(lambda: "text model loaded" in _log(folder), timeout=120, explain=lambda: _log(folder))
    assert "text model loaded" in _run(["warm", "status"], workspace, env).stdout
    before = _served(folder)
    second = _run(["create", "notes", "--spec", str(spec), "--seed", "2"], workspace, env)
    assert second.returncode == 0, second.stderr
    assert len(_served(folder)) == len(before) + 1  # served, by a child forked after the load
    quality = json.loads((workspace / "data" / "notes" / "v2" / "quality.json").read_text())
    assert quality["semantic"]["status"] == "measured" and quality["semantic"]["columns"], quality["semantic"]


def test_a_new_server_does_not_load_the_text_model_for_an_earlier_one(
    short_folder: Path, tmp_path: Path
) -> None:
    """An earlier server's marker is removed at start: the model loads only once a create asks."""
    env = {**os.environ, warm.WARM_DIR: str(short_folder), warm.WARM: "1", warm.WARM_IDLE: "60"}
    started = _run(["warm", "start"], tmp_path, env)
    assert started.returncode == 0, started.stderr
    try:
        status = _run(["warm", "status"], tmp_path, env).stdout
        sock = Path(status.split("socket ")[1].split(",")[0].strip())
        stopped = _run(["warm", "stop"], tmp_path, env)
        assert stopped.returncode == 0 and "stopped pid" in stopped.stdout, stopped.stdout + stopped.stderr
        assert not warm.running(sock)  # stop returns once the server has ended, not just signalled
        sock.with_suffix(".text").write_text("loaded\n")  # as an earlier server left it
        assert _run(["warm", "start"], tmp_path, env).returncode == 0
        status = _run(["warm", "status"], tmp_path, env).stdout
        assert "running" in status and "text model" not in status
        assert not sock.with_suffix(".text").exists()
    finally:
        _run(["warm", "stop"], tmp_path, env)
