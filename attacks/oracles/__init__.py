"""Query access to a model, the one way every black-box attack reaches it.

An :class:`Oracle` answers inputs with class scores and owns the bookkeeping every
attack needs: it counts the examples it answers, refuses a call that would go over
its query budget before the model sees it, batches, enforces a per-call time limit and
checks every answer. Implementations:

* :class:`SklearnOracle`: a scikit-learn classifier from a **skops** file, loaded
  with an explicit allow-list of types and bounds-checked trees;
* :class:`TorchOracle`: **safetensors** weights in an architecture registered by name
  (:data:`privaudit.attacks.membership.architectures`) with its configuration;
* :class:`OnnxOracle`: an **ONNX** model run by ONNX Runtime on the CPU;
* :class:`EndpointOracle`: an **HTTP prediction endpoint**, within the operator's
  :class:`EndpointPolicy` (host allow-list, public addresses only unless a network
  is allowed, the resolved address pinned, no redirects, bounded time and size);
* :class:`CallableOracle`: a Python function in this process.

Model files are told apart by content, not by name (:func:`detect_format`); pickles,
``torch.save`` files, TorchScript and Keras models are refused with an
:class:`~privaudit.errors.UnsupportedFormatError` that says what to send instead.
:func:`load_oracle` opens any accepted model file with the right oracle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from privaudit.attacks.oracles._base import CallableOracle, Oracle, OutputKind
from privaudit.attacks.oracles._endpoint import (
    EndpointOracle,
    EndpointPolicy,
    address_block_reason,
)
from privaudit.attacks.oracles._formats import (
    MODEL_FORMATS,
    DetectedFormat,
    check_file_size,
    detect_format,
    require_format,
)
from privaudit.attacks.oracles._onnx import OnnxOracle
from privaudit.attacks.oracles._sklearn import TRUSTED_SKOPS_TYPES, SklearnOracle
from privaudit.attacks.oracles._torch import TorchOracle
from privaudit.errors import ParameterError

__all__ = [
    "MODEL_FORMATS",
    "TRUSTED_SKOPS_TYPES",
    "CallableOracle",
    "DetectedFormat",
    "EndpointOracle",
    "EndpointPolicy",
    "OnnxOracle",
    "Oracle",
    "OutputKind",
    "SklearnOracle",
    "TorchOracle",
    "address_block_reason",
    "check_file_size",
    "detect_format",
    "load_oracle",
    "require_format",
]

DEFAULT_MAX_BYTES = 1024 * 2**20


def load_oracle(
    path: str | Path,
    *,
    architecture: str | None = None,
    input_shape: Sequence[int] | None = None,
    n_classes: int | None = None,
    config: Mapping[str, Any] | None = None,
    output: OutputKind = "logits",
    max_bytes: int = DEFAULT_MAX_BYTES,
    query_budget: int | None = None,
    timeout_s: float | None = 600.0,
) -> Oracle:
    """Open a model file with the oracle its content calls for.

    skops → :class:`SklearnOracle`; safetensors → :class:`TorchOracle` (needs
    ``architecture``, ``input_shape``, ``n_classes`` and optionally ``config``);
    ONNX → :class:`OnnxOracle` (``output`` says whether it answers logits or
    probabilities). Anything else is refused (see :func:`require_format`).

    Raises
    ------
    UnsupportedFormatError
        For a pickle, a ``torch.save`` or TorchScript file, or any other format.
    ParameterError
        For safetensors weights without ``architecture``, ``input_shape`` and
        ``n_classes``.
    """
    found = require_format(path, *MODEL_FORMATS, max_bytes=max_bytes)
    common: dict[str, Any] = {"query_budget": query_budget, "timeout_s": timeout_s}
    if found.name == "skops":
        return SklearnOracle.load(path, max_bytes=max_bytes, **common)
    if found.name == "onnx":
        return OnnxOracle.load(path, output=output, max_bytes=max_bytes, **common)
    if architecture is None or input_shape is None or n_classes is None:
        raise ParameterError(
            f"{Path(path).name!r} holds safetensors weights, which need the network they "
            "belong to: pass architecture (a registered name such as 'mlp'), input_shape, "
            "n_classes and the architecture's config",
            parameter="architecture",
        )
    return TorchOracle.load(
        path,
        architecture=architecture,
        input_shape=input_shape,
        n_classes=n_classes,
        config=config,
        max_bytes=max_bytes,
        **common,
    )
