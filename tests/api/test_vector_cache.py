"""The in-process cache of pre-encoded collections: bounded by memory, one build at a time."""

from __future__ import annotations

import threading
import time

from privaudit.api.vectors import ShardCache
from privaudit.crypto.vector_search import DataParty


class Builds:
    """A build function that counts its calls and can be slow."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls: list[str] = []
        self.delay_s = delay_s
        self._lock = threading.Lock()

    def __call__(self, name: str, version: int = 1) -> tuple[int, DataParty]:
        time.sleep(self.delay_s)
        with self._lock:
            self.calls.append(name)
        return version, DataParty(party_id=name, dimension=4)


def test_least_recently_used_shards_leave_first_within_the_bound() -> None:
    cache, builds = ShardCache(max_bytes=100), Builds()
    a = cache.get("a", 1, size_bytes=40, build=lambda: builds("a"))
    cache.get("b", 1, size_bytes=40, build=lambda: builds("b"))
    assert cache.get("a", 1, size_bytes=40, build=lambda: builds("a")) is a  # a is now recent
    cache.get("c", 1, size_bytes=40, build=lambda: builds("c"))  # 120 > 100: b leaves
    assert cache.size_bytes == 80
    cache.get("a", 1, size_bytes=40, build=lambda: builds("a"))
    cache.get("b", 1, size_bytes=40, build=lambda: builds("b"))
    assert builds.calls == ["a", "b", "c", "b"]


def test_a_shard_larger_than_the_bound_is_still_served_and_kept_alone() -> None:
    cache, builds = ShardCache(max_bytes=100), Builds()
    cache.get("small", 1, size_bytes=10, build=lambda: builds("small"))
    big = cache.get("big", 1, size_bytes=500, build=lambda: builds("big"))
    assert big.party.party_id == "big"
    assert cache.size_bytes == 500
    cache.get("big", 1, size_bytes=500, build=lambda: builds("big"))
    assert builds.calls == ["small", "big"]


def test_a_new_version_is_rebuilt_and_a_deleted_collection_forgotten() -> None:
    cache, builds = ShardCache(max_bytes=100), Builds()
    first = cache.get("a", 1, size_bytes=10, build=lambda: builds("a", 1))
    second = cache.get("a", 2, size_bytes=10, build=lambda: builds("a", 2))
    assert second is not first
    assert cache.get("a", 2, size_bytes=10, build=lambda: builds("a", 2)) is second
    cache.discard("a")
    assert cache.size_bytes == 0
    assert builds.calls == ["a", "a"]


def test_concurrent_searches_of_a_cold_collection_build_it_once() -> None:
    cache, builds = ShardCache(max_bytes=100), Builds(delay_s=0.3)
    found = []

    def search() -> None:
        found.append(cache.get("a", 1, size_bytes=10, build=lambda: builds("a")))

    threads = [threading.Thread(target=search) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert builds.calls == ["a"]
    assert all(shard is found[0] for shard in found)
