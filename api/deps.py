"""Typed FastAPI dependencies: settings, the database, the calling tenant.

Dependencies here are ``async`` and do no blocking work on the event loop except
when they must: FastAPI runs every plain ``def`` dependency in a worker thread, and
those hand-offs cost more than the work itself on a small machine. Endpoints open
their own database connection, so a request makes one thread hand-off in all.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from privaudit.api.db import Database
from privaudit.api.keys import Principal, authenticate
from privaudit.api.settings import Settings
from privaudit.errors import PermissionDeniedError

__all__ = [
    "AuthCache",
    "DatabaseDep",
    "SettingsDep",
    "require_scope",
]

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer pa_...`")
_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="`X-API-Key: pa_...`"
)


class AuthCache:
    """Principals of recently verified keys, for ``ttl_s`` seconds (0 disables it).

    Entries are keyed by SHA-256 of the whole presented key, so a hit means the same
    key was verified against the database moments ago. A revoked key stops working
    within ``ttl_s``. Only valid keys are stored, at most ``max_entries``.
    """

    def __init__(self, *, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, tuple[float, Principal]] = OrderedDict()

    @staticmethod
    def _key(presented: str) -> bytes:
        return hashlib.sha256(presented.encode()).digest()

    def get(self, presented: str) -> Principal | None:
        if self.ttl_s <= 0:
            return None
        key = self._key(presented)
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, principal = entry
        if expires < time.monotonic():
            self._entries.pop(key, None)
            return None
        return principal

    def put(self, presented: str, principal: Principal) -> None:
        if self.ttl_s <= 0:
            return
        key = self._key(presented)
        self._entries[key] = (time.monotonic() + self.ttl_s, principal)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


SettingsDep = Annotated[Settings, Depends(_settings)]
DatabaseDep = Annotated[Database, Depends(_database)]


def _verify(database: Database, presented: str | None) -> Principal:
    with database.sessions() as session:
        return authenticate(session, presented)


async def _principal(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None,
    api_key: str | None,
) -> Principal:
    presented = bearer.credentials if bearer is not None else api_key
    cache: AuthCache = request.app.state.auth_cache
    if presented and (principal := cache.get(presented)) is not None:
        return principal
    principal = await run_in_threadpool(_verify, request.app.state.database, presented)
    assert presented is not None  # authenticate() refuses a missing key
    cache.put(presented, principal)
    return principal


def require_scope(scope: str, *alternatives: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that authenticates the caller and checks that its key carries
    ``scope`` (or one of the ``alternatives``): 401 without a valid key, 403 without
    the scope.

    One flat dependency on purpose: each level of FastAPI's dependency tree costs as
    much as the key check itself.
    """
    accepted = (scope, *alternatives)

    async def authorize(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
        api_key: Annotated[str | None, Security(_api_key_header)],
    ) -> Principal:
        principal = await _principal(request, bearer, api_key)
        if not any(principal.allows(name) for name in accepted):
            wanted = " or ".join(repr(name) for name in accepted)
            raise PermissionDeniedError(
                f"this API key lacks the scope {wanted}; "
                f"create a key with `privaudit keys create --tenant {principal.tenant_name} "
                f"--scopes {scope}`",
                scope=scope,
            )
        return principal

    return authorize
