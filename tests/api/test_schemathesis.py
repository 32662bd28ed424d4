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


# Some operations take input whose validity JSON Schema cannot state, so that
# positive_data_acceptance would demand a 2xx for input the service must refuse:
# - a reports body is bytes in the wire format (JSON Schema can only say "binary");
# - a session's protocol options depend on each other and on k (a subset size below
#   k, a prime q, pairwise coprime moduli);
# - an epsilon estimate takes counts or scores (not both), scores need both classes,
#   and the options that apply depend on which;
# - a public context and an encrypted query are bytes in the vector-search wire format,
#   and a batch of vectors must have the collection's dimension (and ids not yet used);
# - a stream takes exactly one of epsilon and noise_multiplier, and its horizon and
#   noise scale are bounded together (state size, the samplers' range);
# - a batch of items must fit in what is left of its stream's horizon;
# - an audit's config is checked against its uploaded artifacts (shapes, K, content).
# That one check is off for those operations; every other check runs on them.
SEMANTIC_INPUT = (
    "^(/v1/ldp/sessions(/[^/]+/reports)?|/v1/estimates/epsilon"
    "|/v1/vector/contexts|/v1/vector/collections/[^/]+/(vectors|search)"
    "|/v1/streams(/[^/]+/items)?|/v1/audits)$"
)


def _schemathesis(url: str, key: str, cwd: Path, env: dict[str, str], *extra: str) -> str:
    run = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{url}/openapi.json",
            "--header",
            f"Authorization: Bearer {key}",
            "--max-examples",
            "30",
            "--workers",
            "1",
            "--seed",
            "20261122",
            "--continue-on-failure",
            *extra,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**env, "SCHEMATHESIS_TELEMETRY": "false"},
    )
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    assert "passed" in run.stdout
    return run.stdout


def test_openapi_contract_holds_under_schemathesis(tmp_path: Path) -> None:
    # No job workers: submitted jobs stay queued, so event streams must end by time.
    server = LiveServer(
        data_dir=tmp_path / "server", settings={"job_workers": 0, "sse_max_duration_s": 2}
    ).start()
    try:
        key = server.create_key("schemathesis")
        _schemathesis(
            server.url,
            key,
            tmp_path,
            server.env,
            "--checks",
            "all",
            "--exclude-path-regex",
            SEMANTIC_INPUT,
        )
        _schemathesis(
            server.url,
            key,
            tmp_path,
            server.env,
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--include-path-regex",
            SEMANTIC_INPUT,
        )
    finally:
        server.stop()
