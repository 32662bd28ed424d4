"""Membership audits over real HTTP: multipart submission checked before queueing,
progress, reports in three formats, tenants, scopes, and every refusal."""

from __future__ import annotations

import io
import json
import pickle  # noqa: TID251  (only to upload a pickle that must be refused)
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from audit_configs import signals_config
from live import LiveServer
from membership_planted import planted

import privaudit.api.routes.audits  # noqa: F401  (registers the audits:* scopes)
from privaudit.attacks.membership import parse_audit_config, run_audit
from privaudit.reports import parse_report

TERMINAL = {"succeeded", "failed", "cancelled"}
SIGNALS_CONFIG = signals_config(
    attacks=["loss", {"attack": "rmia", "params": {"online": False}}],
    seed=5,
    gates={"max_auc": 0.99},
)


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


@pytest.fixture(scope="module")
def signals_npz() -> bytes:
    data = planted(n=600, n_reference=8, seed=11)
    return npz_bytes(signals=data.signals, keep=data.keep, labels=data.labels)


@pytest.fixture
def client(server: LiveServer, tenant_a_key: str) -> Iterator[httpx.Client]:
    with server.client(tenant_a_key) as client:
        yield client


def submit(
    client: httpx.Client,
    config: dict[str, Any] | str | None,
    artifacts: dict[str, bytes] | None = None,
    **headers: str,
) -> httpx.Response:
    files: list[tuple[str, tuple[str | None, bytes | str, str]]] = []
    if config is not None:
        text = config if isinstance(config, str) else json.dumps(config)
        files.append(("config", (None, text, "application/json")))
    for name, data in (artifacts or {}).items():
        files.append((name, (name, data, "application/octet-stream")))
    return client.post("/v1/audits", files=files, headers=headers)


def wait_for_audit(client: httpx.Client, audit_id: str, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    audit: dict[str, Any] = {}
    while time.monotonic() < deadline:
        audit = client.get(f"/v1/audits/{audit_id}").json()
        if audit["status"] in TERMINAL:
            return audit
        time.sleep(0.1)
    raise AssertionError(f"audit {audit_id} did not finish; last seen: {audit}")


def audit_jobs(client: httpx.Client) -> list[str]:
    listed = client.get("/v1/jobs", params={"kind": "audit.membership", "limit": 1000})
    return [job["id"] for job in listed.json()["items"]]


def test_a_signals_audit_is_queued_runs_and_serves_its_report(
    client: httpx.Client, server: LiveServer, signals_npz: bytes, tmp_path: Path
) -> None:
    response = submit(client, SIGNALS_CONFIG, {"signals.npz": signals_npz})
    assert response.status_code == 202, response.text
    audit = response.json()
    assert response.headers["location"] == f"/v1/audits/{audit['id']}"
    assert audit["status"] == "queued" and audit["config"]["seed"] == 5
    (artifact,) = audit["artifacts"]
    assert artifact["name"] == "signals.npz" and artifact["size_bytes"] == len(signals_npz)
    # Stored once, by SHA-256, under the tenant's own directory.
    stored = list((server.data_dir / "artifacts").glob(f"*/blobs/sha256/{artifact['sha256']}"))
    assert len(stored) == 1 and stored[0].read_bytes() == signals_npz

    done = wait_for_audit(client, audit["id"])
    assert done["status"] == "succeeded", done
    assert done["progress"]["stage"] == "render report"
    assert done["result"]["verdict"] == "pass" and done["result"]["models"]["total"] == 0

    reports = {}
    for name, media_type in [
        ("json", "application/json"),
        ("html", "text/html; charset=utf-8"),
        ("md", "text/markdown; charset=utf-8"),
    ]:
        got = client.get(f"/v1/audits/{audit['id']}/report", params={"format": name})
        assert got.status_code == 200 and got.headers["content-type"] == media_type
        reports[name] = got.text
    assert "<svg" in reports["html"] and reports["md"].startswith("### ")
    report = parse_report(reports["json"])
    # The service's figures are those of the same config run locally on the same file.
    local = tmp_path / "signals.npz"
    local.write_bytes(signals_npz)
    expected = run_audit(parse_audit_config(SIGNALS_CONFIG), artifacts={"signals.npz": local})
    for ours, theirs in zip(report.attacks, expected.report.attacks, strict=True):
        assert ours.name == theirs.name and ours.metrics == theirs.metrics
        assert ours.epsilon == theirs.epsilon

    # After the end, the event stream replays the final state once and closes.
    with client.stream("GET", f"/v1/audits/{audit['id']}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        text = "".join(stream.iter_text())
    events = [line for line in text.splitlines() if line.startswith("data:")]
    assert "event: audit" in text and len(events) == 1
    assert json.loads(events[0][5:])["status"] == "succeeded"

    # The same request with the same Idempotency-Key is the same audit.
    first = submit(
        client, SIGNALS_CONFIG, {"signals.npz": signals_npz}, **{"Idempotency-Key": "a1"}
    )
    again = submit(
        client, SIGNALS_CONFIG, {"signals.npz": signals_npz}, **{"Idempotency-Key": "a1"}
    )
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json()["id"] == again.json()["id"]
    client.post(f"/v1/audits/{first.json()['id']}/cancel")


def test_the_report_is_409_until_the_audit_succeeds_and_audits_can_be_cancelled(
    client: httpx.Client,
) -> None:
    config = {
        "version": 1,
        "inputs": {"mode": "train", "dataset": {"builtin": "digits"}},
        "attacks": ["loss"],
        "reference_models": 32,
    }
    audit = submit(client, config).json()
    report = client.get(f"/v1/audits/{audit['id']}/report")
    assert report.status_code == 409
    assert report.headers["content-type"] == "application/problem+json"
    assert "its report exists once it succeeded" in report.json()["detail"]
    cancelled = client.post(f"/v1/audits/{audit['id']}/cancel")
    assert cancelled.status_code == 202
    assert cancelled.json()["status"] in {"cancelled", "cancelling"}
    assert wait_for_audit(client, audit["id"])["status"] == "cancelled"
    assert client.get(f"/v1/audits/{audit['id']}/report").status_code == 409


def test_tenants_and_scopes(
    client: httpx.Client, server: LiveServer, tenant_b_key: str, signals_npz: bytes
) -> None:
    audit = submit(client, SIGNALS_CONFIG, {"signals.npz": signals_npz}).json()
    with server.client(tenant_b_key) as other:
        for path in ("", "/report", "/events"):
            assert other.get(f"/v1/audits/{audit['id']}{path}").status_code == 404
        assert other.post(f"/v1/audits/{audit['id']}/cancel").status_code == 404
    # A job that is not an audit is not an audit.
    job = client.post("/v1/jobs", json={"kind": "test.noop", "params": {}}).json()
    assert client.get(f"/v1/audits/{job['id']}").status_code == 404
    # Audits have their own scopes.
    jobs_only = server.create_key("tenant-a", scopes=["jobs:read", "jobs:write"])
    with server.client(jobs_only) as limited:
        refused = submit(limited, SIGNALS_CONFIG, {"signals.npz": signals_npz})
        assert refused.status_code == 403 and refused.json()["scope"] == "audits:write"
        assert limited.get(f"/v1/audits/{audit['id']}").status_code == 403
    # POST /v1/jobs does not take the kind: its inputs are checked by POST /v1/audits.
    direct = client.post("/v1/jobs", json={"kind": "audit.membership", "params": {}})
    assert direct.status_code == 422
    kinds = {kind["name"]: kind for kind in client.get("/v1/job-kinds").json()}
    assert kinds["audit.membership"]["submit_route"] == "/v1/audits"
    assert kinds["audit.membership"]["resumable"] is True
    client.post(f"/v1/audits/{audit['id']}/cancel")


def _object_npz() -> bytes:
    return npz_bytes(signals=np.array([{"x": 1}], dtype=object), keep=np.zeros((1, 1)))


@pytest.mark.parametrize(
    ("config", "artifacts", "status", "message"),
    [
        (SIGNALS_CONFIG, {"signals.npz": pickle.dumps(np.zeros(3))}, 415, "Python pickle"),
        (SIGNALS_CONFIG, {"signals.npz": b"a,b\n1,2\n"}, 415, "unrecognised file format"),
        (SIGNALS_CONFIG, {"signals.npz": "OBJECT"}, 415, "which only pickle can hold"),
        (None, {"signals.npz": "GOOD"}, 422, "needs a 'config' part"),
        ("{not json", {"signals.npz": "GOOD"}, 422, "'config' part is not UTF-8 JSON"),
        ({**SIGNALS_CONFIG, "version": 2}, {"signals.npz": "GOOD"}, 422, "version: Input should"),
        ({**SIGNALS_CONFIG, "reference_models": 3}, {"signals.npz": "GOOD"}, 422,
         "reference_models: 3, but 'signals.npz' holds signals of 8"),
        (SIGNALS_CONFIG, {}, 422, "missing ['signals.npz']"),
        (SIGNALS_CONFIG, {"signals.npz": "GOOD", "x.npz": "GOOD"}, 422,
         "not named by the config: ['x.npz']"),
        (SIGNALS_CONFIG, {"signals.npz": npz_bytes(signals=np.zeros((3, 4)))}, 422,
         "missing ['keep']"),
        (SIGNALS_CONFIG, {"../up.npz": "GOOD"}, 422, "part name '../up.npz' is not allowed"),
    ],
)  # fmt: skip
def test_bad_submissions_are_refused_before_anything_is_queued(
    client: httpx.Client,
    server: LiveServer,
    signals_npz: bytes,
    config: dict[str, Any] | str | None,
    artifacts: dict[str, bytes | str],
    status: int,
    message: str,
) -> None:
    payload = {
        name: {"GOOD": signals_npz, "OBJECT": _object_npz()}.get(data, data)
        if isinstance(data, str)
        else data
        for name, data in artifacts.items()
    }
    before = audit_jobs(client)
    response = submit(client, config, payload)  # type: ignore[arg-type]
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert message in response.json()["detail"]
    assert audit_jobs(client) == before
    assert not list((server.data_dir / "artifacts").glob("*/uploads/.staging-*/*"))


def test_a_body_that_is_not_multipart_is_415(client: httpx.Client) -> None:
    response = client.post("/v1/audits", json=SIGNALS_CONFIG)
    assert response.status_code == 415 and response.json()["code"] == "unsupported_format"
    assert "multipart/form-data" in response.json()["detail"]


def test_duplicate_parts_and_truncated_bodies_are_422(client: httpx.Client) -> None:
    duplicated = client.post(
        "/v1/audits",
        files=[("config", (None, "{}")), ("config", (None, "{}"))],
    )
    assert duplicated.status_code == 422 and "appears twice" in duplicated.json()["detail"]
    truncated = client.post(
        "/v1/audits",
        content=b'--xyz\r\nContent-Disposition: form-data; name="config"\r\n\r\n{"vers',
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert truncated.status_code == 422 and "truncated" in truncated.json()["detail"]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server with tight audit limits (no job workers: nothing needs to run)."""
    live = LiveServer(
        data_dir=tmp_path_factory.mktemp("small"),
        settings={
            "job_workers": 0,
            "audit_max_config_bytes": 1024,
            "audit_max_artifact_bytes": 8192,
            "audit_max_artifacts": 2,
            "audit_max_reference_models": 4,
            "audit_max_array_bytes": 50_000,
            "audit_max_examples": 100,
        },
    ).start()
    yield live
    live.stop()


def test_every_size_a_client_controls_is_bounded(small: LiveServer) -> None:
    data = planted(n=60, n_reference=2, seed=0)
    fits = npz_bytes(signals=data.signals, keep=data.keep, labels=data.labels)
    assert len(fits) < 8192
    with small.client(small.create_key("bounded")) as client:
        assert submit(client, SIGNALS_CONFIG, {"signals.npz": fits}).status_code == 202

        big = submit(client, SIGNALS_CONFIG, {"signals.npz": fits + b"\0" * 8192})
        assert big.status_code == 413 and big.json()["code"] == "payload_too_large"
        assert big.json()["part"] == "signals.npz" and big.json()["limit_bytes"] == 8192

        padded = {**SIGNALS_CONFIG, "report": {"title": "x" * 200}}
        long_config = json.dumps(padded) + " " * 1024
        too_long = submit(client, long_config, {"signals.npz": fits})
        assert too_long.status_code == 413 and too_long.json()["part"] == "config"

        many = submit(client, SIGNALS_CONFIG, {f"{i}.npz": fits for i in range(3)})
        assert many.status_code == 422 and "at most 2 artifact parts" in many.json()["detail"]

        # Small on the wire, large once decompressed: refused from the arrays' headers.
        compressed = io.BytesIO()
        np.savez_compressed(compressed, signals=np.zeros((3, 5000)), keep=np.zeros((3, 5000)))
        assert len(compressed.getvalue()) < 8192
        refused = submit(client, SIGNALS_CONFIG, {"signals.npz": compressed.getvalue()})
        assert refused.status_code == 422 and "more than 50000 bytes" in refused.json()["detail"]

        wide = planted(n=150, n_reference=2, seed=0)
        rows = npz_bytes(signals=wide.signals, keep=wide.keep)
        many_rows = submit(client, SIGNALS_CONFIG, {"signals.npz": rows})
        assert (
            many_rows.status_code == 422
            and "150 examples; the limit is 100" in (many_rows.json()["detail"])
        )

        train = {
            "version": 1,
            "inputs": {"mode": "train", "dataset": {"builtin": "digits"}},
            "attacks": ["loss"],
            "reference_models": 5,
        }
        k = submit(client, train)
        assert k.status_code == 422 and "allows at most 4" in k.json()["detail"]
        deep = planted(n=50, n_reference=5, seed=0)
        k = submit(client, SIGNALS_CONFIG, {"signals.npz": npz_bytes(signals=deep.signals,
                                                                     keep=deep.keep)})  # fmt: skip
        assert k.status_code == 422 and "5 reference models" in k.json()["detail"]
    assert not list((small.data_dir / "artifacts").glob("*/uploads/.staging-*"))


def test_an_own_model_audit_runs_over_rest_and_a_pickle_is_refused(
    client: httpx.Client, tmp_path: Path
) -> None:
    skops_io = pytest.importorskip("skops.io")
    from sklearn.datasets import load_digits
    from sklearn.ensemble import RandomForestClassifier

    data = load_digits()
    features, labels = data.data[:300] / 16.0, data.target[:300]
    member = np.arange(300) % 2 == 0
    forest = RandomForestClassifier(n_estimators=10, random_state=0)
    forest.fit(features[member], labels[member])
    skops_io.dump(forest, tmp_path / "forest.skops")
    model = (tmp_path / "forest.skops").read_bytes()
    dataset = npz_bytes(features=features, label=labels, member=member)
    config = {
        "version": 1,
        "inputs": {
            "mode": "model",
            "model": "forest.skops",
            "dataset": "audit.npz",
            "recipe": {
                "trainer": "sklearn",
                "estimator": "random_forest",
                "params": {"n_estimators": 10},
            },
        },
        "attacks": ["loss", {"attack": "lira", "params": {"online": False}}],
        "reference_models": 4,
    }
    before = audit_jobs(client)
    refused = submit(client, config, {"forest.skops": pickle.dumps(forest), "audit.npz": dataset})
    assert refused.status_code == 415, refused.text
    assert refused.json()["format"] == "pickle" and audit_jobs(client) == before

    response = submit(client, config, {"forest.skops": model, "audit.npz": dataset})
    assert response.status_code == 202, response.text
    done = wait_for_audit(client, response.json()["id"])
    assert done["status"] == "succeeded", done
    assert done["result"]["models"] == {"total": 4, "trained": 4, "skipped": 0}
    assert done["result"]["attacks"]["loss"]["auc"] > 0.6
