"""The common shape of estimators that read a membership game's confusion matrix.

In the game [ZB23]_ each trial trains a model with or without a challenge point and an
attack guesses which; members are the positives. ``fit(tp=, fn=, tn=, fp=)`` takes the
counts, and the estimator stores ``counts_``, ``interval_``, ``point_`` and ``result_``
(an :class:`~privaudit.estimators.EpsilonEstimate`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import NoReturn, Self

from privaudit.errors import NotFittedError
from privaudit.estimators._checks import Sided, check_alpha, check_count, check_delta, check_sided
from privaudit.estimators._result import EpsilonEstimate, Rigor, ThreatModel, check_threat_model

POOLED_REASON = (
    "the counts pool {k} guesses per trained model as if they were independent trials "
    "(the multi-sample heuristic of [ZB23]); correlated guesses make any interval too "
    "narrow"
)


@dataclass(frozen=True)
class Counts:
    """A confusion matrix of a membership game (members are positives)."""

    tp: int
    fn: int
    tn: int
    fp: int

    @classmethod
    def checked(cls, *, tp: object, fn: object, tn: object, fp: object) -> Counts:
        """Build from user input, refusing negative or non-integer counts."""
        return cls(
            tp=check_count("tp", tp),
            fn=check_count("fn", fn),
            tn=check_count("tn", tn),
            fp=check_count("fp", fp),
        )

    @property
    def positives(self) -> int:
        """Trials where the challenge point was a member: TP + FN."""
        return self.tp + self.fn

    @property
    def negatives(self) -> int:
        """Trials where it was not: TN + FP."""
        return self.tn + self.fp

    def as_dict(self) -> dict[str, int]:
        return {"tp": self.tp, "fn": self.fn, "tn": self.tn, "fp": self.fp}


class CountsEstimator(ABC):
    """Base class: keyword-only parameters, ``fit(tp=, fn=, tn=, fp=)`` returns ``self``.

    Parameters
    ----------
    delta
        The δ at which ε is measured, in [0, 1).
    alpha
        One minus the confidence (credibility) level, in (0, 1).
    sided
        ``"two"`` for an interval at level 1 − α, ``"lower"`` for a lower bound.
    threat_model
        What the attack could observe (:class:`~privaudit.estimators.ThreatModel`).
    guesses_per_model
        How many guesses of the counts come from one trained model. Above 1 the
        trials are not independent and the result is labelled heuristic.
    """

    method: str = ""

    counts_: Counts
    interval_: tuple[float, float]
    point_: float | None
    result_: EpsilonEstimate

    def __init__(
        self,
        *,
        delta: float = 1e-5,
        alpha: float = 0.05,
        sided: Sided = "two",
        threat_model: ThreatModel | str = ThreatModel.UNSPECIFIED,
        guesses_per_model: int = 1,
    ) -> None:
        self.delta = check_delta(delta)
        self.alpha = check_alpha(alpha)
        self.sided: Sided = check_sided(sided)
        self.threat_model = check_threat_model(threat_model)
        self.guesses_per_model = check_count("guesses_per_model", guesses_per_model, minimum=1)

    def fit(self, *, tp: int, fn: int, tn: int, fp: int) -> Self:
        """Estimate ε from the confusion matrix of a membership game.

        Parameters
        ----------
        tp, fn
            Member trials guessed member (true positives) and guessed non-member.
        tn, fp
            Non-member trials guessed non-member and guessed member.

        Returns
        -------
        self
        """
        counts = Counts.checked(tp=tp, fn=fn, tn=tn, fp=fp)
        lower, upper, point = self._estimate(counts)
        rigor, reason = self._rigor()
        if self.guesses_per_model > 1:
            rigor, reason = Rigor.HEURISTIC, POOLED_REASON.format(k=self.guesses_per_model)
        self.counts_ = counts
        self.interval_ = (lower, upper)
        self.point_ = point
        self.result_ = EpsilonEstimate(
            method=self.method,
            lower=lower,
            upper=upper,
            point=point,
            alpha=self.alpha,
            sided=self.sided,
            delta=self.delta,
            rigor=rigor,
            reason=reason,
            threat_model=self.threat_model,
            evidence=counts.as_dict(),
        )
        return self

    @abstractmethod
    def _estimate(self, counts: Counts) -> tuple[float, float, float | None]:
        """(lower, upper, point) for the checked counts."""

    @abstractmethod
    def _rigor(self) -> tuple[Rigor, str]:
        """The label and its reason when every guess comes from its own model."""

    def _require_fitted(self) -> None:
        if "result_" not in self.__dict__:
            raise NotFittedError(
                f"{type(self).__name__} is not fitted; call fit(tp=..., fn=..., tn=..., fp=...) "
                "first"
            )

    def __getattr__(self, name: str) -> NoReturn:
        # Only reached for attributes that are not set: fitted ones before fit().
        if name.endswith("_") and not name.startswith("_"):
            raise NotFittedError(
                f"{type(self).__name__}.{name} is set by fit(); "
                "call fit(tp=..., fn=..., tn=..., fp=...) first"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(delta={self.delta!r}, alpha={self.alpha!r}, "
            f"sided={self.sided!r}, threat_model={self.threat_model.value!r}, "
            f"guesses_per_model={self.guesses_per_model!r})"
        )
