"""PrivacyGuarantee: validation and conversions."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from privaudit.errors import ParameterError
from privaudit.guarantees import Notion, PrivacyGuarantee

LOCAL = "any two inputs of one user"


def test_the_four_notions() -> None:
    assert PrivacyGuarantee.pure(1.0, neighbouring=LOCAL).notion is Notion.PURE
    approx = PrivacyGuarantee.approximate(1.0, 1e-5, neighbouring=LOCAL)
    assert (approx.epsilon, approx.delta) == (1.0, 1e-5)
    metric = PrivacyGuarantee.metric_dp(0.5, metric="|s - s'|", neighbouring="any two signals")
    assert metric.metric == "|s - s'|"
    assert PrivacyGuarantee.zcdp(0.1, neighbouring=LOCAL).rho == 0.1


@pytest.mark.parametrize(
    "build",
    [
        lambda: PrivacyGuarantee.pure(-1.0, neighbouring=LOCAL),
        lambda: PrivacyGuarantee.pure(float("nan"), neighbouring=LOCAL),
        lambda: PrivacyGuarantee.approximate(1.0, 0.0, neighbouring=LOCAL),
        lambda: PrivacyGuarantee.approximate(1.0, 1.0, neighbouring=LOCAL),
        lambda: PrivacyGuarantee.zcdp(0.0, neighbouring=LOCAL),
        lambda: PrivacyGuarantee(Notion.PURE, LOCAL, epsilon=1.0, delta=1e-5),
        lambda: PrivacyGuarantee(Notion.METRIC, LOCAL, epsilon=1.0),
        lambda: PrivacyGuarantee(Notion.PURE, "", epsilon=1.0),
        lambda: PrivacyGuarantee("renyi", LOCAL, epsilon=1.0),  # type: ignore[arg-type]
        lambda: PrivacyGuarantee(Notion.PURE, LOCAL, epsilon=True),
    ],
)
def test_invalid_guarantees_are_refused(build: object) -> None:
    with pytest.raises(ParameterError):
        build()  # type: ignore[operator]


@given(
    rho=st.floats(min_value=1e-6, max_value=100.0),
    delta=st.floats(min_value=1e-12, max_value=0.5),
)
def test_zcdp_conversion_is_bun_steinke(rho: float, delta: float) -> None:
    converted = PrivacyGuarantee.zcdp(rho, neighbouring=LOCAL).to_approximate(delta)
    assert converted.notion is Notion.APPROXIMATE
    assert converted.delta == delta
    assert converted.epsilon is not None
    assert math.isclose(converted.epsilon, rho + 2 * math.sqrt(rho * math.log(1 / delta)))


def test_pure_is_approximate_for_any_delta_and_metric_has_no_epsilon() -> None:
    assert PrivacyGuarantee.pure(2.0, neighbouring=LOCAL).to_approximate(1e-9).epsilon == 2.0
    metric = PrivacyGuarantee.metric_dp(1.0, metric="|s - s'|", neighbouring="signals")
    with pytest.raises(ParameterError, match="diameter"):
        metric.to_approximate(1e-6)


def test_to_dict_is_json_ready() -> None:
    described = PrivacyGuarantee.zcdp(0.5, neighbouring=LOCAL).to_dict()
    assert described == {
        "notion": "zcdp",
        "epsilon": None,
        "delta": 0.0,
        "rho": 0.5,
        "metric": None,
        "neighbouring": LOCAL,
    }
