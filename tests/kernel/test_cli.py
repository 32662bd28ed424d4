"""The privaudit command line, run as a user would."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from privaudit import __version__

PRIVAUDIT = Path(sys.executable).with_name("privaudit")


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PRIVAUDIT_DATA_DIR": str(cwd / "data"), "PYTHONSAFEPATH": "1"}
    return subprocess.run(
        [str(PRIVAUDIT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_version(tmp_path: Path) -> None:
    result = run("version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == __version__


def test_keys_create_prints_the_key_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    result = run("keys", "create", "--tenant", "acme", "--scopes", "jobs:read", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    key = next(line for line in result.stdout.splitlines() if line.startswith("pa_"))
    key_id, secret = key.split("_")[1], key.split("_", 2)[2]
    database = (tmp_path / "data" / "privaudit.db").read_bytes()
    assert key_id.encode() in database
    assert secret.encode() not in database
    with sqlite3.connect(tmp_path / "data" / "privaudit.db") as connection:
        (scopes,) = connection.execute("SELECT scopes FROM api_keys").fetchone()
    assert scopes == '["jobs:read"]'

    listed = run("keys", "list", cwd=tmp_path)
    assert key_id in listed.stdout
    assert secret not in listed.stdout
    assert run("keys", "revoke", key_id, cwd=tmp_path).returncode == 0


def test_errors_are_one_line_with_a_code_and_exit_2(tmp_path: Path) -> None:
    result = run("keys", "create", "--tenant", "Not A Name", cwd=tmp_path)
    assert result.returncode == 2
    assert "[bad_parameter]" in result.stderr
    assert "Traceback" not in result.stderr
    unknown_scope = run("keys", "create", "--tenant", "acme", "--scopes", "root", cwd=tmp_path)
    assert unknown_scope.returncode == 2
    assert "unknown scopes" in unknown_scope.stderr
    revoke_missing = run("keys", "revoke", "nope", cwd=tmp_path)
    assert revoke_missing.returncode == 2
    assert "[not_found]" in revoke_missing.stderr


def test_bad_settings_are_reported_not_raised(tmp_path: Path) -> None:
    env = {**os.environ, "PRIVAUDIT_PORT": "not-a-port", "PYTHONSAFEPATH": "1"}
    result = subprocess.run(
        [str(PRIVAUDIT), "db", "upgrade"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "[bad_configuration]" in result.stderr
    assert "Traceback" not in result.stderr


def test_usage_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    result = run("keys", "create", cwd=tmp_path)  # --tenant missing
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
