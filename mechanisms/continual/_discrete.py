"""Exact, vectorised samplers of discrete Laplace and discrete Gaussian noise.

The continual counters add integer noise to integer sums (values on the grid
``2^-k Z``), so no floating-point arithmetic ever touches a value before it is private
and the attacks on textbook float noise [Mir12]_ do not apply. Each sampler below
returns integers whose law is *exactly* the stated one, given a source of uniform
random integers: they follow Canonne, Kamath and Steinke [CKS20]_ (Algorithms 1-3),
using only integer comparisons, vectorised over a batch with NumPy:

* :func:`bernoulli_ratio`: ``P[1] = p/q`` for integers ``0 <= p <= q``. When ``q`` fits
  in ``int64`` it draws a uniform integer below ``q`` (NumPy's bounded integers are
  exact: rejection, no modulo bias); otherwise it compares a uniform real, refined 64
  bits at a time, with ``p/q`` in Python's exact integers.
* :func:`bernoulli_exp_minus`: ``P[1] = exp(-γ)`` for a rational ``γ = num/den >= 0``
  [CKS20]_ Algorithm 1, with ``exp(-γ) = exp(-1)^⌊γ⌋ · exp(-(γ - ⌊γ⌋))``.
* :func:`discrete_laplace`: ``P[X = x] ∝ exp(-|x|/t)`` on ``Z`` for an integer scale
  ``t >= 1`` ([CKS20]_ Algorithm 2 with ``s = 1``).
* :func:`discrete_gaussian`: ``P[X = x] ∝ exp(-x²/(2σ²))`` on ``Z`` for a rational
  ``σ²`` ([CKS20]_ Algorithm 3: discrete Laplace proposals with ``t = ⌊σ⌋ + 1``,
  accepted with probability ``exp(-(|y| - σ²/t)²/(2σ²))``).

The exactness is relative to the generator: with the default ChaCha20 source
(:func:`privaudit.randomness.secure_generator`) the bits are computationally
indistinguishable from uniform, and the samplers add no error of their own.

References
----------
.. [CKS20] C. L. Canonne, G. Kamath and T. Steinke, "The Discrete Gaussian for
   Differential Privacy", NeurIPS 2020 (arXiv 2004.00010).
.. [Mir12] I. Mironov, "On significance of the least significant bits for
   differential privacy", CCS 2012.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

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
ObjectArray = npt.NDArray[np.object_]

_INT64_SAFE = 1 << 62  # integer bounds below this stay exact in int64 arithmetic
_WORD = 1 << 64


def _words(rng: np.random.Generator, size: int) -> ObjectArray:
    """Uniform 64-bit integers as Python ints (an object array)."""
    words = rng.integers(0, _WORD - 1, size=size, dtype=np.uint64, endpoint=True)
    return words.astype(object)


def bernoulli_ratio(rng: np.random.Generator, p: npt.ArrayLike, q: npt.ArrayLike) -> BoolArray:
    """One draw of Bernoulli(``p/q``) per element, exactly, for integers ``0 <= p <= q``.

    ``p`` and ``q`` broadcast together; they may be ``int64`` arrays or object arrays
    of Python ints (any size).
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


def _bernoulli_exp_minus_one(rng: np.random.Generator, size: int) -> BoolArray:
    """Bernoulli(``exp(-1)``) ([CKS20]_ Algorithm 1 with γ = 1: stop at the first failure
    of Bernoulli(1/K), K = 1, 2, ...; the result is whether K ends odd)."""
    k = np.ones(size, dtype=np.int64)
    going = np.ones(size, dtype=bool)
    while going.any():
        idx = np.flatnonzero(going)
        success = rng.integers(0, k[idx]) == 0  # Bernoulli(1/K)
        k[idx[success]] += 1
        going[idx[~success]] = False
    return (k % 2) == 1  # type: ignore[no-any-return]


def _geometric_exp_minus_one(rng: np.random.Generator, size: int) -> IntArray:
    """How many Bernoulli(``exp(-1)``) succeed before the first failure (``P[V >= v] =
    e^-v``); drawn 8 trials per element at a time, so the loop rarely runs twice."""
    v = np.zeros(size, dtype=np.int64)
    going = np.arange(size)
    while going.size:
        trials = _bernoulli_exp_minus_one(rng, going.size * 8).reshape(going.size, 8)
        failed = ~trials
        first_failure = np.where(failed.any(axis=1), failed.argmax(axis=1), 8)
        v[going] += first_failure
        going = going[first_failure == 8]
    return v


def _bernoulli_exp_minus_fraction(
    rng: np.random.Generator, num: npt.NDArray[Any], den: npt.NDArray[Any]
) -> BoolArray:
    """Bernoulli(``exp(-num/den)``) for ``0 <= num/den <= 1`` ([CKS20]_ Algorithm 1)."""
    size = num.size
    k = np.ones(size, dtype=np.int64)
    going = np.ones(size, dtype=bool)
    while going.any():
        idx = np.flatnonzero(going)
        kk = k[idx]
        if den.dtype != object and int(den[idx].max()) * int(kk.max()) < _INT64_SAFE:
            q: npt.NDArray[Any] = den[idx] * kk
        else:
            q = den[idx].astype(object) * kk.astype(object)
        success = bernoulli_ratio(rng, num[idx], q)  # Bernoulli(γ/K)
        k[idx[success]] += 1
        going[idx[~success]] = False
    return (k % 2) == 1  # type: ignore[no-any-return]


def bernoulli_exp_minus(
    rng: np.random.Generator, num: npt.ArrayLike, den: npt.ArrayLike
) -> BoolArray:
    """One draw of Bernoulli(``exp(-num/den)``) per element, exactly.

    ``num >= 0`` and ``den >= 1`` are integers (``int64`` or object arrays of Python
    ints) that broadcast together.
    """
    num_arr, den_arr = np.broadcast_arrays(np.asarray(num), np.asarray(den))
    num_flat, den_flat = num_arr.ravel(), den_arr.ravel()
    whole = num_flat // den_flat
    remainder = num_flat - whole * den_flat
    out = np.ones(num_flat.size, dtype=bool)
    # exp(-⌊γ⌋): ⌊γ⌋ independent Bernoulli(exp(-1)) must all succeed; elements drop out
    # at their first failure, so this loop ends quickly however large ⌊γ⌋ is.
    left = np.asarray(whole, dtype=object)
    going = left > 0
    while going.any():
        idx = np.flatnonzero(going)
        out[idx[~_bernoulli_exp_minus_one(rng, idx.size)]] = False
        left[idx] = left[idx] - 1
        going = out & (left > 0)
    idx = np.flatnonzero(out)
    if idx.size:
        out[idx] = _bernoulli_exp_minus_fraction(rng, remainder[idx], den_flat[idx])
    return out.reshape(num_arr.shape)


def discrete_laplace(rng: np.random.Generator, scale: int, size: int) -> IntArray:
    """``size`` draws with ``P[X = x] = (1 - r)/(1 + r) · r^|x|``, ``r = exp(-1/scale)``.

    [CKS20]_ Algorithm 2 with ``s = 1``: ``U`` uniform on ``{0, ..., t-1}`` kept with
    probability ``exp(-U/t)``, ``V`` geometric (``P[V >= v] = exp(-v)``), magnitude
    ``U + t·V``, a fair sign, and a rejected negative zero.

    Parameters
    ----------
    scale
        The integer scale ``t >= 1`` (at most ``2^56``, so every sum stays in ``int64``).
    """
    t = _check_scale(scale)
    out = np.empty(size, dtype=np.int64)
    pending = np.arange(size)
    while pending.size:
        n = pending.size * 8 // 5 + 32  # 63% survive a round: overdraw to end in one or two
        u = rng.integers(0, t, size=n, dtype=np.int64)
        keep = _bernoulli_exp_minus_fraction(rng, u, np.full(n, t, dtype=np.int64))
        u = u[keep]
        v = _geometric_exp_minus_one(rng, u.size)
        if int(v.max(initial=0)) >= ((1 << 63) - 1 - t) // t:  # probability below e^-127
            raise OverflowError("a discrete Laplace sample does not fit in int64")
        magnitude = u + t * v
        negative = rng.integers(0, 2, size=u.size).astype(bool)
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
    denominator = 2 * p * q * t * t
    out = np.empty(size, dtype=np.int64)
    pending = np.arange(size)
    while pending.size:
        y = discrete_laplace(rng, t, pending.size * 7 // 5 + 32)  # 74% are accepted: overdraw
        # (|y| - σ²/t)² / (2σ²) = (|y|·q·t - p)² / (2·p·q·t²), exactly, in Python ints
        gap = np.abs(y).astype(object) * (q * t) - p
        accept = bernoulli_exp_minus(rng, gap * gap, np.asarray(denominator, dtype=object))
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
