"""Reference models as resumable work units, LiRA style.

A :class:`ReferenceTrainingPlan` fixes everything the reference models depend on: the
seed, the number of models, the data (by fingerprint) and the training recipe. As in
the authors' ``train.py`` [CCN22]_, the keep matrix (which examples train which model)
is drawn from the seed, so every model can be trained on its own: *unit* ``i`` trains
model ``i`` on ``features[keep[i]]`` and writes its outputs on all ``n`` examples.

:func:`run_reference_training` runs the missing units on an executor
(:mod:`privaudit.executor`) and stacks the outputs. Each unit writes

* ``unit-00042.npy``: its outputs, written to a temporary file and renamed, so the
  file is either absent or complete;
* then ``unit-00042.done``: a JSON marker with the output's SHA-256 and the plan's
  fingerprint.

A unit whose marker names this plan and whose file matches the checksum is done; a
restarted run skips it. A marker of another plan (another seed, recipe or dataset), a
missing or corrupt file, or a damaged marker is not trusted: the unit is trained
again. Units are idempotent, so a unit that an executor retries, or two runs racing on
one directory, leave consistent files.

The working directory also holds ``plan.json`` (what the plan is, for people) and the
dataset (``features.npy``, ``labels.npy``), which each worker loads with
``allow_pickle=False`` and checks against the plan's dataset fingerprint.

References
----------
.. [CCN22] N. Carlini, S. Chien, M. Nasr, S. Song, A. Terzis, F. Tramèr, "Membership
   Inference Attacks From First Principles", IEEE S&P 2022, arXiv:2112.03570.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from privaudit.attacks.membership._recipes import TrainingRecipe
from privaudit.attacks.membership._signals import (
    DEFAULT_FLOOR,
    signals_from_outputs,
)
from privaudit.errors import DataError, ParameterError, PrivauditError
from privaudit.executor import (
    Executor,
    LocalProcessExecutor,
    WorkUnit,
    make_executor,
    usable_cpus,
)
from privaudit.files import write_atomically
from privaudit.progress import ProgressCallback
from privaudit.randomness import simulation_generator

__all__ = [
    "ReferenceTrainingPlan",
    "ReferenceTrainingResult",
    "dataset_fingerprint",
    "reference_keep_matrix",
    "run_reference_training",
    "train_reference_unit",
]

PLAN_FORMAT = "privaudit.reference-plan/1"
MARKER_FORMAT = "privaudit.reference-unit/1"
KEEP_ALGORITHM = "lira-rank/1"
_MARKER_MAX_BYTES = 64 * 1024


def reference_keep_matrix(*, n_models: int, n_examples: int, seed: int) -> np.ndarray:
    """LiRA's keep matrix: each example trains exactly ``n_models // 2`` of the models.

    ``keep[k, i]`` is true when example ``i`` is in model ``k``'s training set. As in
    the authors' ``train.py``, the matrix is the rank of uniform draws per example, so
    every model gets about half of the examples and every example is a member of the
    same number of models. The result is read-only.
    """
    return _keep_matrix(int(n_models), int(n_examples), int(seed))


@functools.lru_cache(maxsize=4)
def _keep_matrix(n_models: int, n_examples: int, seed: int) -> np.ndarray:
    rng = simulation_generator(np.random.SeedSequence([seed, 0]))
    ranks = rng.random((n_models, n_examples)).argsort(axis=0).argsort(axis=0)
    keep = np.asarray(ranks < n_models // 2)
    keep.setflags(write=False)
    return keep


def unit_seed(seed: int, index: int) -> int:
    """The seed of model ``index``: one 32-bit word of ``SeedSequence([seed, 1, index])``."""
    return int(np.random.SeedSequence([seed, 1, index]).generate_state(1)[0])


def _as_dataset(features: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    try:
        x = np.ascontiguousarray(features, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise DataError(f"features must be a numeric array; {error}") from error
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"labels must be a 1-D array of integer classes; got dtype {y.dtype}, shape {y.shape}"
        )
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise DataError(
            f"features must be (n, d) with one row per label; got {x.shape} for {y.shape[0]} labels"
        )
    if y.size and y.min() < 0:
        raise DataError(f"labels must be class indices 0, 1, ...; got {y.min()}")
    if not np.isfinite(x).all():
        raise DataError("features contain NaN or infinite values")
    return x, np.ascontiguousarray(y, dtype=np.int64)


def dataset_fingerprint(features: npt.ArrayLike, labels: npt.ArrayLike) -> str:
    """SHA-256 of the features (float64, C order) and labels (int64), shapes included."""
    x, y = _as_dataset(features, labels)
    digest = hashlib.sha256()
    digest.update(f"features{x.shape}float64;labels{y.shape}int64;".encode())
    digest.update(x.tobytes())
    digest.update(y.tobytes())
    return digest.hexdigest()


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ParameterError(f"{name} must be an int >= {minimum}; got {value!r}", parameter=name)
    return int(value)


@dataclass(frozen=True, kw_only=True)
class ReferenceTrainingPlan:
    """Everything reference models depend on; build it with :meth:`for_dataset`.

    Parameters
    ----------
    recipe
        How each model is trained (:class:`SklearnRecipe`, :class:`TorchRecipe`).
    seed
        Seed of the keep matrix and of every model (model ``i`` gets
        ``SeedSequence([seed, 1, i])``).
    n_models
        How many models (>= 2); an audit that trains its target like its references
        uses model 0 as the target.
    n_examples, n_classes, dataset_fingerprint
        The data, as :meth:`for_dataset` measures it.
    """

    recipe: TrainingRecipe
    seed: int
    n_models: int
    n_examples: int
    n_classes: int
    dataset_fingerprint: str

    def __post_init__(self) -> None:
        if not isinstance(self.recipe, TrainingRecipe):
            raise ParameterError(
                f"recipe must be a training recipe (SklearnRecipe, TorchRecipe); got "
                f"{type(self.recipe).__name__}",
                parameter="recipe",
            )
        object.__setattr__(self, "seed", _check_int(self.seed, "seed", 0))
        object.__setattr__(self, "n_models", _check_int(self.n_models, "n_models", 2))
        object.__setattr__(self, "n_examples", _check_int(self.n_examples, "n_examples", 2))
        object.__setattr__(self, "n_classes", _check_int(self.n_classes, "n_classes", 2))
        text = self.dataset_fingerprint
        if not isinstance(text, str) or len(text) != 64 or set(text) - set("0123456789abcdef"):
            raise ParameterError(
                f"dataset_fingerprint must be a SHA-256 hex digest (dataset_fingerprint()); "
                f"got {text!r}"
            )

    @classmethod
    def for_dataset(
        cls,
        features: npt.ArrayLike,
        labels: npt.ArrayLike,
        *,
        recipe: TrainingRecipe,
        n_models: int,
        seed: int,
    ) -> ReferenceTrainingPlan:
        """The plan of ``n_models`` models of ``recipe`` on this data.

        Checks the data and that the recipe can train on it (a torch recipe builds its
        model once on the CPU), so a bad recipe fails here rather than in every worker.
        """
        x, y = _as_dataset(features, labels)
        n_classes = int(y.max()) + 1 if y.size else 0
        if n_classes < 2:
            raise DataError(f"reference training needs at least 2 classes; got {n_classes}")
        if not isinstance(recipe, TrainingRecipe):
            raise ParameterError(
                f"recipe must be a training recipe; got {type(recipe).__name__}",
                parameter="recipe",
            )
        recipe.check_data(x, y, n_classes)
        return cls(
            recipe=recipe,
            seed=seed,
            n_models=n_models,
            n_examples=y.size,
            n_classes=n_classes,
            dataset_fingerprint=dataset_fingerprint(x, y),
        )

    def describe(self) -> dict[str, Any]:
        """The plan as JSON-ready data: what its fingerprint is computed from."""
        return {
            "format": PLAN_FORMAT,
            "seed": self.seed,
            "n_models": self.n_models,
            "n_examples": self.n_examples,
            "n_classes": self.n_classes,
            "dataset": self.dataset_fingerprint,
            "keep": KEEP_ALGORITHM,
            "recipe": self.recipe.fingerprint_config(),
        }

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 of :meth:`describe` as canonical JSON: equal plans, equal fingerprints."""
        text = json.dumps(self.describe(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def keep(self) -> np.ndarray:
        """The keep matrix ``(n_models, n_examples)`` (read-only)."""
        return reference_keep_matrix(
            n_models=self.n_models, n_examples=self.n_examples, seed=self.seed
        )

    def unit_seed(self, index: int) -> int:
        """The seed of model ``index``."""
        return unit_seed(self.seed, index)


@dataclass(frozen=True)
class ReferenceTrainingResult:
    """The stacked outputs of a plan's models and what the run did.

    Attributes
    ----------
    outputs
        ``(m, n, C)`` or ``(m, n, A, C)``: probabilities or logits, as ``output`` says,
        of the ``m`` models in ``indices`` (all ``n_models`` unless the run was given a
        subset).
    keep
        The rows of the plan's keep matrix for those models ``(m, n)``.
    indices
        Which of the plan's models ``outputs`` holds, in order.
    output
        ``"probabilities"`` or ``"logits"``.
    trained, skipped
        Units this run trained, and units it found done (their files were reused).
    trained_indices
        Which units this run trained.
    unit_seconds
        Training seconds of each unit this run trained.
    seconds
        Wall time of the whole run.
    """

    outputs: np.ndarray
    keep: np.ndarray
    indices: tuple[int, ...]
    output: str
    trained: int
    skipped: int
    trained_indices: tuple[int, ...]
    unit_seconds: dict[int, float]
    seconds: float

    def signals(self, labels: npt.ArrayLike, *, floor: float = DEFAULT_FLOOR) -> np.ndarray:
        """The logit-scaled confidence ``(n_models, n[, A])`` the attacks read."""
        return signals_from_outputs(self.outputs, labels, output=self.output, floor=floor)


def _unit_paths(directory: Path, index: int) -> tuple[Path, Path]:
    stem = f"unit-{index:05d}"
    return directory / f"{stem}.npy", directory / f"{stem}.done"


def _array_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _load_unit(directory: Path, plan: ReferenceTrainingPlan, index: int) -> np.ndarray | None:
    """Unit ``index``'s outputs if its marker is valid for this plan, else ``None``."""
    output_path, marker_path = _unit_paths(directory, index)
    try:
        if marker_path.stat().st_size > _MARKER_MAX_BYTES:
            return None
        marker = json.loads(marker_path.read_text(encoding="utf-8"))
        data = output_path.read_bytes()
    except (OSError, ValueError):
        return None
    if (
        not isinstance(marker, dict)
        or marker.get("format") != MARKER_FORMAT
        or marker.get("plan") != plan.fingerprint
        or marker.get("index") != index
        or marker.get("bytes") != len(data)
        or marker.get("sha256") != hashlib.sha256(data).hexdigest()
    ):
        return None
    try:
        outputs = np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError):
        return None
    if not isinstance(outputs, np.ndarray) or outputs.ndim not in (2, 3):
        return None
    return outputs if outputs.shape[0] == plan.n_examples else None


_DATASETS: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}


def _store_dataset(directory: Path, features: np.ndarray, labels: np.ndarray, digest: str) -> None:
    try:
        if _load_dataset(directory, digest, cache=False) is not None:
            return
    except DataError:
        pass
    write_atomically(directory / "features.npy", _array_bytes(features))
    write_atomically(directory / "labels.npy", _array_bytes(labels))


def _load_dataset(
    directory: Path, digest: str, *, cache: bool = True
) -> tuple[np.ndarray, np.ndarray] | None:
    """The working directory's dataset, checked against ``digest`` (``None``: absent)."""
    key = (str(directory.resolve()), digest)
    if cache and key in _DATASETS:
        return _DATASETS[key]
    try:
        features = np.load(directory / "features.npy", allow_pickle=False)
        labels = np.load(directory / "labels.npy", allow_pickle=False)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise DataError(f"the dataset in {directory} cannot be read: {error}") from error
    if dataset_fingerprint(features, labels) != digest:
        raise DataError(
            f"the dataset in {directory} does not match the plan's dataset fingerprint; "
            "another run with other data uses this directory"
        )
    if cache:
        _DATASETS.clear()  # one dataset per worker process at a time
        _DATASETS[key] = (features, labels)
    return features, labels


def train_reference_unit(workdir: str, plan: ReferenceTrainingPlan, index: int) -> dict[str, Any]:
    """Work unit ``index`` of ``plan``: train model ``index`` and write its files.

    Idempotent: when the unit's marker is already valid for this plan it returns at
    once (``"status": "skipped"``). Otherwise it trains the model on
    ``features[keep[index]]``, writes ``unit-NNNNN.npy`` atomically and then the marker
    ``unit-NNNNN.done``, and returns ``{"index", "status": "trained", "seconds",
    "sha256"}``.
    """
    directory = Path(workdir)
    if not 0 <= index < plan.n_models:
        raise ParameterError(f"unit index must be in [0, {plan.n_models}); got {index}")
    if _load_unit(directory, plan, index) is not None:
        return {"index": index, "status": "skipped", "seconds": 0.0}
    dataset = _load_dataset(directory, plan.dataset_fingerprint)
    if dataset is None:
        raise DataError(f"no dataset in {directory}; run_reference_training writes it first")
    features, labels = dataset
    started = time.perf_counter()
    outputs = plan.recipe.fit_predict(
        features,
        labels,
        plan.keep()[index],
        seed=plan.unit_seed(index),
        n_classes=plan.n_classes,
    )
    seconds = time.perf_counter() - started
    expected: tuple[int, ...] = (plan.n_examples, plan.n_classes)
    if plan.recipe.n_queries > 1:
        expected = (plan.n_examples, plan.recipe.n_queries, plan.n_classes)
    if outputs.shape != expected or not np.isfinite(outputs).all():
        raise DataError(
            f"model {index} returned outputs of shape {outputs.shape} (finite: "
            f"{bool(np.isfinite(outputs).all())}); expected finite outputs of shape {expected}"
        )
    data = _array_bytes(outputs)
    digest = hashlib.sha256(data).hexdigest()
    output_path, marker_path = _unit_paths(directory, index)
    write_atomically(output_path, data)
    marker = {
        "format": MARKER_FORMAT,
        "plan": plan.fingerprint,
        "index": index,
        "file": output_path.name,
        "bytes": len(data),
        "sha256": digest,
        "shape": list(outputs.shape),
        "dtype": str(outputs.dtype),
        "seconds": seconds,
        "pid": os.getpid(),
        "finished_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }
    write_atomically(marker_path, json.dumps(marker, indent=1).encode())
    return {"index": index, "status": "trained", "seconds": seconds, "sha256": digest}


def _check_indices(indices: Sequence[int] | None, n_models: int) -> tuple[int, ...]:
    if indices is None:
        return tuple(range(n_models))
    chosen = tuple(indices)
    for index in chosen:
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise ParameterError(f"indices must be ints; got {index!r}", parameter="indices")
        if not 0 <= index < n_models:
            raise ParameterError(
                f"indices must lie in [0, {n_models}) (the plan's models); got {index}",
                parameter="indices",
            )
    if len(set(chosen)) != len(chosen) or not chosen:
        raise ParameterError(
            f"indices must be distinct and not empty; got {list(chosen)}", parameter="indices"
        )
    return tuple(int(index) for index in chosen)


def _executor_for(
    executor: Executor | str | None, plan: ReferenceTrainingPlan, n_units: int
) -> tuple[Executor, bool]:
    """The executor to use, and whether this run created it (and must shut it down)."""
    if executor is None:
        devices: list[str] | None = None if plan.recipe.uses_accelerator else []
        workers = min(usable_cpus(), n_units)
        return LocalProcessExecutor(max_workers=workers, devices=devices), True
    if isinstance(executor, str):
        return make_executor(executor), True
    return executor, False


def run_reference_training(
    plan: ReferenceTrainingPlan,
    features: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    workdir: str | os.PathLike[str],
    executor: Executor | str | None = None,
    on_progress: ProgressCallback | None = None,
    indices: Sequence[int] | None = None,
) -> ReferenceTrainingResult:
    """Train the plan's models that are not done yet in ``workdir``; stack all outputs.

    Parameters
    ----------
    plan
        The plan (:meth:`ReferenceTrainingPlan.for_dataset`).
    features, labels
        The data the plan was made for (checked against its fingerprint).
    workdir
        Where units write their outputs and markers; reuse it to resume.
    executor
        An :class:`~privaudit.executor.Executor` (left running), a registered name
        (``"serial"``, ``"local"``, ``"ray"``), or ``None``: a
        :class:`~privaudit.executor.LocalProcessExecutor` for this run, with one worker
        per GPU for a recipe that uses one (when CUDA is present), else one per core.
    on_progress
        ``callback(done, total)`` over the units of this run, finished ones included
        (first called with the count found done).
    indices
        Train and return only these models of the plan (default: all). Runs that share
        a working directory (on a shared file system) can each take a slice; a last run
        without ``indices`` then finds every unit done and stacks them all.

    Returns
    -------
    ReferenceTrainingResult
        Outputs ``(m, n, ...)`` of the ``m`` models, their rows of the keep matrix, and
        the counts ``trained`` and ``skipped``.

    Raises
    ------
    DataError
        If the data does not match the plan.
    WorkUnitError
        If a unit fails; units finished before it stay done for the next run.
    """
    started = time.perf_counter()
    x, y = _as_dataset(features, labels)
    if dataset_fingerprint(x, y) != plan.dataset_fingerprint:
        raise DataError(
            "features and labels are not the data this plan was made for (their fingerprint "
            "differs); build the plan with ReferenceTrainingPlan.for_dataset on this data"
        )
    chosen = _check_indices(indices, plan.n_models)
    directory = Path(workdir)
    directory.mkdir(parents=True, exist_ok=True)
    description = {"fingerprint": plan.fingerprint, **plan.describe()}
    write_atomically(directory / "plan.json", json.dumps(description, indent=1).encode())
    _store_dataset(directory, x, y, plan.dataset_fingerprint)
    outputs: dict[int, np.ndarray] = {}
    for index in chosen:
        found = _load_unit(directory, plan, index)
        if found is not None:
            outputs[index] = found
    missing = [index for index in chosen if index not in outputs]
    total, done_before = len(chosen), len(outputs)
    if on_progress is not None:
        on_progress(done_before, total)
    trained: list[int] = []
    unit_seconds: dict[int, float] = {}
    if missing:
        report: Callable[[int, int], None] | None = None
        if on_progress is not None:
            callback = on_progress

            def report(done: int, _total: int) -> None:
                callback(done_before + done, total)

        units = [
            WorkUnit(index, train_reference_unit, (str(directory), plan, index))
            for index in missing
        ]
        runner, owned = _executor_for(executor, plan, len(missing))
        try:
            for result in runner.run(units, on_progress=report):
                if result.value.get("status") == "trained":
                    trained.append(result.index)
                    unit_seconds[result.index] = float(result.value["seconds"])
        finally:
            if owned:
                runner.shutdown()
        for index in missing:
            found = _load_unit(directory, plan, index)
            if found is None:
                raise PrivauditError(
                    f"unit {index} finished but its files in {directory} are not valid for "
                    "this plan; another run may be writing to the same directory"
                )
            outputs[index] = found
    return ReferenceTrainingResult(
        outputs=np.stack([outputs[index] for index in chosen]),
        keep=plan.keep()[list(chosen)],
        indices=chosen,
        output=plan.recipe.output,
        trained=len(trained),
        skipped=len(chosen) - len(trained),
        trained_indices=tuple(sorted(trained)),
        unit_seconds=unit_seconds,
        seconds=time.perf_counter() - started,
    )
