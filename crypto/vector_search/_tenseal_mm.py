"""The fallback and baseline kernel: TenSEAL's ``CKKSVector.mm``, chunked to stay correct.

TenSEAL's ``mm`` (the Halevi-Shoup diagonal method without baby steps) rotates the
replicated query over all slots, but the query is not periodic across the slot
boundary, so output columns from ``slots - d + 1`` on come out wrong (errors from 5e-4
near the boundary up to 0.15; reproduced with TenSEAL 0.3.18). Every call here therefore
multiplies by at most ``slots - d`` columns: :func:`chunk_columns`. The regression test
in tests/crypto/vector_search/test_tenseal_mm.py pins both the upstream bug and the
chunking.

It needs every power-of-two rotation key (about 19 MB of public context at N = 8192,
against about 1.1-1.5 MB for BSGS), encodes the shard on the fly at every query
(about 24-39x slower than the pre-encoded BSGS kernel) and cannot keep only the real part of the
scores (TenSEAL exposes no conjugation), so a querier can hide a second query in the
imaginary part of its slots. Use it for comparison and where the SEAL bindings are
unavailable.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from privaudit.crypto.vector_search._parameters import SearchParameters
from privaudit.crypto.vector_search._seal import SEAL_FAILURES
from privaudit.errors import DataError, LimitExceededError, MissingDependencyError, ParameterError

__all__ = ["chunk_columns", "matmul_chunked"]

FloatArray = npt.NDArray[np.float64]


def _tenseal() -> Any:
    try:
        import tenseal
    except ImportError as error:
        raise MissingDependencyError(
            "the TenSEAL mm kernel needs TenSEAL; run: pip install 'privaudit[crypto]'"
        ) from error
    return tenseal


def chunk_columns(dimension: int, slots: int) -> int:
    """The most output columns one ``mm`` call computes correctly: ``slots - d``."""
    columns = slots - dimension
    if columns < 1:
        raise ParameterError(f"dimension {dimension} leaves no room in {slots} slots for mm")
    return columns


def matmul_chunked(
    query: Any, matrix: FloatArray, *, slots: int, columns: int | None = None
) -> list[Any]:
    """``query.mm(matrix.T)`` in chunks of at most ``slots - d`` rows of ``matrix``.

    Parameters
    ----------
    query
        A TenSEAL ``CKKSVector`` of length ``d`` (one ciphertext).
    matrix
        ``(n, d)`` rows; returns encrypted ``matrix @ q``, one vector per chunk.
    slots
        CKKS slots of the context (N / 2).
    columns
        Rows per chunk (default and maximum: ``slots - d``).

    Raises
    ------
    ParameterError
        If ``columns`` exceeds ``slots - d``, where TenSEAL's ``mm`` is wrong.
    """
    dimension = query.size()
    limit = chunk_columns(dimension, slots)
    chosen = limit if columns is None else columns
    if not 1 <= chosen <= limit:
        raise ParameterError(
            f"columns must be in [1, {limit}] (slots - d): TenSEAL's mm returns wrong "
            f"results beyond; got {columns}"
        )
    return [
        query.mm(matrix[start : start + chosen].T) for start in range(0, matrix.shape[0], chosen)
    ]


def private_context(params: SearchParameters) -> Any:
    """A TenSEAL CKKS context with the secret key and every power-of-two rotation key."""
    ts = _tenseal()
    context = ts.context(
        ts.SCHEME_TYPE.CKKS,
        poly_modulus_degree=params.poly_modulus_degree,
        coeff_mod_bit_sizes=list(params.coeff_modulus_bits),
    )
    context.global_scale = params.scale
    context.generate_galois_keys()
    return context


def public_context_bytes(context: Any) -> bytes:
    """The context without its secret key or relinearisation keys (mm needs the public
    key: it encrypts a zero accumulator)."""
    public = context.copy()
    public.make_context_public()
    blob: bytes = public.serialize(
        save_public_key=True, save_secret_key=False, save_galois_keys=True, save_relin_keys=False
    )
    return blob


def load_public_context(blob: bytes) -> Any:
    """Load a querier's TenSEAL context; refuse one that carries a secret key."""
    ts = _tenseal()
    try:
        context = ts.context_from(bytes(blob))
    except SEAL_FAILURES as error:
        raise DataError(f"the TenSEAL context is malformed ({error})") from None
    if not context.is_public() or context.has_secret_key():
        raise DataError(
            "the context carries a secret key; a party must never receive one "
            "(send a public context)"
        )
    if not context.has_galois_keys():
        raise DataError("the TenSEAL context lacks the Galois keys that mm needs")
    return context


def encrypt(context: Any, values: FloatArray) -> bytes:
    """A fresh public-key encryption of ``values`` (TenSEAL's default)."""
    blob: bytes = _tenseal().ckks_vector(context, values.tolist()).serialize()
    return blob


def load_query(context: Any, blob: bytes, dimension: int) -> Any:
    """Deserialize an encrypted query of length ``dimension``."""
    try:
        vector = _tenseal().ckks_vector_from(context, bytes(blob))
    except SEAL_FAILURES as error:
        raise DataError(f"the query ciphertext is malformed ({error})") from None
    if vector.size() != dimension:
        raise DataError(f"the query has {vector.size()} slots in use; expected {dimension}")
    return vector


def scores(
    query: Any, matrix: FloatArray, offsets: FloatArray | None, *, slots: int
) -> list[bytes]:
    """Serialized encrypted ``matrix @ q`` (+ offsets), chunked at ``slots - d`` rows."""
    results = matmul_chunked(query, matrix, slots=slots)
    columns = chunk_columns(query.size(), slots)
    blobs = []
    for index, result in enumerate(results):
        if offsets is not None:
            result = result + offsets[index * columns : index * columns + result.size()].tolist()
        blobs.append(result.serialize())
    return blobs


def decrypt(context: Any, blob: bytes, *, max_bytes: int) -> list[float]:
    """Decrypt one serialized result vector with the querier's private context."""
    if len(blob) > max_bytes:
        raise LimitExceededError(
            f"a score ciphertext is {len(blob):,} bytes; at most {max_bytes:,} are accepted"
        )
    try:
        values: list[float] = _tenseal().ckks_vector_from(context, bytes(blob)).decrypt()
    except SEAL_FAILURES as error:
        raise DataError(f"a score ciphertext is malformed ({error})") from None
    return values
