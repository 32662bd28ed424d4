"""``privaudit sequential``: simulate private sequential learning beside its baseline."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from privaudit.errors import ParameterError
from privaudit.mechanisms.sequential._binary import RandomizedResponse
from privaudit.mechanisms.sequential._model import SequentialMechanism
from privaudit.mechanisms.sequential._simulate import (
    SequentialLearningResult,
    simulate_sequential_learning,
)
from privaudit.mechanisms.sequential._smoothed import Amplitude, SmoothedRandomizedResponse
from privaudit.plotting import pyplot
from privaudit.progress import progress_bar
from privaudit.randomness import simulation_generator

__all__ = ["compare", "make_mechanism", "register", "summarize"]

app = typer.Typer(help="Sequential learning with private signals.", no_args_is_help=True)


def make_mechanism(
    signals: str, *, epsilon: float, sigma: float, p: float, amplitude: str
) -> SequentialMechanism:
    """The private mechanism for ``gaussian`` (smoothed RR) or ``binary`` (RR) signals."""
    if signals == "gaussian":
        shape: Amplitude = "logistic" if amplitude == "logistic" else _amplitude(amplitude)
        return SmoothedRandomizedResponse(epsilon=epsilon, sigma=sigma, amplitude=shape)
    if signals == "binary":
        return RandomizedResponse(epsilon=epsilon, p=p)
    raise ParameterError(f"--signals must be gaussian or binary; got {signals!r}")


def _amplitude(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ParameterError(
            f"--amplitude must be a number in (0, 0.5] or 'logistic'; got {text!r}"
        ) from None


def compare(
    mechanism: SequentialMechanism,
    *,
    theta: int,
    n_agents: int,
    n_paths: int,
    seed: int,
    show_progress: bool = True,
) -> dict[str, SequentialLearningResult]:
    """Simulate ``mechanism`` and its non-private baseline on seeded randomness."""
    results: dict[str, SequentialLearningResult] = {}
    for label, candidate in (("private", mechanism), ("non-private", mechanism.non_private())):
        with progress_bar(f"{label}", total=n_agents, enabled=show_progress) as advance:
            results[label] = simulate_sequential_learning(
                mechanism=candidate,
                theta=theta,
                n_agents=n_agents,
                n_paths=n_paths,
                rng=simulation_generator(np.random.SeedSequence([seed, len(results)])),
                on_progress=advance,
            )
    return results


def summarize(result: SequentialLearningResult, *, bound: float) -> dict[str, Any]:
    """Mean belief at the horizon, ``τ_B``, first correct action and wrong actions."""
    tau = result.stopping_time(bound)
    stopped = np.isfinite(tau)
    first = result.first_correct_time()
    return {
        "mechanism": repr(result.mechanism),
        "mean_belief_at_horizon": float(result.mean_belief()[-1]),
        "stopped_fraction": float(stopped.mean()),
        # A mean over the stopped paths alone would be biased: report it only if all stopped.
        "mean_stopping_time": float(tau.mean()) if stopped.all() else math.inf,
        "median_stopping_time": float(np.median(tau)),
        "mean_first_correct_time": float(first.mean()),
        "mean_wrong_actions": float(result.wrong_action_count().mean()),
    }


@app.command("simulate")
def simulate_command(
    epsilon: Annotated[float, typer.Option("--epsilon", "-e", help="Privacy level ε.")] = 1.0,
    signals: Annotated[str, typer.Option(help="gaussian (smoothed RR) or binary (RR).")] = (
        "gaussian"
    ),
    sigma: Annotated[float, typer.Option(help="Gaussian signal standard deviation.")] = 1.0,
    p: Annotated[float, typer.Option(help="Binary signal accuracy P(s = θ).")] = 0.7,
    amplitude: Annotated[
        str, typer.Option(help="Smoothed RR flip amplitude in (0, 0.5], or 'logistic'.")
    ] = "0.5",
    agents: Annotated[int, typer.Option(min=1, help="Agents per path (horizon).")] = 1000,
    paths: Annotated[int, typer.Option(min=1, help="Independent paths.")] = 1000,
    theta: Annotated[int, typer.Option(help="True state, -1 or 1.")] = 1,
    bound: Annotated[float, typer.Option(help="Belief bound B of τ_B.")] = 4.0,
    seed: Annotated[int, typer.Option(min=0)] = 0,
    plot: Annotated[
        Path | None, typer.Option(help="Save mean LLR against n (log x) to this file.")
    ] = None,
) -> None:
    """Private vs non-private learning: belief, τ_B, first correct action, wrong actions."""
    mechanism = make_mechanism(signals, epsilon=epsilon, sigma=sigma, p=p, amplitude=amplitude)
    results = compare(mechanism, theta=theta, n_agents=agents, n_paths=paths, seed=seed)
    table = Table(title=f"Sequential learning: {agents} agents x {paths} paths, θ={theta}")
    for column in (
        "",
        "mechanism",
        "mean θ·l_n at n=N",
        f"stopped |l|≥{bound:g}",
        "mean τ_B",
        "median τ_B",
        "mean first correct",
        "mean wrong actions",
    ):
        table.add_column(column, justify="left" if column in ("", "mechanism") else "right")
    for label, result in results.items():
        row = summarize(result, bound=bound)
        table.add_row(
            label,
            row["mechanism"],
            f"{row['mean_belief_at_horizon']:.3f}",
            f"{row['stopped_fraction']:.1%}",
            f"{row['mean_stopping_time']:.1f}",
            f"{row['median_stopping_time']:.1f}",
            f"{row['mean_first_correct_time']:.2f}",
            f"{row['mean_wrong_actions']:.2f}",
        )
    console = Console()  # created per run, so it takes the terminal width of this run
    console.print(table)
    if plot is not None:
        plot_mean_belief(results, plot)
        console.print(f"plot written to {plot}")


def plot_mean_belief(results: dict[str, SequentialLearningResult], path: Path) -> None:
    """Mean ``θ·l_n`` against ``n`` (log-scale x) for each result, saved to ``path``."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6, 4))
    for label, result in results.items():
        steps = np.arange(1, result.n_agents + 1)
        axes.plot(steps, result.mean_belief()[1:], label=f"{label}: {result.mechanism!r}")
    private = results.get("private")
    if private is not None and isinstance(private.mechanism, SmoothedRandomizedResponse):
        steps = np.arange(1, private.n_agents + 1)
        axes.plot(
            steps,
            private.mechanism.asymptotic_llr(steps),
            linestyle="--",
            color="grey",
            label="(2/(εσ²)) log(K n)",
        )
    axes.set_xscale("log")
    axes.set_xlabel("agent n")
    axes.set_ylabel("mean public LLR toward the true state")
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def register(cli: typer.Typer) -> None:
    """Add ``privaudit sequential`` to the CLI."""
    cli.add_typer(app, name="sequential")
