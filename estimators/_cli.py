"""``privaudit estimate epsilon``: an ε interval from a membership game's counts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from privaudit.errors import MissingDependencyError, ParameterError
from privaudit.estimators._bayes import BayesianEpsilon
from privaudit.estimators._checks import check_choice
from privaudit.estimators._counts import CountsEstimator
from privaudit.estimators._frequentist import ClopperPearsonEpsilon, JeffreysEpsilon

__all__ = ["register"]

console = Console()
app = typer.Typer(help="Empirical privacy estimates.", no_args_is_help=True)

ESTIMATORS: dict[str, type[CountsEstimator]] = {
    "bayes": BayesianEpsilon,
    "clopper-pearson": ClopperPearsonEpsilon,
    "jeffreys": JeffreysEpsilon,
}
PLOT_SUFFIXES = (".png", ".svg")


@app.command("epsilon")
def epsilon_command(
    tp: Annotated[int, typer.Option("--tp", help="Members guessed member.")],
    fn: Annotated[int, typer.Option("--fn", help="Members guessed non-member.")],
    tn: Annotated[int, typer.Option("--tn", help="Non-members guessed non-member.")],
    fp: Annotated[int, typer.Option("--fp", help="Non-members guessed member.")],
    delta: Annotated[float, typer.Option(help="The δ at which ε is measured.")] = 1e-5,
    alpha: Annotated[float, typer.Option(help="One minus the confidence level.")] = 0.05,
    method: Annotated[str, typer.Option(help="bayes, clopper-pearson or jeffreys.")] = "bayes",
    sided: Annotated[str, typer.Option(help="two (an interval) or lower (a bound).")] = "two",
    plot: Annotated[
        Path | None,
        typer.Option(help="Write the posterior of ε (bayes) or the interval (PNG or SVG)."),
    ] = None,
) -> None:
    """Estimate ε from the confusion matrix of a membership game."""
    chosen = check_choice("method", method, tuple(ESTIMATORS))
    if plot is not None and plot.suffix.lower() not in PLOT_SUFFIXES:
        raise ParameterError(
            f"--plot must end in .png or .svg; got {plot.name!r}", parameter="plot"
        )
    estimator = ESTIMATORS[chosen](delta=delta, alpha=alpha, sided=sided)  # type: ignore[arg-type]
    estimator.fit(tp=tp, fn=fn, tn=tn, fp=fp)
    result = estimator.result_
    console.print(str(result), soft_wrap=True)
    lower, upper = result.interval
    console.print(f"lower={lower!r} upper={upper!r} point={result.point!r}", soft_wrap=True)
    console.print(f"rigor: {result.rigor.value} ({result.reason})", soft_wrap=True)
    if plot is not None:
        _plot(estimator, plot)
        console.print(f"plot written to {plot}")


def _plot(estimator: CountsEstimator, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - matplotlib is in [plot]
        raise MissingDependencyError(
            "plots need matplotlib: pip install 'privaudit[plot]'"
        ) from error
    result = estimator.result_
    figure, axes = plt.subplots(figsize=(6, 4))
    lower, upper = result.interval
    if isinstance(estimator, BayesianEpsilon):
        grid = estimator.posterior_grid(points=200)
        axes.plot(grid.epsilon, grid.density, label="posterior density of ε")
        axes.set_ylabel("density")
    else:
        axes.set_yticks([])
    axes.axvline(lower, color="C3", linestyle="--", label=f"lower {lower:.3g}")
    if upper != float("inf"):
        axes.axvline(upper, color="C3", linestyle=":", label=f"upper {upper:.3g}")
    axes.set_xlabel("ε")
    level = f"{100 * (1 - result.alpha):g}%"
    axes.set_title(f"{result.method}, {level} {result.sided}-sided, δ={result.delta:g}")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def register(cli: typer.Typer) -> None:
    """Add ``privaudit estimate`` to the CLI."""
    cli.add_typer(app, name="estimate")
