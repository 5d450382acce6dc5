"""git, through the ``git`` command. Each workspace is its own repository."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

from synthreg.errors import IntegrationError

__all__ = ["add", "commit", "head", "init", "is_toplevel", "log_messages", "reset_to", "run"]

_IDENTITY = {
    "GIT_AUTHOR_NAME": "synthreg",
    "GIT_AUTHOR_EMAIL": "synthreg@localhost",
    "GIT_COMMITTER_NAME": "synthreg",
    "GIT_COMMITTER_EMAIL": "synthreg@localhost",
}


@functools.cache
def _has_identity(root: str) -> bool:
    """Whether git has a user identity for ``root`` (asked once per workspace and process)."""
    probe = subprocess.run(
        ["git", "config", "user.email"], cwd=root, capture_output=True, text=True, check=False
    )
    return bool(probe.stdout.strip())


def _env(root: Path) -> dict[str, str]:
    environ = dict(os.environ)
    # A fresh machine may have no git identity: fall back to ours, never override theirs.
    if not _has_identity(str(root)):
        for key, value in _IDENTITY.items():
            environ.setdefault(key, value)
    return environ


def run(root: Path, *args: str, check: bool = True, strip: bool = True) -> str:
    """Run ``git ARGS`` in ``root``; return stdout (stripped unless ``strip=False``); raise
    IntegrationError on failure."""
    proc = subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, env=_env(root), check=False
    )
    if check and proc.returncode != 0:
        raise IntegrationError(
            f"git {' '.join(args)} failed in {root}: {proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc.stdout.strip() if strip else proc.stdout


def is_toplevel(path: Path) -> bool:
    """Whether ``path`` is the top of a git work tree."""
    proc = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], cwd=path, capture_output=True, text=True, check=False
    )
    return proc.returncode == 0 and Path(proc.stdout.strip()).resolve() == path.resolve()


def init(path: Path) -> None:
    """``git init`` (quietly, default branch main)."""
    run(path, "init", "-q", "-b", "main")


def add(root: Path, paths: list[str]) -> None:
    """Stage ``paths`` (relative to root)."""
    if paths:
        run(root, "add", "--", *paths)


def commit(root: Path, message: str, *, allow_empty: bool = False) -> str:
    """Commit what is staged; return the new HEAD sha."""
    run(root, "commit", "-q", "--no-verify", *(["--allow-empty"] if allow_empty else []), "-m", message)
    return head(root)


def log_messages(root: Path) -> list[str]:
    """Every commit message, newest first."""
    out = run(root, "log", "--format=%B%x00")
    return [m.strip() for m in out.split("\x00") if m.strip()]


def head(root: Path) -> str:
    """The HEAD commit sha, or '' before the first commit."""
    return run(root, "rev-parse", "--verify", "-q", "HEAD", check=False)


def reset_to(root: Path, sha: str) -> None:
    """Move HEAD and the index back to ``sha``, keeping files (undo of a failed create)."""
    if sha:
        run(root, "reset", "-q", "--mixed", sha)
