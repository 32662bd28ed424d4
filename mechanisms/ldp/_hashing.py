"""Local hashing: binary (BLH) and optimized (OLH) local hashing.

Each user hashes its value into ``[g]`` with a hash function of its own, drawn from a
2-universal family, and reports the hash function together with its hash value
perturbed by randomized response over ``[g]`` [BS15]_ [WBLJ17]_.

The family is the *linear* one over the field ``GF(g)``, ``g`` prime [CW79]_: write a
value ``x < k`` in base ``g`` as the digit vector ``(x_0, …, x_{d−1})``, ``d`` the
fewest digits with ``g^d >= k``; a hash function is a uniform vector
``a ∈ GF(g)^d`` and ``h_a(x) = Σ_i a_i·x_i mod g``. For ``x ≠ x'`` the digit
difference ``δ`` is non-zero, and ``<a, δ> = 0`` for exactly ``g^(d−1)`` of the
``g^d`` vectors ``a``, so the collision probability is exactly ``1/g`` for every pair:
local hashing is a pure protocol with ``q* = 1/g`` exactly (no approximation in the
estimator or its variance), as in the analysis of [WBLJ17]_.

The linear structure is what makes the server fast. A report ``(a, y)`` supports
``{x : <a, x> = y}``, which is also the support of ``(λa, λy)`` for any ``λ ≠ 0``;
scaled so that ``y ∈ {0, 1}``, a batch of reports is summarised *exactly* by a
histogram of ``2·g^d`` cells (``g^d < g·k``), which streams and merges by addition.
The support counts follow from two ``d``-dimensional FFTs over ``Z_g^d``
(``1[<a, x> = c] = (1/g)·Σ_t ω^{t(<a, x> − c)}``): ``O(n)`` per batch and
``O(g^d·d·log g + g·k·d)`` once per estimate, instead of the ``O(n·k/g)`` of listing
each report's support. When ``g·k`` is too large for the histogram (a very large
domain or ``ε``), the statistics are the support counts themselves and each report's
support is listed (``≈ k/g`` values per report).

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

__all__ = ["BLH", "OLH", "LocalHashing", "is_prime", "next_prime", "previous_prime"]

_CHUNK_CELLS = 1 << 22  # bound every work matrix to 4 M cells
_MAX_G = 1 << 31
_HISTOGRAM_CELLS = 1 << 23  # the largest report histogram (8 M counts, 64 MiB)
_LISTING_WIDTH = 64  # list supports instead when a report supports at most ~this many values
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


def previous_prime(n: int) -> int:
    """The largest prime ``<= n`` (``n >= 2``)."""
    if n < 2:
        raise ParameterError(f"there is no prime <= {n}")
    candidate = n
    while not is_prime(candidate):
        candidate -= 1
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


def _inner_product(a: IntArray, x: IntArray, g: int, digits: int) -> IntArray:
    """``Σ_i a_i·x_i mod g`` over the first ``digits`` base-``g`` digits (broadcasting).

    Each product is below ``g² <= 2^62``, so int64 never overflows."""
    total = np.zeros(np.broadcast_shapes(np.shape(a), np.shape(x)), dtype=np.int64)
    for _ in range(digits):
        a, a_digit = np.divmod(a, g)
        x, x_digit = np.divmod(x, g)
        total += a_digit * x_digit
        total %= g
    return total


def _scale_digits(x: IntArray, scale: IntArray | int, g: int, digits: int) -> IntArray:
    """The index of the digit vector ``scale·x mod g`` (digit by digit)."""
    result = np.zeros(np.broadcast_shapes(np.shape(x), np.shape(scale)), dtype=np.int64)
    place = 1
    for _ in range(digits):
        x, digit = np.divmod(x, g)
        result += np.asarray(digit * scale % g, dtype=np.int64) * place
        place *= g
    return result


class LocalHashing(FrequencyOracle):
    """Local hashing into ``[g]``, ``g`` prime, with the linear family over ``GF(g)``
    (see the module docstring).

    Each user draws a hash function ``a`` uniformly from ``[0, g^d)`` (the digit
    vector ``a ∈ GF(g)^d``), hashes its value ``v`` to ``h_a(v) = <a, v> mod g`` and
    sends ``y = h_a(v)`` with probability ``p_g = e^ε/(e^ε + g − 1)``, otherwise one
    of the other ``g − 1`` hash values uniformly. Report ``(a, y)`` supports
    ``{v : h_a(v) = y}``. Pure protocol with ``p* = p_g`` and ``q* = 1/g`` exactly;
    ε-LDP, tightly (two values with different hashes have likelihood ratio ``e^ε``).
    A report takes ``⌈log2 g^d⌉ + ⌈log2 g⌉`` bits (about ``log2 k + 2·log2 g``).

    The server keeps the ``2·g^d``-cell histogram of reports scaled to
    ``y ∈ {0, 1}`` (``O(1)`` per report) and turns it into support counts with FFTs
    when an estimate is asked for; when that histogram would be too large, or a report
    supports only a few values, it lists each report's support instead (``≈ k/g``
    values per report). Either way aggregation streams in bounded memory and merges.
    """

    def __init__(self, *, k: int, epsilon: float, g: int) -> None:
        super().__init__(k=k, epsilon=epsilon)
        if not is_prime(g):
            below = previous_prime(g) if g > 2 else None
            raise ParameterError(
                f"g (the hash range) must be prime: the hash family is linear over GF(g); "
                f"got {g} (the nearest primes are {below} and {next_prime(g)})"
            )
        self.g = g
        digits = 1
        while g**digits < self.k:
            digits += 1
        self.digits = digits
        self.functions: int = int(g) ** digits  # hash functions: the vectors of GF(g)^d
        e = math.exp(self.epsilon)
        self._p_g = e / (e + g - 1)
        self._q_g = 1.0 / (e + g - 1)
        self._q = 1.0 / g  # = p_g/g + (1 − 1/g)·q_g: the family's collisions are exactly 1/g
        listing_is_cheap = -(-self.k // g) <= _LISTING_WIDTH
        self.keeps_histogram = 2 * self.functions <= _HISTOGRAM_CELLS and not listing_is_cheap
        self._inverses: IntArray | None = None

    @staticmethod
    def collision_probability(g: int) -> float:
        """``P[h(x) = h(x')]`` for ``x ≠ x'``: exactly ``1/g`` for the linear family."""
        return 1.0 / g

    def fingerprint(self) -> str:
        return f"{super().fingerprint()}:g={self.g}:hash=linear"

    def _support_probabilities(self) -> tuple[float, float]:
        return self._p_g, self._q

    def bits_per_report(self) -> float:
        return float((self.functions - 1).bit_length() + (self.g - 1).bit_length())

    def _statistics_size(self) -> int:
        return 2 * self.functions if self.keeps_histogram else self.k

    # --- client ------------------------------------------------------------------

    def hash_values(self, seed: IntArray, values: IntArray) -> IntArray:
        """``h_a(v) = <a, v> mod g`` for hash functions ``a`` given by their index
        ``seed`` in ``[0, g^d)`` (broadcasting)."""
        return _inner_product(
            np.asarray(seed, dtype=np.int64),
            np.asarray(values, dtype=np.int64),
            self.g,
            self.digits,
        )

    def _randomize(self, values: IntArray, rng: np.random.Generator) -> dict[str, Any]:
        n = values.size
        seed = rng.integers(0, self.functions, size=n, dtype=np.int64)
        hashed = self.hash_values(seed, values)
        keep = bernoulli(rng, self._p_g, n)
        other = rng.integers(0, self.g - 1, size=n, dtype=np.int64)
        other += other >= hashed  # uniform over the other g − 1 hash values
        return {"seed": seed, "y": np.where(keep, hashed, other).astype(np.int64)}

    def report_schema(self) -> list[Field]:
        """A report is the hash function's index ``a`` in ``[0, g^d)`` and the value ``y``."""
        return [Field("seed", 0, 0, self.functions - 1), Field("y", 0, 0, self.g - 1)]

    # --- server ------------------------------------------------------------------

    def _statistics(self, reports: Reports) -> IntArray:
        seed = reports.arrays["seed"].astype(np.int64, copy=False)
        y = reports.arrays["y"].astype(np.int64, copy=False)
        if self.keeps_histogram:
            return self._histogram(seed, y)
        return self._counts_by_listing(seed, y)

    def _support_counts(self, statistics: IntArray, n: int) -> FloatArray:
        if self.keeps_histogram:
            return self._counts_from_histogram(statistics)
        return statistics.astype(float)

    def _histogram(self, seed: IntArray, y: IntArray) -> IntArray:
        """Counts of the reports scaled to ``y ∈ {0, 1}``: cell ``c·g^d + a`` holds
        the reports whose support is ``{x : <a, x> = c}``."""
        g, functions = self.g, self.functions
        histogram = np.zeros(2 * functions, dtype=np.int64)
        rows = max(1, _CHUNK_CELLS // self.digits)
        for start in range(0, seed.size, rows):
            chunk_y = y[start : start + rows]
            # (a, y) and (y⁻¹·a, 1) support the same values; y = 0 stays as it is.
            scale = self._inverse_table()[chunk_y]
            cells = _scale_digits(seed[start : start + rows], scale, g, self.digits)
            cells += (chunk_y != 0) * functions
            histogram += np.bincount(cells, minlength=2 * functions)
        return histogram

    def _inverse_table(self) -> IntArray:
        """``y⁻¹ mod g`` for every ``y`` (1 for ``y = 0``, which is not scaled), built
        once: the histogram path has ``g^d <= 2^22``, so ``g`` is small."""
        if self._inverses is None:
            table = _inverse_mod(np.arange(self.g, dtype=np.int64), self.g)
            table[0] = 1
            self._inverses = table
        return self._inverses

    def _counts_from_histogram(self, histogram: IntArray) -> FloatArray:
        """``C(x) = Σ_c Σ_a H_c(a)·1[<a, x> = c]``, with
        ``1[<a, x> = c] = (1/g)·Σ_t ω^{t(<a, x> − c)}`` and ``ω = e^{2πi/g}``: for each
        ``t`` the inner sum over ``a`` is the ``d``-dimensional DFT of ``H_c`` at
        ``−t·x`` (numpy's sign convention), so two FFTs serve every ``x``."""
        g, digits, functions, k = self.g, self.digits, self.functions, self.k
        shape = (g,) * digits
        spectra = [
            np.fft.fftn(
                histogram[c * functions : (c + 1) * functions].reshape(shape).astype(float)
            ).ravel()
            for c in (0, 1)
        ]
        values = np.arange(k, dtype=np.int64)
        totals = np.zeros(k)
        for t in range(g):
            frequencies = _scale_digits(values, (-t) % g, g, digits)
            twist = np.exp(-2j * np.pi * t / g)  # ω^{−t·c} for c = 1
            totals += (spectra[0][frequencies] + twist * spectra[1][frequencies]).real
        counts: FloatArray = np.rint(totals / g)
        return counts

    def _counts_by_listing(self, seed: IntArray, y: IntArray) -> IntArray:
        """Support counts by listing each report's support.

        For ``a_0 ≠ 0`` the support is ``x = x_0 + g·u`` over the high parts
        ``u < ⌈k/g⌉`` with ``x_0 = a_0⁻¹(y − <a_high, u>) mod g`` (``⌈k/g⌉``
        candidates); the rare reports with ``a_0 = 0`` (a fraction ``1/g``) are
        compared with every value."""
        g, digits, k = self.g, self.digits, self.k
        counts = np.zeros(k + 1, dtype=np.int64)  # the last bin: beyond the domain
        high_values = np.arange(-(-k // g), dtype=np.int64)
        low_coefficient, high_coefficients = seed % g, seed // g
        pivot = low_coefficient != 0
        index = np.flatnonzero(pivot)
        rows = max(1, _CHUNK_CELLS // max(1, high_values.size))
        for start in range(0, index.size, rows):
            chosen = index[start : start + rows]
            inverse = _inverse_mod(low_coefficient[chosen], g)
            high_hash = _inner_product(
                high_coefficients[chosen, None], high_values[None, :], g, max(0, digits - 1)
            )
            low = inverse[:, None] * ((y[chosen, None] - high_hash) % g) % g
            support = low + g * high_values[None, :]
            support[support >= k] = k
            counts += np.bincount(support.ravel(), minlength=k + 1)
        others = np.flatnonzero(~pivot)
        values = np.arange(k, dtype=np.int64)
        rows = max(1, _CHUNK_CELLS // k)
        for start in range(0, others.size, rows):
            chosen = others[start : start + rows]
            hashed = self.hash_values(seed[chosen, None], values[None, :])
            counts[:k] += (hashed == y[chosen, None]).sum(axis=0)
        listed: IntArray = counts[:k]
        return listed

    # --- analysis ----------------------------------------------------------------

    def reconstruction_success(self, prior: npt.ArrayLike | None = None) -> float:
        """Exact success of the attacker who guesses uniformly among the values the
        report supports, ``{v : h_a(v) = y}`` (uniformly in ``[k]`` if none) [AGCP23]_.

        For a uniform prior it is ``(p_g·(g − E) + q_g·E)/k`` exactly, ``E`` the
        expected number of empty hash buckets (:meth:`expected_empty_buckets`); a
        non-uniform prior is computed by enumerating all ``g^d`` hash functions, for
        small ``k`` only.
        """
        weights = check_prior(prior, self.k)
        if weights is not None:
            return self._reconstruction_by_enumeration(weights)
        empty = self.expected_empty_buckets()
        return (self._p_g * (self.g - empty) + self._q_g * empty) / self.k

    def expected_empty_buckets(self) -> float:
        """Expected number of hash values in ``[g]`` that no value of ``[k]`` hashes to.

        ``a = 0`` hashes everything to 0. Any other ``a`` with a non-zero digit below
        the top one hits every bucket (that digit alone runs over all of ``GF(g)``
        inside ``[k]``, since ``g^(d−1) < k``); if only the top digit ``a_{d−1}`` is
        non-zero, the hashes are ``a_{d−1}·t`` for the ``T + 1`` top digits
        ``t <= T = ⌊(k − 1)/g^(d−1)⌋`` that occur, all distinct.
        """
        g = self.g
        top = (self.k - 1) // (self.functions // g)  # T = ⌊(k − 1)/g^(d−1)⌋
        return ((g - 1) + (g - 1) * (g - 1 - top)) / self.functions

    def _reconstruction_by_enumeration(self, prior: FloatArray) -> float:
        g, k, functions = self.g, self.k, self.functions
        if functions * k > _ENUMERATION_CELLS:
            raise ParameterError(
                f"the attack under a non-uniform prior enumerates all {functions} hash "
                f"functions for k={k}; that is too many (the limit is k·g^d <= "
                f"{_ENUMERATION_CELLS}); pass prior=None for the exact uniform-prior value"
            )
        values = np.arange(k, dtype=np.int64)
        per_value = np.zeros(k)
        rows = max(1, _CHUNK_CELLS // max(k, g))
        for start in range(0, functions, rows):
            seeds = np.arange(start, min(functions, start + rows), dtype=np.int64)
            hashed = self.hash_values(seeds[:, None], values[None, :])
            offsets = np.arange(seeds.size)[:, None] * g
            sizes = np.bincount((hashed + offsets).ravel(), minlength=seeds.size * g)
            sizes = sizes.reshape(-1, g)
            own = np.take_along_axis(sizes, hashed, axis=1)
            empty = (sizes == 0).sum(axis=1)
            per_value += (self._p_g / own).sum(axis=0) + self._q_g * empty.sum() / k
        return float(prior @ per_value) / functions

    def channel(self) -> FloatArray:
        """``P[report = (a, y) | value = v]`` as a ``(k, g^d·g)`` matrix, the column of
        ``(a, y)`` being ``a·g + y`` (small ``k`` only)."""
        g, k, functions = self.g, self.k, self.functions
        if functions * g * k > _CHANNEL_CELLS:
            raise ParameterError(
                f"the channel has g^d·g = {functions * g} columns; k={k} is too large"
            )
        hashed = self.hash_values(
            np.arange(functions, dtype=np.int64)[None, :], np.arange(k, dtype=np.int64)[:, None]
        )
        match = hashed[:, :, None] == np.arange(g)[None, None, :]
        matrix: FloatArray = np.where(match, self._p_g, self._q_g).reshape(k, -1) / functions
        return matrix

    def __repr__(self) -> str:
        return f"{type(self).__name__}(k={self.k}, epsilon={self.epsilon:g}, g={self.g})"


def _check_g(g: object) -> int:
    if isinstance(g, bool) or not isinstance(g, int | np.integer):
        raise ParameterError(f"g (the hash range) must be a prime integer or None; got {g!r}")
    if not 2 <= g <= _MAX_G:
        raise ParameterError(f"g (the hash range) must be a prime in [2, 2^31]; got {g}")
    return int(g)


def _local_hashing_variance(epsilon: float, g: int) -> float:
    """``n·Var`` of local hashing into ``[g]`` at ``f = 0``: ``q(1 − q)/(p − q)²``."""
    e = math.exp(epsilon)
    p, q = e / (e + g - 1), 1.0 / g
    return q * (1 - q) / (p - q) ** 2


def optimal_prime_range(k: int, epsilon: float) -> int:
    """The prime hash range of least variance next to the optimum ``e^ε + 1``
    [WBLJ17]_, capped at the smallest prime ``>= k`` (beyond it the hash of a value
    is already unique for every ``a ≠ 0``, and larger ranges only add noise)."""
    cap = next_prime(k)
    target = math.exp(epsilon) + 1
    if target >= cap:
        return cap
    candidates = {next_prime(math.ceil(target)), previous_prime(max(2, math.floor(target)))}
    return min(
        (min(g, cap) for g in candidates), key=lambda g: (_local_hashing_variance(epsilon, g), g)
    )


@mechanisms.register("blh")
class BLH(LocalHashing):
    """Binary local hashing [BS15]_ [WBLJ17]_: local hashing with ``g = 2``.

    ``p* = e^ε/(e^ε + 1)``, ``q* = 1/2`` exactly (the linear family over ``GF(2)``);
    ε-LDP. A report takes ``⌈log2 k⌉ + 1`` bits (the hash function is a vector of
    ``⌈log2 k⌉`` bits), and the server's histogram has ``2^(⌈log2 k⌉ + 1)`` cells:
    aggregation is a Walsh–Hadamard transform.

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
    """Optimized local hashing [WBLJ17]_: local hashing into a prime ``g ≈ e^ε + 1``,
    which minimises the variance (``→ 4e^ε/(n(e^ε − 1)²)``, that of OUE, for large ``k``).

    Pure protocol with ``p* = e^ε/(e^ε + g − 1)`` and ``q* = 1/g`` exactly (the linear
    hash family over ``GF(g)``, see :class:`LocalHashing`); ε-LDP. A report takes
    ``⌈log2 g^d⌉ + ⌈log2 g⌉`` bits, ``d`` the fewest base-``g`` digits of ``k − 1``.

    Parameters
    ----------
    g
        The hash range, a prime. ``None`` (default): of the two primes around
        ``e^ε + 1`` (the real-valued optimum of [WBLJ17]_), the one with the smaller
        variance, capped at the smallest prime ``>= k``. An explicit prime in
        ``[2, 2^31]`` is used as given; a composite is refused (the family needs a
        field).

    Examples
    --------
    >>> from privaudit.mechanisms.ldp._hashing import OLH
    >>> from privaudit import simulation_generator
    >>> olh = OLH(k=100, epsilon=2.0)
    >>> olh.g, olh.digits
    (7, 3)
    >>> reports = olh.randomize([7] * 50_000 + [3] * 50_000, rng=simulation_generator(0))
    >>> estimate = olh.estimate(reports)[[3, 7, 50]]  # true frequencies: 0.5, 0.5, 0
    >>> bool(abs(estimate - [0.5, 0.5, 0.0]).max() < 4 * olh.variance(100_000, 0.5) ** 0.5)
    True
    """

    name = "olh"

    def __init__(self, *, k: int, epsilon: float, g: int | None = None) -> None:
        # Validate k and ε before g, so each bad parameter is reported as such.
        domain, privacy = check_domain(k), check_epsilon(epsilon)
        range_size = optimal_prime_range(domain, privacy) if g is None else _check_g(g)
        self.g_rule = g
        super().__init__(k=k, epsilon=epsilon, g=range_size)

    def public_params(self) -> dict[str, Any]:
        return {"g": self.g}
