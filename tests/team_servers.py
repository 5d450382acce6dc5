"""Real team backends on loopback: PostgreSQL 15, an S3 endpoint (moto) and an MLflow server.

Used by the test fixtures, the benchmarks and ``make demo-team``. Nothing here is a mock:
PostgreSQL is Debian's server started with initdb/pg_ctl (as the unprivileged ``postgres`` user
when we run as root, since pg_ctl refuses root), S3 is moto's HTTP server (what dvc-s3's own tests
use), MLflow is ``mlflow server`` in a subprocess.

    python tests/team_servers.py      # start all three, print the settings, wait for Ctrl-C
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PG_BIN = Path(os.environ.get("SYNTHREG_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "synthreg"
#: Test-only credentials of throw-away loopback servers; they reach tests through the environment.
PG_PASSWORD = "pg-test-secret-7f3a"
S3_KEY_ID = "AKIATESTSYNTHREG0001"
S3_SECRET = "s3-test-secret-9c1e"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres() -> list[str]:
    """Prefix that runs a command as the ``postgres`` user when we are root."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing answered on 127.0.0.1:{port} after {timeout:.0f} s")


@dataclass
class Postgres:
    """A PostgreSQL 15 server in a temp directory; ``url(db)`` carries no password (PGPASSWORD does)."""

    port: int = 0
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="synthreg-pg-")))
    _dbs: int = 0

    @property
    def data(self) -> Path:
        return self.base / "data"

    def start(self) -> Postgres:
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError(
                f"PostgreSQL 15 is not installed ({PG_BIN}/initdb missing): "
                "apt-get install -y postgresql ('make servers' does it)"
            )
        self.port = self.port or free_port()
        self.base.chmod(0o777)
        pwfile = self.base / "pw"
        pwfile.write_text(PG_PASSWORD + "\n")
        pwfile.chmod(0o644)
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        run = _as_postgres()
        if not (self.data / "PG_VERSION").exists():  # a restart keeps the data directory
            subprocess.run(
                [*run, str(PG_BIN / "initdb"), "-D", str(self.data), "-U", PG_USER, "--pwfile", str(pwfile),
                 "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"],
                check=True, capture_output=True,
            )  # fmt: skip
        opts = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        )
        subprocess.run(
            [*run, str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.base / "log"),
             "-w", "-t", "30", "start"],
            check=True, capture_output=True,
        )  # fmt: skip
        return self

    def stop(self) -> None:
        if self.data.exists():
            subprocess.run(
                [*_as_postgres(), str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"],
                capture_output=True,
                check=False,
            )

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def url(self, db: str = "postgres") -> str:
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{db}"

    def create_db(self, prefix: str = "reg") -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        self._dbs += 1
        name = f"{prefix}_{os.getpid()}_{self._dbs}"
        self.sql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def sql(self, statement: str, db: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=PG_USER, password=PG_PASSWORD, dbname=db, autocommit=True
        ) as conn:
            conn.execute(statement)

    def __enter__(self) -> Postgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()


@dataclass
class S3:
    """moto's S3 server on loopback; credentials only in the environment."""

    port: int = 0
    _server: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
        self.port = self.port or free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        _wait_port(self.port, 10)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_KEY_ID,
            aws_secret_access_key=S3_SECRET,
            region_name="us-east-1",
        )

    def make_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST"))

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": S3_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def __enter__(self) -> S3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class MlflowServer:
    """``mlflow server`` in a subprocess with a given backend store and S3 artifact destination."""

    backend_store_uri: str
    artifacts_destination: str
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    _proc: subprocess.Popen[bytes] | None = None
    log: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="synthreg-mlflow-")) / "server.log"
    )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90) -> MlflowServer:
        self.port = self.port or free_port()
        env = {**os.environ, **self.env}
        env.pop("MLFLOW_TRACKING_URI", None)
        cmd = [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
            "--backend-store-uri", self.backend_store_uri,
            "--artifacts-destination", self.artifacts_destination, "--workers", "1",
        ]  # fmt: skip
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as out:
            self._proc = subprocess.Popen(
                cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.3)
        raise RuntimeError(f"mlflow server did not answer in {timeout:.0f} s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        """Stop the whole process group (its job-runner child survives SIGTERM to the parent)."""
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGTERM)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc = None
        shutil.rmtree(self.log.parent, ignore_errors=True)  # its log folder (read it before stop)

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Forwarder:
    """A TCP forwarder on loopback in front of a server: ``stop()`` makes the server unreachable at
    its address (listener and open connections closed), ``start()`` brings it back on the same port.
    Cheaper than restarting a slow server to test "the server went away mid-command"."""

    def __init__(self, target_port: int, port: int = 0) -> None:
        self.target_port, self.port = target_port, port or free_port()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Forwarder:
        import threading

        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        import threading

        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):  # wakes the thread blocked in accept() (close alone does not)
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self._conns = []


@contextlib.contextmanager
def team(bucket: str = "synthreg") -> Iterator[tuple[Postgres, S3, MlflowServer]]:
    """All three servers: MLflow keeps its runs on the PostgreSQL server, artifacts on S3."""
    with Postgres() as pg, S3() as s3:
        s3.make_bucket(bucket)
        mlflow_db = pg.create_db("mlflow")
        server_env = {**s3.env(), "MLFLOW_S3_ENDPOINT_URL": s3.endpoint, "PGPASSWORD": PG_PASSWORD}
        with MlflowServer(mlflow_db, f"s3://{bucket}/mlartifacts", env=server_env) as ml:
            yield pg, s3, ml


def main() -> None:
    """Start the three servers and print what a workspace needs, until Ctrl-C."""
    with team() as (pg, s3, ml):
        db = pg.create_db("registry")
        print(f"db       = {db}")
        print(f"remote   = s3://synthreg/dvc   endpoint = {s3.endpoint}")
        print(f"mlflow   = {ml.url}")
        print(f"env      : PGPASSWORD={PG_PASSWORD} AWS_ACCESS_KEY_ID={S3_KEY_ID} AWS_SECRET_ACCESS_KEY=...")
        sys.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
