"""Number formats shared by the human-readable renderers."""

from __future__ import annotations

from collections.abc import Callable

from privaudit.reports._schema import AttackResult, AuditReport, TprAtFpr

__all__ = [
    "UNRESOLVED",
    "epsilon_sentence",
    "fpr_label",
    "fpr_limits",
    "metric_cells",
    "number",
    "tpr_cell",
    "verdict_line",
]

UNRESOLVED = "†"
"""Marks a TPR at an FPR below one false positive (it is the TPR at zero FPR)."""


def number(value: float | None, digits: int = 3) -> str:
    """``value`` with ``digits`` decimals, ``-`` for none."""
    return "-" if value is None else f"{value:.{digits}f}"


def fpr_label(limit: float) -> str:
    """``0.001`` → ``"0.1%"``."""
    return f"{100 * limit:g}%"


def fpr_limits(report: AuditReport) -> list[float]:
    """The FPR limits of the report's TPR columns, in first-seen order."""
    seen: list[float] = []
    for attack in report.attacks:
        for entry in attack.metrics.tpr_at_fpr:
            if entry.fpr_limit not in seen:
                seen.append(entry.fpr_limit)
    return seen


def tpr_cell(entry: TprAtFpr | None) -> tuple[str, bool]:
    """The TPR as text and whether it is resolved (enough non-members for the FPR).

    The TPR at 0% FPR is what it says, so it is never flagged.
    """
    if entry is None:
        return "-", True
    return number(entry.tpr), entry.resolved or entry.fpr_limit == 0.0


def metric_cells(attack: AttackResult, limits: list[float]) -> tuple[list[str], bool]:
    """AUC, the TPR at each of ``limits``, balanced accuracy and advantage, as text.

    The second value is true when a TPR is marked :data:`UNRESOLVED`.
    """
    metrics = attack.metrics
    cells = [number(metrics.auc)]
    unresolved = False
    for limit in limits:
        text, resolved = tpr_cell(metrics.at_fpr(limit))
        unresolved |= not resolved
        cells.append(text + ("" if resolved else UNRESOLVED))
    cells += [number(metrics.balanced_accuracy), number(metrics.advantage)]
    return cells, unresolved


def verdict_line(report: AuditReport) -> str:
    """One sentence: the verdict and how many gates failed."""
    verdict = report.verdict
    if verdict.status == "not-gated":
        return "No gates were set: the report states figures only."
    failed = sum(not g.passed for g in verdict.gates)
    if failed:
        return f"{failed} of {len(verdict.gates)} gates failed."
    return f"All {len(verdict.gates)} gates passed."


def epsilon_sentence(
    report: AuditReport, *, quote: Callable[[str], str] = lambda text: text
) -> str | None:
    """The headline ε in words (the attack name through ``quote``), ``None`` without ε."""
    summary = report.epsilon
    if summary is None:
        return None
    level = f"{100 * (1 - summary.alpha):g}%"
    median = (
        ""
        if summary.posterior_median is None
        else f"; its Bayesian posterior median is {summary.posterior_median:.3g}"
    )
    return (
        f"Largest ε lower bound: {summary.lower_bound:.3g} at δ = {summary.delta:g} "
        f"({quote(summary.attack)}, {summary.rigor}, {level} overall, threshold chosen by "
        f"{summary.threshold_selection}){median}."
    )
