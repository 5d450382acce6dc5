"""Read side: resolve refs, list datasets, describe versions."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from synthreg.errors import NotFoundError, VersionNotFoundError
from synthreg.registry.refs import Ref
from synthreg.registry.store import Alias, Dataset, GenerationRun, Version

__all__ = ["aliases_of", "describe_version", "frozen_spec", "list_datasets", "resolve"]

# A story version's prompt: "# story\n<story>", then each call's prompt ("# story.tables gen (template ...")
_STORY_PROMPT = re.compile(r"\A# story\n(.*?)(?:\n\n# story\.\w+ \S+ \(template |\Z)", re.S)


def _versions(session: Session, dataset: Dataset) -> list[Version]:
    stmt = select(Version).where(Version.dataset_id == dataset.id).order_by(Version.number)  # type: ignore[arg-type]
    return list(session.exec(stmt))


def aliases_of(session: Session, dataset: Dataset) -> dict[str, int]:
    """alias -> version number."""
    return _aliases(session, dataset)


def _aliases(session: Session, dataset: Dataset) -> dict[str, int]:
    rows = session.exec(select(Alias).where(Alias.dataset_id == dataset.id))
    return {a.name: a.version for a in rows}


def _dataset(session: Session, name: str) -> Dataset:
    dataset = session.exec(select(Dataset).where(Dataset.name == name)).first()
    if dataset is None:
        names = [d.name for d in session.exec(select(Dataset).order_by(Dataset.name))]
        known = ", ".join(names) if names else "none yet: run 'registry create'"
        raise NotFoundError(f"no dataset named {name!r}; datasets: {known}")
    return dataset


def resolve(session: Session, ref: Ref) -> tuple[Dataset, Version]:
    """The dataset and version a ref points at, or NotFoundError listing what exists."""
    dataset = _dataset(session, ref.name)
    versions = _versions(session, dataset)
    listing = ", ".join(f"v{v.number} ({v.status})" for v in versions) or "none"
    number = ref.version
    if number is None:
        aliases = _aliases(session, dataset)
        if ref.alias not in aliases:
            hint = " (no approved version yet)" if ref.alias == "current" else ""
            raise VersionNotFoundError(
                f"{ref} does not exist{hint}; versions: {listing}; "
                f"aliases: {', '.join(f'{k}=v{v}' for k, v in aliases.items()) or 'none'}"
            )
        number = aliases[ref.alias]  # type: ignore[index]
    for version in versions:
        if version.number == number:
            return dataset, version
    raise VersionNotFoundError(f"{ref.name}@v{number} does not exist; versions: {listing}")


def list_datasets(session: Session, tag: tuple[str, str] | None = None) -> list[dict[str, Any]]:
    """One summary per dataset (optionally only those with a version tagged K=V)."""
    out = []
    for dataset in session.exec(select(Dataset).order_by(Dataset.name)):
        versions = _versions(session, dataset)
        if tag and not any((v.tags or {}).get(tag[0]) == tag[1] for v in versions):
            continue
        aliases = _aliases(session, dataset)
        latest = versions[-1] if versions else None
        out.append(
            {
                "dataset": dataset.name,
                "description": dataset.description,
                "versions": len(versions),
                "latest": latest.number if latest else None,
                "latest_status": latest.status if latest else None,
                "current": aliases.get("current"),
                "aliases": aliases,
                "rows": latest.rows if latest else {},
                "updated_at": latest.created_at.isoformat() if latest else None,
            }
        )
    return out


def describe_version(session: Session, dataset: Dataset, version: Version) -> dict[str, Any]:
    """Everything ``registry show`` prints for a version."""
    run = session.exec(select(GenerationRun).where(GenerationRun.version_id == version.id)).first()
    aliases = [k for k, v in _aliases(session, dataset).items() if v == version.number]
    return {
        "dataset": dataset.name,
        "version": version.number,
        "ref": f"{dataset.name}@v{version.number}",
        "status": version.status,
        "aliases": aliases,
        "content_digest": version.content_digest,
        "spec_sha256": version.spec_sha256,
        "seed": version.seed,
        "rows": version.rows,
        "total_rows": version.total_rows,
        "path": version.path,
        "parent": version.parent,
        "restored_from": version.restored_from,
        "derived_from": version.derived_from,
        "created_at": version.created_at.isoformat(),
        "created_by": version.created_by,
        "message": version.message,
        "tags": version.tags or {},
        "git_commit": version.git_commit,
        "dvc_md5": version.dvc_md5,
        "mlflow_run_id": version.mlflow_run_id,
        "quality": version.quality,
        "validation": {
            k: (version.validation or {}).get(k)
            for k in ("success", "evaluated", "failed", "engine", "override")
        },
        "generation": None
        if run is None
        else {
            "model": run.model,
            "seed": run.seed,
            "params": run.params,
            "seconds": run.seconds,
            "rows_per_s": run.rows_per_s,
            "peak_rss_mb": run.peak_rss_mb,
            "user": run.user,
            "host": run.host,
            "timings": run.timings,
            "libraries": run.libraries,
            "synthreg_version": run.synthreg_version,
        },
        "files": run.files if run else [],
        "versions": [
            {"version": v.number, "status": v.status, "created_at": v.created_at.isoformat()}
            for v in _versions(session, dataset)
        ],
    }


def frozen_spec(version_dir: Path) -> dict[str, str | None]:
    """What a version was made from, read from its directory: ``spec_yaml`` (the frozen
    ``spec.yaml``) and ``story`` (the plain-language story, for a version made with
    ``create --story``; None otherwise). A file that is missing gives None."""
    spec_path = version_dir / "spec.yaml"
    spec_yaml = spec_path.read_text(encoding="utf-8") if spec_path.is_file() else None
    return {"story": _story(version_dir / "manifest.json"), "spec_yaml": spec_yaml}


def _story(manifest_path: Path) -> str | None:
    """The story of a story version: its manifest's ``generation`` has the draft's ``llm_steps``
    and a prompt that starts with the story (``registry.create._record_story``)."""
    if not manifest_path.is_file():
        return None
    generation = json.loads(manifest_path.read_text(encoding="utf-8")).get("generation") or {}
    prompt = generation.get("prompt")
    if not generation.get("llm_steps") or not isinstance(prompt, str):
        return None
    found = _STORY_PROMPT.match(prompt)
    return found.group(1) if found else None
