"""Job rows: submission, reads and cancellation for the API; claims, heartbeats and
completion for workers. Every API-side query is scoped to the caller's tenant.

A claim gives the worker a *lease* (a random id stored on the row); every later write
by that run names the lease, so a run that lost its job (re-queued after a stale
heartbeat) can no longer change it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, and_, bindparam, case, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from privaudit.api.db import Database, immediate_transaction, utcnow
from privaudit.api.jobs.kinds import JobKind, job_kinds
from privaudit.api.models import TERMINAL_STATUSES, Job, JSONType
from privaudit.errors import ConflictError, NotFoundError

__all__ = [
    "ClaimedJob",
    "JobRow",
    "claim_next",
    "finish",
    "get_job",
    "heartbeat",
    "list_jobs",
    "params_digest",
    "reap_stale",
    "release",
    "report_progress",
    "request_cancel",
    "submit",
]

ACTIVE_STATUSES = ("running", "cancelling")


def params_digest(kind: str, params: dict[str, Any]) -> str:
    """SHA-256 of the kind and its canonical JSON params (for idempotency checks)."""
    canonical = json.dumps([kind, params], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


JobRow = Row[Any]
"""A row of the jobs table (attribute access by column name)."""

_JOBS = cast(Table, Job.__table__)


def submit(
    connection: Connection,
    *,
    tenant_id: str,
    kind: JobKind,
    params: dict[str, Any],
    idempotency_key: str | None,
    max_attempts: int,
) -> tuple[JobRow, bool]:
    """Queue a job; returns ``(job, created)``.

    One ``INSERT ... ON CONFLICT DO NOTHING RETURNING``: with an ``idempotency_key``
    this tenant already used for the same kind and params, the existing job is returned
    (``created`` false); with different ones, a :class:`ConflictError` is raised.
    """
    digest = params_digest(kind.name, params)
    now = utcnow()
    values = {
        "id": uuid.uuid4().hex,
        "tenant_id": tenant_id,
        "kind": kind.name,
        "params": params,
        "params_sha256": digest,
        "status": "queued",
        "progress": None,
        "result_ref": None,
        "error": None,
        "resumable": kind.resumable,
        "attempts": 0,
        "max_attempts": max_attempts,
        "idempotency_key": idempotency_key,
        "lease_id": None,
        "worker_id": None,
        "heartbeat_at": None,
        "created_at": now,
        "updated_at": now,
        "started_at": None,
        "finished_at": None,
    }
    statement = _insert_statement(connection.dialect.name, idempotent=idempotency_key is not None)
    row = connection.execute(statement, values).first()
    if row is not None:
        return row, True
    assert idempotency_key is not None  # only the idempotency constraint can conflict
    existing = connection.execute(
        select(_JOBS).where(Job.tenant_id == tenant_id, Job.idempotency_key == idempotency_key)
    ).one()
    if existing.params_sha256 != digest:
        raise ConflictError(
            f"Idempotency-Key {idempotency_key!r} was already used for a different request "
            f"(job {existing.id}); use a new key for a new job",
            job_id=existing.id,
        )
    return existing, False


@functools.cache
def _insert_statement(dialect: str, *, idempotent: bool) -> Any:
    # Built once: constructing a statement per request costs more than executing it.
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(_JOBS)
    if idempotent:
        insert = insert.on_conflict_do_nothing(index_elements=["tenant_id", "idempotency_key"])
    return insert.returning(*_JOBS.columns)


_GET_JOB = select(_JOBS).where(
    Job.id == bindparam("job_id"), Job.tenant_id == bindparam("tenant_id")
)


def get_job(connection: Connection, *, tenant_id: str, job_id: str) -> JobRow:
    """The tenant's job ``job_id``; another tenant's job is :class:`NotFoundError` too."""
    row = connection.execute(_GET_JOB, {"job_id": job_id, "tenant_id": tenant_id}).first()
    if row is None:
        raise NotFoundError(f"no job {job_id!r} in this tenant", job_id=job_id)
    return row


def list_jobs(
    connection: Connection,
    *,
    tenant_id: str,
    status: str | None,
    kind: str | None,
    limit: int,
    before: tuple[datetime, str] | None,
) -> list[JobRow]:
    """The tenant's jobs, newest first, after the keyset cursor ``before``."""
    query = select(_JOBS).where(Job.tenant_id == tenant_id)
    if status is not None:
        query = query.where(Job.status == status)
    if kind is not None:
        query = query.where(Job.kind == kind)
    if before is not None:
        created, job_id = before
        query = query.where(
            or_(Job.created_at < created, and_(Job.created_at == created, Job.id < job_id))
        )
    query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
    return list(connection.execute(query).all())


def request_cancel(connection: Connection, *, tenant_id: str, job_id: str) -> JobRow:
    """Cancel a queued job now, or ask a running one to stop (status ``cancelling``)."""
    now = utcnow()
    owned = and_(Job.id == job_id, Job.tenant_id == tenant_id)
    cancelled_error = {"code": "job_cancelled", "message": "cancelled before it started"}
    row = connection.execute(
        update(Job)
        .where(owned, Job.status.in_(("queued", "running", "cancelling")))
        .values(
            status=case((Job.status == "queued", "cancelled"), else_="cancelling"),
            finished_at=case((Job.status == "queued", now), else_=Job.finished_at),
            error=case(
                (Job.status == "queued", literal(cancelled_error, JSONType)), else_=Job.error
            ),
            updated_at=now,
        )
        .returning(*_JOBS.columns)
    ).first()
    if row is not None:
        return row
    job = get_job(connection, tenant_id=tenant_id, job_id=job_id)
    raise ConflictError(
        f"job {job_id} already {job.status}; only queued or running jobs can be cancelled",
        status=job.status,
    )


# --- worker side ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job a worker has leased."""

    id: str
    tenant_id: str
    kind: str
    params: dict[str, Any]
    attempts: int
    lease_id: str


def claim_next(database: Database, *, worker_id: str) -> ClaimedJob | None:
    """Atomically take the oldest queued job, or return ``None``.

    SQLite: one ``UPDATE ... RETURNING`` inside ``BEGIN IMMEDIATE``. PostgreSQL: the
    inner ``SELECT ... FOR UPDATE SKIP LOCKED`` lets workers claim different jobs in
    parallel without waiting on each other.
    """
    lease_id = uuid.uuid4().hex
    now = utcnow()
    oldest = (
        select(Job.id)
        .where(Job.status == "queued")
        .order_by(Job.created_at, Job.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    statement = (
        update(Job)
        .where(Job.id == oldest, Job.status == "queued")
        .values(
            status="running",
            lease_id=lease_id,
            worker_id=worker_id[:64],
            heartbeat_at=now,
            started_at=now,
            updated_at=now,
            attempts=Job.attempts + 1,
        )
        .returning(Job.id, Job.tenant_id, Job.kind, Job.params, Job.attempts)
    )
    with immediate_transaction(database) as connection:
        row = connection.execute(statement).first()
    if row is None:
        return None
    return ClaimedJob(
        id=row.id,
        tenant_id=row.tenant_id,
        kind=row.kind,
        params=row.params,
        attempts=row.attempts,
        lease_id=lease_id,
    )


def heartbeat(database: Database, leases: dict[str, str]) -> dict[str, str]:
    """Refresh the heartbeat of leased jobs; returns each still-held job's status."""
    if not leases:
        return {}
    now = utcnow()
    held = and_(
        Job.id.in_(list(leases)), Job.status.in_(ACTIVE_STATUSES), Job.lease_id.in_(leases.values())
    )
    with database.write_transaction() as connection:
        rows = connection.execute(
            update(Job)
            .where(held)
            .values(heartbeat_at=now)
            .returning(Job.id, Job.status, Job.lease_id)
        ).all()
    return {row.id: row.status for row in rows if leases.get(row.id) == row.lease_id}


def report_progress(
    database: Database, *, job_id: str, lease_id: str, progress: dict[str, Any] | None
) -> str | None:
    """Store progress (``None``: only read); returns the job's status, or ``None`` if the
    lease was lost."""
    now = utcnow()
    held = and_(Job.id == job_id, Job.lease_id == lease_id, Job.status.in_(ACTIVE_STATUSES))
    if progress is None:
        with database.engine.connect() as connection:
            return connection.scalar(select(Job.status).where(held))
    progress = {**progress, "updated_at": now.isoformat()}
    with database.write_transaction() as connection:
        status = connection.scalar(
            update(Job).where(held).values(progress=progress, updated_at=now).returning(Job.status)
        )
    return status


def finish(
    database: Database,
    *,
    job_id: str,
    lease_id: str,
    status: str,
    result_ref: str | None = None,
    error: dict[str, Any] | None = None,
) -> bool:
    """Move a leased job to a terminal status; returns whether the lease still held."""
    assert status in TERMINAL_STATUSES
    now = utcnow()
    with database.write_transaction() as connection:
        updated = connection.execute(
            update(Job)
            .where(Job.id == job_id, Job.lease_id == lease_id, Job.status.in_(ACTIVE_STATUSES))
            .values(
                status=status,
                result_ref=result_ref,
                error=error,
                finished_at=now,
                updated_at=now,
                lease_id=None,
            )
        )
    return updated.rowcount == 1


def release(database: Database, *, job_id: str, lease_id: str, reason: str) -> str | None:
    """Give a job back after its run was lost or stopped, without losing it.

    A job being cancelled becomes ``cancelled``; a resumable job with attempts left
    goes back to ``queued``; any other job becomes ``failed`` with ``reason``. Returns
    the new status, or ``None`` if the lease no longer held.
    """
    now = utcnow()
    with immediate_transaction(database) as connection:
        row = connection.execute(
            select(Job.status, Job.resumable, Job.attempts, Job.max_attempts, Job.kind).where(
                Job.id == job_id, Job.lease_id == lease_id, Job.status.in_(ACTIVE_STATUSES)
            )
        ).first()
        if row is None:
            return None
        values = _after_loss(row, reason, now)
        connection.execute(update(Job).where(Job.id == job_id).values(**values))
    return str(values["status"])


def reap_stale(database: Database, *, stale_after_s: float) -> dict[str, str]:
    """Recover jobs whose worker stopped heartbeating (crashed, killed, lost power).

    Returns ``{job_id: new_status}`` for every job recovered.
    """
    now = utcnow()
    cutoff = now - timedelta(seconds=stale_after_s)
    recovered: dict[str, str] = {}
    with immediate_transaction(database) as connection:
        rows = connection.execute(
            select(
                Job.id, Job.status, Job.resumable, Job.attempts, Job.max_attempts, Job.kind
            ).where(Job.status.in_(ACTIVE_STATUSES), Job.heartbeat_at < cutoff)
        ).all()
        for row in rows:
            values = _after_loss(
                row,
                f"its worker stopped sending heartbeats (none for over {stale_after_s:g} s)",
                now,
            )
            connection.execute(
                update(Job)
                .where(Job.id == row.id, Job.status.in_(ACTIVE_STATUSES))
                .values(**values)
            )
            recovered[row.id] = str(values["status"])
    return recovered


def _after_loss(row: Any, reason: str, now: datetime) -> dict[str, Any]:
    """The column values for a job whose run ended without finishing it."""
    common: dict[str, Any] = {"lease_id": None, "worker_id": None, "updated_at": now}
    if row.status == "cancelling":
        error = {"code": "job_cancelled", "message": f"cancelled; the run ended because {reason}"}
        return {**common, "status": "cancelled", "finished_at": now, "error": error}
    if row.resumable and row.attempts < row.max_attempts:
        return {**common, "status": "queued", "heartbeat_at": None}
    if row.resumable:
        message = f"gave up after {row.attempts} attempts; the last one ended because {reason}"
    else:
        known = row.kind in job_kinds
        message = (
            f"the run ended because {reason}, and job kind {row.kind!r} is not resumable"
            if known
            else f"the run ended because {reason}"
        )
    error = {"code": "worker_lost", "message": message}
    return {**common, "status": "failed", "finished_at": now, "error": error}
