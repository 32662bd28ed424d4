"""``privaudit audit``: a membership-inference audit with a report and a CI verdict.

``privaudit audit --demo`` trains a random forest on scikit-learn's bundled digits
(half the data as members) and reference forests, runs the chosen attacks, prints a
summary and writes ``report.json``, ``report.html`` and ``report.md``. Gates such as
``--max-auc 0.6`` make the exit status 1 when the worst attack exceeds them, so the
command can fail a CI job; an error is exit status 2.

``privaudit audit --config audit.yaml`` runs an audit config (see
:mod:`privaudit.attacks.membership._config`; the same schema as ``POST /v1/audits``):
precomputed signals from an ``.npz``, or models trained here with a recipe. Trained
models are kept as resumable work units under ``--work-dir`` (default
``OUT/.privaudit-work``), so running the same command again after an interruption
skips the models already trained. Gates come from the config's ``gates`` section.
Exit status: 0 pass, 1 a gate failed, 2 a bad config or input (one line, no
traceback).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from privaudit.attacks.membership._audit import run_audit
from privaudit.attacks.membership._config import load_audit_config
from privaudit.attacks.membership._digits_demo import DEMO_ATTACKS, run_digits_demo
from privaudit.attacks.membership._metrics import DEFAULT_FPR_LIMITS
from privaudit.errors import ParameterError
from privaudit.executor import executors
from privaudit.progress import progress_bar, stage_progress
from privaudit.registry import report_formats
from privaudit.reports import AuditReport, Gate, gate, write_report
from privaudit.reports._console import summary_table, verdict_text

__all__ = ["register"]

DEFAULT_ATTACKS = ("loss", "lira-online", "rmia-online")
DEFAULT_REFERENCE_MODELS = 16
DEFAULT_FORMATS = "json,html,md"
EXIT_GATE_FAILED = 1
WORK_DIR_NAME = ".privaudit-work"

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
        typer.Option(
            "--config", help="An audit config (YAML; see docs/membership.md) to run locally."
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Directory for report.json/.html/.md.")
    ] = Path("privaudit-report"),
    work_dir: Annotated[
        Path | None,
        typer.Option(
            help=f"--config: where trained models are kept to resume (default OUT/{WORK_DIR_NAME})."
        ),
    ] = None,
    executor: Annotated[
        str | None,
        typer.Option(
            help="Where models train: serial, local (one process per core) or ray "
            "(default: local with --config, serial with --demo)."
        ),
    ] = None,
    reference_models: Annotated[
        int | None,
        typer.Option("--reference-models", "-k", help="K reference models (demo; default 16)."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the split, the models and ε (demo; default 0).")
    ] = None,
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
    delta: Annotated[
        float | None, typer.Option(help="The δ at which ε is measured (demo; default 1e-5).")
    ] = None,
    alpha: Annotated[
        float | None,
        typer.Option(help="One minus the confidence of ε bounds (demo; default 0.05)."),
    ] = None,
    formats: Annotated[
        str | None,
        typer.Option("--format", help=f"Comma-separated report formats (demo; {DEFAULT_FORMATS})."),
    ] = None,
) -> None:
    """Run a membership-inference audit, write its report, and gate it for CI.

    Exit status: 0 when every gate passes (or none is set), 1 when a gate fails, 2 on
    an error.
    """
    if executor is not None:
        executors.get(executor)  # an unknown name fails now, not after loading the data
    demo_options = {
        "--reference-models": reference_models,
        "--seed": seed,
        "--attack": attack,
        "--max-auc": max_auc,
        "--max-advantage": max_advantage,
        "--max-epsilon": max_epsilon,
        "--max-tpr-at-fpr": max_tpr_at_fpr,
        "--delta": delta,
        "--alpha": alpha,
        "--format": formats,
    }
    if config is not None:
        if demo:
            raise ParameterError("give --demo or --config, not both", parameter="config")
        given = [name for name, value in demo_options.items() if value is not None]
        if given:
            raise ParameterError(
                f"{', '.join(given)} apply to --demo only; with --config, set them in the "
                "config file (reference_models, seed, attacks, gates, epsilon, report.formats)",
                parameter="config",
            )
        _run_config(config, out, work_dir, executor or "local")
        return
    if not demo:
        raise ParameterError(
            "say what to audit: --demo (a random forest on scikit-learn's digits) or "
            "--config audit.yaml (an audit config; see docs/membership.md)",
            parameter="demo",
        )
    if work_dir is not None:
        raise ParameterError("--work-dir applies to --config only", parameter="work_dir")
    gates = _gates(max_auc, max_advantage, max_epsilon, max_tpr_at_fpr or [])
    names = [n.strip() for n in (formats or DEFAULT_FORMATS).split(",") if n.strip()]
    for name in names:  # an unknown format fails now, not after the training
        report_formats.get(name)
    chosen = list(attack or DEFAULT_ATTACKS)
    k = DEFAULT_REFERENCE_MODELS if reference_models is None else reference_models
    with progress_bar("training forests", total=k + 1) as on_progress:
        result = run_digits_demo(
            n_reference=k,
            seed=0 if seed is None else seed,
            attacks=chosen,
            on_progress=on_progress,
            executor=executor,
        )
    report = result.report(
        gates=gates,
        delta=1e-5 if delta is None else delta,
        alpha=0.05 if alpha is None else alpha,
    )
    paths = write_report(report, out, formats=names)
    _print_outcome(report, paths)


def _run_config(path: Path, out: Path, work_dir: Path | None, executor: str) -> None:
    """``privaudit audit --config``: run the config locally and write its report."""
    config = load_audit_config(path)
    base = path.resolve().parent
    artifacts = {name: base / name for name in config.artifact_names()}
    with stage_progress() as on_progress:
        outcome = run_audit(
            config,
            artifacts=artifacts,
            work_dir=work_dir or out / WORK_DIR_NAME,
            out_dir=out,
            on_progress=on_progress,
            executor=executor,
        )
    if outcome.n_models:
        console.print(
            f"models: {outcome.n_models} ({outcome.trained} trained, {outcome.skipped} reused "
            "from an earlier run)",
            highlight=False,
        )
    _print_outcome(outcome.report, outcome.files)


def _print_outcome(report: AuditReport, paths: dict[str, Path]) -> None:
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
