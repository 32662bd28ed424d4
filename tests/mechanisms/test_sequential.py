"""Sequential learning: the report laws, the guarantees, the simulator and the papers' results.

Statistical tests use fixed seeds; each states its false-failure probability: how
often it would fail, over seeds, if the code were exactly right (normal
approximations of sample means, which are accurate at these sample sizes).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from scipy import integrate

from privaudit import simulation_generator
from privaudit.errors import DataError, ParameterError
from privaudit.guarantees import Notion
from privaudit.mechanisms.sequential import (
    RandomizedResponse,
    SequentialMechanism,
    SmoothedRandomizedResponse,
    first_correct_time,
    simulate_sequential_learning,
    stopping_time,
    wrong_action_count,
)
from privaudit.randomness import is_secure
from privaudit.registry import mechanisms

AMPLITUDES: list[float | str] = [0.5, "logistic", 0.2]


def amplitude_value(amplitude: float | str, epsilon: float) -> float:
    return 1.0 / (1.0 + math.exp(epsilon)) if amplitude == "logistic" else float(amplitude)


# --- the closed-form report law -----------------------------------------------------


def integrated_report_law(
    epsilon: float, sigma: float, amplitude: float, llr: float, theta: int
) -> tuple[float, float]:
    """``(P(x=−1), P(x=+1))`` by quadrature of the signal density times the channel,
    written out here from the definition (not from the mechanism's code)."""
    t = -(sigma**2) * llr / 2.0
    norm = 1.0 / (sigma * math.sqrt(2 * math.pi))

    def density(s: float) -> float:
        return norm * math.exp(-0.5 * ((s - theta) / sigma) ** 2)

    def flip(s: float) -> float:
        return 0.0 if math.isinf(epsilon) else amplitude * math.exp(-epsilon * abs(s - t))

    options = {"epsabs": 0.0, "epsrel": 1e-12, "limit": 200}
    # a = −1 below t, +1 above; x = +1 is an unflipped +1 or a flipped −1.
    plus_above, _ = integrate.quad(lambda s: density(s) * (1 - flip(s)), t, np.inf, **options)
    plus_below, _ = integrate.quad(lambda s: density(s) * flip(s), -np.inf, t, **options)
    minus_above, _ = integrate.quad(lambda s: density(s) * flip(s), t, np.inf, **options)
    minus_below, _ = integrate.quad(lambda s: density(s) * (1 - flip(s)), -np.inf, t, **options)
    return minus_above + minus_below, plus_above + plus_below


@pytest.mark.parametrize("epsilon", [0.1, 0.5, 2.0, math.inf])
@pytest.mark.parametrize("amplitude", AMPLITUDES)
@pytest.mark.parametrize("sigma", [0.7, 1.5])
def test_report_law_matches_numerical_integration(
    epsilon: float, amplitude: float | str, sigma: float
) -> None:
    srr = SmoothedRandomizedResponse(epsilon=epsilon, sigma=sigma, amplitude=amplitude)
    a = amplitude_value(amplitude, epsilon)
    llrs = np.array([-4.0, -0.7, 0.0, 1.3, 6.0])
    for theta in (-1, 1):
        log_minus, log_plus = srr.log_report_probabilities(llrs, theta)
        np.testing.assert_allclose(np.exp(log_minus) + np.exp(log_plus), 1.0, rtol=1e-12)
        np.testing.assert_allclose(srr.report_probability(llrs, theta), np.exp(log_plus))
        # The per-report form the public update uses agrees with the full law.
        for report, expected in ((1, log_plus), (-1, log_minus)):
            chosen = srr.log_probability_of(np.full(llrs.size, report), llrs, theta)
            np.testing.assert_allclose(chosen, expected, rtol=1e-14)
        for index, llr in enumerate(llrs):
            minus, plus = integrated_report_law(epsilon, sigma, a, float(llr), theta)
            # Both probabilities to relative 1e-8: the smaller one is not 1 − the larger.
            assert math.exp(log_plus[index]) == pytest.approx(plus, rel=1e-8, abs=1e-300)
            assert math.exp(log_minus[index]) == pytest.approx(minus, rel=1e-8, abs=1e-300)


@pytest.mark.parametrize("llr", [-40.0, 40.0])
def test_report_law_stays_accurate_far_from_the_start(llr: float) -> None:
    # At |l| = 40 the rare report has probability ~e^-20: a formula evaluated as
    # 1 − P(other report) would return 0 or noise.
    srr = SmoothedRandomizedResponse(epsilon=1.0, sigma=1.0)
    for theta in (-1, 1):
        log_minus, log_plus = srr.log_report_probabilities(llr, theta)
        minus, plus = integrated_report_law(1.0, 1.0, 0.5, llr, theta)
        assert min(minus, plus) < 1e-7
        assert math.exp(float(log_minus)) == pytest.approx(minus, rel=1e-7)
        assert math.exp(float(log_plus)) == pytest.approx(plus, rel=1e-7)
        assert np.isfinite(srr.llr_increment(llr, [-1, 1])).all()


def test_flip_probability_and_threshold_follow_the_definition() -> None:
    srr = SmoothedRandomizedResponse(epsilon=0.8, sigma=1.3, amplitude=0.4)
    signals = np.array([-2.0, 0.1, 0.5, 3.0])
    llr = -0.6
    t = 1.3**2 * 0.6 / 2
    assert float(srr.threshold(llr)) == pytest.approx(t)
    np.testing.assert_allclose(
        srr.flip_probability(signals, llr), 0.4 * np.exp(-0.8 * np.abs(signals - t))
    )
    np.testing.assert_array_equal(srr.decide(signals, llr), np.where(signals > t, 1, -1))
    # The Bayesian action: +1 iff the posterior log-odds 2s/σ² + l are positive.
    np.testing.assert_array_equal(srr.decide(signals, llr) > 0, 2 * signals / 1.3**2 + llr > 0)


# --- privacy ------------------------------------------------------------------------


def channel_log_probabilities(
    mechanism: SequentialMechanism, signals: np.ndarray, llr: float
) -> np.ndarray:
    """``log P(x | s, l)`` for x = −1, +1 (rows) from the agent's action and flip."""
    action = mechanism.decide(signals, llr)
    flip = mechanism.flip_probability(signals, llr)
    # Each probability from the flip itself: 1 − (1 − f) would lose f's digits.
    minus, plus = np.where(action == 1, flip, 1 - flip), np.where(action == 1, 1 - flip, flip)
    return np.log(np.stack([minus, plus]))


@pytest.mark.parametrize("epsilon", [0.3, 1.0, 3.0])
@pytest.mark.parametrize("amplitude", AMPLITUDES)
def test_metric_dp_inequality_holds_on_a_grid_and_is_tight(
    epsilon: float, amplitude: float | str
) -> None:
    srr = SmoothedRandomizedResponse(epsilon=epsilon, sigma=1.2, amplitude=amplitude)
    jump = math.log((1 - amplitude_value(amplitude, epsilon)) / amplitude_value(amplitude, epsilon))
    assert srr.threshold_jump == pytest.approx(jump, abs=1e-12)
    for llr in (-3.0, 0.0, 2.5):
        t = float(srr.threshold(llr))
        signals = np.concatenate([np.linspace(-6, 6, 481), [t - 1e-9, t, t + 1e-9]])
        logs = channel_log_probabilities(srr, signals, llr)
        log_ratio = logs[:, :, None] - logs[:, None, :]  # [x, s, s']
        distance = np.abs(signals[:, None] - signals[None, :])
        opposite = (signals[:, None] > t) != (signals[None, :] > t)
        bound = epsilon * distance + jump * opposite
        assert (log_ratio <= bound + 1e-9).all()
        # Tight: no smaller ε per unit distance, and no smaller jump, would do.
        pairs = distance > 0
        assert (log_ratio[:, pairs] / distance[pairs]).max() >= epsilon * (1 - 1e-9)
        if jump > 0:
            assert (log_ratio - epsilon * distance).max() == pytest.approx(jump, abs=1e-6)
    guarantee = srr.guarantee
    assert guarantee.notion is Notion.METRIC
    assert guarantee.epsilon == epsilon
    assert guarantee.metric is not None and "|s - s'|" in guarantee.metric
    assert ("[s != s']" in guarantee.metric) == (jump > 0)


def test_smoothed_response_has_no_pure_dp() -> None:
    # Far above the threshold a +1 is almost sure, far below almost impossible.
    srr = SmoothedRandomizedResponse(epsilon=1.0, sigma=1.0)
    logs = channel_log_probabilities(srr, np.array([-30.0, 30.0]), 0.0)
    assert logs[1, 1] - logs[1, 0] > 29


@pytest.mark.parametrize("epsilon", [0.2, 1.0, 4.0])
def test_binary_randomized_response_is_exactly_epsilon_dp(epsilon: float) -> None:
    rr = RandomizedResponse(epsilon=epsilon, p=0.8)
    for llr in (0.0, 0.5 * rr.signal_llr, -rr.signal_llr, 3 * rr.signal_llr):
        action = rr.decide([-1.0, 1.0], llr)
        plus = np.where(action == 1, 1 - rr.flip_probability([-1.0, 1.0], llr), rr.flip)
        if rr.in_cascade(llr):
            assert plus[0] == plus[1]  # the report ignores the signal
            continue
        logs = np.log(np.stack([1 - plus, plus]))
        worst = float(np.max(np.abs(logs[:, 0] - logs[:, 1])))
        assert worst == pytest.approx(epsilon, rel=1e-12)
    assert rr.guarantee.notion is Notion.PURE and rr.guarantee.epsilon == epsilon


# --- randomizing --------------------------------------------------------------------

FREQUENCY_CASES = [
    SmoothedRandomizedResponse(epsilon=0.5, sigma=1.0),
    SmoothedRandomizedResponse(epsilon=2.0, sigma=0.8, amplitude="logistic"),
    RandomizedResponse(epsilon=1.0, p=0.7),
]


@pytest.mark.parametrize("mechanism", FREQUENCY_CASES, ids=repr)
def test_simulated_report_frequencies_match_the_law(mechanism: SequentialMechanism) -> None:
    # 4 beliefs x 2 states = 8 cells of 10^5 reports per mechanism; each z-score is
    # within 5.3 with probability 1 - 1.2e-7: false failure < 1e-6 for the 8 cells.
    rng = simulation_generator(20261123)
    n = 100_000
    for llr in (-2.0, 0.0, 0.8, 3.0):
        for theta in (-1, 1):
            signals = mechanism.sample_signals(theta, n, rng)
            reports = mechanism.randomize(signals, llr, rng=rng)
            assert reports.dtype == np.int8 and set(np.unique(reports)) <= {-1, 1}
            frequency = float(np.mean(reports == 1))
            law = float(mechanism.report_probability(llr, theta))
            if law in (0.0, 1.0):  # a binary cascade: the report is certain
                assert frequency == law
                continue
            z = (frequency - law) / math.sqrt(law * (1 - law) / n)
            assert abs(z) < 5.3, (llr, theta, frequency, law)


def test_randomize_uses_release_randomness_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    import privaudit.mechanisms.sequential._model as model

    used = []
    original = model.resolve_rng

    def spy(rng: np.random.Generator | None) -> np.random.Generator:
        generator = original(rng)
        used.append(is_secure(generator))
        return generator

    monkeypatch.setattr(model, "resolve_rng", spy)
    srr = SmoothedRandomizedResponse(epsilon=1.0, sigma=1.0)
    srr.randomize([0.3, -1.0], 0.0)
    assert used == [True]
    seeded = [srr.randomize(np.zeros(64), 0.0, rng=simulation_generator(5)) for _ in range(2)]
    np.testing.assert_array_equal(*seeded)


def test_public_update_is_post_processing_of_reports() -> None:
    srr = SmoothedRandomizedResponse(epsilon=1.0, sigma=1.0)
    llr = np.array([-2.0, 0.0, 0.0, 5.0])
    reports = np.array([1, 1, -1, -1])
    updated = srr.update_llr(llr, reports)
    # Deterministic in (l, x), and Bayes' rule: e^{l} is a martingale under θ = −1,
    # Σ_x P(x | l, −1) · P(x | l, +1)/P(x | l, −1) = 1.
    np.testing.assert_array_equal(updated, srr.update_llr(llr, reports))
    assert updated[1] > 0 > updated[2]
    for mechanism in (srr, RandomizedResponse(epsilon=0.7, p=0.65)):
        grid = np.linspace(-5, 5, 41)
        minus, plus = (np.exp(part) for part in mechanism.log_report_probabilities(grid, -1))
        expected_ratio = minus * np.exp(
            mechanism.llr_increment(grid, -np.ones(41))
        ) + plus * np.exp(mechanism.llr_increment(grid, np.ones(41)))
        np.testing.assert_allclose(expected_ratio, 1.0, rtol=1e-12)


# --- the simulator ------------------------------------------------------------------


def test_simulator_shapes_reproducibility_and_consistency() -> None:
    srr = SmoothedRandomizedResponse(epsilon=1.0, sigma=1.0)
    runs = [
        simulate_sequential_learning(
            mechanism=srr, theta=-1, n_agents=30, n_paths=50, rng=simulation_generator(9)
        )
        for _ in range(2)
    ]
    result = runs[0]
    np.testing.assert_array_equal(result.llr, runs[1].llr)
    assert result.llr.shape == (50, 31) and result.actions.shape == (50, 30)
    assert result.n_paths == 50 and result.n_agents == 30
    assert (result.llr[:, 0] == 0).all()
    # Each LLR step is the public update of the published action, and the intended
    # action is the Bayesian one given the LLR the agent saw.
    np.testing.assert_allclose(
        result.llr[:, 1:], srr.update_llr(result.llr[:, :-1], result.actions), rtol=1e-12
    )
    flipped = result.actions != result.intended_actions
    assert 0 < flipped.mean() < 0.5
    np.testing.assert_array_equal(result.mean_belief(), -result.llr.mean(axis=0))
    baseline = simulate_sequential_learning(
        mechanism=srr.non_private(), theta=1, n_agents=30, n_paths=50, rng=simulation_generator(9)
    )
    np.testing.assert_array_equal(baseline.actions, baseline.intended_actions)


def test_progress_is_reported() -> None:
    calls: list[tuple[int, int]] = []
    simulate_sequential_learning(
        mechanism=RandomizedResponse(epsilon=1.0, p=0.7),
        theta=1,
        n_agents=250,
        n_paths=3,
        rng=simulation_generator(0),
        on_progress=lambda done, total: calls.append((done, total)),
    )
    assert calls[-1] == (250, 250) and len(calls) >= 100
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_trajectory_statistics_on_a_hand_made_history() -> None:
    llr = np.array([[0.0, 0.5, -2.1, 3.0], [0.0, 0.1, 0.2, 0.3]])
    np.testing.assert_array_equal(stopping_time(llr, 2.0), [2.0, math.inf])
    np.testing.assert_array_equal(stopping_time(llr, 0.5), [1.0, math.inf])
    actions = np.array([[-1, -1, 1, 1], [-1, -1, -1, -1]], dtype=np.int8)
    np.testing.assert_array_equal(first_correct_time(actions, 1), [3.0, math.inf])
    np.testing.assert_array_equal(first_correct_time(actions, -1), [1.0, 1.0])
    np.testing.assert_array_equal(wrong_action_count(actions, 1), [2, 4])


# --- the papers' qualitative results ------------------------------------------------


def decade_increments(llr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per path, ``l_300 − l_30`` and ``l_3000 − l_300``: growth over two equal spans of log n."""
    return llr[:, 300] - llr[:, 30], llr[:, 3000] - llr[:, 300]


def test_private_learning_grows_like_log_n_and_outpaces_the_baseline() -> None:
    # [LR25]: with SRR, l_n ≈ (2/(εσ²)) log n (Θ_ε(log n)); without privacy, Θ(√log n).
    # Means over 400 paths; the assertions sit at least 5 standard errors (estimated
    # from the paths) from what was measured (false failure < 1e-6 in all).
    epsilon, sigma, paths = 1.0, 1.0, 400
    srr = SmoothedRandomizedResponse(epsilon=epsilon, sigma=sigma)
    private = simulate_sequential_learning(
        mechanism=srr, theta=1, n_agents=3000, n_paths=paths, rng=simulation_generator(1)
    )
    baseline = simulate_sequential_learning(
        mechanism=srr.non_private(),
        theta=1,
        n_agents=3000,
        n_paths=paths,
        rng=simulation_generator(2),
    )

    def stderr(values: np.ndarray) -> float:
        return float(values.std(ddof=1) / math.sqrt(values.size))

    # Private: the slope of l_n in log n over n in [30, 3000] is 2/(εσ²), within the
    # 10% that the asymptotic formula may be off by at these n ...
    early, late = decade_increments(private.llr)
    slope = (early + late) / math.log(100)
    assert abs(slope.mean() - 2 / (epsilon * sigma**2)) < 0.1 * 2 / epsilon + 5 * stderr(slope)
    # ... and equal spans of log n bring (about) equal gains: ratio > 0.85 (measured 0.94).
    ratio = late.mean() / early.mean()
    ratio_stderr = ratio * math.hypot(stderr(late) / late.mean(), stderr(early) / early.mean())
    assert ratio - 5 * ratio_stderr > 0.85
    # Non-private: the gains shrink like √log n predicts (ratio 0.81; measured 0.71).
    early0, late0 = decade_increments(baseline.llr)
    ratio0 = late0.mean() / early0.mean()
    ratio0_stderr = ratio0 * math.hypot(
        stderr(late0) / late0.mean(), stderr(early0) / early0.mean()
    )
    assert ratio0 + 5 * ratio0_stderr < 0.85
    # Privacy helps: at n = 3000 the private public belief is well ahead.
    gap = private.llr[:, 3000] - baseline.llr[:, 3000]
    assert (
        gap.mean() - 5 * math.hypot(stderr(private.llr[:, 3000]), stderr(baseline.llr[:, 3000])) > 0
    )


def test_asymptotic_stopping_time_matches_simulation_at_a_high_bound() -> None:
    # E[τ_B] ~ e^{εσ²B/2}/K as B → ∞ (the authors' revised Theorem 4.8). At B = 8,
    # ε = σ = 1 the approximation is within 5% (measured 0.4%); 1000 paths put the
    # mean within 5 standard errors of E[τ_B] with probability 1 - 6e-7. τ_8 has an
    # exponential tail (99.9% quantile 183, and 43 more steps per factor 10): a path
    # still running at 600 has probability about 1e-13.
    srr = SmoothedRandomizedResponse(epsilon=1.0, sigma=1.0)
    result = simulate_sequential_learning(
        mechanism=srr, theta=1, n_agents=600, n_paths=1000, rng=simulation_generator(11)
    )
    tau = result.stopping_time(8.0)
    assert np.isfinite(tau).all()
    predicted = srr.asymptotic_stopping_time(8.0)
    stderr = tau.std(ddof=1) / math.sqrt(tau.size)
    assert abs(tau.mean() - predicted) < 0.05 * predicted + 5 * stderr
    # Without privacy the same belief takes far longer: τ_8 is concentrated near 500
    # (none of 1000 pilot paths below 281), so fewer than 5% of 200 paths reach it
    # by twice the private mean (false failure < 1e-12 if P(τ_8 <= 140) < 0.003).
    baseline = simulate_sequential_learning(
        mechanism=srr.non_private(),
        theta=1,
        n_agents=int(2 * predicted),
        n_paths=200,
        rng=simulation_generator(12),
    )
    assert np.isfinite(baseline.stopping_time(8.0)).mean() < 0.05


def survival_probability(rr: RandomizedResponse, n: int) -> float:
    """P(no cascade within n reports), exactly: the gambler's-ruin walk on the net
    count of right reports, killed at ±k."""
    k = rr.cascade_threshold()
    right = 1 / (1 + rr.error_ratio)
    transition = np.diag(np.full(2 * k - 2, right), 1) + np.diag(np.full(2 * k - 2, 1 - right), -1)
    start = np.zeros(2 * k - 1)
    start[k - 1] = 1.0
    return float(start @ np.linalg.matrix_power(transition, n) @ np.ones(2 * k - 1))


@pytest.mark.parametrize(("epsilon", "horizon"), [(0.5, 600), (1.0, 200), (math.inf, 80)])
@pytest.mark.parametrize("theta", [-1, 1])
def test_binary_cascades_follow_the_closed_forms(epsilon: float, horizon: int, theta: int) -> None:
    # 5,000 paths: the share of right cascades and the mean cascade time are each
    # within 5 standard errors of the formulas (false failure < 1.2e-6 for the pair).
    rr = RandomizedResponse(epsilon=epsilon, p=0.7)
    paths = 5_000
    assert paths * survival_probability(rr, horizon) < 1e-9  # every path cascades
    result = simulate_sequential_learning(
        mechanism=rr, theta=theta, n_agents=horizon, n_paths=paths, rng=simulation_generator(3)
    )
    tau = rr.cascade_time(result.llr)
    assert np.isfinite(tau).all()
    right = np.sign(result.llr[:, -1]) == theta
    p_right = rr.right_cascade_probability()
    assert abs(right.mean() - p_right) < 5 * math.sqrt(p_right * (1 - p_right) / paths)
    assert abs(tau.mean() - rr.expected_cascade_time()) < 5 * tau.std(ddof=1) / math.sqrt(paths)
    # After the cascade the public stops learning: the LLR is frozen.
    last = result.llr[np.arange(paths), tau.astype(int)]
    np.testing.assert_array_equal(result.llr[:, -1], last)


def test_binary_privacy_slows_learning_and_is_not_monotone_in_epsilon() -> None:
    # [LR25]: privacy lowers the probability of a right cascade for every ε ...
    for p in (0.55, 0.6, 0.7, 0.8, 0.9):
        baseline = RandomizedResponse(epsilon=math.inf, p=p)
        assert baseline.cascade_threshold() == 2
        assert baseline.right_cascade_probability() == pytest.approx(p**2 / (2 * p**2 - 2 * p + 1))
        for epsilon in np.linspace(0.05, 6.0, 120):
            private = RandomizedResponse(epsilon=float(epsilon), p=p)
            assert private.right_cascade_probability() < baseline.right_cascade_probability()
    # ... but not monotonically: just below ε_3, k = 3 and right cascades are likelier
    # than just above it (k = 2). Simulated on 20,000 paths each (P(no cascade in 100
    # reports) < 1e-6 per path): the gap (0.07) is > 10 standard errors, the test asks
    # for 5 (false failure < 1e-6).
    epsilon_3 = RandomizedResponse.cascade_epsilon_boundaries(0.7, 3)[3]
    below, above = (RandomizedResponse(epsilon=epsilon_3 * f, p=0.7) for f in (0.98, 1.02))
    assert (below.cascade_threshold(), above.cascade_threshold()) == (3, 2)
    shares = []
    assert survival_probability(below, 100) < 1e-6
    for seed, mechanism in enumerate((below, above)):
        result = simulate_sequential_learning(
            mechanism=mechanism,
            theta=1,
            n_agents=100,
            n_paths=20_000,
            rng=simulation_generator(seed),
        )
        shares.append(float(np.mean(result.llr[:, -1] > 0)))
    assert shares[0] - shares[1] > 5 * math.sqrt(2 * 0.25 / 20_000)
    assert below.right_cascade_probability() > above.right_cascade_probability()


def test_cascade_epsilon_boundaries_are_where_k_changes() -> None:
    for p in (0.6, 0.7, 0.9):
        boundaries = RandomizedResponse.cascade_epsilon_boundaries(p, 7)
        values = [boundaries[k] for k in range(3, 8)]
        assert values == sorted(values, reverse=True)
        for k, epsilon_k in boundaries.items():
            # k(ε) = k on (ε_{k+1}, ε_k]: at ε_k itself, and just above it, k − 1.
            assert RandomizedResponse(epsilon=epsilon_k, p=p).cascade_threshold() == k
            assert RandomizedResponse(epsilon=epsilon_k * 1.001, p=p).cascade_threshold() == k - 1


# --- errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epsilon": 0.0, "sigma": 1.0}, "epsilon must be > 0"),
        ({"epsilon": -1.0, "sigma": 1.0}, "epsilon must be > 0"),
        ({"epsilon": math.nan, "sigma": 1.0}, "epsilon must be > 0"),
        ({"epsilon": "1", "sigma": 1.0}, "epsilon must be a positive number"),
        ({"epsilon": True, "sigma": 1.0}, "epsilon must be a positive number"),
        ({"epsilon": 1.0, "sigma": 0.0}, "sigma must be finite and > 0"),
        ({"epsilon": 1.0, "sigma": math.inf}, "sigma must be finite and > 0"),
        ({"epsilon": 1.0, "sigma": 1.0, "amplitude": 0.6}, "amplitude must be in (0, 0.5]"),
        ({"epsilon": 1.0, "sigma": 1.0, "amplitude": 0.0}, "amplitude must be in (0, 0.5]"),
        ({"epsilon": 1.0, "sigma": 1.0, "amplitude": "half"}, "'logistic'"),
    ],
)
def test_bad_smoothed_parameters_are_clear_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ParameterError, match=re.escape(message)):
        SmoothedRandomizedResponse(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("p", [0.5, 1.0, 0.3, "0.7"])
def test_bad_signal_accuracy_is_a_clear_error(p: object) -> None:
    with pytest.raises(ParameterError, match=r"p .*\(0.5, 1\)"):
        RandomizedResponse(epsilon=1.0, p=p)  # type: ignore[arg-type]


def test_bad_simulation_and_data_inputs_are_clear_errors() -> None:
    srr = SmoothedRandomizedResponse(epsilon=1.0, sigma=1.0)
    rng = simulation_generator(0)
    good = {"mechanism": srr, "theta": 1, "n_agents": 5, "n_paths": 5, "rng": rng}
    for override, message in [
        ({"theta": 0}, "theta must be the state -1 or +1"),
        ({"theta": True}, "theta must be the state"),
        ({"n_agents": 0}, "n_agents must be a positive integer"),
        ({"n_paths": 2.5}, "n_paths must be a positive integer"),
        ({"mechanism": "smoothed_rr"}, "mechanism must be a SequentialMechanism"),
        ({"rng": 7}, "rng must be None"),
        ({"n_agents": 10**6, "n_paths": 10**3}, "stored LLR values"),
    ]:
        with pytest.raises(ParameterError, match=re.escape(message)):
            simulate_sequential_learning(**{**good, **override})  # type: ignore[arg-type]
    with pytest.raises(DataError, match="must be finite"):
        srr.update_llr([0.0, math.inf], [1, 1])
    with pytest.raises(DataError, match="must be -1 or \\+1"):
        srr.update_llr([0.0, 0.0], [1, 0])
    with pytest.raises(ParameterError, match="bound must be finite and > 0"):
        stopping_time(np.zeros((2, 3)), 0.0)
    with pytest.raises(DataError, match="2-D array"):
        stopping_time(np.zeros((2, 3, 4)), 1.0)
    with pytest.raises(ParameterError, match="k_max"):
        RandomizedResponse.cascade_epsilon_boundaries(0.7, 2)
    with pytest.raises(ParameterError, match="non-private baseline has no drift"):
        srr.non_private().asymptotic_stopping_time(4.0)


def test_mechanisms_are_registered_by_name() -> None:
    assert mechanisms.get("smoothed_rr") is SmoothedRandomizedResponse
    assert mechanisms.get("binary_rr") is RandomizedResponse
