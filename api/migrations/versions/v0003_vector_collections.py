"""Vector collections for encrypted search: batches, ids, public contexts, query counts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from privaudit.api.models import JSONType, UTCDateTime

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def _collection_key() -> sa.Column[str]:
    return sa.Column(
        "collection_id",
        sa.String(32),
        sa.ForeignKey("vector_collections.id", ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "vector_collections",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "tenant_id",
            sa.String(32),
            sa.ForeignKey("tenants.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("dimension", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(16), nullable=False),
        sa.Column("params", JSONType, nullable=False),
        sa.Column("score_noise", JSONType, nullable=True),
        sa.Column("max_queries_per_key", sa.BigInteger(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("batches", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index(
        "ix_vector_collections_tenant_created", "vector_collections", ["tenant_id", "created_at"]
    )
    op.create_table(
        "vector_batches",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _collection_key(),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("ids", JSONType, nullable=False),
        sa.Column("vectors", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("collection_id", "idempotency_key", name="uq_vector_batches_key"),
    )
    op.create_table(
        "vector_ids",
        _collection_key(),
        sa.Column("vector_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("collection_id", "vector_id"),
    )
    op.create_table(
        "vector_contexts",
        sa.Column(
            "tenant_id",
            sa.String(32),
            sa.ForeignKey("tenants.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("kernel", sa.String(16), nullable=False),
        sa.Column("dimension", sa.Integer(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
    )
    op.create_index(
        "ix_vector_contexts_tenant_created", "vector_contexts", ["tenant_id", "created_at"]
    )
    op.create_table(
        "vector_query_counts",
        _collection_key(),
        sa.Column(
            "key_id",
            sa.String(16),
            sa.ForeignKey("api_keys.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("collection_id", "key_id"),
    )


def downgrade() -> None:
    op.drop_table("vector_query_counts")
    op.drop_index("ix_vector_contexts_tenant_created", table_name="vector_contexts")
    op.drop_table("vector_contexts")
    op.drop_table("vector_ids")
    op.drop_table("vector_batches")
    op.drop_index("ix_vector_collections_tenant_created", table_name="vector_collections")
    op.drop_table("vector_collections")
