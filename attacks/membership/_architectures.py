"""Torch architectures by name, shared by model loading and reference training.

A PyTorch model arrives as weights (safetensors) plus the *name* of an architecture
registered here and its configuration: the code that builds the network is ours,
never the sender's. The same builders train reference models, so a target and its
references are the same network.

Each builder is ``builder(input_shape, n_classes, **config) -> torch.nn.Module``;
:func:`build_architecture` checks the name, the shapes and every configuration key
before calling it (unknown keys are refused with the list of allowed ones).

* ``"mlp"``: flatten, then ``hidden`` ReLU layers (with ``dropout``), then logits.
* ``"small_cnn"``: per entry of ``channels`` a 3x3 convolution + ReLU (+ 2x2 max-pool
  while the image is at least 4 wide), then a ``hidden``-unit ReLU layer and logits;
  ``input_shape`` is ``(channels, height, width)``.

Registering another one is one function and one decorator::

    @architectures.register("tiny")
    def tiny(input_shape, n_classes, *, width=8): ...
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from privaudit.errors import MissingDependencyError, ParameterError
from privaudit.registry import Registry

__all__ = ["architecture_defaults", "architectures", "build_architecture"]

architectures: Registry[Callable[..., Any]] = Registry("architecture")
"""Torch architectures by name: ``builder(input_shape, n_classes, **config) -> nn.Module``."""

_MAX_INPUT_SIZE = 2**24  # elements in one example: 16 Mi (a 4096 x 4096 image)
_MAX_CLASSES = 100_000


def _torch() -> Any:
    try:
        import torch
    except ImportError as error:
        raise MissingDependencyError(
            "torch architectures need PyTorch; run: pip install 'privaudit[torch]'"
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


def architecture_defaults(name: str) -> dict[str, Any]:
    """The configuration keys of architecture ``name`` and their defaults.

    Examples
    --------
    >>> architecture_defaults("mlp")
    {'hidden': (128,), 'dropout': 0.0}
    """
    builder = architectures.get(name)
    return {
        parameter.name: parameter.default
        for parameter in inspect.signature(builder).parameters.values()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }


def build_architecture(
    name: str,
    *,
    input_shape: Sequence[int],
    n_classes: int,
    config: Mapping[str, Any] | None = None,
) -> Any:
    """Build the registered architecture ``name`` as a ``torch.nn.Module`` (in eval mode).

    Parameters
    ----------
    name
        A name in :data:`architectures` (``"mlp"``, ``"small_cnn"``).
    input_shape
        The shape of one example, such as ``(64,)`` or ``(1, 8, 8)``.
    n_classes
        The number of output logits (at least 2).
    config
        The architecture's keyword configuration (see :func:`architecture_defaults`).

    Raises
    ------
    NotFoundError
        If ``name`` is not registered (the message lists the known names).
    ParameterError
        If a shape is not positive integers, or ``config`` has a key the architecture
        does not take, or a value it refuses.

    Examples
    --------
    >>> model = build_architecture("mlp", input_shape=(4,), n_classes=3,
    ...                            config={"hidden": [8]})
    >>> sum(p.numel() for p in model.parameters())
    67
    """
    builder = architectures.get(name)
    shape = _positive_ints("input_shape", tuple(input_shape) if input_shape is not None else ())
    if math.prod(shape) > _MAX_INPUT_SIZE:
        raise ParameterError(
            f"input_shape {shape} has {math.prod(shape)} elements per example, over the limit "
            f"of {_MAX_INPUT_SIZE}",
            parameter="input_shape",
        )
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or not n_classes >= 2:
        raise ParameterError(
            f"n_classes must be an integer >= 2; got {n_classes!r}", parameter="n_classes"
        )
    if n_classes > _MAX_CLASSES:
        raise ParameterError(
            f"n_classes must be at most {_MAX_CLASSES}; got {n_classes}", parameter="n_classes"
        )
    options = dict(config or {})
    allowed = architecture_defaults(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ParameterError(
            f"architecture {name!r} takes the config keys {', '.join(allowed) or 'none'}; got "
            f"unknown key(s) {', '.join(map(repr, unknown))}",
            parameter="config",
            unknown=unknown,
            allowed=list(allowed),
        )
    model = builder(shape, n_classes, **options)
    model.eval()
    return model
