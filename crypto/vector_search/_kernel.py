"""The packed baby-step/giant-step diagonal kernel: one encrypted query against a shard.

CKKS slots are complex, so every slot carries two coordinates. The querier pads its
query ``q`` to ``2p`` coordinates (``p``, the *period*, is ``⌈d/2⌉`` or the next power of
two: :func:`query_period`), packs it as ``z[t] = q[t] + i·q[p + t]`` and repeats ``z``
over the slots, ``z_rep[t] = z[t mod p]``. A party packs each vector the conjugate way,
``y[t] = x[t] - i·x[p + t]``, so that ``Re(y[t]·z[t]) = x[t]q[t] + x[p+t]q[p+t]`` and the
real part of ``Σ_t y[t]·z[t]`` is ``<x, q>``: half the plaintext products and rotations
of one coordinate per slot. (The imaginary part, ``Σ x[t]q[p+t] - x[p+t]q[t]``, is
never returned: see below.)

A shard of ``n`` vectors is cut into chunks of :func:`chunk_capacity` vectors (all the
slots when ``p`` divides them; otherwise the windows ``[s, s + p)`` must not run past the
last slot). For chunk vectors ``y_0 .. y_{S-1}`` the generalised diagonals are
``D_i[s] = y_s[(s + i) mod p]`` (Halevi-Shoup [HS14]_), so that

    Σ_i D_i ⊙ Rot(z_rep, i)  has slot s with real part  <x_s, q>.

A last chunk that fits in half the slots is folded (:func:`fold_window`): each vector
sits in both halves, which see the query at different shifts, so fewer rotations ``i``
cover all its coordinates and one rotation by ``slots/2`` adds the halves.

Baby-step/giant-step [HS18]_ writes ``i = g·b + k`` and pre-rotates the diagonals by
``-g·b`` at ingest, so a query costs ``b - 1`` rotations of the query (shared by every
chunk) and ``G - 1`` rotations per chunk (Horner over the giant steps), with only two
rotation keys (steps 1 and ``b``) instead of one per power of two. Each giant step's
inner sum is rescaled before it enters the Horner chain, so those rotations run at the
last level, where key switching costs about half. One conjugation per chunk then keeps
only the real part (``r + conj(r) = 2 Re r``; the diagonals carry the factor 1/2): the
cross terms in the imaginary part never reach the querier, and a querier who puts
anything else in its slots still gets one real linear function of each vector per query.
All plaintexts are encoded once at ingest, at the query's level and at scale Δ.

References
----------
.. [HS14] S. Halevi and V. Shoup, "Algorithms in HElib", CRYPTO 2014 (the diagonal
   method for matrix-vector products).
.. [HS18] S. Halevi and V. Shoup, "Faster Homomorphic Linear Transformations in HElib",
   CRYPTO 2018 (baby-step/giant-step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from privaudit.crypto.vector_search._parameters import SearchParameters
from privaudit.crypto.vector_search._seal import sealapi
from privaudit.errors import ParameterError

__all__ = [
    "QUERY_PACKING",
    "PackedShard",
    "bsgs_steps",
    "chunk_capacity",
    "galois_elements",
    "pack_query",
    "padded_dimension",
    "query_period",
    "shard_memory_bytes",
]

FloatArray = npt.NDArray[np.float64]
ComplexArray = npt.NDArray[np.complex128]

# Named in every BSGS context: a party refuses queries packed any other way (an older
# querier's one coordinate per slot would give wrong scores, not an error).
QUERY_PACKING = "complex-pairs"


def padded_dimension(dimension: int) -> int:
    """The next power of two ``>= dimension``."""
    if dimension < 1:
        raise ParameterError(f"dimension must be >= 1; got {dimension}")
    return 1 << (dimension - 1).bit_length()


def query_period(dimension: int, params: SearchParameters | None = None) -> int:
    """``p``: the period of the replicated query, two coordinates per complex slot.

    Either ``h = ⌈d/2⌉`` itself or the next power of two, whichever costs fewer
    plaintext products per vector (``p / capacity``): 192 for d = 384, 384 for d = 768.
    """
    if dimension < 1:
        raise ParameterError(f"dimension must be >= 1; got {dimension}")
    slots = (params or SearchParameters()).slots
    half = -(-dimension // 2)
    power = padded_dimension(half)
    if half >= slots or power * _capacity(half, slots) <= half * slots:
        return power
    return half


def _capacity(period: int, slots: int) -> int:
    # Windows [s, s + p) of a query tiled with period p that do not run past the last
    # slot see every coordinate once; all of them do when p divides the slots.
    return slots if slots % period == 0 else slots - period + 1


def chunk_capacity(dimension: int, params: SearchParameters | None = None) -> int:
    """Vectors per result ciphertext: all slots when ``p`` divides them, else ``slots - p + 1``.

    Examples
    --------
    >>> chunk_capacity(384), chunk_capacity(768), chunk_capacity(16)
    (3905, 3713, 4096)
    """
    params = params or SearchParameters()
    return _capacity(query_period(dimension, params), params.slots)


def shard_memory_bytes(size: int, dimension: int, params: SearchParameters) -> int:
    """Bytes a :class:`~privaudit.crypto.vector_search.DataParty` holds for ``size`` vectors.

    The pre-encoded plaintexts (``p`` per chunk of :func:`chunk_capacity` vectors, the
    :func:`fold_window` for a folded last chunk; each ``N`` coefficients of 8 bytes per
    data prime), the float64 vectors it keeps, and the diagonal index of
    :class:`PackedShard` (``slots · p`` int64).

    Examples
    --------
    >>> round(shard_memory_bytes(10_000, 384, SearchParameters()) / 2**20)
    107
    """
    period, capacity = query_period(dimension, params), chunk_capacity(dimension, params)
    full, last = divmod(size, capacity)
    fold = fold_window(dimension, params)
    if last and fold is not None and last <= params.slots // 2 - fold + 1:
        count = full * period + fold
    else:
        count = (full + (last > 0)) * period
    primes = len(params.coeff_modulus_bits) - 1  # plaintexts live at the first data level
    plaintexts = count * params.poly_modulus_degree * primes * 8
    return plaintexts + size * dimension * 8 + params.slots * period * 8


def bsgs_steps(dimension: int, params: SearchParameters | None = None) -> tuple[int, int]:
    """Baby and giant step counts ``(b, G)``: ``b`` a power of two near ``√p``, ``G = ⌈p/b⌉``.

    Baby steps rotate the query at the first level (the dearer rotations, shared by
    all chunks); giant steps rotate rescaled sums at the last level, once per chunk.
    """
    period = query_period(dimension, params)
    baby = 1 << ((period - 1).bit_length() // 2)
    return baby, -(-period // baby)


def galois_elements(dimension: int, params: SearchParameters) -> list[int]:
    """The Galois elements of the only keys the kernel uses.

    Rotations by 1 and by the baby step ``b``, by half the slots where a small shard is
    folded (:func:`fold_window`), and conjugation. Rotation by ``step`` is the element
    ``3^step mod 2N``; conjugation is ``2N - 1``.
    """
    two_n = 2 * params.poly_modulus_degree
    baby, giant = bsgs_steps(dimension, params)
    steps = ([1] if baby > 1 else []) + ([baby] if giant > 1 else [])
    if fold_window(dimension, params) is not None and params.slots // 2 not in steps:
        steps.append(params.slots // 2)
    return [pow(3, step, two_n) for step in steps] + [two_n - 1]


def fold_window(dimension: int, params: SearchParameters | None = None) -> int | None:
    """Rotations per folded chunk, or ``None`` where folding does not pay.

    Slot ``s + slots/2`` sees the query shifted by ``δ = (slots/2) mod p`` against slot
    ``s``. A chunk of at most ``slots/2 - w + 1`` vectors (the last chunk of a small
    shard) puts each vector in both halves: windows of ``w = max(δ, p - δ)`` rotations
    at offsets 0 and δ cover all ``p`` coordinate pairs (the overlap is zero in the
    second copy), and one rotation by ``slots/2`` adds the halves. ``w`` is 128 instead
    of 192 for d = 384, 256 instead of 384 for d = 768; ``None`` when it would save less
    than a quarter of the ``p`` products (not worth a rotation and a Galois key), as when
    ``p`` divides ``slots/2`` (both halves would see the same coordinates).
    """
    params = params or SearchParameters()
    period, half = query_period(dimension, params), params.slots // 2
    shift = half % period
    window = max(shift, period - shift)
    return window if 4 * window <= 3 * period else None


def pack_query(query: FloatArray, params: SearchParameters) -> ComplexArray:
    """``q`` as the querier encrypts it: ``z[t] = q[t] + i·q[p + t]``, repeated over the
    slots with period ``p`` (the last repetition cut short when ``p`` does not divide
    the slots)."""
    period = query_period(query.size, params)
    padded = np.zeros(2 * period)
    padded[: query.size] = query
    packed: ComplexArray = np.resize(padded[:period] + 1j * padded[period:], params.slots)
    return packed


@dataclass(frozen=True)
class _Chunk:
    plaintexts: list[list[Any]]  # [giant][baby]
    size: int  # vectors in this chunk (the last one may be partial)
    folded: bool  # each vector in both halves of the slots (fold_window)


class PackedShard:
    """A shard's vectors as pre-encoded, pre-rotated plaintext diagonals.

    Parameters
    ----------
    dimension
        ``d``; vectors come through :meth:`append`, already transformed for the metric
        (normalised for cosine); the kernel computes ``factor · <x, q>`` for each.
    params
        The CKKS parameters; plaintexts are encoded at their first data level.
    factor
        Multiplies every score (1/2 to undo the doubling of the real-part projection,
        -1 for the ``-2 <x, q>`` term of the squared distance).

    Notes
    -----
    Memory: ``p`` plaintexts of ``N · 2 · 8`` bytes per :func:`chunk_capacity` vectors
    (about 75 MB for 10,000 × 384 at N = 8192): about 5 times the float32 vectors.
    """

    def __init__(self, *, dimension: int, params: SearchParameters, factor: float) -> None:
        api = sealapi()
        self.params = params
        self.dimension = dimension
        self.factor = factor
        self.count = 0
        self.period = query_period(dimension, params)
        self.capacity = chunk_capacity(dimension, params)
        self.baby, self.giant = bsgs_steps(dimension, params)
        self.fold = fold_window(dimension, params)
        half = params.slots // 2
        self.fold_capacity = 0 if self.fold is None else half - self.fold + 1  # vectors
        self.context = params.seal_context()
        self.encoder = api.CKKSEncoder(self.context)
        self.parms_id = self.context.first_parms_id()
        if self.period > params.slots:
            raise ParameterError(
                f"vectors of dimension {dimension} (two coordinates per slot, period "
                f"{self.period}) do not fit in {params.slots} slots; use a larger "
                "poly_modulus_degree"
            )
        rows = np.arange(params.slots)
        # diagonal_index[s, i] = (s + i) mod p: column i of block[rows, ·] is diagonal D_i
        # (for the rows that hold vectors, s < capacity, the window never wraps).
        self._diagonal_index = (rows[:, None] + np.arange(self.period)[None, :]) % self.period
        self.chunks: list[_Chunk] = []
        self._tail = np.zeros((0, dimension))  # vectors of the last, partial chunk

    def append(self, vectors: FloatArray) -> None:
        """Encode more vectors (``(m, d)``); only the last partial chunk is re-encoded."""
        capacity = self.capacity
        if self._tail.shape[0]:
            self.chunks.pop()
        pending = np.concatenate([self._tail, vectors])
        for start in range(0, pending.shape[0], capacity):
            part = pending[start : start + capacity]
            self.chunks.append(self._encode_chunk(part))
            self._tail = part if part.shape[0] < capacity else np.zeros((0, self.dimension))
        self.count += vectors.shape[0]

    def _encode_chunk(self, part: FloatArray) -> _Chunk:
        slots, period = self.params.slots, self.period
        padded = np.zeros((slots, 2 * period))
        padded[: part.shape[0], : self.dimension] = part * self.factor
        block = padded[:, :period] - 1j * padded[:, period:]  # y = x_lo - i·x_hi
        folded = part.shape[0] <= self.fold_capacity
        if folded:
            diagonals = self._folded_diagonals(block)
        else:
            diagonals = block[np.arange(slots)[:, None], self._diagonal_index]
        baby, count = self.baby, diagonals.shape[1]
        plaintexts = [
            [
                self._encode(np.roll(diagonals[:, g * baby + k], g * baby))
                for k in range(min(baby, count - g * baby))
            ]
            for g in range(-(-count // baby))
        ]
        return _Chunk(plaintexts=plaintexts, size=part.shape[0], folded=folded)

    def _folded_diagonals(self, block: ComplexArray) -> ComplexArray:
        # Vector s sits in slots s and s + slots/2; rotation i shows them the coordinate
        # pairs s + i and s + δ + i (mod p). The second copy keeps only the pairs the
        # first window [s, s + w) misses.
        assert self.fold is not None
        period, half, window = self.period, self.params.slots // 2, self.fold
        shift = half % period
        rows = np.arange(half)[:, None]
        steps = np.arange(window)[None, :]
        diagonals = np.zeros((2 * half, window), dtype=np.complex128)
        diagonals[:half] = block[rows, (rows + steps) % period]
        keep = (shift + steps) % period >= window
        diagonals[half:] = block[rows, (rows + shift + steps) % period] * keep
        return diagonals

    def _encode(self, values: ComplexArray) -> Any:
        plaintext = sealapi().Plaintext()
        self.encoder.encode(values.tolist(), self.parms_id, self.params.scale, plaintext)
        return plaintext

    def scores(
        self, query: Any, *, evaluator: Any, galois_keys: Any, offsets: FloatArray | None
    ) -> list[Any]:
        """Encrypted ``factor · <x_s, q>`` (+ ``offsets[s]``) for every vector, per chunk.

        Parameters
        ----------
        query
            A ``sealapi.Ciphertext`` of the packed query (:func:`pack_query`) at the
            first data level.
        evaluator, galois_keys
            SEAL evaluator and the querier's Galois keys (:func:`galois_elements`).
        offsets
            Plaintext values added to the scores after the rescale (stored squared norms,
            noise), or ``None``.

        Returns
        -------
        list
            One ``sealapi.Ciphertext`` per chunk, at the last level, scale ≈ Δ; slot ``s``
            of chunk ``c`` holds vector ``c · capacity + s`` (real; imaginary parts zero;
            a folded chunk holds the same scores again from slot ``slots/2``).
        """
        api = sealapi()
        baby_steps = [query]
        for _ in range(1, self.baby):
            rotated = api.Ciphertext()
            evaluator.rotate_vector(baby_steps[-1], 1, galois_keys, rotated)
            baby_steps.append(rotated)
        results = []
        rotated = api.Ciphertext()
        for index, chunk in enumerate(self.chunks):
            # Horner over the giant steps, each inner sum rescaled first (cheaper rotations).
            accumulator = self._inner_sum(chunk.plaintexts[-1], baby_steps, evaluator)
            evaluator.rescale_to_next_inplace(accumulator)
            for g in reversed(range(len(chunk.plaintexts) - 1)):
                inner = self._inner_sum(chunk.plaintexts[g], baby_steps, evaluator)
                evaluator.rescale_to_next_inplace(inner)
                evaluator.rotate_vector(accumulator, self.baby, galois_keys, rotated)
                evaluator.add_inplace(inner, rotated)
                accumulator = inner
            half = self.params.slots // 2
            if chunk.folded:  # both halves now hold every score
                evaluator.rotate_vector(accumulator, half, galois_keys, rotated)
                evaluator.add_inplace(accumulator, rotated)
            evaluator.complex_conjugate(accumulator, galois_keys, rotated)
            evaluator.add_inplace(accumulator, rotated)
            if offsets is not None:
                start = index * self.capacity
                values = np.zeros(self.params.slots)
                values[: chunk.size] = offsets[start : start + chunk.size]
                if chunk.folded:  # the same noise on both copies of a score
                    values[half : half + chunk.size] = values[: chunk.size]
                plaintext = api.Plaintext()
                self.encoder.encode(
                    values.tolist(), accumulator.parms_id(), accumulator.scale, plaintext
                )
                evaluator.add_plain_inplace(accumulator, plaintext)
            results.append(accumulator)
        return results

    @staticmethod
    def _inner_sum(plaintexts: list[Any], baby_steps: list[Any], evaluator: Any) -> Any:
        api = sealapi()
        total = api.Ciphertext()
        evaluator.multiply_plain(baby_steps[0], plaintexts[0], total)
        product = api.Ciphertext()
        for plaintext, rotated in zip(plaintexts[1:], baby_steps[1 : len(plaintexts)], strict=True):
            evaluator.multiply_plain(rotated, plaintext, product)
            evaluator.add_inplace(total, product)
        return total
