"""Typed FastAPI dependencies: settings, the database session, the calling tenant."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from privaudit.api.db import Database
from privaudit.api.keys import Principal, authenticate
from privaudit.api.settings import Settings
from privaudit.errors import PermissionDeniedError

__all__ = [
    "DatabaseDep",
    "PrincipalDep",
    "SessionDep",
    "SettingsDep",
    "WriteSessionDep",
    "require_scope",
]

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer pa_...`")
_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="`X-API-Key: pa_...`"
)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


SettingsDep = Annotated[Settings, Depends(_settings)]
DatabaseDep = Annotated[Database, Depends(_database)]


def _session(database: DatabaseDep) -> Iterator[Session]:
    with database.sessions() as session:
        yield session


def _write_session(database: DatabaseDep) -> Iterator[Session]:
    with database.write_sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(_session)]
"""A session for endpoints that only read."""

WriteSessionDep = Annotated[Session, Depends(_write_session)]
"""A session for endpoints that read and then write (takes SQLite's write lock up front)."""


def _principal(
    database: DatabaseDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    api_key: Annotated[str | None, Security(_api_key_header)],
) -> Principal:
    presented = bearer.credentials if bearer is not None else api_key
    # Its own short read transaction, so it never holds up the endpoint's writes.
    with database.sessions() as session:
        return authenticate(session, presented)


PrincipalDep = Annotated[Principal, Depends(_principal)]


def require_scope(scope: str) -> Callable[[Principal], Principal]:
    """A dependency that returns the principal if its key carries ``scope`` (else 403)."""

    def check(principal: PrincipalDep) -> Principal:
        if not principal.allows(scope):
            raise PermissionDeniedError(
                f"this API key lacks the scope {scope!r}; create a key with "
                f"`privaudit keys create --tenant {principal.tenant_name} --scopes {scope}`",
                scope=scope,
            )
        return principal

    return check
