"""Gates: ceilings on the worst attack that turn a report into pass or fail.

A gate names a metric and a limit; the audit fails when the largest value of that
metric over all attacks exceeds the limit. Gates compare the reported figures: point
estimates for AUC, advantage, balanced accuracy and TPR, and the Clopper-Pearson lower
bound for ε (whose ``rigor`` label the report states beside it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from privaudit.errors import ParameterError
from privaudit.reports._schema import (
    AttackResult,
    Gate,
    GateMetric,
    GateResult,
    Verdict,
)

__all__ = ["evaluate_gates", "gate"]

_METRICS: tuple[GateMetric, ...] = (
    "auc",
    "advantage",
    "balanced_accuracy",
    "tpr_at_fpr",
    "epsilon_lower_bound",
)


def gate(metric: str, limit: float, *, fpr_limit: float | None = None) -> Gate:
    """A :class:`Gate`, with errors that say how to fix a bad one.

    Examples
    --------
    >>> gate("auc", 0.6).label
    'max auc'
    >>> gate("tpr_at_fpr", 0.05, fpr_limit=0.001).label
    'max tpr_at_fpr(0.1%)'
    """
    if metric not in _METRICS:
        raise ParameterError(
            f"gate metric must be one of {list(_METRICS)}; got {metric!r}", parameter="metric"
        )
    if isinstance(limit, bool) or not isinstance(limit, int | float) or not math.isfinite(limit):
        raise ParameterError(
            f"gate limit must be a finite number; got {limit!r}", parameter="limit"
        )
    if (metric == "tpr_at_fpr") != (fpr_limit is not None):
        raise ParameterError(
            "a 'tpr_at_fpr' gate needs fpr_limit (e.g. 0.001 for 0.1%), and no other gate "
            f"takes one; got metric={metric!r}, fpr_limit={fpr_limit!r}",
            parameter="fpr_limit",
        )
    if fpr_limit is not None and not 0.0 <= fpr_limit <= 1.0:
        raise ParameterError(
            f"fpr_limit must be in [0, 1]; got {fpr_limit!r}", parameter="fpr_limit"
        )
    return Gate(metric=metric, limit=float(limit), fpr_limit=fpr_limit)


def _value(attack: AttackResult, chosen: Gate) -> float | None:
    metrics = attack.metrics
    if chosen.metric == "auc":
        return metrics.auc
    if chosen.metric == "advantage":
        return metrics.advantage
    if chosen.metric == "balanced_accuracy":
        return metrics.balanced_accuracy
    if chosen.metric == "tpr_at_fpr":
        assert chosen.fpr_limit is not None  # the Gate model guarantees it
        entry = metrics.at_fpr(chosen.fpr_limit)
        return None if entry is None else entry.tpr
    return None if attack.epsilon is None else attack.epsilon.lower_bound


def evaluate_gates(attacks: Sequence[AttackResult], gates: Iterable[Gate]) -> Verdict:
    """The verdict of ``gates`` against the worst of ``attacks``.

    Raises
    ------
    ParameterError
        If a gate reads a figure no attack has (an ε gate without ε estimates, a TPR
        at an FPR that was not computed).
    """
    results: list[GateResult] = []
    for chosen in gates:
        observed = [(value, a.name) for a in attacks if (value := _value(a, chosen)) is not None]
        if not observed:
            what = (
                f"a TPR at FPR {chosen.fpr_limit!r}"
                if chosen.metric == "tpr_at_fpr"
                else "an ε estimate"
                if chosen.metric == "epsilon_lower_bound"
                else chosen.metric
            )
            raise ParameterError(
                f"gate {chosen.label!r} needs {what}, which no attack of the report has; "
                "compute it (e.g. add the FPR to fpr_limits, or estimate ε) or drop the gate",
                parameter="gates",
            )
        value, name = max(observed, key=lambda pair: pair[0])
        passed = value <= chosen.limit
        relation = "<=" if passed else ">"
        results.append(
            GateResult(
                gate=chosen,
                observed=value,
                attack=name,
                passed=passed,
                detail=f"{name}: {value:.4g} {relation} {chosen.limit:g}",
            )
        )
    if not results:
        return Verdict(status="not-gated")
    status = "pass" if all(r.passed for r in results) else "fail"
    return Verdict(status=status, gates=results)
