"""Health and the error catalogue (no API key needed)."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from privaudit import __version__
from privaudit.api.deps import SessionDep
from privaudit.api.problems import error_catalog
from privaudit.api.routes._responses import problems
from privaudit.api.schemas import ErrorCatalogEntry, Health
from privaudit.errors import NotFoundError

router = APIRouter(prefix="/v1", tags=["system"], responses=problems(413, 422, 500))


@router.get("/health", responses=problems(503))
def health(session: SessionDep) -> Health:
    """Liveness and database reachability."""
    session.execute(text("SELECT 1"))
    return Health(status="ok", version=__version__, database="ok")


@router.get("/errors")
def list_errors() -> list[ErrorCatalogEntry]:
    """Every error code the API returns, with its HTTP status and meaning."""
    return [ErrorCatalogEntry(**entry) for entry in error_catalog().values()]


@router.get("/errors/{code}", responses=problems(404))
def describe_error(code: str) -> ErrorCatalogEntry:
    """What one error code means (the target of a problem document's ``type``)."""
    entry = error_catalog().get(code)
    if entry is None:
        raise NotFoundError(f"no error code {code!r}; GET /v1/errors lists them")
    return ErrorCatalogEntry(**entry)
