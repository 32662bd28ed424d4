"""Health and the error catalogue (no API key needed)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from privaudit import __version__
from privaudit.api.deps import DatabaseDep
from privaudit.api.problems import error_catalog, problem_response
from privaudit.api.routes._responses import problems
from privaudit.api.routing import JSONSchemaRoute
from privaudit.api.schemas import ErrorCatalogEntry, Health
from privaudit.errors import NotFoundError

router = APIRouter(
    prefix="/v1",
    tags=["system"],
    responses=problems(413, 422, 500),
    route_class=JSONSchemaRoute,
)


@router.get("/health", response_model=Health, responses=problems(503))
def health(request: Request, database: DatabaseDep) -> Health | JSONResponse:
    """Liveness and database reachability (503 when the database cannot be reached)."""
    try:
        with database.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return problem_response(
            request,
            status=503,
            code="unavailable",
            title="Service unavailable",
            detail="the database is not reachable; see the server log",
        )
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
