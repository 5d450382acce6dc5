"""What the API and the pages share: the app's registry and job queue, and one access rule."""

from __future__ import annotations

from fastapi import HTTPException, Request

from synthreg.registry.api import Registry
from synthreg.registry.refs import parse_ref
from synthreg.registry.tokens import Identity
from synthreg.service.jobs import JobQueue

__all__ = ["allowed", "dataset_of", "jobs_of", "registry_of"]


def registry_of(request: Request) -> Registry:
    """The app's registry."""
    return request.app.state.registry  # type: ignore[no-any-return]


def jobs_of(request: Request) -> JobQueue:
    """The app's job queue."""
    return request.app.state.jobs  # type: ignore[no-any-return]


def allowed(who: Identity, role: str, dataset: str | None) -> None:
    """404 for a dataset the identity may not see (as for a missing one); 403 below the role."""
    if dataset is not None and not who.may_see(dataset):
        raise HTTPException(404, f"no dataset {dataset!r}")
    if not who.may(role, dataset):
        raise HTTPException(403, f"{who.user} is a {who.role}; this needs {role} or above")


def dataset_of(ref: str) -> str:
    """The dataset a ref names."""
    return parse_ref(ref).name
