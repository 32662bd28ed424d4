"""Every registered pure LDP frequency oracle against its closed forms.

Statistical tests use fixed seeds; each states its false-failure probability, which
is what the test would fail with if the code were exactly right.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import privaudit.mechanisms.ldp  # noqa: F401  (registers the protocols)
from privaudit import randomness, simulation_generator
from privaudit.errors import DataError, ParameterError
from privaudit.guarantees import Notion
from privaudit.mechanisms.ldp import FrequencyOracle, project_to_simplex
from privaudit.mechanisms.ldp._engine import frequency_oracle_names
from privaudit.registry import mechanisms

PURE = frequency_oracle_names()
TIGHT = {
    "grr",
    "sue",
    "oue",
    "ss",
    "blh",
    "olh",
    "hr",
    "pgr",
}  # the worst-case likelihood ratio equals e^ε exactly


def make(name: str, k: int, epsilon: float) -> FrequencyOracle:
    oracle: FrequencyOracle = mechanisms.get(name)(k=k, epsilon=epsilon)
    return oracle


def test_every_protocol_is_covered_by_this_suite() -> None:
    # PURE is read when this module is imported: a protocol registered later (by a
    # module the package does not import) would escape these tests.
    assert frequency_oracle_names() == PURE
    assert {"grr", "sue", "oue", "ss", "blh", "olh", "hr", "pgr", "mss"} <= set(PURE)


@pytest.mark.parametrize("name", PURE)
@pytest.mark.parametrize("k", [2, 3, 5, 8])
@pytest.mark.parametrize("epsilon", [0.5, 2.0])
def test_exact_channel_is_epsilon_ldp(name: str, k: int, epsilon: float) -> None:
    oracle = make(name, k, epsilon)
    channel = oracle.channel()  # type: ignore[attr-defined]
    assert channel.shape[0] == k
    np.testing.assert_allclose(channel.sum(axis=1), 1.0, atol=1e-12)
    assert (channel >= 0).all()
    # Max over outputs and pairs of inputs of P(y|v)/P(y|v'), outputs some input can produce.
    possible = channel.max(axis=0) > 0
    ratios = channel[:, None, possible] / np.maximum(channel[None, :, possible], 1e-300)
    worst = float(ratios.max())
    assert worst <= math.exp(epsilon) * (1 + 1e-12)
    if name in TIGHT:
        assert worst == pytest.approx(math.exp(epsilon), rel=1e-12)


@pytest.mark.parametrize("name", PURE)
def test_estimates_are_unbiased_with_the_closed_form_variance(name: str) -> None:
    k, epsilon, n, repetitions = 16, 1.5, 2_000, 200
    rng = simulation_generator(20261122)
    data = np.minimum(rng.geometric(0.25, size=n) - 1, k - 1)  # skewed, fixed dataset
    truth = np.bincount(data, minlength=k) / n
    oracle = make(name, k, epsilon)
    estimates = np.array(
        [oracle.estimate(oracle.randomize(data, rng=rng)) for _ in range(repetitions)]
    )
    predicted = np.asarray(oracle.variance(n, truth))
    # Unbiased: each coordinate's mean is within 5 standard errors of the truth
    # (two-sided 5.7e-7 per coordinate; < 1e-5 for the 16 together).
    z = (estimates.mean(axis=0) - truth) / np.sqrt(predicted / repetitions)
    assert np.abs(z).max() < 5, z
    # Variance: the domain-averaged empirical MSE is a mean of 16 x 200 squared errors;
    # its relative standard deviation is about sqrt(2/3200) = 2.5%, so a ±15% band is
    # six of them (false failure < 1e-8 under the normal approximation).
    empirical = float(np.mean((estimates - truth) ** 2))
    assert empirical == pytest.approx(float(np.mean(predicted)), rel=0.15)


@pytest.mark.parametrize("name", PURE)
def test_streaming_and_merged_aggregation_equal_one_shot(name: str) -> None:
    rng = simulation_generator(3)
    oracle = make(name, 10, 1.0)
    data = rng.integers(0, 10, size=3_000)
    first, second = oracle.randomize(data[:1_000], rng=rng), oracle.randomize(data[1_000:], rng=rng)
    shard_a = oracle.aggregator().update(first)
    shard_b = oracle.aggregator().update(second)
    merged = shard_a.merge(shard_b).estimate()
    stream = oracle.aggregator().update(first).update(second)
    assert stream.n == 3_000
    np.testing.assert_allclose(merged, stream.estimate())
    whole = (oracle.support_counts(first) + oracle.support_counts(second)) / 3_000
    np.testing.assert_allclose(
        merged, (whole - oracle.q_star) / (oracle.p_star - oracle.q_star), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("name", PURE)
def test_release_randomness_is_secure_by_default(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[np.random.Generator] = []
    original = randomness.secure_generator

    def counting() -> np.random.Generator:
        made.append(original())
        return made[-1]

    monkeypatch.setattr(randomness, "secure_generator", counting)
    make(name, 6, 1.0).randomize([0, 1, 2])
    assert len(made) == 1
    assert randomness.is_secure(made[0])
    make(name, 6, 1.0).randomize([0, 1, 2], rng=simulation_generator(1))
    assert len(made) == 1  # a caller-supplied generator is used as given


@pytest.mark.parametrize("name", PURE)
def test_guarantee_and_bits(name: str) -> None:
    oracle = make(name, 32, 1.0)
    assert oracle.guarantee.notion is Notion.PURE
    assert oracle.guarantee.epsilon == 1.0
    assert 1 <= oracle.bits_per_report() <= 64
    assert 0 < oracle.reconstruction_success() <= 1


@pytest.mark.parametrize("name", PURE)
@pytest.mark.parametrize("k", [32, 1024])
def test_wire_bits_per_report_is_what_encode_spends(name: str, k: int) -> None:
    # The engine's figure from the report schema against the bytes encode() writes:
    # n reports take n × wire bits, plus the header and under a byte of padding per
    # field; and a report never takes fewer wire bits than it carries.
    oracle = make(name, k, 1.0)
    n = 1_000
    payload = len(oracle.encode(oracle.randomize(np.arange(n) % k, rng=simulation_generator(2))))
    body_bits = 8 * (payload - 14 - len(oracle.fingerprint().encode()))
    wire = oracle.wire_bits_per_report()
    assert n * wire <= body_bits < n * wire + 8 * len(oracle.report_schema())
    assert oracle.bits_per_report() <= wire


@pytest.mark.parametrize("name", PURE)
@pytest.mark.parametrize("values", [[-1], [6], [0.5], [[0, 1]], ["a"]])
def test_bad_values_are_refused(name: str, values: object) -> None:
    with pytest.raises(DataError):
        make(name, 6, 1.0).randomize(values, rng=simulation_generator(0))


@pytest.mark.parametrize("name", PURE)
@pytest.mark.parametrize(
    ("k", "epsilon"), [(1, 1.0), (6, 0.0), (6, -1.0), (6, float("inf")), (6, True)]
)
def test_bad_parameters_are_refused(name: str, k: object, epsilon: object) -> None:
    with pytest.raises(ParameterError):
        mechanisms.get(name)(k=k, epsilon=epsilon)


def test_reports_of_another_protocol_are_refused() -> None:
    grr, other = make("grr", 6, 1.0), make("grr", 6, 2.0)
    reports = other.randomize([1, 2], rng=simulation_generator(0))
    with pytest.raises(DataError, match="made by"):
        grr.estimate(reports)


def test_postprocessing_lands_on_the_simplex() -> None:
    raw = np.array([0.5, -0.2, 0.4, 0.3])
    for projected in (
        project_to_simplex(raw),
        make("grr", 4, 1.0)._estimate_from_statistics(np.array([10, 0, 5, 5]), 20, "clip"),
    ):
        assert projected.min() >= 0
        assert projected.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(project_to_simplex([0.2, 0.3, 0.5]), [0.2, 0.3, 0.5])
