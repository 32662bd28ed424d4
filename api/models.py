"""Database tables (SQLAlchemy 2 declarative). Every tenant-owned row has ``tenant_id``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "JOB_STATUSES",
    "TERMINAL_STATUSES",
    "ApiKey",
    "Base",
    "Job",
    "LdpBatch",
    "LdpSession",
    "Stream",
    "StreamBatch",
    "StreamRelease",
    "Tenant",
    "VectorBatch",
    "VectorCollection",
    "VectorContext",
    "VectorId",
    "VectorQueryCount",
]

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelling", "cancelled")
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})

JSONType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of the service's tables."""


class Tenant(Base):
    """An organisation or team; owns keys, jobs and artifacts."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ApiKey(Base):
    """An API key: only its public id and the SHA-256 of its secret are stored."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSONType)
    label: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Job(Base):
    """A durable unit of long work, claimed and run by a worker process."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key", name="uq_jobs_tenant_idempotency"),
        Index("ix_jobs_status_created", "status", "created_at"),
        Index("ix_jobs_tenant_created", "tenant_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSONType)
    params_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    result_ref: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    resumable: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    lease_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    worker_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class LdpSession(Base):
    """An LDP collection: one protocol's public parameters and its running statistics."""

    __tablename__ = "ldp_sessions"
    __table_args__ = (Index("ix_ldp_sessions_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    protocol: Mapped[str] = mapped_column(String(64))
    k: Mapped[int] = mapped_column(Integer)
    epsilon: Mapped[float] = mapped_column(Float)
    params: Mapped[dict[str, Any]] = mapped_column(JSONType)
    fingerprint: Mapped[str] = mapped_column(Text)
    statistics: Mapped[bytes] = mapped_column(LargeBinary)
    n: Mapped[int] = mapped_column(BigInteger)
    batches: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LdpBatch(Base):
    """One accepted batch of reports, by its idempotency key (a retry is not counted twice)."""

    __tablename__ = "ldp_batches"
    __table_args__ = (
        UniqueConstraint("session_id", "idempotency_key", name="uq_ldp_batches_session_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("ldp_sessions.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    n: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class VectorCollection(Base):
    """A data party's shard for encrypted vector search: its parameters and size."""

    __tablename__ = "vector_collections"
    __table_args__ = (Index("ix_vector_collections_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    dimension: Mapped[int] = mapped_column(Integer)
    metric: Mapped[str] = mapped_column(String(16))
    params: Mapped[dict[str, Any]] = mapped_column(JSONType)
    score_noise: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    max_queries_per_key: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    size: Mapped[int] = mapped_column(BigInteger)
    batches: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class VectorBatch(Base):
    """One ingested batch: its ids and its vectors as little-endian float64, row-major."""

    __tablename__ = "vector_batches"
    __table_args__ = (
        UniqueConstraint("collection_id", "idempotency_key", name="uq_vector_batches_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    collection_id: Mapped[str] = mapped_column(
        ForeignKey("vector_collections.id", ondelete="CASCADE")
    )
    idempotency_key: Mapped[str] = mapped_column(String(255))
    n: Mapped[int] = mapped_column(Integer)
    ids: Mapped[list[str]] = mapped_column(JSONType)
    vectors: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class VectorId(Base):
    """The ids of a collection, one row each, so the database keeps them unique."""

    __tablename__ = "vector_ids"

    collection_id: Mapped[str] = mapped_column(
        ForeignKey("vector_collections.id", ondelete="CASCADE"), primary_key=True
    )
    vector_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class VectorContext(Base):
    """A querier's public CKKS context (parameters and Galois keys), by its SHA-256."""

    __tablename__ = "vector_contexts"
    __table_args__ = (Index("ix_vector_contexts_tenant_created", "tenant_id", "created_at"),)

    tenant_id: Mapped[str] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kernel: Mapped[str] = mapped_column(String(16))
    dimension: Mapped[int] = mapped_column(Integer)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class VectorQueryCount(Base):
    """Queries one API key has made on one collection (its query budget)."""

    __tablename__ = "vector_query_counts"

    collection_id: Mapped[str] = mapped_column(
        ForeignKey("vector_collections.id", ondelete="CASCADE"), primary_key=True
    )
    key_id: Mapped[str] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True
    )
    used: Mapped[int] = mapped_column(BigInteger)


class Stream(Base):
    """A continual-release counter: its parameters and its state (exact sums and the noise
    already released), updated in one transaction with each batch of items.

    ``state`` is the JSON of :class:`privaudit.mechanisms.continual.CounterState`, kept
    as text so every float reads back bit for bit on every backend. It is as sensitive
    as the items (it holds exact sums) and is never sent to a client. ``version`` counts
    the updates; an update applies only to the version it read.
    """

    __tablename__ = "streams"
    __table_args__ = (Index("ix_streams_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    mechanism: Mapped[str] = mapped_column(String(64))
    horizon: Mapped[int] = mapped_column(BigInteger)
    epsilon: Mapped[float | None] = mapped_column(Float, nullable=True)
    noise_multiplier: Mapped[float | None] = mapped_column(Float, nullable=True)
    items: Mapped[int] = mapped_column(BigInteger)
    batches: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class StreamBatch(Base):
    """One applied batch of items, by its idempotency key: a retry gets the same releases."""

    __tablename__ = "stream_batches"
    __table_args__ = (
        UniqueConstraint("stream_id", "idempotency_key", name="uq_stream_batches_stream_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stream_id: Mapped[str] = mapped_column(ForeignKey("streams.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    items_sha256: Mapped[str] = mapped_column(String(64))
    first_t: Mapped[int] = mapped_column(BigInteger)
    n: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class StreamRelease(Base):
    """The private running sum released after item ``t`` (one row per item, never rewritten)."""

    __tablename__ = "stream_releases"

    stream_id: Mapped[str] = mapped_column(
        ForeignKey("streams.id", ondelete="CASCADE"), primary_key=True
    )
    t: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    value: Mapped[float] = mapped_column(Float)
