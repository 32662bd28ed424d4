"""``privaudit audit``: a membership-inference audit with a report and a CI verdict.

``privaudit audit --demo`` trains a random forest on scikit-learn's bundled digits
(half the data as members) and reference forests, runs the chosen attacks, prints a
summary and writes ``report.json``, ``report.html`` and ``report.md``. Gates such as
``--max-auc 0.6`` make the exit status 1 when the worst attack exceeds them, so the
command can fail a CI job; an error is exit status 2.

``--config audit.yaml`` (auditing your own model) is reserved: it needs the model
inputs and the executor that are not built yet, and says so.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from privaudit.attacks.membership._digits_demo import DEMO_ATTACKS, run_digits_demo
from privaudit.attacks.membership._metrics import DEFAULT_FPR_LIMITS
from privaudit.errors import ParameterError
from privaudit.progress import progress_bar
from privaudit.registry import report_formats
from privaudit.reports import Gate, gate, write_report
from privaudit.reports._console import summary_table, verdict_text

__all__ = ["register"]

DEFAULT_ATTACKS = ("loss", "lira-online", "rmia-online")
EXIT_GATE_FAILED = 1

console = Console()


def parse_tpr_gate(text: str) -> Gate:
    """``"0.1%=0.05"`` or ``"0.001=0.05"`` → a TPR-at-FPR gate.

    Examples
    --------
    >>> parse_tpr_gate("0.1%=0.05").fpr_limit
    0.001
    """
    fpr_text, separator, limit_text = text.partition("=")
    try:
        if not separator:
            raise ValueError(text)
        fpr = float(fpr_text.rstrip("%")) / (100.0 if fpr_text.endswith("%") else 1.0)
        limit = float(limit_text)
    except ValueError:
        raise ParameterError(
            f"--max-tpr-at-fpr takes FPR=LIMIT, e.g. 0.1%=0.05 or 0.001=0.05; got {text!r}",
            parameter="max_tpr_at_fpr",
        ) from None
    known = next((x for x in DEFAULT_FPR_LIMITS if math.isclose(x, fpr, abs_tol=1e-12)), None)
    if known is None:
        allowed = ", ".join(f"{100 * x:g}%" for x in DEFAULT_FPR_LIMITS)
        raise ParameterError(
            f"--max-tpr-at-fpr: the report has TPRs at FPR {allowed}; got {fpr_text!r}",
            parameter="max_tpr_at_fpr",
        )
    return gate("tpr_at_fpr", limit, fpr_limit=known)


def _gates(
    max_auc: float | None,
    max_advantage: float | None,
    max_epsilon: float | None,
    max_tpr: list[str],
) -> list[Gate]:
    gates = [
        gate(metric, limit)
        for metric, limit in (
            ("auc", max_auc),
            ("advantage", max_advantage),
            ("epsilon_lower_bound", max_epsilon),
        )
        if limit is not None
    ]
    return gates + [parse_tpr_gate(text) for text in max_tpr]


def audit_command(
    demo: Annotated[
        bool, typer.Option("--demo", help="Audit a random forest on scikit-learn's digits.")
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="An audit YAML for your own model (not available yet)."),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Directory for report.json/.html/.md.")
    ] = Path("privaudit-report"),
    reference_models: Annotated[
        int, typer.Option("--reference-models", "-k", help="K reference models (demo).")
    ] = 16,
    seed: Annotated[int, typer.Option(help="Seed of the split, the models and ε.")] = 0,
    attack: Annotated[
        list[str] | None,
        typer.Option("--attack", "-a", help=f"Attack to run (repeat): {', '.join(DEMO_ATTACKS)}."),
    ] = None,
    max_auc: Annotated[
        float | None, typer.Option(help="Fail (exit 1) if any attack's AUC exceeds this.")
    ] = None,
    max_advantage: Annotated[
        float | None, typer.Option(help="Fail if any attack's advantage (TPR − FPR) exceeds this.")
    ] = None,
    max_epsilon: Annotated[
        float | None,
        typer.Option(help="Fail if the largest ε lower bound exceeds this."),
    ] = None,
    max_tpr_at_fpr: Annotated[
        list[str] | None,
        typer.Option(help="FPR=LIMIT, e.g. 0.1%=0.05: fail if a TPR at that FPR exceeds LIMIT."),
    ] = None,
    delta: Annotated[float, typer.Option(help="The δ at which ε is measured.")] = 1e-5,
    alpha: Annotated[float, typer.Option(help="One minus the confidence of ε bounds.")] = 0.05,
    formats: Annotated[
        str, typer.Option("--format", help="Comma-separated report formats.")
    ] = "json,html,md",
) -> None:
    """Run a membership-inference audit, write its report, and gate it for CI.

    Exit status: 0 when every gate passes (or none is set), 1 when a gate fails, 2 on
    an error.
    """
    if config is not None:
        raise ParameterError(
            "privaudit audit --config is not available yet: auditing your own model needs "
            "the model inputs and the executor, which are still being built. Run "
            "`privaudit audit --demo`, or build a report in Python from your attacks' "
            "scores with privaudit.attacks.membership.build_membership_report",
            parameter="config",
        )
    if not demo:
        raise ParameterError(
            "say what to audit: --demo (a random forest on scikit-learn's digits); "
            "--config for your own model is planned",
            parameter="demo",
        )
    gates = _gates(max_auc, max_advantage, max_epsilon, max_tpr_at_fpr or [])
    names = [n.strip() for n in formats.split(",") if n.strip()]
    for name in names:  # an unknown format fails now, not after the training
        report_formats.get(name)
    chosen = list(attack or DEFAULT_ATTACKS)
    with progress_bar("training forests", total=reference_models + 1) as on_progress:
        result = run_digits_demo(
            n_reference=reference_models, seed=seed, attacks=chosen, on_progress=on_progress
        )
    report = result.report(gates=gates, delta=delta, alpha=alpha)
    paths = write_report(report, out, formats=names)
    console.print(summary_table(report))
    console.print(verdict_text(report))
    for name, path in paths.items():
        console.print(f"{name}: {path}", soft_wrap=True, highlight=False)
    console.print(f"audit took {report.timings['total']:.1f} s", highlight=False)
    if not report.verdict.passed:
        raise typer.Exit(code=EXIT_GATE_FAILED)


def register(cli: typer.Typer) -> None:
    """Add ``privaudit audit`` to the CLI."""
    cli.command("audit")(audit_command)
