"""No job is lost when the service is killed mid-job (SIGKILL), on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from live import LiveServer, wait_for_status


def _wait_for_progress(client: httpx.Client, job_id: str, at_least: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        progress = client.get(f"/v1/jobs/{job_id}").json()["progress"]
        if progress and progress["done"] >= at_least:
            return
        time.sleep(0.05)
    raise AssertionError("the job never progressed")


def test_sigkill_mid_job_then_restart_loses_no_job(tmp_path: Path, database_url: str) -> None:
    server = LiveServer(data_dir=tmp_path / "server", database_url=database_url).start()
    key = server.create_key("crashy")
    try:
        with server.client(key) as client:
            resumable = client.post(
                "/v1/jobs", json={"kind": "test.steps", "params": {"steps": 12, "step_s": 0.25}}
            ).json()
            fragile = client.post(
                "/v1/jobs", json={"kind": "test.sleep", "params": {"steps": 200, "step_s": 0.1}}
            ).json()
            _wait_for_progress(client, resumable["id"], 3)
            _wait_for_progress(client, fragile["id"], 1)
            queued = client.post("/v1/jobs", json={"kind": "test.noop", "params": {}}).json()

        server.kill()  # SIGKILL to the whole process group: server, worker, job processes

        server.start()
        with server.client(key) as client:
            # Both running jobs are still there, as running, before the reaper acts.
            listed = {job["id"]: job for job in client.get("/v1/jobs").json()["items"]}
            assert {resumable["id"], fragile["id"], queued["id"]} <= set(listed)

            done = wait_for_status(client, resumable["id"], {"succeeded", "failed"}, timeout=60)
            assert done["status"] == "succeeded", done
            assert done["attempts"] == 2
            assert client.get(f"/v1/jobs/{resumable['id']}/result").json()["attempt"] == 2

            failed = wait_for_status(client, fragile["id"], {"failed"}, timeout=30)
            assert failed["error"]["code"] == "worker_lost"
            assert "not resumable" in failed["error"]["message"]
            assert "heartbeat" in failed["error"]["message"]

            assert wait_for_status(client, queued["id"], {"succeeded"})["status"] == "succeeded"
    finally:
        server.kill()

    # The resumed run skipped finished units: at most the unit in flight at the kill ran twice.
    work = next((server.data_dir / "artifacts").glob(f"*/{resumable['id']}"))
    executed = [int(line) for line in (work / "executions.log").read_text().split()]
    assert sorted(set(executed)) == list(range(12))
    assert len(executed) <= 13
    assert (work / "attempts.log").read_text().split() == ["1", "2"]
