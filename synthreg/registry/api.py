"""The Python API: ``synthreg.open(path)`` returns a Registry. The CLI is a thin layer on it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa

from synthreg.errors import ConflictError, NotFoundError
from synthreg.generators.engine import generate
from synthreg.generators.spec import Spec, apply_overrides, load_spec, parse_spec
from synthreg.registry.create import CreateResult, create_version
from synthreg.registry.query import describe_version, list_datasets, resolve
from synthreg.registry.refs import check_name, parse_ref
from synthreg.registry.store import read_session
from synthreg.registry.workspace import InitResult, Workspace, init_workspace

__all__ = ["Registry"]


class Registry:
    """A registry workspace: create, list, show and load dataset versions."""

    def __init__(self, workspace: Workspace, init_result: InitResult | None = None):
        self.workspace = workspace
        self.init_result = init_result

    @classmethod
    def open(cls, path: str | Path = ".") -> Registry:
        """Open the workspace at or above ``path``."""
        return cls(Workspace.open(path))

    @classmethod
    def init(cls, path: str | Path = ".", remote: str | None = None) -> Registry:
        """Make (or reopen) a workspace at ``path``."""
        result = init_workspace(path, remote)
        return cls(Workspace.open(result.root), result)

    @property
    def root(self) -> Path:
        """The workspace directory."""
        return self.workspace.root

    def create(
        self,
        name: str,
        spec: str | Path | Spec | dict[str, Any],
        *,
        seed: int | None = None,
        rows: dict[str, int] | None = None,
        scale: float | None = None,
        tags: dict[str, str] | None = None,
        message: str = "",
        workers: int | None = None,
    ) -> CreateResult:
        """Generate and register the next version of ``name``.

        Raises ValidationFailedError (with ``.result``) when the version was recorded
        as rejected.
        """
        check_name(name)
        source = str(spec) if isinstance(spec, (str, Path)) else "<spec>"
        resolved = _as_spec(spec)
        if seed is not None or rows or scale is not None:
            resolved = apply_overrides(resolved, seed=seed, rows=rows, scale=scale, source=source)
        return create_version(self.workspace, name, resolved, tags=tags, message=message, workers=workers)

    def list(self, tag: tuple[str, str] | None = None) -> list[dict[str, Any]]:
        """One summary per dataset."""
        with read_session(self.workspace.engine) as session:
            return list_datasets(session, tag)

    def show(self, ref: str) -> dict[str, Any]:
        """Everything recorded about a version."""
        with read_session(self.workspace.engine) as session:
            dataset, version = resolve(session, parse_ref(ref))
            info = describe_version(session, dataset, version)
        info["datacard"] = str(self.root / info["path"] / "datacard.md")
        info["mlflow_tracking_uri"] = self.workspace.settings.mlflow_tracking_uri
        return info

    def path(self, ref: str) -> Path:
        """The version directory of a ref."""
        with read_session(self.workspace.engine) as session:
            _, version = resolve(session, parse_ref(ref))
        return self.root / version.path

    def load(self, ref: str, table: str) -> pa.Table:
        """One table of a version, as a pyarrow Table."""
        import pyarrow.parquet as pq

        directory = self.path(ref) / "tables" / table
        if not directory.is_dir():
            tables = sorted(p.name for p in (directory.parent).glob("*") if p.is_dir())
            raise NotFoundError(f"{ref} has no table {table!r}; tables: {', '.join(tables) or 'none'}")
        return pq.read_table(sorted(directory.glob("part-*.parquet")))

    def materialize(self, version_dir: str | Path) -> str:
        """Regenerate a version's tables from its frozen spec (the DVC stage command)."""
        directory = Path(version_dir).resolve()
        manifest = json.loads((directory / "manifest.json").read_text())
        spec = load_spec(directory / "spec.yaml")
        tables = directory / "tables"
        shutil.rmtree(tables, ignore_errors=True)
        result = generate(spec, directory)
        if result.content_digest != manifest["content_digest"]:
            raise ConflictError(
                f"regenerated {directory} has digest {result.content_digest}, not "
                f"{manifest['content_digest']}: the engine version differs; use 'dvc pull' instead"
            )
        return result.content_digest


def _as_spec(spec: str | Path | Spec | dict[str, Any]) -> Spec:
    if isinstance(spec, Spec):
        return spec
    if isinstance(spec, dict):
        return parse_spec(spec, "<spec>")
    return load_spec(spec)
