"""A rich summary of a report for the terminal (the CLI prints it after an audit)."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from privaudit.reports._format import (
    UNRESOLVED,
    epsilon_sentence,
    fpr_label,
    fpr_limits,
    metric_cells,
    number,
    verdict_line,
)
from privaudit.reports._schema import AuditReport

__all__ = ["summary_table", "verdict_text"]


def summary_table(report: AuditReport) -> Table:
    """One row per attack: AUC, TPR at each FPR, balanced accuracy, advantage, ε, time."""
    inputs = report.inputs
    limits = fpr_limits(report)
    marks = []
    if any(metric_cells(attack, limits)[1] for attack in report.attacks):
        marks.append(f"{UNRESOLVED} TPR at 0 FPR (too few non-members)")
    if any(a.epsilon is not None and a.epsilon.rigor == "heuristic" for a in report.attacks):
        marks.append("* heuristic ε bound")
    table = Table(
        title=escape(report.title),
        caption="; ".join(
            [f"{inputs.n_members} members, {inputs.n_nonmembers} non-members", *marks]
        ),
    )
    table.add_column("attack", no_wrap=True)
    for column in ["AUC", *(f"TPR@{fpr_label(x)}" for x in limits), "bal.acc", "adv."]:
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("ε ≥", justify="right", no_wrap=True)
    table.add_column("s", justify="right", no_wrap=True)
    for attack in report.attacks:
        figures, _ = metric_cells(attack, limits)
        cells = [escape(attack.name), *figures]
        epsilon = attack.epsilon
        if epsilon is None:
            cells.append("-")
        else:
            mark = "*" if epsilon.rigor == "heuristic" else ""
            cells.append(f"{epsilon.lower_bound:.3f}{mark}")
        cells.append(number(attack.seconds, 2))
        table.add_row(*cells)
    return table


def verdict_text(report: AuditReport) -> Text:
    """The verdict, its gates and the headline ε, as coloured text."""
    status = report.verdict.status
    style = {"pass": "bold green", "fail": "bold red"}.get(status, "bold")
    text = Text()
    text.append(f"verdict: {status.upper()}", style=style)
    text.append(f"  {verdict_line(report)}\n")
    for result in report.verdict.gates:
        mark = ("pass", "green") if result.passed else ("FAIL", "red")
        text.append(f"  {mark[0]:<4}", style=mark[1])
        text.append(f" {result.gate.label}: {result.detail}\n")
    sentence = epsilon_sentence(report)
    if sentence:
        text.append(sentence + "\n")
    return text
