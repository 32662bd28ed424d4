"""Tenants, API keys and scopes.

A key looks like ``pa_<id>_<secret>``: ``id`` is 12 public hex characters used to
find the row, ``secret`` is 256 random bits. Only SHA-256 of the secret is stored: a
fast hash is the right tool for a uniformly random 256-bit secret (there is nothing
to brute-force), and it keeps authentication cheap. The key is shown once, at
creation.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from privaudit.api.db import utcnow
from privaudit.api.models import ApiKey, Tenant
from privaudit.errors import AuthenticationError, ParameterError

__all__ = [
    "DEFAULT_SCOPES",
    "SCOPES",
    "Principal",
    "authenticate",
    "create_key",
    "register_scope",
    "revoke_key",
]

SCOPES: dict[str, str] = {
    "jobs:read": "list and read the tenant's jobs, their progress, results and events",
    "jobs:write": "submit and cancel jobs",
    "admin": "every scope, present and future",
}
"""Every scope a key can carry, with what it allows."""

DEFAULT_SCOPES: tuple[str, ...] = ("jobs:read", "jobs:write")

_KEY_PATTERN = re.compile(r"^pa_([0-9a-f]{12})_([A-Za-z0-9_\-]{43})$")
_TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")


def register_scope(name: str, description: str, *, default: bool = True) -> None:
    """Add a scope (capability issues add theirs, e.g. ``audit:write``)."""
    global DEFAULT_SCOPES
    SCOPES[name] = description
    if default and name not in DEFAULT_SCOPES:
        DEFAULT_SCOPES = (*DEFAULT_SCOPES, name)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the tenant and the scopes of the key used."""

    tenant_id: str
    tenant_name: str
    key_id: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        """Whether the key carries ``scope`` (``admin`` carries every scope)."""
        return scope in self.scopes or "admin" in self.scopes


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def create_key(
    session: Session, *, tenant: str, scopes: list[str] | None = None, label: str = ""
) -> tuple[str, ApiKey]:
    """Create an API key for ``tenant`` (creating the tenant if it is new).

    Returns
    -------
    (key, row)
        The full key, to show once, and its stored row (without the secret).
    """
    if not _TENANT_NAME.match(tenant):
        raise ParameterError(
            f"tenant name {tenant!r} must be 1-64 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    chosen = list(DEFAULT_SCOPES) if not scopes else list(dict.fromkeys(scopes))
    unknown = [scope for scope in chosen if scope not in SCOPES]
    if unknown:
        raise ParameterError(f"unknown scopes {unknown}; known scopes: {sorted(SCOPES)}")
    row_tenant = session.scalar(select(Tenant).where(Tenant.name == tenant))
    if row_tenant is None:
        row_tenant = Tenant(id=uuid.uuid4().hex, name=tenant, created_at=utcnow())
        session.add(row_tenant)
        session.flush()
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    row = ApiKey(
        id=key_id,
        tenant_id=row_tenant.id,
        secret_sha256=_hash(secret),
        scopes=chosen,
        label=label[:128],
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return f"pa_{key_id}_{secret}", row


def revoke_key(session: Session, key_id: str) -> bool:
    """Revoke a key by its public id; returns whether a live key was revoked."""
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    return True


def authenticate(session: Session, presented: str | None) -> Principal:
    """Return the principal for a presented key.

    Raises
    ------
    AuthenticationError
        If the key is missing, malformed, unknown, revoked or wrong. The message does
        not say which, so it cannot be used to probe for key ids.
    """
    if not presented:
        raise AuthenticationError(
            "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'; "
            "create one with `privaudit keys create --tenant NAME`"
        )
    match = _KEY_PATTERN.match(presented.strip())
    invalid = AuthenticationError("the API key is not valid (unknown, revoked or mistyped)")
    if match is None:
        raise invalid
    key_id, secret = match.groups()
    row = session.execute(
        select(ApiKey, Tenant.name)
        .join(Tenant, Tenant.id == ApiKey.tenant_id)
        .where(ApiKey.id == key_id)
    ).first()
    if row is None:
        _hash(secret)  # same work on the miss path as on the hit path
        raise invalid
    key, tenant_name = row
    if not hmac.compare_digest(key.secret_sha256, _hash(secret)) or key.revoked_at is not None:
        raise invalid
    return Principal(
        tenant_id=key.tenant_id,
        tenant_name=tenant_name,
        key_id=key.id,
        scopes=frozenset(key.scopes),
    )
