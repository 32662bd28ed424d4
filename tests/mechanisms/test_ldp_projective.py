"""Projective Geometry Response: the geometry by brute force, the exact channel, the
FFT server, the attack.

Statistical tests use fixed seeds and state their false-failure probability.
"""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest
from scipy import stats

import privaudit.mechanisms.ldp._projective  # noqa: F401  (registers "pgr")
from privaudit import simulation_generator
from privaudit.errors import ParameterError
from privaudit.mechanisms.ldp._projective import ProjectiveGeometryResponse, projective_parameters
from privaudit.registry import mechanisms

PGR = ProjectiveGeometryResponse
GEOMETRIES = [(2, 2), (2, 3), (2, 4), (3, 2), (3, 3), (5, 2), (5, 3), (7, 2)]


def canonical_vectors(q: int, t: int) -> np.ndarray:
    """Every canonical vector of F_q^t (first non-zero coordinate 1), by brute force."""
    return np.array(
        [
            vector
            for vector in itertools.product(range(q), repeat=t)
            if any(vector) and vector[next(i for i, c in enumerate(vector) if c)] == 1
        ]
    )


def supports(oracle: PGR) -> np.ndarray:
    """``[x, u]``: is point ``u`` on the hyperplane of value ``x``?"""
    own = oracle.point_vectors(np.arange(oracle.k))
    every = oracle.point_vectors(np.arange(oracle.points))
    return (own @ every.T) % oracle.q == 0


def test_registered() -> None:
    assert mechanisms.get("pgr") is PGR


@pytest.mark.parametrize(("q", "t"), GEOMETRIES)
def test_geometry_constants_by_brute_force(q: int, t: int) -> None:
    vectors = canonical_vectors(q, t)
    incidence = (vectors @ vectors.T) % q == 0
    # k one more than the points of PG(t − 2, q) forces exactly t coordinates.
    k = (q ** (t - 1) - 1) // (q - 1) + 1
    found_t, points, cset, cint = projective_parameters(k, q)
    assert (found_t, points) == (t, len(vectors))
    assert (incidence.sum(axis=1) == cset).all()
    overlap = incidence.astype(int) @ incidence.T.astype(int)
    assert (overlap[~np.eye(points, dtype=bool)] == cint).all()


@pytest.mark.parametrize(("q", "t"), GEOMETRIES)
def test_point_indices_name_every_canonical_vector_once(q: int, t: int) -> None:
    oracle = PGR(k=(q ** (t - 1) - 1) // (q - 1) + 1, epsilon=1.0, q=q)
    vectors = oracle.point_vectors(np.arange(oracle.points))
    expected = canonical_vectors(q, t)
    assert sorted(map(tuple, vectors)) == sorted(map(tuple, expected))
    np.testing.assert_array_equal(oracle.vector_points(vectors), np.arange(oracle.points))


@pytest.mark.parametrize(("q", "t"), GEOMETRIES)
def test_hyperplane_sums_by_brute_force(q: int, t: int) -> None:
    oracle = PGR(k=(q ** (t - 1) - 1) // (q - 1) + 1, epsilon=1.0, q=q)
    weights = simulation_generator(q * t).random(oracle.points)
    vectors = oracle.point_vectors(np.arange(oracle.points))
    incidence = (vectors @ vectors.T) % q == 0
    np.testing.assert_allclose(oracle.hyperplane_sums(weights), incidence @ weights, rtol=1e-10)


@pytest.mark.parametrize(
    ("k", "epsilon", "q"), [(2, 0.5, None), (3, 2.0, 2), (5, 1.0, 3), (8, 2.0, None), (13, 1.0, 3)]
)
def test_support_probabilities_are_those_of_the_channel(
    k: int, epsilon: float, q: int | None
) -> None:
    oracle = PGR(k=k, epsilon=epsilon, q=q)
    channel = oracle.channel()
    inside = channel @ supports(oracle).T.astype(float)
    np.testing.assert_allclose(np.diag(inside), oracle.p_star, rtol=1e-12)
    np.testing.assert_allclose(inside[~np.eye(k, dtype=bool)], oracle.q_star, rtol=1e-12)
    assert channel.max() / channel.min() == pytest.approx(math.exp(epsilon), rel=1e-12)


@pytest.mark.parametrize(("k", "q"), [(7, 2), (13, 3), (20, 5)])
def test_reports_follow_the_channel(k: int, q: int) -> None:
    # G-test of 200 000 reports of a fixed dataset against the exact law (at most 31
    # outputs): false failure probability 1e-6 each (asymptotic chi-square). q = 2, t = 3
    # draws the zero vector half the time on the hyperplane, exercising the redraw.
    oracle = PGR(k=k, epsilon=1.0, q=q)
    data = np.arange(200_000) % k
    reports = oracle.randomize(data, rng=simulation_generator(k))
    observed = np.bincount(reports.arrays["points"], minlength=oracle.points)
    expected = np.bincount(data, minlength=k) @ oracle.channel()
    assert expected.min() > 1_000
    result = stats.power_divergence(observed, expected, lambda_="log-likelihood")
    assert result.pvalue > 1e-6


@pytest.mark.parametrize(("k", "q"), [(2, 2), (13, 3), (100, 7), (1000, None)])
def test_server_equals_a_direct_count(k: int, q: int | None) -> None:
    oracle = PGR(k=k, epsilon=2.0, q=q)
    rng = simulation_generator(k)
    reports = oracle.randomize(rng.integers(0, k, size=3_000), rng=rng)
    direct = supports(oracle)[:, reports.arrays["points"]].sum(axis=1)
    np.testing.assert_array_equal(oracle.support_counts(reports), direct)


@pytest.mark.parametrize(
    ("k", "epsilon", "q"), [(2, 1.0, 2), (3, 0.5, 5), (6, 2.0, None), (8, 5.0, 3), (30, 1.0, 3)]
)
def test_reconstruction_success_is_exact(k: int, epsilon: float, q: int | None) -> None:
    oracle = PGR(k=k, epsilon=epsilon, q=q)
    channel, support = oracle.channel(), supports(oracle)
    size = support.sum(axis=0)
    guess = np.where(size > 0, support / np.maximum(size, 1), 1 / k)
    per_value = (channel * guess).sum(axis=1)
    assert oracle.reconstruction_success() == pytest.approx(per_value.mean(), rel=1e-12)
    prior = simulation_generator(k).dirichlet(np.ones(k))
    assert oracle.reconstruction_success(prior) == pytest.approx(prior @ per_value, rel=1e-12)


def test_padding_can_leave_a_point_supporting_nothing() -> None:
    oracle = PGR(k=3, epsilon=0.5, q=5)  # t = 2, K = 6: each hyperplane is one point
    assert (supports(oracle).sum(axis=0) == 0).any()


@pytest.mark.parametrize(
    ("epsilon", "q", "t", "points"),
    [
        (1.0, 3, 7, 1093),
        (2.0, 7, 5, 2801),
        (3.0, 23, 4, 12720),
        (4.0, 53, 3, 2863),
        (5.0, 149, 3, 22351),
    ],
)
def test_default_prime_minimises_the_variance(epsilon: float, q: int, t: int, points: int) -> None:
    # The reference notes' search over primes at k = 1024 (reference/mechanisms.md §1.5).
    oracle = PGR(k=1024, epsilon=epsilon)
    assert (oracle.q, oracle.t, oracle.points) == (q, t, points)
    assert oracle.bits_per_report() == math.ceil(math.log2(points))
    for other in (2, 3, 5, 7, 11, 13, 23, 53, 149):
        if other != q:
            assert PGR(k=1024, epsilon=epsilon, q=other).variance(1) >= oracle.variance(1)
    oue = 4 * math.exp(epsilon) / (math.exp(epsilon) - 1) ** 2
    assert oracle.variance(1) == pytest.approx(oue, rel=0.025)  # 2.1% above OUE at ε = 1


def test_parameters() -> None:
    oracle = PGR(k=100, epsilon=2.0)
    assert PGR(k=100, epsilon=2.0, **oracle.public_params()).fingerprint() == oracle.fingerprint()
    for bad in (0, 1, 4, 9, 2.0, True, "3"):
        with pytest.raises(ParameterError, match="q must be a prime"):
            PGR(k=100, epsilon=1.0, q=bad)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="server transform"):
        PGR(k=20_000, epsilon=1.0, q=1_000_003)


@pytest.mark.parametrize("epsilon", [1.0, 5.0])
def test_large_domains_work(epsilon: float) -> None:
    k = 22_000
    oracle = PGR(k=k, epsilon=epsilon)
    rng = simulation_generator(2)
    data = np.minimum(rng.geometric(0.05, size=50_000) - 1, k - 1)
    started = time.perf_counter()
    estimate = oracle.estimate(oracle.randomize(data, rng=rng))
    assert time.perf_counter() - started < 10
    truth = np.bincount(data, minlength=k) / data.size
    error = (estimate - truth) / np.sqrt(oracle.variance(data.size, truth))
    assert np.abs(error).max() < 6.5  # 22 000 coordinates: false failure ~2e-6
