"""``registry serve``: the registry as a REST service (FastAPI), the same operations as the CLI.

Every route under ``/api/`` needs a bearer token (``registry token create``): 401 without a valid
one; 403 when its role is below the route's; 404 for a dataset the token may not see, exactly as
for one that does not exist, so a scoped token learns nothing about the others. Writes are
recorded with the token's user as the audit actor, and four eyes is on: the author of a version
cannot approve it. Tokens are never logged: uvicorn's access log shows paths, not headers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from synthreg import env
from synthreg.errors import (
    ConflictError,
    IntegrationError,
    NotFoundError,
    SynthregError,
    UsageError,
    ValidationFailedError,
)
from synthreg.registry.api import Registry
from synthreg.registry.refs import check_name
from synthreg.registry.tokens import Identity, authenticate
from synthreg.service.access import allowed, dataset_of, jobs_of, registry_of
from synthreg.service.jobs import JobQueue

__all__ = ["create_app"]

_STATUS = {NotFoundError: 404, ConflictError: 409, ValidationFailedError: 422, UsageError: 400}


def _http_status(exc: SynthregError) -> int:
    for kind, code in _STATUS.items():
        if isinstance(exc, kind):
            return code
    return 502 if isinstance(exc, IntegrationError) else 500


class CreateBody(BaseModel):
    """A version to make: the spec as YAML text, and the CLI's options."""

    spec: str = Field(max_length=1_000_000)
    seed: int | None = None
    message: str = Field(default="", max_length=10_000)
    tags: dict[str, str] = Field(default_factory=dict)


class ReviewBody(BaseModel):
    approve: bool
    note: str = Field(default="", max_length=10_000)


class AliasBody(BaseModel):
    alias: str = Field(max_length=64)


class RollbackBody(BaseModel):
    to: int = Field(ge=1)
    reason: str = Field(default="", max_length=10_000)
    force: bool = False


class DisableBody(BaseModel):
    table: str = Field(max_length=128)
    where: str | None = Field(default=None, max_length=10_000)
    ids: list[str] | None = Field(default=None, max_length=1_000_000)
    reason: str = Field(max_length=10_000)


class UseBody(BaseModel):
    run_id: str = Field(max_length=64)
    context: str = Field(default="training", max_length=64)


class TokenBody(BaseModel):
    user: str = Field(max_length=64)
    role: str = Field(max_length=16)
    dataset: str | None = Field(default=None, max_length=64)


def _identity(request: Request) -> Identity:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    who = authenticate(registry_of(request).workspace, token.strip()) if scheme.lower() == "bearer" else None
    if who is None:
        raise HTTPException(
            401,
            "a valid token is needed: Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return who


Who = Annotated[Identity, Depends(_identity)]
Reg = Annotated[Registry, Depends(registry_of)]
Jobs = Annotated[JobQueue, Depends(jobs_of)]


def write(who: Identity, fn: Callable[[], Any]) -> dict[str, Any]:
    """Run a write as ``who`` (the audit actor); its result as JSON."""
    with env.acting_as(who.user):
        result = fn()
    data = result.to_dict() if hasattr(result, "to_dict") else result
    return dict(data)


reads = APIRouter()
writes = APIRouter()
admin = APIRouter()


# ---------------------------------------------------------------- health and reads


@reads.get("/healthz", response_class=PlainTextResponse)
def healthz(registry: Reg) -> str:
    registry.list()  # the metadata DB answers
    return "ok"


@reads.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request) -> Response:
    """Prometheus text; no token needed (no dataset names or refs are labels)."""
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@reads.get("/api/datasets")
def list_datasets(who: Who, registry: Reg, tag: str | None = None) -> list[dict[str, Any]]:
    allowed(who, "viewer", None)
    pair = tuple(tag.split("=", 1)) if tag and "=" in tag else None
    return [d for d in registry.list(pair) if who.may_see(d["dataset"])]  # type: ignore[arg-type]


@reads.get("/api/versions/{ref}")
def show(ref: str, who: Who, registry: Reg) -> dict[str, Any]:
    allowed(who, "viewer", dataset_of(ref))
    return registry.show(ref)


@reads.get("/api/versions/{ref}/card")
def card(
    ref: str, who: Who, registry: Reg, format: str = Query("json", pattern="^(md|json|croissant)$")
) -> Any:
    allowed(who, "viewer", dataset_of(ref))
    data = registry.card(ref, format)
    return PlainTextResponse(data) if format == "md" else data


@reads.get("/api/versions/{ref}/lineage")
def lineage(ref: str, who: Who, registry: Reg) -> dict[str, Any]:
    allowed(who, "viewer", dataset_of(ref))
    return registry.lineage(ref)


@reads.get("/api/versions/{ref}/preview")
def preview(
    ref: str,
    who: Who,
    registry: Reg,
    table: str = Query(max_length=128),
    offset: int = Query(0, ge=0, le=10**12),
    limit: int = Query(50, ge=1, le=500),
) -> dict[str, Any]:
    allowed(who, "viewer", dataset_of(ref))
    from synthreg.service.preview import page

    return page(registry, ref, table, offset, limit)


@reads.get("/api/audit")
def audit(
    who: Who, registry: Reg, dataset: str | None = None, since: str | None = None
) -> list[dict[str, Any]]:
    if dataset is not None:
        check_name(dataset)
    allowed(who, "viewer", dataset)
    scope = dataset or who.dataset
    events = registry.audit(scope, since)
    return [e for e in events if who.dataset is None or e.get("dataset") == who.dataset]


# ---------------------------------------------------------------- writes


@writes.post("/api/datasets/{name}/versions", status_code=202)
def create(name: str, body: CreateBody, who: Who, jobs: Jobs) -> dict[str, Any]:
    check_name(name)
    allowed(who, "editor", name)
    options = [] if body.seed is None else ["--seed", str(body.seed)]
    options += ["--message", body.message] if body.message else []
    for key, value in body.tags.items():
        options += ["--tag", f"{key}={value}"]
    return jobs.submit(name, who.user, body.spec, options).to_dict()


@writes.get("/api/jobs/{job_id}")
def job(job_id: str, who: Who, jobs: Jobs) -> dict[str, Any]:
    found = jobs.get(job_id)
    if found is None or not who.may_see(found.dataset):
        raise HTTPException(404, f"no job {job_id!r}")
    allowed(who, "editor", found.dataset)
    return found.to_dict()


@writes.post("/api/jobs/{job_id}/cancel")
def cancel(job_id: str, who: Who, jobs: Jobs) -> dict[str, Any]:
    found = jobs.get(job_id)
    if found is None or not who.may_see(found.dataset):
        raise HTTPException(404, f"no job {job_id!r}")
    allowed(who, "editor", found.dataset)
    if found.user != who.user and not who.may("admin", found.dataset):
        raise HTTPException(403, f"job {job_id} is {found.user}'s: only they or an admin may cancel it")
    cancelled = jobs.cancel(job_id)
    assert cancelled is not None
    return cancelled.to_dict()


@writes.post("/api/diff")
def diff(
    who: Who, registry: Reg, a: str = Query(max_length=200), b: str = Query(max_length=200)
) -> dict[str, Any]:
    allowed(who, "editor", dataset_of(a))
    allowed(who, "editor", dataset_of(b))
    return write(who, lambda: registry.diff(a, b))


@writes.post("/api/datasets/{name}/rollback")
def rollback(name: str, body: RollbackBody, who: Who, registry: Reg) -> dict[str, Any]:
    check_name(name)
    allowed(who, "editor", name)
    return write(who, lambda: registry.rollback(name, body.to, reason=body.reason, force=body.force))


@writes.post("/api/versions/{ref}/review")
def review(ref: str, body: ReviewBody, who: Who, registry: Reg) -> dict[str, Any]:
    allowed(who, "reviewer", dataset_of(ref))
    try:
        return write(who, lambda: registry.review(ref, approve=body.approve, note=body.note, four_eyes=True))
    except ConflictError as exc:
        if "four-eyes" in str(exc):
            raise HTTPException(403, str(exc)) from exc
        raise


@writes.post("/api/versions/{ref}/alias")
def alias(ref: str, body: AliasBody, who: Who, registry: Reg) -> dict[str, Any]:
    allowed(who, "reviewer", dataset_of(ref))
    return write(who, lambda: registry.alias(ref, body.alias))


@writes.post("/api/versions/{ref}/disable")
def disable(ref: str, body: DisableBody, who: Who, registry: Reg) -> dict[str, Any]:
    allowed(who, "reviewer", dataset_of(ref))
    return write(
        who,
        lambda: registry.disable(ref, reason=body.reason, table=body.table, ids=body.ids, where=body.where),
    )


@writes.post("/api/versions/{ref}/use")
def use(ref: str, body: UseBody, who: Who, registry: Reg) -> dict[str, Any]:
    allowed(who, "editor", dataset_of(ref))
    return write(who, lambda: registry.use(ref, body.run_id, body.context))


@writes.post("/api/versions/{ref}/verify")
def verify(ref: str, who: Who, registry: Reg) -> dict[str, Any]:
    allowed(who, "editor", dataset_of(ref))
    return write(who, lambda: registry.verify(ref))


@writes.post("/api/audit/verify")
def audit_verify(who: Who, registry: Reg) -> dict[str, Any]:
    allowed(who, "reviewer", None)
    return write(who, registry.verify_audit)


# ---------------------------------------------------------------- tokens (admins)


@admin.get("/api/tokens")
def tokens(who: Who, registry: Reg) -> list[dict[str, Any]]:
    allowed(who, "admin", None)
    from synthreg.registry.tokens import list_tokens

    return list_tokens(registry.workspace)


@admin.post("/api/tokens", status_code=201)
def make_token(body: TokenBody, who: Who, registry: Reg) -> dict[str, Any]:
    allowed(who, "admin", None)
    from synthreg.registry.tokens import create_token

    with env.acting_as(who.user):
        token_id, token = create_token(registry.workspace, body.user, body.role, body.dataset)
    return {"id": token_id, "user": body.user, "role": body.role, "dataset": body.dataset, "token": token}


@admin.delete("/api/tokens/{token_id}")
def revoke(token_id: int, who: Who, registry: Reg) -> dict[str, Any]:
    allowed(who, "admin", None)
    from synthreg.registry.tokens import revoke_token

    with env.acting_as(who.user):
        return revoke_token(registry.workspace, token_id)


def create_app(root: str | Path, *, workers: int = 2) -> FastAPI:
    """The service for the workspace at ``root``."""
    from synthreg.service.metrics import Metrics

    registry = Registry.open(root)
    metrics = Metrics()

    def on_change(job: Any, event: str) -> None:
        if event == "started":
            metrics.jobs_running.inc()
            return
        if event == "finished":
            metrics.jobs_running.dec()
        metrics.job_finished(job.state, job.result)

    jobs = JobQueue(registry.root, workers=workers, on_change=on_change)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        yield
        jobs.shutdown()

    app = FastAPI(
        title="synthreg",
        summary="A versioned registry for synthetic datasets, with governance.",
        lifespan=lifespan,
    )
    app.state.registry, app.state.jobs, app.state.sessions, app.state.metrics = registry, jobs, {}, metrics
    from fastapi.staticfiles import StaticFiles

    from synthreg.service.pages import HERE, LoginNeeded, pages

    for router in (reads, writes, admin, pages):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.exception_handler(LoginNeeded)
    async def _login_needed(_: Request, exc: LoginNeeded) -> RedirectResponse:
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(SynthregError)
    async def _synthreg_error(_: Request, exc: SynthregError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=_http_status(exc))

    @app.middleware("http")
    async def timing(request: Request, call_next: Callable[[Request], Any]) -> Any:
        started = time.perf_counter()
        response = await call_next(request)
        elapsed = time.perf_counter() - started
        route = getattr(request.scope.get("route"), "path", "unmatched")  # the template, never a raw path
        metrics.http.labels(request.method, route, str(response.status_code)).observe(elapsed)
        response.headers["Server-Timing"] = f"app;dur={1000 * elapsed:.1f}"
        return response

    return app
