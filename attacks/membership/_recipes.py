"""Training recipes: how reference models are trained, described by name and JSON.

LiRA and RMIA need reference models trained *like the target* [CCN22]_: the same
learner, hyper-parameters and training length on other halves of the data. A recipe
is that description. It is plain data (``to_config()`` / :func:`recipe_from_config`),
so a reference-training plan's fingerprint covers it and a REST payload can name it;
no code travels with it. Trainers are registered by name in :data:`trainers`:

* ``"sklearn"``, :class:`SklearnRecipe`: an estimator from an allow-list
  (:data:`sklearn_estimators`) with parameters checked against the estimator's own and
  by scikit-learn's validation; outputs class probabilities ``(n, C)``.
* ``"torch"``, :class:`TorchRecipe`: a registered architecture (:data:`architectures`:
  ``"mlp"``, ``"small_cnn"``) with its configuration, an optimizer, epochs and batch
  size, optional image augmentations (random flips and shifts in training; the same
  views as augmented queries); outputs logits ``(n, C)`` or ``(n, A, C)``. Uses CUDA
  when available.

Every recipe trains on ``features[members]`` and predicts all ``n`` examples, and
draws all its randomness from one integer seed per model, so model ``i`` of a plan is a
pure function of the plan's seed and ``i``. scikit-learn models and torch models on
the CPU are bit-reproducible (torch: for a given number of threads); on CUDA, torch is
seeded but kernels may sum in a different order from run to run.

References
----------
.. [CCN22] N. Carlini, S. Chien, M. Nasr, S. Song, A. Terzis, F. Tramèr, "Membership
   Inference Attacks From First Principles", IEEE S&P 2022, arXiv:2112.03570.
"""

from __future__ import annotations

import importlib
import inspect
import math
import numbers
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from privaudit.errors import DataError, MissingDependencyError, ParameterError
from privaudit.registry import Registry

__all__ = [
    "SklearnRecipe",
    "TorchRecipe",
    "TrainingRecipe",
    "architectures",
    "recipe_from_config",
    "sklearn_estimators",
    "trainers",
    "warm_up_torch",
]

_PREDICT_BATCH = 1024


@runtime_checkable
class TrainingRecipe(Protocol):
    """How to train one reference model and read its outputs on every example."""

    trainer: ClassVar[str]
    """The name the recipe's class is registered under in :data:`trainers`."""
    output: ClassVar[str]
    """``"probabilities"`` or ``"logits"``: what :meth:`fit_predict` returns."""

    @property
    def uses_accelerator(self) -> bool:
        """Whether the recipe uses a GPU when one is visible."""
        ...

    @property
    def n_queries(self) -> int:
        """A, the number of (augmented) queries per example (1: no augmentation axis)."""
        ...

    def to_config(self) -> dict[str, Any]:
        """The recipe as JSON-ready data, ``"trainer"`` included."""
        ...

    def fingerprint_config(self) -> dict[str, Any]:
        """What determines the models (``to_config`` less where they run, plus a version)."""
        ...

    def check_data(self, features: np.ndarray, labels: np.ndarray, n_classes: int) -> None:
        """Raise :class:`~privaudit.errors.ParameterError` or ``DataError`` early if the
        recipe cannot train on data of this shape."""
        ...

    def fit_predict(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        members: np.ndarray,
        *,
        seed: int,
        n_classes: int,
    ) -> np.ndarray:
        """Train on ``features[members]`` and return outputs on all examples."""
        ...


trainers: Registry[type[Any]] = Registry("trainer")
"""Recipe classes by trainer name: ``"sklearn"`` and ``"torch"``."""

sklearn_estimators: Registry[str] = Registry("scikit-learn estimator")
"""The scikit-learn classifiers a :class:`SklearnRecipe` may use, as ``module:Class``."""

architectures: Registry[Callable[..., Any]] = Registry("architecture")
"""Torch architectures by name: ``builder(input_shape, n_classes, **config) -> nn.Module``."""

for _name, _path in {
    "random_forest": "sklearn.ensemble:RandomForestClassifier",
    "extra_trees": "sklearn.ensemble:ExtraTreesClassifier",
    "gradient_boosting": "sklearn.ensemble:GradientBoostingClassifier",
    "hist_gradient_boosting": "sklearn.ensemble:HistGradientBoostingClassifier",
    "decision_tree": "sklearn.tree:DecisionTreeClassifier",
    "logistic_regression": "sklearn.linear_model:LogisticRegression",
    "mlp": "sklearn.neural_network:MLPClassifier",
    "k_neighbors": "sklearn.neighbors:KNeighborsClassifier",
    "gaussian_nb": "sklearn.naive_bayes:GaussianNB",
}.items():
    sklearn_estimators.add(_name, _path)


def _json_value(name: str, value: Any) -> Any:
    """``value`` as JSON-ready data (lists become tuples), or a ParameterError."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            raise ParameterError(f"{name} must be finite; got {value!r}", parameter=name)
        return number
    if isinstance(value, list | tuple):
        return tuple(_json_value(f"{name}[{i}]", item) for i, item in enumerate(value))
    raise ParameterError(
        f"{name} must be JSON data (null, a bool, a number, a string or a list of them); "
        f"got {type(value).__name__}",
        parameter=name,
    )


def _json_params(owner: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise ParameterError(f"{owner} must be a mapping of names to values; got {params!r}")
    checked: dict[str, Any] = {}
    for key, value in params.items():
        if not isinstance(key, str):
            raise ParameterError(f"{owner} keys must be strings; got {key!r}")
        checked[key] = _json_value(f"{owner}[{key!r}]", value)
    return checked


def _plain(value: Any) -> Any:
    """Tuples back to lists, for JSON."""
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _check_positive_int(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ParameterError(f"{name} must be a positive int; got {value!r}", parameter=name)


def _check_features(features: np.ndarray, labels: np.ndarray, n_classes: int) -> None:
    if features.ndim != 2 or features.shape[0] != labels.shape[0]:
        raise DataError(
            f"features must be (n, d) with one row per label; got {features.shape} for "
            f"{labels.shape[0]} labels"
        )
    if n_classes < 2:
        raise DataError(f"training needs at least 2 classes; got {n_classes}")


def _predicted_columns(
    probabilities: np.ndarray, classes: np.ndarray, n_classes: int
) -> np.ndarray:
    """Probabilities in one column per class (a class missing from a training half gets 0)."""
    full = np.zeros((probabilities.shape[0], n_classes))
    full[:, np.asarray(classes, dtype=np.int64)] = probabilities
    return full


@trainers.register("sklearn")
@dataclass(frozen=True, kw_only=True)
class SklearnRecipe:
    """A scikit-learn classifier from the allow-list, with checked parameters.

    Parameters
    ----------
    estimator
        A name registered in :data:`sklearn_estimators` (``"random_forest"``,
        ``"logistic_regression"``, ``"mlp"``, ...).
    params
        Keyword arguments of the estimator, as JSON data (lists become tuples, e.g. for
        ``hidden_layer_sizes``). ``random_state`` is set per model from the plan's seed
        and ``n_jobs`` stays at its default of one job (the executor runs models in
        parallel), so neither may be given; nor ``warm_start`` or ``verbose``.

    Outputs are the class probabilities ``(n, n_classes)`` (``predict_proba``); a class
    absent from a model's training half gets probability 0. Convergence warnings are
    silenced: how long to train is part of the recipe.

    Examples
    --------
    >>> from privaudit.attacks.membership import SklearnRecipe
    >>> recipe = SklearnRecipe(estimator="random_forest", params={"n_estimators": 10})
    >>> recipe.to_config()
    {'trainer': 'sklearn', 'estimator': 'random_forest', 'params': {'n_estimators': 10}}
    """

    trainer: ClassVar[str] = "sklearn"
    output: ClassVar[str] = "probabilities"
    version: ClassVar[int] = 1
    reserved: ClassVar[dict[str, str]] = {
        "random_state": "it is set per model from the plan's seed",
        "n_jobs": "the executor already runs models in parallel",
        "warm_start": "every model starts from scratch",
        "verbose": "workers do not print",
    }

    estimator: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.estimator, str):
            raise ParameterError(f"estimator must be a string; got {self.estimator!r}")
        sklearn_estimators.get(self.estimator)  # NotFoundError with a suggestion
        params = _json_params("params", self.params)
        for key in params:
            if key in self.reserved:
                raise ParameterError(
                    f"params may not set {key!r}: {self.reserved[key]}", parameter="params"
                )
        object.__setattr__(self, "params", params)
        estimator_class = self.estimator_class()
        allowed = set(estimator_class().get_params(deep=False))
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise ParameterError(
                f"{estimator_class.__name__} has no parameter(s) {', '.join(unknown)}; it "
                f"takes {', '.join(sorted(allowed - set(self.reserved)))}",
                parameter="params",
            )
        validate = getattr(estimator_class(**params), "_validate_params", None)
        if validate is not None:
            try:
                validate()
            except (TypeError, ValueError) as error:
                raise ParameterError(f"bad params for {self.estimator}: {error}") from error

    def estimator_class(self) -> type[Any]:
        """The scikit-learn class (imports scikit-learn)."""
        module_name, class_name = sklearn_estimators.get(self.estimator).split(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise MissingDependencyError(
                "the sklearn trainer needs scikit-learn; run: pip install 'privaudit[audit]'"
            ) from error
        estimator_class: type[Any] = getattr(module, class_name)
        return estimator_class

    @property
    def uses_accelerator(self) -> bool:
        """False: scikit-learn runs on the CPU."""
        return False

    @property
    def n_queries(self) -> int:
        """1: no augmented queries."""
        return 1

    def to_config(self) -> dict[str, Any]:
        """``{"trainer": "sklearn", "estimator": ..., "params": {...}}``."""
        return {"trainer": self.trainer, "estimator": self.estimator, "params": _plain(self.params)}

    def fingerprint_config(self) -> dict[str, Any]:
        """The config with the trainer's version."""
        return {**self.to_config(), "version": self.version}

    def build(self, seed: int) -> Any:
        """An unfitted estimator, seeded with ``seed`` where it takes a ``random_state``.

        ``n_jobs`` keeps its default (one job).
        """
        estimator_class = self.estimator_class()
        extra: dict[str, Any] = {}
        if "random_state" in estimator_class().get_params(deep=False):
            extra["random_state"] = int(seed)
        return estimator_class(**self.params, **extra)

    def check_data(self, features: np.ndarray, labels: np.ndarray, n_classes: int) -> None:
        """Features must be ``(n, d)``."""
        _check_features(features, labels, n_classes)

    def fit_predict(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        members: np.ndarray,
        *,
        seed: int,
        n_classes: int,
    ) -> np.ndarray:
        """Fit on ``features[members]``; return probabilities ``(n, n_classes)``."""
        from sklearn.exceptions import ConvergenceWarning

        model = self.build(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(features[members], labels[members])
        return _predicted_columns(model.predict_proba(features), model.classes_, n_classes)


def _torch() -> Any:
    try:
        import torch
    except ImportError as error:
        raise MissingDependencyError(
            "the torch trainer needs PyTorch; run: pip install 'privaudit[torch]'"
        ) from error
    return torch


def _positive_ints(name: str, value: Any) -> tuple[int, ...]:
    items = value if isinstance(value, tuple | list) else (value,)
    if not items or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in items):
        raise ParameterError(f"{name} must be positive ints; got {value!r}", parameter=name)
    return tuple(int(v) for v in items)


@architectures.register("mlp")
def mlp(
    input_shape: tuple[int, ...], n_classes: int, *, hidden: Any = (128,), dropout: float = 0.0
) -> Any:
    """A fully connected network: flatten, ``hidden`` ReLU layers (with dropout), logits."""
    widths = _positive_ints("hidden", hidden)
    if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1:
        raise ParameterError(f"dropout must be in [0, 1); got {dropout!r}", parameter="dropout")
    nn = _torch().nn
    layers: list[Any] = [nn.Flatten()]
    width = math.prod(input_shape)
    for size in widths:
        layers += [nn.Linear(width, size), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = size
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


@architectures.register("small_cnn")
def small_cnn(
    input_shape: tuple[int, ...], n_classes: int, *, channels: Any = (16, 32), hidden: int = 64
) -> Any:
    """Conv 3x3 + ReLU (+ 2x2 max-pool while the image is at least 4 wide) per entry of
    ``channels``, then a ``hidden``-unit ReLU layer and the logits."""
    widths = _positive_ints("channels", channels)
    (hidden_units,) = _positive_ints("hidden", hidden)
    if len(input_shape) != 3:
        raise ParameterError(
            f"small_cnn needs input_shape (channels, height, width); got {input_shape}",
            parameter="input_shape",
        )
    nn = _torch().nn
    depth, height, width = input_shape
    layers: list[Any] = []
    for size in widths:
        layers += [nn.Conv2d(depth, size, kernel_size=3, padding=1), nn.ReLU()]
        if min(height, width) >= 4:
            layers.append(nn.MaxPool2d(2))
            height, width = height // 2, width // 2
        depth = size
    layers += [
        nn.Flatten(),
        nn.Linear(depth * height * width, hidden_units),
        nn.ReLU(),
        nn.Linear(hidden_units, n_classes),
    ]
    return nn.Sequential(*layers)


def warm_up_torch() -> None:
    """Pay torch's one-off costs now: import it, load its optimizers (which import
    ``torch._dynamo``, seconds), and on a visible GPU create the CUDA context and run one
    convolution forward and backward (loading cuDNN and cuBLAS).

    An ``initializer`` for :class:`~privaudit.executor.LocalProcessExecutor`, so that
    timings start with warm workers.
    """
    torch = _torch()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    layer = torch.nn.Conv2d(1, 2, kernel_size=3).to(device)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(torch.zeros(2, 1, 8, 8, device=device)).sum().backward()
    optimizer.step()
    if device == "cuda":
        torch.cuda.synchronize()


_OPTIMIZERS = ("sgd", "adam", "adamw")
_DEVICES = ("auto", "cpu", "cuda")


@trainers.register("torch")
@dataclass(frozen=True, kw_only=True)
class TorchRecipe:
    """A torch architecture from the registry, trained with minibatch gradient descent.

    Parameters
    ----------
    architecture, architecture_params
        A name in :data:`architectures` (``"mlp"``: ``hidden``, ``dropout``;
        ``"small_cnn"``: ``channels``, ``hidden``) and its keyword configuration.
    input_shape
        The shape of one example, such as ``(1, 8, 8)``; features arrive flattened
        ``(n, d)`` and are reshaped to it. Default ``(d,)``; images (``small_cnn``,
        ``flip``, ``shift``) need ``(channels, height, width)``.
    optimizer, learning_rate, momentum, weight_decay
        ``"sgd"`` (with ``momentum``), ``"adam"`` or ``"adamw"``.
    epochs, batch_size
        Passes over the model's training half, and examples per step (the order is
        shuffled each epoch from the model's seed).
    flip, shift
        Training augmentation: random horizontal flips; random translations by up to
        ``shift`` pixels in each direction (zero padding).
    augmented_queries
        Also return the outputs on the augmented views, LiRA style: mirror (when
        ``flip``) times the shifts ``(0, 0)``, ``(±shift, 0)``, ``(0, ±shift)`` (when
        ``shift``); the outputs are then ``(n, A, n_classes)``.
    device
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``. Not part of the
        plan's fingerprint: it decides where models train, not what they are.

    Examples
    --------
    >>> from privaudit.attacks.membership import TorchRecipe
    >>> TorchRecipe(architecture="small_cnn", input_shape=(1, 8, 8), flip=True, shift=1,
    ...             augmented_queries=True).n_queries
    10
    """

    trainer: ClassVar[str] = "torch"
    output: ClassVar[str] = "logits"
    version: ClassVar[int] = 1

    architecture: str
    architecture_params: Mapping[str, Any] = field(default_factory=dict)
    input_shape: tuple[int, ...] | None = None
    optimizer: str = "sgd"
    learning_rate: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    epochs: int = 10
    batch_size: int = 128
    flip: bool = False
    shift: int = 0
    augmented_queries: bool = False
    device: str = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.architecture, str):
            raise ParameterError(f"architecture must be a string; got {self.architecture!r}")
        builder = architectures.get(self.architecture)
        params = _json_params("architecture_params", self.architecture_params)
        accepted = {
            name
            for name, parameter in inspect.signature(builder).parameters.items()
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY
        }
        unknown = sorted(set(params) - accepted)
        if unknown:
            raise ParameterError(
                f"architecture {self.architecture!r} has no option(s) {', '.join(unknown)}; it "
                f"takes {', '.join(sorted(accepted)) or 'none'}",
                parameter="architecture_params",
            )
        object.__setattr__(self, "architecture_params", params)
        if self.input_shape is not None:
            object.__setattr__(
                self, "input_shape", _positive_ints("input_shape", tuple(self.input_shape))
            )
        if self.optimizer not in _OPTIMIZERS:
            raise ParameterError(
                f"optimizer must be one of {', '.join(_OPTIMIZERS)}; got {self.optimizer!r}",
                parameter="optimizer",
            )
        for name in ("learning_rate", "momentum", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ParameterError(f"{name} must be a number >= 0; got {value!r}")
            if not math.isfinite(value):
                raise ParameterError(f"{name} must be finite; got {value!r}")
        if not self.learning_rate > 0:
            raise ParameterError(f"learning_rate must be > 0; got {self.learning_rate!r}")
        _check_positive_int(self.epochs, "epochs")
        _check_positive_int(self.batch_size, "batch_size")
        if not isinstance(self.flip, bool) or not isinstance(self.augmented_queries, bool):
            raise ParameterError("flip and augmented_queries must be bools")
        if isinstance(self.shift, bool) or not isinstance(self.shift, int) or self.shift < 0:
            raise ParameterError(f"shift must be an int >= 0; got {self.shift!r}")
        if self.device not in _DEVICES:
            raise ParameterError(
                f"device must be one of {', '.join(_DEVICES)}; got {self.device!r}",
                parameter="device",
            )
        if (self.flip or self.shift) and (self.input_shape is None or len(self.input_shape) != 3):
            raise ParameterError(
                "flip and shift augment images: give input_shape=(channels, height, width)",
                parameter="input_shape",
            )

    @property
    def uses_accelerator(self) -> bool:
        """True unless ``device="cpu"``."""
        return self.device != "cpu"

    @property
    def n_queries(self) -> int:
        """A: 1, or (1 + flip) * (1 + 4 * (shift > 0)) with ``augmented_queries``."""
        return len(self._views()) if self.augmented_queries else 1

    def _views(self) -> list[tuple[bool, int, int]]:
        mirrors = [False, True] if self.flip else [False]
        offsets = [(0, 0)]
        if self.shift:
            s = self.shift
            offsets += [(s, 0), (-s, 0), (0, s), (0, -s)]
        return [(mirror, dx, dy) for mirror in mirrors for dx, dy in offsets]

    def to_config(self) -> dict[str, Any]:
        """Every field as JSON data, with ``"trainer": "torch"``."""
        config = {"trainer": self.trainer, **asdict(self)}
        return {key: _plain(value) for key, value in config.items()}

    def fingerprint_config(self) -> dict[str, Any]:
        """The config less ``device``, with the trainer's version."""
        config = self.to_config()
        del config["device"]
        return {**config, "version": self.version}

    def _shape(self, n_features: int) -> tuple[int, ...]:
        shape = self.input_shape or (n_features,)
        if math.prod(shape) != n_features:
            raise DataError(
                f"input_shape {shape} holds {math.prod(shape)} values but each example has "
                f"{n_features} features"
            )
        return shape

    def check_data(self, features: np.ndarray, labels: np.ndarray, n_classes: int) -> None:
        """Check the shape and build the model once on the CPU (imports torch)."""
        _check_features(features, labels, n_classes)
        architectures.get(self.architecture)(
            self._shape(features.shape[1]), n_classes, **self.architecture_params
        )

    def _device(self, torch: Any) -> Any:
        if self.device == "cpu" or (self.device == "auto" and not torch.cuda.is_available()):
            return torch.device("cpu")
        if not torch.cuda.is_available():
            raise MissingDependencyError(
                "device='cuda' but torch sees no CUDA device; use device='auto' to fall back "
                "to the CPU"
            )
        return torch.device("cuda", torch.cuda.current_device())

    def _optimizer(self, torch: Any, parameters: Any) -> Any:
        if self.optimizer == "sgd":
            return torch.optim.SGD(
                parameters,
                lr=self.learning_rate,
                momentum=self.momentum,
                weight_decay=self.weight_decay,
            )
        chosen = torch.optim.Adam if self.optimizer == "adam" else torch.optim.AdamW
        return chosen(parameters, lr=self.learning_rate, weight_decay=self.weight_decay)

    def fit_predict(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        members: np.ndarray,
        *,
        seed: int,
        n_classes: int,
    ) -> np.ndarray:
        """Train on ``features[members]``; return float32 logits ``(n, [A,] n_classes)``."""
        torch = _torch()
        device = self._device(torch)
        shape = self._shape(features.shape[1])
        inputs = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
        inputs = inputs.reshape(features.shape[0], *shape)
        member_index = torch.from_numpy(np.flatnonzero(members))
        train_x = inputs[member_index].to(device)
        train_y = torch.from_numpy(np.asarray(labels, dtype=np.int64))[member_index].to(device)
        generator = torch.Generator().manual_seed(int(seed))
        rng_devices = [device.index] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=rng_devices):
            torch.manual_seed(int(seed))
            model = architectures.get(self.architecture)(
                shape, n_classes, **self.architecture_params
            ).to(device)
            optimizer = self._optimizer(torch, model.parameters())
            model.train()
            for _ in range(self.epochs):
                order = torch.randperm(train_x.shape[0], generator=generator).to(device)
                for start in range(0, train_x.shape[0], self.batch_size):
                    batch = order[start : start + self.batch_size]
                    x = self._augment(torch, train_x[batch], generator)
                    loss = torch.nn.functional.cross_entropy(model(x), train_y[batch])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
        model.eval()
        views = self._views() if self.augmented_queries else [(False, 0, 0)]
        outputs = np.stack(
            [self._predict(torch, model, inputs, device, view) for view in views], axis=1
        )
        return outputs if self.augmented_queries else outputs[:, 0]

    def _augment(self, torch: Any, x: Any, generator: Any) -> Any:
        if self.flip:
            mirrored = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
            x = torch.where(mirrored[:, None, None, None], x.flip(-1), x)
        if self.shift:
            offsets = torch.randint(
                -self.shift, self.shift + 1, (2, x.shape[0]), generator=generator
            )
            x = _translate(torch, x, offsets[0].to(x.device), offsets[1].to(x.device), self.shift)
        return x

    def _predict(
        self, torch: Any, model: Any, inputs: Any, device: Any, view: tuple[bool, int, int]
    ) -> np.ndarray:
        mirror, dx, dy = view
        chunks = []
        with torch.no_grad():
            for start in range(0, inputs.shape[0], _PREDICT_BATCH):
                x = inputs[start : start + _PREDICT_BATCH].to(device)
                if mirror:
                    x = x.flip(-1)
                if dx or dy:
                    n = x.shape[0]
                    x = _translate(
                        torch,
                        x,
                        torch.full((n,), dx, device=device),
                        torch.full((n,), dy, device=device),
                        max(abs(dx), abs(dy)),
                    )
                chunks.append(model(x).float().cpu().numpy())
        return np.concatenate(chunks)


def _translate(torch: Any, x: Any, dx: Any, dy: Any, pad: int) -> Any:
    """Move each image ``x[b]`` right by ``dx[b]`` and down by ``dy[b]`` pixels (zero fill)."""
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    _, _, height, width = x.shape
    rows = torch.arange(height, device=x.device)[None, :] + pad - dy[:, None]
    cols = torch.arange(width, device=x.device)[None, :] + pad - dx[:, None]
    batch = torch.arange(x.shape[0], device=x.device)[:, None, None]
    moved = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return moved.permute(0, 3, 1, 2)


def recipe_from_config(config: Mapping[str, Any]) -> TrainingRecipe:
    """Build a recipe from its ``to_config()`` form (``{"trainer": ..., ...}``).

    Raises
    ------
    ParameterError
        If ``trainer`` is missing, a key is unknown, or a value is out of range.
    NotFoundError
        If the trainer, estimator or architecture is not registered.
    """
    if not isinstance(config, Mapping) or "trainer" not in config:
        raise ParameterError(
            f"a recipe config is a mapping with a 'trainer' key ({', '.join(trainers.names())}); "
            f"got {config!r}"
        )
    recipe_class = trainers.get(config["trainer"])
    options = {key: value for key, value in config.items() if key != "trainer"}
    known = {item.name for item in fields(recipe_class)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ParameterError(
            f"the {config['trainer']} trainer has no option(s) {', '.join(unknown)}; it takes "
            f"{', '.join(sorted(known))}"
        )
    recipe: TrainingRecipe = recipe_class(**options)
    return recipe
