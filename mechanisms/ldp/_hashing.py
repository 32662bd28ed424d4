"""Local hashing: binary (BLH) and optimized (OLH) local hashing.

Each user hashes its value into ``[g]`` with a hash function of its own, drawn from a
2-universal family, and reports the hash function together with its hash value
perturbed by randomized response over ``[g]`` [BS15]_ [WBLJ17]_.

The family is Carter–Wegman's [CW79]_ ``h_{a,b}(x) = ((a·x + b) mod P) mod g`` with
``P`` the smallest prime ``>= k``, ``a`` uniform in ``[1, P)`` and ``b`` uniform in
``[0, P)``. For two distinct values ``x ≠ x'`` in ``[k]`` the pair
``(a·x + b, a·x' + b) mod P`` is uniform over the ``P(P − 1)`` ordered pairs of
distinct residues (the map ``(a, b) ↦ pair`` is a bijection), so the collision
probability ``c = P[h(x) = h(x')]`` is the same for every pair, namely

    ``c = (Σ_j n_j² − P) / (P(P − 1))``,  ``n_j = #{r ∈ [0, P) : r mod g = j}``,

which is below ``1/g`` for ``2 <= g <= P`` (and 0 for ``g > P``). The protocols use
this exact value, never ``1/g``: local hashing is then a pure protocol with exact
support probabilities, so the engine's estimator is unbiased and its variance formula
exact; and since the variance grows with ``q*``, it is at most that of the idealised
family with ``c = 1/g``.

References
----------
.. [BS15] R. Bassily, A. Smith, "Local, private, efficient protocols for succinct
   histograms", STOC 2015.
.. [CW79] J. L. Carter, M. N. Wegman, "Universal classes of hash functions", JCSS
   18(2), 1979.
.. [AGCP23] H. H. Arcolezi, S. Gambs, J.-F. Couchot, C. Palamidessi, "On the risks of
   collecting multidimensional data under local differential privacy", PVLDB 16(5),
   2023.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from privaudit.errors import ParameterError
from privaudit.mechanisms.ldp._engine import (
    Field,
    FloatArray,
    FrequencyOracle,
    IntArray,
    Reports,
    check_domain,
    check_epsilon,
    check_prior,
)
from privaudit.mechanisms.ldp._sampling import bernoulli
from privaudit.registry import mechanisms

__all__ = ["BLH", "OLH", "LocalHashing", "is_prime", "next_prime"]

_CHUNK_CELLS = 1 << 22  # bound every work matrix to 4 M cells
_MAX_G = 1 << 31
_INVERSE_TABLE_LIMIT = 1 << 22
_FOLD_BINS = 1 << 20  # histogram residues before reduction mod P up to this many bins
_ENUMERATION_CELLS = 1 << 27  # the largest exact attack by enumerating hash functions
_CHANNEL_CELLS = 1 << 24

_MR_BASES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)


def is_prime(n: int) -> bool:
    """Deterministic Miller–Rabin (exact for every ``n < 3.1·10^23``)."""
    if n < 2:
        return False
    for prime in _MR_BASES:
        if n % prime == 0:
            return n == prime
    d, r = n - 1, 0
    while d % 2 == 0:
        d //= 2
        r += 1
    for base in _MR_BASES:
        x = pow(base, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def next_prime(n: int) -> int:
    """The smallest prime ``>= n``."""
    candidate = max(2, n)
    while not is_prime(candidate):
        candidate += 1
    return candidate


def _inverse_mod(a: IntArray, prime: int) -> IntArray:
    """``a^(P−2) mod P`` elementwise (the inverse of non-zero ``a``), by squaring."""
    result = np.ones_like(a)
    base = a % prime
    exponent = prime - 2
    while exponent > 0:
        if exponent & 1:
            result = result * base % prime
        base = base * base % prime
        exponent >>= 1
    return result


class LocalHashing(FrequencyOracle):
    """Local hashing into ``[g]`` with Carter–Wegman hashing (see the module docstring).

    Each user draws ``(a, b)`` (sent as the seed ``(a − 1)·P + b``), hashes its value
    ``v`` to ``h(v) ∈ [g]`` and sends ``y = h(v)`` with probability
    ``p_g = e^ε/(e^ε + g − 1)``, otherwise one of the other ``g − 1`` hash values
    uniformly. Report ``(a, b, y)`` supports ``{v : h_{a,b}(v) = y}``. Pure protocol with

    * ``p* = p_g``,
    * ``q* = c·p_g + (1 − c)/(e^ε + g − 1)`` with ``c ≤ 1/g`` the family's exact collision
      probability (``q* = 1/g`` when ``c = 1/g``, as in [WBLJ17]_),

    ε-LDP, tightly (two values with different hashes have likelihood ratio ``e^ε``). A
    report takes ``⌈log2(P(P − 1))⌉ + ⌈log2 g⌉`` bits (the seed ``(a, b)`` and ``y``).

    Aggregation enumerates, for each report, only the ``≈ P/g`` values it supports
    (``x = a^(-1)(y + jg − b) mod P``), or, for large batches with small ``g``, groups
    reports by ``a`` and correlates histograms with FFTs; either way it streams in
    bounded memory and costs ``O(min(nP/g, gP² log P))``.
    """

    def __init__(self, *, k: int, epsilon: float, g: int) -> None:
        super().__init__(k=k, epsilon=epsilon)
        self.prime = next_prime(self.k)
        self.g = g
        e = math.exp(self.epsilon)
        self._p_g = e / (e + g - 1)
        self._q_g = 1.0 / (e + g - 1)
        self.collision = self.collision_probability(self.prime, g)
        self._q = self.collision * self._p_g + (1 - self.collision) * self._q_g
        self._inverse_table: IntArray | None = None

    @staticmethod
    def collision_probability(prime: int, g: int) -> float:
        """``P[h(x) = h(x')]`` for ``x ≠ x'`` under ``((a·x + b) mod P) mod g``."""
        m, s = divmod(prime, g)
        squares = s * (m + 1) ** 2 + (g - s) * m**2
        return (squares - prime) / (prime * (prime - 1))

    def fingerprint(self) -> str:
        return f"{super().fingerprint()}:g={self.g}:P={self.prime}"

    def _support_probabilities(self) -> tuple[float, float]:
        return self._p_g, self._q

    def bits_per_report(self) -> float:
        seeds = self.prime * (self.prime - 1)
        return float((seeds - 1).bit_length() + (self.g - 1).bit_length())

    # --- client ------------------------------------------------------------------

    def hash_values(self, a: IntArray, b: IntArray, values: IntArray) -> IntArray:
        """``h_{a,b}(v) = ((a·v + b) mod P) mod g`` (broadcasting)."""
        hashed: IntArray = (a * values + b) % self.prime % self.g
        return hashed

    def _randomize(self, values: IntArray, rng: np.random.Generator) -> dict[str, Any]:
        n = values.size
        seed = rng.integers(0, self.prime * (self.prime - 1), size=n, dtype=np.int64)
        a, b = self.seed_parts(seed)
        hashed = self.hash_values(a, b, values)
        keep = bernoulli(rng, self._p_g, n)
        other = rng.integers(0, self.g - 1, size=n, dtype=np.int64)
        other += other >= hashed  # uniform over the other g - 1 hash values
        return {"seed": seed, "y": np.where(keep, hashed, other).astype(np.int64)}

    def seed_parts(self, seed: IntArray) -> tuple[IntArray, IntArray]:
        """``(a, b)`` of seeds ``(a − 1)·P + b`` (uniform seeds: uniform ``(a, b)``)."""
        a, b = np.divmod(seed, self.prime)
        return a + 1, b

    def report_schema(self) -> list[Field]:
        """A report is the hash function's seed ``(a − 1)·P + b`` and the value ``y``."""
        return [
            Field("seed", 0, 0, self.prime * (self.prime - 1) - 1),
            Field("y", 0, 0, self.g - 1),
        ]

    # --- server ------------------------------------------------------------------

    def _statistics(self, reports: Reports) -> IntArray:
        a, b = self.seed_parts(reports.arrays["seed"].astype(np.int64, copy=False))
        y = reports.arrays["y"].astype(np.int64, copy=False)
        n, prime, g = a.size, self.prime, self.g
        width = -(-prime // g)  # the most values of [0, P) in one hash bucket
        enumerate_cost = n * width
        fft_cost = 6 * (g + 1) * prime * prime  # measured: an FFT cell costs ~6 listed ones
        if g < prime and g * prime <= _CHUNK_CELLS and enumerate_cost > fft_cost:
            return self._counts_by_fft(a, b, y)
        return self._counts_by_enumeration(a, b, y)

    def _inverses(self, a: IntArray) -> IntArray:
        if self.prime > _INVERSE_TABLE_LIMIT:
            return _inverse_mod(a, self.prime)
        if self._inverse_table is None:
            self._inverse_table = _inverse_mod(np.arange(self.prime, dtype=np.int64), self.prime)
        table: IntArray = self._inverse_table[a]
        return table

    def _counts_by_enumeration(self, a: IntArray, b: IntArray, y: IntArray) -> IntArray:
        """Support counts by listing each report's support ``{x < k : h(x) = y}``:
        ``h(x) = y`` iff ``a·x + b ≡ y + j·g (mod P)`` for some ``0 <= j < n_y``, i.e.
        ``x ≡ a^(-1)(y − b) + j·a^(-1)g``. When ``P²/g`` is small the residues are
        counted before reduction mod ``P`` and the histogram is folded (no division)."""
        prime, g, k = self.prime, self.g, self.k
        width = -(-prime // g)
        fold = (width + 1) * prime <= _FOLD_BINS
        modulus_bins = (width + 1) * prime if fold else prime
        counts = np.zeros(modulus_bins + 1, dtype=np.int64)  # the last bin: no support
        rows = max(1, _CHUNK_CELLS // width)
        columns = min(width, _CHUNK_CELLS)
        for start in range(0, a.size, rows):
            stop = min(a.size, start + rows)
            inverse = self._inverses(a[start:stop])
            first = inverse * ((y[start:stop] - b[start:stop]) % prime) % prime
            step = inverse * (g % prime) % prime
            for j0 in range(0, width, columns):
                j = np.arange(j0, min(width, j0 + columns), dtype=np.int64)
                support = j[None, :] * step[:, None]
                support += first[:, None]
                if not fold:
                    support %= prime
                # Only the last column can fall beyond P: y + j·g >= P supports nothing.
                beyond = y[start:stop, None] + j[None, -1:] * g >= prime
                support[:, -1:][beyond] = modulus_bins
                counts += np.bincount(support.ravel(), minlength=modulus_bins + 1)
        residues: IntArray = counts[:modulus_bins].reshape(-1, prime).sum(axis=0)
        return residues[:k]

    def _counts_by_fft(self, a: IntArray, b: IntArray, y: IntArray) -> IntArray:
        """Support counts for large batches: for the reports with multiplier ``a``,
        ``D_a[z] = #{u : (z + b_u) mod P has hash y_u}`` is a cyclic correlation of
        the ``(y, b)`` histogram with the bucket indicators, and ``C(x) = Σ_a D_a[a·x]``.
        """
        prime, g, k = self.prime, self.g, self.k
        residues = np.arange(prime, dtype=np.int64)
        buckets = (residues[None, :] % g == np.arange(g)[:, None]).astype(float)
        bucket_spectra = np.fft.rfft(buckets, axis=-1)
        order = np.argsort(a, kind="stable")
        a, b, y = a[order], b[order], y[order]
        block = max(1, _CHUNK_CELLS // (g * prime))
        edges = np.searchsorted(a, np.arange(1, prime + block, block))
        values = np.arange(k, dtype=np.int64)
        counts = np.zeros(k, dtype=float)
        for index, a0 in enumerate(range(1, prime, block)):
            lo, hi = int(edges[index]), int(edges[index + 1])
            if lo == hi:
                continue
            a1 = min(prime, a0 + block)
            cells = ((a[lo:hi] - a0) * g + y[lo:hi]) * prime + b[lo:hi]
            histogram = np.bincount(cells, minlength=(a1 - a0) * g * prime)
            spectra = np.fft.rfft(histogram.reshape(a1 - a0, g, prime).astype(float), axis=-1)
            correlated = np.einsum("agf,gf->af", spectra.conj(), bucket_spectra)
            per_multiplier = np.fft.irfft(correlated, n=prime, axis=-1)
            multipliers = np.arange(a0, a1, dtype=np.int64)
            positions = multipliers[:, None] * values[None, :] % prime
            counts += np.take_along_axis(per_multiplier, positions, axis=1).sum(axis=0)
        exact: IntArray = np.rint(counts).astype(np.int64)
        return exact

    def _support_counts(self, statistics: IntArray, n: int) -> FloatArray:
        return statistics.astype(float)

    # --- analysis ----------------------------------------------------------------

    def reconstruction_success(self, prior: npt.ArrayLike | None = None) -> float:
        """Exact success of the attacker who guesses uniformly among the values the
        report supports, ``{v : h(v) = y}`` (uniformly in ``[k]`` if none) [AGCP23]_.

        For a uniform prior it is ``(p_g·(g − E) + q_g·E)/k`` exactly, where ``E`` is
        the expected number of empty hash buckets; ``E`` is computed exactly by
        counting, for each bucket size, the hash functions that map ``[k]`` around
        the bucket (zero when ``P − k`` is below ``⌊P/g⌋``, which is the usual case;
        then the success is ``g·p_g/k``). A non-uniform prior is computed by
        enumerating all ``P(P − 1)`` hash functions, for small ``k`` only.
        """
        weights = check_prior(prior, self.k)
        if weights is not None:
            return self._reconstruction_by_enumeration(weights)
        empty = self.expected_empty_buckets()
        return (self._p_g * (self.g - empty) + self._q_g * empty) / self.k

    def expected_empty_buckets(self) -> float:
        """Expected number of hash values in ``[g]`` that no value of ``[k]`` hashes to."""
        prime, g, k = self.prime, self.g, self.k
        m, s = divmod(prime, g)
        spare = prime - k
        total = 0
        for size, buckets in ((m + 1, s), (m, g - s)):
            if buckets:
                total += buckets * _hash_functions_missing(size, spare, prime)
        return total / (prime * (prime - 1))

    def _reconstruction_by_enumeration(self, prior: FloatArray) -> float:
        prime, g, k = self.prime, self.g, self.k
        functions = prime * (prime - 1)
        if functions * k > _ENUMERATION_CELLS:
            raise ParameterError(
                f"the attack under a non-uniform prior enumerates all {functions} hash "
                f"functions for k={k}; that is too many (the limit is k·P(P−1) <= "
                f"{_ENUMERATION_CELLS}); pass prior=None for the exact uniform-prior value"
            )
        seeds = np.arange(functions, dtype=np.int64)
        a_all, b_all = seeds // prime + 1, seeds % prime
        values = np.arange(k, dtype=np.int64)
        per_value = np.zeros(k)
        rows = max(1, _CHUNK_CELLS // max(k, g))
        for start in range(0, functions, rows):
            a = a_all[start : start + rows, None]
            b = b_all[start : start + rows, None]
            hashed = self.hash_values(a, b, values[None, :])
            offsets = np.arange(hashed.shape[0])[:, None] * g
            sizes = np.bincount((hashed + offsets).ravel(), minlength=hashed.shape[0] * g)
            sizes = sizes.reshape(-1, g)
            own = np.take_along_axis(sizes, hashed, axis=1)
            empty = (sizes == 0).sum(axis=1)
            per_value += (self._p_g / own).sum(axis=0) + self._q_g * empty.sum() / k
        return float(prior @ per_value) / functions

    def channel(self) -> FloatArray:
        """``P[report = (a, b, y) | value = v]`` as a ``(k, (P − 1)·P·g)`` matrix, the
        column of ``(a, b, y)`` being ``((a − 1)·P + b)·g + y`` (small ``k`` only)."""
        prime, g, k = self.prime, self.g, self.k
        functions = prime * (prime - 1)
        if functions * g * k > _CHANNEL_CELLS:
            raise ParameterError(
                f"the channel has (P−1)·P·g = {functions * g} columns; k={k} is too large"
            )
        seeds = np.arange(functions, dtype=np.int64)
        a, b = seeds // prime + 1, seeds % prime
        hashed = self.hash_values(a[None, :], b[None, :], np.arange(k, dtype=np.int64)[:, None])
        match = hashed[:, :, None] == np.arange(g)[None, None, :]
        matrix: FloatArray = np.where(match, self._p_g, self._q_g).reshape(k, -1) / functions
        return matrix

    def __repr__(self) -> str:
        return f"{type(self).__name__}(k={self.k}, epsilon={self.epsilon:g}, g={self.g})"


def _hash_functions_missing(size: int, spare: int, prime: int) -> int:
    """How many ``(a, b)`` leave one bucket of ``size`` residues empty, the bucket
    being an arithmetic progression of step ``g``.

    The bucket is empty iff it lies in the ``spare = P − k`` residues
    ``{a·x + b : k <= x < P}``; in the coordinates ``z = a^(-1)·r`` those form a
    cyclic window of ``spare`` consecutive residues starting at a uniform point, and
    the bucket is ``{z0 + i·δ}`` with ``δ = a^(-1)·g`` running over all non-zero
    residues as ``a`` does. A set whose shortest covering arc has ``w`` residues lies
    in ``spare − w + 1`` such windows.
    """
    if size == 0:
        return prime * (prime - 1)
    if size > spare:
        return 0
    if size == 1:
        return (prime - 1) * spare
    steps = np.arange(size, dtype=np.int64)
    total = 0
    rows = max(1, _CHUNK_CELLS // size)
    for start in range(1, prime, rows):
        delta = np.arange(start, min(prime, start + rows), dtype=np.int64)
        points = np.sort(delta[:, None] * steps[None, :] % prime, axis=1)
        gaps = np.diff(points, axis=1).max(axis=1)
        largest = np.maximum(gaps, points[:, 0] + prime - points[:, -1])
        arc = prime - largest + 1
        total += int(np.maximum(0, spare - arc + 1).sum())
    return total


def _check_g(g: object) -> int:
    if isinstance(g, bool) or not isinstance(g, int | np.integer):
        raise ParameterError(f"g (the hash range) must be an integer >= 2 or None; got {g!r}")
    if not 2 <= g <= _MAX_G:
        raise ParameterError(f"g (the hash range) must be in [2, 2^31]; got {g}")
    return int(g)


@mechanisms.register("blh")
class BLH(LocalHashing):
    """Binary local hashing [BS15]_ [WBLJ17]_: local hashing with ``g = 2``.

    ``p* = e^ε/(e^ε + 1)``, ``q* = c·p* + (1 − c)(1 − p*)`` with the exact collision
    probability ``c ≤ 1/2`` of the family (``q* → 1/2`` as ``k`` grows); ε-LDP. A
    report takes ``⌈log2(P(P − 1))⌉ + 1`` bits, ``P`` the smallest prime ``>= k``.

    Examples
    --------
    >>> from privaudit.mechanisms.ldp._hashing import BLH
    >>> from privaudit import simulation_generator
    >>> blh = BLH(k=4, epsilon=2.0)
    >>> reports = blh.randomize([0, 1, 2, 3] * 25_000, rng=simulation_generator(0))
    >>> estimate = blh.estimate(reports)  # true frequencies: 0.25 each
    >>> bool(abs(estimate - 0.25).max() < 4 * blh.variance(100_000, 0.25) ** 0.5)
    True
    """

    name = "blh"

    def __init__(self, *, k: int, epsilon: float) -> None:
        super().__init__(k=k, epsilon=epsilon, g=2)


@mechanisms.register("olh")
class OLH(LocalHashing):
    """Optimized local hashing [WBLJ17]_: local hashing into ``g ≈ e^ε + 1`` values,
    which minimises the variance (``→ 4e^ε/(n(e^ε − 1)²)``, that of OUE, for large ``k``).

    Pure protocol with ``p* = e^ε/(e^ε + g − 1)`` and
    ``q* = c·p* + (1 − c)/(e^ε + g − 1)``, ``c ≤ 1/g`` the exact collision probability
    of the hash family (see :class:`LocalHashing`); ε-LDP. A report takes
    ``⌈log2(P(P − 1))⌉ + ⌈log2 g⌉`` bits.

    Parameters
    ----------
    g
        The hash range. ``None`` (default): ``round(e^ε) + 1`` as in [WBLJ17]_ and the
        common libraries, capped at ``P`` (the smallest prime ``>= k``: beyond it the
        hash is already injective and larger ranges only add noise). An explicit
        integer in ``[2, 2^31]`` is used as given.

    Examples
    --------
    >>> from privaudit.mechanisms.ldp._hashing import OLH
    >>> from privaudit import simulation_generator
    >>> olh = OLH(k=100, epsilon=2.0)
    >>> olh.g, olh.prime
    (8, 101)
    >>> reports = olh.randomize([7] * 50_000 + [3] * 50_000, rng=simulation_generator(0))
    >>> estimate = olh.estimate(reports)[[3, 7, 50]]  # true frequencies: 0.5, 0.5, 0
    >>> bool(abs(estimate - [0.5, 0.5, 0.0]).max() < 4 * olh.variance(100_000, 0.5) ** 0.5)
    True
    """

    name = "olh"

    def __init__(self, *, k: int, epsilon: float, g: int | None = None) -> None:
        # Validate k and ε before g, so each bad parameter is reported as such.
        domain, privacy = check_domain(k), check_epsilon(epsilon)
        if g is None:
            range_size = min(round(math.exp(privacy)) + 1, next_prime(domain))
        else:
            range_size = _check_g(g)
        self.g_rule = g
        super().__init__(k=k, epsilon=epsilon, g=range_size)

    def public_params(self) -> dict[str, Any]:
        return {"g": self.g}
