"""Reading one tenant-owned row: every query is scoped to the caller's tenant."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from privaudit.errors import NotFoundError

__all__ = ["load_owned"]


def load_owned(
    connection: Connection,
    model: Any,
    tenant_id: str,
    row_id: str,
    *,
    what: str,
    lock: bool = False,
) -> Any:
    """The row of ``model`` with this id in this tenant (``FOR UPDATE`` with ``lock``),
    as a Core row: its columns are attributes (``row.id``), not an ORM object.

    Raises
    ------
    NotFoundError
        If there is none: another tenant's row is not found either.
    """
    query = select(model).where(model.id == row_id, model.tenant_id == tenant_id)
    if lock:
        query = query.with_for_update()
    row = connection.execute(query).first()
    if row is None:
        raise NotFoundError(f"no {what} {row_id!r} in this tenant")
    return row
