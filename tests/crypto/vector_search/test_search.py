"""End-to-end encrypted search with real TenSEAL ciphertexts: correctness and roles."""

from __future__ import annotations

import numpy as np
import pytest

from privaudit.crypto.vector_search import (
    DataParty,
    EncryptedScores,
    FederatedSearch,
    Querier,
    SearchParameters,
    chunk_capacity,
    galois_elements,
)
from privaudit.crypto.vector_search._kernel import pack_query
from privaudit.crypto.vector_search._seal import sealapi
from privaudit.crypto.vector_search._wire import Kind, decode_frame
from privaudit.errors import BudgetExhaustedError
from privaudit.randomness import simulation_generator

DIMENSION = 16
TOLERANCE = 1e-5


def exact_scores(metric: str, vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    if metric == "cosine":
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        return unit @ (query / np.linalg.norm(query))
    if metric == "inner_product":
        return vectors @ query
    return ((vectors - query) ** 2).sum(axis=1)


@pytest.mark.parametrize("kernel", ["bsgs", "tenseal-mm"])
@pytest.mark.parametrize("metric", ["cosine", "inner_product", "squared_l2"])
def test_federated_scores_match_numpy(metric: str, kernel: str) -> None:
    rng = simulation_generator(1)
    querier = Querier(dimension=DIMENSION, metric=metric, kernel=kernel)  # type: ignore[arg-type]
    shards = [rng.normal(size=(150, DIMENSION)) * 0.2 for _ in range(2)]
    parties = [
        DataParty(
            party_id=f"party-{i}",
            dimension=DIMENSION,
            metric=metric,  # type: ignore[arg-type]
            max_context_bytes=64 * 2**20,
        ).ingest(shard)
        for i, shard in enumerate(shards)
    ]
    federation = FederatedSearch(querier=querier, parties=parties, querier_id="alice")
    query = rng.normal(size=DIMENSION) * 0.2
    hits = federation.search(query, k=10)
    exact = exact_scores(metric, np.concatenate(shards), query)
    decrypted = np.concatenate([answer.scores for answer in federation.answers_])
    assert np.max(np.abs(decrypted - exact)) <= TOLERANCE
    order = np.argsort(exact) if metric == "squared_l2" else np.argsort(-exact)
    expected = [(f"party-{i // 150}", str(i % 150)) for i in order[:10]]
    assert [(hit.party_id, hit.id) for hit in hits] == expected


@pytest.mark.parametrize("dimension", [5, 6])
def test_query_period_that_does_not_divide_the_slots(dimension: int) -> None:
    # d = 5, 6: three coordinate pairs, a period of 3, so a chunk holds 4,094 vectors
    # (the windows that would run past the last slot stay empty): the vectors at the
    # end of each chunk and in the next chunk still score exactly.
    assert chunk_capacity(dimension) == 4094
    rng = simulation_generator(7)
    vectors = rng.normal(size=(4094 + 10, dimension))
    party = DataParty(party_id="p", dimension=dimension, metric="inner_product")
    party.ingest(vectors)
    querier = Querier(dimension=dimension, metric="inner_product")
    query = rng.normal(size=dimension)
    answer = party.search(
        querier.encrypt_query(query), querier_id="q", context=querier.public_context()
    )
    assert len(answer.ciphertexts) == 2
    scores = querier.decrypt_scores(answer).scores
    assert np.max(np.abs(scores - vectors @ query)) <= TOLERANCE


def test_small_shard_is_folded_and_holds_every_score_twice() -> None:
    # d = 12: six coordinate pairs; slot s + 2048 sees the query shifted by 2048 mod 6 = 2,
    # so 4 rotations per half instead of 6 cover every pair, and the rotation by 2048
    # adds the halves: the scores (with the stored norms, for squared L2) appear in
    # slots [0, n) and again in [2048, 2048 + n), and every other slot is zero.
    dimension, size = 12, 300
    rng = simulation_generator(8)
    vectors = rng.normal(size=(size, dimension))
    party = DataParty(party_id="p", dimension=dimension, metric="squared_l2").ingest(vectors)
    assert party._shard.chunks[0].folded
    assert sum(map(len, party._shard.chunks[0].plaintexts)) == 4
    querier = Querier(dimension=dimension, metric="squared_l2")
    query = rng.normal(size=dimension)
    answer = party.search(
        querier.encrypt_query(query), querier_id="q", context=querier.public_context()
    )
    exact = ((vectors - query) ** 2).sum(axis=1)
    assert np.max(np.abs(querier.decrypt_scores(answer).scores - exact)) <= TOLERANCE
    slots = np.asarray(querier._decrypt_one(answer.ciphertexts[0]))
    half = SearchParameters().slots // 2
    assert np.max(np.abs(slots[half : half + size] - slots[:size])) <= TOLERANCE
    rest = np.concatenate([slots[size:half], slots[half + size :]])
    assert np.max(np.abs(rest)) <= TOLERANCE


def test_multi_chunk_shard_ingested_in_batches() -> None:
    # 4,200 vectors span two 4,096-slot chunks; the second batch re-encodes the tail.
    rng = simulation_generator(2)
    dimension = 4
    vectors = rng.normal(size=(4200, dimension))
    party = DataParty(party_id="big", dimension=dimension, metric="inner_product")
    party.ingest(vectors[:4000], ids=[f"v{i}" for i in range(4000)])
    party.ingest(vectors[4000:], ids=[f"v{i}" for i in range(4000, 4200)])
    querier = Querier(dimension=dimension, metric="inner_product")
    query = rng.normal(size=dimension)
    answer = party.search(
        querier.encrypt_query(query), querier_id="q", context=querier.public_context()
    )
    assert len(answer.ciphertexts) == 2
    decrypted = querier.decrypt_scores(answer.to_bytes())
    assert decrypted.ids[4199] == "v4199"
    assert np.max(np.abs(decrypted.scores - vectors @ query)) <= TOLERANCE


def test_public_context_holds_parameters_and_exactly_the_kernel_galois_keys() -> None:
    querier = Querier(dimension=DIMENSION)
    header, sections = decode_frame(
        querier.public_context(), kind=Kind.CONTEXT, max_bytes=2**23, max_sections=8
    )
    assert header["kernel"] == "bsgs" and len(sections) == 2
    party = DataParty(party_id="p", dimension=DIMENSION)
    party.register_context(querier.public_context())
    loaded = next(iter(party._contexts.values()))
    needed = galois_elements(DIMENSION, SearchParameters())
    assert loaded.galois_keys.size() == len(needed) == 3
    assert all(loaded.galois_keys.has_key(element) for element in needed)
    # Nothing in the party's state is a secret key or a decryptor.
    kinds = {type(value).__name__ for value in vars(loaded).values()}
    assert not kinds & {"SecretKey", "Decryptor", "KeyGenerator"}


def test_party_cannot_decrypt_the_query() -> None:
    # The best a party can do without the querier's key: decrypt with a key of its own
    # under the same parameters. It gets noise, not the query.
    rng = simulation_generator(3)
    querier = Querier(dimension=DIMENSION, metric="inner_product")
    query = rng.normal(size=DIMENSION)
    encrypted = querier.encrypt_query(query)
    api = sealapi()
    context = SearchParameters().seal_context()
    ciphertext = api.Ciphertext()
    from functools import partial

    from privaudit.crypto.vector_search._seal import load_into

    load_into(partial(ciphertext.load, context), encrypted.ciphertext, what="q", max_bytes=2**20)
    own_key = api.KeyGenerator(context).secret_key()
    plaintext = api.Plaintext()
    api.Decryptor(context, own_key).decrypt(ciphertext, plaintext)
    packed = pack_query(query, SearchParameters())  # q[t] + i q[8 + t], repeated
    guess = np.asarray(api.CKKSEncoder(context).decode_complex(plaintext))
    assert np.max(np.abs(guess - packed)) > 1e3  # uniformly random mod q, scaled by 2^-40
    # ... while the querier, with its key, reads its own query back exactly.
    answer_key = querier._secret_key
    api.Decryptor(context, answer_key).decrypt(ciphertext, plaintext)
    mine = np.asarray(api.CKKSEncoder(context).decode_complex(plaintext))
    assert np.max(np.abs(mine - packed)) <= TOLERANCE


def test_two_encryptions_of_one_query_differ() -> None:
    querier = Querier(dimension=DIMENSION)
    query = np.ones(DIMENSION)
    assert querier.encrypt_query(query).ciphertext != querier.encrypt_query(query).ciphertext


def test_query_budget_per_querier() -> None:
    querier = Querier(dimension=DIMENSION)
    party = DataParty(party_id="p", dimension=DIMENSION, max_queries_per_querier=2)
    party.ingest(simulation_generator(4).normal(size=(10, DIMENSION)))
    context = party.register_context(querier.public_context())
    assert context == querier.context_id
    for _ in range(2):
        party.search(querier.encrypt_query(np.ones(DIMENSION)), querier_id="alice")
    with pytest.raises(BudgetExhaustedError, match="alice"):
        party.search(querier.encrypt_query(np.ones(DIMENSION)), querier_id="alice")
    party.search(querier.encrypt_query(np.ones(DIMENSION)), querier_id="bob")
    assert party.queries_used("alice") == 2 and party.queries_used("bob") == 1


def test_only_the_real_part_of_the_scores_is_returned() -> None:
    # Two coordinates share each complex slot (q_lo + i q_hi against x_lo - i x_hi), so
    # before the conjugation step every slot also holds the cross term
    # <x_lo, q_hi> - <x_hi, q_lo>: a second linear function of each vector. Whatever a
    # querier encrypts (any complex slots are some packed query), it gets back only the
    # real part: one real number per vector per query.
    rng = simulation_generator(5)
    querier = Querier(dimension=DIMENSION, metric="inner_product")
    vectors = rng.normal(size=(50, DIMENSION))
    party = DataParty(party_id="p", dimension=DIMENSION, metric="inner_product").ingest(vectors)
    party.register_context(querier.public_context())
    query = rng.normal(size=DIMENSION)
    answer = party.search(querier.encrypt_query(query), querier_id="eve")
    api = sealapi()
    ciphertext = api.Ciphertext()
    from functools import partial

    from privaudit.crypto.vector_search._seal import load_into

    load_into(
        partial(ciphertext.load, querier._context), answer.ciphertexts[0], what="s", max_bytes=2**20
    )
    decrypted = api.Plaintext()
    querier._decryptor.decrypt(ciphertext, decrypted)
    values = np.asarray(querier._encoder.decode_complex(decrypted)[:50])
    assert np.max(np.abs(values.real - vectors @ query)) <= TOLERANCE
    half = DIMENSION // 2
    cross = vectors[:, :half] @ query[half:] - vectors[:, half:] @ query[:half]
    assert np.max(np.abs(values.imag)) <= TOLERANCE
    assert np.max(np.abs(cross)) > 1.0  # what the imaginary part held before conjugation


def test_answer_round_trips_as_bytes() -> None:
    querier = Querier(dimension=DIMENSION)
    party = DataParty(party_id="p", dimension=DIMENSION)
    party.ingest(simulation_generator(6).normal(size=(20, DIMENSION)), ids=range(100, 120))
    answer = party.search(
        querier.encrypt_query(np.ones(DIMENSION)).to_bytes(),
        querier_id="a",
        context=querier.public_context(),
    )
    again = EncryptedScores.from_bytes(answer.to_bytes())
    assert again == answer and again.ids[0] == "100"
