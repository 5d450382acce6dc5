"""DVC: workspace set-up, one stage per version, push to the remote.

Each version's stage lives in its own ``data/NAME/vN/dvc.yaml`` (its ``dvc.lock`` beside it),
with ``wdir`` at the workspace root so its command and paths read as from there. Adding a
version then reads and writes only its own small files: with every stage in one root
``dvc.yaml``, DVC parsed and rewrote the whole file and lock several times per version (1.64 s
per create at 200 versions, 3.91 s at 500, measured by ``benchmarks/bench_dvc_growth.py``).
Versions made before keep their stage in the root files; :func:`target` names either.

The only module (with ``mlflow.py``) that imports the library. DVC's Python API
resolves relative paths against the process's cwd, so every call runs with the
workspace as cwd, and DVC's chatter goes to stderr: stdout is for data.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import posixpath
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from synthreg.errors import IntegrationError, first_line

__all__ = [
    "checkout",
    "cloud_status",
    "init_workspace",
    "lock_md5",
    "plain_s3_remote",
    "pull",
    "push",
    "stage_file",
    "status",
    "target",
    "track_stage",
]


#: What opening a repo, committing a stage and pushing it import beyond ``preload_modules``'s own
#: imports (found by listing the modules a create imported after it; ~40 ms).
_LATER_MODULES = (
    "dvc.cachemgr", "dvc.data_cloud", "dvc.dirs", "dvc.lock", "dvc.repo.artifacts", "dvc.repo.brancher",
    "dvc.repo.index", "dvc.repo.metrics", "dvc.repo.params", "dvc.repo.stage", "dvc.repo.worktree",
    "dvc.rwlock", "dvc.utils.strictyaml", "dvc_data.hashfile.db.index", "dvc_data.hashfile.db.local",
    "dvc_data.hashfile.status", "dvc_data.index.checkout", "dvc_data.index.collect",
    "dvc_data.index.fetch", "dvc_data.index.push", "dulwich.index", "dulwich.worktree", "ruamel.yaml",
    "psutil", "platformdirs", "flufl.lock", "zc.lockfile", "configobj",
)  # fmt: skip


def preload_modules() -> None:
    """Import what :func:`track_stage` and :func:`push` use, opening nothing (the warm server's
    imports; ~0.25 s cold).

    Not done by a one-shot create while its helper validates: on 2 cores that wait is not idle
    (the MLflow helper imports MLflow then), and a fitness create took 3.39 s against 3.16 s
    (``bench_create.py --cases fitness --repeat 7``, medians): DVC's import only delayed the run's
    logging (mlflow 0.00 -> 0.61 s)."""
    import importlib

    import dvc.output
    import dvc.repo
    import dvc.repo.datasets
    import dvc.repo.plots
    import dvc.scm
    import dvc.stage  # noqa: F401
    import networkx  # noqa: F401  (DVC's stage graph, for status and push: 75 ms on first use)

    for name in _LATER_MODULES:
        with contextlib.suppress(ImportError):  # another DVC release may have moved one: DVC imports it
            importlib.import_module(name)


def _cli(root: Path, *args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise IntegrationError(f"dvc {' '.join(args)} failed in {root}: {proc.stderr.strip()}")


def init_workspace(root: Path, remote_name: str, remote_url: str, endpoint: str | None = None) -> None:
    """``dvc init`` with analytics off and a default remote, written to ``.dvc/config``.

    An S3 remote gets its ``endpointurl`` there too; its credentials never do: dvc-s3 reads them
    from the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) or ~/.aws.
    """
    _cli(root, "init", "-q")
    _cli(root, "config", "core.analytics", "false")
    _cli(root, "config", "core.autostage", "false")
    _cli(root, "remote", "add", "-d", remote_name, remote_url)
    if endpoint:
        _cli(root, "remote", "modify", remote_name, "endpointurl", endpoint)


@contextlib.contextmanager
def _quiet_logger() -> Iterator[None]:
    """DVC's own handler keeps the stream it first saw; use a fresh one, warnings only."""
    logger = logging.getLogger("dvc")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    logger.handlers, logger.propagate = [handler], False
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.handlers, logger.level, logger.propagate = saved


@contextlib.contextmanager
def _repo(root: Path) -> Iterator[object]:
    from dvc.repo import Repo

    old = Path.cwd()
    os.chdir(root)
    try:
        with contextlib.redirect_stdout(sys.stderr), _quiet_logger():
            repo = Repo(str(root))
            try:
                yield repo
            finally:
                repo.close()
    finally:
        os.chdir(old)


def stage_file(rel_dir: str) -> str:
    """The pipeline file of the version in ``rel_dir`` (``data/NAME/vN``), root-relative."""
    return f"{rel_dir}/dvc.yaml"


def target(info: Mapping[str, Any]) -> str:
    """The DVC target of a manifest's ``dvc`` entry: ``FILE:STAGE`` for a version with its own
    pipeline file, the bare stage name for one made before (its stage is in the root file)."""
    stage = str(info["stage"])
    return f"{info['file']}:{stage}" if info.get("file") else stage


def track_stage(
    root: Path,
    dvcfile: str,
    name: str,
    cmd: str,
    deps: list[str],
    outs: list[str],
    known_md5: Mapping[Path, tuple[str, int, int]] | None = None,
) -> str:
    """Write stage ``name`` as the only stage of ``dvcfile`` (root-relative; ``wdir`` is the
    root, so ``cmd``, ``deps`` and ``outs`` are root-relative too), git-ignore its outputs as
    ``dvc stage add`` would, and commit them to the cache (DVC writes the lock file beside).

    ``known_md5``: files whose md5 was taken when they were written, ``{path: (md5, size,
    mtime_ns)}``; those still of that size and mtime go into DVC's hash cache first, so DVC
    does not read them again to hash them (it checks the cache by inode, mtime and size).
    Returns the md5 DVC recorded for the first output (``<md5>.dir`` for a directory).
    """
    _refuse_root_duplicates(root, name, outs)
    path = root / dvcfile
    stage = {"cmd": cmd, "wdir": os.path.relpath(root, path.parent), "deps": deps, "outs": outs}
    path.write_text(yaml.safe_dump({"stages": {name: stage}}, sort_keys=False))
    for out in outs:
        _ignore(root / out)
    try:
        with _repo(root) as repo:
            _remember_md5(repo, known_md5 or {})
            repo.commit(target({"file": dvcfile, "stage": name}), force=True)  # type: ignore[attr-defined]
    except Exception as exc:  # DVC raises many unrelated types
        raise IntegrationError(f"dvc could not track stage {name}: {exc}") from exc
    return lock_md5(root, name, dvcfile)


def _refuse_root_duplicates(root: Path, name: str, outs: list[str]) -> None:
    """DVC's own graph check is not run for a stage file committed by target: refuse a stage
    whose name a stage in the root ``dvc.yaml`` (of a version made before) already has, or whose
    output is, contains or lies in one of that file's, say a stage an interrupted create of an
    earlier release left behind."""
    pipeline = root / "dvc.yaml"
    if not pipeline.is_file():
        return
    stages = (_load_yaml(pipeline) or {}).get("stages")
    ours = [posixpath.normpath(o) for o in outs]
    for other, stage in (stages if isinstance(stages, dict) else {}).items():
        declared = stage.get("outs") if isinstance(stage, dict) else None
        paths = [next(iter(o)) if isinstance(o, dict) else o for o in declared or []]
        theirs = [posixpath.normpath(str(path)) for path in paths]
        clash = [t for t in theirs for o in ours if t == o or t.startswith(f"{o}/") or o.startswith(f"{t}/")]
        if other == name or clash:
            raise IntegrationError(
                f"the workspace's dvc.yaml already has stage {other}"
                + (f" with output {clash[0]}" if clash else "")
                + f": remove it with 'dvc remove {other}' in {root} (an interrupted create left it),"
                " then create again"
            )


def _load_yaml(path: Path) -> Any:
    """A DVC file, parsed by libyaml when PyYAML has it (a root file of 500 stages: 0.12 -> 0.05 s)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(path.read_text(), Loader=loader)


def _ignore(out: Path) -> None:
    """``/NAME`` in the ``.gitignore`` beside ``out``, as DVC writes it for an output."""
    ignore = out.parent / ".gitignore"
    lines = ignore.read_text().splitlines() if ignore.exists() else []
    entry = f"/{out.name}"
    if entry not in lines:
        ignore.write_text("".join(f"{line}\n" for line in [*lines, entry]))


def _remember_md5(repo: Any, known: Mapping[Path, tuple[str, int, int]]) -> None:
    """Put the known md5 of files still as written into DVC's hash cache (``State``). Only an
    optimisation: whatever goes wrong here, DVC hashes the files itself."""
    if not known:
        return
    try:
        from dvc_data.hashfile.hash_info import HashInfo
        from dvc_objects.fs.local import LocalFileSystem

        items = []
        for path, (md5, size, mtime_ns) in known.items():
            info = os.stat(path)
            if info.st_size == size and info.st_mtime_ns == mtime_ns:
                items.append((os.fspath(path), HashInfo("md5", md5), None))
        repo.state.save_many(items, LocalFileSystem())
    except Exception:  # an internal API: DVC then reads and hashes the files itself
        return


#: Options of an S3 DVC remote that the copy of staged parts into it would not honour (encryption,
#: ACLs, other layouts): with any of them, ``dvc push`` uploads the parts itself.
_PLAIN_REMOTE_KEYS = frozenset({"url", "endpointurl", "region", "profile", "credentialpath"})


def _default_remote(root: Path) -> dict[str, str]:
    """The default remote's options as DVC reads them (``.dvc/config``, then ``config.local``);
    empty when there is none."""
    import configparser

    config = configparser.ConfigParser()
    config.read([root / ".dvc" / "config", root / ".dvc" / "config.local"])
    section = f"'remote \"{config.get('core', 'remote', fallback='')}\"'"
    return dict(config.items(section)) if config.has_section(section) else {}


def plain_s3_remote(root: Path) -> tuple[str, str | None] | None:
    """The default DVC remote's URL and endpoint when it is S3 with none of the options a copy
    made outside DVC would miss (``sse*``, ``acl``, ``grant_*``, ``version_aware``,
    ``worktree``...); else None."""
    options = _default_remote(root)
    if not options.get("url", "").startswith("s3://") or set(options) - _PLAIN_REMOTE_KEYS:
        return None
    return options["url"], options.get("endpointurl")


def _remote_label(root: Path) -> str:
    """The default remote's URL (and endpoint), for messages; never its credentials."""
    options = _default_remote(root)
    endpoint = options.get("endpointurl")
    return options.get("url", "?") + (f" (endpoint {endpoint})" if endpoint else "")


#: What a full disk looks like under DVC: ENOSPC, or SQLite's word for it (DVC keeps its state
#: and link databases in SQLite files under .dvc/tmp and the site cache).
_DISK_FULL = ("No space left on device", "database or disk is full")


def _disk_full(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception it came from, is a full disk."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return True
        if any(marker in str(current) for marker in _DISK_FULL):
            return True
        current = current.__cause__ or current.__context__
    return False


def _remote_error(root: Path, what: str, exc: BaseException) -> IntegrationError:
    detail = first_line(exc)
    label = _remote_label(root)
    if _disk_full(exc):  # not the remote's fault, whatever DVC was doing: say what to free
        return IntegrationError(
            f"a disk is full ({what}): {detail}; free space where the workspace and its DVC cache "
            f"(.dvc/cache) are, and where the remote {label} is, then run the command again"
        )
    fix = (
        "check that the S3 endpoint is up and reachable, that the bucket exists, and AWS_ACCESS_KEY_ID / "
        "AWS_SECRET_ACCESS_KEY in the environment"
        if label.startswith("s3://")
        else "check that the folder exists and is writable ([dvc] url, .dvc/config)"
    )
    return IntegrationError(f"the DVC remote {label} did not answer ({what}): {detail}; {fix}")


def push(root: Path, stages: list[str]) -> int:
    """Push the stages' outputs to the default remote; return files pushed."""
    try:
        with _repo(root) as repo:
            return int(repo.push(targets=stages))  # type: ignore[attr-defined]
    except Exception as exc:
        raise _remote_error(root, "dvc push", exc) from exc


def lock_md5(root: Path, stage: str, dvcfile: str | None = None) -> str:
    """The md5 of a stage's first output, from the lock file beside ``dvcfile`` (the root
    ``dvc.lock`` without one)."""
    lockfile = (root / dvcfile).with_name("dvc.lock") if dvcfile else root / "dvc.lock"
    lock = _load_yaml(lockfile) or {}
    outs = lock.get("stages", {}).get(stage, {}).get("outs", [])
    return str(outs[0].get("md5", "")) if outs else ""


def status(root: Path) -> dict[str, object]:
    """``dvc status`` as a dict (empty when everything is in sync)."""
    with _repo(root) as repo:
        return dict(repo.status())  # type: ignore[attr-defined]


def checkout(root: Path, stages: list[str]) -> None:
    """Restore stages' outputs from the local cache."""
    try:
        with _repo(root) as repo:
            repo.checkout(targets=stages, force=True)  # type: ignore[attr-defined]
    except Exception as exc:
        raise IntegrationError(f"dvc checkout {' '.join(stages)} failed: {exc}") from exc


def pull(root: Path, stages: list[str]) -> None:
    """Fetch stages' outputs from the remote and check them out."""
    try:
        with _repo(root) as repo:
            repo.pull(targets=stages, force=True)  # type: ignore[attr-defined]
    except Exception as exc:
        raise _remote_error(root, f"dvc pull {' '.join(stages)}", exc) from exc


def cloud_status(root: Path, stages: list[str] | None = None) -> dict[str, object]:
    """``dvc status --cloud``: outputs missing from (or differing on) the remote."""
    with _repo(root) as repo:
        return dict(repo.status(targets=stages, cloud=True))  # type: ignore[attr-defined]
