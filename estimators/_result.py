"""What every estimator returns: an ε interval with honest labels.

Two labels travel with each number. :class:`Rigor` says whether the bound holds with
the stated probability whatever the truth is (``rigorous``: a frequentist guarantee
under the game's assumptions) or only under modelling choices (``heuristic``: a prior,
an approximate interval, or guesses pooled as if independent); ``reason`` says which.
:class:`ThreatModel` says what the attack could see: an ε measured by one attack is a
lower bound on the ε of the mechanism *against that attacker*, not an audit of the
worst case.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from privaudit.errors import ParameterError
from privaudit.estimators._checks import Sided

__all__ = ["EpsilonEstimate", "Rigor", "ThreatModel"]


class Rigor(StrEnum):
    """Whether a bound carries a frequentist guarantee."""

    RIGOROUS = "rigorous"
    """Holds with probability >= 1 − α for every true state (Clopper-Pearson, one-run)."""
    HEURISTIC = "heuristic"
    """Depends on a prior, an approximation or an independence assumption (Bayesian
    credible intervals, Jeffreys intervals, several guesses pooled per trained model)."""


class ThreatModel(StrEnum):
    """What the attacker that produced the evidence could observe."""

    UNSPECIFIED = "unspecified"
    """Not stated by the caller: read the estimate as valid for the attack used only."""
    BLACK_BOX = "black-box"
    """Outputs of the trained model only (LOSS, LiRA, RMIA, label-only attacks)."""
    WHITE_BOX = "white-box"
    """Parameters, gradients or intermediate models (e.g. gradient canaries in DP-SGD)."""
    MECHANISM = "mechanism"
    """The auditor chose the neighbouring inputs and saw the mechanism's raw output."""


def check_threat_model(value: object) -> ThreatModel:
    """Return ``value`` as a :class:`ThreatModel`."""
    if isinstance(value, str) and value in ThreatModel.__members__.values():
        return ThreatModel(value)
    raise ParameterError(
        f"threat_model must be one of {[t.value for t in ThreatModel]}; got {value!r}",
        parameter="threat_model",
    )


@dataclass(frozen=True)
class EpsilonEstimate:
    """An empirical ε interval and how to read it.

    Attributes
    ----------
    method
        The estimator: ``"joint-beta"``, ``"clopper-pearson"``, ``"jeffreys"`` or
        ``"one-run"``.
    lower, upper
        The interval for the ε the attack exhibits; ``upper`` is ``inf`` for a
        one-sided (``sided="lower"``) bound.
    point
        A point estimate where the method has one: the posterior median (joint-beta),
        the ε of the observed rates (Clopper-Pearson, Jeffreys); ``None`` otherwise.
    alpha
        One minus the confidence (or credibility) level.
    sided
        ``"two"`` for ``[lower, upper]`` at level 1 − α, ``"lower"`` for ``[lower, ∞)``.
    delta
        The δ at which ε is measured.
    rigor, reason
        The :class:`Rigor` label and, in words, what it rests on.
    threat_model
        What the attacker could see (:class:`ThreatModel`).
    evidence
        The counts the estimate was computed from.
    """

    method: str
    lower: float
    upper: float
    point: float | None
    alpha: float
    sided: Sided
    delta: float
    rigor: Rigor
    reason: str
    threat_model: ThreatModel
    evidence: dict[str, int] = field(default_factory=dict, hash=False)

    @property
    def interval(self) -> tuple[float, float]:
        """``(lower, upper)``."""
        return (self.lower, self.upper)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (infinite bounds become ``None``)."""

        def finite(value: float | None) -> float | None:
            return None if value is None or math.isinf(value) else value

        return {
            "method": self.method,
            "lower": finite(self.lower),
            "upper": finite(self.upper),
            "point": finite(self.point),
            "alpha": self.alpha,
            "sided": self.sided,
            "delta": self.delta,
            "rigor": self.rigor.value,
            "reason": self.reason,
            "threat_model": self.threat_model.value,
            "evidence": dict(self.evidence),
        }

    def __str__(self) -> str:
        level = f"{100 * (1 - self.alpha):g}%"
        if self.sided == "lower":
            bound = f"ε >= {self.lower:.4g}"
        else:
            bound = f"ε in [{self.lower:.4g}, {self.upper:.4g}]"
        return (
            f"{bound} at δ={self.delta:g} ({self.method}, {level} {self.sided}-sided, "
            f"{self.rigor.value}; threat model: {self.threat_model.value})"
        )
