"""An end-to-end membership audit of a random forest on scikit-learn's bundled digits.

The data never leaves the machine (``sklearn.datasets.load_digits`` ships in the wheel).
Models are trained LiRA style [CCN22]_: a keep matrix drawn from one seed decides,
for each of the ``K + 1`` models, which half of the examples it trains on; model 0 is
the target and models ``1..K`` the reference models. All ``K + 1`` models are one
:class:`ReferenceTrainingPlan` of the recipe :data:`DIGITS_RECIPE`, trained as
resumable work units by :func:`run_reference_training` (in this process by default, or
on any executor). :func:`train_digits_unit` is model ``i`` alone, a pure function of
``(seed, i)``.

References
----------
.. [CCN22] N. Carlini, S. Chien, M. Nasr, S. Song, A. Terzis, F. Tramèr, "Membership
   Inference Attacks From First Principles", IEEE S&P 2022, arXiv:2112.03570.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from privaudit.attacks.membership._base import MembershipAttack
from privaudit.attacks.membership._lira import LiRA
from privaudit.attacks.membership._loss import LossAttack
from privaudit.attacks.membership._metrics import MembershipMetrics, membership_metrics
from privaudit.attacks.membership._recipes import SklearnRecipe
from privaudit.attacks.membership._reference_training import (
    ReferenceTrainingPlan,
    reference_keep_matrix,
    run_reference_training,
    unit_seed,
)
from privaudit.attacks.membership._report import build_membership_report
from privaudit.attacks.membership._rmia import RMIA
from privaudit.attacks.membership._shadow import ShadowModelAttack
from privaudit.attacks.membership._signals import logit_confidence
from privaudit.errors import MissingDependencyError, ParameterError
from privaudit.executor import Executor, SerialExecutor
from privaudit.progress import ProgressCallback
from privaudit.randomness import simulation_generator
from privaudit.reports import Artifact, AuditReport, Gate

__all__ = [
    "DEMO_ATTACKS",
    "DIGITS_RECIPE",
    "DigitsDemoResult",
    "digits_forest",
    "digits_keep_matrix",
    "run_digits_demo",
    "train_digits_unit",
]

N_TREES = 100
"""Trees per random forest (target and reference models alike)."""

SIGNAL_FLOOR = 0.5 / N_TREES
"""Floor on ``p_y`` and its complement: half a tree's vote. A forest of fully grown
trees outputs multiples of 1/N_TREES, often exactly 1; the floor keeps the signal of a
unanimous forest one half-vote beyond the most confident split vote instead of at an
arbitrary ±27.6."""

DIGITS_RECIPE = SklearnRecipe(estimator="random_forest", params={"n_estimators": N_TREES})
"""The recipe of every model of the demo: a random forest of :data:`N_TREES` trees."""


def _digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise MissingDependencyError(
            "the digits demo needs scikit-learn; run: pip install 'privaudit[audit]'"
        ) from error
    data = load_digits()
    return np.asarray(data.data, dtype=np.float64), np.asarray(data.target, dtype=np.int64)


def digits_keep_matrix(*, n_models: int, n_examples: int, seed: int) -> np.ndarray:
    """LiRA's keep matrix: each example trains exactly ``n_models // 2`` of the models.

    ``keep[k, i]`` is true when example ``i`` is in model ``k``'s training set. As in
    the authors' ``train.py``, the matrix is the rank of uniform draws per example,
    so every model gets about half of the examples and every example is a member of
    the same number of models (:func:`reference_keep_matrix`, as a writable copy).
    """
    return reference_keep_matrix(n_models=n_models, n_examples=n_examples, seed=seed).copy()


def digits_forest(seed: int, index: int, *, n_models: int) -> Any:
    """Fit model ``index`` of the audit: a random forest on its half of digits.

    Deterministic in ``(seed, index, n_models)``: the training half comes from
    :func:`digits_keep_matrix` and the forest's randomness from ``(seed, 1, index)``.
    Returns the fitted ``sklearn.ensemble.RandomForestClassifier``.
    """
    features, labels = _digits()
    keep = reference_keep_matrix(n_models=n_models, n_examples=labels.size, seed=seed)
    forest = DIGITS_RECIPE.build(unit_seed(seed, index))
    return forest.fit(features[keep[index]], labels[keep[index]])


def train_digits_unit(seed: int, index: int, *, n_models: int) -> np.ndarray:
    """Train model ``index`` of the audit and return its class probabilities ``(n, 10)``.

    A pure function of ``(seed, index, n_models)``: what unit ``index`` of the demo's
    :class:`ReferenceTrainingPlan` computes (see :func:`digits_forest`).
    """
    features, labels = _digits()
    keep = reference_keep_matrix(n_models=n_models, n_examples=labels.size, seed=seed)
    return DIGITS_RECIPE.fit_predict(
        features, labels, keep[index], seed=unit_seed(seed, index), n_classes=10
    )


@dataclass(frozen=True)
class DigitsDemoResult:
    """The figures of one digits audit.

    Attributes
    ----------
    metrics
        Attack name → its :class:`MembershipMetrics` on the target.
    seconds
        Wall time per stage: ``"train"`` (all models) and one entry per attack.
    total_seconds
        Wall time of the whole audit (data, training, signals, attacks, metrics).
    n_reference, seed
        The configuration.
    target_accuracy
        The target's accuracy on its members (``"train"``) and non-members (``"test"``).
    attacks
        Attack name → the fitted attack (its ``scores_`` feed
        :func:`build_membership_report`).
    keep
        The keep matrix ``(K + 1, n)``; ``keep[0]`` is the target's membership.
    n_trained, n_skipped
        Models this run trained, and models it found already trained in ``workdir``.
    """

    metrics: dict[str, MembershipMetrics]
    seconds: dict[str, float]
    total_seconds: float
    n_reference: int
    seed: int
    target_accuracy: dict[str, float] = field(default_factory=dict)
    attacks: dict[str, MembershipAttack] = field(default_factory=dict, repr=False, compare=False)
    keep: np.ndarray = field(
        default_factory=lambda: np.zeros((0, 0), dtype=bool), repr=False, compare=False
    )
    n_trained: int = 0
    n_skipped: int = 0

    def table(self) -> str:
        """A plain-text table: AUC, TPR at 10/1/0.1/0% FPR, balanced accuracy, time."""
        header = (
            f"{'attack':<22}{'AUC':>7}{'TPR@10%':>9}{'TPR@1%':>8}{'TPR@0.1%':>10}"
            f"{'TPR@0%':>8}{'bal.acc':>9}{'s':>7}"
        )
        lines = [header, "-" * len(header)]
        for name, result in self.metrics.items():
            lines.append(
                f"{name:<22}{result.auc:>7.3f}{result.tpr(0.1):>9.3f}{result.tpr(0.01):>8.3f}"
                f"{result.tpr(0.001):>10.3f}{result.tpr(0.0):>8.3f}"
                f"{result.balanced_accuracy:>9.3f}{self.seconds[name]:>7.2f}"
            )
        first = next(iter(self.metrics.values()))
        lines.append(
            f"{first.n_members} members, {first.n_nonmembers} non-members; K = "
            f"{self.n_reference} reference models; training {self.seconds['train']:.1f} s, "
            f"whole audit {self.total_seconds:.1f} s"
        )
        return "\n".join(lines)

    def report(
        self,
        *,
        gates: Sequence[Gate] = (),
        delta: float = 1e-5,
        alpha: float = 0.05,
        estimate_epsilon: bool = True,
    ) -> AuditReport:
        """The audit report of this run (see :func:`build_membership_report`).

        The split that chooses each ε threshold is drawn from the demo's seed, so the
        same seed gives the same report (up to timings and ``created_at``).
        """
        if self.keep.size == 0 or not self.attacks:
            raise ParameterError(
                "this result holds no scores; build it with run_digits_demo()",
                parameter="result",
            )
        features, labels = _digits()
        membership = self.keep[0]
        scores: dict[str, MembershipAttack] = dict(self.attacks)
        return build_membership_report(
            scores,
            membership,
            title="Membership-inference audit: random forest on scikit-learn digits",
            description=(
                f"A random forest ({N_TREES} trees) trained on a random half of "
                f"scikit-learn's bundled digits ({labels.size} images, 10 classes); "
                f"{self.n_reference} reference forests trained the same way on other "
                "halves (LiRA's keep matrix, drawn from the seed)."
            ),
            artifacts=[
                Artifact.from_array("digits features", features, description="float64 (n, 64)"),
                Artifact.from_array("digits labels", labels, description="int64 (n,)"),
                Artifact.from_array(
                    "keep matrix", self.keep, description="bool (K + 1, n); row 0: the target"
                ),
            ],
            config={
                "demo": "digits",
                "seed": self.seed,
                "n_reference": self.n_reference,
                "n_trees": N_TREES,
                "signal_floor": SIGNAL_FLOOR,
                "attacks": list(self.attacks),
                "delta": delta,
                "alpha": alpha,
                "threshold_selection": "split",
            },
            gates=gates,
            estimate_epsilon=estimate_epsilon,
            delta=delta,
            alpha=alpha,
            seconds={name: self.seconds[name] for name in self.attacks},
            timings={"train": self.seconds["train"], "total": self.total_seconds},
            notes=[
                f"Target accuracy: {self.target_accuracy.get('train', float('nan')):.3f} on "
                f"members, {self.target_accuracy.get('test', float('nan')):.3f} on "
                "non-members."
            ],
            rng=simulation_generator(np.random.SeedSequence([self.seed, 2])),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "n_reference": self.n_reference,
            "seed": self.seed,
            "target_accuracy": dict(self.target_accuracy),
            "seconds": dict(self.seconds),
            "total_seconds": self.total_seconds,
            "models": {"trained": self.n_trained, "skipped": self.n_skipped},
            "attacks": {name: result.to_dict() for name, result in self.metrics.items()},
        }


DEMO_ATTACKS = (
    "loss",
    "shadow",
    "lira-online",
    "lira-online-fixed-var",
    "lira-offline",
    "lira-offline-fixed-var",
    "rmia-online",
    "rmia-offline",
)
"""The attacks :func:`run_digits_demo` can run, by display name."""


def demo_attacks(seed: int) -> dict[str, MembershipAttack]:
    """The attacks the demo runs, by display name (the keys of :data:`DEMO_ATTACKS`)."""
    return {
        "loss": LossAttack(),
        "shadow": ShadowModelAttack(random_state=seed),
        "lira-online": LiRA(online=True),
        "lira-online-fixed-var": LiRA(online=True, fixed_variance=True),
        "lira-offline": LiRA(online=False),
        "lira-offline-fixed-var": LiRA(online=False, fixed_variance=True),
        "rmia-online": RMIA(online=True),
        "rmia-offline": RMIA(online=False, offline_a="auto"),
    }


def run_digits_demo(
    *,
    n_reference: int = 16,
    seed: int | None = 0,
    rng: np.random.Generator | None = None,
    attacks: Sequence[str] | None = None,
    on_progress: ProgressCallback | None = None,
    executor: Executor | str | None = None,
    workdir: str | os.PathLike[str] | None = None,
) -> DigitsDemoResult:
    """Train a target and ``n_reference`` reference forests on digits and audit the target.

    Parameters
    ----------
    n_reference
        K, the number of reference models (>= 2).
    seed
        Seed of the keep matrix and of every model; ignored when ``rng`` is given.
    rng
        A simulation generator to draw the seed from instead.
    attacks
        Names of the attacks to run (see :data:`DEMO_ATTACKS`); default: all.
    on_progress
        Called as ``on_progress(done, total)`` over the ``K + 1`` models: first with
        the number found already trained in ``workdir``, then after each trained model.
    executor
        Where the ``K + 1`` forests train (an executor or a registered name); default:
        one after another in this process (:class:`~privaudit.executor.SerialExecutor`).
    workdir
        Keep the trained models' outputs there, and reuse those already trained by an
        earlier (possibly interrupted) run of the same seed and K; default: a temporary
        directory removed afterwards. Results are identical either way.

    Returns
    -------
    DigitsDemoResult
        Metrics of LOSS, the shadow-model attack, LiRA (online/offline, with and without
        fixed variance) and RMIA (online/offline), and wall times.
    """
    if isinstance(n_reference, bool) or not isinstance(n_reference, int) or n_reference < 2:
        raise ParameterError(
            f"n_reference must be an int >= 2; got {n_reference!r}", parameter="n_reference"
        )
    chosen = list(DEMO_ATTACKS) if attacks is None else list(attacks)
    unknown = [name for name in chosen if name not in DEMO_ATTACKS]
    if unknown or not chosen:
        raise ParameterError(
            f"attacks must be a non-empty list of {list(DEMO_ATTACKS)}; got {attacks!r}",
            parameter="attacks",
        )
    if rng is not None:
        seed = int(rng.integers(0, 2**31))
    elif seed is None:
        seed = int(simulation_generator(None).integers(0, 2**31))
    started = time.perf_counter()
    features, labels = _digits()
    plan = ReferenceTrainingPlan.for_dataset(
        features, labels, recipe=DIGITS_RECIPE, n_models=n_reference + 1, seed=seed
    )
    with ExitStack() as stack:
        if workdir is None:
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="privaudit-digits-"))
        training = run_reference_training(
            plan,
            features,
            labels,
            workdir=workdir,
            executor=executor or SerialExecutor(),
            on_progress=on_progress,
        )
    probabilities, keep = training.outputs, training.keep
    seconds = {"train": time.perf_counter() - started}
    signals = logit_confidence(probabilities, labels, floor=SIGNAL_FLOOR)
    predicted = probabilities[0].argmax(axis=1) == labels
    accuracy = {
        "train": float(predicted[keep[0]].mean()),
        "test": float(predicted[~keep[0]].mean()),
    }
    metrics: dict[str, MembershipMetrics] = {}
    fitted: dict[str, MembershipAttack] = {}
    every = demo_attacks(seed)
    for name in chosen:
        attack = fitted[name] = every[name]
        begun = time.perf_counter()
        if isinstance(attack, ShadowModelAttack):
            attack.fit(signals, keep, labels, features=probabilities)
        else:
            attack.fit(signals, keep, labels)
        metrics[name] = membership_metrics(keep[0], attack.scores_)
        seconds[name] = time.perf_counter() - begun
    return DigitsDemoResult(
        metrics=metrics,
        seconds=seconds,
        total_seconds=time.perf_counter() - started,
        n_reference=n_reference,
        seed=seed,
        target_accuracy=accuracy,
        attacks=fitted,
        keep=keep,
        n_trained=training.trained,
        n_skipped=training.skipped,
    )
