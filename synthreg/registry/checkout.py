"""``registry checkout REF [--dest DIR]``: make a version's files present (cache, then remote)."""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthreg.errors import ConflictError, IntegrationError, UsageError
from synthreg.integrations import dvc
from synthreg.registry.facts import bytes_sha256
from synthreg.registry.query import resolve
from synthreg.registry.refs import parse_ref
from synthreg.registry.store import Version, read_session
from synthreg.registry.workspace import Workspace

__all__ = ["CheckoutResult", "checkout", "ensure_local", "missing_files", "read_manifest"]


@dataclass(frozen=True)
class CheckoutResult:
    """Where a version's files are, and how they got there."""

    ref: str
    path: Path
    source: str  # workspace | cache | remote
    files: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"ref": self.ref, "path": str(self.path), "source": self.source, "files": self.files}


def read_manifest(version_dir: Path) -> dict[str, Any]:
    """A version's manifest."""
    return json.loads((version_dir / "manifest.json").read_text())


def missing_files(
    version_dir: Path, manifest: dict[str, Any], *, check_hashes: bool = False, table: str | None = None
) -> list[str]:
    """Data files of the manifest (of one table) that are absent (or, with check_hashes, altered)."""
    out = []
    for fact in manifest["files"]:
        if table is not None and not fact["path"].startswith(f"tables/{table}/"):
            continue
        path = version_dir / fact["path"]
        if not path.is_file() or (check_hashes and bytes_sha256(path) != fact["sha256"]):
            out.append(fact["path"])
    return out


def ensure_local(ws: Workspace, version: Version, table: str | None = None) -> str:
    """Make the version's tables (or one table) present: from the workspace, the DVC cache, or the
    remote. A fresh clone on another machine pulls only what it asks for."""
    vdir = ws.root / version.path
    manifest = read_manifest(vdir)
    if not missing_files(vdir, manifest, table=table):
        return "workspace"
    # one table is a granular target inside the stage's output directory
    target = dvc.target(manifest["dvc"]) if table is None else f"{version.path}/tables/{table}"
    with contextlib.suppress(IntegrationError):  # not in the cache: the remote is next
        dvc.checkout(ws.root, [target])
    if not missing_files(vdir, manifest, table=table):
        return "cache"
    dvc.pull(ws.root, [target])
    still = missing_files(vdir, manifest, table=table)
    if still:
        raise ConflictError(
            f"{version.path}: {len(still)} files are neither in the cache nor on the remote "
            f"(e.g. {still[0]}): run 'registry doctor'"
        )
    return "remote"


def checkout(ws: Workspace, ref: str, dest: Path | None = None) -> CheckoutResult:
    """Materialize a version's files; with ``dest``, copy the whole version directory there."""
    with read_session(ws.engine) as session:
        dataset, version = resolve(session, parse_ref(ref))
    source = ensure_local(ws, version)
    vdir = ws.root / version.path
    label = f"{dataset.name}@v{version.number}"
    files = len(read_manifest(vdir)["files"])
    if dest is None:
        return CheckoutResult(label, vdir, source, files)
    dest = dest.resolve()
    if dest.exists() and any(dest.iterdir()):
        raise UsageError(f"--dest {dest} is not empty: choose an empty or new directory")
    # not the version's DVC stage files: their wdir and outputs name the workspace's paths, so a copy
    # would be a second stage of the same output (or one outside the repository)
    ignore = shutil.ignore_patterns(".gitignore", "dvc.yaml", "dvc.lock")
    shutil.copytree(vdir, dest, dirs_exist_ok=True, ignore=ignore)
    return CheckoutResult(label, dest, source, files)
