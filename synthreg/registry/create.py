"""``registry create``: spec -> generated, validated, carded, tracked, logged version.

Generation and validation run first, into a staging directory, without any lock;
then :func:`synthreg.registry.publish.publish` appends the version (number, card,
manifest, DVC, MLflow, git, DB) or leaves no trace of it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import synthreg
from synthreg import env
from synthreg.compute.dask import remote
from synthreg.digest import combine_digests
from synthreg.errors import ValidationFailedError
from synthreg.generators.engine import (
    ENGINE_MODEL,
    GenerationResult,
    Observers,
    TableResult,
    default_workers,
    filled_later,
    generate,
    observed_by,
)
from synthreg.generators.llm.callstore import public_api_base
from synthreg.generators.sampling import Drawn, SampleRequest
from synthreg.generators.spec import Spec
from synthreg.generators.staging import STAGING_PREFIX, PartStage, s3_region
from synthreg.integrations import dvc
from synthreg.registry import sidecar
from synthreg.registry.facts import file_facts, known_md5
from synthreg.registry.llm_tables import (
    CURATION_VERSION,
    LlmTables,
    check_models_reachable,
    file_sha256,
    make_llm_data,
)
from synthreg.registry.policy import check_rule
from synthreg.registry.publish import Candidate, Clock, VersionResult, publish
from synthreg.registry.refs import check_name
from synthreg.registry.store import utcnow
from synthreg.registry.story import export_calls, gateway_for
from synthreg.registry.text_monitor import cache_dir_of, with_semantic
from synthreg.registry.workspace import Workspace
from synthreg.validators.fused import PartValidator
from synthreg.validators.parts import lean_memory, release_unused
from synthreg.validators.quality import score_quality, table_quality
from synthreg.validators.quality_parts import QualityObserver
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
    on_preflight: Any = None,
    llm_budget: dict[str, Any] | None = None,
    cluster: str | None = None,
) -> VersionResult:
    """Generate ``spec`` and register it as the next version of ``name``.

    ``cluster`` (or ``[compute] scheduler``) runs the engine's segments on a Dask cluster
    (``tcp://HOST:PORT`` or ``local:N``) instead of the local process pool; the data is the same.

    ``on_preflight`` (a callable) receives the LLM cost estimate before any call is made,
    when the spec has LLM tables or ``llm_text`` columns (after the engine: column prompts
    read the generated rows). ``story`` is the StoryResult the spec was drafted from
    (``create --story``): its prompt, answering model and call keys are recorded, and its
    calls are exported to the version (``llm_calls.jsonl``) so the draft can be replayed.
    Tables with ``llm`` are made, and ``llm_text`` columns filled, through the configured LLM
    after the engine; their calls join that slice.
    """
    check_name(name)
    cluster = cluster or ws.settings.compute_scheduler
    if cluster:
        from synthreg.compute.dask import check_cluster

        check_cluster(cluster)  # a bad --cluster is refused before anything is generated
    check_rule(ws.settings.auto_approve)  # a broken policy is reported before anything is generated
    if any(t.expectations for t in spec.tables.values()):  # a bad one is refused before generating
        from synthreg.validators.plan import user_expectations

        user_expectations(spec, spec.source)
    if spec.uses_llm() and ws.settings.llm.model:  # an unreachable model is refused before any call
        check_models_reachable(spec, ws.settings.llm)
    gateway = gateway_for(ws, **(llm_budget or {})) if spec.uses_llm() else None  # no model: fails here
    make_llm = None if gateway is None else _llm_maker(gateway, ws.settings.llm.api_base, on_preflight)
    clock = Clock()
    staging = ws.settings.state_dir / "staging" / uuid.uuid4().hex
    # The helpers import GX (and MLflow) while the engine runs.
    helper = sidecar.start(ws.settings.mlflow_tracking_uri, rows=spec.total_rows)
    stage: PartStage | None = None
    try:
        workers = _engine_workers(spec, workers, cluster, helper)
        parent = _parent_dir(ws, name) if ws.settings.max_drift is not None else None
        stage = _part_stage(ws, cluster, staging)
        cand = _stage(
            staging,
            name,
            spec,
            clock,
            workers,
            parent,
            ws.settings.max_drift,
            make_llm,
            cluster,
            helper,
            stage,
        )
        if story is not None:
            _record_story(cand, story)
        _export_calls(ws, cand)
        cand.tags, cand.message = dict(tags or {}), message
        result = publish(ws, cand, clock)
    finally:
        if stage is not None:  # also when the create failed before its quality step
            _clear_hot(None, _quality_stage(stage))
        if helper is not None:
            helper.close()
        if gateway is not None:
            gateway.store.close()
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


def _part_stage(ws: Workspace, cluster: str | None, staging: Path) -> PartStage | None:
    """Where a remote cluster's tasks put their parts: beside the workspace's S3 remote
    (``<remote>/synthreg-staging/<staging id>``), since its workers may share no folder with this
    machine; the checked parts are then copied into the remote within S3, so DVC's push finds
    them there; None for a ``local:N`` cluster, the pool, or a remote that is not S3 (then the
    workers must see this machine's staging folder, as before)."""
    url, endpoint = ws.settings.dvc_url, ws.settings.dvc_endpoint
    if not cluster or cluster.startswith("local:") or not url.startswith("s3://"):
        return None
    region = s3_region(url, endpoint)
    # the checked parts are copied into the remote only when DVC's own settings for it are the
    # workspace's and ask for nothing a copy outside DVC would miss (encryption, ACLs, layouts)
    remote = url if dvc.plain_s3_remote(ws.root) == (url, endpoint) else None
    return PartStage(f"{url.rstrip('/')}/{STAGING_PREFIX}/{staging.name}", endpoint, region, remote=remote)


#: Plots per table on the card.
CARD_PLOTS = 4


def _card_samples(spec: Spec) -> tuple[SampleRequest, ...]:
    """The rows the card's plots and PII scan read, for the engine's workers to take as they write
    (a 10M-row table's columns are then not decoded again to find 200,000 rows). Not for tables
    whose parts change after the engine: ``llm_text`` columns are filled in later."""
    from synthreg.datacards import pii, plots

    later = filled_later(spec)
    requests = [*plots.sample_requests(spec, CARD_PLOTS), *pii.sample_requests(spec)]
    return tuple(r for r in requests if r.table not in later)


def _card_inputs(staging: Path, spec: Spec, drawn: Drawn | None = None) -> None:
    """What the DataCard shows besides recorded facts: distribution plots and a PII scan."""
    from synthreg.datacards.pii import scan
    from synthreg.datacards.plots import table_plots

    table_plots(staging, spec, staging / "plots", max_per_table=CARD_PLOTS, drawn=drawn)
    (staging / "pii.json").write_text(json.dumps(scan(staging, spec, drawn=drawn), indent=2) + "\n")


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


def _llm_maker(
    gateway: Any, api_base: str | None, on_preflight: Any
) -> Callable[[Spec, Path, dict[str, TableResult]], LlmTables]:
    """Makes a spec's LLM tables and columns through the workspace gateway (``[llm]`` settings)."""
    return lambda spec, out_dir, engine: make_llm_data(spec, gateway, api_base, out_dir, engine, on_preflight)


def _record_story(cand: Candidate, story: Any) -> None:
    """Prompt = the story and rendered prompts; model = the model that answered; the story's calls
    come first in the version's slice (``_export_calls``)."""
    assert cand.generation is not None
    tables_keys = cand.generation.get("llm_call_keys", [])
    cand.generation.update(
        prompt=story.prompt,
        llm_model=story.model_answered,
        llm_call_keys=list(dict.fromkeys([*story.call_keys, *tables_keys])),
        llm_steps=story.to_dict().get("steps"),
    )


def _export_calls(ws: Workspace, cand: Candidate) -> None:
    """The version's slice of the call store (``llm_calls.jsonl``): every recorded call it used, once."""
    keys = (cand.generation or {}).get("llm_call_keys")
    if keys is not None:  # an LLM spec always has its slice, even an empty one (nothing to call)
        export_calls(ws, list(keys), cand.staging / "llm_calls.jsonl")
        assert cand.generation is not None
        cand.generation["llm_calls_sha256"] = file_sha256(cand.staging / "llm_calls.jsonl")


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
    make_llm: Callable[[Spec, Path, dict[str, TableResult]], LlmTables] | None = None,
    cluster: str | None = None,
    helper: sidecar.Sidecar | None = None,
    stage: PartStage | None = None,
) -> Candidate:
    started_at = utcnow()
    staging.mkdir(parents=True)
    spec_text = spec.frozen_yaml()
    (staging / "spec.yaml").write_text(spec_text, encoding="utf-8")
    # On a remote cluster, each generation task also takes its part's quality counts (and, see
    # _part_validator, runs its per-row expectations) while the part is hot; the counts' hashes
    # go to a folder the workers and this process see, or with parts staged in S3 beside them.
    checks_on = cluster if remote(cluster) and stage is None else None
    hot = staging / ".quality" if checks_on else None
    hot_stage = _quality_stage(stage) if stage else None
    quality_observer = QualityObserver(spec, hot, hot_stage) if hot or hot_stage else None
    validator = _part_validator(spec, workers, cluster)
    observe = Observers(validator, quality_observer) if quality_observer else validator
    samples = _card_samples(spec)
    gen: GenerationResult = clock(
        "generate",
        lambda: generate(
            spec, staging, workers=workers, cluster=cluster, observe=observe, stage=stage, samples=samples
        ),
    )
    observed = observed_by(gen.observed, 0) if quality_observer else gen.observed
    llm = clock("llm", lambda: make_llm(spec, staging, gen.tables)) if make_llm else LlmTables({}, [])
    made: dict[str, TableResult] = {**gen.tables, **llm.tables}
    tables = {n: made[n] for n in spec.table_order()}
    rows = {n: t.rows for n, t in tables.items()}
    rows_by_file = {p: t.rows for t in tables.values() for p in t.files}
    hashed = {p: h for t in tables.values() for p, h in zip(t.files, t.hashes, strict=False)}
    files = clock("hash", lambda: file_facts(staging, rows_by_file, hashed))
    # The helper validates (GX) while this process measures quality and draws the card's plots;
    # on a remote cluster whose workers wrote the parts here, the checks by buckets and the
    # quality counts run there (part by part: this process does not read the tables for them).
    pending = helper.validate(spec, staging / "tables", spec.source, observed, checks_on) if helper else None
    with lean_memory(spec):
        try:
            quality_tables = clock(
                "quality",
                lambda: table_quality(
                    spec,
                    staging / "tables",
                    cluster if remote(cluster) else None,
                    observed=observed_by(gen.observed, 1) if quality_observer else None,
                    stage=hot_stage,
                ),
            )
        finally:
            _clear_hot(hot, hot_stage)
        clock("card", lambda: _card_inputs(staging, spec, gen.samples))
    release_unused()  # this process waits for the helper from here: hold no more than it needs
    # text monitor (issue 15): semantic figures and plots of free-text columns; no-op without text
    cache = cache_dir_of(staging.parents[1])  # staging is <state_dir>/staging/<id>
    semantic = clock("semantic", lambda: with_semantic({}, spec, staging, cache))
    validation = clock("validate", lambda: _validation(spec, staging, pending, clock, observed, checks_on))
    if parent_dir is not None and max_drift is not None:
        validation = clock("drift", lambda: _with_drift(validation, spec, staging, parent_dir, max_drift))
    (staging / "validation.json").write_text(json.dumps(validation, indent=2) + "\n")
    quality = {**score_quality(quality_tables, validation), **semantic}
    (staging / "quality.json").write_text(json.dumps(quality, indent=2) + "\n")
    (staging / "validation.html").write_text(
        render_validation_report(f"{name}: validation", validation, quality, staging), encoding="utf-8"
    )
    total = sum(gen.rows.values())
    model = f"{ENGINE_MODEL}/{synthreg.__version__}"
    generation: dict[str, Any] = {
        "model": model,
        "prompt_sha256": spec.sha256(),
        "started_at": started_at.isoformat(),
        "seconds": gen.seconds,
        "rows_per_s": total / gen.seconds if gen.seconds else 0.0,
        "user": env.actor(),
    }
    if make_llm is not None:  # a rebuild replays the calls (even none), following the same fallbacks
        generation.update(
            llm_call_keys=llm.call_keys,
            llm_api_base=public_api_base(llm.api_base),  # the keys hold only the endpoint
            llm_fallbacks=list(llm.fallbacks),
            **({"llm_curation": CURATION_VERSION} if spec.llm_tables() else {}),
        )
    return Candidate(
        name=name,
        action="create",
        staging=staging,
        spec=spec,
        spec_text=spec_text,
        content_digest=combine_digests({n: t.digest for n, t in tables.items()}),
        rows=rows,
        table_digests={n: t.digest for n, t in tables.items()},
        files=files,
        validation=validation,
        model=model,
        params={"rows": rows, **gen.params},
        generation=generation,
        quality=quality,
        sidecar=helper,
        md5=known_md5(staging, hashed),
    )


def _quality_stage(stage: PartStage) -> PartStage:
    """Where the generation tasks put their quality splits beside staged parts: a sibling of the
    stage (``<staging id>-quality``), which the engine's clearing of the stage leaves alone."""
    return dataclasses.replace(stage, url=f"{stage.url}-quality", remote=None)


def _clear_hot(hot: Path | None, hot_stage: PartStage | None) -> None:
    """Remove the generation tasks' quality splits (not part of the version)."""
    if hot is not None:
        shutil.rmtree(hot, ignore_errors=True)
    if hot_stage is not None:
        try:
            hot_stage.clear()
        except Exception as exc:  # the create's own result or error is not lost to it
            print(f"warning: quality splits left at {hot_stage.url}: {exc}", file=sys.stderr)


def _validation(
    spec: Spec,
    staging: Path,
    pending: Any,
    clock: Clock,
    from_parts: dict[str, Any],
    cluster: str | None = None,
) -> dict[str, Any]:
    """The helper's validation; or this process's, which also raises what the helper hit."""
    done = sidecar.Sidecar.validation(pending) if pending is not None else None
    if done is not None:
        clock.timings["validate.sidecar"] = done[1]
        return done[0]
    tables = staging / "tables"
    return validate_tables(spec, tables, source=spec.source, from_parts=from_parts, cluster=cluster).to_dict()


def _engine_workers(
    spec: Spec, workers: int | None, cluster: str | None, helper: sidecar.Sidecar | None
) -> int | None:
    """The engine's pool size: ``workers`` as asked (``--workers``, ``$SYNTHREG_WORKERS``, a
    cluster's sizing); else, while the sidecar's helpers import their libraries, one core fewer
    for specs of at most ``SHARED_CORE_MAX_ROWS`` rows (1 on 2 cores: a pool worker's start-up costs
    more than it gains on a core the helpers use); else None (every core). The data and its digest
    are the same for any number of workers."""
    if workers is not None or cluster or os.environ.get(env.WORKERS) or helper is None:
        return workers
    if not helper.importing or spec.total_rows > sidecar.SHARED_CORE_MAX_ROWS:
        return None
    return max(1, default_workers() - 1)


def _part_validator(spec: Spec, workers: int | None, cluster: str | None) -> PartValidator | None:
    """The per-row expectations in the generation workers (``SYNTHREG_FUSED``), when worth it: on
    a remote Dask cluster (long-lived workers import Great Expectations once, and the client need
    not read every part), or with 4+ pool workers in a process that already imported it (the
    warm server; they inherit it). Not on 2 cores: generation already keeps both busy. Not on a
    ``local:N`` cluster: its fresh workers would each import GX for this one command (fitness
    with local:2: 11.1 s against 6.2-8.0 s without, measured)."""
    import sys

    setting = os.environ.get(env.FUSED, "")
    if setting == "0":
        return None
    if setting != "1":
        count = workers if workers is not None else default_workers()
        pool = not cluster and count >= 4 and "great_expectations" in sys.modules
        if not (remote(cluster) or pool):
            return None
    return PartValidator(spec, spec.source)
