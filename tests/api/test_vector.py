"""Encrypted vector search over real HTTP, one service: collections, contexts, search.

Every malformed, oversized or mismatched input gets a 4xx problem document, never a
500; budgets, scopes and tenants are enforced.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import httpx
import numpy as np
import pytest
from live import LiveServer

from privaudit import simulation_generator
from privaudit.api.client import ServiceError
from privaudit.api.routes.vector import CONTEXT_MEDIA_TYPE, QUERY_MEDIA_TYPE, SCORES_MEDIA_TYPE
from privaudit.api.vector_client import VectorCollection
from privaudit.crypto.vector_search import (
    EncryptedQuery,
    EncryptedScores,
    Querier,
    SearchParameters,
)
from privaudit.crypto.vector_search._wire import Kind, decode_frame, encode_frame

DIMENSION = 8


@pytest.fixture(scope="module")
def keys(server: LiveServer) -> dict[str, str]:
    return {
        "writer": server.create_key("vector-a", ["vector:write"]),
        "searcher": server.create_key("vector-a", ["vector:search"]),
        "searcher2": server.create_key("vector-a", ["vector:search"]),
        "jobs": server.create_key("vector-a", ["jobs:read"]),
        "other": server.create_key("vector-b", ["vector:write", "vector:search"]),
    }


@pytest.fixture(scope="module")
def shard() -> np.ndarray:
    return simulation_generator(0).normal(size=(120, DIMENSION))


@pytest.fixture(scope="module")
def collection(server: LiveServer, keys: dict[str, str], shard: np.ndarray) -> Iterator[str]:
    with VectorCollection.create(
        base_url=server.url, api_key=keys["writer"], dimension=DIMENSION, name="notes"
    ) as made:
        made.add(shard, ids=[f"n{i}" for i in range(len(shard))], batch_size=50)
        yield made.collection_id


@pytest.fixture(scope="module")
def querier() -> Querier:
    return Querier(dimension=DIMENSION)


def _post(server: LiveServer, key: str, path: str, body: bytes, media: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}{path}",
        content=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": media},
        timeout=60,
    )


def _register(server: LiveServer, key: str, context: bytes) -> httpx.Response:
    return _post(server, key, "/v1/vector/contexts", context, CONTEXT_MEDIA_TYPE)


def _search(server: LiveServer, key: str, collection_id: str, query: bytes) -> httpx.Response:
    path = f"/v1/vector/collections/{collection_id}/search"
    return _post(server, key, path, query, QUERY_MEDIA_TYPE)


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["code"] == code, problem
    return problem


def _b64(rows: Any) -> str:
    return base64.b64encode(np.asarray(rows, dtype="<f8").tobytes()).decode()


def _cosine(shard: np.ndarray, query: np.ndarray) -> np.ndarray:
    unit = shard / np.linalg.norm(shard, axis=1, keepdims=True)
    scores: np.ndarray = unit @ (query / np.linalg.norm(query))
    return scores


def test_search_answers_the_encrypted_scores_of_every_vector(
    server: LiveServer, keys: dict[str, str], collection: str, querier: Querier, shard: np.ndarray
) -> None:
    registered = _register(server, keys["searcher"], querier.public_context())
    assert registered.status_code in (200, 201), registered.text
    assert registered.json()["context_id"] == querier.context_id
    vector = simulation_generator(1).normal(size=DIMENSION)
    query = querier.encrypt_query(vector).to_bytes()
    response = _search(server, keys["searcher"], collection, query)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == SCORES_MEDIA_TYPE
    scores = querier.decrypt_scores(response.content)
    assert scores.ids == tuple(f"n{i}" for i in range(len(shard)))
    assert np.abs(scores.scores - _cosine(shard, vector)).max() < 1e-5
    # The query names the context by its hash: it does not carry the keys again.
    assert len(query) < len(querier.public_context()) / 5


def test_a_context_is_registered_once_per_tenant(
    server: LiveServer, keys: dict[str, str], querier: Querier
) -> None:
    first = _register(server, keys["searcher"], querier.public_context())
    again = _register(server, keys["searcher2"], querier.public_context())
    assert again.status_code == 200
    assert again.json() == {**first.json(), "new": False}
    assert again.json()["dimension"] == DIMENSION
    assert again.json()["params"] == SearchParameters().to_dict()


def test_an_unknown_context_is_a_404_that_says_to_register(
    server: LiveServer, keys: dict[str, str], collection: str
) -> None:
    stranger = Querier(dimension=DIMENSION)
    query = stranger.encrypt_query(np.ones(DIMENSION)).to_bytes()
    problem = _problem(_search(server, keys["searcher"], collection, query), 404, "not_found")
    assert problem["context_id"] == stranger.context_id
    assert "POST /v1/vector/contexts" in problem["detail"]
    # Contexts are per tenant: another tenant's registration does not count.
    assert _register(server, keys["other"], stranger.public_context()).status_code == 201
    _problem(_search(server, keys["searcher"], collection, query), 404, "not_found")


def _good_query(querier: Querier) -> bytes:
    return querier.encrypt_query(np.ones(DIMENSION)).to_bytes()


def _with_ciphertext(querier: Querier, ciphertext: bytes) -> bytes:
    query = EncryptedQuery.from_bytes(_good_query(querier))
    return replace(query, ciphertext=ciphertext).to_bytes()


def _forged_dimension(querier: Querier) -> bytes:
    query = EncryptedQuery.from_bytes(_good_query(querier))
    return replace(query, dimension=DIMENSION + 1).to_bytes()


def _hostile_header(header: bytes) -> bytes:
    """A query frame whose JSON header is ``header``, with one 4-byte section."""
    sections = (1).to_bytes(2, "big") + (4).to_bytes(4, "big") + b"abcd"
    return b"PVS1" + bytes([Kind.QUERY]) + len(header).to_bytes(4, "big") + header + sections


MALFORMED_QUERIES = {
    "truncated frame": lambda q: _good_query(q)[:-10],
    "padded frame": lambda q: _good_query(q) + b"\0",
    "random bytes": lambda q: os.urandom(5000),
    "empty body": lambda q: b"",
    "a context instead of a query": lambda q: q.public_context()[:1000],
    "random ciphertext": lambda q: _with_ciphertext(q, os.urandom(4000)),
    "truncated ciphertext": lambda q: _with_ciphertext(
        q, EncryptedQuery.from_bytes(_good_query(q)).ciphertext[:-100]
    ),
    "header claims another dimension": _forged_dimension,
    "header integer of 5,000 digits": lambda q: _hostile_header(b'{"a": ' + b"9" * 5000 + b"}"),
    "header nested 100,000 deep": lambda q: _hostile_header(b"[" * 100_000 + b"]" * 100_000),
    "a 100 kB context id": lambda q: _hostile_header(
        b'{"context_id": "' + b"a" * 100_000 + b'", "query_id": "", "dimension": 8}'
    ),
}


@pytest.mark.parametrize("name", list(MALFORMED_QUERIES))
def test_malformed_queries_are_422(
    server: LiveServer, keys: dict[str, str], collection: str, querier: Querier, name: str
) -> None:
    _register(server, keys["searcher"], querier.public_context())
    body = MALFORMED_QUERIES[name](querier)
    _problem(_search(server, keys["searcher"], collection, body), 422, "bad_input_data")


def _forged_context(querier: Querier, sections_from: Querier) -> bytes:
    header, _ = decode_frame(
        querier.public_context(), kind=Kind.CONTEXT, max_bytes=2**23, max_sections=2
    )
    _, sections = decode_frame(
        sections_from.public_context(), kind=Kind.CONTEXT, max_bytes=2**23, max_sections=2
    )
    return encode_frame(Kind.CONTEXT, header, sections)


def test_malformed_contexts_are_4xx(
    server: LiveServer, keys: dict[str, str], querier: Querier
) -> None:
    context = querier.public_context()
    bad_data = {
        "truncated": context[: len(context) // 2],
        "random bytes": os.urandom(20_000),
        "a query instead": _good_query(querier),
        "keys for another dimension": _forged_context(querier, Querier(dimension=64)),
    }
    for name, body in bad_data.items():
        problem = _problem(_register(server, keys["searcher"], body), 422, "bad_input_data")
        assert problem["detail"], name
    bigger = Querier(dimension=DIMENSION, params=SearchParameters(poly_modulus_degree=16384))
    # The header claims N = 8192, the keys are for N = 16384.
    problem = _problem(
        _register(server, keys["searcher"], _forged_context(querier, bigger)),
        422,
        "bad_parameter",
    )
    assert "N = 16384" in problem["detail"]


def test_mismatched_context_and_query_are_422(
    server: LiveServer, keys: dict[str, str], collection: str
) -> None:
    # Valid contexts, each fine on its own terms, but not for this collection.
    for other in (
        Querier(dimension=DIMENSION, params=SearchParameters(poly_modulus_degree=16384)),
        Querier(dimension=DIMENSION * 2),
    ):
        assert _register(server, keys["searcher"], other.public_context()).status_code == 201
        query = other.encrypt_query(np.ones(other.dimension)).to_bytes()
        problem = _problem(
            _search(server, keys["searcher"], collection, query), 422, "bad_parameter"
        )
        assert (
            "parameters" in problem["detail"] or f"dimension {DIMENSION * 2}" in problem["detail"]
        )


def test_oversized_bodies_are_413_before_they_are_read(
    server: LiveServer, keys: dict[str, str], collection: str
) -> None:
    cases = [
        ("/v1/vector/contexts", 4 * 2**20 + 1, CONTEXT_MEDIA_TYPE),
        (f"/v1/vector/collections/{collection}/search", 2**20 + 1, QUERY_MEDIA_TYPE),
    ]
    for path, size, media in cases:
        declared = _post(server, keys["searcher"], path, b"\0" * size, media)
        _problem(declared, 413, "payload_too_large")

        def chunks(total: int = size) -> Iterator[bytes]:
            for start in range(0, total, 2**16):
                yield b"\0" * min(2**16, total - start)

        streamed = httpx.post(  # chunked: no Content-Length, refused while it streams in
            f"{server.url}{path}",
            content=chunks(),
            headers={"Authorization": f"Bearer {keys['searcher']}", "Content-Type": media},
            timeout=60,
        )
        _problem(streamed, 413, "payload_too_large")


def test_the_query_budget_is_per_key_and_spent_queries_are_refused(
    server: LiveServer, keys: dict[str, str], shard: np.ndarray, querier: Querier
) -> None:
    with VectorCollection.create(
        base_url=server.url,
        api_key=keys["writer"],
        dimension=DIMENSION,
        max_queries_per_key=2,
    ) as budgeted:
        budgeted.add(shard[:10], ids=[str(i) for i in range(10)])
        _register(server, keys["searcher"], querier.public_context())
        for _ in range(2):
            ok = _search(server, keys["searcher"], budgeted.collection_id, _good_query(querier))
            assert ok.status_code == 200, ok.text
        spent = _search(server, keys["searcher"], budgeted.collection_id, _good_query(querier))
        problem = _problem(spent, 429, "budget_exhausted")
        assert problem["limit"] == 2
        # A malformed query is refused before it is counted; another key has its own budget.
        assert (
            _search(server, keys["searcher2"], budgeted.collection_id, b"junk").status_code == 422
        )
        ok = _search(server, keys["searcher2"], budgeted.collection_id, _good_query(querier))
        assert ok.status_code == 200
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {keys['searcher2']}"}
        ) as client:
            seen = client.get(f"/v1/vector/collections/{budgeted.collection_id}").json()
        assert seen["queries_used"] == 1
        assert seen["max_queries_per_key"] == 2


def test_score_noise_has_its_sigma_and_reports_a_guarantee(
    server: LiveServer, keys: dict[str, str], querier: Querier
) -> None:
    vectors = simulation_generator(3).normal(size=(400, DIMENSION))
    with VectorCollection.create(
        base_url=server.url,
        api_key=keys["writer"],
        dimension=DIMENSION,
        score_noise={"sigma": 0.5},
    ) as noisy:
        noisy.add(vectors, ids=[str(i) for i in range(len(vectors))])
        _register(server, keys["searcher"], querier.public_context())
        vector = np.ones(DIMENSION)
        answer = _search(server, keys["searcher"], noisy.collection_id, _good_query(querier))
        scores = querier.decrypt_scores(answer.content).scores
        assert EncryptedScores.from_bytes(answer.content).noise_sigma == 0.5
        # 400 draws: the sample sd is within 0.5 ± 0.1 but with probability < 1e-6.
        assert 0.4 < float(np.std(scores - _cosine(vectors, vector))) < 0.6
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {keys['searcher']}"}
        ) as client:
            seen = client.get(f"/v1/vector/collections/{noisy.collection_id}").json()
        assert seen["guarantee"]["notion"] == "zcdp"
        assert seen["guarantee"]["rho"] == pytest.approx(2.0**2 / (2 * 0.5**2))


def test_ingest_is_validated_whole_and_ids_stay_unique(
    server: LiveServer, keys: dict[str, str]
) -> None:
    with (
        VectorCollection.create(base_url=server.url, api_key=keys["writer"], dimension=2) as made,
        httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {keys['writer']}"}
        ) as client,
    ):
        path = f"/v1/vector/collections/{made.collection_id}/vectors"
        assert made.add(np.eye(2), ids=["a", "b"]) == 2
        refused = {
            "wrong dimension": ({"ids": ["c"], "vectors": [[1.0, 2.0, 3.0]]}, 422),
            "ragged rows": ({"ids": ["c", "d"], "vectors": [[1.0, 2.0], [1.0]]}, 422),
            "fewer ids": ({"ids": ["c"], "vectors": [[1.0, 2.0], [1.0, 0.0]]}, 422),
            "repeated id": ({"ids": ["c", "c"], "vectors": [[1.0, 2.0], [1.0, 0.0]]}, 422),
            "zero vector (cosine)": ({"ids": ["c"], "vectors": [[0.0, 0.0]]}, 422),
            "norm overflows": ({"ids": ["c"], "vectors": [[1e200, 1e200]]}, 422),
            "taken id": ({"ids": ["c", "a"], "vectors": [[1.0, 2.0], [1.0, 0.0]]}, 409),
            "long id": ({"ids": ["x" * 65], "vectors": [[1.0, 2.0]]}, 422),
            "a string": ({"ids": ["c"], "vectors": [["1", 2.0]]}, 422),
            "both encodings": (
                {"ids": ["c"], "vectors": [[1.0, 2.0]], "vectors_base64": _b64([[1.0, 2.0]])},
                422,
            ),
            "no vectors": ({"ids": ["c"]}, 422),
            "base64 of another size": (
                {"ids": ["c"], "vectors_base64": _b64([[1.0, 2.0, 3.0]])},
                422,
            ),
            "not base64": ({"ids": ["c"], "vectors_base64": "%%%%"}, 422),
            "base64 of NaN": ({"ids": ["c"], "vectors_base64": _b64([[np.nan, 2.0]])}, 422),
            "too many": (
                {"ids": [str(i) for i in range(10_001)], "vectors": [[1.0, 0.0]] * 10_001},
                422,
            ),
        }
        for name, (body, status) in refused.items():
            response = client.post(path, json=body)
            assert response.status_code == status, (name, response.text)
        non_finite = client.post(
            path,
            content=b'{"ids": ["c"], "vectors": [[NaN, 1.0]]}',
            headers={"Content-Type": "application/json"},
        )
        assert non_finite.status_code == 422
        assert "'a'" in client.post(path, json=refused["taken id"][0]).json()["detail"]
        # A retried batch (same Idempotency-Key) is stored once; a reused key is a conflict.
        batch = {"ids": ["c", "d"], "vectors": [[1.0, 2.0], [2.0, 1.0]]}
        first = client.post(path, json=batch, headers={"Idempotency-Key": "k-1"})
        again = client.post(path, json=batch, headers={"Idempotency-Key": "k-1"})
        assert first.json()["duplicate"] is False and again.json()["duplicate"] is True
        assert again.json()["size"] == 4
        other = {"ids": ["e"], "vectors": [[1.0, 2.0]]}
        assert client.post(path, json=other, headers={"Idempotency-Key": "k-1"}).status_code == 409
        assert made.info()["size"] == 4 and made.info()["batches"] == 2


def test_both_encodings_store_the_same_vectors(
    server: LiveServer, keys: dict[str, str], querier: Querier
) -> None:
    vectors = simulation_generator(5).normal(size=(6, DIMENSION))
    with (
        VectorCollection.create(
            base_url=server.url, api_key=keys["writer"], dimension=DIMENSION
        ) as made,
        httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {keys['writer']}"}
        ) as client,
    ):
        path = f"/v1/vector/collections/{made.collection_id}/vectors"
        as_numbers = {"ids": ["0", "1", "2"], "vectors": vectors[:3].tolist()}
        as_base64 = {"ids": ["3", "4", "5"], "vectors_base64": _b64(vectors[3:])}
        for body in (as_numbers, as_base64):
            assert client.post(path, json=body).status_code == 200
        _register(server, keys["searcher"], querier.public_context())
        vector = np.arange(DIMENSION, dtype=float)
        query = querier.encrypt_query(vector).to_bytes()
        answer = querier.decrypt_scores(
            _search(server, keys["searcher"], made.collection_id, query).content
        )
        assert answer.ids == tuple("012345")
        assert np.abs(answer.scores - _cosine(vectors, vector)).max() < 1e-5


def test_new_vectors_are_searched_after_an_ingest(
    server: LiveServer, keys: dict[str, str], querier: Querier
) -> None:
    rng = simulation_generator(4)
    first, second = rng.normal(size=(30, DIMENSION)), rng.normal(size=(20, DIMENSION))
    with VectorCollection.create(
        base_url=server.url, api_key=keys["writer"], dimension=DIMENSION
    ) as made:
        empty = _search(server, keys["searcher"], made.collection_id, _good_query(querier))
        _problem(empty, 409, "conflict")
        made.add(first, ids=[f"a{i}" for i in range(30)])
        _register(server, keys["searcher"], querier.public_context())
        vector = rng.normal(size=DIMENSION)
        for expected in (first, np.concatenate([first, second])):
            query = querier.encrypt_query(vector).to_bytes()
            answer = querier.decrypt_scores(
                _search(server, keys["searcher"], made.collection_id, query).content
            )
            assert len(answer.ids) == len(expected)
            assert np.abs(answer.scores - _cosine(expected, vector)).max() < 1e-5
            if len(expected) == len(first):
                made.add(second, ids=[f"b{i}" for i in range(20)])
        made.delete()
        with pytest.raises(ServiceError) as gone:
            made.info()
        assert gone.value.status == 404


def test_scopes_and_tenants(
    server: LiveServer, keys: dict[str, str], collection: str, querier: Querier
) -> None:
    base = f"/v1/vector/collections/{collection}"
    query = _good_query(querier)

    def call(key: str, method: str, path: str, **kwargs: Any) -> int:
        headers = {"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
        return httpx.request(method, f"{server.url}{path}", headers=headers, **kwargs).status_code

    batch = {"ids": ["z"], "vectors": [[1.0] * DIMENSION]}
    assert call(keys["searcher"], "POST", "/v1/vector/collections", json={"dimension": 4}) == 403
    assert call(keys["searcher"], "POST", f"{base}/vectors", json=batch) == 403
    assert call(keys["searcher"], "DELETE", base) == 403
    assert call(keys["writer"], "POST", f"{base}/search", content=query) == 403
    assert call(keys["writer"], "POST", "/v1/vector/contexts", content=b"x") == 403
    assert call(keys["jobs"], "GET", base) == 403
    assert call(keys["writer"], "GET", base) == 200
    assert call(keys["searcher"], "GET", base) == 200
    # Another tenant sees nothing, whatever its scopes.
    assert call(keys["other"], "GET", base) == 404
    assert call(keys["other"], "POST", f"{base}/vectors", json=batch) == 404
    assert call(keys["other"], "DELETE", base) == 404
    _register(server, keys["other"], querier.public_context())
    assert call(keys["other"], "POST", f"{base}/search", content=query) == 404
    assert call(keys["searcher"], "GET", base) == 200


@pytest.fixture
def backend_server(
    request: pytest.FixtureRequest, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The shared server (SQLite), or a server of its own on a fresh PostgreSQL database."""
    if not database_url:
        yield request.getfixturevalue("server")
        return
    live = LiveServer(
        data_dir=tmp_path_factory.mktemp("vector-pg"),
        database_url=database_url,
        settings={"job_workers": 0},
    ).start()
    yield live
    live.stop()


def test_concurrent_queries_never_spend_more_than_the_budget(backend_server: LiveServer) -> None:
    server = backend_server
    writer = server.create_key("vector-budget", ["vector:write"])
    searcher = server.create_key("vector-budget", ["vector:search"])
    vectors = simulation_generator(6).normal(size=(50, DIMENSION))
    with VectorCollection.create(
        base_url=server.url, api_key=writer, dimension=DIMENSION, max_queries_per_key=3
    ) as made:
        ids = [f"v{i}" for i in range(50)]
        assert made.add(vectors, ids=ids, batch_size=20, batch_prefix="p") == 50
        assert made.add(vectors, ids=ids, batch_size=20, batch_prefix="p") == 50  # replayed
        with pytest.raises(ServiceError) as taken:
            made.add(vectors[:1], ids=ids[:1])
        assert taken.value.status == 409
        querier = Querier(dimension=DIMENSION)
        assert _register(server, searcher, querier.public_context()).status_code == 201
        vector = np.ones(DIMENSION)
        queries = [querier.encrypt_query(vector).to_bytes() for _ in range(8)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(
                pool.map(
                    lambda query: _search(server, searcher, made.collection_id, query), queries
                )
            )
        assert sorted(answer.status_code for answer in answers) == [200] * 3 + [429] * 5
        served = next(answer for answer in answers if answer.status_code == 200)
        scores = querier.decrypt_scores(served.content)
        assert np.abs(scores.scores - _cosine(vectors, vector)).max() < 1e-5
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {searcher}"}
        ) as client:
            assert (
                client.get(f"/v1/vector/collections/{made.collection_id}").json()["queries_used"]
                == 3
            )
