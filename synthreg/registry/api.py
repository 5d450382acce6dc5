"""The Python API: ``synthreg.open(path)`` returns a Registry. The CLI is a thin layer on it."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import pyarrow as pa

from synthreg.errors import NotFoundError
from synthreg.generators.spec import Spec
from synthreg.generators.spec_io import apply_overrides, load_spec, parse_spec
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
    def init(
        cls,
        path: str | Path = ".",
        remote: str | None = None,
        *,
        db: str | None = None,
        endpoint: str | None = None,
        mlflow: str | None = None,
    ) -> Registry:
        """Make (or reopen) a workspace at ``path`` (team backends by URL: see ``registry init``)."""
        result = init_workspace(path, remote, db=db, endpoint=endpoint, mlflow=mlflow)
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
        story: Any = None,
        on_preflight: Any = None,
        llm_budget: dict[str, Any] | None = None,
        cluster: str | None = None,
    ) -> CreateResult:
        """Generate and register the next version of ``name``.

        Raises ValidationFailedError (with ``.result``) when the version was recorded
        as rejected. ``story`` is the draft the spec came from (``create --story``).
        """
        check_name(name)
        source = str(spec) if isinstance(spec, (str, Path)) else "<spec>"
        resolved = _as_spec(spec)
        if seed is not None or rows or scale is not None:
            resolved = apply_overrides(resolved, seed=seed, rows=rows, scale=scale, source=source)
        return create_version(
            self.workspace,
            name,
            resolved,
            tags=tags,
            message=message,
            workers=workers,
            story=story,
            on_preflight=on_preflight,
            llm_budget=llm_budget,
            cluster=cluster,
        )

    def list(self, tag: tuple[str, str] | None = None) -> list[dict[str, Any]]:
        """One summary per dataset."""
        with read_session(self.workspace.engine) as session:
            return list_datasets(session, tag)

    def show(self, ref: str) -> dict[str, Any]:
        """Everything recorded about a version."""
        with read_session(self.workspace.engine) as session:
            dataset, version = resolve(session, parse_ref(ref))
            info = describe_version(session, dataset, version)
            from synthreg.registry.compare import diffs_of

            info["diffs"] = diffs_of(session, dataset.name, version.number)
        info["datacard"] = str(self.root / info["path"] / "datacard.md")
        info["mlflow_tracking_uri"] = self.workspace.settings.mlflow_tracking_uri
        return info

    def path(self, ref: str) -> Path:
        """The version directory of a ref."""
        with read_session(self.workspace.engine) as session:
            _, version = resolve(session, parse_ref(ref))
        return self.root / version.path

    def load(self, ref: str, table: str) -> pa.Table:
        """One table of a version, as a pyarrow Table (pulled from the DVC remote if it is not here)."""
        import pyarrow.parquet as pq

        from synthreg.registry.checkout import ensure_local, read_manifest

        with read_session(self.workspace.engine) as session:
            _, version = resolve(session, parse_ref(ref))
        vdir = self.root / version.path
        tables = sorted({f["path"].split("/")[1] for f in read_manifest(vdir)["files"]})
        if table not in tables:
            raise NotFoundError(f"{ref} has no table {table!r}; tables: {', '.join(tables) or 'none'}")
        ensure_local(self.workspace, version, table)
        return pq.read_table(sorted((vdir / "tables" / table).glob("part-*.parquet")))

    def materialize(self, version_dir: str | Path) -> str:
        """Regenerate a version's tables from its frozen spec (the DVC stage command)."""
        from synthreg.registry.materialize import materialize_in_place

        return materialize_in_place(
            Path(version_dir) if Path(version_dir).is_absolute() else self.root / version_dir
        )

    # ------------------------------------------------------------ governance

    def rollback(self, name: str, to: int, *, reason: str = "", force: bool = False) -> Any:
        """Append a version with the content of ``name@v<to>``; ``current`` moves to it."""
        from synthreg.registry.rollback import rollback

        return rollback(self.workspace, name, to, reason=reason, force=force)

    def disable(
        self,
        ref: str,
        *,
        reason: str,
        table: str | None = None,
        ids: builtins.list[Any] | None = None,
        where: str | None = None,
    ) -> Any:
        """Append a version without some rows of ``table`` (by primary-key ids or a --where
        predicate) and every child row that references them."""
        from synthreg.registry.derive import disable

        return disable(
            self.workspace,
            ref,
            table=table,
            ids=None if ids is None else [str(i) for i in ids],
            where=where,
            reason=reason,
        )

    def diff(self, ref_a: str, ref_b: str, report: str | Path | None = None) -> dict[str, Any]:
        """Compare two versions (generation, schema, keyed rows, distributions, plots); stored."""
        from synthreg.registry.compare import diff

        return diff(self.workspace, ref_a, ref_b, Path(report) if report else None)

    def card(self, ref: str, fmt: str = "md") -> Any:
        """The version's DataCard as Markdown (str), JSON (dict) or Croissant JSON-LD (dict)."""
        from synthreg.datacards.card import render_markdown
        from synthreg.registry.cards import card_for

        with read_session(self.workspace.engine) as session:
            dataset, version = resolve(session, parse_ref(ref))
            data = card_for(self.workspace, session, dataset, version)
        if fmt == "json":
            return data
        if fmt == "croissant":
            from synthreg.datacards.croissant import to_croissant

            return to_croissant(data, self.root / version.path)
        return render_markdown(data)

    def checkout(self, ref: str, dest: str | Path | None = None) -> Any:
        """Make a version's files present (DVC cache, then remote); copy them to ``dest``."""
        from synthreg.registry.checkout import checkout

        return checkout(self.workspace, ref, Path(dest) if dest else None)

    def search(self, ref: str, query: str, where: str | None = None, limit: int = 20) -> dict[str, Any]:
        """Full-text search over a version's free text: hits with tags and provenance."""
        from synthreg.registry.search import search

        return search(self.workspace, ref, query, where, limit)

    def export(self, ref: str, fmt: str, dest: str | Path | None = None) -> Any:
        """Write a version as jsonl, csv or hf (``datasets.load_from_disk``) with its DataCard."""
        from synthreg.registry.export import export

        return export(self.workspace, ref, fmt, Path(dest) if dest else None)

    def alias(self, ref: str, alias: str) -> Any:
        """Point ``alias`` at a version."""
        from synthreg.registry.review import set_version_alias

        return set_version_alias(self.workspace, ref, alias)

    def review(
        self,
        ref: str,
        *,
        approve: bool,
        note: str = "",
        override_validation: bool = False,
        reason: str = "",
        four_eyes: bool | None = None,
    ) -> Any:
        """Approve or reject a version (a failed one only with ``override_validation`` and a reason;
        with ``four_eyes``, never by its author)."""
        from synthreg.registry.review import review

        return review(
            self.workspace,
            ref,
            approve=approve,
            note=note,
            override_validation=override_validation,
            reason=reason,
            four_eyes=four_eyes,
        )

    def use(self, ref: str, run_id: str, context: str = "training") -> Any:
        """Record that MLflow run ``run_id`` used a version (and log it as a dataset input)."""
        from synthreg.registry.usage import use

        return use(self.workspace, ref, run_id, context)

    def lineage(self, ref: str) -> dict[str, Any]:
        """Parents, children, generation run, consumers (registry and MLflow), models."""
        from synthreg.registry.usage import lineage

        return lineage(self.workspace, ref)

    def audit(self, dataset: str | None = None, since: str | None = None) -> builtins.list[dict[str, Any]]:
        """Audit events, oldest first."""
        from synthreg.registry.audit_log import audit_events

        with read_session(self.workspace.engine) as session:
            return audit_events(session, dataset, since)

    def audit_report(self, fmt: str = "md", dataset: str | None = None, since: str | None = None) -> str:
        """A readable audit document (Markdown or self-contained HTML)."""
        from synthreg.errors import VerificationError
        from synthreg.registry.audit import head_hash
        from synthreg.registry.audit_log import audit_events, audit_report

        try:
            self.verify_audit()
            intact = True
        except VerificationError:
            intact = False
        with read_session(self.workspace.engine) as session:
            events = audit_events(session, dataset, since)
            return audit_report(session, events, fmt, head_hash(session), intact)

    def verify(self, ref: str, *, rebuild: bool = False) -> Any:
        """Recompute hashes (and optionally rebuild) and compare with what was recorded."""
        from synthreg.registry.verify import verify_version

        return verify_version(self.workspace, ref, rebuild=rebuild)

    def verify_audit(self) -> Any:
        """Check the audit chain and its anchors in git."""
        from synthreg.registry.audit_verify import verify_audit

        return verify_audit(self.workspace)

    def doctor(self, *, repair: bool = False, rebuild: bool = False) -> Any:
        """Check that DB, files, DVC and git agree; optionally repair or rebuild the DB."""
        from synthreg.registry.doctor import doctor

        return doctor(self.workspace, repair=repair, rebuild=rebuild)


def _as_spec(spec: str | Path | Spec | dict[str, Any]) -> Spec:
    if isinstance(spec, Spec):
        return spec
    if isinstance(spec, dict):
        return parse_spec(spec, "<spec>")
    return load_spec(spec)
