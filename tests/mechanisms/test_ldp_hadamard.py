"""Hadamard Response: the transform, the exact channel, the FWHT decoder, the attack.

Statistical tests use fixed seeds and state their false-failure probability.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import linalg, stats

import privaudit.mechanisms.ldp._hadamard  # noqa: F401  (registers "hr")
from privaudit import simulation_generator
from privaudit.errors import ParameterError
from privaudit.mechanisms.ldp._hadamard import HadamardResponse, fwht, parity
from privaudit.registry import mechanisms


def supports(oracle: HadamardResponse) -> np.ndarray:
    """``[x, j]``: is output ``j`` in ``C_x``?"""
    return linalg.hadamard(oracle.outputs)[1 : oracle.k + 1] == 1


def test_registered() -> None:
    assert mechanisms.get("hr") is HadamardResponse


@pytest.mark.parametrize("size", [1, 2, 4, 8, 64])
def test_fwht_is_the_sylvester_matrix_product(size: int) -> None:
    vector = simulation_generator(size).integers(-50, 50, size=size)
    transformed = fwht(vector)
    assert transformed.dtype == vector.dtype
    np.testing.assert_array_equal(transformed, linalg.hadamard(size) @ vector)
    with pytest.raises(ParameterError, match="power-of-2"):
        fwht(np.ones(6))


def test_parity() -> None:
    values = np.array([0, 1, 2, 3, 7, 2**31, 2**32 - 1, 0b1011_0110_0001])
    assert parity(values).tolist() == [bin(int(v)).count("1") % 2 for v in values]


@pytest.mark.parametrize(("k", "size"), [(2, 4), (3, 4), (4, 8), (7, 8), (8, 16), (1024, 2048)])
def test_output_sets(k: int, size: int) -> None:
    oracle = HadamardResponse(k=k, epsilon=1.0)
    assert oracle.outputs == size
    assert oracle.bits_per_report() == math.log2(size)
    if k <= 8:
        inside = supports(oracle).astype(int)
        assert (inside.sum(axis=1) == size // 2).all()
        overlap = inside @ inside.T
        assert (overlap[~np.eye(k, dtype=bool)] == size // 4).all()


@pytest.mark.parametrize(("k", "epsilon"), [(2, 0.5), (3, 2.0), (8, 1.0), (13, 4.0)])
def test_support_probabilities_are_those_of_the_channel(k: int, epsilon: float) -> None:
    oracle = HadamardResponse(k=k, epsilon=epsilon)
    channel = oracle.channel()
    inside = channel @ supports(oracle).T.astype(float)
    np.testing.assert_allclose(np.diag(inside), oracle.p_star, rtol=1e-12)
    np.testing.assert_allclose(inside[~np.eye(k, dtype=bool)], 0.5, rtol=1e-12)
    assert oracle.p_star == pytest.approx(math.exp(epsilon) / (math.exp(epsilon) + 1))


def test_reports_follow_the_channel() -> None:
    # G-test of 200 000 reports of a fixed dataset against the exact law (16 outputs,
    # expected counts >= 3 000): false failure probability 1e-6 (asymptotic chi-square).
    oracle = HadamardResponse(k=10, epsilon=1.5)
    data = np.arange(200_000) % 10
    reports = oracle.randomize(data, rng=simulation_generator(4))
    observed = np.bincount(reports.arrays["outputs"], minlength=oracle.outputs)
    expected = np.bincount(data, minlength=10) @ oracle.channel()
    result = stats.power_divergence(observed, expected, lambda_="log-likelihood")
    assert result.pvalue > 1e-6
    # Each user's own report: e^ε/(e^ε + 1) of them land in C_x.
    for value in (0, 9):
        inside = supports(oracle)[value, reports.arrays["outputs"][data == value]]
        p, count = oracle.p_star, inside.size
        assert abs(inside.mean() - p) < 5 * math.sqrt(p * (1 - p) / count)  # 5.7e-7


@pytest.mark.parametrize("k", [2, 5, 100, 1000])
def test_fwht_decoder_equals_a_direct_count(k: int) -> None:
    oracle = HadamardResponse(k=k, epsilon=1.0)
    rng = simulation_generator(k)
    reports = oracle.randomize(rng.integers(0, k, size=5_000), rng=rng)
    direct = supports(oracle)[:, reports.arrays["outputs"]].sum(axis=1)
    np.testing.assert_array_equal(oracle.support_counts(reports), direct)


@pytest.mark.parametrize(("k", "epsilon"), [(2, 1.0), (3, 0.5), (7, 2.0), (8, 5.0), (50, 1.0)])
def test_reconstruction_success_is_exact(k: int, epsilon: float) -> None:
    oracle = HadamardResponse(k=k, epsilon=epsilon)
    channel, support = oracle.channel(), supports(oracle)
    size = support.sum(axis=0)
    assert (size == 0).any() == (k == 2)  # only k = 2 has an output supporting nothing
    guess = np.where(size > 0, support / np.maximum(size, 1), 1 / k)
    per_value = (channel * guess).sum(axis=1)
    assert oracle.reconstruction_success() == pytest.approx(per_value.mean(), rel=1e-12)
    prior = simulation_generator(k).dirichlet(np.ones(k))
    assert oracle.reconstruction_success(prior) == pytest.approx(prior @ per_value, rel=1e-12)


def test_large_domains_are_fast_and_unbiased() -> None:
    oracle = HadamardResponse(k=20_000, epsilon=2.0)
    rng = simulation_generator(1)
    data = np.minimum(rng.geometric(0.1, size=100_000) - 1, 19_999)
    estimate = oracle.estimate(oracle.randomize(data, rng=rng))
    truth = np.bincount(data, minlength=20_000) / data.size
    error = (estimate - truth) / np.sqrt(oracle.variance(data.size, truth))
    assert np.abs(error).max() < 6  # 20 000 coordinates: false failure ~4e-5
