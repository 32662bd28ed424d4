"""``privaudit ldp``: simulate LDP protocols side by side from the command line."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from privaudit.errors import ParameterError
from privaudit.mechanisms.ldp._engine import FrequencyOracle, frequency_oracle_names
from privaudit.plotting import pyplot
from privaudit.progress import progress_bar
from privaudit.randomness import simulation_generator
from privaudit.registry import mechanisms

__all__ = ["register", "sample_dataset", "simulate"]

console = Console()
app = typer.Typer(help="Local differential privacy: frequency oracles.", no_args_is_help=True)


def sample_dataset(distribution: str, *, k: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic dataset: ``zipf`` (exponent 1.1, over the domain), ``uniform`` or
    ``spike`` (half the users on one value)."""
    if distribution == "zipf":
        weights = 1.0 / np.arange(1, k + 1) ** 1.1
        return rng.choice(k, size=n, p=weights / weights.sum())
    if distribution == "uniform":
        return rng.integers(0, k, size=n)
    if distribution == "spike":
        data = rng.integers(0, k, size=n)
        data[: n // 2] = 0
        return data
    raise ParameterError(f"--dist must be zipf, uniform or spike; got {distribution!r}")


def simulate(
    protocols: list[str],
    *,
    k: int,
    epsilons: list[float],
    n: int,
    distribution: str,
    trials: int,
    seed: int,
    show_progress: bool = True,
) -> list[dict[str, float | str]]:
    """Run each protocol ``trials`` times per epsilon on one synthetic dataset."""
    known = frequency_oracle_names()
    unknown = [name for name in protocols if name not in known]
    if unknown:
        raise ParameterError(f"unknown protocols {unknown}; known: {', '.join(known)}")
    rng = simulation_generator(seed)
    data = sample_dataset(distribution, k=k, n=n, rng=rng)
    truth = np.bincount(data, minlength=k) / n
    rows: list[dict[str, float | str]] = []
    total = len(protocols) * len(epsilons) * trials
    with progress_bar("simulating", total=total, enabled=show_progress) as advance:
        done = 0
        for epsilon in epsilons:
            for name in protocols:
                oracle: FrequencyOracle = mechanisms.get(name)(k=k, epsilon=epsilon)
                errors, client_s, server_s = [], 0.0, 0.0
                for _ in range(trials):
                    started = time.perf_counter()
                    reports = oracle.randomize(data, rng=rng)
                    client_s += time.perf_counter() - started
                    started = time.perf_counter()
                    estimate = oracle.estimate(reports)
                    server_s += time.perf_counter() - started
                    errors.append(float(np.mean((estimate - truth) ** 2)))
                    done += 1
                    advance(done, total)
                rows.append(
                    {
                        "protocol": name,
                        "epsilon": epsilon,
                        "mse": float(np.mean(errors)),
                        "predicted_mse": oracle.mse(n, truth),
                        "bits_per_report": oracle.bits_per_report(),
                        "client_s": client_s / trials,
                        "server_s": server_s / trials,
                    }
                )
    return rows


@app.command("simulate")
def simulate_command(
    protocol: Annotated[
        list[str], typer.Option("--protocol", "-p", help="Protocol name (repeat for several).")
    ],
    k: Annotated[int, typer.Option(help="Domain size.")] = 1024,
    epsilon: Annotated[
        list[float], typer.Option("--epsilon", "-e", help="Privacy level (repeat for several).")
    ] = [1.0],  # noqa: B006 - typer needs a literal default
    n: Annotated[int, typer.Option(help="Number of users.")] = 100_000,
    dist: Annotated[str, typer.Option(help="zipf, uniform or spike.")] = "zipf",
    trials: Annotated[int, typer.Option(min=1, max=1000)] = 3,
    seed: Annotated[int, typer.Option(min=0)] = 0,
    plot: Annotated[
        Path | None, typer.Option(help="Save a plot of MSE against epsilon (PNG/SVG/PDF).")
    ] = None,
) -> None:
    """Compare protocols on one synthetic dataset: MSE, bits per user, timings."""
    if n < 1 or n > 100_000_000:
        raise ParameterError(f"--n must be in [1, 10^8]; got {n}")
    rows = simulate(
        protocol, k=k, epsilons=epsilon, n=n, distribution=dist, trials=trials, seed=seed
    )
    table = Table(title=f"LDP simulation: k={k}, n={n}, {dist} data, {trials} trial(s)")
    for column in ("protocol", "ε", "MSE", "closed-form MSE", "bits/user", "client s", "server s"):
        table.add_column(column, justify="left" if column == "protocol" else "right")
    for row in rows:
        table.add_row(
            str(row["protocol"]),
            f"{row['epsilon']:g}",
            f"{row['mse']:.3e}",
            f"{row['predicted_mse']:.3e}",
            f"{row['bits_per_report']:.0f}",
            f"{row['client_s']:.3f}",
            f"{row['server_s']:.3f}",
        )
    console.print(table)
    if plot is not None:
        _plot(rows, plot, title=f"k={k}, n={n}, {dist}")
        console.print(f"plot written to {plot}")


def _plot(rows: list[dict[str, float | str]], path: Path, *, title: str) -> None:
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6, 4))
    for name in dict.fromkeys(str(row["protocol"]) for row in rows):
        mine = [row for row in rows if row["protocol"] == name]
        axes.plot([r["epsilon"] for r in mine], [r["mse"] for r in mine], marker="o", label=name)
    axes.set_yscale("log")
    axes.set_xlabel("ε")
    axes.set_ylabel("MSE of the frequency estimate")
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def register(cli: typer.Typer) -> None:
    """Add ``privaudit ldp`` to the CLI."""
    import privaudit.mechanisms.ldp  # noqa: F401  (registers every protocol)

    cli.add_typer(app, name="ldp")
