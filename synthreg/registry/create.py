"""``registry create``: spec -> generated, validated, carded, tracked, logged version.

Generation and validation run first, into a staging directory, without any lock;
then :func:`synthreg.registry.publish.publish` appends the version (number, card,
manifest, DVC, MLflow, git, DB) or leaves no trace of it.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import synthreg
from synthreg import env
from synthreg.errors import ValidationFailedError
from synthreg.generators.engine import ENGINE_MODEL, GenerationResult, generate
from synthreg.generators.spec import Spec
from synthreg.registry.facts import file_facts
from synthreg.registry.policy import check_rule
from synthreg.registry.publish import Candidate, Clock, VersionResult, publish
from synthreg.registry.refs import check_name
from synthreg.registry.store import utcnow
from synthreg.registry.workspace import Workspace
from synthreg.validators.quality import quality_metrics
from synthreg.validators.report import render_validation_report
from synthreg.validators.suite import validate_tables

__all__ = ["CreateResult", "create_version", "raise_if_rejected"]

CreateResult = VersionResult


def create_version(
    ws: Workspace,
    name: str,
    spec: Spec,
    *,
    tags: dict[str, str] | None = None,
    message: str = "",
    workers: int | None = None,
    story: Any = None,
) -> VersionResult:
    """Generate ``spec`` and register it as the next version of ``name``.

    ``story`` is the StoryResult the spec was drafted from (``create --story``): its
    prompt, answering model and call keys are recorded, and its calls are exported to the
    version (``llm_calls.jsonl``) so the draft can be replayed.
    """
    check_name(name)
    check_rule(ws.settings.auto_approve)  # a broken policy is reported before anything is generated
    clock = Clock()
    staging = ws.settings.state_dir / "staging" / uuid.uuid4().hex
    try:
        parent = _parent_dir(ws, name) if ws.settings.max_drift is not None else None
        cand = _stage(staging, name, spec, clock, workers, parent, ws.settings.max_drift)
        if story is not None:
            _record_story(ws, cand, story)
        cand.tags, cand.message = dict(tags or {}), message
        result = publish(ws, cand, clock)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    raise_if_rejected(result)
    return result


def raise_if_rejected(result: VersionResult) -> None:
    """A rejected version is recorded, and the caller is told with ValidationFailedError."""
    if result.status == "rejected":
        raise ValidationFailedError(
            f"{result.dataset}@v{result.version} failed validation ({result.validation['failed']} of "
            f"{result.validation['evaluated']} checks): it is recorded as rejected; see "
            f"{result.path}/validation.json",
            result=result,
        )


def _card_inputs(staging: Path, spec: Spec) -> None:
    """What the DataCard shows besides recorded facts: distribution plots and a PII scan."""
    from synthreg.datacards.pii import scan
    from synthreg.datacards.plots import table_plots

    table_plots(staging, spec, staging / "plots", max_per_table=4)
    (staging / "pii.json").write_text(json.dumps(scan(staging, spec), indent=2) + "\n")


def _with_drift(
    validation: dict[str, Any], spec: Spec, staging: Path, parent: Path, tol: float
) -> dict[str, Any]:
    """Add drift-against-parent checks to the validation results (they count like any check)."""
    from synthreg.validators.rules import drift_checks

    extra = [dataclasses.asdict(c) for c in drift_checks(spec, staging / "tables", parent / "tables", tol)]
    checks = [*validation["checks"], *extra]
    failed = sum(not c["success"] for c in checks)
    return {
        **validation,
        "checks": checks,
        "evaluated": len(checks),
        "failed": failed,
        "success": failed == 0,
        "success_ratio": (len(checks) - failed) / len(checks) if checks else 1.0,
    }


def _record_story(ws: Workspace, cand: Candidate, story: Any) -> None:
    """Prompt = the story and rendered prompts; model = the model that answered; the calls' slice."""
    from synthreg.registry.story import export_calls

    export_calls(ws, list(story.call_keys), cand.staging / "llm_calls.jsonl")
    assert cand.generation is not None
    cand.generation.update(
        prompt=story.prompt,
        llm_model=story.model_answered,
        llm_call_keys=list(story.call_keys),
        llm_steps=story.to_dict().get("steps"),
    )


def _parent_dir(ws: Workspace, name: str) -> Path | None:
    """The current version's directory: what a new version's drift is measured against."""
    from synthreg.errors import NotFoundError
    from synthreg.registry.query import resolve
    from synthreg.registry.refs import Ref
    from synthreg.registry.store import read_session

    try:
        with read_session(ws.engine) as session:
            _, version = resolve(session, Ref(name, alias="current"))
    except NotFoundError:
        return None
    path = ws.root / version.path
    return path if (path / "tables").is_dir() else None


def _stage(
    staging: Any,
    name: str,
    spec: Spec,
    clock: Clock,
    workers: int | None,
    parent_dir: Path | None = None,
    max_drift: float | None = None,
) -> Candidate:
    started_at = utcnow()
    staging.mkdir(parents=True)
    spec_text = spec.frozen_yaml()
    (staging / "spec.yaml").write_text(spec_text, encoding="utf-8")
    gen: GenerationResult = clock("generate", lambda: generate(spec, staging, workers=workers))
    rows_by_file = {p: t.rows for t in gen.tables.values() for p in t.files}
    files = clock("hash", lambda: file_facts(staging, rows_by_file))
    validation = clock("validate", lambda: validate_tables(spec, staging / "tables")).to_dict()
    if parent_dir is not None and max_drift is not None:
        validation = clock("drift", lambda: _with_drift(validation, spec, staging, parent_dir, max_drift))
    (staging / "validation.json").write_text(json.dumps(validation, indent=2) + "\n")
    quality = clock("quality", lambda: quality_metrics(spec, staging / "tables", validation))
    (staging / "quality.json").write_text(json.dumps(quality, indent=2) + "\n")
    (staging / "validation.html").write_text(
        render_validation_report(f"{name}: validation", validation, quality), encoding="utf-8"
    )
    clock("card", lambda: _card_inputs(staging, spec))
    total = sum(gen.rows.values())
    model = f"{ENGINE_MODEL}/{synthreg.__version__}"
    generation = {
        "model": model,
        "prompt_sha256": spec.sha256(),
        "started_at": started_at.isoformat(),
        "seconds": gen.seconds,
        "rows_per_s": total / gen.seconds if gen.seconds else 0.0,
        "user": env.actor(),
    }
    return Candidate(
        name=name,
        action="create",
        staging=staging,
        spec=spec,
        spec_text=spec_text,
        content_digest=gen.content_digest,
        rows=gen.rows,
        table_digests={n: t.digest for n, t in gen.tables.items()},
        files=files,
        validation=validation,
        model=model,
        params={"rows": gen.rows, **gen.params},
        generation=generation,
        quality=quality,
    )
