"""A real privaudit server in a subprocess, for API tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

SUPPORT_DIR = Path(__file__).resolve().parent
PRIVAUDIT = Path(sys.executable).with_name("privaudit")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LiveServer:
    """``privaudit serve`` on loopback with its own data directory (and database)."""

    data_dir: Path
    database_url: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "HOME": str(self.data_dir),
            "XDG_CACHE_HOME": str(self.data_dir / ".cache"),
            "PYTHONSAFEPATH": "1",
            "PYTHONPATH": str(SUPPORT_DIR),
            "PRIVAUDIT_DATA_DIR": str(self.data_dir),
            "PRIVAUDIT_DATABASE_URL": self.database_url,
            "PRIVAUDIT_JOB_PLUGINS": "privaudit_testkinds",
            "PRIVAUDIT_HEARTBEAT_INTERVAL_S": "0.2",
            # Generous against false staleness when CI machines are loaded (workers are niced).
            "PRIVAUDIT_STALE_AFTER_S": "4",
            "PRIVAUDIT_POLL_INTERVAL_S": "0.05",
            "PRIVAUDIT_SSE_POLL_INTERVAL_S": "0.05",
            "PRIVAUDIT_CANCEL_GRACE_S": "1.0",
            "PRIVAUDIT_AUTH_CACHE_TTL_S": "1.0",
        }
        env.update({f"PRIVAUDIT_{key.upper()}": str(value) for key, value in self.settings.items()})
        return env

    def start(self, timeout: float = 30.0) -> LiveServer:
        return self.spawn().wait_healthy(timeout)

    def spawn(self) -> LiveServer:
        """Start the process without waiting (start several, then wait for each)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with (self.data_dir / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [str(PRIVAUDIT), "serve", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill() takes the workers too
            )
        return self

    def wait_healthy(self, timeout: float = 30.0) -> LiveServer:
        """Wait until the spawned server answers its health check."""
        assert self.process is not None, "spawn() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not become healthy:\n{self.log()}")

    def log(self) -> str:
        path = self.data_dir / "server.log"
        return path.read_text(errors="replace")[-5000:] if path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the server, its workers and their job processes (a crash)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop gracefully (SIGTERM), as an operator would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    def create_key(self, tenant: str, scopes: list[str] | None = None) -> str:
        from privaudit.api.db import Database, upgrade_schema
        from privaudit.api.keys import create_key
        from privaudit.api.settings import Settings

        settings = Settings(data_dir=self.data_dir, database_url=self.database_url)
        database = Database(settings.resolved_database_url, pooled=False)
        try:
            upgrade_schema(database)
            with database.session() as session:
                key, _row = create_key(session, tenant=tenant, scopes=scopes)
        finally:
            database.dispose()
        return key

    def stream_state(self, stream_id: str, replace: dict[str, Any] | None = None) -> dict[str, Any]:
        """The stored state of a stream (its JSON), read from the database directly;
        with ``replace``, write that state instead first (to forge one in a test)."""
        import json

        from sqlalchemy import select, update

        from privaudit.api.db import Database
        from privaudit.api.models import Stream
        from privaudit.api.settings import Settings

        settings = Settings(data_dir=self.data_dir, database_url=self.database_url)
        database = Database(settings.resolved_database_url, pooled=False)
        try:
            if replace is not None:
                with database.engine.begin() as connection:
                    connection.execute(
                        update(Stream)
                        .where(Stream.id == stream_id)
                        .values(state=json.dumps(replace))
                    )
            with database.engine.connect() as connection:
                text = connection.execute(
                    select(Stream.state).where(Stream.id == stream_id)
                ).scalar()
        finally:
            database.dispose()
        assert text is not None
        loaded: dict[str, Any] = json.loads(text)
        return loaded

    def client(self, key: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0)


def create_postgres_database(url: str, prefix: str) -> str:
    """A new, empty database on the PostgreSQL server of ``url``; returns its URL."""
    import psycopg

    name = f"{prefix}_{time.time_ns() // 1000}"
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return url.rsplit("/", 1)[0] + f"/{name}"


def wait_for_status(
    client: httpx.Client, job_id: str, statuses: set[str], timeout: float = 30.0
) -> dict[str, Any]:
    """Poll a job until its status is in ``statuses``."""
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job.get("status") in statuses:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {statuses}; last seen: {job}")
