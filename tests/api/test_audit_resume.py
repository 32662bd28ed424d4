"""A killed worker resumes a membership audit without retraining finished models.

Real processes throughout: ``privaudit serve`` without job workers, and ``privaudit
worker`` processes started and SIGKILLed beside it. The audit trains its target and
8 reference forests as resumable units on the local executor (worker processes of the
job's process); the worker and everything it started are killed once at least two are
done, a new worker picks the job up after its heartbeat goes stale, and the finished
audit is checked against its own counters, the done markers' modification times and a
clean run of the same config.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from audit_configs import digits_config
from live import PRIVAUDIT, LiveServer

import privaudit.api.routes.audits  # noqa: F401  (registers the audits:* scopes)
from privaudit.attacks.membership import parse_audit_config, run_audit
from privaudit.reports import parse_report

K = 8
CONFIG = digits_config(reference_models=K, trees=20, seed=4)


def start_worker(server: LiveServer) -> subprocess.Popen[bytes]:
    with (server.data_dir / "worker.log").open("ab") as log:
        return subprocess.Popen(
            [str(PRIVAUDIT), "worker"],
            env=server.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killpg takes its job processes
        )


def kill(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)


def wait_until(client: httpx.Client, audit_id: str, done: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    audit: dict[str, Any] = {}
    while time.monotonic() < deadline:
        audit = client.get(f"/v1/audits/{audit_id}").json()
        progress = audit["progress"] or {}
        if progress.get("stage") == "train models" and progress["done"] >= done:
            assert progress["total"] == K + 1
            return
        assert audit["status"] in {"queued", "running"}, audit
        time.sleep(0.05)
    raise AssertionError(f"the audit never trained {done} models; last seen: {audit}")


def test_a_killed_worker_resumes_the_audit_without_retraining(tmp_path: Path) -> None:
    server = LiveServer(data_dir=tmp_path / "server", settings={"job_workers": 0}).start()
    workers: list[subprocess.Popen[bytes]] = []
    try:
        key = server.create_key("resumer")
        with server.client(key) as client:
            files = {"config": (None, json.dumps(CONFIG), "application/json")}
            audit = client.post("/v1/audits", files=files).json()
            # The service's default executor: the models train in worker processes that
            # the job process starts (and that die with it).
            assert client.get(f"/v1/jobs/{audit['id']}").json()["params"]["executor"] == "local"
            workers.append(start_worker(server))
            wait_until(client, audit["id"], done=2)
            kill(workers[-1])  # the worker and its job process, mid-training
            time.sleep(0.5)

            units = next((server.data_dir / "artifacts").glob(f"*/{audit['id']}")) / "units"
            at_kill = {path.name: path.stat().st_mtime_ns for path in units.glob("*.done")}
            # Killed mid-training, or the test proves nothing.
            assert 2 <= len(at_kill) < K + 1, sorted(at_kill)
            assert client.get(f"/v1/audits/{audit['id']}").json()["status"] == "running"

            workers.append(start_worker(server))
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                done = client.get(f"/v1/audits/{audit['id']}").json()
                if done["status"] in {"succeeded", "failed", "cancelled"}:
                    break
                time.sleep(0.2)
            assert done["status"] == "succeeded", (done, server.log())
            assert done["attempts"] == 2
            report_text = client.get(f"/v1/audits/{audit['id']}/report").text
    finally:
        for worker in workers:
            kill(worker)
        server.stop()

    # The job's own counters: the resumed attempt reused exactly the units finished
    # before the kill and trained the rest.
    models = done["result"]["models"]
    assert done["result"]["attempt"] == 2
    assert models == {"total": K + 1, "skipped": len(at_kill), "trained": K + 1 - len(at_kill)}
    # The done markers: those written before the kill were never rewritten.
    after = {path.name: path.stat().st_mtime_ns for path in units.glob("*.done")}
    assert len(after) == K + 1
    assert {name: after[name] for name in at_kill} == at_kill

    # The resumed audit's figures are those of a clean run of the same config and seed.
    report = parse_report(report_text)
    assert f"{models['trained']} trained in this run, {len(at_kill)} reused" in report.notes[0]
    clean = run_audit(parse_audit_config(CONFIG)).report
    for resumed, fresh in zip(report.attacks, clean.attacks, strict=True):
        assert resumed.name == fresh.name
        assert resumed.metrics == fresh.metrics and resumed.epsilon == fresh.epsilon
    assert report.epsilon == clean.epsilon and report.verdict == clean.verdict
