"""Database engine, sessions and schema upgrades (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from privaudit.errors import ConfigurationError

__all__ = [
    "SQLITE_BEGIN_OPTION",
    "Database",
    "immediate_transaction",
    "upgrade_schema",
    "utcnow",
]

SQLITE_BEGIN_OPTION = "privaudit_sqlite_begin"
"""Execution option naming the statement that opens a SQLite transaction."""

log = logging.getLogger("privaudit.db")

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class Database:
    """An engine plus a session factory for one database URL.

    SQLite gets WAL journaling, ``synchronous=NORMAL``, a busy timeout and foreign
    keys; transactions are opened explicitly so a job claim can take the write lock
    up front (``BEGIN IMMEDIATE``). PostgreSQL needs nothing special.

    Parameters
    ----------
    url
        SQLAlchemy URL (``sqlite:///path`` or ``postgresql+psycopg://...``).
    pooled
        Keep a connection pool (the web process) or open a connection per use
        (short-lived job processes).
    """

    def __init__(self, url: str, *, pooled: bool = True) -> None:
        parsed = make_url(url)
        self.url = url
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if parsed.get_backend_name() not in {"sqlite", "postgresql"}:
            raise ConfigurationError(
                f"unsupported database {parsed.get_backend_name()!r}; use sqlite:/// or "
                "postgresql+psycopg://"
            )
        kwargs: dict[str, Any] = {}
        if not pooled:
            kwargs["poolclass"] = NullPool
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30.0}
            if pooled:
                kwargs["pool_size"] = 20
                kwargs["max_overflow"] = 20
        else:
            kwargs["pool_pre_ping"] = True
            if pooled:
                kwargs["pool_size"] = 10
                kwargs["max_overflow"] = 20
        self.engine: Engine = create_engine(url, **kwargs)
        self._checkpointer: threading.Thread | None = None
        self._stop_checkpointer = threading.Event()
        self._lock_path: str | None = None
        if self.is_sqlite and parsed.database and parsed.database != ":memory:":
            self._lock_path = f"{parsed.database}.writer-lock"
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Sessions that read and then write must hold SQLite's write lock from the start:
        # a deferred transaction that upgrades from reading to writing fails at once
        # ("database is locked", no busy wait) if another connection wrote meanwhile.
        write_engine = (
            self.engine.execution_options(**{SQLITE_BEGIN_OPTION: "BEGIN IMMEDIATE"})
            if self.is_sqlite
            else self.engine
        )
        self.write_sessions = sessionmaker(write_engine, expire_on_commit=False)

    @contextmanager
    def session(self, *, write: bool = True) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        factory = self.write_sessions if write else self.sessions
        with factory() as session, session.begin():
            yield session

    @contextmanager
    def write_transaction(self) -> Iterator[Connection]:
        """A short write transaction, queued fairly behind other writers.

        On SQLite, writers first wait in the kernel for an exclusive ``flock`` on a lock
        file beside the database (one open file each, so threads and processes queue
        alike) and only then take SQLite's write lock: SQLite's own busy wait polls
        with growing sleeps and no order, which starves some writers under load
        (seconds at the 99th percentile).
        """
        with self.writer_turn(), self.engine.begin() as connection:
            yield connection

    @contextmanager
    def writer_turn(self) -> Iterator[None]:
        """Wait for this writer's turn (SQLite only; a no-op on PostgreSQL)."""
        if self._lock_path is None:
            yield
            return
        descriptor = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)  # released by close, or by process death
            yield
        finally:
            os.close(descriptor)

    def start_checkpointer(self, *, interval_s: float = 1.0) -> None:
        """Copy the SQLite write-ahead log into the database in the background.

        Long-lived processes (the service, workers) call this; a ``PASSIVE`` checkpoint
        never blocks readers or writers. A no-op on PostgreSQL.
        """
        if not self.is_sqlite or self._checkpointer is not None:
            return

        def checkpoint() -> None:
            while not self._stop_checkpointer.wait(interval_s):
                try:
                    with self.engine.connect() as connection:
                        connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
                except Exception:  # pragma: no cover - retried next interval
                    log.exception("WAL checkpoint failed")

        self._checkpointer = threading.Thread(target=checkpoint, name="wal-checkpoint", daemon=True)
        self._checkpointer.start()

    def dispose(self) -> None:
        """Stop the checkpointer and close every pooled connection."""
        if self._checkpointer is not None:
            self._stop_checkpointer.set()
            self._checkpointer.join(timeout=5)
            self._checkpointer = None
        self.engine.dispose()


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy (not the sqlite3 module) decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Checkpoints run in a background thread (Database.start_checkpointer), not inside
        # whichever commit happens to cross the threshold and then stalls every writer.
        cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        statement = connection.get_execution_options().get(SQLITE_BEGIN_OPTION, "BEGIN")
        connection.exec_driver_sql(statement)


@contextmanager
def immediate_transaction(database: Database, *, durable: bool = False) -> Iterator[Connection]:
    """A transaction that holds the write lock from its start.

    On SQLite this is ``BEGIN IMMEDIATE``, so two workers cannot both read the same
    queued job before either writes. On PostgreSQL row locks (``FOR UPDATE`` in the
    statement) do the same job and this is a plain transaction.

    ``durable=True`` makes the commit survive a power loss, not only a crash of the
    process: SQLite's ``synchronous=NORMAL`` (the default here) may lose the last
    commits to an operating-system crash, so this transaction runs with
    ``synchronous=FULL`` (the write-ahead log is synced at commit). PostgreSQL commits
    durably already.
    """
    with database.writer_turn(), database.engine.connect() as connection:
        raw: Any = None
        if database.is_sqlite:
            connection.execution_options(**{SQLITE_BEGIN_OPTION: "BEGIN IMMEDIATE"})
            if durable:  # outside any transaction: the pragma is refused inside one
                raw = connection.connection.driver_connection
                raw.execute("PRAGMA synchronous=FULL")
        try:
            with connection.begin():
                yield connection
        finally:
            if raw is not None:
                raw.execute("PRAGMA synchronous=NORMAL")


def upgrade_schema(database: Database) -> None:
    """Bring the schema to the newest revision (Alembic ``upgrade head``)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with database.engine.connect() as connection:
        if not database.is_sqlite:
            # Serialise concurrent upgrades (service and standalone workers starting together).
            connection.execute(text("SELECT pg_advisory_lock(726172)"))
        try:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            connection.commit()
        finally:
            if not database.is_sqlite:
                connection.execute(text("SELECT pg_advisory_unlock(726172)"))
                connection.commit()
