"""LDP collection sessions and their accepted batches.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from privaudit.api.models import JSONType, UTCDateTime

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "ldp_sessions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "tenant_id",
            sa.String(32),
            sa.ForeignKey("tenants.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("protocol", sa.String(64), nullable=False),
        sa.Column("k", sa.Integer(), nullable=False),
        sa.Column("epsilon", sa.Float(), nullable=False),
        sa.Column("params", JSONType, nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("statistics", sa.LargeBinary(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("batches", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_ldp_sessions_tenant_created", "ldp_sessions", ["tenant_id", "created_at"])
    op.create_table(
        "ldp_batches",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "session_id",
            sa.String(32),
            sa.ForeignKey("ldp_sessions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("session_id", "idempotency_key", name="uq_ldp_batches_session_key"),
    )


def downgrade() -> None:
    op.drop_table("ldp_batches")
    op.drop_index("ix_ldp_sessions_tenant_created", table_name="ldp_sessions")
    op.drop_table("ldp_sessions")
