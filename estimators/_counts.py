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

import numpy as np
import numpy.typing as npt

from privaudit.errors import DataError, NotFittedError
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


IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class PerModelCounts:
    """Confusion matrices of a membership game, one per trained model (arrays of shape (M,)).

    Entry ``m`` counts the guesses scored against trained model ``m``: several guesses
    per model (the multi-sample heuristic) share that model's training run.
    """

    tp: IntArray
    fn: IntArray
    tn: IntArray
    fp: IntArray

    @classmethod
    def checked(cls, *, tp: object, fn: object, tn: object, fp: object) -> PerModelCounts:
        """Build from four equal-length 1-D sequences of non-negative integers."""
        arrays = {}
        for name, value in (("tp", tp), ("fn", fn), ("tn", tn), ("fp", fp)):
            array = np.asarray(value)
            if array.ndim != 1 or array.size == 0:
                raise DataError(
                    f"per-model counts must be 1-D arrays with one entry per trained model; "
                    f"{name} has shape {array.shape}",
                    parameter=name,
                )
            if array.dtype.kind == "f" and np.all(np.isfinite(array)):
                if not np.all(array == np.round(array)):
                    raise DataError(f"{name} must hold integer counts", parameter=name)
                array = array.astype(np.int64)
            if array.dtype.kind not in "iu" or array.dtype == np.bool_:
                raise DataError(
                    f"{name} must hold integer counts; got dtype {array.dtype}", parameter=name
                )
            if np.any(array < 0):
                raise DataError(f"{name} must hold counts >= 0", parameter=name)
            arrays[name] = array.astype(np.int64)
        sizes = {array.size for array in arrays.values()}
        if len(sizes) != 1:
            raise DataError(
                "tp, fn, tn and fp must have one entry per trained model each; got lengths "
                + ", ".join(f"{name}={array.size}" for name, array in arrays.items())
            )
        counts = cls(**arrays)
        if np.any(counts.positives + counts.negatives == 0):
            raise DataError("every trained model must contribute at least one guess")
        return counts

    @property
    def models(self) -> int:
        """M, the number of trained models."""
        return int(self.tp.size)

    @property
    def positives(self) -> IntArray:
        """Member guesses per model: TP + FN."""
        return self.tp + self.fn

    @property
    def negatives(self) -> IntArray:
        """Non-member guesses per model: TN + FP."""
        return self.tn + self.fp

    @property
    def guesses_per_model(self) -> int:
        """The most guesses any one model contributed."""
        return int((self.positives + self.negatives).max())

    def pooled(self) -> Counts:
        """The four counts summed over models (what the pooled heuristic uses)."""
        return Counts(
            tp=int(self.tp.sum()),
            fn=int(self.fn.sum()),
            tn=int(self.tn.sum()),
            fp=int(self.fp.sum()),
        )


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
    per_model_counts_: PerModelCounts | None
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

    def fit(
        self,
        *,
        tp: int | npt.ArrayLike,
        fn: int | npt.ArrayLike,
        tn: int | npt.ArrayLike,
        fp: int | npt.ArrayLike,
    ) -> Self:
        """Estimate ε from the confusion matrix of a membership game.

        Parameters
        ----------
        tp, fn
            Member trials guessed member (true positives) and guessed non-member.
        tn, fp
            Non-member trials guessed non-member and guessed member.
            Each is a count, or a 1-D array with one count per trained model. Per-model
            arrays are pooled (summed) by every method except
            ``BayesianEpsilon(method="hierarchical")``, which models them; when a model
            contributes more than one guess the pooled result is labelled heuristic.

        Returns
        -------
        self
        """
        per_model: PerModelCounts | None = None
        if all(np.ndim(value) == 0 for value in (tp, fn, tn, fp)):
            counts = Counts.checked(tp=tp, fn=fn, tn=tn, fp=fp)
            pooled_guesses = self.guesses_per_model
        else:
            per_model = PerModelCounts.checked(tp=tp, fn=fn, tn=tn, fp=fp)
            counts = per_model.pooled()
            pooled_guesses = max(self.guesses_per_model, per_model.guesses_per_model)
        lower, upper, point = self._estimate(counts, per_model)
        rigor, reason = self._rigor()
        if pooled_guesses > 1 and not self._models_correlation:
            rigor, reason = Rigor.HEURISTIC, POOLED_REASON.format(k=pooled_guesses)
        self.counts_ = counts
        self.per_model_counts_ = per_model
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
            evidence=counts.as_dict() | ({"models": per_model.models} if per_model else {}),
        )
        return self

    @property
    def _models_correlation(self) -> bool:
        """True for a method that models the correlation of guesses within a model."""
        return False

    @abstractmethod
    def _estimate(
        self, counts: Counts, per_model: PerModelCounts | None
    ) -> tuple[float, float, float | None]:
        """(lower, upper, point) for the checked (pooled) counts and, where given, the
        per-model counts they were summed from."""

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
