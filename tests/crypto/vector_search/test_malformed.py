"""Malformed, mismatched and oversized inputs raise privaudit errors, never crash."""

from __future__ import annotations

import numpy as np
import pytest

from privaudit.crypto.vector_search import (
    DataParty,
    EncryptedQuery,
    EncryptedScores,
    Querier,
    SearchParameters,
    check_vectors,
)
from privaudit.crypto.vector_search._wire import Kind, decode_frame, encode_frame
from privaudit.errors import (
    DataError,
    LimitExceededError,
    NotFoundError,
    ParameterError,
    PrivauditError,
)
from privaudit.randomness import simulation_generator

DIMENSION = 8


@pytest.fixture(scope="module")
def querier() -> Querier:
    return Querier(dimension=DIMENSION)


@pytest.fixture
def party() -> DataParty:
    party = DataParty(party_id="p", dimension=DIMENSION, max_queries_per_querier=None)
    return party.ingest(simulation_generator(0).normal(size=(30, DIMENSION)))


def test_unknown_context(querier: Querier, party: DataParty) -> None:
    with pytest.raises(NotFoundError, match="register_context"):
        party.search(querier.encrypt_query(np.ones(DIMENSION)), querier_id="a")


def test_context_for_another_dimension(party: DataParty) -> None:
    with pytest.raises(ParameterError, match="dimension 16"):
        party.register_context(Querier(dimension=16).public_context())


def test_context_with_other_parameters(party: DataParty) -> None:
    other = Querier(dimension=DIMENSION, params=SearchParameters(poly_modulus_degree=16384))
    with pytest.raises(ParameterError, match="parameters"):
        party.register_context(other.public_context())


def test_context_with_forged_header_but_other_keys(querier: Querier, party: DataParty) -> None:
    # The header claims our parameters, the SEAL sections hold N = 16384 objects.
    other = Querier(dimension=DIMENSION, params=SearchParameters(poly_modulus_degree=16384))
    header, _ = decode_frame(
        querier.public_context(), kind=Kind.CONTEXT, max_bytes=2**23, max_sections=2
    )
    _, sections = decode_frame(
        other.public_context(), kind=Kind.CONTEXT, max_bytes=2**23, max_sections=2
    )
    with pytest.raises(ParameterError, match="N = 16384"):
        party.register_context(encode_frame(Kind.CONTEXT, header, sections))


@pytest.mark.parametrize("packing", [None, "one-per-slot"])
def test_context_of_another_query_packing(
    querier: Querier, party: DataParty, packing: str | None
) -> None:
    # Contexts of earlier versions (one coordinate per slot, no "packing" field) hold
    # the same kind of keys: scoring their queries would give wrong numbers, not errors.
    header, sections = decode_frame(
        querier.public_context(), kind=Kind.CONTEXT, max_bytes=2**23, max_sections=2
    )
    header.pop("packing")
    if packing is not None:
        header["packing"] = packing
    with pytest.raises(DataError, match="complex-pairs"):
        party.register_context(encode_frame(Kind.CONTEXT, header, sections))


def test_context_missing_a_galois_key(querier: Querier, party: DataParty) -> None:
    header, sections = decode_frame(
        querier.public_context(), kind=Kind.CONTEXT, max_bytes=2**23, max_sections=2
    )
    wider = Querier(dimension=DIMENSION * 64)  # other baby step: other rotation keys
    _, other_sections = decode_frame(
        wider.public_context(), kind=Kind.CONTEXT, max_bytes=2**23, max_sections=2
    )
    with pytest.raises(DataError, match="Galois keys"):
        party.register_context(encode_frame(Kind.CONTEXT, header, [sections[0], other_sections[1]]))


def test_oversized_context_and_query(querier: Querier) -> None:
    small = DataParty(
        party_id="s", dimension=DIMENSION, max_context_bytes=1000, max_query_bytes=1000
    )
    with pytest.raises(LimitExceededError, match="at most 1,000"):
        small.register_context(querier.public_context())
    with pytest.raises(LimitExceededError):
        small.search(querier.encrypt_query(np.ones(DIMENSION)).to_bytes(), querier_id="a")


def test_query_of_wrong_dimension_in_header(querier: Querier, party: DataParty) -> None:
    party.register_context(querier.public_context())
    query = querier.encrypt_query(np.ones(DIMENSION))
    forged = EncryptedQuery(query.context_id, query.query_id, 9, query.ciphertext)
    with pytest.raises(DataError, match="dimension 9"):
        party.search(forged, querier_id="a")


def test_query_under_another_context_is_refused(querier: Querier, party: DataParty) -> None:
    # A ciphertext of another querier, sent under this querier's context id, loads (same
    # parameters) but would be garbage; the querier notices the context mismatch.
    party.register_context(querier.public_context())
    other = Querier(dimension=DIMENSION)
    answer = party.search(
        other.encrypt_query(np.ones(DIMENSION)), querier_id="a", context=other.public_context()
    )
    with pytest.raises(DataError, match="another querier"):
        querier.decrypt_scores(answer)


def test_mutated_queries_never_crash(querier: Querier, party: DataParty) -> None:
    party.register_context(querier.public_context())
    blob = bytearray(querier.encrypt_query(np.ones(DIMENSION)).to_bytes())
    rng = simulation_generator(7)
    outcomes = set()
    for trial in range(40):
        mutated = bytearray(blob)
        if trial % 4 == 0:
            mutated = mutated[: int(rng.integers(0, len(mutated)))]  # truncated
        else:
            for position in rng.integers(0, len(mutated), size=trial % 4 * 3):
                mutated[position] ^= int(rng.integers(1, 256))
        try:
            party.search(bytes(mutated), querier_id="fuzz")
            outcomes.add("accepted")  # flips in ciphertext bits just change the value
        except PrivauditError as error:
            outcomes.add(type(error).__name__)
    assert "DataError" in outcomes


def test_garbage_ciphertext_in_valid_envelope(querier: Querier, party: DataParty) -> None:
    party.register_context(querier.public_context())
    query = querier.encrypt_query(np.ones(DIMENSION))
    for junk in (b"\x00" * 100, b"SEAL" + bytes(range(256)) * 10, b""):
        with pytest.raises(DataError):
            party.search(
                EncryptedQuery(query.context_id, query.query_id, DIMENSION, junk), querier_id="a"
            )


def test_bad_frames() -> None:
    with pytest.raises(DataError, match="magic"):
        EncryptedQuery.from_bytes(b"nope")
    with pytest.raises(DataError, match="expected a query"):
        EncryptedQuery.from_bytes(encode_frame(Kind.SCORES, {}, []))
    with pytest.raises(DataError, match="trailing"):
        EncryptedQuery.from_bytes(encode_frame(Kind.QUERY, {}, [b"x"]) + b"!")
    with pytest.raises(DataError, match="missing"):
        EncryptedQuery.from_bytes(encode_frame(Kind.QUERY, {"dimension": "8"}, [b"x"]))
    with pytest.raises(DataError, match="JSON"):
        EncryptedQuery.from_bytes(encode_frame(Kind.QUERY, {}, [b"x"]).replace(b"{}", b"{x"))
    with pytest.raises(DataError, match="bytes"):
        EncryptedQuery.from_bytes("text")  # type: ignore[arg-type]


def test_tampered_answers(querier: Querier, party: DataParty) -> None:
    query = querier.encrypt_query(np.ones(DIMENSION))
    answer = party.search(query, querier_id="a", context=querier.public_context())
    fewer = EncryptedScores(
        answer.party_id,
        answer.query_id,
        answer.context_id,
        answer.metric,
        answer.ids + ("extra",) * 5000,
        answer.ciphertexts,
    )
    with pytest.raises(DataError, match="ciphertexts"):
        querier.decrypt_scores(fewer)
    unknown = EncryptedScores(
        answer.party_id, "0" * 32, answer.context_id, answer.metric, answer.ids, answer.ciphertexts
    )
    with pytest.raises(DataError, match="unknown query"):
        querier.decrypt_scores(unknown)
    # A query ciphertext returned as a "score" is at the wrong level.
    wrong_level = EncryptedScores(
        answer.party_id,
        answer.query_id,
        answer.context_id,
        answer.metric,
        answer.ids,
        (query.ciphertext,),
    )
    with pytest.raises(DataError, match="level"):
        querier.decrypt_scores(wrong_level)


@pytest.mark.parametrize(
    ("vectors", "message"),
    [
        (np.ones((3, 7)), "dimension 7"),
        (np.full((2, DIMENSION), np.nan), "NaN"),
        (np.zeros((1, DIMENSION)), "zero vector"),
        ([["a"] * DIMENSION], "numeric"),
    ],
)
def test_bad_vectors(vectors: object, message: str) -> None:
    party = DataParty(party_id="p", dimension=DIMENSION)
    with pytest.raises(DataError, match=message):
        party.ingest(vectors)


def test_duplicate_ids(party: DataParty) -> None:
    with pytest.raises(DataError, match="unique"):
        party.ingest(np.ones((1, DIMENSION)), ids=["0"])


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ParameterError, match="metric"):
        Querier(dimension=4, metric="manhattan")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="dimension"):
        Querier(dimension=0)
    with pytest.raises(ParameterError, match="slots"):
        Querier(dimension=8193)  # 4,097 coordinate pairs in 4,096 slots
    with pytest.raises(ParameterError, match="max_queries_per_querier"):
        DataParty(party_id="p", dimension=4, max_queries_per_querier=0)
    with pytest.raises(ParameterError, match="party_id"):
        DataParty(party_id="", dimension=4)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b'{"dimension": ' + b"1" * 5000 + b"}", "not valid JSON"),  # beyond int parsing
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),  # nested too deep
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_hostile_headers_are_data_errors(header: bytes, message: str) -> None:
    blob = encode_frame(Kind.QUERY, {}, [b"x"])
    prefix = blob[:4] + blob[4:5] + len(header).to_bytes(4, "big")
    forged = prefix + header + blob[9 + len(b"{}") :]
    with pytest.raises(DataError, match=message):
        EncryptedQuery.from_bytes(forged)


def test_query_ids_must_be_hex_digests(querier: Querier) -> None:
    query = querier.encrypt_query(np.ones(DIMENSION))
    for forged in (
        EncryptedQuery("x" * 100_000, query.query_id, DIMENSION, query.ciphertext),
        EncryptedQuery(query.context_id, "../../etc", DIMENSION, query.ciphertext),
    ):
        with pytest.raises(DataError, match="lowercase hex") as caught:
            EncryptedQuery.from_bytes(forged.to_bytes())
        assert len(str(caught.value)) < 200


def test_long_parameter_descriptions_are_cut_in_messages() -> None:
    with pytest.raises(ParameterError) as caught:
        SearchParameters.from_dict({"scheme": "x" * 100_000})
    assert len(str(caught.value)) < 400
    described = {**SearchParameters().to_dict(), "coeff_modulus_bits": list(range(10_000))}
    with pytest.raises(ParameterError, match="three ints") as caught:
        SearchParameters.from_dict(described)
    assert len(str(caught.value)) < 400


@pytest.mark.parametrize("metric", ["cosine", "inner_product", "squared_l2"])
def test_vectors_whose_norm_overflows_are_refused(metric: str) -> None:
    with pytest.raises(DataError, match=r"too large|squared norm"):
        check_vectors([[1e200, 1e200]], dimension=2, metric=metric)
