"""A stream survives SIGKILL of its server: no noise redrawn, no item counted twice.

The server draws its noise from the CSPRNG, so the test cannot seed it. Instead it
recovers the noise the server used from the releases and the stored state, replays
the whole item sequence through one uninterrupted local counter fed with exactly that
noise, and requires every release and the final stored state to match bit for bit,
and the state stored at the kill to match the replay at the same point. A node
released before the kill and given new noise after it would break these equalities
(the final stream of 31 items keeps the node (0, 16], completed before the kill, in
use to the end).
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from live import LiveServer, create_postgres_database
from stream_crash import HOLD_AT, KILL_AFTER, TOTAL, assert_counted_once, kill_mid_stream

import privaudit.api.routes.streams  # noqa: F401  (registers the streams scopes for new keys)
from privaudit import simulation_generator
from privaudit.api.client import ServiceError, StreamClient
from privaudit.mechanisms.continual import (
    BinaryTreeCounter,
    ContinualCounter,
    CounterState,
    MatrixFactorizationCounter,
)
from privaudit.mechanisms.continual._toeplitz import COEFFICIENT_BITS


def stored_state(server: LiveServer, stream_id: str) -> CounterState:
    return CounterState.from_dict(server.stream_state(stream_id))


def tree_noise(counter: BinaryTreeCounter, items: list[float], releases: list[float]) -> list[int]:
    """The noise of the node completed at each t: R_t = R_(t - lowbit t) + noisy node."""
    scale = 2.0**counter.grid_bits
    units = [0] + [int(value * scale) for value in releases]  # exact: |units| < 2^53
    snapped = [0] + [round(x * scale) for x in items]
    noise = []
    for t in range(1, len(items) + 1):
        low = t & -t
        exact = sum(snapped[t - low + 1 : t + 1])
        noise.append(units[t] - units[t - low] - exact)
    return noise


def toeplitz_noise(counter: MatrixFactorizationCounter, final: CounterState) -> list[int]:
    """z_t = y_t - (C x)_t, from the stored measurements y and snapped inputs x."""
    q = np.rint(counter.strategy_coefficients * 2.0**COEFFICIENT_BITS).astype(int).tolist()
    x = final.arrays["inputs"]
    y = final.arrays["measurements"]
    noise = []
    for t in range(1, len(x) + 1):
        strategy_row = sum(int(q[t - s]) * int(x[s - 1]) for s in range(1, t + 1))  # type: ignore[arg-type]
        noise.append(int(y[t - 1]) - strategy_row)  # type: ignore[arg-type]
    return noise


def send_until_cut(
    stream: StreamClient, items: list[float], held: threading.Event
) -> dict[int, Any]:
    """Send one batch per item (key b-i) until the server dies; hold at HOLD_AT."""
    answers: dict[int, Any] = {}
    stream.retries = 1
    for index, item in enumerate(items):
        if index == HOLD_AT:
            held.wait(timeout=60)
        try:
            answers[index] = stream.append([item], key=f"b-{index}")
        except (httpx.TransportError, ServiceError):
            break
    return answers


@pytest.mark.parametrize(
    ("mechanism", "backend"),
    [
        ("continual.tree", "sqlite"),
        pytest.param("continual.sqrt_toeplitz", "postgresql", marks=pytest.mark.postgres),
    ],
)
def test_sigkill_mid_stream_redraws_no_noise_and_counts_nothing_twice(
    tmp_path: Path, request: pytest.FixtureRequest, mechanism: str, backend: str
) -> None:
    url = ""
    if backend == "postgresql":
        url = create_postgres_database(request.getfixturevalue("postgres_url"), "streams")
    server = LiveServer(
        data_dir=tmp_path / "server", database_url=url, settings={"job_workers": 0}
    ).start()
    noise_choice = {"epsilon": 1.0} if mechanism == "continual.tree" else {"noise_multiplier": 1.0}
    items = simulation_generator(3).random(TOTAL).tolist()
    try:
        key = server.create_key("streamer")
        stream = StreamClient.create(
            base_url=server.url, api_key=key, mechanism=mechanism, horizon=200, **noise_choice
        )
        first_answers = kill_mid_stream(
            server, stream, lambda held: send_until_cut(stream, items, held)
        )
        at_kill = stored_state(server, stream.stream_id)
        stream.close()  # its connection died with the server: close it, not the GC
        server.start()
        stream = StreamClient(base_url=server.url, api_key=key, stream_id=stream.stream_id)
        landed = stream.info(limit=0)["items"]
        assert at_kill.t == landed
        assert KILL_AFTER <= landed <= HOLD_AT, landed  # the kill cut the stream
        # The client does not know which batches landed: it sends them all again.
        answers = {i: stream.append([item], key=f"b-{i}") for i, item in enumerate(items)}
        releases = stream.releases()
        info = stream.info(limit=0)
        final = stored_state(server, stream.stream_id)
        stream.close()
    finally:
        server.kill()

    assert_counted_once(info, releases, answers, first_answers, landed)
    values = [r["value"] for r in releases]

    # One uninterrupted counter fed with the noise the server drew reproduces it all.
    cls = BinaryTreeCounter if mechanism == "continual.tree" else MatrixFactorizationCounter
    fresh = cls(T=200, draw_ahead=1, **noise_choice)
    if isinstance(fresh, BinaryTreeCounter):
        noise = tree_noise(fresh, items, values)
    else:
        assert isinstance(fresh, MatrixFactorizationCounter)
        noise = toeplitz_noise(fresh, final)
    replay: ContinualCounter = cls.from_state(
        dataclasses.replace(fresh.state(), pending_noise=tuple(noise)), draw_ahead=1
    )
    before = replay.push_many(items[:landed])
    assert dataclasses.replace(replay.state(), pending_noise=()) == at_kill
    after = replay.push_many(items[landed:])
    assert np.concatenate([before, after]).tolist() == values
    assert replay.state() == final
