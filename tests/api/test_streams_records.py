"""MaxSum and SumSelect streams over real HTTP (real server, real SQLite): records in,
private max sums or selected columns out; validation, tenants, idempotent batches, the
horizon, the refresh budget, and a SIGKILL mid-stream that redraws no noise."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from live import LiveServer
from stream_crash import HOLD_AT, KILL_AFTER, TOTAL, assert_counted_once, kill_mid_stream

import privaudit.api.routes.streams  # noqa: F401  (registers the streams scopes for new keys)
from privaudit import simulation_generator
from privaudit.api.client import ServiceError, StreamClient
from privaudit.mechanisms.continual import MaxSum, SumSelect


def _headers(key: str, batch: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}"}
    if batch is not None:
        headers["Idempotency-Key"] = batch
    return headers


def _create(server: LiveServer, key: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/streams", json=body, headers=_headers(key))


def _append(server: LiveServer, key: str, stream_id: str, body: Any, batch: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/streams/{stream_id}/items", json=body, headers=_headers(key, batch)
    )


def _records(n: int, d: int, seed: int = 3) -> np.ndarray:
    return (simulation_generator(seed).random((n, d)) < 0.6).astype(np.int64)


def _client(server: LiveServer, key: str, mechanism: str, **params: Any) -> StreamClient:
    return StreamClient.create(base_url=server.url, api_key=key, mechanism=mechanism, **params)


# --- create, append, read ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "params"),
    [
        (MaxSum, {"d": 6, "horizon": 300, "epsilon": 1.0}),
        (SumSelect, {"d": 6, "horizon": 300, "epsilon": 2.0, "delta": 1e-6, "beta": 1e-6}),
        (MaxSum, {"d": 3, "horizon": 300, "epsilon": 5.0, "strategy": "sparse-vector"}),
    ],
)
def test_a_records_stream_publishes_its_guarantee_bound_and_releases(
    server: LiveServer, tenant_a_key: str, cls: type[MaxSum | SumSelect], params: dict[str, Any]
) -> None:
    local = cls(**params)
    with _client(server, tenant_a_key, cls.name, **params) as stream:
        info = stream.stream
        assert (info["mechanism"], info["d"], info["horizon"], info["items"]) == (
            cls.name,
            params["d"],
            300,
            0,
        )
        assert info["guarantee"] == local.guarantee.to_dict()
        assert info["strategy"] == local.strategy
        assert info["error_bound"] == local.error_bound(local.beta)
        assert (info["beta"], info["delta"]) == (local.beta, local.delta)
        assert info["max_refreshes"] == local.max_refreshes
        assert (info["refreshes"], info["budget_exhausted"]) == (0, False)
        assert info["max_variance"] is None and info["sensitivity"] is None

        rows = _records(120, params["d"])
        first = stream.append_records(rows[:50], key="one")
        assert (first["first_t"], first["items"], first["remaining"]) == (1, 50, 250)
        assert first["max_refreshes"] == local.max_refreshes
        values = [r["value"] for r in first["releases"]] + stream.push_records(
            rows[50:], batch_size=40
        )
        assert [r["standard_error"] for r in first["releases"]] == [None] * 50
        info = stream.info(limit=1000)
    assert [r["t"] for r in info["releases"]] == list(range(1, 121))
    assert [r["value"] for r in info["releases"]] == values
    assert (info["items"], info["batches"]) == (120, 3)
    # The server's noise is secure, so only the stated bound can be checked. The bound
    # at beta' = 1e-9 (which the mechanism states for any beta', a larger number than
    # at the design beta) holds at every step at once with probability >= 1 - 1e-9:
    # false failures below 3e-9 per run over the three cases.
    bound = local.error_bound(1e-9)
    sums = np.cumsum(rows, axis=0)
    top = sums.max(axis=1)
    if cls is MaxSum:
        assert all(isinstance(v, float) for v in values)
        assert np.all(np.abs(np.asarray(values) - top) <= bound)
    else:
        assert all(isinstance(v, int) and 0 <= v < params["d"] for v in values)
        assert np.all(top - sums[np.arange(120), values] <= bound)


def test_hold_keeps_the_counts_and_the_sparse_vector_counts_its_refreshes(
    server: LiveServer, tenant_a_key: str
) -> None:
    with _client(
        server,
        tenant_a_key,
        "continual.max_sum",
        d=2,
        horizon=200,
        epsilon=50.0,
        strategy="sparse-vector",
        on_exhausted="hold",
    ) as stream:
        ones = np.ones((200, 2), dtype=np.int64)
        answer = stream.append_records(ones, key="all")
        info = stream.info(limit=0)
    # M(t) = t grows to 200 with r = 0 held: the first round fires by t = 200 unless
    # its threshold and query noises differ by more than 200 - tau, beyond 50 of their
    # scales (probability below e^-50): at least one refresh.
    local = MaxSum(d=2, horizon=200, epsilon=50.0, strategy="sparse-vector")
    scales = local.noise_scales
    assert local.threshold is not None
    assert local.threshold + 50 * (scales["threshold"] + scales["query"]) < 200
    assert 1 <= answer["refreshes"] <= answer["max_refreshes"] == local.max_refreshes
    assert (info["refreshes"], info["on_exhausted"], info["remaining"]) == (
        answer["refreshes"],
        "hold",
        0,
    )


# --- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"mechanism": "continual.max_sum", "horizon": 10, "epsilon": 1.0}, "needs d"),
        ({"mechanism": "continual.max_sum", "horizon": 10, "d": 3}, "needs epsilon"),
        (
            {"mechanism": "continual.sum_select", "horizon": 10, "d": 3, "noise_multiplier": 1.0},
            "noise_multiplier does not apply",
        ),
        ({"mechanism": "continual.tree", "horizon": 10, "epsilon": 1.0, "d": 3}, "d do not apply"),
        (
            {"mechanism": "continual.tree", "horizon": 10, "epsilon": 1.0, "strategy": "auto"},
            "strategy do not apply",
        ),
        (
            {"mechanism": "continual.max_sum", "horizon": 10, "d": 1025, "epsilon": 1.0},
            "limit of 1024",
        ),
        ({"mechanism": "continual.max_sum", "horizon": 10, "d": 0, "epsilon": 1.0}, "d"),
        ({"mechanism": "continual.max_sum", "horizon": 10, "d": 2.5, "epsilon": 1.0}, "d"),
        (
            {"mechanism": "continual.max_sum", "horizon": 10, "d": 2, "epsilon": 1.0, "delta": 1},
            "delta",
        ),
        (
            {"mechanism": "continual.max_sum", "horizon": 10, "d": 2, "epsilon": 1.0, "beta": 0},
            "beta",
        ),
        (
            {
                "mechanism": "continual.max_sum",
                "horizon": 10,
                "d": 2,
                "epsilon": 1.0,
                "strategy": "x",
            },
            "strategy",
        ),
        (
            {
                "mechanism": "continual.max_sum",
                "horizon": 10,
                "d": 2,
                "epsilon": 1.0,
                "on_exhausted": "ignore",
            },
            "on_exhausted",
        ),
        ({"mechanism": "continual.max_sum", "horizon": 2**24 + 1, "d": 2, "epsilon": 1}, "horizon"),
        (
            {
                "mechanism": "continual.max_sum",
                "horizon": 10,
                "d": 2,
                "epsilon": 1e-300,
                "strategy": "counters",
            },
            "noise scale",
        ),
        (
            {"mechanism": "continual.sum_select", "horizon": 10, "d": 2, "epsilon": 5e-324},
            "cannot be calibrated",
        ),
        (
            {
                "mechanism": "continual.max_sum",
                "horizon": 9,
                "d": 2,
                "epsilon": 1,
                "beta": 5e-324,
                "strategy": "sparse-vector",
            },
            "cannot be calibrated",
        ),
    ],
)
def test_bad_records_streams_are_422(
    server: LiveServer, tenant_a_key: str, body: dict[str, Any], where: str
) -> None:
    response = _create(server, tenant_a_key, **body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert where in response.json()["detail"], response.json()


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"records": [[0, 1, 0], [0, 2, 0]]}, "records.1.1"),
        ({"records": [[0, 1, 0], [0, -1, 0]]}, "records.1.1"),
        ({"records": [[0, 1, 0], [0, True, 0]]}, "records.1.1"),
        ({"records": [[0, 1, 0], [0, "1", 0]]}, "records.1.1"),
        ({"records": [[0, 1, 0], [0, 1]]}, "records.1 has 2 values"),
        ({"records": [[0, 1, 0], []]}, "records.1 has 0 values"),
        ({"records": [[0, 1, 0], None]}, "records.1"),
        ({"records": []}, "records"),
        ({"items": [0.5]}, "takes records"),
        ({"items": [0.5], "records": [[0, 1, 0]]}, "exactly one of items"),
        ({}, "exactly one of items"),
    ],
)
def test_one_bad_record_rejects_the_whole_batch(
    server: LiveServer, tenant_a_key: str, body: Any, where: str
) -> None:
    with _client(
        server, tenant_a_key, "continual.sum_select", d=3, horizon=20, epsilon=1.0
    ) as stream:
        response = _append(server, tenant_a_key, stream.stream_id, body, "bad")
        assert response.status_code == 422, response.text
        assert where in response.json()["detail"], response.json()
        info = stream.info()
        assert (info["items"], info["batches"]) == (0, 0)
        # The key of a refused batch was not spent.
        assert stream.append_records([[1, 0, 0]], key="bad")["first_t"] == 1


def test_a_counter_stream_refuses_records(server: LiveServer, tenant_a_key: str) -> None:
    with _client(server, tenant_a_key, "continual.tree", horizon=20, epsilon=1.0) as stream:
        response = _append(server, tenant_a_key, stream.stream_id, {"records": [[1]]}, "r")
        assert response.status_code == 422
        assert "takes items" in response.json()["detail"]
        assert stream.info()["items"] == 0


def test_the_service_limits_on_columns_cells_and_state(tmp_path: Path) -> None:
    live = LiveServer(
        data_dir=tmp_path,
        settings={
            "job_workers": 0,
            "stream_max_columns": 16,
            "stream_max_cells_per_batch": 20,
            "stream_max_state_numbers": 100,
        },
    ).start()
    try:
        key = live.create_key("limits")
        wide = _create(
            live, key, mechanism="continual.max_sum", horizon=10, d=17, epsilon=1.0
        ).json()
        assert (wide["code"], wide["limit"]) == ("limit_exceeded", 16)
        # Tree counters of 16 columns over T = 2^20 keep 16 * 22 numbers > 100.
        deep = _create(
            live,
            key,
            mechanism="continual.max_sum",
            horizon=2**20,
            d=16,
            epsilon=1.0,
            strategy="counters",
        ).json()
        assert deep["code"] == "limit_exceeded" and "strategy=sparse-vector" in deep["detail"]
        with _client(live, key, "continual.max_sum", d=4, horizon=50, epsilon=1.0) as stream:
            big = _append(live, key, stream.stream_id, {"records": [[1, 0, 0, 1]] * 6}, "big")
            assert big.status_code == 422
            assert "at most 20 record cells" in big.json()["detail"]
            assert len(stream.push_records(np.ones((10, 4)), batch_size=5)) == 10
    finally:
        live.stop()


# --- tenants, idempotency, horizon -------------------------------------------------------


def test_records_streams_are_tenant_scoped(
    server: LiveServer, tenant_a_key: str, tenant_b_key: str
) -> None:
    with _client(server, tenant_a_key, "continual.max_sum", d=2, horizon=9, epsilon=1.0) as mine:
        with pytest.raises(ServiceError) as caught:
            StreamClient(base_url=server.url, api_key=tenant_b_key, stream_id=mine.stream_id)
        assert caught.value.status == 404
        response = _append(server, tenant_b_key, mine.stream_id, {"records": [[1, 1]]}, "x")
        assert response.status_code == 404 and response.json()["code"] == "not_found"
        assert mine.info()["items"] == 0


def test_a_replayed_batch_gets_the_same_releases_and_counts_nothing_twice(
    server: LiveServer, tenant_a_key: str
) -> None:
    with _client(
        server, tenant_a_key, "continual.sum_select", d=4, horizon=30, epsilon=1.0
    ) as stream:
        rows = _records(6, 4)
        first = stream.append_records(rows[:4], key="k1")
        stream.append_records(rows[4:], key="k2")
        again = stream.append_records(rows[:4], key="k1")
        assert again["duplicate"] is True and again["releases"] == first["releases"]
        assert again["items"] == 6
        with pytest.raises(ServiceError) as caught:
            stream.append_records(rows[1:5], key="k1")
        assert caught.value.status == 409 and caught.value.problem["first_t"] == 1
        with pytest.raises(ServiceError) as caught:  # the same numbers as items: another batch
            stream.append(rows[:4].ravel(), key="k1")
        assert caught.value.status == 409
        info = stream.info()
    assert (info["items"], info["batches"]) == (6, 2)


def test_the_horizon_is_enforced_with_the_number_of_records_left(
    server: LiveServer, tenant_a_key: str
) -> None:
    with _client(server, tenant_a_key, "continual.max_sum", d=2, horizon=5, epsilon=1.0) as stream:
        stream.append_records([[1, 0]] * 3, key="a")
        with pytest.raises(ServiceError) as caught:
            stream.append_records([[1, 0]] * 3, key="b")
        problem = caught.value.problem
        assert caught.value.status == 422 and problem["code"] == "limit_exceeded"
        assert (problem["horizon"], problem["items"], problem["remaining"]) == (5, 3, 2)
        assert "2 more fit" in problem["detail"]
        assert stream.append_records([[1, 0]] * 2, key="b")["remaining"] == 0


# --- the refresh budget ------------------------------------------------------------------


def _spend_the_budget(server: LiveServer, stream: StreamClient) -> int:
    """Forge the stored state to 'all K refreshes made, ν = 0' (a valid state that the
    stated bound makes unlikely, never impossible); its next refresh runs out."""
    state = server.stream_state(stream.stream_id)
    k = stream.info(limit=0)["max_refreshes"]
    state["arrays"]["refreshes"] = [k]
    state["arrays"]["threshold_noise"] = [0]
    server.stream_state(stream.stream_id, replace=state)
    return int(k)


def test_a_batch_in_which_the_budget_runs_out_is_409_stored_and_replayed(
    server: LiveServer, tenant_a_key: str
) -> None:
    params = {"d": 3, "horizon": 64, "epsilon": 30.0, "strategy": "sparse-vector"}
    local = MaxSum(**params)
    # With ν = 0 and r = 0 the round fires at the first t with t + η_t >= τ, by t = 64
    # unless η_64 < -(64 - τ), beyond 50 query noise scales (probability below e^-50).
    assert local.threshold is not None
    assert local.threshold + 50 * local.noise_scales["query"] < 64
    with _client(server, tenant_a_key, "continual.max_sum", **params) as stream:
        k = _spend_the_budget(server, stream)
        ones = np.ones((64, 3), dtype=np.int64)
        with pytest.raises(ServiceError) as caught:
            stream.append_records(ones, key="fire")
        problem = caught.value.problem
        assert caught.value.status == 409 and problem["reason"] == "refresh_budget_exhausted"
        applied = problem["applied"]
        assert 1 <= applied < 64 and len(problem["releases"]) == applied - 1
        assert (problem["refreshes"], problem["max_refreshes"]) == (k, k)
        info = stream.info(limit=1000)
        assert (info["items"], info["batches"], info["budget_exhausted"]) == (applied, 1, True)
        assert info["releases"] == problem["releases"]
        with pytest.raises(ServiceError) as again:  # a retry gets the same answer
            stream.append_records(ones, key="fire")
        assert again.value.status == 409 and again.value.problem == problem
        with pytest.raises(ServiceError) as later:  # later batches apply nothing
            stream.append_records(ones[:1], key="later")
        assert later.value.status == 409 and later.value.problem["applied"] == 0
        assert stream.info(limit=0)["items"] == applied


def test_hold_keeps_releasing_the_last_answer_after_the_budget_runs_out(
    server: LiveServer, tenant_a_key: str
) -> None:
    params = {"d": 3, "horizon": 64, "epsilon": 30.0, "strategy": "sparse-vector"}
    with _client(server, tenant_a_key, "continual.max_sum", on_exhausted="hold", **params) as s:
        _spend_the_budget(server, s)
        values = s.push_records(np.ones((64, 3), dtype=np.int64), batch_size=64)
        info = s.info(limit=0)
    assert len(values) == 64 and values == [0.0] * 64  # r = 0 held: no refresh was left
    assert (info["budget_exhausted"], info["items"]) == (True, 64)


# --- a crash mid-stream ------------------------------------------------------------------

D = 4
PARAMS = {"d": D, "horizon": 200, "epsilon": 1.0, "strategy": "counters"}


def _send_until_cut(
    server: LiveServer,
    stream: StreamClient,
    rows: np.ndarray,
    held: threading.Event,
    states: dict[int, dict[str, Any]],
) -> dict[int, Any]:
    """One record per batch (key b-i), reading the stored state after each answer, until
    the server dies; hold at HOLD_AT."""
    answers: dict[int, Any] = {}
    stream.retries = 1
    for index, row in enumerate(rows):
        if index == HOLD_AT:
            held.wait(timeout=60)
        try:
            answers[index] = stream.append_records([row], key=f"b-{index}")
        except (httpx.TransportError, ServiceError):
            break
        state = server.stream_state(stream.stream_id)
        states[state["t"]] = state
    return answers


def test_sigkill_mid_stream_redraws_no_noise_and_counts_nothing_twice(tmp_path: Path) -> None:
    # The server's noise is secure, so the test recovers it: after step t the state
    # holds the noise of the node completed at t (height ctz(t)); one uninterrupted
    # local MaxSum fed exactly that noise must reproduce every release and both stored
    # states. A node released before the kill (the height-4 node (0, 16], used to the
    # end) given new noise after it would break these equalities.
    server = LiveServer(data_dir=tmp_path / "server", settings={"job_workers": 0}).start()
    rows = _records(TOTAL, D, seed=8)
    states: dict[int, dict[str, Any]] = {}
    try:
        key = server.create_key("streamer")
        stream = _client(server, key, "continual.max_sum", **PARAMS)
        first_answers = kill_mid_stream(
            server, stream, lambda held: _send_until_cut(server, stream, rows, held, states)
        )
        at_kill = server.stream_state(stream.stream_id)
        stream.close()  # its connection died with the server: close it, not the GC
        server.start()
        stream = StreamClient(base_url=server.url, api_key=key, stream_id=stream.stream_id)
        landed = stream.info(limit=0)["items"]
        assert at_kill["t"] == landed
        assert KILL_AFTER <= landed <= HOLD_AT, landed  # the kill cut the stream
        states[landed] = at_kill
        # The client does not know which batches landed: it sends them all again.
        answers = {}
        for index, row in enumerate(rows):
            answers[index] = stream.append_records([row], key=f"b-{index}")
            state = server.stream_state(stream.stream_id)
            states[state["t"]] = state
        releases = stream.releases()
        info = stream.info(limit=0)
        final = server.stream_state(stream.stream_id)
        stream.close()
    finally:
        server.kill()

    assert_counted_once(info, releases, answers, first_answers, landed)
    assert sorted(states) == list(range(1, TOTAL + 1))
    assert all(not state["pending"]["node"] for state in states.values())  # draw_ahead=1

    noise: list[int] = []
    for t in range(1, TOTAL + 1):
        height = (t & -t).bit_length() - 1
        noise.extend(states[t]["arrays"]["node_noise"][height * D : (height + 1) * D])
    start = MaxSum(**PARAMS, draw_ahead=1).state().to_dict()
    start["pending"]["node"] = noise
    replay = MaxSum.from_state(start, draw_ahead=1)
    values = [replay.push(row) for row in rows[:landed]]
    assert {**replay.state().to_dict(), "pending": {"node": []}} == at_kill
    values += [replay.push(row) for row in rows[landed:]]
    assert values == [r["value"] for r in releases]
    assert replay.state().to_dict() == final


def test_a_sparse_vector_stream_keeps_its_threshold_noise_and_answer_across_a_restart(
    tmp_path: Path,
) -> None:
    # A new server process on the same database continues the schedule from the stored
    # state: the held index, the refresh count and the round's threshold noise ν. With
    # column 1 held and leading, records of all ones keep its gap at 0, so a refresh
    # after the restart needs η_t - ν >= τ, beyond 35 noise scales (checked below;
    # probability below 160·e^-35 per run); without one, ν must be the stored one.
    local = SumSelect(d=3, horizon=400, epsilon=300.0, strategy="sparse-vector")
    scales = local.noise_scales
    assert local.threshold is not None
    assert local.threshold > 35 * (scales["threshold"] + scales["query"])
    server = LiveServer(data_dir=tmp_path / "server", settings={"job_workers": 0}).start()
    params = {"d": 3, "horizon": 400, "epsilon": 300.0, "strategy": "sparse-vector"}
    try:
        key = server.create_key("restarter")
        stream = _client(server, key, "continual.sum_select", **params)
        rows = np.zeros((120, 3), dtype=np.int64)
        rows[:, 1] = 1  # column 1 leads by 120: the held index 0 goes stale, a refresh
        chosen = stream.push_records(rows, batch_size=60)
        before = server.stream_state(stream.stream_id)
        stream.close()
        server.stop()
        server.start()
        stream = StreamClient(base_url=server.url, api_key=key, stream_id=stream.stream_id)
        assert stream.stream["refreshes"] == before["arrays"]["refreshes"][0] >= 1
        assert server.stream_state(stream.stream_id) == before
        more = stream.push_records(np.ones((40, 3), dtype=np.int64), batch_size=40)
        after = server.stream_state(stream.stream_id)
        stream.close()
    finally:
        server.kill()
    assert chosen[-1] == before["arrays"]["held"][0] == 1  # the refresh chose column 1
    assert after["arrays"]["refreshes"] == before["arrays"]["refreshes"]
    assert after["arrays"]["threshold_noise"] == before["arrays"]["threshold_noise"]
    assert more == [1] * 40 and after["t"] == 160
