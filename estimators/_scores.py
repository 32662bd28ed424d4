"""ε from attack scores: choose the decision threshold honestly, then count.

An attack gives each challenge a score (higher: more likely a member). Thresholding
at ``t`` (guess member iff score >= t) gives a confusion matrix and an ε bound. The
best ``t`` is not known in advance, and taking the maximum bound over thresholds on
the same scores overstates ε: the multiple-comparison problem that TF-Privacy's
``EpsilonLowerBound`` and ``compute_privacy_curve_lo_hi`` leave uncorrected
(reference/auditing.md §2.2). Two honest protocols:

* ``"split"``: a random half of the challenges (members and non-members alike)
  chooses the threshold that maximises the Clopper-Pearson bound; the bound is
  computed on the other half, which the choice never saw [DWWZK18]_.
* ``"bonferroni"``: every threshold of a grid fixed in advance is tried on all
  challenges, each at level α/m for m thresholds, so all m bounds hold together with
  probability >= 1 − α (union bound) and the largest may be reported.

References
----------
.. [DWWZK18] Z. Ding, Y. Wang, G. Wang, D. Zhang, D. Kifer, "Detecting Violations of
   Differential Privacy", CCS 2018.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from privaudit.errors import DataError, LimitExceededError, ParameterError
from privaudit.estimators._bayes import BayesianEpsilon
from privaudit.estimators._checks import check_alpha, check_choice, check_delta, check_fraction
from privaudit.estimators._frequentist import ClopperPearsonEpsilon, clopper_pearson_lower_bounds
from privaudit.estimators._result import EpsilonEstimate, Rigor, ThreatModel, check_threat_model
from privaudit.randomness import simulation_generator

__all__ = ["ScoreEstimate", "estimate_from_scores"]

ThresholdSelection = Literal["split", "bonferroni"]
SELECTIONS: tuple[ThresholdSelection, ...] = ("split", "bonferroni")

MAX_THRESHOLDS = 10_000
"""Most thresholds a Bonferroni grid may hold (beyond it each gets a vanishing α/m)."""

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ScoreEstimate:
    """The outcome of :func:`estimate_from_scores`.

    Attributes
    ----------
    threshold
        The chosen threshold: the attack guesses member iff ``score >= threshold``.
    threshold_selection
        ``"split"`` or ``"bonferroni"``.
    thresholds_tried
        How many thresholds the choice compared.
    selection_size, evaluation_size
        Challenges used to choose the threshold and to count (``"bonferroni"``: 0 and
        all of them).
    clopper_pearson, bayesian
        Lower bounds (``sided="lower"``) from the counted challenges at the chosen
        threshold: the first rigorous, the second heuristic. Their ``evidence`` holds
        the confusion matrix; ``alpha`` is the overall level.
    """

    threshold: float
    threshold_selection: ThresholdSelection
    thresholds_tried: int
    selection_size: int
    evaluation_size: int
    clopper_pearson: EpsilonEstimate
    bayesian: EpsilonEstimate

    @property
    def lower_bound(self) -> float:
        """The rigorous (Clopper-Pearson) lower bound on ε."""
        return self.clopper_pearson.lower

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "threshold": self.threshold,
            "threshold_selection": self.threshold_selection,
            "thresholds_tried": self.thresholds_tried,
            "selection_size": self.selection_size,
            "evaluation_size": self.evaluation_size,
            "clopper_pearson": self.clopper_pearson.to_dict(),
            "bayesian": self.bayesian.to_dict(),
        }


def estimate_from_scores(
    scores: npt.ArrayLike,
    is_member: npt.ArrayLike,
    *,
    delta: float = 1e-5,
    alpha: float = 0.05,
    threshold_selection: ThresholdSelection = "split",
    thresholds: npt.ArrayLike | None = None,
    selection_fraction: float = 0.5,
    threat_model: ThreatModel | str = ThreatModel.UNSPECIFIED,
    guesses_per_model: int = 1,
    rng: np.random.Generator | None = None,
) -> ScoreEstimate:
    """Lower-bound ε from attack scores, choosing the threshold honestly.

    Parameters
    ----------
    scores
        One finite score per challenge; higher means "more likely a member" (negate a
        loss). Orient the scores before looking at them.
    is_member
        One boolean per challenge: whether it was a member (the positive class).
    delta, alpha
        ε is bounded at δ; the rigorous bound fails with probability at most α
        (selection included).
    threshold_selection
        ``"split"`` (choose on a random ``selection_fraction`` of the challenges, count
        on the rest) or ``"bonferroni"`` (try every one of ``thresholds`` on all
        challenges at α/m each).
    thresholds
        For ``"bonferroni"``: the grid, fixed before looking at the scores (e.g.
        ``np.linspace(0, 1, 101)`` for probabilities), at most
        :data:`MAX_THRESHOLDS`. For ``"split"``: optional candidates (default: every
        distinct score of the selection part, or :data:`MAX_THRESHOLDS` of its
        quantiles when there are more).
    selection_fraction
        The share of challenges that chooses a ``"split"`` threshold, in (0, 1).
    threat_model
        What the attack could see (:class:`~privaudit.estimators.ThreatModel`).
    guesses_per_model
        How many of the challenges were scored against one trained model: 1 when each
        challenge had its own training run, the number of challenges when all of them
        were scored against one target (a membership audit of one model). Above 1 the
        guesses are not independent trials and both bounds are labelled heuristic
        (the multi-sample heuristic, docs/estimators.md).
    rng
        Draws the random split (simulation randomness: nothing is released from it);
        ``None`` draws a fresh unseeded split.

    Returns
    -------
    ScoreEstimate
        The threshold, how it was chosen, and the Clopper-Pearson (rigorous) and
        Bayesian (heuristic) lower bounds at it.

    Examples
    --------
    >>> import numpy as np
    >>> from privaudit import simulation_generator
    >>> rng = simulation_generator(0)
    >>> member = rng.random(20_000) < 0.5
    >>> scores = rng.laplace(np.where(member, 1.0, 0.0), 0.5)  # a 2-DP pair of laws
    >>> result = estimate_from_scores(scores, member, delta=0.0, rng=rng)
    >>> 1.0 < result.lower_bound <= 2.0, result.threshold_selection
    (True, 'split')
    """
    values, members = _check_scores(scores, is_member)
    delta = check_delta(delta)
    alpha = check_alpha(alpha)
    selection: ThresholdSelection = check_choice(  # type: ignore[assignment]
        "threshold_selection", threshold_selection, SELECTIONS
    )
    threat = check_threat_model(threat_model)
    grid = None if thresholds is None else _check_thresholds(thresholds)
    if selection == "bonferroni":
        if grid is None:
            raise ParameterError(
                "threshold_selection='bonferroni' needs thresholds: a grid fixed before "
                "looking at the scores (e.g. numpy.linspace(0, 1, 101) for probabilities); "
                "or use threshold_selection='split'",
                parameter="thresholds",
            )
        level = alpha / grid.size
        bounds = _bounds_at(values, members, grid, level, delta)
        best = int(np.argmax(bounds))
        threshold = float(grid[best])
        counted_scores, counted_members = values, members
        tried, selection_size = int(grid.size), 0
        reason = (
            f"Bonferroni over {grid.size} thresholds fixed in advance: each bound at "
            f"α/{grid.size}, so all hold together with probability >= 1 − α; "
        )
    else:
        fraction = check_fraction("selection_fraction", selection_fraction)
        generator = simulation_generator(None) if rng is None else rng
        chosen = generator.random(values.size) < fraction
        for part, name in ((chosen, "selection"), (~chosen, "evaluation")):
            if not (members[part].any() and (~members[part]).any()):
                raise DataError(
                    f"the {name} part of the split has no members or no non-members; "
                    "pass more challenges of each kind (at least a few dozen)"
                )
        pick_scores, pick_members = values[chosen], members[chosen]
        candidates = np.unique(pick_scores) if grid is None else grid
        if candidates.size > MAX_THRESHOLDS:  # quantiles of the selection part only
            candidates = np.unique(np.quantile(pick_scores, np.linspace(0, 1, MAX_THRESHOLDS)))
        bounds = _bounds_at(pick_scores, pick_members, candidates, alpha, delta)
        best = int(np.argmax(bounds))
        threshold = float(candidates[best])
        counted_scores, counted_members = values[~chosen], members[~chosen]
        tried, selection_size = int(candidates.size), int(chosen.sum())
        level = alpha
        reason = (
            f"threshold chosen among {candidates.size} on a random {selection_size} of the "
            f"challenges and counted on the other {counted_scores.size}; "
        )
    guess = counted_scores >= threshold
    counts = {
        "tp": int(np.sum(guess & counted_members)),
        "fn": int(np.sum(~guess & counted_members)),
        "tn": int(np.sum(~guess & ~counted_members)),
        "fp": int(np.sum(guess & ~counted_members)),
    }
    settings: dict[str, Any] = {
        "delta": delta,
        "alpha": level,
        "sided": "lower",
        "threat_model": threat,
        "guesses_per_model": guesses_per_model,
    }
    exact = ClopperPearsonEpsilon(**settings).fit(**counts).result_
    bayes = BayesianEpsilon(**settings).fit(**counts).result_
    return ScoreEstimate(
        threshold=threshold,
        threshold_selection=selection,
        thresholds_tried=tried,
        selection_size=selection_size,
        evaluation_size=int(counted_scores.size),
        clopper_pearson=dataclasses.replace(exact, alpha=alpha, reason=reason + exact.reason),
        bayesian=dataclasses.replace(
            bayes, alpha=alpha, rigor=Rigor.HEURISTIC, reason=reason + bayes.reason
        ),
    )


def _bounds_at(
    scores: FloatArray, members: npt.NDArray[np.bool_], thresholds: FloatArray, alpha: float,
    delta: float,
) -> FloatArray:  # fmt: skip
    """Clopper-Pearson lower bounds of the test ``score >= t`` for every ``t``."""
    member_scores = np.sort(scores[members])
    other_scores = np.sort(scores[~members])
    tp = member_scores.size - np.searchsorted(member_scores, thresholds, side="left")
    fp = other_scores.size - np.searchsorted(other_scores, thresholds, side="left")
    tp, fp = tp.astype(np.int64), fp.astype(np.int64)
    return clopper_pearson_lower_bounds(
        tp, member_scores.size - tp, other_scores.size - fp, fp, alpha, delta
    )


def _check_scores(
    scores: npt.ArrayLike, is_member: npt.ArrayLike
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    values = np.asarray(scores)
    members = np.asarray(is_member)
    if values.ndim != 1 or members.ndim != 1:
        raise DataError(
            f"scores and is_member must be 1-D arrays; got shapes {values.shape} and "
            f"{members.shape}"
        )
    if values.size != members.size:
        raise DataError(
            f"scores and is_member must have one entry per challenge; got {values.size} "
            f"scores and {members.size} labels"
        )
    if not (np.issubdtype(values.dtype, np.number) and not np.iscomplexobj(values)):
        raise DataError(f"scores must be real numbers; got dtype {values.dtype}")
    values = values.astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise DataError("scores must be finite (no NaN or infinity)")
    if members.dtype != np.bool_:
        if not (np.issubdtype(members.dtype, np.integer) and np.isin(members, (0, 1)).all()):
            raise DataError("is_member must be booleans (or 0/1 integers)")
        members = members.astype(bool)
    if not members.any() or members.all():
        raise DataError(
            "need both members and non-members: is_member is all "
            f"{'True' if members.size and members.all() else 'False'}"
        )
    return values, members


def _check_thresholds(thresholds: npt.ArrayLike) -> FloatArray:
    grid = np.asarray(thresholds, dtype=float)
    if grid.ndim != 1 or grid.size == 0:
        raise DataError(f"thresholds must be a non-empty 1-D array; got shape {grid.shape}")
    if grid.size > MAX_THRESHOLDS:
        raise LimitExceededError(
            f"at most {MAX_THRESHOLDS} thresholds; got {grid.size}", limit=MAX_THRESHOLDS
        )
    if not np.all(np.isfinite(grid)):
        raise DataError("thresholds must be finite")
    unique: FloatArray = np.unique(grid)
    return unique
