"""High-probability bounds on discrete noise, for the stated error bounds of MaxSum/SumSelect.

Everything here is a *bound*, computed from closed forms and union bounds, never from
a simulation:

* :func:`laplace_max_bound`: the largest of ``n`` independent discrete Laplace draws
  in absolute value, from the exact tail ``P[|X| >= k] = 2 r^k/(1 + r)`` (``k >= 1``,
  ``r = exp(-1/s)``) of ``P[X = x] = (1 - r)/(1 + r) · r^|x|``.
* :func:`tree_noise_bound`: the largest error of ``d`` binary-tree counters over all
  ``t <= T``; at step ``t`` the error of a column is a sum of ``popcount(t)``
  independent node noises. Discrete Laplace sums are bounded by Chernoff with their
  exact moment generating function ``E e^{λX} = (1 - r)²/((1 - r e^λ)(1 - r e^{-λ}))``
  (``|λ| < 1/s``); discrete Gaussian sums by sub-Gaussianity, ``E e^{λX} <=
  e^{λ²σ²/2}`` ([CKS20]_, Corollary 9), so ``P[|Σ_k X| >= a] <= 2 exp(-a²/(2kσ²))``.
  The union bound runs over the ``d`` columns and over the steps grouped by
  popcount (:func:`popcount_histogram`), so steps with few nodes are not charged as
  many.

All noise is an integer number of units, so the bounds are integers ``A`` with
``P[some |noise| > A] <= β``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from fractions import Fraction

import numpy as np

__all__ = ["laplace_max_bound", "popcount_histogram", "tree_noise_bound"]

_LAMBDA_GRID = 512  # Chernoff: any λ gives a valid bound; the grid only loses a little


def laplace_max_bound(scale: int, draws: int, beta: float) -> int:
    """The smallest ``A >= 0`` with ``draws · P[|X| > A] <= beta``, ``X`` discrete Laplace.

    With probability at least ``1 - beta`` all of ``draws`` independent draws of scale
    ``scale`` (integer units) are at most ``A`` in absolute value (a union bound on the
    exact tail).
    """
    if draws <= 0:
        return 0
    r = math.exp(-1.0 / scale)
    # draws · 2 r^k/(1 + r) <= beta  <=>  k >= s · ln(2·draws/((1 + r)·beta))
    k = max(1, math.ceil(scale * math.log(2.0 * draws / ((1.0 + r) * beta))))
    while k > 1 and draws * 2.0 * math.exp(-(k - 1) / scale) / (1.0 + r) <= beta:
        k -= 1  # the logarithm above may round up by one
    while draws * 2.0 * math.exp(-k / scale) / (1.0 + r) > beta:
        k += 1
    return k - 1


def popcount_histogram(horizon: int) -> dict[int, int]:
    """``{k: #{1 <= t <= horizon : popcount(t) = k}}`` (only the ``k`` that occur)."""
    counts: dict[int, int] = {}
    ones = 0
    for bit in range(horizon.bit_length() - 1, -1, -1):
        if horizon >> bit & 1:
            # numbers that share horizon's higher bits, have 0 here, anything below
            for k in range(bit + 1):
                counts[ones + k] = counts.get(ones + k, 0) + math.comb(bit, k)
            ones += 1
    counts[ones] = counts.get(ones, 0) + 1  # horizon itself
    counts.pop(0, None)  # t = 0 is not a step
    return {k: n for k, n in sorted(counts.items()) if n}


def _laplace_sum_tails(scale: int, ks: np.ndarray) -> Callable[[int], np.ndarray]:
    """``a ↦`` upper bounds on ``log P[Σ_k X >= a]`` (one side, ``a >= 1``), one per ``k``."""
    r = math.exp(-1.0 / scale)
    lam = np.arange(1, _LAMBDA_GRID + 1) / (_LAMBDA_GRID + 1) / scale  # in (0, 1/s)
    log_mgf = 2.0 * math.log1p(-r) - np.log1p(-r * np.exp(lam)) - np.log1p(-r * np.exp(-lam))
    k_log_mgf = ks[:, None] * log_mgf[None, :]
    single = ks == 1

    def log_tail(a: int) -> np.ndarray:
        chernoff = (k_log_mgf - lam[None, :] * a).min(axis=1)
        exact_single = math.log(r) * a - math.log1p(r)  # P[X >= a] = r^a/(1 + r)
        return np.where(single, np.minimum(chernoff, exact_single), chernoff)  # type: ignore[no-any-return]

    return log_tail


def _gaussian_sum_tails(sigma2: float, ks: np.ndarray) -> Callable[[int], np.ndarray]:
    """The same for ``σ²``-sub-Gaussian ``X``: ``-a²/(2kσ²)``."""

    def log_tail(a: int) -> np.ndarray:
        return -(float(a) ** 2) / (2.0 * ks * sigma2)

    return log_tail


@functools.lru_cache(maxsize=256)
def tree_noise_bound(
    *,
    horizon: int,
    columns: int,
    beta: float,
    laplace_scale: int | None = None,
    gaussian_sigma2: Fraction | None = None,
) -> int:
    """The smallest ``A`` with ``P[max_{t, j} |N_{t,j}| > A] <= beta`` by the union bound.

    ``N_{t,j}`` is the noise of column ``j``'s binary-tree release at step ``t``: a sum
    of ``popcount(t)`` independent node noises, discrete Laplace of integer scale
    ``laplace_scale`` or discrete Gaussian of parameter ``gaussian_sigma2`` (exactly one).
    """
    histogram = popcount_histogram(horizon)
    ks = np.array(list(histogram), dtype=float)
    log_weights = np.log(np.array(list(histogram.values()), dtype=float) * columns * 2.0)
    if laplace_scale is not None:
        log_tail = _laplace_sum_tails(laplace_scale, ks)
    else:
        assert gaussian_sigma2 is not None
        log_tail = _gaussian_sum_tails(float(gaussian_sigma2), ks)

    def failure(a: int) -> float:  # P[some |N| >= a] <= this (a >= 1; two tails)
        return float(np.exp(log_weights + log_tail(a)).sum())

    high = 1
    while failure(high) > beta:
        high *= 2
    low = high // 2  # failure(low) > beta, or low = 0
    while high - low > 1:
        middle = (low + high) // 2
        if failure(middle) <= beta:
            high = middle
        else:
            low = middle
    return high - 1  # every |N| <= high - 1 with probability >= 1 - beta
