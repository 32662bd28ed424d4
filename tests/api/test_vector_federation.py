"""Federated encrypted search across three real party services on loopback.

Each party is its own ``privaudit serve`` process with its own SQLite database and
API keys, holding a different shard. A querier's :class:`FederatedSearchClient`
fans encrypted queries out over HTTP; the merged top-k must equal exact plaintext
search over the union of the shards, with scores within 1e-5. A party that crashed
serves its stored vectors again and remembers the querier's spent queries; a party that
dropped the querier's context gets it again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from live import LiveServer

from privaudit import simulation_generator
from privaudit.api.vector_client import FederatedSearchClient, VectorCollection, VectorParty

DIMENSION = 32
SIZES = {"clinic": 300, "lab": 500, "registry": 200}


@dataclass
class Party:
    name: str
    server: LiveServer
    searcher_key: str
    shard: np.ndarray
    collections: dict[str, str]  # metric -> collection id


@pytest.fixture(scope="module")
def parties(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Party]]:
    root: Path = tmp_path_factory.mktemp("federation")
    servers = {
        name: LiveServer(data_dir=root / name, settings={"job_workers": 0}).spawn()
        for name in list(SIZES)[:2]
    }
    servers["registry"] = LiveServer(
        data_dir=root / "registry", settings={"job_workers": 0, "vector_max_contexts": 1}
    ).spawn()
    try:
        rng = simulation_generator(11)
        made = []
        for name, server in servers.items():
            server.wait_healthy(60)
            writer = server.create_key(f"{name}-data", ["vector:write"])
            shard = rng.normal(size=(SIZES[name], DIMENSION))
            collections = {}
            for metric in ("cosine", "squared_l2"):
                with VectorCollection.create(
                    base_url=server.url,
                    api_key=writer,
                    dimension=DIMENSION,
                    metric=metric,
                    name=f"{name}-{metric}",
                ) as collection:
                    collection.add(
                        shard, ids=[f"{name}-{i}" for i in range(len(shard))], batch_size=128
                    )
                    collections[metric] = collection.collection_id
            searcher = server.create_key(f"{name}-data", ["vector:search"])
            made.append(Party(name, server, searcher, shard, collections))
        yield made
    finally:
        for server in servers.values():
            server.stop()


def _client(parties: list[Party], metric: str) -> FederatedSearchClient:
    return FederatedSearchClient(
        parties=[
            VectorParty(
                base_url=party.server.url,
                api_key=party.searcher_key,
                collection_id=party.collections[metric],
                party_id=party.name,
            )
            for party in parties
        ]
    )


def _exact(parties: list[Party], query: np.ndarray, metric: str) -> list[tuple[str, str, float]]:
    rows = []
    for party in parties:
        if metric == "cosine":
            unit = party.shard / np.linalg.norm(party.shard, axis=1, keepdims=True)
            scores = unit @ (query / np.linalg.norm(query))
        else:
            scores = ((party.shard - query) ** 2).sum(axis=1)
        rows += [(party.name, f"{party.name}-{i}", float(s)) for i, s in enumerate(scores)]
    sign = 1 if metric == "squared_l2" else -1
    return sorted(rows, key=lambda row: sign * row[2])


def _check(client: FederatedSearchClient, parties: list[Party], query: np.ndarray, k: int) -> None:
    metric = client.querier.metric
    hits = client.search(query, k=k)
    exact = _exact(parties, query, metric)[:k]
    assert [(hit.party_id, hit.id) for hit in hits] == [(p, i) for p, i, _ in exact]
    assert max(abs(hit.score - s) for hit, (_, _, s) in zip(hits, exact, strict=True)) < 1e-5


@pytest.mark.parametrize("metric", ["cosine", "squared_l2"])
def test_federated_top_k_equals_exact_search(parties: list[Party], metric: str) -> None:
    rng = simulation_generator(12)
    with _client(parties, metric) as client:
        before = [party.info()["queries_used"] for party in client.parties]
        for _ in range(3):
            _check(client, parties, rng.normal(size=DIMENSION), k=10)
        # The context went to each party once; each query is far smaller.
        context = len(client.querier.public_context())
        assert client.bytes_sent_ < 3 * context + 9 * context / 5
        after = [party.info()["queries_used"] for party in client.parties]
        assert after == [used + 3 for used in before]


def test_crashed_parties_serve_their_stored_vectors_budgets_and_contexts(
    parties: list[Party],
) -> None:
    rng = simulation_generator(13)
    with _client(parties, "cosine") as first, _client(parties, "cosine") as second:
        _check(first, parties, rng.normal(size=DIMENSION), k=5)
        # The registry keeps one context per tenant: the second querier's drops the first's.
        _check(second, parties, rng.normal(size=DIMENSION), k=5)
        used = [party.info()["queries_used"] for party in first.parties]
        crashed = [party.server for party in parties[1:]]
        for server in crashed:
            server.kill()  # only what was committed survives
        for server in crashed:
            server.spawn()
        for server in crashed:
            server.wait_healthy(60)
        # Fresh processes: the shards are rebuilt from the databases, which also hold
        # the query counts and (at the lab) the first querier's context.
        _check(first, parties, rng.normal(size=DIMENSION), k=5)
        assert [party.info()["queries_used"] for party in first.parties] == [
            count + 1 for count in used
        ]
        assert first.parties[1].bytes_resent_ == 0
        assert first.parties[2].bytes_resent_ == len(first.querier.public_context())
