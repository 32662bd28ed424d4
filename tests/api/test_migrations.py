"""The Alembic migrations build exactly the schema the models declare (SQLite, PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from privaudit.api.db import Database, upgrade_schema
from privaudit.api.models import Base


def test_migrations_match_the_models(tmp_path: Path, database_url: str) -> None:
    database = Database(database_url or f"sqlite:///{tmp_path / 'schema.db'}", pooled=False)
    try:
        upgrade_schema(database)
        with database.engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        database.dispose()
    assert differences == []
    assert {"streams", "stream_batches", "stream_releases"} <= set(Base.metadata.tables)
