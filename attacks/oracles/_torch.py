"""A PyTorch classifier as an oracle: safetensors weights + a registered architecture.

The network's code is ours (an architecture registered in
:data:`privaudit.attacks.membership.architectures`, built from its name and a JSON
configuration); the file brings only tensors. safetensors is a JSON header followed by
raw tensor bytes, so loading it runs no code. The header is read first and every
tensor's name, shape and dtype is compared with the network's state dict *before* any
tensor is read; then ``load_state_dict(strict=True)`` fills the network.

``torch.save`` files (``.pt``/``.pth``, a pickle inside a zip) and TorchScript
archives (code) are refused, whatever their name, with the one-line export to use
instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from privaudit.attacks.oracles._base import Oracle
from privaudit.attacks.oracles._formats import check_file_size, require_format
from privaudit.errors import DataError, MissingDependencyError, ParameterError

__all__ = ["TorchOracle"]

DEFAULT_MAX_BYTES = 1024 * 2**20
_MAX_CONFIG_BYTES = 64 * 2**10
_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
_SHOWN = 5


def _torch() -> Any:
    try:
        import torch
    except ImportError as error:
        raise MissingDependencyError(
            "loading PyTorch models needs torch and safetensors; run: "
            "pip install 'privaudit[torch]'"
        ) from error
    return torch


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


class TorchOracle(Oracle):
    """Query a PyTorch classifier (on the CPU, in eval mode, without gradients).

    Build it from files with :meth:`load`, or around a module already in this process
    with ``TorchOracle(module=..., input_shape=...)``.

    Parameters
    ----------
    module
        A ``torch.nn.Module`` that maps ``(m, *input_shape)`` to ``(m, C)`` logits.
    input_shape
        The shape of one example; flat inputs ``(n, d)`` are reshaped to it.
    query_budget, batch_size, timeout_s
        See :class:`~privaudit.attacks.oracles.Oracle`.

    Attributes
    ----------
    architecture, config
        The registered architecture and its configuration (when loaded by name).
    """

    kind = "torch"
    output = "logits"

    def __init__(
        self,
        *,
        module: Any,
        input_shape: Sequence[int],
        query_budget: int | None = None,
        batch_size: int = 1024,
        timeout_s: float | None = 600.0,
    ) -> None:
        super().__init__(query_budget=query_budget, batch_size=batch_size, timeout_s=timeout_s)
        torch = _torch()
        if not isinstance(module, torch.nn.Module):
            raise ParameterError(
                f"module must be a torch.nn.Module; got {type(module).__name__}",
                parameter="module",
            )
        shape = tuple(input_shape)
        if not shape or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in shape):
            raise ParameterError(
                f"input_shape must be positive ints; got {input_shape!r}", parameter="input_shape"
            )
        self.module = module.eval()
        self.input_shape: tuple[int, ...] = shape
        self.architecture: str | None = None
        self.config: dict[str, Any] = {}

    @classmethod
    def load(
        cls,
        weights: str | Path,
        *,
        architecture: str,
        input_shape: Sequence[int],
        n_classes: int,
        config: Mapping[str, Any] | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        query_budget: int | None = None,
        batch_size: int = 1024,
        timeout_s: float | None = 600.0,
    ) -> TorchOracle:
        """Build ``architecture`` from the registry and fill it with ``weights``.

        Parameters
        ----------
        weights
            A safetensors file of the network's state dict (``safetensors.torch.
            save_file(model.state_dict(), path)``).
        architecture, input_shape, n_classes, config
            The registered architecture, the shape of one example, the number of
            classes, and the architecture's configuration (see
            :func:`~privaudit.attacks.membership.build_architecture`).
        max_bytes
            The largest weights file accepted.

        Raises
        ------
        UnsupportedFormatError
            If ``weights`` is not safetensors (``torch.save``, TorchScript, pickle...).
        DataError
            If its tensors do not match the architecture: missing or unexpected names,
            other shapes, or non-float dtypes (each listed).
        ParameterError, NotFoundError
            If the architecture or its configuration is not valid.
        """
        from privaudit.attacks.membership._architectures import build_architecture

        file = Path(weights)
        require_format(file, "safetensors", max_bytes=max_bytes)
        module = build_architecture(
            architecture, input_shape=input_shape, n_classes=n_classes, config=config
        )
        state = _read_matching_state(file, module)
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as error:  # defence in depth: the header check ran first
            raise DataError(f"{file.name!r} does not fit {architecture!r}: {error}") from None
        oracle = cls(
            module=module,
            input_shape=input_shape,
            query_budget=query_budget,
            batch_size=batch_size,
            timeout_s=timeout_s,
        )
        oracle.architecture = architecture
        oracle.config = dict(config or {})
        oracle.n_classes = n_classes
        return oracle

    @classmethod
    def from_config_file(
        cls,
        weights: str | Path,
        config_file: str | Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        query_budget: int | None = None,
        batch_size: int = 1024,
        timeout_s: float | None = 600.0,
    ) -> TorchOracle:
        """:meth:`load` with the architecture described by a JSON file.

        The JSON object has ``architecture`` (a registered name), ``input_shape``
        (a list of ints), ``n_classes`` and optionally ``config`` (an object)::

            {"architecture": "mlp", "input_shape": [64], "n_classes": 10,
             "config": {"hidden": [32]}}
        """
        spec = read_architecture_spec(config_file)
        return cls.load(
            weights,
            architecture=spec["architecture"],
            input_shape=spec["input_shape"],
            n_classes=spec["n_classes"],
            config=spec["config"],
            max_bytes=max_bytes,
            query_budget=query_budget,
            batch_size=batch_size,
            timeout_s=timeout_s,
        )

    def _predict_batch(self, batch: np.ndarray, *, deadline: float | None) -> np.ndarray:
        torch = _torch()
        size = math.prod(self.input_shape)
        if math.prod(batch.shape[1:]) != size:
            raise DataError(
                f"the torch model takes examples of shape {self.input_shape} ({size} values); "
                f"got shape {batch.shape[1:]}"
            )
        parameter = next(self.module.parameters(), None)
        dtype = parameter.dtype if parameter is not None else torch.float32
        tensor = torch.from_numpy(batch.reshape(batch.shape[0], *self.input_shape)).to(dtype)
        with torch.inference_mode():
            logits = self.module(tensor)
        return np.asarray(logits.detach().to(torch.float64).numpy())


def read_architecture_spec(path: str | Path) -> dict[str, Any]:
    """Read and check an architecture description (see :meth:`TorchOracle.from_config_file`)."""
    file = Path(path)
    check_file_size(file, max_bytes=_MAX_CONFIG_BYTES, what="architecture config")
    try:
        spec = json.loads(file.read_text("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise DataError(f"{file.name!r} is not valid JSON: {error}") from None
    required = {"architecture": str, "input_shape": list, "n_classes": int}
    if not isinstance(spec, dict):
        raise DataError(f"{file.name!r} must hold a JSON object; got {type(spec).__name__}")
    unknown = sorted(set(spec) - {*required, "config"})
    missing = sorted(set(required) - set(spec))
    if unknown or missing:
        raise DataError(
            f"{file.name!r} must have the keys architecture, input_shape, n_classes and "
            f"optionally config; missing: {missing or 'none'}, unknown: {unknown or 'none'}"
        )
    for key, kind in required.items():
        if not isinstance(spec[key], kind) or isinstance(spec[key], bool):
            raise DataError(
                f"{file.name!r}: {key} must be a JSON {kind.__name__}; got {spec[key]!r}"
            )
    config = spec.get("config", {})
    if not isinstance(config, dict):
        raise DataError(f"{file.name!r}: config must be a JSON object; got {config!r}")
    return {**spec, "config": config}


def _read_matching_state(file: Path, module: Any) -> dict[str, Any]:
    """Compare the file's header with ``module``'s state dict, then read the tensors."""
    from safetensors import SafetensorError, safe_open

    state = module.state_dict()
    expected = {name: tuple(t.shape) for name, t in state.items()}
    try:
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            names = list(handle.keys())
            found = {name: tuple(handle.get_slice(name).get_shape()) for name in names}
            dtypes = {name: handle.get_slice(name).get_dtype() for name in names}
            missing = sorted(set(expected) - set(found))
            unexpected = sorted(set(found) - set(expected))
            mismatched = [
                f"{name}: file {found[name]}, architecture {expected[name]}"
                for name in sorted(set(found) & set(expected))
                if found[name] != expected[name]
            ]
            not_float = sorted(
                name
                for name, dtype in dtypes.items()
                if name in state and state[name].is_floating_point() and dtype not in _FLOAT_DTYPES
            )
            if missing or unexpected or mismatched or not_float:
                problems = []
                if missing:
                    problems.append(f"missing tensors: {_listing(missing)}")
                if unexpected:
                    problems.append(f"unexpected tensors: {_listing(unexpected)}")
                if mismatched:
                    problems.append(f"other shapes: {_listing(mismatched)}")
                if not_float:
                    problems.append(f"non-float tensors: {_listing(not_float)}")
                raise DataError(
                    f"{file.name!r} does not fit the architecture ({'; '.join(problems)}). "
                    "Check the architecture name, input_shape, n_classes and config the "
                    "weights were trained with",
                    missing=missing,
                    unexpected=unexpected,
                    mismatched=mismatched,
                )
            return {name: handle.get_tensor(name) for name in names}
    except SafetensorError as error:
        raise DataError(f"{file.name!r} is not a valid safetensors file: {error}") from None
