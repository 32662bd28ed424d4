"""Continual release: counters' variance, stream speed, Toeplitz cost; MaxSum/SumSelect.

Four sections, each printed as a table:

1. **variance**: the largest per-step variance over a horizon T in {2^10, 2^16, 2^20}
   of ``BinaryTreeCounter``, ``HonakerCounter``, ``MatrixFactorizationCounter`` and
   ``BufferedToeplitzCounter`` (noise multiplier 1), from their exact
   ``max_variance()``, beside the closed form of
   the exact square-root factorization (``S²``) and, where ``jax-privacy`` is
   installed, its optimal Toeplitz coefficients (``optimal_max_error_noising_coefs``,
   error from its own ``per_query_error``; these are the square-root coefficients, proved
   optimal for max error by [DMPS24], so the ratio checks our closed form) and its BLT
   optimised for max error with the same number of buffers as ours
   (``buffered_toeplitz.optimize``, about 20 s per T). Ratios are to the plain tree (the
   anchor), and ours to jax_privacy's.
2. **stream**: ``--steps`` (10^6) single-item ``push`` calls through the tree,
   Honaker and BLT counters (T = 2^20, secure ChaCha20 noise, Gaussian and Laplace),
   wall and CPU seconds and µs per step, beside an anchor run in the same process: a
   Python loop that only adds the items (the cost of touching an item in Python at
   all); the ratio is ours / anchor (wall). The 1-minute load average before and after
   is printed: the machine may be shared.
3. **toeplitz**: pushes through ``MatrixFactorizationCounter`` (T = 2^20) for at most
   ``--toeplitz-budget`` seconds; the per-push time is linear in t (two dot products of
   length t), so a least-squares line through the measured pushes extrapolates the
   cost of ``--steps`` pushes (marked ``~``). Memory: the bytes of its arrays; beside it
   the BLT counter's per-push cost and its state (``3d + 1`` numbers, any T).
4. **selection**: ``MaxSum`` and ``SumSelect`` [JRSS23] over T in {2^10, 2^14, 2^18}
   and d in {1, 16, 256} (ε = 1, δ = 10^-6), each strategy forced (``counters``,
   ``sparse-vector``) and ``auto``'s pick marked: the stated ``error_bound(0.05)``, the
   measured largest error over all steps (worst of ``--selection-reps`` runs), and
   steps/s of ``push_many`` (secure ChaCha20 noise). The streams are adversarial:
   for MaxSum every column counts at every other step except one, which stalls for a
   block of T/8 steps, block after block (the max grows every other step, so a
   sparse-vector schedule must keep refreshing, and stays near t/2, so clipping the
   releases to [0, t] cannot hide the noise; the d - 1 running columns are tied, the
   counters' worst case); for SumSelect two groups of columns
   ({0} and the rest) race, each overtaking the other by T/8 in turn (whichever column
   is held falls behind by up to T/8). The anchor is the batch baseline in the same run: one
   release at the end, ``M(T) + ξ`` with ξ discrete Laplace of scale 1/ε (MaxSum), or
   report noisy max of scale 2/ε (SumSelect), ε-DP with error ``O(1/ε)``
   (``O(log(d)/ε)``); the ratio continual/batch shows the price of continual release
   (``Õ(T^{1/3})`` for the sparse vector). Counters draw ``T·d`` noise values, so
   cells with ``T·d > --counters-draws`` (2^19) are not run and show the bound only.

Run from the repository root::

    PYTHONSAFEPATH=1 .venv/bin/python benchmarks/continual.py
    PYTHONSAFEPATH=1 .venv/bin/python benchmarks/continual.py --quick   # smoke run

Writes ``benchmarks/results/continual.json`` (``--output``). ``pip install jax-privacy``
for the jax_privacy column (it is not a dependency of privaudit).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling helper modules
import _machine

from privaudit import simulation_generator
from privaudit.mechanisms.continual import (
    BinaryTreeCounter,
    BufferedToeplitzCounter,
    ContinualCounter,
    HonakerCounter,
    MatrixFactorizationCounter,
    MaxSum,
    SumSelect,
    discrete_laplace,
    sqrt_toeplitz_coefficients,
)
from privaudit.mechanisms.continual._blt import BUFFERS
from privaudit.mechanisms.continual._tails import laplace_max_bound

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "results" / "continual.json"
HORIZONS = (2**10, 2**16, 2**20)
STREAM_T = 2**20
STREAM_TARGET_S = 10.0  # 10^6 pushes per counter on 2 cores

console = Console(width=None if sys.stdout.isatty() else 200)


def jax_privacy_max_variances(
    T: int,  # noqa: N803
    buffers: int,
) -> tuple[float | None, float | None, str]:
    """Largest per-step variance (σ = 1) of jax_privacy's optimal Toeplitz mechanism and
    of its BLT optimised for max error with ``buffers`` buffers (closed forms of
    [DMPS24] Lemma 5.3), and a status line; ``None, None`` without jax-privacy."""
    try:
        import jax
        from jax_privacy.matrix_factorization import buffered_toeplitz, toeplitz
    except ImportError as error:
        return None, None, f"jax-privacy not installed ({error}); pip install jax-privacy"
    jax.config.update("jax_enable_x64", True)
    strategy = toeplitz.optimal_max_error_strategy_coefs(T)
    errors = toeplitz.per_query_error(noising_coef=toeplitz.optimal_max_error_noising_coefs(T))
    optimal = float(toeplitz.sensitivity_squared(strategy)) * float(np.max(np.asarray(errors)))
    blt = buffered_toeplitz.optimize(n=T, min_buffers=buffers, max_buffers=buffers)
    blt_variance = float(buffered_toeplitz.sensitivity_squared(blt, T)) * float(
        buffered_toeplitz.max_error(blt.inverse(), T)
    )
    return optimal, blt_variance, "ok"


def section_variance(horizons: tuple[int, ...]) -> dict[str, Any]:
    rows = []
    for T in horizons:  # noqa: N806
        tree = BinaryTreeCounter(T=T, noise_multiplier=1.0).max_variance()
        honaker = HonakerCounter(T=T, noise_multiplier=1.0).max_variance()
        ours = MatrixFactorizationCounter(T=T, noise_multiplier=1.0).max_variance()
        blt = BufferedToeplitzCounter(T=T, noise_multiplier=1.0).max_variance()
        s = float(np.sum(sqrt_toeplitz_coefficients(T) ** 2))
        jaxp, jax_blt, status = jax_privacy_max_variances(T, BUFFERS)
        rows.append(
            {
                "T": T,
                "tree": tree,
                "honaker": honaker,
                "sqrt_mf": ours,
                "blt": blt,
                "blt_over_sqrt_mf": blt / ours,
                "sqrt_mf_closed_form_S2": s * s,
                "S": s,
                "jax_privacy_optimal_toeplitz": jaxp,
                "jax_privacy_status": status,
                "tree_over_honaker": tree / honaker,
                "tree_over_sqrt_mf": tree / ours,
                "sqrt_mf_over_jax_privacy": None if jaxp is None else ours / jaxp,
                "jax_privacy_blt": jax_blt,
                "blt_over_jax_privacy_blt": None if jax_blt is None else blt / jax_blt,
            }
        )
    table = Table(title="Largest per-step variance, noise multiplier 1 (lower is better)")
    for column in (
        "T",
        "tree",
        "Honaker",
        "sqrt-MF (ours)",
        "BLT (ours, d=6)",
        "BLT/sqrt-MF",
        "S² closed form",
        "jax_privacy",
        "tree/Honaker",
        "tree/sqrt-MF",
        "ours/jax_privacy",
        f"jax_privacy BLT (d={BUFFERS})",
        "our BLT/theirs",
    ):
        table.add_column(column, justify="right")
    for row in rows:
        jaxp = row["jax_privacy_optimal_toeplitz"]
        table.add_row(
            f"2^{row['T'].bit_length() - 1}",
            f"{row['tree']:.2f}",
            f"{row['honaker']:.2f}",
            f"{row['sqrt_mf']:.4f}",
            f"{row['blt']:.4f}",
            f"{row['blt_over_sqrt_mf']:.4f}",
            f"{row['sqrt_mf_closed_form_S2']:.4f}",
            "n/a" if jaxp is None else f"{jaxp:.4f}",
            f"{row['tree_over_honaker']:.2f}x",
            f"{row['tree_over_sqrt_mf']:.2f}x",
            "n/a" if jaxp is None else f"{row['sqrt_mf_over_jax_privacy']:.6f}",
            "n/a" if row["jax_privacy_blt"] is None else f"{row['jax_privacy_blt']:.4f}",
            "n/a"
            if row["blt_over_jax_privacy_blt"] is None
            else f"{row['blt_over_jax_privacy_blt']:.4f}",
        )
    console.print(table)
    if rows[0]["jax_privacy_optimal_toeplitz"] is None:
        console.print(f"[yellow]jax_privacy column skipped: {rows[0]['jax_privacy_status']}")
    return {"rows": rows}


def time_pushes(counter: ContinualCounter, items: list[float]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for one ``push`` per item."""
    start, cpu = time.perf_counter(), time.process_time()
    push = counter.push
    for x in items:
        push(x)
    return time.perf_counter() - start, time.process_time() - cpu


def anchor_seconds(items: list[float]) -> float:
    start = time.perf_counter()
    total = 0.0
    for x in items:
        total += x
    elapsed = time.perf_counter() - start
    assert total >= 0
    return elapsed


STREAM_COUNTERS: tuple[type[ContinualCounter], ...] = (
    BinaryTreeCounter,
    HonakerCounter,
    BufferedToeplitzCounter,
)


def section_stream(steps: int, seed: int) -> dict[str, Any]:
    items = simulation_generator(seed).random(steps).tolist()
    load_before = os.getloadavg()[0]
    anchor = anchor_seconds(items)
    rows = []
    for cls in STREAM_COUNTERS:
        for noise in ({"noise_multiplier": 1.0}, {"epsilon": 1.0}):
            counter = cls(T=max(STREAM_T, steps), **noise)  # secure ChaCha20 noise
            seconds, cpu = time_pushes(counter, items)
            rows.append(
                {
                    "counter": cls.__name__,
                    "noise": "gaussian" if "noise_multiplier" in noise else "laplace",
                    "steps": steps,
                    "seconds": seconds,
                    "cpu_seconds": cpu,
                    "us_per_step": seconds / steps * 1e6,
                    "cpu_us_per_step": cpu / steps * 1e6,
                    "ratio_to_anchor": seconds / anchor,
                    "meets_target": seconds <= STREAM_TARGET_S * steps / 10**6,
                    "largest_state_size": counter.state_size,
                }
            )
    load_after = os.getloadavg()[0]
    table = Table(title=f"{steps:,} pushes, T = 2^20, secure noise (anchor: a bare Python sum)")
    for column in (
        "counter",
        "noise",
        "wall s",
        "CPU s",
        "µs/step (wall)",
        "µs/step (CPU)",
        "ours/anchor",
        "≤ 10 s per 10^6",
    ):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            row["counter"],
            row["noise"],
            f"{row['seconds']:.2f}",
            f"{row['cpu_seconds']:.2f}",
            f"{row['us_per_step']:.2f}",
            f"{row['cpu_us_per_step']:.2f}",
            f"{row['ratio_to_anchor']:.0f}x",
            "yes" if row["meets_target"] else "NO",
        )
    console.print(table)
    console.print(
        f"anchor: {anchor:.3f} s ({anchor / steps * 1e9:.0f} ns per item); "
        f"1-minute load average {load_before:.2f} before, {load_after:.2f} after "
        f"({os.cpu_count()} CPUs)"
    )
    return {
        "anchor_seconds": anchor,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "rows": rows,
    }


def section_toeplitz(steps: int, budget: float, seed: int) -> dict[str, Any]:
    counter = MatrixFactorizationCounter(T=STREAM_T, noise_multiplier=1.0)
    items = simulation_generator(seed).random(STREAM_T).tolist()
    times: list[float] = []
    started = time.perf_counter()
    for x in items:
        before = time.perf_counter()
        counter.push(x)
        times.append(time.perf_counter() - before)
        if before - started > budget:
            break
    measured = len(times)
    # Cost per push = fixed part + a part linear in t. The fixed part is the median of the
    # first pushes; the slope comes from the median of the last 1,000 (medians: the
    # machine is shared, and a noise refill now and then is a spike).
    head = min(1000, measured // 2)
    fixed = float(np.median(times[:head]))
    tail_t = float(np.mean(np.arange(measured - head, measured) + 1))
    slope = max(0.0, (float(np.median(times[-head:])) - fixed) / tail_t)
    intercept = fixed
    horizon = np.arange(1, steps + 1, dtype=float)
    extrapolated = float(np.sum(intercept + slope * horizon))
    arrays = {
        name: value.nbytes for name, value in vars(counter).items() if isinstance(value, np.ndarray)
    }
    result = {
        "T": STREAM_T,
        "measured_pushes": measured,
        "measured_seconds": float(np.sum(times)),
        "fixed_us_per_push": intercept * 1e6,
        "us_per_push_per_1000_history": slope * 1e9,
        "us_per_step_at": {str(n): (intercept + slope * n) * 1e6 for n in (2**10, 2**16, 2**20)},
        "extrapolated_seconds_for_steps": extrapolated,
        "extrapolated": measured < steps,
        "steps": steps,
        "meets_target": extrapolated <= STREAM_TARGET_S * steps / 10**6,
        "array_bytes": arrays,
        "total_array_mib": sum(arrays.values()) / 2**20,
    }
    table = Table(title="MatrixFactorizationCounter, T = 2^20: cost of a push grows with t")
    for column in (
        "pushes measured",
        "µs/push at t=2^10",
        "t=2^16",
        "t=2^20",
        "10^6 pushes",
        "arrays",
    ):
        table.add_column(column, justify="right")
    at = result["us_per_step_at"]
    table.add_row(
        f"{measured:,} in {result['measured_seconds']:.1f} s",
        f"{at[str(2**10)]:.1f}",
        f"{at[str(2**16)]:.0f}",
        f"{at[str(2**20)]:.0f}",
        f"{'~' if result['extrapolated'] else ''}{extrapolated:.0f} s",
        f"{result['total_array_mib']:.0f} MiB",
    )
    console.print(table)
    blt = BufferedToeplitzCounter(T=STREAM_T, noise_multiplier=1.0)
    blt_items = items[: min(len(items), 100_000)]
    blt_wall, blt_cpu = time_pushes(blt, blt_items)
    result["blt"] = {
        "pushes": len(blt_items),
        "us_per_push": blt_wall / len(blt_items) * 1e6,
        "cpu_us_per_push": blt_cpu / len(blt_items) * 1e6,
        "state_numbers": blt.state_size,
        "buffers": len(blt.strategy_parameters[0]),
    }
    console.print(
        f"BufferedToeplitzCounter, T = 2^20: {result['blt']['us_per_push']:.2f} µs per push "
        f"({result['blt']['cpu_us_per_push']:.2f} µs CPU) over {len(blt_items):,} pushes, "
        f"the same at every t; state {blt.state_size} numbers "
        f"(d = {result['blt']['buffers']} buffers), against "
        f"{result['total_array_mib']:.0f} MiB of arrays for the exact Toeplitz counter"
    )
    return result


SELECTION_HORIZONS = (2**10, 2**14, 2**18)
SELECTION_COLUMNS = (1, 16, 256)
SELECTION_EPSILON, SELECTION_DELTA, SELECTION_BETA = 1.0, 1e-6, 0.05
BATCH_GRID_BITS = 16  # the baseline's discrete Laplace runs on the grid 2^-16


def racing_stream(T: int, d: int) -> np.ndarray:  # noqa: N803
    """Column 0 races the other columns (which move together): first column 0 alone
    for T/8 steps, then the others alone for T/4 (overtaking by T/8), then column 0
    alone for T/4, and so on (with d = 1, column 0 alone: SumSelect is then exact)."""
    block = max(1, T // 8)
    phase = np.maximum(0, np.arange(T) + block) // (2 * block)  # 0 for the first block
    zero_leads = phase % 2 == 0
    stream = np.zeros((T, d), dtype=np.int8)
    stream[zero_leads, 0] = 1
    stream[~zero_leads, 1:] = 1
    return stream


def stalling_stream(T: int, d: int) -> np.ndarray:  # noqa: N803
    """Ones at every even step and zeros at every odd one, except that in block b (of
    T/8 steps) column (b - 1) mod d stalls (with d = 1 the single column stalls every
    other block). ``M(t)`` stays near ``t/2``, so clipping releases to ``[0, t]`` cannot
    hide the noise, and the other d - 1 columns are tied (the max of tied noisy sums is
    the counters' worst case)."""
    stream = np.zeros((T, d), dtype=np.int8)
    stream[::2] = 1
    block = max(1, T // 8)
    steps = np.arange(block, T)
    if d == 1:
        stream[steps[(steps // block) % 2 == 1], 0] = 0
    else:
        stream[steps, (steps // block - 1) % d] = 0
    return stream


def batch_baseline(
    task: str, sums: np.ndarray, reps: int, rng: np.random.Generator
) -> tuple[float, float]:
    """One ε-DP release at the end: (the 95th percentile of its error over ``reps``
    runs, the stated bound at β = 0.05, which it should not exceed)."""
    unit = 2.0**-BATCH_GRID_BITS
    final = sums.astype(np.int64)
    if task == "max":  # M(T) + ξ, ξ discrete Laplace of scale 1/ε (sensitivity 1)
        scale = int(np.ceil(2**BATCH_GRID_BITS / SELECTION_EPSILON))
        errors = np.abs(discrete_laplace(rng, scale, reps)) * unit
        bound = laplace_max_bound(scale, 1, SELECTION_BETA) * unit
        return float(np.quantile(errors, 1 - SELECTION_BETA)), bound
    # report noisy max under replacement: scale 2/ε, error <= 2·max|Z| over d draws
    scale = int(np.ceil(2 * 2**BATCH_GRID_BITS / SELECTION_EPSILON))
    gaps = []
    for _ in range(reps):
        noisy = (final << BATCH_GRID_BITS) + discrete_laplace(rng, scale, final.size)
        gaps.append(float(final.max() - final[int(np.argmax(noisy))]))
    bound = 2 * laplace_max_bound(scale, final.size, SELECTION_BETA) * unit
    return float(np.quantile(gaps, 1 - SELECTION_BETA)), bound


def selection_row(
    cls: type[MaxSum | SumSelect],
    strategy: str,
    stream: np.ndarray,
    reps: int,
    counters_draws: int,
) -> dict[str, Any]:
    T, d = stream.shape  # noqa: N806
    kwargs = {"d": d, "horizon": T, "epsilon": SELECTION_EPSILON, "delta": SELECTION_DELTA}
    mech = cls(**kwargs, strategy=strategy)  # type: ignore[arg-type]  # secure noise
    row: dict[str, Any] = {
        "task": "MaxSum" if cls is MaxSum else "SumSelect",
        "T": T,
        "d": d,
        "strategy": strategy,
        "bound": mech.error_bound(SELECTION_BETA),
        "max_refreshes": mech.max_refreshes,
        "threshold": mech.threshold,
        "guarantee": mech.guarantee.to_dict(),
    }
    draws = T * d if strategy == "counters" else T
    if draws > counters_draws:
        row.update(measured=None, seconds=None, steps_per_s=None, refreshes=None)
        return row
    reps = reps if draws <= 2**16 else 1
    sums = np.cumsum(stream, axis=0, dtype=np.int64)
    maxima = sums.max(axis=1)
    worst, seconds, refreshes = 0.0, [], []
    for rep in range(reps):
        if rep:
            mech = cls(**kwargs, strategy=strategy)  # type: ignore[arg-type]
        start = time.perf_counter()
        out = mech.push_many(stream)
        seconds.append(time.perf_counter() - start)
        if cls is MaxSum:
            error = float(np.abs(out - maxima).max())
        else:
            error = float((maxima - sums[np.arange(T), out]).max())
        worst = max(worst, error)
        refreshes.append(mech.refreshes)
    best = min(seconds)
    row.update(
        measured=worst,
        seconds=best,
        steps_per_s=T / best,
        refreshes=max(refreshes),
    )
    return row


def section_selection(
    horizons: tuple[int, ...],
    columns: tuple[int, ...],
    reps: int,
    counters_draws: int,
    seed: int,
) -> dict[str, Any]:
    rng = simulation_generator(seed)
    rows: list[dict[str, Any]] = []
    baselines: list[dict[str, Any]] = []
    started = time.perf_counter()
    for T in horizons:  # noqa: N806
        for d in columns:
            for cls, task in ((MaxSum, "max"), (SumSelect, "select")):
                stream = stalling_stream(T, d) if task == "max" else racing_stream(T, d)
                final = np.cumsum(stream, axis=0, dtype=np.int64)[-1]
                auto = cls(
                    d=d, horizon=T, epsilon=SELECTION_EPSILON, delta=SELECTION_DELTA
                ).strategy
                batch_measured, batch_bound = batch_baseline(task, final, 200, rng)
                baselines.append(
                    {
                        "task": task,
                        "T": T,
                        "d": d,
                        "batch_bound": batch_bound,
                        "batch_p95": batch_measured,
                    }
                )
                for strategy in ("counters", "sparse-vector"):
                    row = selection_row(cls, strategy, stream, reps, counters_draws)
                    row.update(
                        auto=strategy == auto,
                        batch_bound=batch_bound,
                        batch_p95=batch_measured,
                        stream="stalling" if task == "max" else "racing",
                    )
                    rows.append(row)
    elapsed = time.perf_counter() - started
    table = Table(
        title=(
            f"MaxSum / SumSelect, ε = {SELECTION_EPSILON:g}, δ = {SELECTION_DELTA:g}: largest "
            "error over all steps (adversarial streams) vs the batch baseline (one release)"
        )
    )
    for column in (
        "task",
        "T",
        "d",
        "strategy",
        "bound (β=0.05)",
        "measured",
        "measured/bound",
        "refreshes/K",
        "batch: bound, p95",
        "measured/batch bound",
        "steps/s",
    ):
        table.add_column(column, justify="right")
    for row in rows:
        measured = row["measured"]
        k = row["max_refreshes"]
        table.add_row(
            row["task"],
            f"2^{row['T'].bit_length() - 1}",
            str(row["d"]),
            row["strategy"] + (" *" if row["auto"] else ""),
            f"{row['bound']:.0f}",
            "not run" if measured is None else f"{measured:.0f}",
            "" if measured is None else f"{measured / row['bound']:.2f}",
            "" if k is None or row["refreshes"] is None else f"{row['refreshes']}/{k}",
            f"{row['batch_bound']:.1f}, {row['batch_p95']:.1f}",
            "" if measured is None else f"{measured / row['batch_bound']:.0f}x",
            "" if row["steps_per_s"] is None else f"{row['steps_per_s']:,.0f}",
        )
    console.print(table)
    console.print(
        "* = the strategy auto picks. Not run: more than "
        f"{counters_draws:,} noise draws (counters draw T·d, the sparse vector T). "
        f"Section time: {elapsed:.0f} s"
    )
    return {
        "epsilon": SELECTION_EPSILON,
        "delta": SELECTION_DELTA,
        "beta": SELECTION_BETA,
        "reps": reps,
        "counters_draws_limit": counters_draws,
        "rows": rows,
        "batch": baselines,
        "seconds": elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=float, default=1e6)
    parser.add_argument("--toeplitz-budget", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sections", default="variance,stream,toeplitz,selection")
    parser.add_argument("--selection-reps", type=int, default=3)
    parser.add_argument("--counters-draws", type=float, default=2**19)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    steps = 20_000 if args.quick else int(args.steps)
    horizons = HORIZONS[:2] if args.quick else HORIZONS
    budget = 2.0 if args.quick else args.toeplitz_budget
    sections = set(args.sections.split(","))
    document: dict[str, Any] = {
        "machine": _machine.machine_info(["numpy", "scipy", "randomgen", "jax", "jax-privacy"]),
        "settings": {
            "steps": steps,
            "horizons": horizons,
            "toeplitz_budget_s": budget,
            "quick": args.quick,
        },
    }
    if "variance" in sections:
        document["variance"] = section_variance(horizons)
    if "stream" in sections:
        document["stream"] = section_stream(steps, args.seed)
    if "toeplitz" in sections:
        document["toeplitz"] = section_toeplitz(steps, budget, args.seed)
    if "selection" in sections:
        document["selection"] = section_selection(
            SELECTION_HORIZONS[:2] if args.quick else SELECTION_HORIZONS,
            SELECTION_COLUMNS[:2] if args.quick else SELECTION_COLUMNS,
            1 if args.quick else args.selection_reps,
            int(args.counters_draws),
            args.seed,
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    console.print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
