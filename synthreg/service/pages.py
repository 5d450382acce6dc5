"""The web UI of ``registry serve``: server-rendered pages (Jinja2) with htmx, vendored (offline).

A person logs in with a token once; the server keeps the session (an HttpOnly, SameSite=Strict
cookie holds a random session id, never the token) and checks the token again on every request, so
a revoked token logs its sessions out. Every form post carries the session's CSRF token, compared
in constant time. Pages call the same registry functions as the API and the CLI, under the same
roles.
"""

from __future__ import annotations

import hmac
import re
import secrets
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from synthreg import env
from synthreg.errors import SynthregError
from synthreg.registry.api import Registry
from synthreg.registry.cards import plot_names
from synthreg.registry.refs import parse_ref
from synthreg.registry.tokens import ROLES, Identity, authenticate
from synthreg.service.access import allowed, jobs_of, registry_of

__all__ = ["pages"]

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
pages = APIRouter(include_in_schema=False)
COOKIE = "synthreg_session"


class Session:
    """A logged-in browser: its token (kept server-side only) and its CSRF token."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.csrf = secrets.token_urlsafe(24)


def _sessions(request: Request) -> dict[str, Session]:
    return request.app.state.sessions  # type: ignore[no-any-return]


def _current(request: Request) -> tuple[Identity, Session] | None:
    session = _sessions(request).get(request.cookies.get(COOKIE, ""))
    if session is None:
        return None
    who = authenticate(registry_of(request).workspace, session.token)
    return (who, session) if who is not None else None


class LoginNeeded(Exception):
    """Send the browser to the login page."""


def _login(request: Request) -> tuple[Identity, Session]:
    found = _current(request)
    if found is None:
        raise LoginNeeded
    return found


def _csrf(session: Session, sent: str) -> None:
    if not hmac.compare_digest(session.csrf.encode(), sent.encode()):
        raise HTTPException(403, "the form's CSRF token does not match this session: reload the page")


def _page(
    request: Request, template: str, who: Identity | None, session: Session | None, **ctx: Any
) -> Response:
    context = {"who": who, "csrf": session.csrf if session else "", **ctx}
    status = 400 if ctx.get("error") else 200
    return templates.TemplateResponse(request, template, context, status_code=status)


# ------------------------------------------------------------------------ login


@pages.get("/login")
def login_form(request: Request) -> Response:
    return _page(request, "login.html", None, None)


@pages.post("/login")
def login(request: Request, token: str = Form(max_length=200)) -> Response:
    if authenticate(registry_of(request).workspace, token.strip()) is None:
        return _page(request, "login.html", None, None, message="that token is not valid", error=True)
    sid = secrets.token_urlsafe(32)
    _sessions(request)[sid] = Session(token.strip())
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(COOKIE, sid, httponly=True, samesite="strict")
    return response


@pages.post("/logout")
def logout(request: Request, csrf: str = Form("")) -> Response:
    _, session = _login(request)
    _csrf(session, csrf)
    _sessions(request).pop(request.cookies.get(COOKIE, ""), None)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


# ------------------------------------------------------------------------ reads


@pages.get("/")
def datasets(request: Request, q: str = "") -> Response:
    who, session = _login(request)
    registry = registry_of(request)
    tag = tuple(q.split("=", 1)) if "=" in q else None
    rows = [d for d in registry.list(tag) if who.may_see(d["dataset"])]  # type: ignore[arg-type]
    if q and tag is None:  # a name, or part of one; a tag is K=V
        rows = [d for d in rows if q.lower() in d["dataset"]]
    return _page(request, "datasets.html", who, session, datasets=rows, q=q)


def _versions(registry: Registry, name: str) -> list[dict[str, Any]]:
    latest = registry.show(f"{name}@v{_latest(registry, name)}")
    return [registry.show(f"{name}@v{v['version']}") for v in reversed(latest["versions"])]


def _latest(registry: Registry, name: str) -> int:
    for row in registry.list():
        if row["dataset"] == name:
            return int(row["latest"])
    raise HTTPException(404, f"no dataset {name!r}")


@pages.get("/datasets/{name}")
def dataset(request: Request, name: str) -> Response:
    who, session = _login(request)
    allowed(who, "viewer", name)
    registry = registry_of(request)
    versions = _versions(registry, name)
    spec_file = registry.root / "specs" / f"{name}.yaml"
    spec = spec_file.read_text(encoding="utf-8") if spec_file.is_file() else ""
    may_edit = who.may("editor", name)
    return _page(
        request, "dataset.html", who, session, name=name, versions=versions, spec=spec, may_edit=may_edit
    )


def _card_html(markdown: str) -> str:
    from markdown_it import MarkdownIt

    body = markdown.split("\n---\n", 1)[1] if markdown.startswith("---\n") else markdown  # YAML header
    # the card's plots are links relative to the version folder: the page shows them itself
    body = re.sub(r"\n## Distributions\n.*?(?=\n## |\Z)", "\n", body, flags=re.DOTALL)
    return str(MarkdownIt("commonmark", {"html": False}).enable("table").render(body))


def _version_page(request: Request, ref: str, **extra: Any) -> Response:
    who, session = _login(request)
    allowed(who, "viewer", parse_ref(ref).name)
    registry = registry_of(request)
    info = registry.show(ref)
    vdir = registry.root / info["path"]
    tables = sorted(info.get("rows") or {})
    plots = plot_names(vdir / "plots")
    first = None
    if tables:
        from synthreg.service.preview import page

        first = page(registry, info["ref"], tables[0], 0, 20)
    return _page(
        request,
        "version.html",
        who,
        session,
        v=info,
        tables=tables,
        plots=plots,
        page=first,
        first_page=first is not None,
        card_html=_card_html(registry.card(info["ref"], "md")),
        provenance=_provenance(vdir),
        may_review=who.may("reviewer", info["dataset"]),
        **extra,
    )


def _provenance(vdir: Path, limit: int = 20) -> list[dict[str, Any]]:
    """Per-row LLM provenance (llm/*.parquet: model, template and prompt hashes, call key, seed,
    tokens, cost), the first rows of each file, read by DuckDB."""
    import pyarrow.parquet as pq

    from synthreg.service.preview import read_rows

    out = []
    for path in sorted((vdir / "llm").glob("*.parquet")) if (vdir / "llm").is_dir() else []:
        columns, rows = read_rows([str(path)], limit)
        total = pq.ParquetFile(path).metadata.num_rows  # from the footer
        out.append({"file": path.name, "columns": columns, "rows": rows, "total": total})
    return out


@pages.get("/versions/{ref}")
def version(request: Request, ref: str) -> Response:
    return _version_page(request, ref)


@pages.get("/versions/{ref}/preview")
def preview(request: Request, ref: str, table: str, offset: int = 0) -> Response:
    who, session = _login(request)
    allowed(who, "viewer", parse_ref(ref).name)
    from synthreg.service.preview import page

    found = page(registry_of(request), ref, table, max(offset, 0), 20)
    return _page(request, "preview.html", who, session, page=found)


#: A version's files are served as documents that run nothing: an SVG plot or an HTML report
#: edited on disk to carry a script gets a sandbox (an opaque origin, no scripts, no requests
#: but for its own inline styles and embedded images), and the browser does not guess types.
STORED_FILE_HEADERS = {
    "Content-Security-Policy": "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}


@pages.get("/versions/{ref}/files/{path:path}")
def version_file(request: Request, ref: str, path: str) -> Response:
    """A small file of the version (plots, validation report); never the tables, never outside it."""
    who, _ = _login(request)
    allowed(who, "viewer", parse_ref(ref).name)
    registry = registry_of(request)
    vdir = (registry.root / registry.show(ref)["path"]).resolve()
    target = (vdir / path).resolve()
    if vdir not in target.parents or "tables" in target.relative_to(vdir).parts or not target.is_file():
        raise HTTPException(404, "no such file")
    return FileResponse(target, headers=STORED_FILE_HEADERS)


@pages.get("/versions/{ref}/lineage")
def lineage(request: Request, ref: str) -> Response:
    """Parents, children, the MLflow runs that used the version and their models, as a picture."""
    who, session = _login(request)
    allowed(who, "viewer", parse_ref(ref).name)
    return _page(request, "lineage.html", who, session, l=registry_of(request).lineage(ref))


@pages.get("/diff")
def diff(request: Request, a: str, b: str) -> Response:
    who, session = _login(request)
    for ref in (a, b):
        allowed(who, "editor", parse_ref(ref).name)
    registry = registry_of(request)
    with env.acting_as(who.user):
        result = registry.diff(a, b)
    stored = registry.root / result["stored_at"] / "plots"
    plots = sorted(p.name for p in stored.glob("*.png"))
    return _page(request, "diff.html", who, session, a=a, b=b, d=result, plots=plots)


@pages.get("/diff/plots/{name}")
def diff_plot(request: Request, a: str, b: str, name: str) -> Response:
    """A plot of the stored diff of ``a`` and ``b`` (made by /diff)."""
    who, _ = _login(request)
    ref_a, ref_b = parse_ref(a), parse_ref(b)
    for ref in (ref_a, ref_b):
        allowed(who, "viewer", ref.name)
    registry = registry_of(request)
    va, vb = registry.show(a), registry.show(b)
    folder = registry.root / "diffs" / f"{va['dataset']}_v{va['version']}__{vb['dataset']}_v{vb['version']}"
    target = folder / "plots" / name
    if "/" in name or name.startswith(".") or not target.is_file():
        raise HTTPException(404, "no such plot")
    return FileResponse(target, headers=STORED_FILE_HEADERS)


@pages.get("/audit")
def audit(request: Request, dataset: str | None = None, since: str | None = None) -> Response:
    who, session = _login(request)
    if dataset:
        allowed(who, "viewer", dataset)
    events = _events(request, who, dataset, since)
    query = "&".join(f"{k}={v}" for k, v in (("dataset", dataset), ("since", since)) if v)
    may_verify = who.may("reviewer")
    ctx = {"events": events, "dataset": dataset, "since": since, "query": query, "may_verify": may_verify}
    return _page(request, "audit.html", who, session, **ctx)


def _events(request: Request, who: Identity, dataset: str | None, since: str | None) -> list[dict[str, Any]]:
    events = registry_of(request).audit(dataset or who.dataset, since or None)
    return [e for e in events if who.dataset is None or e.get("dataset") == who.dataset]


@pages.get("/audit/export.json")
def audit_export(request: Request, dataset: str | None = None, since: str | None = None) -> Response:
    who, _ = _login(request)
    if dataset:
        allowed(who, "viewer", dataset)
    return JSONResponse(_events(request, who, dataset, since))


# ------------------------------------------------------------------------ writes (forms)


@pages.post("/datasets/{name}/versions")
def create(
    request: Request,
    name: str,
    csrf: str = Form(""),
    spec: str = Form(max_length=1_000_000),
    seed: str = Form(""),
    message: str = Form("", max_length=10_000),
) -> Response:
    who, session = _login(request)
    _csrf(session, csrf)
    allowed(who, "editor", name)
    options = ["--seed", seed.strip()] if seed.strip().isdigit() else []
    options += ["--message", message] if message else []
    job = jobs_of(request).submit(name, who.user, spec, options)
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)


def _job(request: Request, job_id: str) -> tuple[Identity, Session, Any]:
    who, session = _login(request)
    job = jobs_of(request).get(job_id)
    if job is None or not who.may_see(job.dataset):
        raise HTTPException(404, f"no job {job_id!r}")
    allowed(who, "editor", job.dataset)
    return who, session, job


@pages.get("/jobs/{job_id}")
def job_page(request: Request, job_id: str) -> Response:
    who, session, job = _job(request, job_id)
    return _page(request, "job.html", who, session, job=_job_view(job))


@pages.get("/jobs/{job_id}/status")
def job_status(request: Request, job_id: str) -> Response:
    who, session, job = _job(request, job_id)
    return _page(request, "job_status.html", who, session, job=_job_view(job))


def _job_view(job: Any) -> dict[str, Any]:
    data: dict[str, Any] = job.to_dict()
    if data["result"]:
        data["result"]["ref"] = f"{data['result']['dataset']}@v{data['result']['version']}"
    return data


@pages.post("/jobs/{job_id}/cancel")
def job_cancel(request: Request, job_id: str, csrf: str = Form("")) -> Response:
    who, session, job = _job(request, job_id)
    _csrf(session, csrf)
    if job.user != who.user and not who.may("admin", job.dataset):
        raise HTTPException(403, f"job {job_id} is {job.user}'s: only they or an admin may cancel it")
    jobs_of(request).cancel(job_id)
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


def _reviewer_form(request: Request, ref: str, csrf: str) -> Identity:
    """A reviewer's form post on a version: logged in, CSRF token matches, reviewer of its dataset."""
    who, session = _login(request)
    _csrf(session, csrf)
    allowed(who, "reviewer", parse_ref(ref).name)
    return who


@pages.post("/versions/{ref}/review")
def review(
    request: Request,
    ref: str,
    csrf: str = Form(""),
    decision: str = Form(""),
    note: str = Form("", max_length=10_000),
) -> Response:
    who = _reviewer_form(request, ref, csrf)
    try:
        with env.acting_as(who.user):
            registry_of(request).review(ref, approve=decision == "approve", note=note, four_eyes=True)
    except SynthregError as exc:
        return _version_page(request, ref, message=str(exc), error=True)
    return _version_page(
        request, ref, message=f"{ref}: {'approved' if decision == 'approve' else 'rejected'} by {who.user}"
    )


@pages.post("/versions/{ref}/disable")
def disable(
    request: Request,
    ref: str,
    csrf: str = Form(""),
    table: str = Form(max_length=128),
    where: str = Form(max_length=10_000),
    reason: str = Form("", max_length=10_000),
) -> Response:
    who = _reviewer_form(request, ref, csrf)
    try:
        with env.acting_as(who.user):
            result = registry_of(request).disable(ref, reason=reason, table=table, where=where)
    except SynthregError as exc:
        return _version_page(request, ref, message=str(exc), error=True)
    made = result.to_dict()
    return RedirectResponse(f"/versions/{made['ref']}", status_code=303)


@pages.post("/audit/verify")
def audit_verify(request: Request, csrf: str = Form("")) -> Response:
    who, session = _login(request)
    _csrf(session, csrf)
    if not who.may("reviewer"):
        raise HTTPException(403, f"{who.user} is a {who.role}; this needs reviewer or above")
    result = registry_of(request).verify_audit()
    events = _events(request, who, None, None)
    ok = bool(getattr(result, "ok", False))
    text = "the audit log verifies: chain, anchors and DB agree" if ok else f"audit verify FAILED: {result}"
    return _page(request, "audit.html", who, session, events=events, dataset=None, since=None, query="",
                 may_verify=True, message=text, error=not ok)  # fmt: skip


__all__ += ["ROLES", "LoginNeeded"]
