"""What the streams' SIGKILL tests share: cutting a stream mid-flight, and checking that
after the restart every item was counted once and every replay gave its first releases."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from live import LiveServer

from privaudit.api.client import StreamClient

TOTAL = 31  # 11111b: the final state uses the nodes (0,16], (16,24], ..., (30,31]
KILL_AFTER = 18  # items stored before the kill is allowed (node (0, 16] is complete)
HOLD_AT = 24  # the sender waits here until the kill, so the stream is surely cut


def kill_mid_stream(
    server: LiveServer, stream: StreamClient, send: Callable[[threading.Event], dict[int, Any]]
) -> dict[int, Any]:
    """Run ``send(held)`` in a thread (it sends one batch per item and waits on ``held``
    at HOLD_AT); SIGKILL the server once KILL_AFTER items are stored, while batches are
    in flight. Return the answers the sender got before the kill."""
    held = threading.Event()
    answers: dict[int, Any] = {}
    sender = threading.Thread(target=lambda: answers.update(send(held)))
    sender.start()
    try:
        deadline = time.monotonic() + 60
        while stream.info(limit=0)["items"] < KILL_AFTER and time.monotonic() < deadline:
            time.sleep(0.01)
        server.kill()
    finally:
        held.set()
        sender.join(timeout=60)
    return answers


def assert_counted_once(
    info: dict[str, Any],
    releases: list[dict[str, Any]],
    answers: dict[int, Any],
    first_answers: dict[int, Any],
    landed: int,
) -> None:
    """Every item counted once, at its own position; replays gave the first releases."""
    assert (info["items"], info["batches"]) == (TOTAL, TOTAL)
    assert [r["t"] for r in releases] == list(range(1, TOTAL + 1))
    assert sum(answer["duplicate"] for answer in answers.values()) == landed
    for index, answer in {**answers, **first_answers}.items():
        assert answer["releases"] == [releases[index]]
