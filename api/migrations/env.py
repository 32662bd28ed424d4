"""Alembic environment: privaudit always passes an open connection in ``config.attributes``."""

from __future__ import annotations

from alembic import context

from privaudit.api.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - the CLI and the service always pass one
    raise RuntimeError("run migrations through privaudit (privaudit db upgrade)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
