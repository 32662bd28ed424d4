"""The privacy guarantee every mechanism reports.

References
----------
.. [DR14] C. Dwork and A. Roth, "The Algorithmic Foundations of Differential Privacy",
   Foundations and Trends in TCS, 2014 (pure and approximate DP).
.. [BS16] M. Bun and T. Steinke, "Concentrated Differential Privacy: Simplifications,
   Extensions, and Lower Bounds", TCC 2016 (zCDP; Proposition 1.3 for the conversion).
.. [CABP13] K. Chatzikokolakis, M. Andrés, N. Bordenabe and C. Palamidessi,
   "Broadening the Scope of Differential Privacy Using Metrics", PETS 2013 (metric DP).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from privaudit.errors import ParameterError

__all__ = ["Notion", "PrivacyGuarantee"]


class Notion(StrEnum):
    """Which definition of differential privacy a guarantee is stated in."""

    PURE = "pure"
    """ε-DP: ``P[M(x) ∈ S] <= e^ε P[M(x') ∈ S]`` for neighbours x, x'."""
    APPROXIMATE = "approximate"
    """(ε, δ)-DP: the same with an additive δ."""
    METRIC = "metric"
    """ε·d-privacy: the factor is ``e^(ε d(x, x'))`` for a metric d on inputs."""
    ZCDP = "zcdp"
    """ρ-zero-concentrated DP: Rényi divergence of order α at most ρα, for all α > 1."""


@dataclass(frozen=True, slots=True)
class PrivacyGuarantee:
    """A differential-privacy guarantee and the neighbour relation it is stated for.

    Parameters
    ----------
    notion
        The definition (:class:`Notion` or its string value).
    neighbouring
        What a neighbour is, in words: ``"any two inputs of one user (local model)"``,
        ``"add or remove one record"``, ``"replace one record"``, ...
    epsilon
        ε for pure, approximate and metric DP (for metric DP it is per unit of ``metric``).
    delta
        δ for approximate DP; must be 0 otherwise.
    rho
        ρ for zCDP (``epsilon`` must then be left ``None``).
    metric
        For metric DP, the distance on inputs, e.g. ``"|s - s'| (signal space)"``.

    Examples
    --------
    >>> PrivacyGuarantee.pure(1.0, neighbouring="any two inputs of one user")
    PrivacyGuarantee(pure, ε=1, neighbours: any two inputs of one user)
    >>> g = PrivacyGuarantee.zcdp(0.5, neighbouring="add or remove one stream element")
    >>> round(g.to_approximate(1e-6).epsilon, 4)
    5.7565
    """

    notion: Notion
    neighbouring: str
    epsilon: float | None = None
    delta: float = 0.0
    rho: float | None = None
    metric: str | None = None

    def __post_init__(self) -> None:
        try:
            notion = Notion(self.notion)
        except ValueError:
            raise ParameterError(
                f"notion must be one of {[n.value for n in Notion]}; got {self.notion!r}"
            ) from None
        object.__setattr__(self, "notion", notion)
        if not isinstance(self.neighbouring, str) or not self.neighbouring.strip():
            raise ParameterError("neighbouring must describe what a neighbour is, in words")
        if notion is Notion.ZCDP:
            _check_positive("rho", self.rho)
            if self.epsilon is not None or self.delta != 0.0:
                raise ParameterError("a zCDP guarantee is stated by rho alone; leave epsilon/delta")
        else:
            _check_positive("epsilon", self.epsilon, allow_zero=True, allow_inf=True)
            if self.rho is not None:
                raise ParameterError(f"rho applies to zCDP only, not to {notion.value} DP")
        if notion is Notion.APPROXIMATE:
            if not (isinstance(self.delta, float | int) and 0.0 < self.delta < 1.0):
                raise ParameterError(f"approximate DP needs 0 < delta < 1; got {self.delta!r}")
        elif self.delta != 0.0:
            raise ParameterError(
                f"delta must be 0 for {notion.value} DP; got {self.delta!r} "
                "(use PrivacyGuarantee.approximate for (epsilon, delta)-DP)"
            )
        if notion is Notion.METRIC and not self.metric:
            raise ParameterError('metric DP needs the metric, e.g. metric="|s - s\'|"')

    @classmethod
    def pure(cls, epsilon: float, *, neighbouring: str) -> PrivacyGuarantee:
        """ε-DP."""
        return cls(Notion.PURE, neighbouring, epsilon=float(epsilon))

    @classmethod
    def approximate(cls, epsilon: float, delta: float, *, neighbouring: str) -> PrivacyGuarantee:
        """(ε, δ)-DP."""
        return cls(Notion.APPROXIMATE, neighbouring, epsilon=float(epsilon), delta=float(delta))

    @classmethod
    def metric_dp(cls, epsilon: float, *, metric: str, neighbouring: str) -> PrivacyGuarantee:
        """ε·d-privacy for the metric ``metric``."""
        return cls(Notion.METRIC, neighbouring, epsilon=float(epsilon), metric=metric)

    @classmethod
    def zcdp(cls, rho: float, *, neighbouring: str) -> PrivacyGuarantee:
        """ρ-zCDP."""
        return cls(Notion.ZCDP, neighbouring, rho=float(rho))

    def to_approximate(self, delta: float) -> PrivacyGuarantee:
        """Convert to (ε, δ)-DP at the given δ.

        Pure DP is (ε, δ)-DP for every δ. zCDP uses ε = ρ + 2√(ρ ln(1/δ)) [BS16]_.
        Metric DP has no ε without a bound on the distance, so it raises.
        """
        if not 0.0 < delta < 1.0:
            raise ParameterError(f"delta must be in (0, 1); got {delta!r}")
        if self.notion is Notion.ZCDP:
            assert self.rho is not None
            epsilon = self.rho + 2.0 * math.sqrt(self.rho * math.log(1.0 / delta))
            return PrivacyGuarantee.approximate(epsilon, delta, neighbouring=self.neighbouring)
        if self.notion is Notion.PURE:
            assert self.epsilon is not None
            return PrivacyGuarantee.approximate(self.epsilon, delta, neighbouring=self.neighbouring)
        if self.notion is Notion.APPROXIMATE:
            if delta < self.delta:
                raise ParameterError(f"cannot tighten delta from {self.delta} to {delta}")
            return self
        raise ParameterError(
            "metric DP has no (epsilon, delta) form without a bound on the input distance; "
            "multiply epsilon by the diameter of the input space first"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (used in reports and REST responses)."""
        return {
            "notion": self.notion.value,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "rho": self.rho,
            "metric": self.metric,
            "neighbouring": self.neighbouring,
        }

    def __repr__(self) -> str:
        if self.notion is Notion.ZCDP:
            params = f"ρ={self.rho:g}"
        elif self.notion is Notion.APPROXIMATE:
            params = f"ε={self.epsilon:g}, δ={self.delta:g}"
        elif self.notion is Notion.METRIC:
            params = f"ε={self.epsilon:g} per unit of {self.metric}"
        else:
            params = f"ε={self.epsilon:g}"
        return f"PrivacyGuarantee({self.notion.value}, {params}, neighbours: {self.neighbouring})"


def _check_positive(
    name: str, value: float | None, *, allow_zero: bool = False, allow_inf: bool = False
) -> None:
    if isinstance(value, bool) or not isinstance(value, float | int):
        raise ParameterError(f"{name} must be a number; got {value!r}")
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ParameterError(f"{name} must be finite; got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ParameterError(f"{name} must be {bound}; got {value!r}")
