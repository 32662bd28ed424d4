"""Local hashing (BLH, OLH): the hash family, the exact channel, the two server paths.

Statistical tests use fixed seeds and state their false-failure probability.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

import privaudit.mechanisms.ldp._hashing as hashing
from privaudit import simulation_generator
from privaudit.errors import DataError, ParameterError
from privaudit.mechanisms.ldp._hashing import BLH, OLH, check_prior, is_prime, next_prime
from privaudit.registry import mechanisms


def supports(oracle: OLH) -> np.ndarray:
    """``[v, column]``: does the report of that channel column support ``v``?"""
    functions = oracle.prime * (oracle.prime - 1)
    a, b = oracle.seed_parts(np.arange(functions))
    hashed = oracle.hash_values(a[None, :], b[None, :], np.arange(oracle.k)[:, None])
    return (hashed[:, :, None] == np.arange(oracle.g)[None, None, :]).reshape(oracle.k, -1)


def brute_counts(oracle: OLH, seed: np.ndarray, y: np.ndarray) -> np.ndarray:
    a, b = oracle.seed_parts(seed)
    hashed = oracle.hash_values(a[:, None], b[:, None], np.arange(oracle.k)[None, :])
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


@pytest.mark.parametrize(("k", "g"), [(5, 2), (7, 3), (11, 4), (13, 13), (5, 8), (16, 5)])
def test_collision_probability_is_exact_for_every_pair(k: int, g: int) -> None:
    oracle = OLH(k=k, epsilon=1.0, g=g)
    functions = oracle.prime * (oracle.prime - 1)
    a, b = oracle.seed_parts(np.arange(functions))
    hashed = oracle.hash_values(a[:, None], b[:, None], np.arange(k)[None, :])
    for x, other in itertools.combinations(range(k), 2):
        collisions = int((hashed[:, x] == hashed[:, other]).sum())
        assert collisions / functions == pytest.approx(oracle.collision, rel=1e-12, abs=1e-15)
    assert oracle.collision < 1 / g if g <= oracle.prime else oracle.collision == 0


@pytest.mark.parametrize("protocol", ["blh", "olh"])
@pytest.mark.parametrize(("k", "epsilon"), [(2, 2.0), (5, 0.5), (8, 2.0), (11, 1.0), (7, 3.0)])
def test_support_probabilities_are_those_of_the_channel(
    protocol: str, k: int, epsilon: float
) -> None:
    oracle = mechanisms.get(protocol)(k=k, epsilon=epsilon)
    channel = oracle.channel()
    inside = channel @ supports(oracle).T.astype(float)  # [v', v] = P[v ∈ S(Y) | v']
    np.testing.assert_allclose(np.diag(inside), oracle.p_star, rtol=1e-12)
    np.testing.assert_allclose(inside[~np.eye(k, dtype=bool)], oracle.q_star, rtol=1e-12)
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
    ("k", "epsilon", "g"), [(30, 1.0, 3), (16, 1.5, None), (8, 2.0, 8), (5, 1.0, 13), (13, 4.0, 13)]
)
@pytest.mark.parametrize("fold", [True, False])
def test_server_paths_equal_a_direct_count(
    k: int, epsilon: float, g: int | None, fold: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not fold:
        monkeypatch.setattr(hashing, "_FOLD_BINS", 0)
    oracle = OLH(k=k, epsilon=epsilon, g=g)
    rng = simulation_generator(k)
    reports = oracle.randomize(rng.integers(0, k, size=4_000), rng=rng)
    seed, y = reports.arrays["seed"], reports.arrays["y"]
    truth = brute_counts(oracle, seed, y)
    np.testing.assert_array_equal(oracle.support_counts(reports), truth)
    a, b = oracle.seed_parts(seed)
    np.testing.assert_array_equal(oracle._counts_by_enumeration(a, b, y), truth)
    if oracle.g < oracle.prime:
        np.testing.assert_array_equal(oracle._counts_by_fft(a, b, y), truth)


def test_large_batches_take_the_fft_path_and_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    oracle = BLH(k=40, epsilon=1.0)  # 8 000 reports × 21 listed values > 6·3·41² cells
    rng = simulation_generator(5)
    reports = oracle.randomize(rng.integers(0, 40, size=8_000), rng=rng)
    used: list[str] = []
    original = BLH._counts_by_fft

    def spy(self: BLH, *args: np.ndarray) -> np.ndarray:
        used.append("fft")
        return original(self, *args)

    monkeypatch.setattr(BLH, "_counts_by_fft", spy)
    counts = oracle.support_counts(reports)
    assert used == ["fft"]
    np.testing.assert_array_equal(counts, brute_counts(oracle, *reports.arrays.values()))


@pytest.mark.parametrize(
    ("k", "epsilon", "g"),
    [(2, 2.0, None), (5, 0.5, None), (8, 2.0, 8), (10, 1.0, 7), (7, 3.0, None), (5, 1.0, 13)],
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


def test_reconstruction_success_matches_a_simulated_attack() -> None:
    # 40 000 attacks; 5 standard errors: two-sided false failure 5.7e-7.
    oracle = OLH(k=200, epsilon=2.0)
    rng = simulation_generator(8)
    data = rng.integers(0, 200, size=40_000)
    reports = oracle.randomize(data, rng=rng)
    a, b = oracle.seed_parts(reports.arrays["seed"])
    hashed = oracle.hash_values(a[:, None], b[:, None], np.arange(200)[None, :])
    support = hashed == reports.arrays["y"][:, None]
    size = support.sum(axis=1)
    hit = np.where(size > 0, support[np.arange(data.size), data] / np.maximum(size, 1), 1 / 200)
    expected = oracle.reconstruction_success()
    assert oracle.prime - oracle.k < oracle.prime // oracle.g  # no bucket is ever empty
    assert expected == pytest.approx(oracle.g * oracle.p_star / oracle.k, rel=1e-12)
    assert abs(hit.mean() - expected) < 5 * math.sqrt(expected / data.size)


def test_non_uniform_prior_needs_a_small_family() -> None:
    oracle = OLH(k=1024, epsilon=1.0)
    prior = np.arange(1, 1025) / np.arange(1, 1025).sum()
    with pytest.raises(ParameterError, match="prior=None"):
        oracle.reconstruction_success(prior)
    with pytest.raises(DataError, match="sum to 1"):
        oracle.reconstruction_success(np.full(1024, 1.0))
    assert check_prior(np.full(4, 0.25), 4) is None


def test_parameters() -> None:
    assert BLH(k=100, epsilon=1.0).g == 2
    assert OLH(k=100, epsilon=1.0).g == 4  # round(e) + 1
    assert OLH(k=100, epsilon=3.0).g == 21
    assert OLH(k=5, epsilon=3.0).g == 5  # capped at P = 5: the hash is already injective
    assert OLH(k=100, epsilon=1.0, g=9).g == 9
    oracle = OLH(k=100, epsilon=2.0)
    rebuilt = OLH(k=100, epsilon=2.0, **oracle.public_params())
    assert rebuilt.fingerprint() == oracle.fingerprint()
    assert BLH(k=100, epsilon=2.0).public_params() == {}
    for bad in (0, 1, 2**40, 2.5, True, "4"):
        with pytest.raises(ParameterError, match=r"g \(the hash range\)"):
            OLH(k=100, epsilon=1.0, g=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        BLH(k=100, epsilon=1.0, g=3)  # type: ignore[call-arg]


def test_bits_and_wire_format() -> None:
    oracle = OLH(k=1024, epsilon=1.0)
    assert oracle.prime == 1031
    assert oracle.bits_per_report() == math.ceil(math.log2(1031 * 1030)) + 2
    reports = oracle.randomize(np.arange(800) % 1024, rng=simulation_generator(0))
    data = oracle.encode(reports)
    payload = len(data) - len(oracle.fingerprint()) - 14
    assert payload == (800 * 21 + 7) // 8 + (800 * 2 + 7) // 8
    back = oracle.decode(data)
    np.testing.assert_array_equal(oracle.support_counts(back), oracle.support_counts(reports))


def test_forged_reports_are_refused() -> None:
    oracle = BLH(k=10, epsilon=1.0)
    good = oracle.randomize([1, 2, 3], rng=simulation_generator(0))
    forged = dict(good.arrays, y=np.array([0, 2, 1]))
    with pytest.raises(DataError, match="must lie in"):
        oracle.estimate(type(good)(good.protocol, good.fingerprint, forged))
