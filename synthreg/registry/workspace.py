"""A registry workspace on disk: ``registry init``, opening, and the writer lock."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from sqlalchemy.engine import Engine

from synthreg import env
from synthreg.config import CONFIG_FILE, STATE_DIR, Settings, default_toml, find_root, refuse_credentials
from synthreg.errors import WorkspaceError
from synthreg.integrations import dvc, git
from synthreg.registry.audit import LOG_FILE, anchor_lines, append_event
from synthreg.registry.store import make_engine, write_session

__all__ = ["InitResult", "Workspace", "init_workspace"]

_GITIGNORE = f"""# synthreg: local state (databases, MLflow store, DVC remote, staging)
/{STATE_DIR}/
"""


@dataclass
class Workspace:
    """An opened workspace: settings, the metadata DB, the writer lock."""

    settings: Settings
    _engine: Engine | None = field(default=None, repr=False)

    @classmethod
    def open(cls, path: str | Path = ".") -> Workspace:
        """Open the workspace at or above ``path``."""
        return cls(Settings.load(find_root(Path(path))))

    @property
    def root(self) -> Path:
        """The workspace directory."""
        return self.settings.root

    @cached_property
    def engine(self) -> Engine:
        """The metadata DB engine (tables created on first use)."""
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        return make_engine(self.settings.db_url)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the workspace's writer lock (git and DVC are not safe for concurrent writers)."""
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.settings.state_dir / "write.lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class InitResult:
    """What ``registry init`` did."""

    root: Path
    created: bool
    git_initialized: bool
    remote: str
    git_commit: str

    def to_dict(self) -> dict[str, object]:
        """JSON-ready."""
        return {
            "root": str(self.root),
            "created": self.created,
            "git_initialized": self.git_initialized,
            "remote": self.remote,
            "git_commit": self.git_commit,
        }


def init_workspace(
    path: str | Path = ".",
    remote: str | None = None,
    *,
    db: str | None = None,
    endpoint: str | None = None,
    mlflow: str | None = None,
) -> InitResult:
    """Make a workspace at ``path``; re-running on an existing one changes nothing.

    ``db`` (a SQLAlchemy URL), ``remote`` (a DVC remote URL, e.g. ``s3://bucket/prefix``, with
    ``endpoint`` for an S3-compatible server) and ``mlflow`` (a tracking server URL) choose the team
    backends; each alone works too. None of them may carry a password: credentials come from the
    environment.
    """
    for what, url in (("--db", db), ("--remote", remote), ("--endpoint", endpoint), ("--mlflow", mlflow)):
        if url:
            refuse_credentials(url, what)
    if endpoint and not (remote or "").startswith("s3://"):
        raise WorkspaceError(
            "--endpoint is the S3 endpoint of an s3:// --remote: give --remote s3://BUCKET/PREFIX too"
        )
    root = Path(path).expanduser().resolve()
    if (root / CONFIG_FILE).is_file():
        settings = Settings.load(root)
        return InitResult(root, False, False, settings.dvc_url, git.head(root))
    _probe_team_backends(root, db=db, remote=remote, endpoint=endpoint, mlflow=mlflow)
    if root.exists() and not root.is_dir():
        raise WorkspaceError(f"{root} exists and is not a directory: choose another path")
    root.mkdir(parents=True, exist_ok=True)
    fresh_git = not git.is_toplevel(root)
    if fresh_git:
        git.init(root)
    remote_url = remote or f"{STATE_DIR}/dvc-remote"
    remote_name = "store" if remote_url.startswith("s3://") else "local"
    if not (root / ".dvc").is_dir():
        dvc.init_workspace(root, remote_name, remote_url, endpoint=endpoint)
    (root / CONFIG_FILE).write_text(
        default_toml(remote_url, remote_name, db_url=db, mlflow_uri=mlflow, endpoint_url=endpoint),
        encoding="utf-8",
    )
    _append_gitignore(root)
    for sub in ("data", "specs", "audit", STATE_DIR):
        (root / sub).mkdir(exist_ok=True)
    if not remote:
        (root / STATE_DIR / "dvc-remote").mkdir(exist_ok=True)
    ws = Workspace(Settings.load(root))
    with ws.lock(), write_session(ws.engine) as session:
        event = append_event(
            session,
            root=root,
            actor=env.actor(),
            action="init",
            details={"remote": remote_url, "git_initialized": fresh_git},
        )
        git.add(root, [CONFIG_FILE, ".gitignore", ".dvc/config", ".dvc/.gitignore", ".dvcignore", LOG_FILE])
        sha = git.commit(root, f"registry init\n\n{anchor_lines(event)}")
    return InitResult(root, True, fresh_git, remote_url, sha)


def _probe_team_backends(
    root: Path, *, db: str | None, remote: str | None, endpoint: str | None, mlflow: str | None
) -> None:
    """Each team backend given must answer before anything is written (exit 1, nothing made)."""
    from synthreg.errors import IntegrationError
    from synthreg.integrations import probes

    checks = []
    if db and not db.startswith("sqlite"):
        checks.append(probes.probe_db(db))
    if remote and remote.startswith("s3://"):
        checks.append(probes.probe_remote(remote, endpoint, root))
    if mlflow and mlflow.startswith(("http://", "https://")):
        checks.append(probes.probe_mlflow(mlflow))
    failed = [c.message() for c in checks if not c.ok]
    if failed:
        raise IntegrationError("; ".join(failed) + f" (nothing was written to {root})")


def _append_gitignore(root: Path) -> None:
    path = root / ".gitignore"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if f"/{STATE_DIR}/" not in text.splitlines():
        path.write_text(text + ("\n" if text and not text.endswith("\n") else "") + _GITIGNORE)
