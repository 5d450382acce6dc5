"""The small files of a version directory, checked by ``registry verify``.

The Parquet parts are checked against their sha256 in ``manifest.json``; every other file
of a version (spec.yaml, validation.json, quality.json, pii.json, plots/, llm/,
llm_calls.jsonl, the DataCards, ...) is committed to the workspace's git with the
version, so git is their reference:

- the immutable ones must equal their blobs in the commit that made the version
  (``Version.git_commit``; HEAD for a row rebuilt without one), so an edit that was
  committed afterwards is caught too;
- the DataCards (datacard.md/.json, README.md, croissant.json) are rewritten by review,
  alias and use, each time committed: they must equal HEAD;
- evaluation.json and evaluation.html, added by ``registry evaluate`` and committed by it, must
  equal HEAD too (:mod:`synthreg.registry.evaluate_store` checks evaluation.json against its audit event);
- nothing in the directory may be untracked (the data tables are ignored: DVC holds them).

``spec.yaml`` must also hash to the recorded ``spec_sha256`` (the hash of the frozen YAML,
which is what the file holds).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from synthreg.datacards.card import CARD_FILES
from synthreg.integrations import git
from synthreg.registry.evaluate_store import EVALUATION_FILES
from synthreg.registry.store import Version
from synthreg.registry.workspace import Workspace

__all__ = ["git_problems", "spec_problems"]


def spec_problems(vdir: Path, manifest: dict[str, Any], version: Version) -> list[str]:
    """spec.yaml is present and hashes to the spec_sha256 of the DB and the manifest."""
    path = vdir / "spec.yaml"
    if not path.is_file():
        return [f"spec.yaml is missing: restore it from git (git checkout HEAD -- {version.path}/spec.yaml)"]
    problems = []
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    if actual != version.spec_sha256:
        problems.append(
            f"spec.yaml hashes to {actual[:16]}, not to the recorded spec_sha256 {version.spec_sha256[:16]}: "
            f"it was edited; restore it with git checkout {_base(version)[:12]} -- {version.path}/spec.yaml"
        )
    if manifest.get("spec_sha256") != version.spec_sha256:
        problems.append(
            f"manifest.json spec_sha256 {str(manifest.get('spec_sha256'))[:16]} != DB spec_sha256 "
            f"{version.spec_sha256[:16]}"
        )
    return problems


def git_problems(ws: Workspace, version: Version) -> tuple[list[str], int]:
    """Small files that differ from git (edited, deleted, added or untracked), and how many
    tracked files were compared."""
    rel, base = version.path, _base(version)
    if not git.run(ws.root, "rev-parse", "--verify", "-q", f"{base}^{{commit}}", check=False):
        return [
            f"the git commit of {rel} ({base[:12]}) is missing: restore the git history, "
            "then run 'registry doctor'"
        ], 0
    cards = {f"{rel}/{name}" for name in CARD_FILES}
    evaluation = {f"{rel}/{name}" for name in EVALUATION_FILES}  # added later by registry evaluate
    problems = [
        _changed(status, path, base)
        for status, path in _diff(ws.root, base, rel)
        if path not in cards | evaluation
    ]
    problems += [_card_changed(status, path) for status, path in _diff(ws.root, "HEAD", *sorted(cards))]
    problems += [
        f"{path} differs from git HEAD ({'deleted' if status == 'D' else 'edited'}): restore it with "
        f"git checkout HEAD -- {path}"
        for status, path in _diff(ws.root, "HEAD", *sorted(evaluation))
    ]
    untracked = git.run(ws.root, "ls-files", "--others", "--exclude-standard", "--", rel).splitlines()
    problems += [
        f"{path} is not tracked by git, so it is not part of the version: remove it" for path in untracked
    ]
    tracked = git.run(ws.root, "ls-files", "--", rel).splitlines()
    return problems, len(tracked)


def _base(version: Version) -> str:
    return version.git_commit or "HEAD"


def _diff(root: Path, base: str, *paths: str) -> list[tuple[str, str]]:
    """``(status, path)`` of each file that differs between ``base`` and the work tree."""
    out = git.run(
        root, "-c", "core.quotePath=off", "diff", "--name-status", "--no-renames", base, "--", *paths
    )
    return [(line[0], line.split("\t", 1)[1]) for line in out.splitlines() if "\t" in line]


def _changed(status: str, path: str, base: str) -> str:
    short = base[:12]
    if status == "D":
        return (
            f"{path} is missing (it is in git commit {short}): restore it with git checkout {short} -- {path}"
        )
    if status == "A":
        return f"{path} was added after the version was made (it is not in git commit {short}): remove it"
    return (
        f"{path} differs from what git commit {short} recorded for the version: it was edited; "
        f"restore it with git checkout {short} -- {path}"
    )


def _card_changed(status: str, path: str) -> str:
    if status == "D":
        return f"{path} is missing: restore it with git checkout HEAD -- {path}"
    return (
        f"{path} differs from git HEAD: the DataCard was edited outside synthreg; "
        f"restore it with git checkout HEAD -- {path}"
    )
