"""Local hashing (BLH, OLH): the linear hash family, the exact channel, the two server paths.

Statistical tests use fixed seeds and state their false-failure probability.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from privaudit import simulation_generator
from privaudit.errors import DataError, ParameterError
from privaudit.mechanisms.ldp._hashing import (
    BLH,
    OLH,
    LocalHashing,
    check_prior,
    is_prime,
    next_prime,
    optimal_prime_range,
    previous_prime,
)
from privaudit.registry import mechanisms


def all_hashes(oracle: LocalHashing) -> np.ndarray:
    """``[a, v]``: the hash of every value under every function of the family."""
    return oracle.hash_values(np.arange(oracle.functions)[:, None], np.arange(oracle.k)[None, :])


def supports(oracle: LocalHashing) -> np.ndarray:
    """``[v, column]``: does the report of that channel column support ``v``?"""
    hashed = all_hashes(oracle).T
    return (hashed[:, :, None] == np.arange(oracle.g)[None, None, :]).reshape(oracle.k, -1)


def brute_counts(oracle: LocalHashing, seed: np.ndarray, y: np.ndarray) -> np.ndarray:
    hashed = oracle.hash_values(seed[:, None], np.arange(oracle.k)[None, :])
    return (hashed == y[:, None]).sum(axis=0)


def test_registered_under_their_names() -> None:
    assert mechanisms.get("blh") is BLH
    assert mechanisms.get("olh") is OLH


def test_primes() -> None:
    sieve = np.ones(5000, dtype=bool)
    sieve[:2] = False
    for i in range(2, 71):
        sieve[i * i :: i] = False
    assert [is_prime(n) for n in range(5000)] == sieve.tolist()
    divisors = np.arange(2, 46_400)
    for n in (2**31 - 1, 2**31 + 11, 2**31 + 1, 2**31 - 3):
        assert is_prime(n) == bool(np.all(n % divisors != 0))
    assert next_prime(2**31) == 2**31 + 11
    assert [next_prime(n) for n in (0, 2, 4, 14, 1024)] == [2, 2, 5, 17, 1031]
    assert [previous_prime(n) for n in (2, 4, 14, 1024)] == [2, 3, 13, 1021]
    with pytest.raises(ParameterError):
        previous_prime(1)


@pytest.mark.parametrize(("k", "g"), [(5, 2), (7, 3), (11, 5), (13, 13), (5, 7), (16, 5), (30, 3)])
def test_collision_probability_is_exactly_one_over_g_for_every_pair(k: int, g: int) -> None:
    oracle = OLH(k=k, epsilon=1.0, g=g)
    hashed = all_hashes(oracle)
    assert g ** (oracle.digits - 1) < k <= oracle.functions
    for x, other in itertools.combinations(range(k), 2):
        assert int((hashed[:, x] == hashed[:, other]).sum()) * g == oracle.functions
    # Each value's hash is uniform over [g] for x != 0 (0 always hashes to 0).
    for x in range(1, k):
        np.testing.assert_array_equal(np.bincount(hashed[:, x], minlength=g), oracle.functions // g)


@pytest.mark.parametrize("protocol", ["blh", "olh"])
@pytest.mark.parametrize(("k", "epsilon"), [(2, 2.0), (5, 0.5), (8, 2.0), (11, 1.0), (7, 3.0)])
def test_support_probabilities_are_those_of_the_channel(
    protocol: str, k: int, epsilon: float
) -> None:
    oracle = mechanisms.get(protocol)(k=k, epsilon=epsilon)
    channel = oracle.channel()
    np.testing.assert_allclose(channel.sum(axis=1), 1.0, rtol=1e-12)
    inside = channel @ supports(oracle).T.astype(float)  # [v', v] = P[v ∈ S(Y) | v']
    np.testing.assert_allclose(np.diag(inside), oracle.p_star, rtol=1e-12)
    np.testing.assert_allclose(inside[~np.eye(k, dtype=bool)], oracle.q_star, rtol=1e-12)
    assert oracle.q_star == 1 / oracle.g
    assert channel.max() / channel.min() == pytest.approx(math.exp(epsilon), rel=1e-12)


def test_reports_follow_the_channel() -> None:
    # G-test of 200 000 reports of a fixed dataset against the exact law: the false
    # failure probability is 1e-6 (asymptotic chi-square; the smallest expected cell
    # count is about 1 800).
    oracle = OLH(k=5, epsilon=1.0)
    data = np.arange(200_000) % 5
    reports = oracle.randomize(data, rng=simulation_generator(11))
    columns = reports.arrays["seed"] * oracle.g + reports.arrays["y"]
    channel = oracle.channel()
    observed = np.bincount(columns, minlength=channel.shape[1])
    expected = np.bincount(data, minlength=5) @ channel
    assert expected.min() > 1_000
    result = stats.power_divergence(observed, expected, lambda_="log-likelihood")
    assert result.pvalue > 1e-6


@pytest.mark.parametrize(
    ("k", "epsilon", "g"),
    [
        (30, 1.0, 3),
        (16, 1.5, None),
        (8, 2.0, 7),
        (5, 1.0, 13),
        (13, 4.0, 13),
        (1000, 1.0, None),
        (1000, 4.0, None),
        (3000, 5.0, 149),
        (700, 0.7, 2),
        (64, 1.0, 2),
        (9, 1.0, 3),
    ],
)
def test_server_paths_equal_a_direct_count(k: int, epsilon: float, g: int | None) -> None:
    oracle = OLH(k=k, epsilon=epsilon, g=g)
    rng = simulation_generator(k)
    reports = oracle.randomize(rng.integers(0, k, size=4_000), rng=rng)
    seed, y = reports.arrays["seed"], reports.arrays["y"]
    truth = brute_counts(oracle, seed, y)
    np.testing.assert_array_equal(oracle.support_counts(reports), truth)
    np.testing.assert_array_equal(oracle._counts_by_listing(seed, y), truth)
    histogram = oracle._histogram(seed, y)
    assert histogram.sum() == seed.size
    np.testing.assert_array_equal(oracle._counts_from_histogram(histogram), truth)


def test_large_domains_keep_a_histogram_that_streams_and_merges() -> None:
    oracle = OLH(k=1 << 16, epsilon=4.0)
    assert (oracle.g, oracle.digits, oracle.keeps_histogram) == (53, 3, True)
    assert oracle._statistics_size() == 2 * 53**3
    rng = simulation_generator(3)
    data = rng.zipf(1.5, size=30_000) % oracle.k
    first, second = oracle.aggregator(), oracle.aggregator()
    batches = [oracle.randomize(part, rng=rng) for part in np.array_split(data, 3)]
    first.update(batches[0]).update(batches[1])
    second.update(batches[2])
    merged = first.merge(second).estimate()
    seed = np.concatenate([b.arrays["seed"] for b in batches])
    y = np.concatenate([b.arrays["y"] for b in batches])
    direct = (oracle._counts_by_listing(seed, y) / data.size - oracle.q_star) / (
        oracle.p_star - oracle.q_star
    )
    np.testing.assert_allclose(merged, direct, rtol=0, atol=1e-9)


def test_the_estimate_is_unbiased_with_the_closed_form_variance() -> None:
    # 400 repetitions at k = 200 (domain-averaged): the mean over 80 000 estimates has
    # a standard error of sqrt(variance/80 000); 5 of them bound a two-sided false
    # failure probability of 5.7e-7. The domain-averaged variance of 400 repetitions
    # of 200 coordinates (weakly dependent) is within 10 % of the closed form with
    # false-failure probability below 1e-6 (chi-square with >= 40 000 degrees of freedom).
    oracle = OLH(k=200, epsilon=2.0)
    rng = simulation_generator(21)
    data = np.arange(2_000) % 200
    truth = np.bincount(data, minlength=200) / data.size
    estimates = np.stack([oracle.estimate(oracle.randomize(data, rng=rng)) for _ in range(400)])
    variance = oracle.variance(data.size, truth)
    assert abs((estimates - truth).mean()) < 5 * math.sqrt(np.mean(variance) / estimates.size)
    ratio = estimates.var(axis=0, ddof=1).mean() / np.mean(variance)
    assert 0.9 < ratio < 1.1


@pytest.mark.parametrize(
    ("k", "epsilon", "g"),
    [
        (2, 2.0, None),
        (5, 0.5, None),
        (8, 2.0, 7),
        (10, 1.0, 7),
        (7, 3.0, None),
        (5, 1.0, 13),
        (10, 1.0, 3),
        (12, 1.0, 5),
        (26, 1.0, 5),
    ],
)
def test_reconstruction_success_is_exact(k: int, epsilon: float, g: int | None) -> None:
    oracle = OLH(k=k, epsilon=epsilon, g=g)
    channel, support = oracle.channel(), supports(oracle)
    size = support.sum(axis=0)
    guess = np.where(size > 0, support / np.maximum(size, 1), 1 / k)  # [v, column]
    per_value = (channel * guess).sum(axis=1)
    assert oracle.reconstruction_success() == pytest.approx(per_value.mean(), rel=1e-12)
    prior = simulation_generator(k).dirichlet(np.ones(k))
    assert oracle.reconstruction_success(prior) == pytest.approx(prior @ per_value, rel=1e-12)
    hashed = all_hashes(oracle)
    empty = sum(oracle.g - np.unique(row).size for row in hashed) / oracle.functions
    assert oracle.expected_empty_buckets() == pytest.approx(empty, rel=1e-12, abs=1e-15)


def test_reconstruction_success_matches_a_simulated_attack() -> None:
    # 40 000 attacks; 5 standard errors: two-sided false failure 5.7e-7.
    oracle = OLH(k=200, epsilon=2.0)
    rng = simulation_generator(8)
    data = rng.integers(0, 200, size=40_000)
    reports = oracle.randomize(data, rng=rng)
    hashed = oracle.hash_values(reports.arrays["seed"][:, None], np.arange(200)[None, :])
    support = hashed == reports.arrays["y"][:, None]
    size = support.sum(axis=1)
    hit = np.where(size > 0, support[np.arange(data.size), data] / np.maximum(size, 1), 1 / 200)
    expected = oracle.reconstruction_success()
    assert abs(hit.mean() - expected) < 5 * math.sqrt(expected / data.size)


def test_non_uniform_prior_needs_a_small_family() -> None:
    oracle = OLH(k=1 << 16, epsilon=1.0)
    prior = np.arange(1, oracle.k + 1) / np.arange(1, oracle.k + 1).sum()
    with pytest.raises(ParameterError, match="prior=None"):
        oracle.reconstruction_success(prior)
    with pytest.raises(DataError, match="sum to 1"):
        oracle.reconstruction_success(np.full(oracle.k, 1.0))
    assert check_prior(np.full(4, 0.25), 4) is None


def test_parameters() -> None:
    assert BLH(k=100, epsilon=1.0).g == 2
    assert OLH(k=100, epsilon=1.0).g == 3  # e + 1 = 3.7: 3 has a lower variance than 5
    assert OLH(k=100, epsilon=3.0).g == 23  # e^3 + 1 = 21.1: 23 beats 19
    assert OLH(k=5, epsilon=3.0).g == 5  # capped at 5: the hash is already injective
    assert OLH(k=100, epsilon=1.0, g=11).g == 11
    for k, epsilon in itertools.product((10, 1000, 1 << 16), (0.5, 1.0, 2.0, 4.0, 6.0)):
        chosen = optimal_prime_range(k, epsilon)
        assert is_prime(chosen)
        assert chosen <= next_prime(k)
    oracle = OLH(k=100, epsilon=2.0)
    rebuilt = OLH(k=100, epsilon=2.0, **oracle.public_params())
    assert rebuilt.fingerprint() == oracle.fingerprint()
    assert "hash=linear" in oracle.fingerprint()
    assert BLH(k=100, epsilon=2.0).public_params() == {}
    for bad in (0, 1, 2**40, 2.5, True, "4"):
        with pytest.raises(ParameterError, match=r"g \(the hash range\)"):
            OLH(k=100, epsilon=1.0, g=bad)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match=r"must be prime.* 7 and 11"):
        OLH(k=100, epsilon=1.0, g=9)
    with pytest.raises(TypeError):
        BLH(k=100, epsilon=1.0, g=3)  # type: ignore[call-arg]


def test_bits_and_wire_format() -> None:
    oracle = OLH(k=1024, epsilon=1.0)
    assert (oracle.g, oracle.digits) == (3, 7)  # 3^7 = 2187 >= 1024
    assert oracle.bits_per_report() == math.ceil(math.log2(2187)) + 2
    reports = oracle.randomize(np.arange(800) % 1024, rng=simulation_generator(0))
    data = oracle.encode(reports)
    payload = len(data) - len(oracle.fingerprint()) - 14
    assert payload == (800 * 12 + 7) // 8 + (800 * 2 + 7) // 8
    back = oracle.decode(data)
    np.testing.assert_array_equal(oracle.support_counts(back), oracle.support_counts(reports))


def test_forged_reports_are_refused() -> None:
    oracle = BLH(k=10, epsilon=1.0)
    good = oracle.randomize([1, 2, 3], rng=simulation_generator(0))
    forged = dict(good.arrays, y=np.array([0, 2, 1]))
    with pytest.raises(DataError, match="must lie in"):
        oracle.estimate(type(good)(good.protocol, good.fingerprint, forged))
    forged = dict(good.arrays, seed=np.array([0, 16, 1]))
    with pytest.raises(DataError, match="must lie in"):
        oracle.estimate(type(good)(good.protocol, good.fingerprint, forged))
