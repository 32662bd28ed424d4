"""OneRunAudit [SNJ23]: closed form, the p-value at the bound, reference values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special

from privaudit.errors import DataError, NotFittedError, ParameterError
from privaudit.estimators import OneRunAudit, Rigor, one_run_p_value


@settings(max_examples=30, deadline=None)
@given(r=st.integers(min_value=1, max_value=5000), alpha=st.sampled_from([0.01, 0.05, 0.1]))
def test_all_correct_without_delta_is_the_closed_form(r: int, alpha: float) -> None:
    # P[Binom(r, q) >= r] = q^r = alpha  =>  q = alpha^(1/r), ε = logit(q) (0 if negative).
    audit = OneRunAudit(delta=0.0, alpha=alpha).fit(m=r, r=r, v=r)
    expected = max(0.0, float(special.logit(alpha ** (1 / r))))
    assert audit.epsilon_lower_ == pytest.approx(expected, rel=1e-7)


@pytest.mark.parametrize(
    ("m", "r", "v", "delta"),
    [(1000, 100, 90, 0.0), (1000, 1000, 600, 1e-5), (100000, 10000, 9000, 1e-5)],
)
def test_the_bound_is_where_the_p_value_crosses_alpha(m: int, r: int, v: int, delta: float) -> None:
    audit = OneRunAudit(delta=delta, alpha=0.05).fit(m=m, r=r, v=v)
    bound = audit.epsilon_lower_
    assert audit.p_value(bound) == pytest.approx(0.05, rel=1e-6)
    assert audit.p_value(bound * 0.99) < 0.05 < audit.p_value(bound * 1.01)


def test_reference_values_of_the_paper_code() -> None:
    # Values of the SNJ23 reference code at p = 0.05 (auditing.md §4, 4 decimals).
    cases = [
        ((1000, 1000, 1000, 1e-5), 5.7823),
        ((10000, 1000, 1000, 1e-5), 5.5293),
        ((100000, 1000, 1000, 1e-5), 3.4890),
        ((1000, 1000, 750, 0.0), 0.9767),
        ((1000, 1000, 550, 1e-5), 0.0940),
    ]
    for (m, r, v, delta), expected in cases:
        bound = OneRunAudit(delta=delta).fit(m=m, r=r, v=v).epsilon_lower_
        assert bound == pytest.approx(expected, abs=6e-5)


def test_delta_term_matches_a_direct_loop() -> None:
    from scipy import stats

    m, r, v, eps, delta = 500, 200, 150, 1.0, 1e-4
    q = 1 / (1 + math.exp(-eps))
    pmf = {j: stats.binom.pmf(j, r, q) for j in range(v)}
    best = max(sum(pmf[v - j] for j in range(1, i + 1)) / i for i in range(1, v + 1))
    expected = stats.binom.sf(v - 1, r, q) + 2 * m * delta * best
    assert one_run_p_value(m=m, r=r, v=v, epsilon=eps, delta=delta) == pytest.approx(expected)


def test_no_evidence_gives_zero_and_guesses_give_the_same_counts() -> None:
    assert OneRunAudit().fit(m=100, r=10, v=5).epsilon_lower_ == 0.0
    rng = np.random.default_rng(3)
    included = rng.choice([-1, 1], size=400)
    guesses = np.where(rng.random(400) < 0.8, included, -included)
    guesses[rng.random(400) < 0.5] = 0
    made = guesses != 0
    from_guesses = OneRunAudit(delta=1e-5).fit_guesses(guesses=guesses, included=included == 1)
    from_counts = OneRunAudit(delta=1e-5).fit(
        m=400, r=int(made.sum()), v=int((guesses[made] == included[made]).sum())
    )
    assert from_guesses.epsilon_lower_ == from_counts.epsilon_lower_ > 0
    result = from_guesses.result_
    assert result.rigor is Rigor.RIGOROUS and result.sided == "lower"
    assert result.interval == (from_guesses.epsilon_lower_, math.inf)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ParameterError):
        OneRunAudit().fit(m=10, r=20, v=5)
    with pytest.raises(ParameterError):
        OneRunAudit().fit(m=10, r=5, v=6)
    with pytest.raises(ParameterError):
        OneRunAudit().fit(m=10, r=5, v=2.0)  # type: ignore[arg-type]
    with pytest.raises(ParameterError):
        OneRunAudit(alpha=1.5)
    with pytest.raises(DataError):
        OneRunAudit().fit_guesses(guesses=[1, 2], included=[1, -1])
    with pytest.raises(NotFittedError):
        OneRunAudit().p_value(1.0)
    with pytest.raises(NotFittedError):
        OneRunAudit().epsilon_lower_  # noqa: B018
