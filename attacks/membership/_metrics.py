"""How well membership scores separate members from non-members.

Conventions follow the anchors (ML Privacy Meter, LiRA's ``plot.py``, ART,
TF-Privacy; see [CCN22]_ Section III-B): members are the positive class and a higher
score means "member".

* The ROC curve has one point per distinct score threshold (guess "member" when
  ``score >= threshold``), starting at (0, 0); no collinear point is dropped, i.e.
  ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``.
* AUC is the trapezoidal area under that curve (tied scores count one half).
* TPR at FPR ``x`` is the TPR of the **last** ROC point with ``FPR <= x``, without
  interpolation. It is only resolved when ``x · n_nonmembers >= 1``: below that, the
  figure is the TPR at zero false positives, and ``resolved`` says so.
* Balanced accuracy is ``max_t 1 − (FPR + FNR)/2``; membership advantage is
  ``max_t (TPR − FPR)`` [YGFJ18]_ (= 2 · balanced accuracy − 1). TF-Privacy reports
  ``max |TPR − FPR|`` instead, which also credits an attack that is worse than chance.

Every figure is reported with the numbers of members and non-members it was computed
on, and each TPR with its exact (Clopper-Pearson) 95% interval over the members.

Integration point (issue 6, item 2): an empirical ε from these scores, with an honest
threshold-selection protocol, comes from ``privaudit.estimators`` (the
``estimate_from_scores`` entry point being added there); this module deliberately
selects no threshold and reports no ε.

References
----------
.. [CCN22] N. Carlini, S. Chien, M. Nasr, S. Song, A. Terzis, F. Tramèr, "Membership
   Inference Attacks From First Principles", IEEE S&P 2022, arXiv:2112.03570.
.. [YGFJ18] S. Yeom, I. Giacomelli, M. Fredrikson, S. Jha, "Privacy Risk in Machine
   Learning: Analyzing the Connection to Overfitting", IEEE CSF 2018.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from privaudit.errors import DataError

__all__ = [
    "DEFAULT_FPR_LIMITS",
    "MembershipMetrics",
    "RocCurve",
    "TprAtFpr",
    "membership_metrics",
    "roc_auc",
    "roc_curve",
]

DEFAULT_FPR_LIMITS = (0.1, 0.01, 0.001, 0.0)
"""10%, 1%, 0.1% and 0% FPR."""

_CONFIDENCE = 0.95


@dataclass(frozen=True)
class RocCurve:
    """ROC points, one per distinct threshold, from (0, 0) to (1, 1).

    ``thresholds[j]`` is the smallest score guessed "member" at point ``j``
    (``inf`` at the first point, where nothing is guessed member).
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    n_members: int
    n_nonmembers: int


def _checked(membership: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray(membership)
    values = np.asarray(scores, dtype=np.float64)
    if truth.dtype != np.bool_:
        if not np.issubdtype(truth.dtype, np.number) or not np.isin(truth, (0, 1)).all():
            raise DataError(
                f"membership must be booleans or 0/1 (1 = member); got dtype {truth.dtype}"
            )
        truth = truth.astype(bool)
    if truth.ndim != 1 or values.shape != truth.shape:
        raise DataError(
            "membership and scores must be 1-D arrays of the same length; got shapes "
            f"{truth.shape} and {values.shape}"
        )
    if not np.all(np.isfinite(values)):
        raise DataError("scores contain NaN or infinite values; every score must be finite")
    if truth.all() or not truth.any():
        raise DataError(
            "membership needs at least one member and one non-member to draw a ROC curve; "
            f"got {int(truth.sum())} members out of {truth.size}"
        )
    return truth, values


def roc_curve(membership: npt.ArrayLike, scores: npt.ArrayLike) -> RocCurve:
    """The full ROC curve of ``scores`` for ``membership`` (True = member).

    Examples
    --------
    >>> curve = roc_curve([True, False, True, False], [0.9, 0.8, 0.8, 0.1])
    >>> curve.fpr.tolist(), curve.tpr.tolist()
    ([0.0, 0.0, 0.5, 1.0], [0.0, 0.5, 1.0, 1.0])
    """
    truth, values = _checked(membership, scores)
    order = np.argsort(-values, kind="stable")
    ordered, hits = values[order], truth[order]
    # The last index of each run of equal scores: a threshold admits a whole tie.
    ends = np.flatnonzero(np.diff(ordered) != 0)
    ends = np.append(ends, ordered.size - 1)
    true_positives = np.cumsum(hits)[ends]
    false_positives = (ends + 1) - true_positives
    n_members = int(truth.sum())
    n_nonmembers = truth.size - n_members
    return RocCurve(
        fpr=np.concatenate([[0.0], false_positives / n_nonmembers]),
        tpr=np.concatenate([[0.0], true_positives / n_members]),
        thresholds=np.concatenate([[np.inf], ordered[ends]]),
        n_members=n_members,
        n_nonmembers=n_nonmembers,
    )


def roc_auc(membership: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the ROC curve (0.5 for scores independent of membership).

    Examples
    --------
    >>> roc_auc([True, False, True, False], [0.9, 0.8, 0.8, 0.1])
    0.875
    """
    curve = roc_curve(membership, scores)
    return float(np.trapezoid(curve.tpr, curve.fpr))


@dataclass(frozen=True)
class TprAtFpr:
    """The TPR of the last ROC point with FPR <= ``fpr_limit``, with its evidence.

    Attributes
    ----------
    fpr_limit
        The requested FPR bound ``x``.
    tpr, fpr
        The TPR and the FPR actually reached at that point.
    true_positives, false_positives
        The counts behind them.
    tpr_interval
        Exact (Clopper-Pearson) 95% interval of the TPR over the members.
    n_members, n_nonmembers
        The numbers of members and non-members the figure comes from.
    resolved
        ``x · n_nonmembers >= 1``: at least one false positive was allowed. If false
        (any ``x < 1/n_nonmembers``, e.g. 0.1% with fewer than 1000 non-members), the
        figure is the TPR at zero false positives; collect more non-members.
    """

    fpr_limit: float
    tpr: float
    fpr: float
    true_positives: int
    false_positives: int
    tpr_interval: tuple[float, float]
    n_members: int
    n_nonmembers: int
    resolved: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "fpr_limit": self.fpr_limit,
            "tpr": self.tpr,
            "fpr": self.fpr,
            "true_positives": self.true_positives,
            "false_positives": self.false_positives,
            "tpr_interval_95": list(self.tpr_interval),
            "n_members": self.n_members,
            "n_nonmembers": self.n_nonmembers,
            "resolved": self.resolved,
        }


def _clopper_pearson(successes: int, trials: int) -> tuple[float, float]:
    tail = (1 - _CONFIDENCE) / 2
    low = 0.0 if successes == 0 else float(stats.beta.ppf(tail, successes, trials - successes + 1))
    high = (
        1.0
        if successes == trials
        else float(stats.beta.isf(tail, successes + 1, trials - successes))
    )
    return (low, high)


def tpr_at_fpr(curve: RocCurve, fpr_limit: float) -> TprAtFpr:
    """The TPR of the last point of ``curve`` with FPR <= ``fpr_limit``."""
    if not 0.0 <= fpr_limit <= 1.0:
        raise DataError(f"fpr_limit must be in [0, 1]; got {fpr_limit!r}")
    # Compare counts, not rates, so that 0.1 * 10 is not lost to rounding.
    allowed = math.floor(fpr_limit * curve.n_nonmembers + 1e-9)
    false_positives = np.rint(curve.fpr * curve.n_nonmembers).astype(np.int64)
    index = int(np.flatnonzero(false_positives <= allowed)[-1])
    true_positives = round(float(curve.tpr[index]) * curve.n_members)
    return TprAtFpr(
        fpr_limit=float(fpr_limit),
        tpr=float(curve.tpr[index]),
        fpr=float(curve.fpr[index]),
        true_positives=true_positives,
        false_positives=int(false_positives[index]),
        tpr_interval=_clopper_pearson(true_positives, curve.n_members),
        n_members=curve.n_members,
        n_nonmembers=curve.n_nonmembers,
        resolved=allowed >= 1,
    )


@dataclass(frozen=True)
class MembershipMetrics:
    """How well one attack's scores separate the target's members from non-members.

    Attributes
    ----------
    auc
        Area under the ROC curve.
    tpr_at_fpr
        One :class:`TprAtFpr` per requested FPR limit, in the order asked.
    balanced_accuracy
        ``max_t 1 − (FPR + FNR)/2`` over thresholds.
    advantage
        ``max_t (TPR − FPR)``, the membership advantage of [YGFJ18]_.
    n_members, n_nonmembers
        The numbers of members and non-members every figure was computed on.
    roc
        The full ROC curve (not part of :meth:`to_dict`).
    """

    auc: float
    tpr_at_fpr: tuple[TprAtFpr, ...]
    balanced_accuracy: float
    advantage: float
    n_members: int
    n_nonmembers: int
    roc: RocCurve = field(repr=False, compare=False)

    def tpr(self, fpr_limit: float) -> float:
        """The TPR at ``fpr_limit`` (one of the limits it was computed for)."""
        for entry in self.tpr_at_fpr:
            if entry.fpr_limit == fpr_limit:
                return entry.tpr
        limits = [entry.fpr_limit for entry in self.tpr_at_fpr]
        raise DataError(f"no TPR at FPR {fpr_limit!r} was computed; available: {limits}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description; every figure beside the counts it rests on."""
        counts = {"n_members": self.n_members, "n_nonmembers": self.n_nonmembers}
        return {
            "auc": self.auc,
            "balanced_accuracy": self.balanced_accuracy,
            "advantage": self.advantage,
            **counts,
            "tpr_at_fpr": [entry.to_dict() for entry in self.tpr_at_fpr],
        }


def membership_metrics(
    membership: npt.ArrayLike,
    scores: npt.ArrayLike,
    *,
    fpr_limits: tuple[float, ...] = DEFAULT_FPR_LIMITS,
) -> MembershipMetrics:
    """ROC, AUC, TPR at low FPR, balanced accuracy and advantage of membership scores.

    Parameters
    ----------
    membership
        True membership of each example in the target (``keep[0]``): True = member.
    scores
        The attack's scores (``attack.scores_``); higher = member.
    fpr_limits
        The FPR bounds at which to report the TPR.

    Examples
    --------
    >>> m = membership_metrics([1, 1, 0, 0, 1, 0], [0.9, 0.7, 0.7, 0.2, 0.4, 0.1])
    >>> m.auc, m.tpr(0.0), m.n_members, m.n_nonmembers
    (0.8333333333333334, 0.3333333333333333, 3, 3)
    """
    curve = roc_curve(membership, scores)
    gap = curve.tpr - curve.fpr
    return MembershipMetrics(
        auc=float(np.trapezoid(curve.tpr, curve.fpr)),
        tpr_at_fpr=tuple(tpr_at_fpr(curve, float(limit)) for limit in fpr_limits),
        balanced_accuracy=float(0.5 + 0.5 * gap.max()),
        advantage=float(gap.max()),
        n_members=curve.n_members,
        n_nonmembers=curve.n_nonmembers,
        roc=curve,
    )
