"""Markdown for pull-request comments: the verdict, the gates and one summary table.

Every string from the report is escaped, so an attack name or a description cannot
inject links, images, HTML, table cells or @-mentions into the comment.
"""

from __future__ import annotations

import re
from typing import ClassVar

from privaudit.registry import report_formats
from privaudit.reports._format import (
    epsilon_sentence,
    fpr_label,
    fpr_limits,
    metric_cells,
    number,
    verdict_line,
)
from privaudit.reports._schema import AuditReport

__all__ = ["MarkdownRenderer", "escape_markdown"]

_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "@": "&#64;"}


def escape_markdown(text: str) -> str:
    r"""``text`` as literal Markdown inline text (also safe inside a table cell).

    Examples
    --------
    >>> print(escape_markdown("a|b <img src=x> [link](y) @team *bold*"))
    a\|b &lt;img src=x&gt; \[link\](y) &#64;team \*bold\*
    """
    text = "".join(_ENTITIES.get(char, char) for char in text)
    text = _SPECIAL.sub(r"\\\1", text)
    return " ".join(text.split())  # newlines would end a table row


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


@report_formats.register("md")
class MarkdownRenderer:
    """A short Markdown summary: verdict, gates, one row per attack."""

    name: ClassVar[str] = "md"
    suffix: ClassVar[str] = ".md"
    media_type: ClassVar[str] = "text/markdown"

    def render(self, report: AuditReport) -> str:
        """The comment, as text."""
        status = report.verdict.status.upper()
        lines = [
            f"### {escape_markdown(report.title)}: **{status}**",
            "",
            verdict_line(report),
            "",
        ]
        if report.verdict.gates:
            lines += [
                _row(["gate", "worst attack", "observed", "limit", "result"]),
                _row(["---", "---", "---:", "---:", "---"]),
            ]
            for result in report.verdict.gates:
                lines.append(
                    _row(
                        [
                            escape_markdown(result.gate.label),
                            escape_markdown(result.attack or "-"),
                            number(result.observed, 4),
                            f"{result.gate.limit:g}",
                            "pass" if result.passed else "**fail**",
                        ]
                    )
                )
            lines.append("")
        limits = fpr_limits(report)
        header = ["attack", "AUC", *(f"TPR@{fpr_label(x)} FPR" for x in limits)]
        header += ["bal. acc.", "advantage", "ε lower bound"]
        lines += [_row(header), _row(["---"] + ["---:"] * (len(header) - 1))]
        unresolved = False
        for attack in report.attacks:
            figures, flagged = metric_cells(attack, limits)
            unresolved |= flagged
            cells = [escape_markdown(attack.name), *figures]
            epsilon = attack.epsilon
            cells.append("-" if epsilon is None else f"{epsilon.lower_bound:.3f} ({epsilon.rigor})")
            lines.append(_row(cells))
        lines.append("")
        inputs = report.inputs
        lines.append(
            f"{inputs.n_members} members, {inputs.n_nonmembers} non-members; threat model: "
            f"{escape_markdown(report.threat_model.name)}."
        )
        if unresolved:
            lines.append(
                "† fewer than 1/FPR non-members: the figure is the TPR at zero false positives."
            )
        sentence = epsilon_sentence(report, quote=escape_markdown)
        if sentence is not None:
            lines += ["", sentence]
        version = report.versions.get("privaudit", "?")
        lines += [
            "",
            f"<sub>privaudit {escape_markdown(version)}, report schema "
            f"v{report.schema_version}, {report.created_at.isoformat()}</sub>",
            "",
        ]
        return "\n".join(lines)
