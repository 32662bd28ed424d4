"""epsilon_from_rates: closed forms, reflection, the edge cases, and the region it inverts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from privaudit.errors import ParameterError
from privaudit.estimators import epsilon_from_rates
from privaudit.estimators._rates import epsilon_array

rates = st.floats(min_value=0.0, max_value=1.0)
deltas = st.sampled_from([0.0, 1e-8, 1e-5, 0.01])


def test_closed_forms_and_edge_cases() -> None:
    assert epsilon_from_rates(0.1, 0.1) == pytest.approx(math.log(9))
    assert epsilon_from_rates(0.2, 0.1, delta=0.05) == pytest.approx(math.log(0.75 / 0.1))
    assert epsilon_from_rates(0.5, 0.5) == 0.0  # random guessing: no evidence
    assert epsilon_from_rates(0.0, 1.0) == 0.0  # never say member: no evidence (errata 1)
    assert epsilon_from_rates(1.0, 0.0) == 0.0  # always say member
    assert epsilon_from_rates(0.0, 0.3) == math.inf
    assert epsilon_from_rates(0.0, 0.0) == math.inf
    # Within δ of random guessing there is no evidence either.
    assert epsilon_from_rates(0.0, 1.0 - 1e-6, delta=1e-5) == 0.0


@given(fpr=rates, fnr=rates, delta=deltas)
def test_symmetries(fpr: float, fnr: float, delta: float) -> None:
    epsilon = epsilon_from_rates(fpr, fnr, delta=delta)
    assert epsilon >= 0.0
    assert epsilon_from_rates(fnr, fpr, delta=delta) == pytest.approx(epsilon)
    # A worse-than-random test is as informative as its reflection (where 1 − (1 − x) is
    # exact in floating point).
    assume(1.0 - (1.0 - fpr) == fpr and 1.0 - (1.0 - fnr) == fnr)
    reflected = epsilon_from_rates(1.0 - fnr, 1.0 - fpr, delta=delta)
    assert reflected == pytest.approx(epsilon, rel=1e-9, abs=1e-9)


@given(fpr=rates, fnr=rates, delta=deltas)
def test_is_the_smallest_epsilon_whose_region_holds_the_point(
    fpr: float, fnr: float, delta: float
) -> None:
    epsilon = epsilon_from_rates(fpr, fnr, delta=delta)
    if fpr > 1 - fnr:
        fpr, fnr = 1 - fnr, 1 - fpr

    def inside(eps: float, slack: float = 1e-12) -> bool:
        return (
            fpr + math.exp(eps) * fnr >= 1 - delta - slack
            and math.exp(eps) * fpr + fnr >= 1 - delta - slack
        )

    if math.isinf(epsilon):
        assert not inside(700.0, slack=0.0)
        return
    assume(epsilon < 700.0)  # e^ε must be a double
    assert inside(epsilon * (1 + 1e-9) + 1e-12)
    if epsilon > 1e-6 and 1 - delta - max(fpr, fnr) > 1e-3:
        # Smallest: a little less ε leaves the region (where doubles can resolve it).
        assert not inside(epsilon - 1e-6, slack=0.0)


def test_vectorised_form_agrees() -> None:
    grid = np.linspace(0, 1, 21)
    fpr, fnr = np.meshgrid(grid, grid)
    vectorised = epsilon_array(fpr.ravel(), fnr.ravel(), 1e-5)
    scalar = [
        epsilon_from_rates(a, b, delta=1e-5) for a, b in zip(fpr.ravel(), fnr.ravel(), strict=True)
    ]
    np.testing.assert_array_equal(vectorised, scalar)


@pytest.mark.parametrize(
    ("fpr", "fnr", "delta"),
    [(-0.1, 0.5, 0.0), (0.5, 1.5, 0.0), (math.nan, 0.5, 0.0), ("0.1", 0.5, 0.0), (0.1, 0.1, 1.0)],
)
def test_bad_input_is_refused(fpr: object, fnr: object, delta: float) -> None:
    with pytest.raises(ParameterError):
        epsilon_from_rates(fpr, fnr, delta=delta)  # type: ignore[arg-type]
