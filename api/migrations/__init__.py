"""Alembic migrations of the service schema (run by ``privaudit db upgrade`` and at start-up)."""
