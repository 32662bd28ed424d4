"""Continual-release streams over real HTTP: releases, paging, whole-batch validation,
idempotent batches, the horizon, tenants and scopes, and concurrent appends (SQLite and
PostgreSQL). The restart tests are in test_streams_recovery.py."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from live import LiveServer, create_postgres_database

import privaudit.api.routes.streams  # noqa: F401  (registers the streams scopes for new keys)
from privaudit.api.client import ServiceError, StreamClient
from privaudit.mechanisms.continual import (
    BinaryTreeCounter,
    BufferedToeplitzCounter,
    HonakerCounter,
)


def _headers(key: str, batch: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}"}
    if batch is not None:
        headers["Idempotency-Key"] = batch
    return headers


def _append(server: LiveServer, key: str, stream_id: str, body: Any, batch: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/streams/{stream_id}/items", json=body, headers=_headers(key, batch)
    )


@pytest.fixture
def stream(server: LiveServer, tenant_a_key: str) -> Iterator[StreamClient]:
    with StreamClient.create(
        base_url=server.url,
        api_key=tenant_a_key,
        mechanism="continual.tree",
        horizon=300,
        epsilon=1.0,
    ) as made:
        yield made


def test_a_new_stream_publishes_its_guarantee_and_error(
    server: LiveServer, tenant_a_key: str, stream: StreamClient
) -> None:
    info = stream.stream
    local = BinaryTreeCounter(T=300, epsilon=1.0)
    assert info["mechanism"] == "continual.tree"
    assert (info["horizon"], info["items"], info["remaining"], info["batches"]) == (300, 0, 300, 0)
    assert info["guarantee"]["notion"] == "pure" and info["guarantee"]["epsilon"] == 1.0
    assert info["max_variance"] == local.max_variance()
    assert info["max_standard_error"] == math.sqrt(local.max_variance())
    assert info["sensitivity"] == local.sensitivity and info["sensitivity_norm"] == "l1"
    assert info["releases"] == [] and info["next_after"] is None

    created = httpx.post(
        f"{server.url}/v1/streams",
        json={"mechanism": "continual.honaker", "horizon": 64, "noise_multiplier": 2.0},
        headers=_headers(tenant_a_key),
    )
    assert created.status_code == 201, created.text
    assert created.headers["Location"] == f"/v1/streams/{created.json()['id']}"
    assert created.json()["guarantee"]["notion"] == "zcdp"
    assert created.json()["guarantee"]["rho"] == 1 / 8
    assert (
        created.json()["max_variance"] == HonakerCounter(T=64, noise_multiplier=2.0).max_variance()
    )


def test_appended_items_get_releases_with_exact_standard_errors(stream: StreamClient) -> None:
    items = [1.0, 0.5, 0.0, 1.0, 0.25]
    batch = stream.append(items[:2], key="first")
    assert batch["duplicate"] is False
    assert (batch["first_t"], batch["items"], batch["remaining"]) == (1, 2, 298)
    more = stream.append(items[2:], key="second")
    assert more["first_t"] == 3
    releases = batch["releases"] + more["releases"]
    local = BinaryTreeCounter(T=300, epsilon=1.0)
    assert [r["t"] for r in releases] == [1, 2, 3, 4, 5]
    assert [r["standard_error"] for r in releases] == [
        math.sqrt(local.variance(t)) for t in range(1, 6)
    ]
    # The noise is the server's (secure, unseeded): each release is within 10 standard
    # errors of the true running sum. A sum of at most 3 discrete Laplace nodes passes
    # 10 sd with probability below 1e-5, so the test fails falsely below 5e-5 per run.
    truth = [sum(items[:t]) for t in range(1, 6)]
    for release, total in zip(releases, truth, strict=True):
        assert abs(release["value"] - total) < 10 * release["standard_error"]
    info = stream.info()
    assert info["releases"] == releases
    assert (info["items"], info["batches"], info["next_after"]) == (5, 2, None)


def test_releases_are_paged(stream: StreamClient) -> None:
    values = stream.push_many([0.5] * 250, batch_size=60)
    assert len(values) == 250
    first = stream.info(limit=100)
    assert [r["t"] for r in first["releases"]] == list(range(1, 101))
    assert first["next_after"] == 100
    second = stream.info(after=first["next_after"], limit=100)
    assert [r["t"] for r in second["releases"]] == list(range(101, 201))
    last = stream.info(after=second["next_after"], limit=100)
    assert [r["t"] for r in last["releases"]] == list(range(201, 251))
    assert last["next_after"] is None
    assert len(stream.info(limit=1000)["releases"]) == 200  # capped at max_page_size
    assert stream.info(limit=0)["releases"] == []
    everything = stream.releases()
    assert [r["value"] for r in everything] == values
    assert [r["t"] for r in everything] == list(range(1, 251))


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"items": [0.5, 1.5]}, "items.1"),
        ({"items": [0.5, -0.1]}, "items.1"),
        ({"items": [0.5, "0.3"]}, "items.1"),
        ({"items": [0.5, True]}, "items.1"),
        ({"items": [0.5, None]}, "items.1"),
        ({"items": []}, "items"),
        ({"items": [0.5], "extra": 1}, "extra"),
        ({}, "items"),
    ],
)
def test_one_bad_item_rejects_the_whole_batch(
    server: LiveServer, tenant_a_key: str, stream: StreamClient, body: Any, where: str
) -> None:
    response = _append(server, tenant_a_key, stream.stream_id, body, "bad")
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert where in response.json()["detail"]
    info = stream.info()
    assert (info["items"], info["batches"]) == (0, 0)
    # The key of a refused batch was not spent.
    assert (
        _append(server, tenant_a_key, stream.stream_id, {"items": [0.5]}, "bad").status_code == 200
    )


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_items_are_refused(
    server: LiveServer, tenant_a_key: str, stream: StreamClient, literal: str
) -> None:
    response = httpx.post(
        f"{server.url}/v1/streams/{stream.stream_id}/items",
        content=f'{{"items": [0.5, {literal}]}}',
        headers={**_headers(tenant_a_key, "nan"), "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert "items.1" in response.json()["detail"]
    assert stream.info()["items"] == 0


def test_a_batch_needs_a_key_and_is_bounded_in_size(
    server: LiveServer, tenant_a_key: str, stream: StreamClient
) -> None:
    missing = httpx.post(
        f"{server.url}/v1/streams/{stream.stream_id}/items",
        json={"items": [0.5]},
        headers=_headers(tenant_a_key),
    )
    assert missing.status_code == 422
    assert "Idempotency-Key" in missing.json()["detail"]
    large = _append(server, tenant_a_key, stream.stream_id, {"items": [0.0] * 10_001}, "big")
    assert large.status_code == 422
    assert large.json()["code"] == "limit_exceeded"
    assert "at most 10000 items" in large.json()["detail"]
    assert stream.info()["items"] == 0


def test_a_replayed_batch_gets_the_same_releases_and_a_reused_key_conflicts(
    stream: StreamClient,
) -> None:
    first = stream.append([0.2, 0.4], key="k1")
    stream.append([0.9], key="k2")
    again = stream.append([0.2, 0.4], key="k1")
    assert again["duplicate"] is True
    assert again["releases"] == first["releases"]  # not new noise: the same releases
    assert again["first_t"] == 1 and again["items"] == 3
    for other in ([0.3], [0.4, 0.2], [0.2, 0.4, 0.0]):
        with pytest.raises(ServiceError) as caught:
            stream.append(other, key="k1")
        assert caught.value.status == 409
        assert caught.value.problem["code"] == "conflict"
        assert caught.value.problem["first_t"] == 1
    info = stream.info()
    assert (info["items"], info["batches"]) == (3, 2)


def test_the_horizon_is_enforced_with_the_number_of_items_left(
    server: LiveServer, tenant_a_key: str
) -> None:
    with StreamClient.create(
        base_url=server.url,
        api_key=tenant_a_key,
        mechanism="continual.sqrt_toeplitz",
        horizon=5,
        noise_multiplier=1.0,
    ) as stream:
        stream.append([1.0] * 3, key="a")
        with pytest.raises(ServiceError) as caught:
            stream.append([1.0] * 3, key="b")
        problem = caught.value.problem
        assert caught.value.status == 422 and problem["code"] == "limit_exceeded"
        assert (problem["horizon"], problem["items"], problem["remaining"]) == (5, 3, 2)
        assert "2 more fit" in problem["detail"]
        last = stream.append([1.0] * 2, key="b")  # the refused key is still free
        assert last["remaining"] == 0
        with pytest.raises(ServiceError) as caught:
            stream.append([0.0], key="c")
        assert caught.value.problem["remaining"] == 0
        assert stream.append([1.0] * 2, key="b")["releases"] == last["releases"]  # a replay
        assert stream.info()["items"] == 5


def test_streams_are_tenant_scoped(
    server: LiveServer, tenant_a_key: str, tenant_b_key: str, stream: StreamClient
) -> None:
    with pytest.raises(ServiceError) as caught:
        StreamClient(base_url=server.url, api_key=tenant_b_key, stream_id=stream.stream_id)
    assert caught.value.status == 404
    response = _append(server, tenant_b_key, stream.stream_id, {"items": [1.0]}, "x")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert stream.info()["items"] == 0


def test_scopes_are_checked(server: LiveServer, stream: StreamClient) -> None:
    reader = server.create_key("tenant-a", scopes=["streams:read"])
    assert httpx.get(
        f"{server.url}/v1/streams/{stream.stream_id}", headers=_headers(reader)
    ).is_success
    refused = _append(server, reader, stream.stream_id, {"items": [1.0]}, "r")
    assert refused.status_code == 403
    assert refused.json()["scope"] == "streams:write"
    jobs_only = server.create_key("tenant-a", scopes=["jobs:read"])
    response = httpx.get(f"{server.url}/v1/streams/{stream.stream_id}", headers=_headers(jobs_only))
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"mechanism": "nope", "horizon": 10, "epsilon": 1.0}, "mechanism"),
        ({"mechanism": "continual.tree", "horizon": 0, "epsilon": 1.0}, "horizon"),
        ({"mechanism": "continual.tree", "horizon": 2**24 + 1, "epsilon": 1.0}, "horizon"),
        ({"mechanism": "continual.tree", "horizon": 10}, "exactly one"),
        (
            {"mechanism": "continual.tree", "horizon": 10, "epsilon": 1.0, "noise_multiplier": 1.0},
            "exactly one",
        ),
        ({"mechanism": "continual.tree", "horizon": 10, "epsilon": 0}, "epsilon"),
        ({"mechanism": "continual.tree", "horizon": 10, "noise_multiplier": -1}, "noise_multi"),
        ({"mechanism": "continual.tree", "horizon": 10, "epsilon": "1"}, "epsilon"),
        ({"mechanism": "continual.tree", "horizon": 10, "epsilon": 1e-300}, "noise scale"),
        ({"mechanism": "continual.tree", "horizon": 1, "noise_multiplier": 5e-324}, "ρ"),
        ({"mechanism": "continual.tree", "horizon": 9, "noise_multiplier": 1.2e308}, "noise scale"),
        (
            {"mechanism": "continual.sqrt_toeplitz", "horizon": 20_000, "noise_multiplier": 1.0},
            "horizon of at most 16384",
        ),
    ],
)
def test_bad_streams_are_422(
    server: LiveServer, tenant_a_key: str, body: dict[str, Any], where: str
) -> None:
    response = httpx.post(f"{server.url}/v1/streams", json=body, headers=_headers(tenant_a_key))
    assert response.status_code == 422, response.text
    assert where in response.json()["detail"], response.json()


def test_the_largest_tree_horizon_is_accepted(server: LiveServer, tenant_a_key: str) -> None:
    with StreamClient.create(
        base_url=server.url,
        api_key=tenant_a_key,
        mechanism="continual.honaker",
        horizon=2**24,
        epsilon=0.5,
    ) as stream:
        assert len(stream.push_many([1.0] * 1000, batch_size=1000)) == 1000
        assert stream.info(limit=0)["remaining"] == 2**24 - 1000


def test_a_blt_stream_takes_the_largest_horizon_with_constant_state(
    server: LiveServer, tenant_a_key: str
) -> None:
    # The square-root Toeplitz counter stops at T = 16384 (its state is 2T numbers);
    # its buffered fit keeps 19 numbers at any T, and describes itself in closed form.
    with StreamClient.create(
        base_url=server.url,
        api_key=tenant_a_key,
        mechanism="continual.blt",
        horizon=2**24,
        noise_multiplier=1.0,
    ) as stream:
        releases = stream.push_many([1.0] * 1000, batch_size=1000)
        assert len(releases) == 1000
        info = stream.info(limit=0)
        assert info["remaining"] == 2**24 - 1000
        local = BufferedToeplitzCounter(T=2**24, noise_multiplier=1.0)
        assert info["max_variance"] == pytest.approx(local.max_variance(), rel=1e-12)


# --- concurrency, on SQLite and PostgreSQL ---------------------------------------------


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, str]]:
    """The shared SQLite server, or a server of its own on PostgreSQL."""
    if request.param == "sqlite":
        shared: LiveServer = request.getfixturevalue("server")
        yield shared, shared.create_key("racer")
        return
    url = create_postgres_database(request.getfixturevalue("postgres_url"), "streams")
    live = LiveServer(
        data_dir=tmp_path_factory.mktemp("streams"),
        database_url=url,
        settings={"job_workers": 0},
    ).start()
    yield live, live.create_key("racer")
    live.stop()


def _race(count: int, send: Any) -> list[Any]:
    """Run ``send(i)`` for ``i < count`` in threads released together; their results."""
    start = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        start.wait()
        results[index] = send(index)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def test_concurrent_batches_take_distinct_positions(backend: tuple[LiveServer, str]) -> None:
    server, key = backend
    with StreamClient.create(
        base_url=server.url, api_key=key, mechanism="continual.tree", horizon=500, epsilon=1.0
    ) as stream:
        batches = [[(i * 7 + j) % 10 / 10 for j in range(5)] for i in range(12)]

        def send(index: int) -> dict[str, Any]:
            return stream.append(batches[index], key=f"racer-{index}")

        answers = [answer for rounds in range(3) for answer in _race(12, send)]
        info = stream.info(limit=1000)
    applied = [a for a in answers if not a["duplicate"]]
    assert len(applied) == 12  # each key applied once; its later sends were replays
    starts = sorted(a["first_t"] for a in applied)
    assert starts == list(range(1, 61, 5))  # the 12 batches tile 1..60, none overlapping
    assert (info["items"], info["batches"]) == (60, 12)
    stored = {r["t"]: r for r in info["releases"]}
    assert sorted(stored) == list(range(1, 61))
    for answer in answers:  # first answers and replays agree with what is stored
        assert answer["releases"] == [stored[r["t"]] for r in answer["releases"]]


def test_concurrent_sends_of_one_batch_apply_it_once(backend: tuple[LiveServer, str]) -> None:
    server, key = backend
    with StreamClient.create(
        base_url=server.url,
        api_key=key,
        mechanism="continual.sqrt_toeplitz",
        horizon=64,
        noise_multiplier=1.0,
    ) as stream:
        answers = _race(8, lambda _: stream.append([1.0, 0.0, 1.0], key="same"))
        info = stream.info()
    assert sorted(a["duplicate"] for a in answers) == [False] + [True] * 7
    assert all(a["releases"] == answers[0]["releases"] for a in answers)
    assert (info["items"], info["batches"]) == (3, 1)
    assert info["releases"] == answers[0]["releases"]
