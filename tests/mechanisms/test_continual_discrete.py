"""The exact discrete samplers against their pmfs.

Every statistical test uses a fixed seed and rejects at a stated level α: α is the
probability that the test fails although the sampler is exactly right.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from privaudit import simulation_generator
from privaudit.mechanisms.continual import (
    discrete_gaussian,
    discrete_gaussian_variance,
    discrete_laplace,
    discrete_laplace_variance,
)
from privaudit.mechanisms.continual._discrete import (
    _exp_minus_certified,
    _LazyUniform,
    bernoulli_exp_minus,
    bernoulli_ratio,
)

ALPHA = 1e-6
N = 100_000


def chi_square_p_value(samples: np.ndarray, pmf: dict[int, float]) -> float:
    """Goodness of fit over the support points with expected count >= 20, plus one bin
    for everything else (so a sample outside the support cannot hide)."""
    keys = [k for k, p in pmf.items() if p * samples.size >= 20]
    observed = np.array([(samples == k).sum() for k in keys] + [0.0])
    observed[-1] = samples.size - observed[:-1].sum()
    expected = np.array([pmf[k] for k in keys] + [0.0]) * samples.size
    expected[-1] = samples.size - expected[:-1].sum()
    return float(stats.chisquare(observed, expected).pvalue)


def laplace_pmf(scale: int, reach: int) -> dict[int, float]:
    r = math.exp(-1.0 / scale)
    return {x: (1 - r) / (1 + r) * r ** abs(x) for x in range(-reach, reach + 1)}


def gaussian_pmf(sigma2: float, reach: int) -> dict[int, float]:
    weights = {x: math.exp(-(x * x) / (2 * sigma2)) for x in range(-reach, reach + 1)}
    total = sum(weights.values())
    return {x: w / total for x, w in weights.items()}


@pytest.mark.parametrize(("scale", "seed"), [(1, 1), (3, 2), (10, 3)])
def test_discrete_laplace_matches_its_pmf(scale: int, seed: int) -> None:
    samples = discrete_laplace(simulation_generator(seed), scale, N)
    assert samples.dtype == np.int64
    assert chi_square_p_value(samples, laplace_pmf(scale, 60 * scale)) > ALPHA


@pytest.mark.parametrize(("sigma2", "seed"), [(Fraction(1, 2), 4), (Fraction(9, 2), 5), (20, 6)])
def test_discrete_gaussian_matches_its_pmf(sigma2: Fraction | int, seed: int) -> None:
    samples = discrete_gaussian(simulation_generator(seed), sigma2, N)
    reach = int(40 * math.sqrt(float(sigma2))) + 2
    assert chi_square_p_value(samples, gaussian_pmf(float(sigma2), reach)) > ALPHA


def test_variances_are_those_of_the_pmfs() -> None:
    for scale in (1, 3, 10, 1000):
        pmf = laplace_pmf(scale, 80 * scale)
        exact = sum(p * x * x for x, p in pmf.items())
        assert discrete_laplace_variance(scale) == pytest.approx(exact, rel=1e-9)
    for sigma2 in (Fraction(1, 2), Fraction(9, 2), Fraction(20), Fraction(10**6)):
        s2 = float(sigma2)
        pmf = gaussian_pmf(s2, int(40 * math.sqrt(s2)) + 2)
        exact = sum(p * x * x for x, p in pmf.items())
        assert discrete_gaussian_variance(sigma2) == pytest.approx(exact, rel=1e-9)
    # σ² = 1/2 is small enough for the discrete variance to sit visibly below σ².
    assert discrete_gaussian_variance(Fraction(1, 2)) < 0.5


def test_huge_scales_have_the_right_spread() -> None:
    # Scales as the counters use them (~2^35 grid units): the sample variance from
    # N draws; the band is a normal approximation of its law at α = 1e-6 (two-sided),
    # with the fourth moments of the Laplace (6σ⁴) and Gaussian (3σ⁴) laws.
    rng = simulation_generator(7)
    scale = 3 << 33
    lap = discrete_laplace(rng, scale, N).astype(float)
    ratio = float(np.mean(lap**2)) / discrete_laplace_variance(scale)
    z = stats.norm.isf(ALPHA / 2)
    assert abs(ratio - 1) < z * math.sqrt(5 / N)
    sigma2 = 11 * 4**32 + 7
    gauss = discrete_gaussian(rng, sigma2, N).astype(float)
    ratio = float(np.mean(gauss**2)) / float(sigma2)
    assert abs(ratio - 1) < z * math.sqrt(2 / N)


@pytest.mark.parametrize(
    ("num", "den"),
    [(0, 1), (1, 3), (1, 1), (7, 3), (5, 1), (10**30 + 1, 3 * 10**29)],  # γ up to 5, big ints
)
def test_bernoulli_exp_minus_has_probability_exp_minus_gamma(num: int, den: int) -> None:
    rng = simulation_generator(num % 1000 + den % 997)
    draws = bernoulli_exp_minus(rng, np.full(N, num, dtype=object), np.full(N, den, dtype=object))
    p = math.exp(-num / den)
    if p == 1.0:
        assert draws.all()
        return
    assert stats.binomtest(int(draws.sum()), N, p).pvalue > ALPHA


@pytest.mark.parametrize(("p", "q"), [(1, 3), (2**70, 3 * 2**70 + 1), (10**40, 10**40)])
def test_bernoulli_ratio_is_exact_for_any_integer_size(p: int, q: int) -> None:
    draws = bernoulli_ratio(simulation_generator(11), np.full(N, p, dtype=object), q)
    if p == q:
        assert draws.all()
        return
    assert stats.binomtest(int(draws.sum()), N, p / q).pvalue > ALPHA


def test_bad_scales_are_refused() -> None:
    rng = simulation_generator(0)
    with pytest.raises(ValueError, match="scale"):
        discrete_laplace(rng, 0, 3)
    with pytest.raises(ValueError, match="sigma2"):
        discrete_gaussian(rng, Fraction(-1), 3)


def test_undecided_comparisons_are_settled_exactly() -> None:
    # A deliberately loose bracket (±0.5 around γ = 1) sends ~40% of the draws to the
    # exact path (decimal brackets, W extended word by word); the result must still be
    # Bernoulli(e^-1). Binomial test at α.
    rng = simulation_generator(21)
    n = 20_000
    gamma = np.ones(n)
    exact_calls: list[int] = []

    def exact(i: int) -> Fraction:
        exact_calls.append(i)
        return Fraction(1)

    draws = _exp_minus_certified(rng, gamma, 0.5, exact)
    assert len(exact_calls) > n // 4
    assert stats.binomtest(int(draws.sum()), n, math.exp(-1)).pvalue > ALPHA


def test_a_lazy_uniform_counts_thresholds_with_the_geometric_law() -> None:
    # W known to no bit at all: every comparison refines it. The number of thresholds
    # exp(-1) > exp(-2) > ... above W has P[V = v] = e^-v (1 - e^-1). Chi-square at α.
    rng = simulation_generator(22)
    counts = []
    for _ in range(5_000):
        lazy = _LazyUniform(rng, 0, 0)
        v = 0
        while lazy.below_exp_minus(Fraction(v + 1)):
            v += 1
        counts.append(v)
    pmf = {v: math.exp(-v) * (1 - math.exp(-1)) for v in range(40)}
    assert chi_square_p_value(np.array(counts), pmf) > ALPHA


def test_astronomical_exponents_never_succeed() -> None:
    rng = simulation_generator(23)
    draws = bernoulli_exp_minus(rng, np.full(50, 10**400, dtype=object), 1)
    assert not draws.any()
    for gamma in (Fraction(70_000), Fraction(10**30)):  # past 2^16: decided by 2^-γ
        assert not _LazyUniform(rng, 0, 0).below_exp_minus(gamma)
