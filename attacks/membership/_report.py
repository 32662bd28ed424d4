"""From membership scores to the canonical audit report (``privaudit.reports``).

:func:`build_membership_report` takes each attack's scores and the target's true
membership and fills the report: the metrics of :func:`membership_metrics` with their
counts and intervals, ROC points and score histograms for plots, and the empirical ε
of each attack through :func:`privaudit.estimators.estimate_from_scores`, whose
threshold is chosen honestly (a held-out split, or Bonferroni over a fixed grid).

Two corrections keep the ε figures honest:

* **Several attacks.** Reporting the largest of m bounds is another selection, so each
  attack's bounds are computed at level α/m (Bonferroni) and the largest holds with
  probability at least 1 − α.
* **One target model.** When every challenge is scored against one trained model the
  guesses are not independent trials (the multi-sample heuristic of
  reference/auditing.md §3.3), and every bound is labelled heuristic. A rigorous bound
  needs one training run per challenge (``guesses_per_model=1``) or the one-run audit
  of Steinke et al. (``privaudit.estimators.OneRunAudit``) with independent coins.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import JsonValue

from privaudit.attacks.membership._base import MembershipAttack
from privaudit.attacks.membership._metrics import (
    DEFAULT_FPR_LIMITS,
    MembershipMetrics,
    RocCurve,
    membership_metrics,
)
from privaudit.errors import DataError, ParameterError
from privaudit.estimators import BayesianEpsilon, ThreatModel, estimate_from_scores
from privaudit.randomness import simulation_generator
from privaudit.registry import attacks as attack_registry
from privaudit.reports import (
    Artifact,
    AttackMetrics,
    AttackResult,
    AuditReport,
    Counts,
    EpsilonResult,
    EpsilonSummary,
    Gate,
    Histogram,
    Inputs,
    PosteriorGrid,
    PosteriorSummary,
    RocPoints,
    ThreatModelInfo,
    TprAtFpr,
    collect_versions,
    evaluate_gates,
    to_json_value,
)

__all__ = ["BLACK_BOX_THREAT_MODEL", "build_membership_report"]

BLACK_BOX_THREAT_MODEL = (
    "The attacker sees the target model's predicted probabilities on the audited "
    "examples and knows their labels; reference-model attacks (LiRA, RMIA, shadow models) "
    "also train models with the target's recipe on data from the same distribution, "
    "knowing each reference model's training set. The figures are what these attacks "
    "achieve against this model: a weak result does not prove privacy, a strong one "
    "proves leakage."
)

MAX_ROC_POINTS = 1000
"""ROC points kept per attack for plots (the metrics use the full curve)."""
HISTOGRAM_BINS = 40
POSTERIOR_POINTS = 200


def build_membership_report(
    attacks: Mapping[str, MembershipAttack | npt.ArrayLike],
    membership: npt.ArrayLike,
    *,
    description: str,
    title: str = "Membership-inference audit",
    threat_model: str = "black-box",
    threat_description: str = BLACK_BOX_THREAT_MODEL,
    artifacts: Sequence[Artifact] = (),
    config: Mapping[str, Any] | None = None,
    gates: Sequence[Gate] = (),
    fpr_limits: tuple[float, ...] = DEFAULT_FPR_LIMITS,
    estimate_epsilon: bool = True,
    delta: float = 1e-5,
    alpha: float = 0.05,
    threshold_selection: Literal["split", "bonferroni"] = "split",
    thresholds: npt.ArrayLike | None = None,
    guesses_per_model: int | None = None,
    seconds: Mapping[str, float] | None = None,
    timings: Mapping[str, float] | None = None,
    notes: Sequence[str] = (),
    packages: Sequence[str] = ("scikit-learn", "torch"),
    rng: np.random.Generator | None = None,
) -> AuditReport:
    """The audit report of membership attacks on one target model.

    Parameters
    ----------
    attacks
        Display name → a fitted attack (its ``scores_``, registered name and
        parameters are read) or a plain array of scores (higher = member).
    membership
        The target's true membership of each example (``keep[0]``).
    description
        What was audited, in words (model, data, split).
    title, threat_model, threat_description
        The report's title and threat model (name and words).
    artifacts
        The inputs, with their SHA-256 (:class:`privaudit.reports.Artifact`).
    config
        The audit's configuration, as plain JSON values (numpy values are converted).
    gates
        Ceilings that decide the verdict (:func:`privaudit.reports.gate`).
    fpr_limits
        The FPRs at which the TPR is reported.
    estimate_epsilon
        Estimate ε from each attack's scores (a few tenths of a second per attack).
    delta, alpha
        ε is measured at δ; the largest lower bound over the attacks fails with
        probability at most α (each attack is estimated at α/m).
    threshold_selection, thresholds
        How :func:`~privaudit.estimators.estimate_from_scores` chooses the threshold:
        ``"split"`` (one random half of the challenges, the same for every attack,
        chooses; the other half counts) or ``"bonferroni"`` over ``thresholds`` fixed
        in advance.
    guesses_per_model
        How many challenges were scored against one trained model; default: all of
        them (one target model), which labels every ε bound heuristic.
    seconds
        Wall time of each attack, by display name.
    timings
        Wall time of other stages (``"train"``, ...) and, as ``"total"``, of the whole
        audit so far (default: the sum of the stages). The report adds ``"report"``,
        its own build time, and counts it in ``"total"``.
    notes
        Free-text remarks shown in the report.
    packages
        Packages whose installed version the report records (besides Python,
        privaudit, numpy and scipy); ones not installed are skipped.
    rng
        Draws the split (simulation randomness); ``None`` draws it from a fixed seed
        (0) so that a report is reproducible.

    Returns
    -------
    AuditReport
        Validated against the schema; render it with :func:`privaudit.reports.render`.

    Examples
    --------
    >>> import numpy as np
    >>> from privaudit.randomness import simulation_generator
    >>> rng = simulation_generator(0)
    >>> member = rng.random(400) < 0.5
    >>> report = build_membership_report(
    ...     {"noisy": member + rng.normal(size=400)}, member, description="toy scores")
    >>> report.attacks[0].metrics.auc > 0.6, report.verdict.status
    (True, 'not-gated')
    """
    started = time.perf_counter()
    truth = _membership(membership)
    if not attacks:
        raise ParameterError(
            "attacks is empty; pass at least one name → scores", parameter="attacks"
        )
    scored = {name: _scores(name, value, truth.size) for name, value in attacks.items()}
    per_model = truth.size if guesses_per_model is None else guesses_per_model
    threat = (
        ThreatModel(threat_model) if threat_model in set(ThreatModel) else ThreatModel.UNSPECIFIED
    )
    split_seed = int((rng or simulation_generator(0)).integers(0, 2**63))
    level = alpha / len(scored)
    results: list[AttackResult] = []
    for name, (scores, registered, params) in scored.items():
        metrics = membership_metrics(truth, scores, fpr_limits=fpr_limits)
        epsilon = None
        if estimate_epsilon:
            epsilon = _epsilon(
                scores,
                truth,
                delta=delta,
                alpha=level,
                threshold_selection=threshold_selection,
                thresholds=thresholds,
                threat=threat,
                guesses_per_model=per_model,
                rng=simulation_generator(np.random.SeedSequence(split_seed)),
            )
        results.append(
            AttackResult(
                name=name,
                attack=registered,
                params=params,
                metrics=_metrics(metrics),
                epsilon=epsilon,
                roc=_roc_points(metrics.roc),
                histogram=_histogram(scores, truth),
                seconds=None if seconds is None or name not in seconds else seconds[name],
            )
        )
    stages = dict(timings or {})
    stages.update({f"attack:{name}": value for name, value in (seconds or {}).items()})
    stages["report"] = time.perf_counter() - started
    stages["total"] = stages.pop("total", sum(stages.values()) - stages["report"])
    stages["total"] += stages["report"]
    return AuditReport(
        title=title,
        threat_model=ThreatModelInfo(name=threat_model, description=threat_description),
        inputs=Inputs(
            description=description,
            artifacts=list(artifacts),
            n_members=int(truth.sum()),
            n_nonmembers=int((~truth).sum()),
        ),
        config={str(key): to_json_value(value) for key, value in (config or {}).items()},
        attacks=results,
        epsilon=_summary(results, alpha=alpha, level=level, per_model=per_model),
        verdict=evaluate_gates(results, gates),
        timings=stages,
        versions=collect_versions(packages),
        notes=list(notes),
    )


def _membership(membership: npt.ArrayLike) -> np.ndarray:
    truth = np.asarray(membership)
    if truth.ndim != 1:
        raise DataError(f"membership must be 1-D (keep[0]); got shape {truth.shape}")
    if truth.dtype != np.bool_:
        if not np.issubdtype(truth.dtype, np.integer) or not np.isin(truth, (0, 1)).all():
            raise DataError(f"membership must be booleans or 0/1; got dtype {truth.dtype}")
        truth = truth.astype(bool)
    return truth


def _registered_name(attack: MembershipAttack) -> str:
    for name in attack_registry.names():
        if attack_registry.get(name) is type(attack):
            return name
    return type(attack).__name__.lower()


def _scores(
    name: str, value: MembershipAttack | npt.ArrayLike, size: int
) -> tuple[np.ndarray, str, dict[str, JsonValue]]:
    params: dict[str, JsonValue] = {}
    if isinstance(value, MembershipAttack):
        scores = np.asarray(value.scores_, dtype=np.float64)
        registered = _registered_name(value)
        params = {key: to_json_value(item) for key, item in value._params().items()}
    else:
        scores = np.asarray(value, dtype=np.float64)
        registered = "scores"
    if scores.shape != (size,):
        raise DataError(
            f"attack {name!r} has {scores.shape} scores; membership has {size} examples"
        )
    return scores, registered, params


def _metrics(metrics: MembershipMetrics) -> AttackMetrics:
    return AttackMetrics(
        auc=metrics.auc,
        balanced_accuracy=metrics.balanced_accuracy,
        advantage=metrics.advantage,
        n_members=metrics.n_members,
        n_nonmembers=metrics.n_nonmembers,
        tpr_at_fpr=[
            TprAtFpr(
                fpr_limit=entry.fpr_limit,
                tpr=entry.tpr,
                fpr=entry.fpr,
                true_positives=entry.true_positives,
                false_positives=entry.false_positives,
                tpr_interval=entry.tpr_interval,
                resolved=entry.resolved,
            )
            for entry in metrics.tpr_at_fpr
        ],
    )


def _roc_points(curve: RocCurve, limit: int = MAX_ROC_POINTS) -> RocPoints:
    """The corners of the ROC staircase; sampled on linear and log FPR grids if too many."""
    fpr, tpr = curve.fpr, curve.tpr
    last = fpr.size - 1
    change = np.flatnonzero(np.diff(fpr) != 0)
    keep = np.unique(np.concatenate([[0, last], change, change + 1]))
    if keep.size > limit:
        quarter = limit // 4
        targets = np.concatenate(
            [np.geomspace(1.0 / curve.n_nonmembers, 1.0, quarter), np.linspace(0.0, 1.0, quarter)]
        )
        below = np.searchsorted(fpr, targets, side="right") - 1
        above = np.minimum(np.searchsorted(fpr, targets, side="left"), last)
        keep = np.unique(np.concatenate([[0, last], below, above]))
    return RocPoints(fpr=fpr[keep].tolist(), tpr=tpr[keep].tolist(), full_points=int(fpr.size))


def _histogram(scores: np.ndarray, truth: np.ndarray, bins: int = HISTOGRAM_BINS) -> Histogram:
    """Shared bins over the central 99% of the scores; the tails land in the end bins."""
    low, high = (float(v) for v in np.quantile(scores, [0.005, 0.995]))
    if not high > low:
        low, high = float(scores.min()), float(scores.max())
    if not high > low:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, bins + 1)
    clipped = np.clip(scores, low, high)
    members, _ = np.histogram(clipped[truth], bins=edges)
    others, _ = np.histogram(clipped[~truth], bins=edges)
    return Histogram(
        edges=edges.tolist(),
        members=members.tolist(),
        nonmembers=others.tolist(),
        clipped=bool(np.any(clipped != scores)),
    )


def _epsilon(
    scores: np.ndarray,
    truth: np.ndarray,
    *,
    delta: float,
    alpha: float,
    threshold_selection: Literal["split", "bonferroni"],
    thresholds: npt.ArrayLike | None,
    threat: ThreatModel,
    guesses_per_model: int,
    rng: np.random.Generator,
) -> EpsilonResult:
    estimate = estimate_from_scores(
        scores,
        truth,
        delta=delta,
        alpha=alpha,
        threshold_selection=threshold_selection,
        thresholds=thresholds,
        threat_model=threat,
        guesses_per_model=guesses_per_model,
        rng=rng,
    )
    exact, bayes = estimate.clopper_pearson, estimate.bayesian
    counts = {key: int(exact.evidence[key]) for key in ("tp", "fn", "tn", "fp")}
    posterior = BayesianEpsilon(
        delta=delta,
        alpha=alpha,
        sided="two",
        threat_model=threat,
        guesses_per_model=guesses_per_model,
    ).fit(**counts)
    low, high = posterior.interval_
    grid = posterior.posterior_grid(points=POSTERIOR_POINTS)
    return EpsilonResult(
        delta=delta,
        alpha=alpha,
        threat_model=threat.value,
        threshold_selection=estimate.threshold_selection,
        threshold=estimate.threshold,
        thresholds_tried=estimate.thresholds_tried,
        selection_size=estimate.selection_size,
        evaluation_size=estimate.evaluation_size,
        counts=Counts(**counts),
        lower_bound=exact.lower,
        rigor=exact.rigor.value,
        reason=exact.reason,
        posterior=PosteriorSummary(
            reason=bayes.reason,
            lower_bound=bayes.lower,
            median=float(posterior.point_ or 0.0),
            interval=(low, None if not np.isfinite(high) else high),
            grid=PosteriorGrid(
                epsilon=grid.epsilon.tolist(),
                density=grid.density.tolist(),
                cdf=np.clip(grid.cdf, 0.0, 1.0).tolist(),
            ),
        ),
    )


def _summary(
    results: Sequence[AttackResult], *, alpha: float, level: float, per_model: int
) -> EpsilonSummary | None:
    estimated = [(r.epsilon, r.name) for r in results if r.epsilon is not None]
    if not estimated:
        return None
    best, name = max(estimated, key=lambda pair: pair[0].lower_bound)
    note = (
        f"Each attack's bounds are at level α/{len(results)} = {level:.3g} (Bonferroni over "
        f"{len(results)} attacks), so the largest holds with probability at least "
        f"{1 - alpha:g}."
    )
    if per_model > 1:
        note += (
            f" All {per_model} challenges were scored against one trained target model, so "
            "the guesses are correlated and the bounds are heuristic (the multi-sample "
            "heuristic); a rigorous bound needs one training run per challenge or the "
            "one-run audit of Steinke et al. (2023)."
        )
    return EpsilonSummary(
        attack=name,
        lower_bound=best.lower_bound,
        rigor=best.rigor,
        delta=best.delta,
        alpha=alpha,
        alpha_per_attack=level,
        threshold_selection=best.threshold_selection,
        posterior_median=None if best.posterior is None else best.posterior.median,
        note=note,
    )
