"""Continual-release streams: their state, applied batches and releases.

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from privaudit.api.models import UTCDateTime

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "streams",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "tenant_id",
            sa.String(32),
            sa.ForeignKey("tenants.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("mechanism", sa.String(64), nullable=False),
        sa.Column("horizon", sa.BigInteger(), nullable=False),
        sa.Column("epsilon", sa.Float(), nullable=True),
        sa.Column("noise_multiplier", sa.Float(), nullable=True),
        sa.Column("items", sa.BigInteger(), nullable=False),
        sa.Column("batches", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_streams_tenant_created", "streams", ["tenant_id", "created_at"])
    op.create_table(
        "stream_batches",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "stream_id",
            sa.String(32),
            sa.ForeignKey("streams.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("items_sha256", sa.String(64), nullable=False),
        sa.Column("first_t", sa.BigInteger(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("stream_id", "idempotency_key", name="uq_stream_batches_stream_key"),
    )
    op.create_table(
        "stream_releases",
        sa.Column(
            "stream_id",
            sa.String(32),
            sa.ForeignKey("streams.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("t", sa.BigInteger(), primary_key=True),
        sa.Column("value", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("stream_releases")
    op.drop_table("stream_batches")
    op.drop_index("ix_streams_tenant_created", table_name="streams")
    op.drop_table("streams")
