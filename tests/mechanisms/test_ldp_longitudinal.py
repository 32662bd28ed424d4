"""Longitudinal (memoization) protocols: L-GRR, L-SUE, L-OUE, L-OSUE and ALLOMFREE.

Privacy is checked on exact channels enumerated for small domains; statistics against
the closed forms with fixed seeds. Each statistical test states its false-failure
probability: how often it would fail if the code were exactly right.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import privaudit.mechanisms.ldp._longitudinal
from privaudit import randomness, simulation_generator
from privaudit.errors import DataError, ParameterError
from privaudit.guarantees import Notion
from privaudit.mechanisms.ldp import FrequencyOracle
from privaudit.mechanisms.ldp._longitudinal import (
    ALLOMFREE,
    LGRR,
    LOSUE,
    LOUE,
    LongitudinalProtocol,
)
from privaudit.registry import mechanisms

NAMES = ["lgrr", "lsue", "loue", "losue"]


def make(
    name: str, k: int, epsilon_perm: float = 2.0, epsilon_1: float = 1.0
) -> LongitudinalProtocol:
    protocol: LongitudinalProtocol = mechanisms.get(name)(
        k=k, epsilon_perm=epsilon_perm, epsilon_1=epsilon_1
    )
    return protocol


def worst_ratio(channel: np.ndarray) -> float:
    """Max over outputs and pairs of inputs of P(y|v)/P(y|v')."""
    possible = channel.max(axis=0) > 0
    ratios = channel[:, None, possible] / np.maximum(channel[None, :, possible], 1e-300)
    return float(ratios.max())


def test_registered_by_name_and_not_frequency_oracles() -> None:
    assert privaudit.mechanisms.ldp._longitudinal.LGRR is mechanisms.get("lgrr")
    for name in [*NAMES, "allomfree"]:
        cls = mechanisms.get(name)
        assert not issubclass(cls, FrequencyOracle)


# --- privacy on exact channels -----------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize(("epsilon_perm", "epsilon_1"), [(2.0, 1.0), (1.0, 0.3)])
def test_one_report_is_exactly_epsilon_1_ldp(
    name: str, k: int, epsilon_perm: float, epsilon_1: float
) -> None:
    protocol = make(name, k, epsilon_perm, epsilon_1)
    channel = protocol.channel(1)
    np.testing.assert_allclose(channel.sum(axis=1), 1.0, atol=1e-12)
    assert worst_ratio(channel) == pytest.approx(math.exp(epsilon_1), rel=1e-10)
    assert protocol.first_report_epsilon() == pytest.approx(epsilon_1, rel=1e-10)
    assert protocol.guarantee.epsilon == epsilon_1


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("k", [2, 3])
def test_memoized_reports_stay_within_epsilon_perm(name: str, k: int) -> None:
    epsilon_perm, epsilon_1 = 2.0, 1.0
    protocol = make(name, k, epsilon_perm, epsilon_1)
    ratios = [worst_ratio(protocol.channel(reports)) for reports in (1, 2, 3)]
    for joint in (protocol.channel(2), protocol.channel(3)):
        np.testing.assert_allclose(joint.sum(axis=1), 1.0, atol=1e-12)
    # More reports of one memo leak more, but never past round 1 (their limit) ...
    assert ratios[0] < ratios[1] < ratios[2] <= math.exp(epsilon_perm) * (1 + 1e-12)
    # ... which is exactly epsilon_perm-LDP.
    first_round = protocol._round1.channel()  # type: ignore[attr-defined]
    assert worst_ratio(first_round) == pytest.approx(math.exp(epsilon_perm), rel=1e-12)
    assert protocol.longitudinal_epsilon() == pytest.approx(epsilon_perm, rel=1e-12)
    assert protocol.guarantee_longitudinal.epsilon == epsilon_perm


def test_channel_matches_a_direct_enumeration() -> None:
    # L-GRR, k = 3, two reports: sum over the memo m of P1(m|v) P2(y1|m) P2(y2|m).
    lgrr = LGRR(k=3, epsilon_perm=2.0, epsilon_1=1.0)
    p1, q1, p2, q2 = lgrr.p1, lgrr.q1, lgrr.p2, lgrr.q2
    direct = np.zeros((3, 9))
    for v, m, y1, y2 in itertools.product(range(3), repeat=4):
        first = p1 if m == v else q1
        direct[v, 3 * y1 + y2] += first * (p2 if y1 == m else q2) * (p2 if y2 == m else q2)
    np.testing.assert_allclose(lgrr.channel(2), direct, rtol=1e-12)
    # L-OSUE, k = 2, one report: bits are independent given the value.
    losue = LOSUE(k=2, epsilon_perm=2.0, epsilon_1=1.0)
    one = np.zeros((2, 4))
    for v, (b0, b1) in itertools.product(range(2), itertools.product([0, 1], repeat=2)):
        probability = 1.0
        for position, bit in enumerate((b0, b1)):
            on = losue.p_star if position == v else losue.q_star
            probability *= on if bit else 1 - on
        one[v, 2 * b0 + b1] = probability
    np.testing.assert_allclose(losue.channel(1), one, rtol=1e-12)


@pytest.mark.parametrize("name", ["lgrr", "losue"])
def test_two_reports_of_one_memo_follow_the_channel(name: str) -> None:
    k, value, users = (3, 1, 200_000) if name == "lgrr" else (2, 1, 200_000)
    protocol = make(name, k)
    rng = simulation_generator(11)
    memo = protocol.memoize(np.full(users, value), rng=rng)
    first, second = protocol.randomize(memo, rng=rng), protocol.randomize(memo, rng=rng)
    if name == "lgrr":
        y1, y2 = first.arrays["values"], second.arrays["values"]
        outputs = k
    else:
        y1, y2 = first.arrays["bits"][:, 0] >> (8 - k), second.arrays["bits"][:, 0] >> (8 - k)
        outputs = 2**k
    observed = np.bincount(y1 * outputs + y2, minlength=outputs**2) / users
    expected = protocol.channel(2)[value]
    # Per cell, |z| < 5.5 has a two-sided normal tail of 3.8e-8; at most 16 cells: < 1e-6.
    z = (observed - expected) / np.sqrt(expected * (1 - expected) / users)
    assert np.abs(z).max() < 5.5, z


# --- L-GRR's second round ------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 5, 100])
@pytest.mark.parametrize(("epsilon_perm", "epsilon_1"), [(2.0, 1.0), (5.0, 1.0)])
def test_lgrr_first_report_is_exactly_epsilon_1(
    k: int, epsilon_perm: float, epsilon_1: float
) -> None:
    lgrr = LGRR(k=k, epsilon_perm=epsilon_perm, epsilon_1=epsilon_1)
    assert lgrr.first_report_epsilon() == pytest.approx(epsilon_1, rel=1e-12)
    # One report is distributed as GRR(epsilon_1).
    e = math.exp(epsilon_1)
    assert lgrr.p_star == pytest.approx(e / (e + k - 1), rel=1e-12)


def test_lgrr_paper_formula_is_right_only_for_k_2() -> None:
    def paper(k: int, epsilon_perm: float) -> float:
        protocol = LGRR(k=k, epsilon_perm=epsilon_perm, epsilon_1=1.0, paper_compatible=True)
        assert protocol.guarantee.epsilon == 1.0  # the requested bound, which still holds
        return protocol.first_report_epsilon()

    assert paper(5, 2.0) == pytest.approx(0.860, abs=5e-4)
    assert paper(100, 5.0) == pytest.approx(0.714, abs=5e-4)
    exact = LGRR(k=2, epsilon_perm=2.0, epsilon_1=1.0)
    compatible = LGRR(k=2, epsilon_perm=2.0, epsilon_1=1.0, paper_compatible=True)
    assert compatible.p2 == pytest.approx(exact.p2, rel=1e-12)
    assert compatible.fingerprint() != exact.fingerprint()


@pytest.mark.parametrize("k", [2, 3, 10, 1000])
@pytest.mark.parametrize("epsilon_perm", [0.1, 1.0, 5.0])
@pytest.mark.parametrize("fraction", [0.01, 0.5, 0.99])
def test_lgrr_paper_formula_never_exceeds_epsilon_1(
    k: int, epsilon_perm: float, fraction: float
) -> None:
    epsilon_1 = fraction * epsilon_perm
    protocol = LGRR(k=k, epsilon_perm=epsilon_perm, epsilon_1=epsilon_1, paper_compatible=True)
    assert protocol.first_report_epsilon() <= epsilon_1 * (1 + 1e-9)
    if k <= 10:
        assert worst_ratio(protocol.channel(1)) <= math.exp(epsilon_1) * (1 + 1e-9)


def test_loue_refuses_an_unreachable_epsilon_1() -> None:
    limit = math.log((2 * math.exp(2.0) + 1) / 3)  # 1.66: q2 = 0 at this epsilon_1
    LOUE(k=4, epsilon_perm=2.0, epsilon_1=limit - 0.01)
    with pytest.raises(ParameterError, match="LOSUE"):
        LOUE(k=4, epsilon_perm=2.0, epsilon_1=limit + 0.01)


# --- statistics ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_estimates_are_unbiased_with_the_closed_form_variance(name: str) -> None:
    k, n, repetitions = 16, 2_000, 200
    rng = simulation_generator(20261123)
    data = np.minimum(rng.geometric(0.25, size=n) - 1, k - 1)  # skewed, fixed dataset
    truth = np.bincount(data, minlength=k) / n
    protocol = make(name, k, 3.0, 1.5)
    # Each repetition draws new memos and one report: the variance covers both rounds.
    estimates = np.array(
        [
            protocol.estimate(protocol.randomize(protocol.memoize(data, rng=rng), rng=rng))
            for _ in range(repetitions)
        ]
    )
    predicted = np.asarray(protocol.variance(n, truth))
    # Unbiased: |z| < 5 per coordinate (two-sided 5.7e-7; < 1e-5 for the 16 together).
    z = (estimates.mean(axis=0) - truth) / np.sqrt(predicted / repetitions)
    assert np.abs(z).max() < 5, z
    # Variance: the domain-averaged MSE is a mean of 16 x 200 = 3200 squared errors, with
    # relative standard deviation about sqrt(2/3200) = 2.5%; ±15% is six of them
    # (false failure < 1e-8 under the normal approximation).
    empirical = float(np.mean((estimates - truth) ** 2))
    assert empirical == pytest.approx(float(np.mean(predicted)), rel=0.15)
    assert protocol.mse(n, truth) == pytest.approx(float(np.mean(predicted)))


def test_given_the_memos_reports_estimate_the_memos() -> None:
    # Conditional on round 1, round-2 estimates centre on the memos' own estimate.
    k, n, repetitions = 5, 3_000, 300
    rng = simulation_generator(5)
    lgrr = LGRR(k=k, epsilon_perm=2.0, epsilon_1=1.0)
    memo = lgrr.memoize(rng.integers(0, k, size=n), rng=rng)
    memo_counts = np.bincount(memo.responses, minlength=k)
    centre = (memo_counts / n - lgrr.q1) / (lgrr.p1 - lgrr.q1)
    estimates = np.array([lgrr.estimate(lgrr.randomize(memo, rng=rng)) for _ in range(repetitions)])
    # Given the memos, C(v) ~ Bin(c_v, p2) + Bin(n − c_v, q2).
    count_variance = memo_counts * lgrr.p2 * (1 - lgrr.p2) + (n - memo_counts) * lgrr.q2 * (
        1 - lgrr.q2
    )
    scale = n * (lgrr.p1 - lgrr.q1) * (lgrr.p2 - lgrr.q2)
    # |z| < 5 per coordinate: two-sided 5.7e-7 each, < 3e-6 for the 5.
    z = (estimates.mean(axis=0) - centre) / np.sqrt(count_variance / scale**2 / repetitions)
    assert np.abs(z).max() < 5, z


@pytest.mark.parametrize("name", NAMES)
def test_streaming_and_merged_aggregation_equal_one_shot(name: str) -> None:
    rng = simulation_generator(3)
    protocol = make(name, 10)
    data = rng.integers(0, 10, size=3_000)
    memo = protocol.memoize(data, rng=rng)
    whole = protocol.randomize(memo, rng=rng)
    first = protocol.randomize(protocol.memoize(data[:1_000], rng=rng), rng=rng)
    second = protocol.randomize(protocol.memoize(data[1_000:], rng=rng), rng=rng)
    merged = protocol.aggregator().update(first).merge(protocol.aggregator().update(second))
    stream = protocol.aggregator().update(first).update(second)
    assert stream.n == merged.n == 3_000
    np.testing.assert_allclose(merged.estimate(), stream.estimate())
    counts = protocol.support_counts(first) + protocol.support_counts(second)
    p1, q1, p2, q2 = protocol.p1, protocol.q1, protocol.p2, protocol.q2
    published = (counts / 3_000 - q1 * (p2 - q2) - q2) / ((p1 - q1) * (p2 - q2))
    np.testing.assert_allclose(stream.estimate(), published, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        protocol.estimate(protocol.decode(protocol.encode(whole))), protocol.estimate(whole)
    )


def test_variance_is_the_fixed_data_form_of_the_published_one() -> None:
    protocol = make("losue", 8)
    p1, q1, p2, q2 = protocol.p1, protocol.q1, protocol.p2, protocol.q2
    n, f = 1_000, np.array([0.0, 0.1, 0.5, 0.9])
    big_p = q2 + (p2 - q2) * (q1 + (p1 - q1) * f)
    published = big_p * (1 - big_p) / (n * (p1 - q1) ** 2 * (p2 - q2) ** 2)
    np.testing.assert_allclose(protocol.variance(n, f), published - f * (1 - f) / n, rtol=1e-12)


# --- memoization -----------------------------------------------------------------------------


def test_memoization_is_per_user_and_value() -> None:
    rng = simulation_generator(8)
    protocol = make("lgrr", 6)
    values = rng.integers(0, 6, size=1_000)
    memo = protocol.memoize(values, rng=rng)
    moved = values.copy()
    changed = rng.random(1_000) < 0.3
    moved[changed] = (values[changed] + 1) % 6
    later = protocol.memoize(moved, rng=rng, memo=memo)
    # Users who kept their value keep their permanent response; the others got a new row.
    np.testing.assert_array_equal(later.responses[~changed], memo.responses[~changed])
    assert later.table.shape[0] == 1_000 + int(changed.sum())
    # Back to the first values: every user finds its first permanent response again.
    back = protocol.memoize(values, rng=rng, memo=later)
    np.testing.assert_array_equal(back.responses, memo.responses)
    assert back.table.shape[0] == later.table.shape[0]
    # Without the memo, new permanent responses are drawn.
    assert not np.array_equal(protocol.memoize(values, rng=rng).responses, memo.responses)


@pytest.mark.parametrize("name", ["lgrr", "losue"])
def test_every_report_comes_from_the_permanent_response(name: str) -> None:
    rng = simulation_generator(9)
    protocol = make(name, 8)
    memo = protocol.memoize(rng.integers(0, 8, size=500), rng=rng)
    kept = memo.responses.copy()
    reports = [protocol.randomize(memo, rng=rng) for _ in range(200)]
    np.testing.assert_array_equal(memo.responses, kept)  # randomizing leaves the memo alone
    if name == "lgrr":
        # Each user's most frequent report is its memo (p2 = 0.47 against q2 = 0.075 for
        # each other value; a wrong mode in 200 draws has probability < 1e-15 per user).
        values = np.stack([r.arrays["values"] for r in reports], axis=1)
        modes = np.array([np.bincount(row, minlength=8).argmax() for row in values])
        np.testing.assert_array_equal(modes, memo.responses)
    else:
        # Each bit's mean over 200 reports is near p2 = 0.80 where the memo bit is set and
        # q2 = 0.20 where it is not; crossing 1/2 has probability < 1e-17 per bit.
        bits = np.stack([np.unpackbits(r.arrays["bits"], axis=1, count=8) for r in reports], axis=0)
        np.testing.assert_array_equal(
            bits.mean(axis=0) > 0.5, np.unpackbits(memo.responses, axis=1, count=8) == 1
        )


@pytest.mark.parametrize("name", NAMES)
def test_release_randomness_is_secure_by_default(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[np.random.Generator] = []
    original = randomness.secure_generator

    def counting() -> np.random.Generator:
        made.append(original())
        return made[-1]

    monkeypatch.setattr(randomness, "secure_generator", counting)
    protocol = make(name, 6)
    memo = protocol.memoize([0, 1, 2])
    protocol.randomize(memo)
    protocol.randomize([0, 1, 2])  # one secure generator per call, shared by both rounds
    assert len(made) == 3
    assert all(randomness.is_secure(generator) for generator in made)
    protocol.randomize(memo, rng=simulation_generator(1))
    assert len(made) == 3


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("epsilon_perm", "epsilon_1"), [(1.0, 1.0), (1.0, 2.0), (0.0, 1.0), (2.0, -1.0), (2.0, True)]
)
def test_bad_budgets_are_refused(name: str, epsilon_perm: object, epsilon_1: object) -> None:
    with pytest.raises(ParameterError, match="epsilon"):
        mechanisms.get(name)(k=4, epsilon_perm=epsilon_perm, epsilon_1=epsilon_1)


def test_the_order_of_budgets_is_explained() -> None:
    with pytest.raises(ParameterError, match=r"0 < epsilon_1 < epsilon_perm"):
        LGRR(k=4, epsilon_perm=1.0, epsilon_1=1.5)
    with pytest.raises(ParameterError):
        LGRR(k=1, epsilon_perm=2.0, epsilon_1=1.0)
    with pytest.raises(TypeError):
        LGRR(4, 2.0, 1.0)  # type: ignore[misc]


@pytest.mark.parametrize("name", NAMES)
def test_bad_values_memos_and_reports_are_refused(name: str) -> None:
    protocol, rng = make(name, 6), simulation_generator(0)
    for values in ([-1], [6], [0.5], [[0, 1]], ["a"]):
        with pytest.raises(DataError):
            protocol.memoize(values, rng=rng)
        with pytest.raises(DataError):
            protocol.randomize(values, rng=rng)
    memo = protocol.memoize([0, 1, 2], rng=rng)
    with pytest.raises(DataError, match="3 users"):
        protocol.memoize([0, 1], rng=rng, memo=memo)
    other = make(name, 6, epsilon_1=0.5)
    with pytest.raises(DataError, match="drawn by"):
        other.randomize(memo, rng=rng)
    with pytest.raises(DataError, match="drawn by"):
        other.memoize([0, 1, 2], rng=rng, memo=memo)
    with pytest.raises(DataError, match="made by"):
        other.estimate(protocol.randomize(memo, rng=rng))


# --- ALLOMFREE ----------------------------------------------------------------------------------


def test_allomfree_picks_the_smaller_variance_per_attribute() -> None:
    allomfree = ALLOMFREE(domains=(2, 10, 100), epsilon_perm=2.0, epsilon_1=1.0)
    assert [type(p).__name__ for p in allomfree.protocols] == ["LGRR", "LGRR", "LOSUE"]
    # With the exact L-GRR one report is GRR(ε1) or OUE(ε1): GRR iff k < 3e^ε1 + 2 = 10.2.
    for protocol in allomfree.protocols:
        rivals = [
            LGRR(k=protocol.k, epsilon_perm=2.0, epsilon_1=1.0),
            LOSUE(k=protocol.k, epsilon_perm=2.0, epsilon_1=1.0),
        ]
        assert protocol.variance(1) == min(rival.variance(1) for rival in rivals)


def test_allomfree_privacy_on_the_exact_channel() -> None:
    allomfree = ALLOMFREE(domains=(2, 3), epsilon_perm=2.0, epsilon_1=1.0)
    one = allomfree.channel(1)
    assert one.shape[0] == 6
    np.testing.assert_allclose(one.sum(axis=1), 1.0, atol=1e-12)
    assert worst_ratio(one) == pytest.approx(math.exp(1.0), rel=1e-10)
    assert worst_ratio(allomfree.channel(2)) <= math.exp(2.0) * (1 + 1e-12)
    assert allomfree.guarantee.epsilon == 1.0
    assert allomfree.guarantee_longitudinal.epsilon == 2.0
    assert allomfree.guarantee.notion is Notion.PURE


def test_allomfree_is_unbiased_with_the_closed_form_variance() -> None:
    domains, n, repetitions = (4, 16), 2_000, 200
    rng = simulation_generator(77)
    data = np.column_stack(
        [rng.integers(0, 4, size=n), np.minimum(rng.geometric(0.2, size=n) - 1, 15)]
    )
    truths = [np.bincount(data[:, j], minlength=k) / n for j, k in enumerate(domains)]
    allomfree = ALLOMFREE(domains=domains, epsilon_perm=3.0, epsilon_1=1.5)
    runs = [allomfree.estimate(allomfree.randomize(data, rng=rng)) for _ in range(repetitions)]
    estimates = np.array([np.concatenate(run) for run in runs])
    truth = np.concatenate(truths)
    predicted = np.concatenate(allomfree.variance(n, truths))
    # |z| < 5 per coordinate: < 1.2e-5 for the 20 together.
    z = (estimates.mean(axis=0) - truth) / np.sqrt(predicted / repetitions)
    assert np.abs(z).max() < 5, z
    # 20 x 200 = 4000 squared errors (relative s.d. ≈ 2.5%): ±15% fails with < 1e-8.
    empirical = float(np.mean((estimates - truth) ** 2))
    assert empirical == pytest.approx(float(np.mean(predicted)), rel=0.15)


def test_allomfree_memo_keeps_the_attribute_and_the_responses() -> None:
    rng = simulation_generator(4)
    allomfree = ALLOMFREE(domains=(3, 40), epsilon_perm=2.0, epsilon_1=1.0)
    data = np.column_stack([rng.integers(0, 3, 600), rng.integers(0, 40, 600)])
    memo = allomfree.memoize(data, rng=rng)
    changed = data.copy()
    changed[:, 1] = (changed[:, 1] + 1) % 40  # only the second attribute moves
    later = allomfree.memoize(changed, rng=rng, memo=memo)
    np.testing.assert_array_equal(later.attribute, memo.attribute)
    np.testing.assert_array_equal(later.memos[0].responses, memo.memos[0].responses)
    assert later.memos[1].table.shape[0] == 2 * memo.memos[1].table.shape[0]
    reports = allomfree.randomize(later, rng=rng)
    np.testing.assert_array_equal(reports.attribute, memo.attribute)
    assert [part.n for part in reports.parts] == list(np.bincount(memo.attribute, minlength=2))
    stream = allomfree.aggregator().update(reports).update(allomfree.randomize(later, rng=rng))
    assert stream.n == 1_200 and len(stream.estimate()) == 2
    with pytest.raises(DataError, match="600 users"):
        allomfree.memoize(data[:10], rng=rng, memo=memo)
    with pytest.raises(DataError):
        allomfree.memoize(data[:, :1], rng=rng)
    with pytest.raises(DataError, match="drawn by"):
        ALLOMFREE(domains=(3, 40), epsilon_perm=2.0, epsilon_1=0.5).randomize(memo, rng=rng)
    with pytest.raises(ParameterError, match="epsilon_1"):
        ALLOMFREE(domains=(3, 40), epsilon_perm=1.0, epsilon_1=2.0)
    with pytest.raises(ParameterError, match="domains"):
        ALLOMFREE(domains=(3, 1), epsilon_perm=2.0, epsilon_1=1.0)
