"""Durable jobs over real HTTP: submission, polling, SSE, idempotency, cancel, failures."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from live import LiveServer, wait_for_status

TERMINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture
def client(server: LiveServer, tenant_a_key: str) -> Iterator[httpx.Client]:
    with server.client(tenant_a_key) as client:
        yield client


def submit(
    client: httpx.Client, kind: str, params: dict[str, object] | None = None, **headers: str
) -> httpx.Response:
    return client.post("/v1/jobs", json={"kind": kind, "params": params or {}}, headers=headers)


def test_submit_answers_202_with_location_and_the_job_succeeds(client: httpx.Client) -> None:
    response = submit(client, "test.noop")
    assert response.status_code == 202
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert response.headers["retry-after"] == "1"
    assert job["status"] == "queued" and job["kind"] == "test.noop"
    done = wait_for_status(client, job["id"], TERMINAL)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 1 and done["finished_at"] is not None
    result = client.get(f"/v1/jobs/{job['id']}/result")
    assert result.status_code == 200
    assert result.json() == {"ok": True, "attempt": 1}


def test_progress_is_reported_with_stage_counts_and_eta(client: httpx.Client) -> None:
    job = submit(client, "test.sleep", {"steps": 20, "step_s": 0.1}).json()
    seen: dict[str, object] | None = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        current = client.get(f"/v1/jobs/{job['id']}").json()
        progress = current["progress"]
        if progress and 0 < progress["done"] < 20:
            seen = progress
            break
        time.sleep(0.05)
    assert seen is not None, "never saw intermediate progress"
    assert seen["stage"] == "sleeping" and seen["total"] == 20
    assert isinstance(seen["eta_s"], float) and 0 < seen["eta_s"] < 10
    assert wait_for_status(client, job["id"], TERMINAL)["status"] == "succeeded"


def test_server_sent_events_follow_a_job_to_its_end(client: httpx.Client) -> None:
    job = submit(client, "test.steps", {"steps": 5, "step_s": 0.1}).json()
    events = []
    with client.stream("GET", f"/v1/jobs/{job['id']}/events") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[len("data:") :]))
    statuses = [event["status"] for event in events]
    assert statuses[-1] == "succeeded"
    assert "running" in statuses
    assert all(event["id"] == job["id"] for event in events)
    # The stream ends by itself after the terminal status (the loop above returned).


def test_idempotency_key_replays_the_same_job_and_refuses_different_params(
    client: httpx.Client,
) -> None:
    first = submit(client, "test.noop", **{"Idempotency-Key": "ci-run-42"})
    again = submit(client, "test.noop", **{"Idempotency-Key": "ci-run-42"})
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    other = submit(client, "test.steps", {"steps": 2}, **{"Idempotency-Key": "ci-run-42"})
    assert other.status_code == 409
    assert other.headers["content-type"] == "application/problem+json"
    assert other.json()["code"] == "conflict"


def test_idempotency_keys_are_per_tenant(
    server: LiveServer, tenant_b_key: str, client: httpx.Client
) -> None:
    mine = submit(client, "test.noop", **{"Idempotency-Key": "shared-name"}).json()
    with server.client(tenant_b_key) as other_client:
        theirs = submit(other_client, "test.noop", **{"Idempotency-Key": "shared-name"})
    assert theirs.status_code == 202 and theirs.json()["id"] != mine["id"]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"kind": "test.steps", "params": {"steps": 2, "step_s": False}}, "step_s"),
        ({"kind": "test.steps", "params": {"steps": "2"}}, "steps"),
        ({"kind": "test.steps", "params": {"steps": 0}}, "steps"),
        ({"kind": "test.steps", "params": {"unknown": 1}}, "unknown"),
        ({"kind": "no.such.kind", "params": {}}, "kind"),
        ({"kind": "test.noop", "params": {}, "extra": 1}, "extra"),
    ],
)
def test_bad_submissions_get_a_422_problem_naming_the_field(
    client: httpx.Client, body: dict[str, object], where: str
) -> None:
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert problem["code"] == "bad_parameter" and problem["type"] == "/v1/errors/bad_parameter"
    assert where in json.dumps(problem["errors"]) or where in problem["detail"]


def test_malformed_json_is_a_422_problem(client: httpx.Client) -> None:
    response = client.post(
        "/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["code"] == "bad_parameter"


def test_a_failing_job_is_failed_with_its_error_code(client: httpx.Client) -> None:
    job = submit(client, "test.fail").json()
    done = wait_for_status(client, job["id"], TERMINAL)
    assert done["status"] == "failed"
    assert done["error"]["code"] == "bad_input_data"
    assert "bad on purpose" in done["error"]["message"]
    assert client.get(f"/v1/jobs/{job['id']}/result").status_code == 409


def test_a_crashing_job_process_is_failed_with_a_reason(client: httpx.Client) -> None:
    job = submit(client, "test.crash").json()
    done = wait_for_status(client, job["id"], TERMINAL)
    assert done["status"] == "failed"
    assert done["error"]["code"] == "worker_lost"
    assert "exit code -9" in done["error"]["message"]
    assert "not resumable" in done["error"]["message"]


def test_cancel_a_running_job_that_checks_progress(client: httpx.Client) -> None:
    job = submit(client, "test.sleep", {"steps": 100, "step_s": 0.1}).json()
    wait_for_status(client, job["id"], {"running"})
    response = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert response.status_code == 202
    assert response.json()["status"] in {"cancelling", "cancelled"}
    started = time.monotonic()
    done = wait_for_status(client, job["id"], TERMINAL)
    assert done["status"] == "cancelled"
    assert time.monotonic() - started < 5
    again = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert again.status_code == 409 and again.json()["code"] == "conflict"


def test_cancel_a_job_that_ignores_it_kills_the_process_after_the_grace_period(
    client: httpx.Client,
) -> None:
    job = submit(client, "test.stubborn", {"steps": 100, "step_s": 1.0}).json()
    deadline = time.monotonic() + 20
    while client.get(f"/v1/jobs/{job['id']}").json()["progress"] is None:  # now it ignores us
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 202
    done = wait_for_status(client, job["id"], TERMINAL, timeout=15)
    assert done["status"] == "cancelled"
    assert "grace period" in done["error"]["message"]


def test_job_listing_pages_newest_first_and_filters(client: httpx.Client) -> None:
    ids = [submit(client, "test.noop").json()["id"] for _ in range(5)]
    first = client.get("/v1/jobs", params={"kind": "test.noop", "limit": 3}).json()
    assert [job["id"] for job in first["items"]] == ids[::-1][:3]
    second = client.get(
        "/v1/jobs", params={"kind": "test.noop", "limit": 3, "cursor": first["next_cursor"]}
    ).json()
    assert [job["id"] for job in second["items"]][:2] == ids[::-1][3:5]
    bad = client.get("/v1/jobs", params={"cursor": "garbage!"})
    assert bad.status_code == 422 and bad.json()["code"] == "bad_parameter"


def test_job_kinds_are_listed_with_their_params_schema(client: httpx.Client) -> None:
    kinds = {kind["name"]: kind for kind in client.get("/v1/job-kinds").json()}
    assert kinds["test.steps"]["resumable"] is True
    assert kinds["test.sleep"]["resumable"] is False
    assert kinds["test.steps"]["params_schema"]["properties"]["steps"]["maximum"] == 200


def test_unknown_job_is_404_problem(client: httpx.Client) -> None:
    response = client.get("/v1/jobs/" + "0" * 32)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    described = client.get(response.json()["type"])
    assert described.status_code == 200 and described.json()["status"] == 404


def test_a_job_over_the_time_limit_is_killed_and_failed(tmp_path: Path) -> None:
    server = LiveServer(data_dir=tmp_path / "server", settings={"job_timeout_s": 1.5}).start()
    try:
        with server.client(server.create_key("timeouts")) as client:
            job = submit(client, "test.stubborn", {"steps": 60, "step_s": 1.0}).json()
            done = wait_for_status(client, job["id"], TERMINAL, timeout=20)
    finally:
        server.stop()
    assert done["status"] == "failed"
    assert done["error"]["code"] == "limit_exceeded"
    assert "PRIVAUDIT_JOB_TIMEOUT_S" in done["error"]["message"]
