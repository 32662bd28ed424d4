"""A self-contained HTML page: one file, no external CSS, fonts, scripts or images.

Plots are inline SVG (:mod:`privaudit.reports._svg`); every string that comes from
the report is HTML-escaped; a Content-Security-Policy forbids loading anything and
running scripts, so a report from an untrusted source is safe to open.
"""

from __future__ import annotations

import json
import math
from html import escape
from typing import ClassVar

from privaudit.registry import report_formats
from privaudit.reports._format import (
    epsilon_sentence,
    fpr_label,
    fpr_limits,
    metric_cells,
    number,
    tpr_cell,
    verdict_line,
)
from privaudit.reports._schema import AttackResult, AuditReport
from privaudit.reports._svg import Line, histogram_chart, line_chart

__all__ = ["HtmlRenderer"]

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;
color:#222;line-height:1.45}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0}th,td{border:1px solid #ccc;padding:.25em .6em;
text-align:right;vertical-align:top}th{background:#f4f4f4}td.l,th.l{text-align:left}
.badge{display:inline-block;padding:.2em .8em;border-radius:4px;font-weight:bold;color:#fff}
.pass{background:#2e7d32}.fail{background:#c62828}.not-gated{background:#757575}
.ok{color:#2e7d32}.bad{color:#c62828;font-weight:bold}.muted{color:#666;font-size:.9em}
.plots{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0}pre{background:#f7f7f7;
padding:.8em;overflow-x:auto;font-size:.85em}code{font-size:.9em}
"""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _table(header: list[str], rows: list[list[str]], *, left: int = 1) -> str:
    """``rows`` are already-escaped cells; the first ``left`` columns align left."""
    head = "".join(
        f'<th class="l">{h}</th>' if i < left else f"<th>{h}</th>" for i, h in enumerate(header)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="l">{c}</td>' if i < left else f"<td>{c}</td>" for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _interval(low: float, high: float | None) -> str:
    return f"[{number(low)}, {'∞' if high is None else number(high)}]"


@report_formats.register("html")
class HtmlRenderer:
    """A self-contained HTML page with tables and inline SVG plots."""

    name: ClassVar[str] = "html"
    suffix: ClassVar[str] = ".html"
    media_type: ClassVar[str] = "text/html"

    def render(self, report: AuditReport) -> str:
        """The page, as text."""
        sections = [
            self._header(report),
            self._gates(report),
            self._metrics(report),
            self._tpr_details(report),
            self._epsilon(report),
            self._plots(report),
            self._inputs(report),
            self._provenance(report),
            self._reading(),
        ]
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(report.title)}</title><style>{_STYLE}</style></head><body>"
            + "\n".join(s for s in sections if s)
            + "</body></html>\n"
        )

    @staticmethod
    def _header(report: AuditReport) -> str:
        status = report.verdict.status
        epsilon = epsilon_sentence(report)
        return (
            f"<header><h1>{_e(report.title)}</h1>"
            f'<p><span class="badge {status}">{_e(status.upper())}</span> '
            f"{_e(verdict_line(report))}</p>"
            f"<p>Threat model: <strong>{_e(report.threat_model.name)}</strong>: "
            f"{_e(report.threat_model.description)}</p>"
            f"<p>{report.inputs.n_members} members and {report.inputs.n_nonmembers} "
            f"non-members; {len(report.attacks)} attacks.</p>"
            + (f"<p>{_e(epsilon)}</p>" if epsilon else "")
            + f'<p class="muted">Created {_e(report.created_at.isoformat())} by privaudit '
            f"{_e(report.versions.get('privaudit', '?'))}; report schema version "
            f"{report.schema_version}.</p></header>"
        )

    @staticmethod
    def _gates(report: AuditReport) -> str:
        if not report.verdict.gates:
            return ""
        rows = [
            [
                _e(result.gate.label),
                _e(result.attack or "-"),
                number(result.observed, 4),
                _e(f"{result.gate.limit:g}"),
                '<span class="ok">pass</span>'
                if result.passed
                else '<span class="bad">fail</span>',
            ]
            for result in report.verdict.gates
        ]
        header = ["gate", "worst attack", "observed", "limit", "result"]
        return '<section id="gates"><h2>Gates</h2>' + _table(header, rows, left=2) + "</section>"

    @staticmethod
    def _metrics(report: AuditReport) -> str:
        limits = fpr_limits(report)
        header = ["attack", "AUC", *(f"TPR at {_e(fpr_label(x))} FPR" for x in limits)]
        header += ["balanced accuracy", "advantage", "ε lower bound", "seconds"]
        rows = []
        unresolved = False
        for attack in report.attacks:
            figures, flagged = metric_cells(attack, limits)
            unresolved |= flagged
            cells = [f"{_e(attack.name)} <span class='muted'>({_e(attack.attack)})</span>"]
            cells += figures
            epsilon = attack.epsilon
            cells.append(
                "-" if epsilon is None else f"{number(epsilon.lower_bound)} ({_e(epsilon.rigor)})"
            )
            cells.append(number(attack.seconds, 2))
            rows.append(cells)
        note = (
            '<p class="muted">† fewer than 1/FPR non-members: the figure is the TPR at zero '
            "false positives (collect more non-members to resolve it).</p>"
            if unresolved
            else ""
        )
        return '<section id="metrics"><h2>Attacks</h2>' + _table(header, rows) + note + "</section>"

    @staticmethod
    def _tpr_details(report: AuditReport) -> str:
        rows = []
        for attack in report.attacks:
            for entry in attack.metrics.tpr_at_fpr:
                rows.append(
                    [
                        _e(attack.name),
                        _e(fpr_label(entry.fpr_limit)),
                        number(entry.tpr),
                        _interval(*entry.tpr_interval),
                        f"{entry.true_positives} / {attack.metrics.n_members}",
                        f"{entry.false_positives} / {attack.metrics.n_nonmembers}",
                        number(entry.fpr, 4),
                        "yes" if tpr_cell(entry)[1] else '<span class="bad">no</span>',
                    ]
                )
        header = [
            "attack",
            "FPR limit",
            "TPR",
            "95% interval",
            "true positives",
            "false positives",
            "FPR reached",
            "resolved",
        ]
        return (
            '<section id="tpr"><h2>TPR at low FPR, with evidence</h2>'
            "<p>The TPR of the last ROC point whose FPR is at most the limit (no "
            "interpolation), the counts behind it, and its exact (Clopper-Pearson) 95% "
            "interval over the members.</p>" + _table(header, rows, left=2) + "</section>"
        )

    @staticmethod
    def _epsilon(report: AuditReport) -> str:
        with_epsilon = [(a.name, a.epsilon) for a in report.attacks if a.epsilon is not None]
        if not with_epsilon:
            return ""
        rows = []
        reasons: list[str] = []
        for name, eps in with_epsilon:
            posterior = eps.posterior
            counts = eps.counts
            rows.append(
                [
                    _e(name),
                    f"{number(eps.lower_bound)} ({_e(eps.rigor)})",
                    "-" if posterior is None else number(posterior.median),
                    "-" if posterior is None else _interval(*posterior.interval),
                    _e(eps.threshold_selection),
                    f"{eps.threshold:.4g}",
                    f"{eps.selection_size} / {eps.evaluation_size}",
                    f"{counts.tp} / {counts.fn} / {counts.tn} / {counts.fp}",
                    _e(f"{eps.alpha:.3g}"),
                ]
            )
            if eps.reason not in reasons:
                reasons.append(eps.reason)
        header = [
            "attack",
            "lower bound (Clopper-Pearson)",
            "posterior median",
            "credible interval",
            "threshold selection",
            "threshold",
            "selection / evaluation",
            "TP / FN / TN / FP",
            "α per attack",
        ]
        summary = report.epsilon
        deltas = ", ".join(sorted({f"{eps.delta:g}" for _, eps in with_epsilon}))
        intro = f"<p>ε at δ = {deltas}, from each attack's scores.</p>"
        note = f"<p>{_e(summary.note)}</p>" if summary is not None and summary.note else ""
        why = "".join(f"<li>{_e(reason)}</li>" for reason in reasons)
        return (
            '<section id="epsilon"><h2>Empirical ε</h2>'
            + intro
            + _table(header, rows)
            + note
            + f"<p>Why the labels:</p><ul>{why}</ul></section>"
        )

    @staticmethod
    def _plots(report: AuditReport) -> str:
        with_roc = [a for a in report.attacks if a.roc is not None]
        figures: list[str] = []
        if with_roc:
            lines = [Line(a.name, a.roc.fpr, a.roc.tpr) for a in with_roc if a.roc]
            figures.append(
                line_chart(
                    lines,
                    title="ROC",
                    x_label="false positive rate",
                    y_label="true positive rate",
                    x_range=(0.0, 1.0),
                    y_range=(0.0, 1.0),
                    diagonal=True,
                )
            )
            # A decade below the smallest non-zero rate, where rates of 0 are drawn.
            counts = [max(a.metrics.n_members, a.metrics.n_nonmembers) for a in with_roc]
            low = 10.0 ** _floor_log10(0.5 / max(1, *counts))
            figures.append(
                line_chart(
                    lines,
                    title="ROC (log-log)",
                    x_label="false positive rate",
                    y_label="true positive rate",
                    x_log=True,
                    y_log=True,
                    x_range=(low, 1.0),
                    y_range=(low, 1.0),
                    diagonal=True,
                )
            )
        for attack in report.attacks:
            figures.extend(_attack_figures(attack))
        if not figures:
            return ""
        body = "".join(f"<figure>{svg}</figure>" for svg in figures)
        return f'<section id="plots"><h2>Plots</h2><div class="plots">{body}</div></section>'

    @staticmethod
    def _inputs(report: AuditReport) -> str:
        inputs = report.inputs
        rows = [
            [
                _e(a.name),
                f"<code>{_e(a.sha256)}</code>",
                "-" if a.size_bytes is None else str(a.size_bytes),
                _e(a.description),
            ]
            for a in inputs.artifacts
        ]
        artifacts = _table(["artifact", "sha256", "bytes", "description"], rows, left=4)
        return (
            '<section id="inputs"><h2>Inputs</h2>'
            f"<p>{_e(inputs.description)}</p>"
            f"<p>{inputs.n_members} members, {inputs.n_nonmembers} non-members.</p>"
            + (artifacts if rows else "")
            + "</section>"
        )

    @staticmethod
    def _provenance(report: AuditReport) -> str:
        config = json.dumps(report.config, indent=2, ensure_ascii=False, sort_keys=True)
        timings = _table(
            ["stage", "seconds"], [[_e(k), number(v, 2)] for k, v in report.timings.items()]
        )
        versions = _table(
            ["package", "version"],
            [[_e(k), _e(v)] for k, v in report.versions.items()],
            left=2,
        )
        params = "".join(
            f"<li><strong>{_e(a.name)}</strong>: <code>"
            f"{_e(json.dumps(a.params, ensure_ascii=False, sort_keys=True))}</code></li>"
            for a in report.attacks
        )
        notes = "".join(f"<li>{_e(n)}</li>" for n in report.notes)
        return (
            '<section id="provenance"><h2>Configuration and provenance</h2>'
            f"<h3>Configuration</h3><pre>{_e(config)}</pre>"
            f"<h3>Attack parameters</h3><ul>{params}</ul>"
            + (f"<h3>Notes</h3><ul>{notes}</ul>" if notes else "")
            + f'<div class="plots"><div><h3>Timings</h3>{timings}</div>'
            f"<div><h3>Versions</h3>{versions}</div></div></section>"
        )

    @staticmethod
    def _reading() -> str:
        return (
            '<section id="reading"><h2>How to read this report</h2><ul>'
            "<li>Members are the positive class; a higher score means “member”.</li>"
            "<li><strong>AUC</strong> is 0.5 for an attack that cannot tell members from "
            "non-members; it is dominated by easy cases.</li>"
            "<li><strong>TPR at low FPR</strong> (log-log ROC) shows whether an attacker can "
            "identify some members confidently, the figure that matters for privacy.</li>"
            "<li><strong>ε lower bound</strong>: any mechanism that trained this model is "
            "at best (ε, δ)-DP with ε at least this large against this attack, if the "
            "label is rigorous; a heuristic label says which assumption it rests on.</li>"
            "<li>A weak attack does not prove privacy: a stronger attack may do better. "
            "A strong attack proves leakage under the stated threat model.</li>"
            "</ul></section>"
        )


def _floor_log10(value: float) -> int:
    return math.floor(math.log10(value))


def _attack_figures(attack: AttackResult) -> list[str]:
    figures = []
    if attack.histogram is not None:
        hist = attack.histogram
        figures.append(
            histogram_chart(
                hist.edges,
                [("members", hist.members), ("non-members", hist.nonmembers)],
                title=f"{attack.name}: scores",
                x_label="membership score" + (" (ends clipped)" if hist.clipped else ""),
            )
        )
    epsilon = attack.epsilon
    if epsilon is not None and epsilon.posterior is not None and epsilon.posterior.grid:
        grid = epsilon.posterior.grid
        markers = [(epsilon.lower_bound, f"Clopper-Pearson bound {epsilon.lower_bound:.3g}")]
        markers.append(
            (epsilon.posterior.median, f"posterior median {epsilon.posterior.median:.3g}")
        )
        figures.append(
            line_chart(
                [Line("posterior density", grid.epsilon, grid.density)],
                title=f"{attack.name}: posterior of ε",
                x_label=f"ε (δ = {epsilon.delta:g})",
                y_label="density",
                markers=markers,
            )
        )
    return figures
