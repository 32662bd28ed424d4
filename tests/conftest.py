"""Shared fixtures: live servers, API keys, a throwaway PostgreSQL server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))

from live import LiveServer, create_postgres_database, free_port


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Libraries that write under ~ (onnxruntime, ray) must not touch the real home.
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One real server (SQLite, one job worker running two jobs at once) for the session."""
    live = LiveServer(data_dir=tmp_path_factory.mktemp("server")).start()
    yield live
    live.stop()


@pytest.fixture(scope="session")
def tenant_a_key(server: LiveServer) -> str:
    return server.create_key("tenant-a")


@pytest.fixture(scope="session")
def tenant_b_key(server: LiveServer) -> str:
    return server.create_key("tenant-b")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh database for one test's server: SQLite (the default, "") or PostgreSQL."""
    if request.param == "sqlite":
        return ""  # a SQLite file in the server's data dir
    return create_postgres_database(request.getfixturevalue("postgres_url"), "test")


def _postgres_bin() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway PostgreSQL server on loopback, started for the session.

    Skips when PostgreSQL's binaries are missing, unless PRIVAUDIT_REQUIRE_POSTGRES=1
    (set by .ci/run), where that is a failure.
    """
    if url := os.environ.get("PRIVAUDIT_TEST_POSTGRES_URL"):
        yield url
        return
    binaries = _postgres_bin()
    if binaries is None:
        message = "PostgreSQL server binaries not found (apt-get install postgresql)"
        if os.environ.get("PRIVAUDIT_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    # Not under pytest's private (0700) temp dir: the postgres user must reach it.
    root = Path(tempfile.mkdtemp(prefix="privaudit-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        run_as = ["runuser", "-u", "postgres", "--"]
        os.chmod(root, 0o755)
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    data, log = root / "data", root / "log"
    subprocess.run(
        [
            *run_as,
            str(binaries / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
    )
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off"
    subprocess.run(
        [
            *run_as,
            str(binaries / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(log),
            "-w",
            "-o",
            options,
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*run_as, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)
