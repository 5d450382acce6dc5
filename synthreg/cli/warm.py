"""The warm server: ``registry create`` without paying for imports on every call.

A ``create`` spends more time importing Great Expectations, MLflow, DVC and pandas
(~6 CPU-seconds on this project's 2-core machine) than generating and checking fitness.yaml's
270k rows. The warm server is one background process per user and installation that has imported
them all once. ``registry create`` (a fresh process, as always) connects to it over a Unix socket
and hands over its arguments, working directory, environment and its stdin/stdout/stderr file
descriptors; the server forks a child, which becomes that command: same streams, directory and
variables, a fresh ``registry create`` in everything but the imports. The client relays its
signals (Ctrl-C, SIGTERM) to the child and exits with the child's exit code. If the client dies
(SIGKILL), the child sees its connection close and stops as on SIGTERM: the create undoes itself.

When it is used: ``SYNTHREG_WARM=1`` always, ``0`` never; by default only when the command runs
in a terminal (stdin and stdout are TTYs) and ``CI`` is not set, so scripts and CI keep plain
one-process runs unless they ask. Only ``create`` is served. Without a server, ``create`` runs in
its own process as before and then starts one in the background for the next call; the server
exits after ``SYNTHREG_WARM_IDLE`` seconds (default 900) without a request.

Threat model. The socket lives in a directory only its owner can enter (``$XDG_RUNTIME_DIR/
synthreg`` or ``<tmp>/synthreg-warm-<uid>``, mode 0700, refused if another user owns it or
others can write to it), and the server serves only connections whose peer credentials
(``SO_PEERCRED``) carry its own user id. Refused: another local user connecting, or planting a
socket or directory for your client to talk to. Not protected: processes of the same user (they
can run code as you anyway) and root. Stale code: the socket's name carries a fingerprint of the
interpreter, ``sys.path`` and every synthreg source file (path, size, mtime), so an upgraded or
edited installation starts a new server and never runs in the old one. Variables a library reads
when it is imported take the server's values (the offline defaults are the same for both).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import stat
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer

#: ``1``: use (and start) the warm server; ``0``: never. Unset: only in a terminal, not in CI.
WARM = "SYNTHREG_WARM"
#: Seconds the server waits for a request before it exits.
WARM_IDLE = "SYNTHREG_WARM_IDLE"
#: The directory of the socket (default ``$XDG_RUNTIME_DIR/synthreg`` or ``<tmp>/synthreg-warm-<uid>``).
WARM_DIR = "SYNTHREG_WARM_DIR"

_SERVED = ("create",)
_MAGIC = b"synthreg-warm-1"
_DEFAULT_IDLE = 900.0
_STOP_WAIT_S = 30.0  # how long `registry warm stop` waits for the servers it stopped to end
_MAX_SOCKET_PATH = 100
#: A request (argv, cwd, environment) larger than this, or slower than the deadline, is refused.
_MAX_REQUEST = 8 << 20
_REQUEST_DEADLINE = 10.0
_BOOT = (
    "import sys, json; sys.path[:] = json.loads(sys.argv[2]); "
    "from synthreg.cli.warm import server_main; server_main()"
)

warm_app = typer.Typer(
    help="The warm server that makes `registry create` skip its imports.", no_args_is_help=True
)


# ---------------------------------------------------------------- where and whether


def fingerprint(package: Path | None = None) -> str:
    """What the server's imports depend on: the interpreter, ``sys.path``, the site-packages
    folders' modification times (an install or uninstall changes them) and synthreg's files."""
    root = package or Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    paths = _absolute_path()
    digest.update(f"{sys.executable}\0{sys.version}\0{os.pathsep.join(paths)}\0{root}".encode())
    for folder in paths:  # an install or uninstall of a dependency changes its folder's mtime
        if os.path.basename(folder) in ("site-packages", "dist-packages"):
            with contextlib.suppress(OSError):
                digest.update(f"{folder}\0{os.stat(folder).st_mtime_ns}\n".encode())
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files):
            if name.endswith((".py", ".json", ".yaml")):
                info = os.stat(os.path.join(folder, name))
                digest.update(f"{folder}/{name}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def _absolute_path() -> list[str]:
    """``sys.path`` without relative entries: the current directory (an empty ``PYTHONPATH``
    puts it there) differs per command, and the server serves every directory."""
    return [p for p in sys.path if os.path.isabs(p)]


def socket_dir(create: bool = True) -> Path | None:
    """The socket's directory, made 0700 if missing; None if it is not safe (not ours, or open)."""
    explicit = os.environ.get(WARM_DIR)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if explicit:
        folder = Path(explicit)
    elif runtime:
        folder = Path(runtime) / "synthreg"
    else:
        folder = Path(tempfile.gettempdir()) / f"synthreg-warm-{os.getuid()}"
    if create:
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700, parents=True)
    try:
        info = folder.lstat()
    except FileNotFoundError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        return None
    return folder


def socket_path(create: bool = True) -> Path | None:
    """The socket of this installation's server; None when its directory is unsafe, or the path
    is longer than AF_UNIX allows (~107 bytes: then there is no warm server)."""
    folder = socket_dir(create)
    path = None if folder is None else folder / f"{fingerprint()}.sock"
    return path if path is not None and len(os.fsencode(path)) <= _MAX_SOCKET_PATH else None


def wanted(argv: list[str]) -> bool:
    """Whether this ``registry`` command line goes to (and starts) the warm server."""
    setting = os.environ.get(WARM, "")
    if setting == "0" or subcommand(argv) not in _SERVED:
        return False
    if setting == "1":
        return True
    return not os.environ.get("CI") and sys.stdin.isatty() and sys.stdout.isatty()


def subcommand(argv: list[str]) -> str | None:
    """The subcommand of a ``registry`` command line (after the root options)."""
    args = iter(argv)
    for arg in args:
        if arg in ("-C", "--workspace", "--actor"):
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


# ---------------------------------------------------------------- the client


def run_remote(argv: list[str]) -> int | None:
    """The command's exit code, run by the warm server; None when no server answers (run here)."""
    path = socket_path(create=False)
    if path is None or not path.exists():
        return None
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(str(path))
        if _peer_uid(client) != os.getuid():  # not our server: tell it nothing
            client.close()
            return None
        umask = os.umask(0)
        os.umask(umask)
        request = json.dumps(
            {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "umask": umask}
        ).encode()
        socket.send_fds(client, [_MAGIC + struct.pack("!I", len(request))], [0, 1, 2])
        client.sendall(request)
        reader = client.makefile("rb")
        first = reader.readline()
    except OSError:
        client.close()
        return None  # a server that is gone or busy dying: run here
    if not first.startswith(b"pid "):
        client.close()
        return None  # refused before anything ran (the server says why in its log)
    child = int(first.split()[1])
    relay = _relay_signals(child)
    try:
        last = reader.readline()
    finally:
        _restore(relay)
        client.close()
    if last.startswith(b"exit "):
        return int(last.split()[1])
    print("registry: the warm server's worker ended without an exit code (killed?)", file=sys.stderr)
    return 1


def _relay_signals(child: int) -> dict[int, Any]:
    """Ctrl-C, SIGTERM and SIGHUP go to the child's process group (its workers and helper too, as
    the terminal would signal a command's whole group); a signal this process ignores is not
    relayed (``nohup``, a background job)."""

    def relay(signum: int, frame: object) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child, signum)

    relayed = [
        s for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP) if signal.getsignal(s) != signal.SIG_IGN
    ]
    return {s: signal.signal(s, relay) for s in relayed}


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def running(path: Path) -> bool:
    """Whether a server holds this socket's lock (a socket file alone may be a dead server's)."""
    import fcntl

    try:
        with open(path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(lock, fcntl.LOCK_UN)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def _restore(handlers: dict[int, Any]) -> None:
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


def start_in_background() -> None:
    """Start a server for the next command, detached (own session, no inherited streams)."""
    import subprocess

    path = socket_path()
    if path is None or running(path):
        return
    log = path.with_suffix(".log")
    with open(log, "ab") as out:
        subprocess.Popen(
            # -I: nothing from the current directory or PYTHON* variables; the client's sys.path
            [
                sys.executable,
                "-I",
                "-c",
                _BOOT,
                str(path),
                json.dumps(_absolute_path()),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            close_fds=True,
            cwd="/",  # holds no client's directory (or its mount) busy
        )


# ---------------------------------------------------------------- the server


def serve(path: Path, idle: float) -> None:
    """Import everything, listen on ``path``, fork a child per request; exit when idle, stopped,
    or when ``path`` is no longer this server's socket."""
    import fcntl

    lock = open(path.with_suffix(".lock"), "a")  # noqa: SIM115 (held for the server's life)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return  # another server for this fingerprint is starting or running
    server = os.getpid()
    path.with_suffix(".pid").write_text(f"{server}\n")
    _preload()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a dead server's socket (we hold the lock)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, 0o600)
    listener.listen(16)
    inode = os.stat(path).st_ino
    _log(f"serving {path} (pid {server})")
    children: set[int] = set()
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    last = time.monotonic()
    marker = path.with_suffix(".text")
    marker.unlink(missing_ok=True)  # an earlier server's: this one loads only after a request asks
    text_loaded = False
    try:
        while not stopping:
            children -= _reaped(children)
            if children:
                last = time.monotonic()
            elif time.monotonic() - last > idle:
                _log("idle: exiting")
                break
            elif not text_loaded and marker.exists():
                _load_text_model(marker)
                text_loaded = True  # tried once, loaded or not (the log says which)
            if not _is_ours(path, inode):
                _log("the socket was removed or replaced: exiting")
                break
            listener.settimeout(0.5)
            try:
                conn, _ = listener.accept()
            except (TimeoutError, InterruptedError):
                continue
            last = time.monotonic()
            child = _handle(listener, conn, lock, marker)
            if child:
                children.add(child)
    finally:
        if os.getpid() == server:  # never in a child (they end in os._exit, but be sure)
            if _is_ours(path, inode):
                path.unlink()
            with contextlib.suppress(FileNotFoundError):
                path.with_suffix(".pid").unlink()
            listener.close()


def _is_ours(path: Path, inode: int) -> bool:
    try:
        return os.stat(path).st_ino == inode
    except OSError:
        return False


def _preload() -> None:
    """What a create imports, imported once here (and inherited by every child)."""
    import synthreg.cli.app
    import synthreg.registry.create  # noqa: F401
    from synthreg.integrations import dvc as dvc_int
    from synthreg.integrations import mlflow as mlflow_int
    from synthreg.validators.gx_runner import preload

    preload()
    mlflow_int.preload_modules()
    dvc_int.preload_modules()
    import duckdb  # noqa: F401
    import pyarrow.dataset
    import pyarrow.parquet  # noqa: F401


def _note_text_model(marker: Path) -> None:
    """In a child: leave ``marker`` if this command loaded the text model (the server had not)."""
    embeddings = sys.modules.get("synthreg.validators.embeddings")
    if embeddings is not None and embeddings.model_loaded() and not marker.exists():
        marker.touch(mode=0o600)


def _load_text_model(marker: Path) -> None:
    """Load the text monitor's model (torch, sentence-transformers: ~5 s and ~300 MB) once a
    served command needed it, so later children inherit it; never at start, since most
    datasets have no free text. Loading only: the server never runs the model, because a process
    forked after torch ran its thread pool hangs in its first inference (measured). Once loaded,
    the marker says so for ``registry warm status``."""
    from synthreg.validators import embeddings

    if embeddings.unavailable() is not None:
        return  # nothing to load
    started = time.monotonic()
    try:
        embeddings.load()
    except Exception as exc:
        _log(f"could not load the text model: {type(exc).__name__}: {exc}")
        return
    marker.write_text("loaded\n")
    _log(f"text model loaded ({time.monotonic() - started:.1f} s): later creates with free text inherit it")


def _reaped(children: set[int]) -> set[int]:
    done = set()
    for child in children:
        with contextlib.suppress(ChildProcessError):
            pid, _ = os.waitpid(child, os.WNOHANG)
            if pid == 0:
                continue
        done.add(child)
    return done


def _handle(listener: socket.socket, conn: socket.socket, lock: Any, marker: Path) -> int | None:
    """Check the peer, read the request, fork the child that runs it; the child's pid."""
    fds: list[int] = []
    try:
        uid = _peer_uid(conn)
        if uid != os.getuid():
            _log(f"refused a connection from uid {uid}")
            return None
        deadline = time.monotonic() + _REQUEST_DEADLINE
        conn.settimeout(_REQUEST_DEADLINE)
        head, fds, _flags, _addr = socket.recv_fds(conn, len(_MAGIC) + 4, 3)
        if len(head) != len(_MAGIC) + 4 or not head.startswith(_MAGIC) or len(fds) != 3:
            _log("refused a malformed request")
            return None
        (size,) = struct.unpack("!I", head[len(_MAGIC) :])
        if size > _MAX_REQUEST:
            _log(f"refused a request of {size} bytes")
            return None
        body = b""
        while len(body) < size:
            conn.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = conn.recv(size - len(body))
            if not chunk:
                return None
            body += chunk
        request = _checked(json.loads(body))
        conn.settimeout(None)
        child = os.fork()
        if child == 0:
            try:
                listener.close()
                _run_child(conn, fds, request, lock, marker)
            finally:
                os._exit(1)  # _run_child ends in os._exit; nothing in a child returns here
        _log(f"pid {child}: {' '.join(request['argv'][:2])}")
        return child
    except Exception as exc:
        _log(f"refused a request: {type(exc).__name__}: {exc}")
        return None
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        conn.close()


def _checked(request: Any) -> dict[str, Any]:
    """The request, if it has the shape a client sends; ValueError otherwise."""
    ok = (
        isinstance(request, dict)
        and isinstance(request.get("argv"), list)
        and all(isinstance(a, str) for a in request["argv"])
        and isinstance(request.get("cwd"), str)
        and isinstance(request.get("env"), dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in request["env"].items())
        and isinstance(request.get("umask"), int)
    )
    if not ok:
        raise ValueError("not a registry request")
    return request


def _run_child(conn: socket.socket, fds: list[int], request: dict[str, Any], lock: Any, marker: Path) -> None:
    """Become the client's ``registry`` command: its streams, directory, variables, umask and argv.
    A command that loaded the text model itself leaves ``marker`` for the server (``_load_text_model``).

    The child leads its own process group (the client relays signals to the group: the engine's
    workers and the sidecar get them too, as in a terminal), and keeps none of the server's files."""
    import random

    code = 1
    finished = threading.Event()
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the server's handlers are not the command's
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for other in (signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD):
            signal.signal(other, signal.SIG_DFL)
        os.setpgid(0, 0)
        lock.close()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.umask(request["umask"])
        tempfile.tempdir = None  # the client's TMPDIR, not the server's
        time.tzset()
        sys.argv = ["registry", *request["argv"]]
        random.seed()
        conn.sendall(f"pid {os.getpid()}\n".encode())

        def watch() -> None:  # the client is gone (SIGKILL): stop as on SIGTERM, undoing
            with contextlib.suppress(OSError):
                conn.recv(1)
            if not finished.is_set():
                os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch, name="synthreg-warm-watch", daemon=True).start()
        from synthreg.cli.app import run_command

        code = run_command()
    except BaseException:
        import traceback

        with contextlib.suppress(BaseException):
            traceback.print_exc()
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        finished.set()
        import atexit

        with contextlib.suppress(BaseException):
            atexit._run_exitfuncs()
        # the server's own stream objects too: a library may hold them (they write to fds 1 and 2)
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            with contextlib.suppress(BaseException):
                stream.flush()  # type: ignore[union-attr]
        with contextlib.suppress(BaseException):
            _note_text_model(marker)
        with contextlib.suppress(BaseException):
            conn.sendall(f"exit {code}\n".encode())
        os._exit(code)


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} synthreg-warm {message}", flush=True)


# ---------------------------------------------------------------- registry warm ...


@warm_app.command("status")
def status() -> None:
    """Whether a warm server is running for this installation, and where."""
    path = socket_path(create=False)
    if path is None:
        typer.echo("no usable socket directory (missing, not yours, open to others, or too long a path)")
        raise typer.Exit(1)
    pid = _server_pid(path)
    if pid is None:
        typer.echo(f"not running (socket would be {path})")
        raise typer.Exit(1)
    marker = path.with_suffix(".text")
    loaded = marker.is_file() and marker.read_text() == "loaded\n"
    typer.echo(f"running: pid {pid}, socket {path}" + (", text model loaded" if loaded else ""))


@warm_app.command("start")
def start(
    idle: Annotated[float, typer.Option(help="Exit after this many seconds without a request.")] = 0,
) -> None:
    """Start the warm server in the background (a no-op when one is running)."""
    if idle:
        os.environ[WARM_IDLE] = str(idle)
    path = socket_path()
    if path is None:
        typer.echo("no usable socket directory (not yours, open to others, or too long a path)", err=True)
        raise typer.Exit(1)
    start_in_background()
    deadline = time.monotonic() + 60
    while not (path.exists() and running(path)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if not (path.exists() and running(path)):
        typer.echo(f"the warm server did not start: see {path.with_suffix('.log')}", err=True)
        raise typer.Exit(1)
    typer.echo(f"running: socket {path}")


@warm_app.command("stop")
def stop() -> None:
    """Stop every warm server in the socket directory, this installation's and older ones (commands
    they are running finish first)."""
    folder = socket_dir(create=False)
    stopped: dict[int, Path] = {}
    for sock_lock in sorted(folder.glob("*.lock")) if folder is not None else []:
        sock = sock_lock.with_suffix(".sock")
        pid = _server_pid(sock)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
                stopped[pid] = sock
    # wait until each has let go of its lock, so that a ``warm start`` right after starts a new
    # server instead of finding the stopping one (a server ends within its 0.5 s accept timeout)
    deadline = time.monotonic() + _STOP_WAIT_S
    while any(running(sock) for sock in stopped.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    still = [pid for pid, sock in stopped.items() if running(sock)]
    if still:
        typer.echo(f"pid {', '.join(map(str, still))} did not stop within {_STOP_WAIT_S:.0f} s", err=True)
        raise typer.Exit(1)
    typer.echo(f"stopped pid {', '.join(map(str, stopped))}" if stopped else "not running")


def _server_pid(path: Path) -> int | None:
    """The pid of the server of ``path``: only when a server holds its lock, and the process named
    in the pid file is that server (its command line names the socket), never a reused pid."""
    if not running(path):
        return None
    try:
        pid = int(path.with_suffix(".pid").read_text())
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            if os.fsencode(path) not in cmdline.read().split(b"\0"):
                return None
    except (OSError, ValueError):
        return None
    return pid


def server_main() -> None:
    """``python -I -c _BOOT SOCKET SYS_PATH`` (started by :func:`start_in_background`)."""
    serve(Path(sys.argv[1]), float(os.environ.get(WARM_IDLE) or _DEFAULT_IDLE))
