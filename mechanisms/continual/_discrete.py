"""Exact, vectorised samplers of discrete Laplace and discrete Gaussian noise.

The continual counters add integer noise to integer sums (values on the grid
``2^-k Z``), so no floating-point arithmetic ever touches a value before it is private
and the attacks on textbook float noise [Mir12]_ do not apply. Each sampler below
returns integers whose law is *exactly* the stated one, given a source of uniform
random bits. They follow the structure of Canonne, Kamath and Steinke [CKS20]_
(Algorithms 2-3), vectorised over a batch with NumPy:

* :func:`discrete_laplace`: ``P[X = x] ∝ exp(-|x|/t)`` on ``Z`` for an integer scale
  ``t >= 1``: ``U`` uniform on ``{0, ..., t-1}`` kept with probability ``exp(-U/t)``,
  ``V`` with ``P[V >= v] = exp(-v)``, magnitude ``U + t·V``, a fair sign, and a
  rejected negative zero ([CKS20]_ Algorithm 2 with ``s = 1``).
* :func:`discrete_gaussian`: ``P[X = x] ∝ exp(-x²/(2σ²))`` on ``Z`` for a rational
  ``σ²``: discrete Laplace proposals with ``t = ⌊σ⌋ + 1``, accepted with probability
  ``exp(-(|y| - σ²/t)²/(2σ²))`` ([CKS20]_ Algorithm 3).
* :func:`bernoulli_exp_minus`: ``P[1] = exp(-γ)`` for a rational ``γ >= 0``;
  :func:`bernoulli_ratio`: ``P[1] = p/q`` for integers ``0 <= p <= q``.

Every ``exp(-γ)`` event (the acceptances, and ``V``) is decided by comparing one
uniform real ``W ∈ [0, 1)`` with ``exp(-γ)``, *lazily*: ``W``'s first 52 bits come
from one 64-bit word, so ``W`` is known to lie in ``[w·2^-52, (w+1)·2^-52)``, and
``exp(-γ)`` is bracketed in double precision with a certified error bound (the
rounding of every float operation, with a wide margin). When the two intervals do
not overlap the comparison is decided and exact; otherwise (with probability about
``2^-40`` per draw) it is settled in exact arithmetic: ``exp(-γ)`` is bracketed in
``decimal`` at growing precision and ``W`` extended by more random words, until the
intervals separate ([Kar16]_'s "lazy" uniform). Floats are only ever used to *prove*
which side of a threshold a random number lies; they never produce a value. Since
``exp(-γ)`` is irrational for rational ``γ > 0`` (Lindemann), the loop ends with
probability 1. This replaces [CKS20]_ Algorithm 1 (a chain of Bernoulli(γ/K) trials,
``e`` uniform integers per event) by one word per event: about 5 words per Laplace
draw and 8 per Gaussian draw.

The exactness is relative to the generator: with the default ChaCha20 source
(:func:`privaudit.randomness.secure_generator`, keyed with 256 bits from the
operating system's CSPRNG through :mod:`secrets`) the bits are computationally
indistinguishable from uniform, and the samplers add no error of their own.

References
----------
.. [CKS20] C. L. Canonne, G. Kamath and T. Steinke, "The Discrete Gaussian for
   Differential Privacy", NeurIPS 2020 (arXiv 2004.00010).
.. [Kar16] C. F. F. Karney, "Sampling exactly from the normal distribution", ACM
   TOMS 42(1), 2016 (arXiv 1303.6257).
.. [Mir12] I. Mironov, "On significance of the least significant bits for
   differential privacy", CCS 2012.
"""

from __future__ import annotations

import decimal
import math
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import numpy.typing as npt

__all__ = [
    "bernoulli_exp_minus",
    "bernoulli_ratio",
    "discrete_gaussian",
    "discrete_gaussian_variance",
    "discrete_laplace",
    "discrete_laplace_variance",
]

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
ObjectArray = npt.NDArray[np.object_]

_INT64_SAFE = 1 << 62  # integer bounds below this stay exact in int64 arithmetic
_WORD = 1 << 64
_PREFIX_BITS = 52  # bits of W taken from one word: w·2^-52 is an exact double
_ULP = 2.0**-_PREFIX_BITS
# Relative error allowed for a double-precision exp(-γ) bracket: ~2^12 ulps of np.exp
# and of the float evaluation of γ (each within a few ulps), so the bracket is certain.
_EXP_SLACK = 2.0**-40
_V_TABLE = 40  # thresholds exp(-v), v = 1..40, for the geometric part of the Laplace


def _words(rng: np.random.Generator, size: int) -> ObjectArray:
    """Uniform 64-bit integers as Python ints (an object array)."""
    words = rng.integers(0, _WORD - 1, size=size, dtype=np.uint64, endpoint=True)
    return words.astype(object)


def _prefixes(rng: np.random.Generator, size: int) -> IntArray:
    """``size`` uniform 52-bit integers ``w``: the first bits of uniform reals ``W``."""
    words = rng.integers(0, _WORD - 1, size=size, dtype=np.uint64, endpoint=True)
    return (words >> np.uint64(64 - _PREFIX_BITS)).astype(np.int64)


def _exp_minus_bounds(gamma: Fraction, digits: int) -> tuple[Fraction, Fraction] | None:
    """Rationals ``lo <= exp(-γ) <= hi``, a relative ``~10^(4-digits)`` apart (``None``
    when ``γ`` needs more digits than ``digits``).

    ``decimal`` rounds ``γ`` and ``exp`` to ``digits`` significant digits (each within
    one unit of the last digit); the bracket is widened by 100 such units and by the
    effect of ``γ``'s rounding, so it holds whatever the last-digit accuracy.
    """
    with decimal.localcontext() as ctx:
        ctx.prec = digits
        ctx.Emin, ctx.Emax = decimal.MIN_EMIN, decimal.MAX_EMAX
        ctx.traps[decimal.Underflow] = ctx.traps[decimal.Subnormal] = False
        g = decimal.Decimal(gamma.numerator) / decimal.Decimal(gamma.denominator)
        e = (-g).exp()
    unit = Fraction(1, 10 ** (digits - 3))  # 100 units in the last digit, relative
    drift = Fraction(g) * unit  # |g - γ| <= drift, so exp(-γ)/exp(-g) ∈ [e^-drift, e^drift]
    if drift > Fraction(1, 4):
        return None
    centre = Fraction(e)  # > 0: γ this large needs more digits than memory first
    return centre * (1 - unit) * (1 - drift), centre * (1 + unit) * (1 + 2 * drift)


_HUGE_GAMMA = Fraction(1 << 16)  # exp(-γ) < 2^-γ is then far below any W drawn so far


class _LazyUniform:
    """A uniform real ``W ∈ [0, 1)`` known to ``bits`` bits: ``W ∈ [n, n + 1)·2^-bits``.

    Further bits are drawn only when a comparison needs them, and kept, so successive
    comparisons see one and the same ``W``.
    """

    def __init__(self, rng: np.random.Generator, prefix: int, bits: int) -> None:
        self._rng = rng
        self.numerator = prefix
        self.bits = bits

    def _refine(self) -> None:
        word = int(self._rng.integers(0, _WORD - 1, dtype=np.uint64, endpoint=True))
        self.numerator = (self.numerator << 64) | word
        self.bits += 64

    def below_exp_minus(self, gamma: Fraction) -> bool:
        """Whether ``W < exp(-γ)``, exactly (``γ >= 0`` rational)."""
        if gamma == 0:
            return True
        if gamma > _HUGE_GAMMA:
            # exp(-γ) < 2^-γ (e > 2): W >= 2^-bits is above it once a 1 bit shows up
            # within the first ⌊γ⌋ bits; only if none does (probability 2^-65536) are the
            # exact brackets below needed.
            whole = math.floor(gamma)
            while self.numerator == 0 and self.bits < whole:
                self._refine()
            if self.numerator and self.bits <= whole:
                return False
        digits = 30
        while True:
            bounds = _exp_minus_bounds(gamma, digits)
            if bounds is None:
                digits *= 2
                continue
            lo, hi = bounds
            scale = 1 << self.bits
            if self.numerator + 1 <= lo * scale:  # W < (n + 1)·2^-bits <= lo
                return True
            if self.numerator >= hi * scale:  # W >= n·2^-bits >= hi
                return False
            if (hi - lo) * scale < Fraction(1, 4):  # the bracket is finer than W: refine W
                self._refine()
            else:
                digits *= 2


def _exp_minus_certified(
    rng: np.random.Generator,
    gamma: FloatArray,
    error: FloatArray | float,
    exact: Callable[[int], Fraction],
) -> BoolArray:
    """One draw of Bernoulli(``exp(-γ_i)``) per element, exactly.

    ``gamma`` are float estimates with ``|gamma_i - γ_i| <= error_i`` (certified by the
    caller); ``exact(i)`` gives ``γ_i`` as a rational, used only when the estimate
    cannot decide (probability about ``2^-40`` with tight errors).
    """
    size = gamma.size
    w = _prefixes(rng, size).astype(np.float64)  # exact: w < 2^52
    with np.errstate(over="ignore", invalid="ignore"):
        low = np.exp(-(gamma + error)) * (1.0 - _EXP_SLACK)
        high = np.exp(-np.maximum(gamma - error, 0.0)) * (1.0 + _EXP_SLACK)
    high = np.nextafter(np.where(np.isnan(high), 1.0, high), np.inf)  # > 0 even on underflow
    low = np.where(np.isnan(low), 0.0, low)
    yes = (w + 1.0) * _ULP <= low  # W < (w+1)·2^-52 <= low <= exp(-γ)
    no = w * _ULP >= high  # W >= w·2^-52 >= high >= exp(-γ)
    out = yes
    for index in np.flatnonzero(~(yes | no)).tolist():
        lazy = _LazyUniform(rng, int(w[index]), _PREFIX_BITS)
        out[index] = lazy.below_exp_minus(exact(index))
    return out


def _exp_minus_integer_bounds() -> tuple[FloatArray, FloatArray]:
    """Doubles ``lo_v <= exp(-v) <= hi_v`` for ``v = 1 .. 40``."""
    lows, highs = [], []
    for v in range(1, _V_TABLE + 1):
        bounds = _exp_minus_bounds(Fraction(v), 40)
        assert bounds is not None
        lo, hi = bounds
        lows.append(np.nextafter(float(lo), 0.0))
        highs.append(np.nextafter(float(hi), np.inf))
    return np.array(lows), np.array(highs)


_V_LOW, _V_HIGH = _exp_minus_integer_bounds()
_V_LOW_ASCENDING, _V_HIGH_ASCENDING = _V_LOW[::-1].copy(), _V_HIGH[::-1].copy()


def _geometric_exp_minus_one(rng: np.random.Generator, size: int) -> IntArray:
    """``V`` with ``P[V >= v] = exp(-v)`` (``V = ⌊-ln W⌋``, ``W`` uniform): the number of
    thresholds ``exp(-1) > exp(-2) > ...`` above one uniform ``W``; one word each."""
    w = _prefixes(rng, size).astype(np.float64)
    w_low, w_high = w * _ULP, (w + 1.0) * _ULP  # W ∈ [w_low, w_high)
    # thresholds surely above W: lo_v >= w_high; surely at or below W: hi_v <= w_low
    surely_above = _V_TABLE - np.searchsorted(_V_LOW_ASCENDING, w_high, side="left")
    surely_below = np.searchsorted(_V_HIGH_ASCENDING, w_low, side="right")
    v = surely_above.astype(np.int64)
    unsure = (surely_above + surely_below != _V_TABLE) | (surely_below == 0)
    for index in np.flatnonzero(unsure).tolist():  # W near a threshold, or below exp(-40)
        lazy = _LazyUniform(rng, int(w[index]), _PREFIX_BITS)
        count = 0
        while lazy.below_exp_minus(Fraction(count + 1)):
            count += 1
        v[index] = count
    return v


def bernoulli_ratio(rng: np.random.Generator, p: npt.ArrayLike, q: npt.ArrayLike) -> BoolArray:
    """One draw of Bernoulli(``p/q``) per element, exactly, for integers ``0 <= p <= q``.

    ``p`` and ``q`` broadcast together; they may be ``int64`` arrays or object arrays
    of Python ints (any size). When ``q`` fits in ``int64`` it draws a uniform integer
    below ``q`` (NumPy's bounded integers are exact: rejection, no modulo bias);
    otherwise it compares a uniform real, refined 64 bits at a time, with ``p/q`` in
    Python's exact integers.
    """
    p_arr, q_arr = np.broadcast_arrays(np.asarray(p), np.asarray(q))
    size = p_arr.size
    if size == 0:
        return np.zeros(p_arr.shape, dtype=bool)
    q_flat = q_arr.ravel()
    if max(q_flat.tolist()) < _INT64_SAFE:
        q64 = q_flat.astype(np.int64)
        below = rng.integers(0, q64)  # exact uniform integer in [0, q)
        return (below < p_arr.ravel().astype(np.int64)).reshape(p_arr.shape)
    # U uniform in [0, 1), known to 64·r bits: U ∈ [u/2^(64r), (u+1)/2^(64r)).
    # It is below p/q surely when (u+1)·q <= p·2^(64r), surely not when u·q >= p·2^(64r);
    # only in between (probability q/2^(64r) per element) is another word drawn.
    p_obj = p_arr.ravel().astype(object)
    q_obj = q_flat.astype(object)
    out = np.zeros(size, dtype=bool)
    pending = np.arange(size)
    u = _words(rng, size)
    scale = 64
    while pending.size:
        target = p_obj[pending] * (1 << scale)
        low = u * q_obj[pending]
        yes = (low + q_obj[pending]) <= target
        no = low >= target
        out[pending[yes]] = True
        undecided = ~(yes | no)
        pending = pending[undecided]
        u = u[undecided] * _WORD + _words(rng, pending.size)
        scale += 64
    return out.reshape(p_arr.shape)


def bernoulli_exp_minus(
    rng: np.random.Generator, num: npt.ArrayLike, den: npt.ArrayLike
) -> BoolArray:
    """One draw of Bernoulli(``exp(-num/den)``) per element, exactly.

    ``num >= 0`` and ``den >= 1`` are integers (``int64`` or object arrays of Python
    ints) that broadcast together.
    """
    num_arr, den_arr = np.broadcast_arrays(np.asarray(num), np.asarray(den))
    pairs = list(zip(num_arr.ravel().tolist(), den_arr.ravel().tolist(), strict=True))
    # Python's int / int is correctly rounded (relative error <= 2^-53), or too large.
    gamma = np.array([_ratio(n, d) for n, d in pairs], dtype=np.float64)
    # an infinite estimate is exact enough: exp(-γ) is then below the least double
    error = np.where(np.isinf(gamma), 0.0, np.abs(gamma) * 2.0**-50)
    out = _exp_minus_certified(rng, gamma, error, lambda i: Fraction(*pairs[i]))
    return out.reshape(num_arr.shape)


def _ratio(n: int, d: int) -> float:
    try:
        return n / d
    except OverflowError:  # γ > 1.8e308: exp(-γ) is far below every double
        return math.inf


def discrete_laplace(rng: np.random.Generator, scale: int, size: int) -> IntArray:
    """``size`` draws with ``P[X = x] = (1 - r)/(1 + r) · r^|x|``, ``r = exp(-1/scale)``.

    [CKS20]_ Algorithm 2 with ``s = 1``: ``U`` uniform on ``{0, ..., t-1}`` kept with
    probability ``exp(-U/t)``, ``V`` geometric (``P[V >= v] = exp(-v)``), magnitude
    ``U + t·V``, a fair sign, and a rejected negative zero. Each ``exp`` event is one
    lazy comparison of a uniform real (see the module docstring).

    Parameters
    ----------
    scale
        The integer scale ``t >= 1`` (at most ``2^56``, so every sum stays in ``int64``).
    """
    t = _check_scale(scale)
    t_float = float(t)
    out = np.empty(size, dtype=np.int64)
    pending = np.arange(size)
    while pending.size:
        n = pending.size * 8 // 5 + 32  # 63% survive a round: overdraw to end in one or two
        u = rng.integers(0, t, size=n, dtype=np.int64)
        # γ = u/t: the conversions and the division each round by at most 2^-53 (relative).
        gamma = u.astype(np.float64) / t_float

        def exact(i: int, u: IntArray = u) -> Fraction:
            return Fraction(int(u[i]), t)

        keep = _exp_minus_certified(rng, gamma, gamma * 2.0**-50, exact)
        u = u[keep]
        v = _geometric_exp_minus_one(rng, u.size)
        if int(v.max(initial=0)) >= ((1 << 63) - 1 - t) // t:  # probability below e^-127
            raise OverflowError("a discrete Laplace sample does not fit in int64")
        magnitude = u + t * v
        negative = rng.integers(0, 2, size=u.size, dtype=np.uint8).astype(bool)
        valid = ~(negative & (magnitude == 0))  # +0 and -0 are one outcome: drop one
        samples = np.where(negative, -magnitude, magnitude)[valid][: pending.size]
        out[pending[: samples.size]] = samples
        pending = pending[samples.size :]
    return out


def discrete_gaussian(rng: np.random.Generator, sigma2: Fraction | int, size: int) -> IntArray:
    """``size`` draws with ``P[X = x] ∝ exp(-x²/(2σ²))`` on ``Z`` ([CKS20]_ Algorithm 3).

    Parameters
    ----------
    sigma2
        ``σ²``, a positive rational (``fractions.Fraction`` or ``int``); ``σ`` at most
        about ``2^55`` (the proposal scale must fit in ``int64``).
    """
    sigma2 = Fraction(sigma2)
    if sigma2 <= 0:
        raise ValueError(f"sigma2 must be positive; got {sigma2}")
    p, q = sigma2.numerator, sigma2.denominator
    t = math.isqrt(p // q) + 1  # ⌊σ⌋ + 1
    _check_scale(t)
    # γ(y) = (|y| - c)²/(2σ²), c = σ²/t < t. In floats: |y| - c = (|y| - c0) - c1 with
    # c0 = ⌊c⌋ (an exact int64 subtraction) and c1 = c - c0 ∈ [0, 1), so the gap is
    # known to a *relative* 2^-51 (no cancellation), and γ to a relative ~2^-49.
    c = Fraction(p, q * t)
    c0 = c.numerator // c.denominator
    c1 = float(c - c0)
    two_sigma2 = 2.0 * float(sigma2)
    denominator = 2 * p * q * t * t
    out = np.empty(size, dtype=np.int64)
    pending = np.arange(size)
    while pending.size:
        y = discrete_laplace(rng, t, pending.size * 7 // 5 + 32)  # 74% are accepted: overdraw
        magnitude = np.abs(y)
        gap = (magnitude - c0).astype(np.float64) - c1
        gamma = gap * gap / two_sigma2
        slack = 2.0**-51 * (np.abs(gap) + 3.0)  # |gap - exact gap|, generously
        error = (slack * (2.0 * np.abs(gap) + slack)) / two_sigma2 + gamma * 2.0**-48

        def exact(i: int, magnitude: IntArray = magnitude) -> Fraction:
            # (|y| - σ²/t)² / (2σ²) = (|y|·q·t - p)² / (2·p·q·t²), in Python ints
            gap_units = int(magnitude[i]) * q * t - p
            return Fraction(gap_units * gap_units, denominator)

        accept = _exp_minus_certified(rng, gamma, error, exact)
        accepted = y[accept][: pending.size]
        out[pending[: accepted.size]] = accepted
        pending = pending[accepted.size :]
    return out


def discrete_laplace_variance(scale: int) -> float:
    """``Var X = 2r/(1 - r)²``, ``r = exp(-1/scale)``, of :func:`discrete_laplace`."""
    r = math.exp(-1.0 / scale)
    one_minus_r = -math.expm1(-1.0 / scale)
    return 2.0 * r / one_minus_r**2


def discrete_gaussian_variance(sigma2: Fraction | int) -> float:
    """The variance of :func:`discrete_gaussian`, summed from its pmf.

    It is below ``σ²`` (by a relative ``O(σ² e^{-2π²σ²})`` [CKS20]_), so equal to
    ``σ²`` in double precision once ``σ >= 2``; smaller ``σ`` is summed exactly.
    """
    s2 = float(sigma2)
    if s2 >= 4.0:
        return s2
    reach = math.ceil(40.0 * math.sqrt(s2)) + 2  # tail beyond: below 1e-300
    x = np.arange(-reach, reach + 1, dtype=float)
    weights = np.exp(-(x**2) / (2.0 * s2))
    return float((weights * x**2).sum() / weights.sum())


def _check_scale(scale: int) -> int:
    if isinstance(scale, bool) or not isinstance(scale, int | np.integer):
        raise TypeError(f"scale must be an integer; got {scale!r}")
    t = int(scale)
    if not 1 <= t <= 1 << 56:
        raise ValueError(f"scale must be in [1, 2^56]; got {t}")
    return t
