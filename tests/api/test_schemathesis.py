"""Schemathesis over the full OpenAPI document of a real server: zero failures allowed.

It runs every check (status codes, content types, response schemas, negative and
positive data, ignored auth, Allow headers, ...) in the coverage, fuzzing and
stateful phases, with a fixed seed so a failure reproduces.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from live import LiveServer

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def test_openapi_contract_holds_under_schemathesis(tmp_path: Path) -> None:
    # No job workers: submitted jobs stay queued, so event streams must end by time.
    server = LiveServer(
        data_dir=tmp_path / "server", settings={"job_workers": 0, "sse_max_duration_s": 2}
    ).start()
    try:
        key = server.create_key("schemathesis")
        run = subprocess.run(
            [
                str(SCHEMATHESIS),
                "run",
                f"{server.url}/openapi.json",
                "--header",
                f"Authorization: Bearer {key}",
                "--checks",
                "all",
                "--max-examples",
                "30",
                "--workers",
                "2",
                "--seed",
                "20261122",
                "--continue-on-failure",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            env={**server.env, "SCHEMATHESIS_TELEMETRY": "false"},
        )
    finally:
        server.stop()
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    assert "passed" in run.stdout
