"""The querier (key owner) and the data party (scores encrypted queries, holds no key).

Protocol (FRAG's architecture [Zha24]_ with sound encryption; see docs/vector_search.md)::

    Querier                                   DataParty i (plaintext shard X_i)
    keygen (sk stays here)
    public context: parameters + Galois keys ──►  cache by SHA-256 (once per session)
    Enc_sk(q) (fresh, seeded)  ──────────────►  BSGS scores Enc(X_i q) (+ noise)
    decrypt, merge, top-k      ◄──────────────  one ciphertext per chunk of vectors

References
----------
.. [Zha24] D. Zhao, "FRAG: Toward Federated Vector Database Management for
   Collaborative and Secure Retrieval-Augmented Generation", arXiv:2410.13272, 2024.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from privaudit.crypto.vector_search import _tenseal_mm
from privaudit.crypto.vector_search._kernel import (
    QUERY_PACKING,
    PackedShard,
    chunk_capacity,
    galois_elements,
    pack_query,
    query_period,
)
from privaudit.crypto.vector_search._noise import METRICS, ScoreNoise
from privaudit.crypto.vector_search._parameters import SearchParameters
from privaudit.crypto.vector_search._seal import dump, load_ciphertext, load_into, sealapi
from privaudit.crypto.vector_search._wire import Kind, decode_frame, encode_frame, field
from privaudit.errors import (
    BudgetExhaustedError,
    DataError,
    LimitExceededError,
    NotFoundError,
    ParameterError,
)
from privaudit.guarantees import PrivacyGuarantee
from privaudit.randomness import RandomSource

__all__ = [
    "MAX_CONTEXT_BYTES",
    "MAX_QUERY_BYTES",
    "ContextInfo",
    "DataParty",
    "EncryptedQuery",
    "EncryptedScores",
    "Querier",
    "ShardScores",
    "check_context",
    "check_vectors",
]

FloatArray = npt.NDArray[np.float64]
Metric = Literal["cosine", "inner_product", "squared_l2"]
Kernel = Literal["bsgs", "tenseal-mm"]
KERNELS = ("bsgs", "tenseal-mm")

# Size bounds of what a party accepts (bytes). A query is one seeded ciphertext at the
# first level (about 115 KB); the BSGS context is three or four seeded Galois keys (about
# 1.1-1.5 MB).
MAX_QUERY_BYTES = 1 * 2**20
MAX_CONTEXT_BYTES = 4 * 2**20
# TenSEAL's public context with every power-of-two rotation key is about 19 MB.
MAX_MM_CONTEXT_BYTES = 48 * 2**20
# A result ciphertext at the last level is at most 2 × N × 8 bytes plus a header.
MAX_RESULT_CIPHERTEXT_BYTES = 2**20
# Context ids are SHA-256 hex digests; query ids 128 to 256 random bits, in hex.
_CONTEXT_ID = re.compile(r"[0-9a-f]{64}")
_QUERY_ID = re.compile(r"[0-9a-f]{32,64}")
# Squared norms must stay far below the 2^19 headroom of the first prime over the scale.
MAX_SQUARED_NORM = 2.0**14


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ParameterError(f"metric must be one of {list(METRICS)}; got {metric!r}")


def _check_kernel(kernel: str) -> None:
    if kernel not in KERNELS:
        raise ParameterError(f"kernel must be one of {list(KERNELS)}; got {kernel!r}")


def _as_matrix(vectors: Any, dimension: int | None, what: str) -> FloatArray:
    try:
        array = np.asarray(vectors, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise DataError(f"{what} must be a numeric array; {error}") from None
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] == 0:
        raise DataError(f"{what} must have shape (n, d); got {array.shape}")
    if dimension is not None and array.shape[1] != dimension:
        raise DataError(f"{what} have dimension {array.shape[1]}; this search uses {dimension}")
    if not np.all(np.isfinite(array)):
        raise DataError(f"{what} contain NaN or infinite values")
    return array


def _normalise(array: FloatArray, what: str) -> FloatArray:
    with np.errstate(over="ignore", under="ignore"):
        norms = np.linalg.norm(array, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise DataError(f"{what} contain a zero vector, which has no cosine similarity")
    if not np.all(np.isfinite(norms)):
        raise DataError(f"{what} contain values too large to normalise (norm overflows)")
    normalised: FloatArray = array / norms
    return normalised


def check_vectors(
    vectors: Any,
    *,
    dimension: int,
    metric: str = "cosine",
    score_noise: ScoreNoise | None = None,
) -> FloatArray:
    """Check vectors as a :class:`DataParty` ingests them; return them as it stores them.

    Returns the ``(m, d)`` float64 array, normalised for cosine. A service calls this to
    refuse a bad batch before it stores anything.

    Raises
    ------
    DataError
        Wrong shape or dimension, non-finite values, zero vectors (cosine), vectors
        longer than the noise's norm bound, or squared norms above 2^14 (which would
        not fit the CKKS precision).
    """
    _check_metric(metric)
    array = _as_matrix(vectors, dimension, "vectors")
    if metric == "cosine":
        array = _normalise(array, "vectors")
    with np.errstate(over="ignore"):
        squared = np.einsum("ij,ij->i", array, array)  # inf when it overflows: refused below
    bound = score_noise.vector_norm_bound if score_noise else math.inf
    if metric != "cosine" and np.any(squared > bound**2 * (1 + 1e-9)):
        raise DataError(
            f"vectors must have norm <= {bound:g} (the noise's "
            "vector_norm_bound); normalise or clip them first"
        )
    if np.any(squared > MAX_SQUARED_NORM):
        raise DataError(
            f"vectors must have squared norm <= {MAX_SQUARED_NORM:g} so that "
            "scores fit the CKKS precision; rescale them"
        )
    return array


@dataclass(frozen=True, slots=True)
class EncryptedQuery:
    """One encrypted query: what the querier sends to every party.

    Attributes
    ----------
    context_id
        SHA-256 (hex) of the public context the parties must use.
    query_id
        A random 128-bit id (hex) that the parties echo in their answers.
    dimension
        ``d`` of the query (public: the parties' shards have it too).
    ciphertext
        The serialized ciphertext (SEAL or TenSEAL format, by the context's kernel).
    """

    context_id: str
    query_id: str
    dimension: int
    ciphertext: bytes

    def to_bytes(self) -> bytes:
        """The wire form (:mod:`privaudit.crypto.vector_search._wire`)."""
        header = {
            "context_id": self.context_id,
            "query_id": self.query_id,
            "dimension": self.dimension,
        }
        return encode_frame(Kind.QUERY, header, [self.ciphertext])

    @classmethod
    def from_bytes(cls, blob: bytes, *, max_bytes: int = MAX_QUERY_BYTES) -> EncryptedQuery:
        """Parse the wire form; DataError or LimitExceededError if malformed or too big."""
        header, sections = decode_frame(blob, kind=Kind.QUERY, max_bytes=max_bytes, max_sections=1)
        if len(sections) != 1:
            raise DataError("a query message holds exactly one ciphertext")
        context_id = field(header, "context_id", str, "query")
        query_id = field(header, "query_id", str, "query")
        if not _CONTEXT_ID.fullmatch(context_id) or not _QUERY_ID.fullmatch(query_id):
            raise DataError(
                "the query's context_id must be a SHA-256 and its query_id 16 to 64 "
                "random bytes, both in lowercase hex"
            )
        return cls(
            context_id=context_id,
            query_id=query_id,
            dimension=field(header, "dimension", int, "query"),
            ciphertext=sections[0],
        )


@dataclass(frozen=True, slots=True)
class EncryptedScores:
    """A party's answer: encrypted scores of all its vectors, and their ids in clear.

    Attributes
    ----------
    party_id, query_id, context_id
        Who answered, to which query, under which context.
    metric
        ``"cosine"``, ``"inner_product"`` or ``"squared_l2"`` (the querier adds ‖q‖²).
    ids
        The ids of the shard's vectors, in slot order.
    ciphertexts
        One serialized ciphertext per :func:`chunk_capacity` vectors (TenSEAL ``mm``:
        per ``slots - d``).
    noise_sigma
        Standard deviation of the noise the party added (0 when none).
    """

    party_id: str
    query_id: str
    context_id: str
    metric: str
    ids: tuple[str, ...]
    ciphertexts: tuple[bytes, ...]
    noise_sigma: float = 0.0

    def to_bytes(self) -> bytes:
        """The wire form."""
        header = {
            "party_id": self.party_id,
            "query_id": self.query_id,
            "context_id": self.context_id,
            "metric": self.metric,
            "ids": list(self.ids),
            "noise_sigma": self.noise_sigma,
        }
        return encode_frame(Kind.SCORES, header, list(self.ciphertexts))

    @classmethod
    def from_bytes(cls, blob: bytes, *, max_bytes: int = 64 * 2**20) -> EncryptedScores:
        """Parse the wire form; DataError or LimitExceededError if malformed or too big."""
        header, sections = decode_frame(
            blob, kind=Kind.SCORES, max_bytes=max_bytes, max_sections=4096
        )
        ids = field(header, "ids", list, "scores")
        if not all(isinstance(item, str) for item in ids):
            raise DataError("the scores header field 'ids' must be a list of strings")
        return cls(
            party_id=field(header, "party_id", str, "scores"),
            query_id=field(header, "query_id", str, "scores"),
            context_id=field(header, "context_id", str, "scores"),
            metric=field(header, "metric", str, "scores"),
            ids=tuple(ids),
            ciphertexts=tuple(sections),
            noise_sigma=float(field(header, "noise_sigma", (int, float), "scores")),
        )

    @property
    def size_bytes(self) -> int:
        """Bytes of the ciphertexts (what the scores cost on the wire, ids aside)."""
        return sum(len(blob) for blob in self.ciphertexts)


@dataclass(frozen=True, slots=True)
class ShardScores:
    """Decrypted scores of one party's shard (higher is closer, except squared_l2)."""

    party_id: str
    metric: str
    ids: tuple[str, ...]
    scores: FloatArray


class Querier:
    """Owns the CKKS secret key: encrypts queries, decrypts scores, selects the top-k.

    Parameters
    ----------
    dimension
        ``d`` of the vectors searched.
    metric
        ``"cosine"`` (the query is normalised), ``"inner_product"`` or ``"squared_l2"``.
    params
        CKKS parameters (default: N = 8192, [60, 40, 60], scale 2^40; 128-bit security,
        checked on construction).
    kernel
        ``"bsgs"`` (default; 3-4 Galois keys, about 1.1-1.5 MB) or ``"tenseal-mm"`` (the
        TenSEAL ``mm`` fallback and baseline; every power-of-two rotation key, about
        19 MB, and no real-part projection).

    Notes
    -----
    The secret key never leaves this object: :meth:`public_context` holds the encryption
    parameters and the Galois keys only. Every query is a fresh encryption (symmetric,
    under the secret key, with a fresh seed from SEAL's CSPRNG), never FRAG's
    multiplicative caching, which leaks plaintext ratios (docs/vector_search.md).
    """

    def __init__(
        self,
        *,
        dimension: int,
        metric: Metric = "cosine",
        params: SearchParameters | None = None,
        kernel: Kernel = "bsgs",
    ) -> None:
        if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
            raise ParameterError(f"dimension must be a positive int; got {dimension!r}")
        _check_metric(metric)
        _check_kernel(kernel)
        self.params = params if params is not None else SearchParameters()
        if query_period(dimension, self.params) > self.params.slots:
            raise ParameterError(
                f"dimension {dimension} does not fit in {self.params.slots} slots; "
                "use a larger poly_modulus_degree"
            )
        self.dimension, self.metric, self.kernel = dimension, metric, kernel
        # Queries in flight: query_id -> ‖q‖² (the squared distance needs it to finish).
        self._query_norms: OrderedDict[str, float] = OrderedDict()
        if kernel == "bsgs":
            api = sealapi()
            self._context = self.params.seal_context()
            keygen = api.KeyGenerator(self._context)
            self._secret_key = keygen.secret_key()
            self._encryptor = api.Encryptor(self._context, self._secret_key)
            self._decryptor = api.Decryptor(self._context, self._secret_key)
            self._encoder = api.CKKSEncoder(self._context)
            galois = keygen.create_galois_keys(galois_elements(dimension, self.params))
            sections = [dump(self.params.encryption_parameters().save), dump(galois.save)]
        else:
            self._tenseal = _tenseal_mm.private_context(self.params)
            sections = [_tenseal_mm.public_context_bytes(self._tenseal)]
        header: dict[str, Any] = {
            "kernel": kernel,
            "dimension": dimension,
            "params": self.params.to_dict(),
        }
        if kernel == "bsgs":
            header["packing"] = QUERY_PACKING
        self._public_context = encode_frame(Kind.CONTEXT, header, sections)
        self.context_id = hashlib.sha256(self._public_context).hexdigest()

    def public_context(self) -> bytes:
        """Parameters and Galois keys for the parties (no secret key); send once."""
        return self._public_context

    def encrypt_query(self, vector: Any) -> EncryptedQuery:
        """A fresh encryption of ``vector`` (normalised first for cosine)."""
        query = _as_matrix(vector, self.dimension, "the query")
        if query.shape[0] != 1:
            raise DataError(f"encrypt one query vector at a time; got {query.shape[0]}")
        if self.metric == "cosine":
            query = _normalise(query, "the query")
        values = query[0]
        if float(values @ values) > MAX_SQUARED_NORM:
            raise DataError(f"the query's squared norm must be at most {MAX_SQUARED_NORM:g}")
        query_id = secrets.token_hex(16)
        self._query_norms[query_id] = float(values @ values)
        while len(self._query_norms) > 4096:
            self._query_norms.popitem(last=False)
        if self.kernel == "bsgs":
            api = sealapi()
            plaintext = api.Plaintext()
            self._encoder.encode(
                pack_query(values, self.params).tolist(),
                self._context.first_parms_id(),
                self.params.scale,
                plaintext,
            )
            # Seeded symmetric encryption: fresh randomness, half the bytes on the wire.
            ciphertext = dump(self._encryptor.encrypt_symmetric(plaintext).save)
        else:
            ciphertext = _tenseal_mm.encrypt(self._tenseal, values)
        return EncryptedQuery(self.context_id, query_id, self.dimension, ciphertext)

    def decrypt_scores(self, answer: EncryptedScores | bytes) -> ShardScores:
        """Decrypt one party's answer to one of this querier's queries.

        Raises
        ------
        DataError
            If the answer is malformed, is for another context or an unknown query,
            or its ciphertexts do not match the ids.
        """
        if not isinstance(answer, EncryptedScores):
            answer = EncryptedScores.from_bytes(answer)
        if answer.context_id != self.context_id:
            raise DataError("the answer was computed under another querier's context")
        if answer.query_id not in self._query_norms:
            raise DataError(f"the answer is for an unknown query {answer.query_id!r}")
        if answer.metric != self.metric:
            raise DataError(
                f"the party scored by {answer.metric!r}; this querier uses {self.metric!r}"
            )
        count = len(answer.ids)
        per_chunk = self._per_chunk()
        expected = math.ceil(count / per_chunk)
        if len(answer.ciphertexts) != expected:
            raise DataError(
                f"{count} ids need {expected} ciphertexts; got {len(answer.ciphertexts)}"
            )
        values: list[float] = []
        for index, blob in enumerate(answer.ciphertexts):
            size = min(per_chunk, count - index * per_chunk)
            values.extend(self._decrypt_one(blob)[:size])
        scores = np.asarray(values, dtype=np.float64)
        if self.metric == "squared_l2":
            scores = scores + self._query_norms[answer.query_id]
        return ShardScores(answer.party_id, answer.metric, answer.ids, scores)

    def _per_chunk(self) -> int:
        if self.kernel == "bsgs":
            return chunk_capacity(self.dimension, self.params)
        return _tenseal_mm.chunk_columns(self.dimension, self.params.slots)

    def _decrypt_one(self, blob: bytes) -> list[float]:
        if self.kernel == "tenseal-mm":
            return _tenseal_mm.decrypt(self._tenseal, blob, max_bytes=MAX_RESULT_CIPHERTEXT_BYTES)
        api = sealapi()
        ciphertext = load_ciphertext(
            self._context, blob, what="a score ciphertext", max_bytes=MAX_RESULT_CIPHERTEXT_BYTES
        )
        if ciphertext.size() != 2 or ciphertext.parms_id() != self._context.last_parms_id():
            raise DataError("a score ciphertext is not a fresh kernel output (wrong level/size)")
        if not math.isclose(ciphertext.scale, self.params.scale, rel_tol=1e-2):
            raise DataError(
                f"a score ciphertext has scale {ciphertext.scale:g}; expected "
                f"about {self.params.scale:g}"
            )
        plaintext = api.Plaintext()
        self._decryptor.decrypt(ciphertext, plaintext)
        decoded: list[float] = self._encoder.decode_double(plaintext)
        return decoded

    def top_k(self, answers: Sequence[ShardScores], k: int) -> list[Hit]:
        """The global top-``k`` over several shards (smallest distances for squared_l2)."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ParameterError(f"k must be a positive int; got {k!r}")
        return merge_top_k(answers, k, metric=self.metric)


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result: which party, which vector id, and its decrypted score."""

    party_id: str
    id: str
    score: float


def merge_top_k(answers: Sequence[ShardScores], k: int, *, metric: str) -> list[Hit]:
    """Merge decrypted shard scores into the global top-k (ties broken by party, id)."""
    if not answers:
        return []
    scores = np.concatenate([answer.scores for answer in answers])
    owners = [(answer.party_id, id_) for answer in answers for id_ in answer.ids]
    keys = scores if metric == "squared_l2" else -scores
    take = min(k, scores.size)
    best = np.argpartition(keys, take - 1)[:take] if take < scores.size else np.arange(take)
    order = sorted(best.tolist(), key=lambda i: (keys[i], owners[i]))
    return [Hit(owners[i][0], owners[i][1], float(scores[i])) for i in order]


@dataclass
class _LoadedContext:
    kernel: str
    dimension: int
    context: Any
    evaluator: Any = None
    galois_keys: Any = None


@dataclass(frozen=True, slots=True)
class ContextInfo:
    """What a checked public context is for (see :func:`check_context`).

    Attributes
    ----------
    context_id
        SHA-256 (hex) of the context's bytes: how queries refer to it.
    kernel, dimension, params
        The kernel, vector dimension and CKKS parameters it was made for.
    size_bytes
        Its size on the wire.
    """

    context_id: str
    kernel: str
    dimension: int
    params: SearchParameters
    size_bytes: int


def check_context(context: bytes, *, max_bytes: int = MAX_CONTEXT_BYTES) -> ContextInfo:
    """Check a querier's public context on its own terms, before any party uses it.

    The context must be a well-formed frame, of at most ``max_bytes``, for 128-bit
    parameters and a dimension that fits them, and hold exactly the public keys its
    kernel needs (no secret key). A party still checks that the dimension and
    parameters are its own when it registers the context.

    Raises
    ------
    LimitExceededError, DataError, ParameterError
        As :meth:`DataParty.register_context`.
    """
    kernel, dimension, described, sections = _parse_context(context, max_bytes=max_bytes)
    params = SearchParameters.from_dict(described)
    if dimension < 1 or query_period(dimension, params) > params.slots:
        raise ParameterError(
            f"the context's dimension {dimension} does not fit its {params.slots} slots"
        )
    _load_context(kernel, sections, dimension=dimension, params=params, max_bytes=max_bytes)
    return ContextInfo(
        context_id=hashlib.sha256(bytes(context)).hexdigest(),
        kernel=kernel,
        dimension=dimension,
        params=params,
        size_bytes=len(context),
    )


def _parse_context(context: bytes, *, max_bytes: int) -> tuple[str, int, Any, list[bytes]]:
    """The kernel, dimension, parameters (as described) and sections of a context."""
    header, sections = decode_frame(context, kind=Kind.CONTEXT, max_bytes=max_bytes, max_sections=2)
    kernel = field(header, "kernel", str, "context")
    _check_kernel(kernel)
    dimension = field(header, "dimension", int, "context")
    if kernel == "bsgs" and header.get("packing") != QUERY_PACKING:
        raise DataError(
            f"the context packs queries as {header.get('packing')!r}; parties of this "
            f"version expect {QUERY_PACKING!r} (two coordinates per complex slot): make "
            "a new Querier (and context) with this version of privaudit"
        )
    return kernel, dimension, header.get("params"), sections


def _load_context(
    kernel: str,
    sections: list[bytes],
    *,
    dimension: int,
    params: SearchParameters,
    max_bytes: int,
) -> _LoadedContext:
    """Load a context's keys for ``params``; refuse any other key set."""
    if kernel == "tenseal-mm":
        if len(sections) != 1:
            raise DataError("a tenseal-mm context holds one TenSEAL context")
        return _LoadedContext(kernel, dimension, _tenseal_mm.load_public_context(sections[0]))
    api = sealapi()
    if len(sections) != 2:
        raise DataError("a bsgs context holds encryption parameters and Galois keys")
    parms = api.EncryptionParameters(api.SCHEME_TYPE.CKKS)
    load_into(parms.load, sections[0], what="encryption parameters", max_bytes=2**16)
    degree = parms.poly_modulus_degree()
    bits = [modulus.bit_count() for modulus in parms.coeff_modulus()]
    if degree != params.poly_modulus_degree or tuple(bits) != params.coeff_modulus_bits:
        raise ParameterError(
            f"the context's encryption parameters (N = {degree}, "
            f"primes of {bits} bits) differ from the parameters it describes "
            f"(N = {params.poly_modulus_degree}, primes of {list(params.coeff_modulus_bits)} bits)"
        )
    context = params.seal_context(parms)
    if not context.parameters_set():
        raise ParameterError(
            "the context's encryption parameters are not valid at "
            f"128-bit security: {context.parameters_error_message()}"
        )
    galois_keys = api.GaloisKeys()
    load_into(
        partial(galois_keys.load, context), sections[1], what="Galois keys", max_bytes=max_bytes
    )
    needed = galois_elements(dimension, params)
    if galois_keys.size() != len(needed) or not all(
        galois_keys.has_key(element) for element in needed
    ):
        raise DataError(
            f"the context must hold exactly the Galois keys {needed} "
            "(rotations by 1, the baby step and half the slots, and conjugation)"
        )
    return _LoadedContext("bsgs", dimension, context, api.Evaluator(context), galois_keys)


class DataParty:
    """Holds a plaintext shard and scores encrypted queries; never holds a secret key.

    Parameters
    ----------
    party_id
        Names the party in answers and merged results.
    dimension
        ``d`` of the shard's vectors.
    metric
        ``"cosine"`` (vectors normalised at ingest), ``"inner_product"`` or
        ``"squared_l2"`` (squared norms stored at ingest; the score returned is
        ``‖x‖² - 2 <x, q>`` and the querier adds ``‖q‖²``).
    params
        The CKKS parameters the party accepts (checked against every context).
    max_queries_per_querier
        Queries each querier may make (``None``: unlimited). Bounds what the scores
        reveal: about ``d`` real queries determine every vector exactly.
    score_noise
        Optional :class:`ScoreNoise` added to every score before it is returned.
    rng
        Randomness of the noise; ``None`` is release randomness (ChaCha20), a seeded
        generator is for tests and simulations only.
    max_context_bytes, max_query_bytes
        Size bounds on what the party accepts.
    max_contexts
        How many public contexts the cache keeps (least recently used are dropped).

    Notes
    -----
    A party learns nothing about the query: it only ever sees ciphertexts under the
    querier's key and the querier's public Galois keys. What it reveals is stated in
    docs/vector_search.md: every score of its shard, to the querier, per query.
    """

    def __init__(
        self,
        *,
        party_id: str,
        dimension: int,
        metric: Metric = "cosine",
        params: SearchParameters | None = None,
        max_queries_per_querier: int | None = 1000,
        score_noise: ScoreNoise | None = None,
        rng: RandomSource = None,
        max_context_bytes: int = MAX_CONTEXT_BYTES,
        max_query_bytes: int = MAX_QUERY_BYTES,
        max_contexts: int = 64,
    ) -> None:
        if not isinstance(party_id, str) or not party_id:
            raise ParameterError(f"party_id must be a non-empty string; got {party_id!r}")
        if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
            raise ParameterError(f"dimension must be a positive int; got {dimension!r}")
        _check_metric(metric)
        if max_queries_per_querier is not None and (
            isinstance(max_queries_per_querier, bool)
            or not isinstance(max_queries_per_querier, int)
            or max_queries_per_querier < 1
        ):
            raise ParameterError(
                f"max_queries_per_querier must be a positive int or None; "
                f"got {max_queries_per_querier!r}"
            )
        if score_noise is not None and not isinstance(score_noise, ScoreNoise):
            raise ParameterError("score_noise must be a ScoreNoise or None")
        self.party_id, self.dimension, self.metric = party_id, dimension, metric
        self.params = params if params is not None else SearchParameters()
        self.max_queries_per_querier = max_queries_per_querier
        self.score_noise = score_noise
        self.rng = rng
        self.max_context_bytes, self.max_query_bytes = max_context_bytes, max_query_bytes
        self.max_contexts = max_contexts
        factor = -2.0 if metric == "squared_l2" else 1.0  # ‖x‖² - 2<x, q>: norms added later
        # 1/2: the real-part projection r + conj(r) doubles every score.
        self._shard = PackedShard(dimension=dimension, params=self.params, factor=factor / 2)
        self._vectors = np.zeros((0, dimension))  # kept for the TenSEAL mm fallback
        self._squared_norms = np.zeros(0)
        self._ids: list[str] = []
        self._contexts: OrderedDict[str, _LoadedContext] = OrderedDict()
        self._queries_used: dict[str, int] = {}

    # --- data -----------------------------------------------------------------------

    def ingest(self, vectors: Any, ids: Sequence[str | int] | None = None) -> DataParty:
        """Add vectors (``(m, d)``) with optional ids, and pre-encode their diagonals.

        Raises
        ------
        DataError
            Wrong shape or dimension, non-finite values, zero vectors (cosine), vectors
            longer than the noise's norm bound, duplicate ids.
        """
        array = check_vectors(
            vectors, dimension=self.dimension, metric=self.metric, score_noise=self.score_noise
        )
        squared = np.einsum("ij,ij->i", array, array)
        start = len(self._ids)
        new_ids = (
            [str(i) for i in range(start, start + array.shape[0])]
            if ids is None
            else [str(i) for i in ids]
        )
        if len(new_ids) != array.shape[0]:
            raise DataError(f"{array.shape[0]} vectors need as many ids; got {len(new_ids)}")
        if len(set(new_ids)) != len(new_ids) or set(new_ids) & set(self._ids):
            raise DataError("ids must be unique within a shard")
        self._shard.append(array)
        self._vectors = np.concatenate([self._vectors, array])
        self._squared_norms = np.concatenate([self._squared_norms, squared])
        self._ids.extend(new_ids)
        return self

    @property
    def size(self) -> int:
        """Vectors in the shard."""
        return len(self._ids)

    # --- contexts -------------------------------------------------------------------

    def register_context(self, context: bytes) -> str:
        """Check and cache a querier's public context; return its id (SHA-256 hex).

        Raises
        ------
        LimitExceededError
            If the context is larger than ``max_context_bytes``.
        ParameterError
            If its parameters, kernel or dimension differ from this party's.
        DataError
            If it is malformed, or holds anything but parameters and Galois keys.
        """
        context_id = hashlib.sha256(bytes(context)).hexdigest()
        if context_id in self._contexts:
            self._contexts.move_to_end(context_id)
            return context_id
        kernel, dimension, params, sections = _parse_context(
            context, max_bytes=self.max_context_bytes
        )
        if dimension != self.dimension:
            raise ParameterError(
                f"the context is for dimension {dimension}; this party's "
                f"shard has dimension {self.dimension}"
            )
        if params != self.params.to_dict():
            described = repr(params)
            raise ParameterError(
                f"the context's parameters {described[:300]} differ from this party's "
                f"{self.params.to_dict()}"
            )
        loaded = _load_context(
            kernel,
            sections,
            dimension=dimension,
            params=self.params,
            max_bytes=self.max_context_bytes,
        )
        self._contexts[context_id] = loaded
        while len(self._contexts) > self.max_contexts:
            self._contexts.popitem(last=False)
        return context_id

    def has_context(self, context_id: str) -> bool:
        """Whether the context with this SHA-256 (hex) is registered and still cached."""
        return context_id in self._contexts

    # --- search ---------------------------------------------------------------------

    def search(
        self,
        query: EncryptedQuery | bytes,
        *,
        querier_id: str,
        context: bytes | None = None,
    ) -> EncryptedScores:
        """Encrypted scores of every vector of the shard for one encrypted query.

        Parameters
        ----------
        query
            An :class:`EncryptedQuery` or its bytes.
        querier_id
            Who asks (authenticated by the caller, e.g. the REST layer); the query budget
            is counted per querier.
        context
            The querier's public context, if not registered before.

        Raises
        ------
        NotFoundError
            If the query's context is neither registered nor given.
        BudgetExhaustedError
            If ``querier_id`` has used up ``max_queries_per_querier``.
        DataError, ParameterError, LimitExceededError
            For malformed, mismatched or oversized queries and contexts.
        """
        if context is not None:
            self.register_context(context)
        if not isinstance(query, EncryptedQuery):
            query = EncryptedQuery.from_bytes(query, max_bytes=self.max_query_bytes)
        if len(query.ciphertext) > self.max_query_bytes:
            raise LimitExceededError(
                f"the query ciphertext is {len(query.ciphertext):,} bytes;"
                f" at most {self.max_query_bytes:,} are accepted"
            )
        loaded = self._contexts.get(query.context_id)
        if loaded is None:
            raise NotFoundError(
                f"unknown context {query.context_id!r}; send the querier's "
                "public context first (register_context)"
            )
        if query.dimension != self.dimension:
            raise DataError(
                f"the query has dimension {query.dimension}; this shard has {self.dimension}"
            )
        used = self._queries_used.get(querier_id, 0)
        if self.max_queries_per_querier is not None and used >= self.max_queries_per_querier:
            raise BudgetExhaustedError(
                f"querier {querier_id!r} has used its {self.max_queries_per_querier} queries "
                f"at party {self.party_id!r}",
                querier_id=querier_id,
            )
        if self.size == 0:
            raise DataError(f"party {self.party_id!r} has no vectors; ingest some first")
        ciphertext = self._load_query(loaded, query.ciphertext)
        self._queries_used[querier_id] = used + 1
        offsets = self._squared_norms.copy() if self.metric == "squared_l2" else None
        if self.score_noise is not None:
            noise = self.score_noise.sample(self.size, self.rng)
            offsets = noise if offsets is None else offsets + noise
        if loaded.kernel == "bsgs":
            results = self._shard.scores(
                ciphertext,
                evaluator=loaded.evaluator,
                galois_keys=loaded.galois_keys,
                offsets=offsets,
            )
            blobs = tuple(dump(result.save) for result in results)
        else:
            sign = -2.0 if self.metric == "squared_l2" else 1.0
            blobs = tuple(
                _tenseal_mm.scores(
                    ciphertext, self._vectors * sign, offsets, slots=self.params.slots
                )
            )
        return EncryptedScores(
            party_id=self.party_id,
            query_id=query.query_id,
            context_id=query.context_id,
            metric=self.metric,
            ids=tuple(self._ids),
            ciphertexts=blobs,
            noise_sigma=self.score_noise.sigma if self.score_noise else 0.0,
        )

    def _load_query(self, loaded: _LoadedContext, blob: bytes) -> Any:
        if loaded.kernel == "tenseal-mm":
            return _tenseal_mm.load_query(loaded.context, blob, self.dimension)
        ciphertext = load_ciphertext(
            loaded.context, blob, what="the query ciphertext", max_bytes=self.max_query_bytes
        )
        if (
            ciphertext.size() != 2
            or ciphertext.parms_id() != loaded.context.first_parms_id()
            or not ciphertext.is_ntt_form()
        ):
            raise DataError(
                "the query must be a fresh ciphertext at the first data level "
                "(two polynomials, NTT form)"
            )
        if ciphertext.scale != self.params.scale:
            raise DataError(
                f"the query's scale is {ciphertext.scale:g}; the parameters use "
                f"{self.params.scale:g}"
            )
        return ciphertext

    # --- leakage accounting ---------------------------------------------------------

    def queries_used(self, querier_id: str) -> int:
        """Queries ``querier_id`` has made at this party."""
        return self._queries_used.get(querier_id, 0)

    def privacy_guarantee(self, querier_id: str) -> PrivacyGuarantee | None:
        """The zCDP guarantee of this party's vectors against ``querier_id`` so far.

        ``None`` without score noise (the querier then sees exact scores) or before the
        first query.
        """
        used = self.queries_used(querier_id)
        if self.score_noise is None or used == 0:
            return None
        return self.score_noise.guarantee(self.metric, queries=used)
