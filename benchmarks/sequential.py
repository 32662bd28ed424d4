"""Sequential learning: simulator throughput and private vs non-private stopping times.

Three sections, each printed as a table:

1. **throughput**: ``simulate_sequential_learning`` with smoothed randomized response
   (ε = σ = 1) at ``--paths`` × ``--agents`` (default 10^4 × 10^3), against the anchor
   measured in the same run: a plain per-agent Python loop (``random.Random`` signals
   and flips, the report law from ``math.erfc``, one agent of one path at a time, as
   in the authors' scripts) on the first ``--loop-paths`` paths. Both report
   path-steps per second; the ratio is ours / loop. The loop is an independent
   implementation of the model, so the table also compares the two mean LLRs at the
   horizon (a z-score over the loop's paths).
2. **stopping**: ``τ_B = inf{n : |l_n| >= B}`` for B in ``--bounds`` under smoothed RR at
   each ``--epsilons`` value and without privacy (σ = 1, θ = +1), on the same number of
   paths: mean ± standard error, median, the share of paths stopped within the
   horizon (a mean is only given when all stopped), and the asymptotic
   ``e^{εσ²B/2}/K`` beside it; plus the mean time of the first correct public action and
   the mean number of wrong actions within the horizon.
3. **cascade**: binary signals (``--p``): the simulated share of right cascades and the
   mean cascade time against the closed forms, private and non-private.

Run from the repository root::

    PYTHONSAFEPATH=1 .venv/bin/python benchmarks/sequential.py
    PYTHONSAFEPATH=1 .venv/bin/python benchmarks/sequential.py --quick   # smoke run

Prints the tables and writes ``benchmarks/results/sequential.json`` (``--output``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling helper modules
import _machine

from privaudit import simulation_generator
from privaudit.mechanisms.sequential import (
    RandomizedResponse,
    SmoothedRandomizedResponse,
    simulate_sequential_learning,
)

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "results" / "sequential.json"
TARGET_S = 10.0  # "10^4 paths x 10^3 agents in seconds": at most 10 s
TARGET_PATHS, TARGET_AGENTS = 10_000, 1_000
NOISY_OTHER_CPU_CORES = 0.2

console = Console(width=None if sys.stdout.isatty() else 200)


class CpuWindow:
    """Cores that other programs used while a cell ran (``/proc/stat`` minus ours)."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.busy = _machine.busy_cpu_seconds()
        self.own = time.process_time()

    def other_cores(self) -> float | None:
        wall = time.perf_counter() - self.wall
        busy = _machine.busy_cpu_seconds()
        if self.busy is None or busy is None or wall < 0.5:
            return None
        other = (busy - self.busy) - (time.process_time() - self.own)
        return max(0.0, other / wall)


# --- section 1: throughput ------------------------------------------------------------


def loop_simulation(
    *, epsilon: float, sigma: float, theta: int, n_agents: int, n_paths: int, seed: int
) -> list[float]:
    """The anchor: one agent of one path at a time in plain Python; returns l_N per path."""
    rng = random.Random(seed)
    root2 = math.sqrt(2.0)

    def cdf(x: float) -> float:
        return 0.5 * math.erfc(-x / root2)

    def p_plus(llr: float, state: int) -> float:
        # P(x = +1 | l, θ) of smoothed RR (amplitude 1/2), linear space.
        t = -(sigma**2) * llr / 2
        z = (t - state) / sigma
        scale = epsilon * sigma
        right = math.exp(scale * z + scale**2 / 2) * cdf(-z - scale)
        left = math.exp(-scale * z + scale**2 / 2) * cdf(z - scale)
        return cdf(-z) - 0.5 * right + 0.5 * left

    finals = []
    for _ in range(n_paths):
        llr = 0.0
        for _ in range(n_agents):
            signal = rng.gauss(theta, sigma)
            threshold = -(sigma**2) * llr / 2
            action = 1 if signal > threshold else -1
            if rng.random() < 0.5 * math.exp(-epsilon * abs(signal - threshold)):
                action = -action
            up, down = p_plus(llr, 1), p_plus(llr, -1)
            llr += math.log(up / down) if action == 1 else math.log((1 - up) / (1 - down))
        finals.append(llr)
    return finals


def throughput_section(args: argparse.Namespace) -> dict[str, Any]:
    srr = SmoothedRandomizedResponse(epsilon=1.0, sigma=1.0)
    cells = []
    for label, mechanism in (("smoothed RR, ε=1", srr), ("non-private", srr.non_private())):
        window = CpuWindow()
        started = time.perf_counter()
        result = simulate_sequential_learning(
            mechanism=mechanism,
            theta=1,
            n_agents=args.agents,
            n_paths=args.paths,
            rng=simulation_generator(args.seed),
        )
        seconds = time.perf_counter() - started
        cells.append(
            {
                "implementation": "privaudit (vectorised)",
                "mechanism": label,
                "paths": args.paths,
                "agents": args.agents,
                "seconds": seconds,
                "path_steps_per_s": args.paths * args.agents / seconds,
                "us_per_path_step": seconds / (args.paths * args.agents) * 1e6,
                "mean_final_llr": float(result.llr[:, -1].mean()),
                "other_cpu_cores": window.other_cores(),
            }
        )
        if label == "smoothed RR, ε=1":
            finals_vectorised = result.llr[:, -1]
        del result
    window = CpuWindow()
    started = time.perf_counter()
    finals = loop_simulation(
        epsilon=1.0,
        sigma=1.0,
        theta=1,
        n_agents=args.agents,
        n_paths=args.loop_paths,
        seed=args.seed,
    )
    seconds = time.perf_counter() - started
    loop_rate = args.loop_paths * args.agents / seconds
    spread = math.hypot(
        float(np.std(finals, ddof=1)) / math.sqrt(len(finals)),
        float(finals_vectorised.std(ddof=1)) / math.sqrt(finals_vectorised.size),
    )
    agreement_z = (float(np.mean(finals)) - float(finals_vectorised.mean())) / spread
    cells.append(
        {
            "implementation": "plain Python loop (anchor)",
            "mechanism": "smoothed RR, ε=1",
            "paths": args.loop_paths,
            "agents": args.agents,
            "seconds": seconds,
            "path_steps_per_s": loop_rate,
            "us_per_path_step": 1e6 / loop_rate,
            "mean_final_llr": float(np.mean(finals)),
            "other_cpu_cores": window.other_cores(),
        }
    )
    ours = cells[0]
    return {
        "cells": cells,
        "speedup_over_loop": ours["path_steps_per_s"] / loop_rate,
        "loop_seconds_at_full_size": args.paths * args.agents / loop_rate,
        "agreement_z": agreement_z,
        "target": {
            "seconds": TARGET_S,
            "at_target_size": (args.paths, args.agents) == (TARGET_PATHS, TARGET_AGENTS),
            "met": ours["seconds"] <= TARGET_S,
        },
    }


def print_throughput(section: dict[str, Any]) -> None:
    table = Table(title="1. Simulator throughput (θ=+1, σ=1)")
    for column in ("implementation", "mechanism", "paths × agents", "seconds", "path-steps/s"):
        table.add_column(
            column, justify="left" if column in ("implementation", "mechanism") else "right"
        )
    table.add_column("µs/path-step", justify="right")
    table.add_column("mean l_N", justify="right")
    table.add_column("other CPU", justify="right")
    for cell in section["cells"]:
        other = cell["other_cpu_cores"]
        table.add_row(
            cell["implementation"],
            cell["mechanism"],
            f"{cell['paths']:,} × {cell['agents']:,}",
            f"{cell['seconds']:.2f}",
            f"{cell['path_steps_per_s']:,.0f}",
            f"{cell['us_per_path_step']:.3f}",
            f"{cell['mean_final_llr']:.3f}",
            "" if other is None else f"{other:.2f}",
        )
    console.print(table)
    target = section["target"]
    console.print(
        f"vectorised / loop: {section['speedup_over_loop']:.0f}x (the loop would take "
        f"{section['loop_seconds_at_full_size']:.0f} s at full size); mean l_N agree: "
        f"z = {section['agreement_z']:+.2f}"
    )
    size = "" if target["at_target_size"] else " [yellow](not at the target size)[/]"
    verdict = "[green]met[/]" if target["met"] else "[red]missed[/]"
    console.print(f"target: 10^4 × 10^3 in <= {target['seconds']:g} s: {verdict}{size}")


# --- section 2: stopping times ------------------------------------------------------


def stopping_section(args: argparse.Namespace) -> dict[str, Any]:
    srr_rows = []
    mechanisms: list[tuple[str, SmoothedRandomizedResponse]] = [
        (f"smoothed RR, ε={epsilon:g}", SmoothedRandomizedResponse(epsilon=epsilon, sigma=1.0))
        for epsilon in args.epsilons
    ]
    mechanisms.append(("non-private", SmoothedRandomizedResponse(epsilon=math.inf, sigma=1.0)))
    for index, (label, mechanism) in enumerate(mechanisms):
        window = CpuWindow()
        result = simulate_sequential_learning(
            mechanism=mechanism,
            theta=1,
            n_agents=args.horizon,
            n_paths=args.stop_paths,
            rng=simulation_generator(np.random.SeedSequence([args.seed, 2, index])),
        )
        first = result.first_correct_time()
        wrong = result.wrong_action_count()
        for bound in args.bounds:
            tau = result.stopping_time(bound)
            stopped = np.isfinite(tau)
            all_stopped = bool(stopped.all())
            srr_rows.append(
                {
                    "mechanism": label,
                    "epsilon": mechanism.epsilon,
                    "bound": bound,
                    "paths": args.stop_paths,
                    "horizon": args.horizon,
                    "stopped_share": float(stopped.mean()),
                    "mean_tau": float(tau.mean()) if all_stopped else None,
                    "stderr_tau": float(tau.std(ddof=1) / math.sqrt(tau.size))
                    if all_stopped
                    else None,
                    "median_tau": float(np.median(tau)),
                    "asymptotic_tau": mechanism.asymptotic_stopping_time(bound)
                    if mechanism.is_private
                    else None,
                    "mean_first_correct": float(first.mean()),
                    "mean_wrong_actions": float(wrong.mean()),
                    "other_cpu_cores": window.other_cores(),
                }
            )
        del result
    return {"cells": srr_rows}


def _number(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "∞"
    return f"{value:,.{digits}f}"


def print_stopping(section: dict[str, Any]) -> None:
    cells = section["cells"]
    table = Table(
        title=f"2. Gaussian signals: τ_B (σ=1, θ=+1, {cells[0]['paths']:,} paths, horizon "
        f"{cells[0]['horizon']:,})"
    )
    for column in (
        "mechanism",
        "B",
        "stopped",
        "mean τ_B ± se",
        "median τ_B",
        "e^{εσ²B/2}/K",
        "sim / asympt.",
        "first correct",
        "wrong actions",
    ):
        table.add_column(column, justify="left" if column == "mechanism" else "right")
    for cell in cells:
        mean, asymptotic = cell["mean_tau"], cell["asymptotic_tau"]
        ratio = mean / asymptotic if mean is not None and asymptotic is not None else None
        table.add_row(
            cell["mechanism"],
            f"{cell['bound']:g}",
            f"{cell['stopped_share']:.1%}",
            "-" if mean is None else f"{mean:,.1f} ± {cell['stderr_tau']:.1f}",
            _number(cell["median_tau"]),
            _number(asymptotic),
            _number(ratio, 3),
            f"{cell['mean_first_correct']:.2f}",
            f"{cell['mean_wrong_actions']:.2f}",
        )
    console.print(table)
    console.print(
        "mean τ_B is given only where every path stopped within the horizon (a mean over "
        "the stopped paths alone would be biased); first correct / wrong actions: public "
        "actions within the horizon"
    )


# --- section 3: binary cascades -------------------------------------------------------


def cascade_section(args: argparse.Namespace) -> dict[str, Any]:
    cells = []
    for index, epsilon in enumerate([*args.epsilons, math.inf]):
        rr = RandomizedResponse(epsilon=epsilon, p=args.p)
        result = simulate_sequential_learning(
            mechanism=rr,
            theta=1,
            n_agents=args.cascade_horizon,
            n_paths=args.cascade_paths,
            rng=simulation_generator(np.random.SeedSequence([args.seed, 3, index])),
        )
        tau = rr.cascade_time(result.llr)
        right = result.llr[:, -1] > 0
        share = float(right.mean())
        cells.append(
            {
                "epsilon": epsilon,
                "p": args.p,
                "k": rr.cascade_threshold(),
                "paths": args.cascade_paths,
                "cascaded_share": float(np.isfinite(tau).mean()),
                "right_share": share,
                "right_share_stderr": math.sqrt(share * (1 - share) / right.size),
                "right_probability": rr.right_cascade_probability(),
                "mean_cascade_time": float(tau.mean()),
                "cascade_time_stderr": float(tau.std(ddof=1) / math.sqrt(tau.size)),
                "expected_cascade_time": rr.expected_cascade_time(),
            }
        )
    return {"cells": cells}


def print_cascade(section: dict[str, Any]) -> None:
    cells = section["cells"]
    table = Table(
        title=f"3. Binary signals: cascades (p={cells[0]['p']:g}, {cells[0]['paths']:,} paths)"
    )
    for column in (
        "ε",
        "k",
        "cascaded",
        "right share ± se",
        "1/(1+ρ^k)",
        "mean τ ± se",
        "E[τ] formula",
    ):
        table.add_column(column, justify="right")
    for cell in cells:
        table.add_row(
            _number(cell["epsilon"], 2),
            str(cell["k"]),
            f"{cell['cascaded_share']:.1%}",
            f"{cell['right_share']:.4f} ± {cell['right_share_stderr']:.4f}",
            f"{cell['right_probability']:.4f}",
            f"{cell['mean_cascade_time']:.3f} ± {cell['cascade_time_stderr']:.3f}",
            f"{cell['expected_cascade_time']:.3f}",
        )
    console.print(table)


# --- command line -------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    def floats(text: str) -> list[float]:
        return [float(part) for part in text.split(",") if part.strip()]

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paths", type=int, default=TARGET_PATHS)
    parser.add_argument("--agents", type=int, default=TARGET_AGENTS)
    parser.add_argument("--loop-paths", type=int, default=20)
    parser.add_argument("--epsilons", type=floats, default=[0.5, 1.0, 2.0])
    parser.add_argument("--bounds", type=floats, default=[2.0, 4.0, 8.0])
    parser.add_argument("--stop-paths", type=int, default=2_000)
    parser.add_argument("--horizon", type=int, default=2_000)
    parser.add_argument("--p", type=float, default=0.7)
    parser.add_argument("--cascade-paths", type=int, default=20_000)
    parser.add_argument("--cascade-horizon", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke run: small sizes")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    if args.quick:
        args.paths, args.agents, args.loop_paths = 1_000, 200, 3
        args.stop_paths, args.horizon = 200, 600
        args.cascade_paths, args.cascade_horizon = 2_000, 600
    return args


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer | np.floating):
        return value.item()
    return str(value)


def _finite(value: Any) -> Any:
    """JSON has no infinity: write it as the string "inf"."""
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    wall = time.perf_counter()
    if args.quick:
        console.print("[yellow]quick smoke run: not at the target sizes[/]")
    sections = {
        "throughput": throughput_section(args),
        "stopping": stopping_section(args),
        "cascade": cascade_section(args),
    }
    print_throughput(sections["throughput"])
    print_stopping(sections["stopping"])
    print_cascade(sections["cascade"])
    noisy = [
        cell["other_cpu_cores"]
        for section in sections.values()
        for cell in section["cells"]
        if (cell.get("other_cpu_cores") or 0.0) > NOISY_OTHER_CPU_CORES
    ]
    if noisy:
        console.print(
            f"[yellow]warning[/]: other programs used up to {max(noisy):.2f} cores during "
            f"{len(noisy)} cell(s): the machine was not quiet, so timings understate it"
        )
    document = {
        "benchmark": "sequential",
        "started_at": started.isoformat(timespec="seconds"),
        "wall_s": time.perf_counter() - wall,
        "machine": _machine.machine_info(["privaudit", "numpy", "scipy", "randomgen"]),
        "settings": {key: value for key, value in vars(args).items() if key != "output"},
        "anchor": "section 1: a plain per-agent Python loop in the same run; section 2: the "
        "non-private baseline and the asymptotic e^{εσ²B/2}/K; section 3: the closed forms",
        "sections": sections,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(_finite(document), indent=2, default=_json_default) + "\n")
    console.print(f"wrote {args.output} ({time.perf_counter() - wall:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
