"""TenSEAL's mm is wrong beyond slots - d output columns; our chunking never goes there."""

from __future__ import annotations

import numpy as np
import pytest
import tenseal as ts

from privaudit.crypto.vector_search import (
    SearchParameters,
    _tenseal_mm,
    chunk_columns,
    matmul_chunked,
)
from privaudit.errors import ParameterError
from privaudit.randomness import simulation_generator

# Not a divisor of the 4,096 slots: the replicated query is then not periodic.
DIMENSION = 48
PARAMS = SearchParameters()


@pytest.fixture(scope="module")
def setting() -> tuple[ts.Context, ts.CKKSVector, np.ndarray, np.ndarray]:
    context = _tenseal_mm.private_context(PARAMS)
    rng = simulation_generator(0)
    query = rng.normal(size=DIMENSION)
    matrix = rng.normal(size=(PARAMS.slots, DIMENSION))  # one full ciphertext of outputs
    return context, ts.ckks_vector(context, query.tolist()), query, matrix


def test_upstream_mm_is_wrong_beyond_slots_minus_d(setting: tuple) -> None:  # type: ignore[type-arg]
    # Pins the upstream bug (TenSEAL 0.3.18): if this starts failing, TenSEAL fixed mm
    # and the chunk limit can be relaxed.
    _, vector, query, matrix = setting
    exact = matrix @ query
    got = np.asarray(vector.mm(matrix.T).decrypt())
    limit = PARAMS.slots - DIMENSION
    assert np.max(np.abs(got[:limit] - exact[:limit])) <= 1e-5
    errors = np.abs(got - exact)
    assert np.min(errors[limit + 1 :]) > 1e-3  # every column from slots - d + 1 on is wrong


def test_chunked_mm_is_exact_over_all_columns(setting: tuple) -> None:  # type: ignore[type-arg]
    _, vector, query, matrix = setting
    results = matmul_chunked(vector, matrix, slots=PARAMS.slots)
    assert len(results) == 2  # 4,096 columns in chunks of 4,048
    got = np.concatenate([np.asarray(result.decrypt()) for result in results])
    assert np.max(np.abs(got - matrix @ query)) <= 1e-5


def test_chunk_limit_is_enforced(setting: tuple) -> None:  # type: ignore[type-arg]
    _, vector, _, matrix = setting
    assert chunk_columns(DIMENSION, PARAMS.slots) == PARAMS.slots - DIMENSION
    with pytest.raises(ParameterError, match="wrong results"):
        matmul_chunked(vector, matrix, slots=PARAMS.slots, columns=PARAMS.slots - DIMENSION + 1)
    with pytest.raises(ParameterError, match="no room"):
        chunk_columns(PARAMS.slots, PARAMS.slots)


def test_public_context_with_a_secret_key_is_refused(setting: tuple) -> None:  # type: ignore[type-arg]
    from privaudit.errors import DataError

    context = setting[0]
    with pytest.raises(DataError, match="secret key"):
        _tenseal_mm.load_public_context(context.serialize(save_secret_key=True))
    public = _tenseal_mm.load_public_context(_tenseal_mm.public_context_bytes(context))
    assert public.is_public()
    with pytest.raises(ValueError, match="secret_key"):
        ts.ckks_vector(public, [1.0]).decrypt()
