"""Multidimensional protocols: SPL, SMP and RS+FD (GRR, UE-z, UE-r).

Privacy is checked on exact channels enumerated for small domains (inputs are whole
tuples: any two tuples of one user are neighbours); statistics against the closed forms
with fixed seeds. Each statistical test states its false-failure probability.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest

import privaudit.mechanisms.ldp._multidim
from privaudit import randomness, simulation_generator
from privaudit.errors import DataError, ParameterError
from privaudit.mechanisms.ldp import FrequencyOracle
from privaudit.mechanisms.ldp._multidim import (
    RSFD,
    SMP,
    SPL,
    MultidimensionalProtocol,
    mean_inverse_binomial,
)
from privaudit.registry import mechanisms

VARIANTS = ["grr", "ue-z", "ue-r"]


def worst_ratio(channel: np.ndarray, inputs: list[tuple[int, ...]], differing: int | None) -> float:
    """Max of P(y|x)/P(y|x') over outputs and tuple pairs (that differ in exactly
    ``differing`` attributes, or in any number if ``None``)."""
    worst = 0.0
    for a, b in itertools.permutations(range(len(inputs)), 2):
        distance = sum(u != v for u, v in zip(inputs[a], inputs[b], strict=True))
        if differing is not None and distance != differing:
            continue
        worst = max(worst, float((channel[a] / channel[b]).max()))
    return worst


def tuples(domains: tuple[int, ...]) -> list[tuple[int, ...]]:
    return list(itertools.product(*(range(k) for k in domains)))


def test_registered_by_name_and_not_frequency_oracles() -> None:
    assert privaudit.mechanisms.ldp._multidim.RSFD is mechanisms.get("rsfd")
    for name in ("spl", "smp", "rsfd"):
        assert not issubclass(mechanisms.get(name), FrequencyOracle)


# --- privacy on exact channels ---------------------------------------------------------------


@pytest.mark.parametrize("cls", [SPL, SMP])
@pytest.mark.parametrize("protocol", ["grr", "oue", "adp"])
@pytest.mark.parametrize("domains", [(2, 3), (2, 2, 3)])
def test_spl_and_smp_are_epsilon_ldp_for_any_two_tuples(
    cls: type[SPL] | type[SMP], protocol: str, domains: tuple[int, ...]
) -> None:
    mechanism = cls(domains=domains, epsilon=1.5, protocol=protocol)
    channel = mechanism.channel()
    np.testing.assert_allclose(channel.sum(axis=1), 1.0, atol=1e-12)
    # Tight: tuples that differ everywhere (SPL) or in the sampled attribute (SMP).
    assert worst_ratio(channel, tuples(domains), None) == pytest.approx(math.exp(1.5), rel=1e-10)
    assert mechanism.guarantee.epsilon == 1.5


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("domains", [(2, 3), (3, 3), (2, 2, 3)])
def test_rsfd_guarantees_on_the_exact_channel(variant: str, domains: tuple[int, ...]) -> None:
    epsilon = 1.0
    rsfd = RSFD(domains=domains, epsilon=epsilon, variant=variant)  # type: ignore[arg-type]
    channel, inputs = rsfd.channel(), tuples(domains)
    np.testing.assert_allclose(channel.sum(axis=1), 1.0, atol=1e-12)
    amplified = math.log(len(domains) * (math.exp(epsilon) - 1) + 1)
    # Any two tuples: exactly the amplified ε′ (tuples that differ in every attribute).
    assert rsfd.guarantee.epsilon == pytest.approx(amplified, rel=1e-12)
    assert worst_ratio(channel, inputs, None) == pytest.approx(math.exp(amplified), rel=1e-10)
    # One differing attribute: the closed form, which is the paper's ε for UE-z and for
    # GRR over equal domains, and larger otherwise.
    one = worst_ratio(channel, inputs, 1)
    assert one == pytest.approx(math.exp(rsfd.epsilon_one_attribute()), rel=1e-10)
    assert rsfd.guarantee_one_attribute.epsilon == rsfd.epsilon_one_attribute()
    if variant == "ue-z" or (variant == "grr" and len(set(domains)) == 1):
        assert rsfd.epsilon_one_attribute() == pytest.approx(epsilon, rel=1e-10)
    else:
        assert rsfd.epsilon_one_attribute() > epsilon


@pytest.mark.parametrize("variant", VARIANTS)
def test_rsfd_without_amplification_is_epsilon_ldp_for_any_two_tuples(variant: str) -> None:
    rsfd = RSFD(domains=(2, 3), epsilon=1.0, variant=variant, amplify=False)  # type: ignore[arg-type]
    assert rsfd.guarantee.epsilon == 1.0
    assert worst_ratio(rsfd.channel(), tuples((2, 3)), None) == pytest.approx(math.e, rel=1e-10)


@pytest.mark.parametrize("variant", VARIANTS)
def test_rsfd_reports_follow_the_channel(variant: str) -> None:
    domains, x, users = (2, 3), (1, 2), 200_000
    rsfd = RSFD(domains=domains, epsilon=1.0, variant=variant)  # type: ignore[arg-type]
    reports = rsfd.randomize(np.tile(x, (users, 1)), rng=simulation_generator(21))
    assert reports.attribute is None  # the sampled attribute stays hidden
    assert all(part.n == users for part in reports.parts)
    if variant == "grr":
        first, second = reports.parts[0].arrays["values"], reports.parts[1].arrays["values"]
        index = first * 3 + second
    else:  # unary: the top k bits of the first byte, most significant first
        first = reports.parts[0].arrays["bits"][:, 0] >> 6
        second = reports.parts[1].arrays["bits"][:, 0] >> 5
        index = first * 8 + second
    row = tuples(domains).index(x)
    expected = rsfd.channel()[row]
    observed = np.bincount(index, minlength=expected.size) / users
    # Per cell |z| < 5.5 (two-sided 3.8e-8); at most 32 cells: < 1.3e-6 together.
    z = (observed - expected) / np.sqrt(expected * (1 - expected) / users)
    assert np.abs(z).max() < 5.5, z


# --- statistics ----------------------------------------------------------------------------------

CONFIGS = [
    (SPL, {"protocol": "grr"}),
    (SPL, {"protocol": "oue"}),
    (SMP, {"protocol": "grr"}),
    (SMP, {"protocol": "adp"}),
    (RSFD, {"variant": "grr"}),
    (RSFD, {"variant": "ue-z"}),
    (RSFD, {"variant": "ue-r"}),
    (RSFD, {"variant": "ue-r", "unary": "sue"}),
]


def make(
    cls: type, options: dict[str, object], domains: tuple[int, ...], epsilon: float
) -> MultidimensionalProtocol:
    mechanism: MultidimensionalProtocol = cls(domains=domains, epsilon=epsilon, **options)
    return mechanism


@pytest.mark.parametrize(("cls", "options"), CONFIGS)
def test_estimates_are_unbiased_with_the_closed_form_variance(
    cls: type, options: dict[str, object]
) -> None:
    domains, n, repetitions = (4, 8, 4), 2_000, 200
    rng = simulation_generator(20261124)
    data = np.column_stack(
        [np.minimum(rng.geometric(0.4, size=n) - 1, k - 1) for k in domains]
    )  # skewed (f up to 0.4), fixed dataset
    truths = [np.bincount(data[:, j], minlength=k) / n for j, k in enumerate(domains)]
    mechanism = make(cls, options, domains, 2.0)
    runs = [mechanism.estimate(mechanism.randomize(data, rng=rng)) for _ in range(repetitions)]
    estimates = np.array([np.concatenate(run) for run in runs])
    truth = np.concatenate(truths)
    predicted = np.concatenate(mechanism.variance(n, truths))
    # Unbiased: |z| < 5 per coordinate (two-sided 5.7e-7; < 1e-5 for the 16 together).
    z = (estimates.mean(axis=0) - truth) / np.sqrt(predicted / repetitions)
    assert np.abs(z).max() < 5, z
    # Variance (for SMP including the sampling of attributes): 16 x 200 = 3200 squared
    # errors, relative standard deviation about 2.5%; ±15% fails with < 1e-8.
    empirical = float(np.mean((estimates - truth) ** 2))
    assert empirical == pytest.approx(float(np.mean(predicted)), rel=0.15)
    per_attribute = [float(np.mean(v)) for v in mechanism.variance(n, truths)]
    np.testing.assert_allclose(mechanism.mse(n, truths), per_attribute, rtol=1e-12)


def test_rsfd_estimators_are_the_published_ones() -> None:
    domains, d, n = (5, 7), 2, 3_000
    rng = simulation_generator(6)
    data = np.column_stack([rng.integers(0, k, size=n) for k in domains])
    for variant in VARIANTS:
        rsfd = RSFD(domains=domains, epsilon=1.0, variant=variant)  # type: ignore[arg-type]
        reports = rsfd.randomize(data, rng=rng)
        for j, (k, estimate) in enumerate(zip(domains, rsfd.estimate(reports), strict=True)):
            base = rsfd._bases[j]
            p, q = base.p_star, base.q_star
            part = reports.parts[j]
            if variant == "grr":
                counts = np.bincount(part.arrays["values"], minlength=k)
                published = (counts * d * k - n * (d - 1 + q * k)) / (n * k * (p - q))
            else:
                counts = np.unpackbits(part.arrays["bits"], axis=1, count=k).sum(axis=0)
                if variant == "ue-z":
                    published = d * (counts - n * q) / (n * (p - q))
                else:
                    published = (
                        counts * d * k - n * (q * k + (p - q) * (d - 1) + q * k * (d - 1))
                    ) / (n * k * (p - q))
            np.testing.assert_allclose(estimate, published, rtol=1e-10, atol=1e-12)


def test_rsfd_variance_is_the_fixed_data_form_of_the_published_one() -> None:
    domains, d, n, f = (6, 6), 2, 1_000, np.array([0.0, 0.2, 0.7])
    rsfd = RSFD(domains=domains, epsilon=1.0, variant="grr")
    p, q, k = rsfd._bases[0].p_star, rsfd._bases[0].q_star, 6
    sigma = (q + f * (p - q) + (d - 1) / k) / d
    published = d**2 * sigma * (1 - sigma) / (n * (p - q) ** 2)
    np.testing.assert_allclose(rsfd.variance(n, [f, f])[0], published - f * (1 - f) / n, rtol=1e-12)


def test_mean_inverse_binomial_matches_the_exact_sum() -> None:
    for n, probability in [(1, 0.5), (7, 1 / 3), (30, 0.25), (400, 0.1)]:
        pmf = [
            math.comb(n, m) * probability**m * (1 - probability) ** (n - m) for m in range(n + 1)
        ]
        exact = sum(pmf[m] / m for m in range(1, n + 1)) / (1 - pmf[0])
        assert mean_inverse_binomial(n, probability) == pytest.approx(exact, rel=1e-12)
    assert mean_inverse_binomial(10, 1.0) == 0.1
    assert mean_inverse_binomial(10**7, 0.5) == pytest.approx(2e-7, rel=1e-6)


@pytest.mark.parametrize(("cls", "options"), CONFIGS)
def test_streaming_and_merged_aggregation_equal_one_shot(
    cls: type, options: dict[str, object]
) -> None:
    rng = simulation_generator(3)
    domains = (3, 10)
    mechanism = make(cls, options, domains, 1.0)
    data = np.column_stack([rng.integers(0, k, size=3_000) for k in domains])
    first = mechanism.randomize(data[:1_000], rng=rng)
    second = mechanism.randomize(data[1_000:], rng=rng)
    merged = mechanism.aggregator().update(first).merge(mechanism.aggregator().update(second))
    stream = mechanism.aggregator().update(first).update(second)
    assert stream.n == merged.n == 3_000
    assert sum(stream.counts) == (3_000 if cls is SMP else 6_000)
    for a, b in zip(merged.estimate(), stream.estimate(), strict=True):
        np.testing.assert_allclose(a, b)
    for estimate in stream.estimate(postprocess="simplex"):
        assert estimate.min() >= 0 and estimate.sum() == pytest.approx(1.0)


def test_smp_estimates_from_the_users_who_sampled_each_attribute() -> None:
    rng = simulation_generator(12)
    smp = SMP(domains=(3, 3), epsilon=2.0)
    data = np.column_stack([np.zeros(900, dtype=int), np.full(900, 2)])
    reports = smp.randomize(data, rng=rng)
    assert reports.attribute is not None
    counts = np.bincount(reports.attribute, minlength=2)
    assert [part.n for part in reports.parts] == counts.tolist()
    grr = smp._parts[0]
    expected = (
        np.bincount(reports.parts[0].arrays["values"], minlength=3) / counts[0] - grr.q_star
    ) / (grr.p_star - grr.q_star)
    np.testing.assert_allclose(smp.estimate(reports)[0], expected)
    with pytest.raises(DataError, match="no user reported attribute"):
        SMP(domains=(3, 3, 3), epsilon=1.0).estimate(
            SMP(domains=(3, 3, 3), epsilon=1.0).randomize([[0, 1, 2]], rng=rng)
        )


def test_variance_accepts_one_frequency_or_one_per_attribute() -> None:
    spl = SPL(domains=(3, 5), epsilon=1.0)
    approximate = spl.variance(100)
    assert len(approximate) == 2 and all(isinstance(v, float) for v in approximate)
    assert spl.variance(100, 0.0) == approximate
    assert spl.variance(100, [0.0, 0.0]) == approximate
    shaped = spl.variance(100, [np.zeros(3), np.full(5, 0.2)])
    assert [np.shape(v) for v in shaped] == [(3,), (5,)]
    assert spl.mse(100) == approximate
    with pytest.raises(DataError):
        spl.variance(100, [0.1, 0.2, 0.3])
    with pytest.raises(DataError):
        spl.mse(100, [np.zeros(3), np.zeros(4)])
    with pytest.raises(ParameterError):
        spl.variance(0)


@pytest.mark.parametrize(("cls", "options"), CONFIGS)
def test_release_randomness_is_secure_by_default(
    cls: type, options: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[np.random.Generator] = []
    original = randomness.secure_generator

    def counting() -> np.random.Generator:
        made.append(original())
        return made[-1]

    monkeypatch.setattr(randomness, "secure_generator", counting)
    mechanism = make(cls, options, (3, 4), 1.0)
    mechanism.randomize([[0, 1], [2, 3]])
    assert len(made) == 1 and randomness.is_secure(made[0])
    mechanism.randomize([[0, 1], [2, 3]], rng=simulation_generator(1))
    assert len(made) == 1


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("cls", "options"), CONFIGS)
@pytest.mark.parametrize(
    "values", [[0, 1], [[0, 1, 2]], [[0, 4]], [[-1, 0]], [[0.5, 1]], [["a", "b"]], [[0, 1], [2]]]
)
def test_bad_values_are_refused(cls: type, options: dict[str, object], values: object) -> None:
    with pytest.raises(DataError):
        make(cls, options, (3, 4), 1.0).randomize(values, rng=simulation_generator(0))


def test_a_bad_value_names_its_attribute() -> None:
    with pytest.raises(DataError, match="attribute 1"):
        SPL(domains=(3, 4), epsilon=1.0).randomize([[0, 4]], rng=simulation_generator(0))


@pytest.mark.parametrize("cls", [SPL, SMP, RSFD])
@pytest.mark.parametrize(
    ("domains", "epsilon"),
    [
        ((), 1.0),
        ((1, 3), 1.0),
        ("ab", 1.0),
        (3, 1.0),
        ((3, 2.5), 1.0),
        ((3, 3), 0.0),
        ((3, 3), True),
    ],
)
def test_bad_parameters_are_refused(cls: type, domains: object, epsilon: object) -> None:
    with pytest.raises(ParameterError):
        cls(domains=domains, epsilon=epsilon)


def test_bad_options_are_refused() -> None:
    for protocol in ("nope", "lgrr", "rsfd", 3):
        with pytest.raises(ParameterError, match="registered frequency oracle"):
            SPL(domains=(3, 3), epsilon=1.0, protocol=protocol)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="variant"):
        RSFD(domains=(3, 3), epsilon=1.0, variant="ue")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="unary"):
        RSFD(domains=(3, 3), epsilon=1.0, variant="ue-z", unary="the")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="epsilon"):
        RSFD(domains=(3,) * 20, epsilon=49.0)  # the sampled attribute's ε′ passes 50
    with pytest.raises(TypeError):
        SPL((3, 3), 1.0)  # type: ignore[misc]


def test_reports_of_another_protocol_are_refused() -> None:
    rng = simulation_generator(0)
    spl, other = SPL(domains=(3, 3), epsilon=1.0), SPL(domains=(3, 3), epsilon=2.0)
    reports = other.randomize([[0, 1]], rng=rng)
    with pytest.raises(DataError, match="made by"):
        spl.estimate(reports)
    with pytest.raises(DataError, match="made by"):
        spl.aggregator().update(reports)
    with pytest.raises(DataError, match="cannot merge"):
        spl.aggregator().merge(other.aggregator())
    with pytest.raises(DataError, match="MultiReports"):
        spl.estimate(reports.parts[0])  # type: ignore[arg-type]
    smp = SMP(domains=(3, 3), epsilon=1.0)
    sampled = smp.randomize([[0, 1], [1, 2], [2, 0], [1, 1]], rng=rng)
    for attribute in (None, np.array([0, 1, 5, 0]), np.array([0, -1, 1, 0]), np.ones(4)):
        with pytest.raises(DataError, match="sampled attribute"):
            smp.estimate(dataclasses.replace(sampled, attribute=attribute))
    assert sampled.attribute is not None
    moved = (sampled.attribute + 1) % 2  # every user's report filed under the other attribute
    with pytest.raises(DataError, match="do not match"):
        smp.estimate(dataclasses.replace(sampled, attribute=moved))
