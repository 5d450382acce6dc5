"""Does each backend answer? The metadata DB, the DVC remote and the MLflow tracking store; and
a remote Dask cluster named by ``[compute] scheduler``.

Used by ``registry doctor`` (every backend of a workspace) and ``registry init`` (the URLs it is
given, before it writes anything). Each probe is one short round trip with a timeout of seconds,
and its message names the URL, never a password, and the fix. Credentials come from the
environment only: PGPASSWORD (or ~/.pgpass), AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or
~/.aws), MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from synthreg.config import redact_url
from synthreg.errors import first_line

__all__ = ["Probe", "db_fix", "probe_cluster", "probe_db", "probe_mlflow", "probe_remote"]

TIMEOUT_S = 10


@dataclass(frozen=True)
class Probe:
    """One backend's answer."""

    backend: str  # db | remote | mlflow
    url: str  # redacted
    ok: bool
    detail: str
    fix: str = ""

    def message(self) -> str:
        """One line for a person."""
        if self.ok or not self.fix:  # without a fix, the detail says what is wrong and what to do
            return f"{self.backend} at {self.url}: {self.detail}"
        return f"{self.backend} at {self.url} did not answer: {self.detail}; {self.fix}"

    def to_dict(self) -> dict[str, object]:
        """JSON-ready."""
        return {
            "backend": self.backend,
            "url": self.url,
            "ok": self.ok,
            "detail": self.detail,
            "fix": self.fix,
        }


def db_fix(dialect: str) -> str:
    """What to check when the metadata DB does not answer (probes and errors mid-command alike)."""
    if dialect == "postgresql":
        return (
            "check that the server is up and reachable, that the database exists (createdb), and that "
            "PGPASSWORD (or ~/.pgpass) holds this user's password"
        )
    return "check that the file is readable and not corrupt (registry doctor --rebuild rebuilds it from git)"


def probe_db(url: str) -> Probe:
    """Connect and run ``SELECT 1`` (no schema change)."""
    from sqlalchemy import create_engine, text

    shown = redact_url(url)
    is_pg = url.startswith("postgresql")
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:" and not Path(path).parent.is_dir():
            return Probe(
                "db", shown, False, f"folder {Path(path).parent} does not exist", "fix [registry] db_url"
            )
    try:
        engine = create_engine(url, connect_args={"connect_timeout": TIMEOUT_S} if is_pg else {})
    except Exception as exc:  # a bad URL or a missing driver
        return Probe(
            "db", shown, False, first_line(exc), "fix [registry] db_url (pip install 'synthreg[team]')"
        )
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        return Probe("db", shown, False, first_line(exc), db_fix(engine.dialect.name))
    finally:
        engine.dispose()
    return Probe("db", shown, True, f"{engine.dialect.name} answers")


def probe_remote(url: str, endpoint: str | None, root: Path) -> Probe:
    """An ``s3://`` remote: the bucket answers and the prefix can be listed; a path: a writable folder."""
    if not url.startswith("s3://"):
        path = Path(url) if Path(url).is_absolute() else root / url
        shown = str(path)
        if path.is_dir() and os.access(path, os.W_OK):
            return Probe("remote", shown, True, "a writable folder")
        return Probe("remote", shown, False, "not a writable folder", "create it, or fix [dvc] url")
    shown = url + (f" (endpoint {redact_url(endpoint)})" if endpoint else "")
    parts = urlsplit(url)
    bucket, prefix = parts.netloc, parts.path.lstrip("/")
    try:
        import botocore.session
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
    except ImportError:
        return Probe("remote", shown, False, "dvc-s3 is not installed", "pip install 'synthreg[team]'")
    config = Config(connect_timeout=TIMEOUT_S, read_timeout=TIMEOUT_S, retries={"max_attempts": 1})
    client = botocore.session.get_session().create_client("s3", endpoint_url=endpoint or None, config=config)
    try:
        client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    except NoCredentialsError:
        return Probe(
            "remote", shown, False, "no S3 credentials",
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment (or ~/.aws/credentials)",
        )  # fmt: skip
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code == "NoSuchBucket":
            fix = f"create the bucket {bucket!r} or fix [dvc] url"
        elif code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
            fix = "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY: the server refused them"
        else:
            fix = "check [dvc] url and endpoint_url"
        return Probe("remote", shown, False, f"{code}: {first_line(exc)}", fix)
    except BotoCoreError as exc:
        return Probe(
            "remote", shown, False, first_line(exc),
            "check that the S3 endpoint is up and reachable ([dvc] endpoint_url)",
        )  # fmt: skip
    return Probe("remote", shown, True, f"bucket {bucket!r} answers")


def _mlflow_request(uri: str) -> urllib.request.Request:
    req = urllib.request.Request(uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1")
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if user and password:
        pair = base64.b64encode(f"{user}:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {pair}")
    elif token:
        req.add_header("Authorization", f"Bearer {token}")
    return req


def probe_mlflow(uri: str) -> Probe:
    """A tracking server answers a search of experiments (so its backend store answers too)."""
    shown = redact_url(uri)
    if not uri.startswith(("http://", "https://")):
        if uri.startswith("sqlite:///"):
            folder = Path(uri.removeprefix("sqlite:///")).parent
            if not folder.is_dir():
                return Probe(
                    "mlflow", shown, False, f"folder {folder} does not exist", "fix [mlflow] tracking_uri"
                )
        return Probe("mlflow", shown, True, "a local store")
    try:
        with urllib.request.urlopen(_mlflow_request(uri), timeout=TIMEOUT_S) as resp:
            json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            fix = "set MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) for it"
        elif exc.code >= 500:
            fix = "the server is up but failing: check its backend store and artifact store, and its log"
        else:
            fix = "check [mlflow] tracking_uri: is this an MLflow tracking server?"
        return Probe("mlflow", shown, False, f"HTTP {exc.code}", fix)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Probe(
            "mlflow", shown, False, str(reason)[:300],
            "check that the tracking server is up and reachable (mlflow server ...), and "
            "[mlflow] tracking_uri",
        )  # fmt: skip
    return Probe("mlflow", shown, True, "tracking server answers")


def probe_cluster(address: str) -> Probe:
    """A remote Dask cluster (``tcp://``, ``tls://``): its scheduler answers within ``TIMEOUT_S``,
    it has a worker, and every worker runs what this machine runs (the check a create makes
    before its tasks, ``compute.dask``)."""
    from synthreg.compute.dask import check_cluster, client_for
    from synthreg.errors import SynthregError

    try:
        check_cluster(address)
        with client_for(address, wait_s=TIMEOUT_S) as client:
            workers = len(client.scheduler_info(n_workers=-1)["workers"])
    except SynthregError as exc:
        return Probe("cluster", address, False, str(exc).removeprefix(f"--cluster {address}: "))
    return Probe("cluster", address, True, f"{workers} worker(s), each running this machine's software")
