"""LDP collection sessions over real HTTP: whole-batch validation, idempotent batches,
no report lost or double-counted when the server is killed mid-stream."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from live import LiveServer

from privaudit import simulation_generator
from privaudit.api.client import LDPCollector, ServiceError
from privaudit.api.routes.ldp import REPORTS_MEDIA_TYPE
from privaudit.mechanisms.ldp import Reports, _wire


@pytest.fixture
def collector(server: LiveServer, tenant_a_key: str) -> Iterator[LDPCollector]:
    with LDPCollector.create(
        base_url=server.url, api_key=tenant_a_key, protocol="ss", k=64, epsilon=2.0
    ) as made:
        yield made


def test_session_publishes_what_clients_need(collector: LDPCollector) -> None:
    session = collector.session
    assert session["protocol"] == "ss"
    assert session["params"] == {"subset_size": collector.oracle.subset_size}  # type: ignore[attr-defined]
    assert session["guarantee"]["notion"] == "pure"
    assert session["guarantee"]["epsilon"] == 2.0
    assert session["report_fields"][0]["name"] == "subsets"
    assert session["n"] == 0


def test_collected_estimate_is_close_with_honest_standard_errors(collector: LDPCollector) -> None:
    rng = simulation_generator(5)
    data = np.minimum(rng.geometric(0.2, size=40_000) - 1, 63)
    assert collector.submit(data, batch_size=10_000, rng=rng) == 40_000
    estimate = collector.estimate()
    truth = np.bincount(data, minlength=64) / data.size
    z = (np.array(estimate["frequencies"]) - truth) / np.array(estimate["standard_errors"])
    # 64 coordinates, |z| < 5 each: false failure < 64 * 5.7e-7.
    assert np.abs(z).max() < 5
    assert estimate["n"] == 40_000
    simplex = collector.estimate(postprocess="simplex")["frequencies"]
    assert min(simplex) >= 0
    assert sum(simplex) == pytest.approx(1.0)


def _post(server: LiveServer, key: str, session_id: str, data: bytes, batch: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/ldp/sessions/{session_id}/reports",
        content=data,
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": REPORTS_MEDIA_TYPE,
            "Idempotency-Key": batch,
        },
    )


def test_one_bad_report_rejects_the_whole_batch(
    server: LiveServer, tenant_a_key: str, collector: LDPCollector
) -> None:
    oracle = collector.oracle
    good = oracle.randomize(np.arange(100) % 64, rng=simulation_generator(1))
    subsets = good.arrays["subsets"].copy()
    subsets[57, 0] = 64  # one value outside the domain
    forged = bytearray(oracle.encode(good))  # cut short below
    # Re-encode with the out-of-range value by hand: bump the first field of report 57.
    forged_reports = Reports("ss", oracle.fingerprint(), {"subsets": subsets})
    with pytest.raises(Exception, match="must lie in"):
        oracle.encode(forged_reports)  # our own encoder refuses to make it
    for payload in (b"garbage", bytes(forged[:-3]), b""):
        response = _post(server, tenant_a_key, collector.session_id, payload, "bad-1")
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "bad_input_data"
    session = httpx.get(
        f"{server.url}/v1/ldp/sessions/{collector.session_id}",
        headers={"Authorization": f"Bearer {tenant_a_key}"},
    ).json()
    assert session["n"] == 0
    assert session["batches"] == 0


def test_a_report_that_is_not_a_set_rejects_the_whole_batch(
    server: LiveServer, tenant_a_key: str, collector: LDPCollector
) -> None:
    # A forged subset-selection report with ω copies of one value would count ω times
    # for it: its batch is refused whole (422, a precise message) and nothing is applied.
    oracle = collector.oracle
    good = oracle.randomize(np.arange(100) % 64, rng=simulation_generator(1))
    subsets = good.arrays["subsets"].copy()
    subsets[57] = 9
    forged = _wire.encode(oracle.fingerprint(), 100, oracle.report_schema(), {"subsets": subsets})
    response = _post(server, tenant_a_key, collector.session_id, forged, "forged-1")
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "bad_input_data"
    assert "report 57" in response.json()["detail"]
    assert "distinct and in ascending order" in response.json()["detail"]
    session = httpx.get(
        f"{server.url}/v1/ldp/sessions/{collector.session_id}",
        headers={"Authorization": f"Bearer {tenant_a_key}"},
    ).json()
    assert session["n"] == 0 and session["batches"] == 0


def test_a_retried_batch_is_counted_once_and_a_reused_key_is_a_conflict(
    server: LiveServer, tenant_a_key: str, collector: LDPCollector
) -> None:
    oracle = collector.oracle
    data = oracle.encode(oracle.randomize(np.arange(50) % 64, rng=simulation_generator(2)))
    first = _post(server, tenant_a_key, collector.session_id, data, "batch-7")
    again = _post(server, tenant_a_key, collector.session_id, data, "batch-7")
    assert first.json()["duplicate"] is False
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert again.json()["n"] == 50
    other = oracle.encode(oracle.randomize(np.arange(60) % 64, rng=simulation_generator(3)))
    conflict = _post(server, tenant_a_key, collector.session_id, other, "batch-7")
    assert conflict.status_code == 409


def test_sessions_are_tenant_scoped(
    server: LiveServer, tenant_b_key: str, collector: LDPCollector
) -> None:
    with pytest.raises(ServiceError) as caught:
        LDPCollector(base_url=server.url, api_key=tenant_b_key, session_id=collector.session_id)
    assert caught.value.status == 404


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"protocol": "nope", "k": 10, "epsilon": 1.0}, "protocol"),
        ({"protocol": "grr", "k": 1, "epsilon": 1.0}, "k"),
        ({"protocol": "grr", "k": 10, "epsilon": 0}, "epsilon"),
        ({"protocol": "grr", "k": 10, "epsilon": 1.0, "params": {"subset_size": 3}}, "params"),
        ({"protocol": "ss", "k": 10, "epsilon": 1.0, "params": {"subset_size": 0}}, "subset"),
        ({"protocol": "mss", "k": 100_000, "epsilon": 1.0}, "choose_moduli"),
    ],
)
def test_bad_sessions_are_422(
    server: LiveServer, tenant_a_key: str, body: dict[str, object], where: str
) -> None:
    response = httpx.post(
        f"{server.url}/v1/ldp/sessions",
        json=body,
        headers={"Authorization": f"Bearer {tenant_a_key}"},
    )
    assert response.status_code == 422, response.text
    assert where in response.text


def _send_until_failure(collector: LDPCollector, batches: list[bytes]) -> None:
    collector.retries = 1
    for index, batch in enumerate(batches):
        try:
            collector.post_batch(batch, key=f"b-{index}")
        except (httpx.TransportError, ServiceError):
            return
    collector.retries = 5


def collector_posted(server: LiveServer, key: str, session_id: str) -> int:
    response = httpx.get(
        f"{server.url}/v1/ldp/sessions/{session_id}", headers={"Authorization": f"Bearer {key}"}
    )
    return int(response.json()["batches"])


def test_sigkill_mid_stream_loses_and_double_counts_nothing(
    tmp_path: Path, database_url: str
) -> None:
    server = LiveServer(
        data_dir=tmp_path / "server", database_url=database_url, settings={"job_workers": 0}
    ).start()
    key = server.create_key("collector")
    rng = simulation_generator(11)
    collector = LDPCollector.create(
        base_url=server.url, api_key=key, protocol="grr", k=32, epsilon=1.0
    )
    oracle = collector.oracle
    batches = [
        oracle.encode(oracle.randomize(rng.integers(0, 32, size=500), rng=rng)) for _ in range(60)
    ]
    streaming = threading.Thread(target=_send_until_failure, args=(collector, batches))
    try:
        streaming.start()
        while collector_posted(server, key, collector.session_id) < 5:
            time.sleep(0.01)
        server.kill()  # while batches are in flight
        streaming.join(timeout=60)
        server.start()
        landed = collector_posted(server, key, collector.session_id)
        assert 5 <= landed < 60, landed  # the kill cut the stream
        # The client does not know which of its batches landed: it resends them all.
        collector.retries = 5
        for index, batch in enumerate(batches):
            collector.post_batch(batch, key=f"b-{index}")
        estimate = collector.estimate()
    finally:
        collector.close()
        server.kill()
    assert estimate["n"] == 60 * 500
    local = oracle.aggregator()
    for batch in batches:
        local.update(oracle.decode(batch))
    np.testing.assert_allclose(estimate["frequencies"], local.estimate(), rtol=0, atol=1e-12)
