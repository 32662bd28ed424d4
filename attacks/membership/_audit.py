"""Run an audit config end to end: inputs, models, signals, attacks, ε, report.

:func:`run_audit` is what ``privaudit audit --config`` and the service's
``audit.membership`` job both call. It moves through named stages, reporting each
with ``on_progress(stage, done, total)``:

1. ``load inputs``: read and check the artifacts (or the built-in data set); mode
   ``model`` opens the model file (never a pickle) and the dataset;
2. ``train models``: mode ``train``: the target (model 0) and the K reference
   models, one resumable work unit each (see below); mode ``model`` with a recipe:
   the K reference models, on random halves of the dataset's examples;
3. ``compute signals``: the logit-scaled confidence of every model on every example
   (mode ``model``: the target model is queried once per example);
4. ``run attacks``: one unit per attack;
5. ``estimate epsilon``: metrics and the empirical ε of every attack, in the report;
6. ``render report``: the report files, when an output directory is given.

**Resuming.** Mode train's models are one
:class:`~privaudit.attacks.membership.ReferenceTrainingPlan` (seed, K + 1 models,
data, recipe), trained by :func:`~privaudit.attacks.membership.run_reference_training`
as resumable work units on an executor. With a ``work_dir``, model ``i`` writes
``units/unit-0000i.npy`` (its outputs on every example) and then a done marker
``units/unit-0000i.done`` (the plan's fingerprint and the output's SHA-256); a later
run with the same config and ``work_dir`` skips every unit whose marker names the same
plan and whose file matches. The counts of trained and skipped units are in the
:class:`AuditOutcome` and the report's notes. Model ``i`` is a pure function of the
seed and ``i`` (LiRA's keep matrix and ``SeedSequence([seed, 1, i])``), so a resumed
audit reports exactly the figures of an uninterrupted one.

:func:`check_audit_artifacts` runs stage 1 alone: the service calls it before it
queues a job, so a bad upload is refused at once (422/415) rather than failing later.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np

from privaudit.attacks.membership._artifacts import (
    DEFAULT_MAX_ARRAY_BYTES,
    names_error,
    read_npz,
)
from privaudit.attacks.membership._base import MembershipAttack
from privaudit.attacks.membership._config import (
    AuditConfig,
    ModelInputs,
    SignalsInputs,
    TrainInputs,
    build_attack,
)
from privaudit.attacks.membership._datasets import load_dataset
from privaudit.attacks.membership._digits_demo import _digits
from privaudit.attacks.membership._inputs import check_audit_inputs
from privaudit.attacks.membership._recipes import recipe_from_config
from privaudit.attacks.membership._reference_training import (
    ReferenceTrainingPlan,
    ReferenceTrainingResult,
    reference_keep_matrix,
    run_reference_training,
)
from privaudit.attacks.membership._report import build_membership_report
from privaudit.attacks.membership._rmia import RMIA
from privaudit.attacks.membership._shadow import ShadowModelAttack
from privaudit.attacks.membership._signals import (
    DEFAULT_FLOOR,
    signals_from_outputs,
)
from privaudit.attacks.oracles import MODEL_FORMATS, Oracle, load_oracle, require_format
from privaudit.errors import DataError, LimitExceededError
from privaudit.executor import Executor, SerialExecutor
from privaudit.progress import StageCallback
from privaudit.randomness import simulation_generator
from privaudit.reports import Artifact, AuditReport, write_report

__all__ = [
    "STAGES",
    "AuditInputs",
    "AuditOutcome",
    "check_audit_artifacts",
    "run_audit",
]

STAGE_LOAD = "load inputs"
STAGE_TRAIN = "train models"
STAGE_SIGNALS = "compute signals"
STAGE_ATTACKS = "run attacks"
STAGE_EPSILON = "estimate epsilon"
STAGE_REPORT = "render report"
STAGES = (STAGE_LOAD, STAGE_TRAIN, STAGE_SIGNALS, STAGE_ATTACKS, STAGE_EPSILON, STAGE_REPORT)
"""Every stage an audit reports, in order (mode signals skips the two model stages)."""

UNITS_DIR = "units"
FORESTS = ("random_forest", "extra_trees")


@dataclass(frozen=True)
class AuditInputs:
    """Checked inputs of an audit (stage 1).

    Attributes
    ----------
    n_reference, n_examples, n_queries
        K, n and A.
    labels
        ``(n,)`` classes, or ``None`` (mode signals without labels).
    signals, keep
        ``(K + 1, n, A)`` and ``(K + 1, n)``; mode train: ``None`` and the keep
        matrix the models will be trained with.
    features
        Modes train and model: the data set's features ``(n, d)``.
    oracle
        Mode model: the target model, ready to be queried.
    artifacts
        The inputs with their SHA-256, for the report.
    """

    n_reference: int
    n_examples: int
    n_queries: int
    labels: np.ndarray | None
    keep: np.ndarray
    signals: np.ndarray | None = None
    features: np.ndarray | None = field(default=None, repr=False)
    oracle: Oracle | None = field(default=None, repr=False)
    artifacts: tuple[Artifact, ...] = ()

    def summary(self) -> dict[str, int]:
        """``{"reference_models": K, "examples": n, "queries": A}``."""
        return {
            "reference_models": self.n_reference,
            "examples": self.n_examples,
            "queries": self.n_queries,
        }


@dataclass(frozen=True)
class AuditOutcome:
    """What :func:`run_audit` did.

    Attributes
    ----------
    report
        The audit report.
    n_models
        Models the audit trains (target and references; 0 in mode signals).
    trained, skipped
        Units this run trained, and units it found finished by an earlier run.
    seconds
        Wall seconds per stage of this run.
    files
        Format → path of each report file written.
    """

    report: AuditReport
    n_models: int
    trained: int
    skipped: int
    seconds: dict[str, float]
    files: dict[str, Path] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (what the service stores as the job's result)."""
        report = self.report
        return {
            "verdict": report.verdict.status,
            "models": {"total": self.n_models, "trained": self.trained, "skipped": self.skipped},
            "seconds": dict(self.seconds),
            "epsilon": None if report.epsilon is None else report.epsilon.model_dump(mode="json"),
            "attacks": {
                attack.name: {
                    "auc": attack.metrics.auc,
                    "advantage": attack.metrics.advantage,
                    "tpr_at_fpr": {
                        f"{entry.fpr_limit:g}": entry.tpr for entry in attack.metrics.tpr_at_fpr
                    },
                }
                for attack in report.attacks
            },
            "files": sorted(self.files),
        }


def _nothing(stage: str, done: int, total: int | None) -> None:
    return None


def check_audit_artifacts(
    config: AuditConfig,
    artifacts: Mapping[str, Path],
    *,
    max_array_bytes: int = DEFAULT_MAX_ARRAY_BYTES,
    max_examples: int | None = None,
    open_model: bool = True,
) -> AuditInputs:
    """Read and check the config's inputs (stage 1 of :func:`run_audit`).

    Parameters
    ----------
    config
        The audit.
    artifacts
        Artifact name → file, for every name in :meth:`AuditConfig.artifact_names`.
    max_array_bytes
        Bound on the bytes of one artifact's arrays once loaded.
    max_examples
        Bound on n (``None``: none).
    open_model
        Mode model: open the model file (``False``: check its size and format only, as
        the service does before queueing, so that an uploaded model is parsed only in
        the job's own process).

    Raises
    ------
    DataError
        If an artifact is missing, extra, malformed, or disagrees with the config
        (shapes, K, labels an attack needs, too few reference models for an attack).
    UnsupportedFormatError
        If an artifact is not an ``.npz`` (pickle is always refused).
    LimitExceededError
        If an artifact or n exceeds a bound.
    """
    names = config.artifact_names()
    missing = [name for name in names if name not in artifacts]
    extra = sorted(set(artifacts) - set(names))
    if missing or extra:
        raise names_error(
            f"the config reads the artifacts {names}",
            missing,
            extra,
            unexpected_label="not named by the config:",
        )
    if isinstance(config.inputs, SignalsInputs):
        inputs = _signals_inputs(config, config.inputs, artifacts, max_array_bytes)
    elif isinstance(config.inputs, ModelInputs):
        inputs = _model_inputs(config, config.inputs, artifacts, max_array_bytes, open_model)
    else:
        inputs = _train_inputs(config, config.inputs)
    if max_examples is not None and inputs.n_examples > max_examples:
        raise LimitExceededError(
            f"the audit has {inputs.n_examples} examples; the limit is {max_examples}",
            limit=max_examples,
        )
    _check_attacks_fit(config, inputs)
    return inputs


def _signals_inputs(
    config: AuditConfig,
    spec: SignalsInputs,
    artifacts: Mapping[str, Path],
    max_array_bytes: int,
) -> AuditInputs:
    path = artifacts[spec.signals]
    arrays = read_npz(
        path,
        required=("signals", "keep"),
        optional=("labels",),
        max_array_bytes=max_array_bytes,
        name=f"artifact {spec.signals!r}",
    )
    try:
        checked = check_audit_inputs(
            arrays["signals"], arrays["keep"], arrays.get("labels"), min_reference=1
        )
    except DataError as error:
        raise DataError(f"artifact {spec.signals!r}: {error.message}", **error.details) from None
    k = checked.n_reference
    if config.reference_models is not None and config.reference_models != k:
        raise DataError(
            f"the config says reference_models: {config.reference_models}, but "
            f"{spec.signals!r} holds signals of {k} reference models (rows 1..{k}; row 0 is "
            "the target); fix reference_models or leave it out",
            reference_models=config.reference_models,
            found=k,
        )
    return AuditInputs(
        n_reference=k,
        n_examples=checked.n_examples,
        n_queries=int(checked.signals.shape[2]),
        labels=checked.labels,
        keep=checked.keep,
        signals=checked.signals,
        artifacts=(
            Artifact.from_file(
                path,
                name=spec.signals,
                description="signals (K + 1, n[, A]), keep (K + 1, n)"
                + (", labels (n,)" if checked.labels is not None else ""),
            ),
        ),
    )


def _train_inputs(config: AuditConfig, spec: TrainInputs) -> AuditInputs:
    features, labels = _digits()
    k = config.n_reference
    assert k is not None  # mode train always has K
    keep = reference_keep_matrix(n_models=k + 1, n_examples=labels.size, seed=config.seed)
    return AuditInputs(
        n_reference=k,
        n_examples=int(labels.size),
        n_queries=1,
        labels=labels,
        keep=keep,
        features=features,
        artifacts=(
            Artifact.from_array("digits features", features, description="float64 (n, 64)"),
            Artifact.from_array("digits labels", labels, description="int64 (n,)"),
            Artifact.from_array(
                "keep matrix", keep, description="bool (K + 1, n); row 0: the target"
            ),
        ),
    )


def _model_inputs(
    config: AuditConfig,
    spec: ModelInputs,
    artifacts: Mapping[str, Path],
    max_bytes: int,
    open_model: bool,
) -> AuditInputs:
    dataset_path, model_path = artifacts[spec.dataset], artifacts[spec.model]
    try:
        data = load_dataset(
            dataset_path,
            features=spec.features,
            label=spec.label,
            member=spec.member,
            max_bytes=max_bytes,
        )
    except DataError as error:
        raise DataError(f"artifact {spec.dataset!r}: {error.message}", **error.details) from None
    if not open_model:
        require_format(model_path, *MODEL_FORMATS, max_bytes=max_bytes)
    architecture = spec.architecture
    oracle = (
        None
        if not open_model
        else load_oracle(
            model_path,
            architecture=None if architecture is None else architecture.name,
            input_shape=None if architecture is None else tuple(architecture.input_shape),
            n_classes=None if architecture is None else architecture.n_classes,
            config=None if architecture is None else architecture.config,
            output=spec.output,
            max_bytes=max_bytes,
            query_budget=data.n_examples,  # each example is asked once
        )
    )
    n_classes = getattr(oracle, "n_classes", None)
    if n_classes is not None and int(data.labels.max()) >= n_classes:
        raise DataError(
            f"artifact {spec.dataset!r} has labels up to {int(data.labels.max())}, but the model "
            f"{spec.model!r} answers {n_classes} classes (labels must be 0..{n_classes - 1})",
            n_classes=n_classes,
        )
    k = config.n_reference or 0
    keep = np.vstack(
        [
            data.member[None, :],
            reference_keep_matrix(n_models=k, n_examples=data.n_examples, seed=config.seed),
        ]
    )
    return AuditInputs(
        n_reference=k,
        n_examples=data.n_examples,
        n_queries=1,
        labels=data.labels,
        keep=keep,
        features=data.features,
        oracle=oracle,
        artifacts=(
            Artifact.from_file(
                model_path,
                name=spec.model,
                description="the target model"
                + ("" if oracle is None else f" ({type(oracle).__name__})"),
            ),
            Artifact.from_file(
                dataset_path,
                name=spec.dataset,
                description=f"{data.format}: {data.n_examples} examples, {data.n_members} "
                "members of the target's training set",
            ),
        ),
    )


def _check_attacks_fit(config: AuditConfig, inputs: AuditInputs) -> None:
    for spec in config.attacks:
        attack = build_attack(spec.attack, spec.params, seed=config.seed)
        needed = attack.min_reference
        if isinstance(attack, RMIA):
            needed = attack.min_reference_for_fit
        if inputs.n_reference < needed:
            raise DataError(
                f"attack {spec.display_name!r} needs at least {needed} reference models; the "
                f"inputs have {inputs.n_reference}",
                attack=spec.display_name,
            )
        if isinstance(attack, ShadowModelAttack) and inputs.labels is None:
            raise DataError(
                f"attack {spec.display_name!r} (shadow) trains one classifier per class: the "
                "signals artifact must hold labels (n,)",
                attack=spec.display_name,
            )


def run_audit(
    config: AuditConfig,
    *,
    artifacts: Mapping[str, Path] | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    on_progress: StageCallback | None = None,
    max_array_bytes: int = DEFAULT_MAX_ARRAY_BYTES,
    formats: Sequence[str] | None = None,
    executor: Executor | str | None = None,
) -> AuditOutcome:
    """Run the audit ``config`` and build its report.

    Parameters
    ----------
    config
        The audit (:func:`parse_audit_config`, :func:`load_audit_config`).
    artifacts
        Artifact name → file, for every name the config reads.
    work_dir
        Where trained models are kept as resumable units; run again with the same
        ``work_dir`` to skip finished ones. ``None``: nothing is kept.
    out_dir
        Where to write the report (``report.json``, ...).
    on_progress
        ``callback(stage, done, total)`` (see :data:`STAGES`).
    max_array_bytes
        Bound on the bytes of one artifact's arrays once loaded.
    formats
        The formats written to ``out_dir`` (default: the config's ``report.formats``).
    executor
        Where mode train's models are trained: an :class:`~privaudit.executor.Executor`
        or a registered name: ``"serial"`` (the default: one after another in this
        process), ``"local"`` (worker processes, one per core or per GPU, no more than
        there are models) or ``"ray"``.

    Returns
    -------
    AuditOutcome
        The report, the counts of trained and skipped units, the stage timings and the
        files written.
    """
    progress = on_progress or _nothing
    started = time.perf_counter()
    seconds: dict[str, float] = {}

    progress(STAGE_LOAD, 0, 1)
    inputs = check_audit_artifacts(config, artifacts or {}, max_array_bytes=max_array_bytes)
    seconds[STAGE_LOAD] = time.perf_counter() - started
    progress(STAGE_LOAD, 1, 1)

    trained = skipped = n_models = 0
    features: np.ndarray | None = None
    signals = inputs.signals
    if isinstance(config.inputs, TrainInputs):
        begun = time.perf_counter()
        n_models = inputs.n_reference + 1
        training = _train_models(config, config.inputs.recipe, inputs, work_dir, executor, progress)
        trained, skipped = training.trained, training.skipped
        seconds[STAGE_TRAIN] = time.perf_counter() - begun
        begun = time.perf_counter()
        progress(STAGE_SIGNALS, 0, 1)
        assert inputs.labels is not None
        signals = training.signals(inputs.labels, floor=_signal_floor(config.inputs.recipe))
        if training.outputs.ndim == 3:  # (K + 1, n, C): the shadow attack's features
            features = training.outputs
        seconds[STAGE_SIGNALS] = time.perf_counter() - begun
        progress(STAGE_SIGNALS, 1, 1)
        description = _train_description(config, config.inputs, inputs)
    elif isinstance(config.inputs, ModelInputs):
        recipe = config.inputs.recipe
        floor = DEFAULT_FLOOR if recipe is None else _signal_floor(recipe)
        rows = []
        if recipe is not None:
            begun = time.perf_counter()
            n_models = inputs.n_reference
            training = _train_models(config, recipe, inputs, work_dir, executor, progress)
            trained, skipped = training.trained, training.skipped
            seconds[STAGE_TRAIN] = time.perf_counter() - begun
            assert inputs.labels is not None
            rows = list(training.signals(inputs.labels, floor=floor))
        begun = time.perf_counter()
        progress(STAGE_SIGNALS, 0, 1)
        signals = np.stack([_target_signal(inputs, floor), *rows])
        seconds[STAGE_SIGNALS] = time.perf_counter() - begun
        progress(STAGE_SIGNALS, 1, 1)
        description = _model_description(config, config.inputs, inputs)
    else:
        description = _signals_description(config.inputs, inputs)
    assert signals is not None

    fitted: dict[str, MembershipAttack] = {}
    attack_seconds: dict[str, float] = {}
    progress(STAGE_ATTACKS, 0, len(config.attacks))
    for done, spec in enumerate(config.attacks, start=1):
        begun = time.perf_counter()
        attack = build_attack(spec.attack, spec.params, seed=config.seed)
        if isinstance(attack, ShadowModelAttack) and features is not None:
            attack.fit(signals, inputs.keep, inputs.labels, features=features)
        else:
            attack.fit(signals, inputs.keep, inputs.labels)
        fitted[spec.display_name] = attack
        attack_seconds[spec.display_name] = time.perf_counter() - begun
        progress(STAGE_ATTACKS, done, len(config.attacks))
    seconds[STAGE_ATTACKS] = sum(attack_seconds.values())

    begun = time.perf_counter()
    progress(STAGE_EPSILON, 0, 1)
    notes = []
    if n_models:
        notes.append(
            f"Models: {n_models} (the target and {inputs.n_reference} reference models); "
            f"{trained} trained in this run, {skipped} reused from an earlier run of the same "
            "audit (finished work units)."
        )
    timings = {"load": seconds[STAGE_LOAD]}
    if STAGE_TRAIN in seconds:
        timings["train"] = seconds[STAGE_TRAIN]
        timings["signals"] = seconds[STAGE_SIGNALS]
    timings["total"] = time.perf_counter() - started
    report = build_membership_report(
        fitted,
        inputs.keep[0],
        title=config.report.title or _default_title(config),
        description=description,
        artifacts=list(inputs.artifacts),
        config=config.model_dump(mode="json"),
        gates=config.gates.to_gates(),
        estimate_epsilon=config.epsilon.estimate,
        delta=config.epsilon.delta,
        alpha=config.epsilon.alpha,
        threshold_selection=config.epsilon.threshold_selection,
        thresholds=config.epsilon.thresholds,
        seconds=attack_seconds,
        timings=timings,
        notes=notes,
        rng=simulation_generator(np.random.SeedSequence([config.seed, 2])),
    )
    seconds[STAGE_EPSILON] = time.perf_counter() - begun
    progress(STAGE_EPSILON, 1, 1)

    files: dict[str, Path] = {}
    if out_dir is not None:
        begun = time.perf_counter()
        chosen = list(config.report.formats if formats is None else formats)
        progress(STAGE_REPORT, 0, len(chosen))
        files = write_report(report, Path(out_dir), formats=chosen)
        seconds[STAGE_REPORT] = time.perf_counter() - begun
        progress(STAGE_REPORT, len(chosen), len(chosen))
    return AuditOutcome(
        report=report,
        n_models=n_models,
        trained=trained,
        skipped=skipped,
        seconds=seconds,
        files=files,
    )


def _default_title(config: AuditConfig) -> str:
    if isinstance(config.inputs, ModelInputs):
        return f"Membership-inference audit: {config.inputs.model}"
    if isinstance(config.inputs, TrainInputs):
        recipe = config.inputs.recipe
        model = recipe.get("estimator") or recipe.get("architecture") or recipe["trainer"]
        return f"Membership-inference audit: {model} on scikit-learn digits"
    return "Membership-inference audit"


def _train_description(config: AuditConfig, spec: TrainInputs, inputs: AuditInputs) -> str:
    return (
        f"A model trained with the recipe {json.dumps(spec.recipe, sort_keys=True)} on a "
        f"random half of scikit-learn's bundled digits ({inputs.n_examples} images, 10 "
        f"classes); {inputs.n_reference} reference models trained the same way on other "
        f"halves (LiRA's keep matrix, drawn from seed {config.seed})."
    )


def _target_signal(inputs: AuditInputs, floor: float) -> np.ndarray:
    """Mode model: query the target once per example; its logit-scaled confidence (n,)."""
    oracle, labels = inputs.oracle, inputs.labels
    assert oracle is not None and labels is not None and inputs.features is not None
    answers = oracle.predict(inputs.features)[None]
    return np.asarray(signals_from_outputs(answers, labels, output=oracle.output, floor=floor)[0])


def _model_description(config: AuditConfig, spec: ModelInputs, inputs: AuditInputs) -> str:
    members = int(inputs.keep[0].sum())
    text = (
        f"The model {spec.model!r} (queried once per example) on the {inputs.n_examples} "
        f"examples of {spec.dataset!r}, {members} of them in its training set"
    )
    if spec.recipe is None:
        return text + "; no reference models."
    return text + (
        f"; {inputs.n_reference} reference models trained here with the recipe "
        f"{json.dumps(spec.recipe, sort_keys=True)} on random halves of those examples "
        f"(LiRA's keep matrix, drawn from seed {config.seed})."
    )


def _signals_description(spec: SignalsInputs, inputs: AuditInputs) -> str:
    queries = f", {inputs.n_queries} queries each" if inputs.n_queries > 1 else ""
    return (
        f"Precomputed signals of a target model (row 0) and {inputs.n_reference} reference "
        f"models on {inputs.n_examples} examples{queries}, from the artifact {spec.signals!r}."
    )


# --- models as resumable work units ----------------------------------------------------


def _train_models(
    config: AuditConfig,
    recipe: Mapping[str, Any],
    inputs: AuditInputs,
    work_dir: str | os.PathLike[str] | None,
    executor: Executor | str | None,
    progress: StageCallback,
) -> ReferenceTrainingResult:
    """Every trained model's outputs, as the resumable units of one reference-training
    plan: mode train's target and K reference models, or mode model's K reference models
    (the target is the user's), whose keep matrix is the audit's rows 1..K."""
    assert inputs.features is not None and inputs.labels is not None
    features = inputs.features.reshape(inputs.n_examples, -1)
    own_target = isinstance(config.inputs, ModelInputs)
    plan = ReferenceTrainingPlan.for_dataset(
        features,
        inputs.labels,
        recipe=recipe_from_config(dict(recipe)),
        n_models=inputs.n_reference + (0 if own_target else 1),
        seed=config.seed,
    )
    assert np.array_equal(plan.keep(), inputs.keep[1:] if own_target else inputs.keep)

    def report(done: int, total: int) -> None:
        progress(STAGE_TRAIN, done, total)

    with ExitStack() as stack:
        if work_dir is None:
            directory = Path(stack.enter_context(TemporaryDirectory(prefix="privaudit-audit-")))
        else:
            directory = Path(work_dir) / UNITS_DIR
        return run_reference_training(
            plan,
            features,
            inputs.labels,
            workdir=directory,
            # "local": run_reference_training's own choice, sized to the units and to
            # the recipe (one worker per core, or per GPU for a recipe that uses one).
            executor=None if executor == "local" else (executor or SerialExecutor()),
            on_progress=report,
        )


def _signal_floor(recipe: Mapping[str, Any]) -> float:
    """Half a tree's vote for forests (their probabilities are multiples of 1/trees)."""
    if recipe.get("trainer") == "sklearn" and recipe.get("estimator") in FORESTS:
        trees = int(recipe.get("params", {}).get("n_estimators", 100))
        return max(0.5 / trees, DEFAULT_FLOOR)
    return DEFAULT_FLOOR
