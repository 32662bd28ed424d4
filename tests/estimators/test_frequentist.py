"""Clopper-Pearson and Jeffreys rectangles: against scipy's exact binomial CI, symmetries,
the one-sided convention, and coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats

from privaudit.estimators import ClopperPearsonEpsilon, JeffreysEpsilon, Rigor
from privaudit.estimators._frequentist import clopper_pearson_interval, jeffreys_interval
from privaudit.estimators._rates import epsilon_array

counts = st.integers(min_value=0, max_value=5000)
ESTIMATORS = [ClopperPearsonEpsilon, JeffreysEpsilon]


@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.1, 0.5])
@pytest.mark.parametrize(
    ("k", "n"), [(0, 1), (1, 1), (0, 50), (3, 50), (25, 50), (50, 50), (7, 9999)]
)
def test_clopper_pearson_is_scipys_exact_interval(k: int, n: int, alpha: float) -> None:
    # statsmodels is not installed here; scipy's binomtest gives the same exact interval.
    expected = stats.binomtest(k, n).proportion_ci(confidence_level=1 - alpha, method="exact")
    assert clopper_pearson_interval(k, n, alpha) == pytest.approx(
        (expected.low, expected.high), abs=1e-12
    )


@given(k=st.integers(0, 300), extra=st.integers(0, 300), alpha=st.floats(0.001, 0.5))
def test_jeffreys_interval_definition(k: int, extra: int, alpha: float) -> None:
    n = k + extra
    assume(n > 0)
    low, high = jeffreys_interval(k, n, alpha)
    posterior = stats.beta(k + 0.5, n - k + 0.5)
    assert low == (0.0 if k == 0 else pytest.approx(posterior.ppf(alpha / 2), abs=1e-10))
    assert high == (1.0 if k == n else pytest.approx(posterior.isf(alpha / 2), abs=1e-10))
    # Symmetric in successes and failures, and inside the Clopper-Pearson interval.
    mirror = jeffreys_interval(n - k, n, alpha)
    assert (1 - mirror[1], 1 - mirror[0]) == pytest.approx((low, high), abs=1e-12)
    exact = clopper_pearson_interval(k, n, alpha)
    assert exact[0] <= low + 1e-12 and high <= exact[1] + 1e-12


def test_tf_privacy_ratio_bound_and_known_values() -> None:
    # TF-Privacy's epsilon_lower_bound_test: TP=500/500, FP=0/500, α=0.01 → 4.54.
    bound = ClopperPearsonEpsilon(delta=0.0, alpha=0.01, sided="lower")
    assert bound.fit(tp=500, fn=0, tn=500, fp=0).interval_[0] == pytest.approx(
        math.log(0.005 ** (1 / 500) / (1 - 0.005 ** (1 / 500)))
    )
    # A perfect attack cannot be bounded above.
    assert ClopperPearsonEpsilon().fit(tp=50, fn=0, tn=50, fp=0).interval_[1] == math.inf


@pytest.mark.parametrize("estimator", ESTIMATORS)
@settings(max_examples=60, deadline=None)
@given(tp=counts, fn=counts, tn=counts, fp=counts)
def test_interval_is_invariant_under_relabelling(
    estimator: type[ClopperPearsonEpsilon], tp: int, fn: int, tn: int, fp: int
) -> None:
    interval = estimator().fit(tp=tp, fn=fn, tn=tn, fp=fp).interval_
    assert estimator().fit(tp=tn, fn=fp, tn=tp, fp=fn).interval_ == pytest.approx(interval)
    assert estimator().fit(tp=fn, fn=tp, tn=fp, fp=tn).interval_ == pytest.approx(interval)


@pytest.mark.parametrize("estimator", ESTIMATORS)
@settings(max_examples=60, deadline=None)
@given(tp=counts, fn=counts, tn=counts, fp=counts, alpha=st.sampled_from([0.01, 0.05, 0.2]))
def test_lower_bound_is_the_two_sided_lower_end_at_two_alpha(
    estimator: type[ClopperPearsonEpsilon], tp: int, fn: int, tn: int, fp: int, alpha: float
) -> None:
    assume(tp + fn > 0 and tn + fp > 0)
    one_sided = estimator(alpha=alpha, sided="lower").fit(tp=tp, fn=fn, tn=tn, fp=fp).interval_
    two_sided = estimator(alpha=2 * alpha).fit(tp=tp, fn=fn, tn=tn, fp=fp).interval_
    assert one_sided[1] == math.inf
    if fp / (tn + fp) + fn / (tp + fn) <= 1.0:
        # Not worse than random: the conventions agree.
        assert one_sided[0] == pytest.approx(two_sided[0])
    else:
        # Worse than random, as oriented: no evidence (orient the attack beforehand).
        assert one_sided[0] <= two_sided[0]


def _coverage(sided: str, true_fpr: float, true_fnr: float, n: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    truth = float(epsilon_array(np.array(true_fpr), np.array(true_fnr), 0.0))
    repeats = 4000
    fp, fn = rng.binomial(n, true_fpr, repeats), rng.binomial(n, true_fnr, repeats)
    hits = 0
    for false_positives, false_negatives in zip(fp.tolist(), fn.tolist(), strict=True):
        low, high = (
            ClopperPearsonEpsilon(delta=0.0, alpha=0.05, sided=sided)  # type: ignore[arg-type]
            .fit(
                tp=n - false_negatives,
                fn=false_negatives,
                tn=n - false_positives,
                fp=false_positives,
            )
            .interval_
        )
        hits += low <= truth <= high
    return hits / repeats


@pytest.mark.parametrize("sided", ["two", "lower"])
@pytest.mark.parametrize(("true_fpr", "true_fnr"), [(0.05, 0.3), (0.2, 0.2), (0.5, 0.5)])
def test_clopper_pearson_coverage_is_at_least_nominal(
    sided: str, true_fpr: float, true_fnr: float
) -> None:
    """4000 seeded repetitions, 100 trials per class: coverage >= 0.95 − 4 standard
    errors (0.0138). A rigorous interval can only fail this by chance: probability
    below 3.2e-5 per case, 2e-4 for all six."""
    assert _coverage(sided, true_fpr, true_fnr, 100, seed=5) >= 0.95 - 4 * math.sqrt(
        0.95 * 0.05 / 4000
    )


def test_labels() -> None:
    fitted = ClopperPearsonEpsilon(threat_model="black-box").fit(tp=90, fn=10, tn=90, fp=10)
    assert fitted.result_.rigor is Rigor.RIGOROUS
    assert fitted.result_.threat_model.value == "black-box"
    assert fitted.point_ == pytest.approx(math.log(0.9 / 0.1 - 1e-4), abs=1e-3)
    pooled = ClopperPearsonEpsilon(guesses_per_model=16).fit(tp=90, fn=10, tn=90, fp=10)
    assert pooled.result_.rigor is Rigor.HEURISTIC and "16 guesses" in pooled.result_.reason
    assert pooled.interval_ == fitted.interval_  # the label changes, not the arithmetic
    assert JeffreysEpsilon().fit(tp=90, fn=10, tn=90, fp=10).result_.rigor is Rigor.HEURISTIC
