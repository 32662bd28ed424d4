"""An ONNX classifier as an oracle, run by ONNX Runtime on the CPU.

ONNX files carry a graph of standard operators, not code, but the format has had its
own holes: external-data paths that read or write outside the model's folder
(CVE-2024-27318, CVE-2024-5187) and custom-operator libraries, which are native code.
So :class:`OnnxOracle` reads the file's bytes itself (bounded), parses them with
``onnx`` (external data is never loaded from bytes), refuses a model that points at
external data or imports operators from a domain other than the standard ones, and
hands the bytes to an ``InferenceSession`` on the CPU provider, which registers no
custom-operator library. Then it checks the graph: one float tensor input with a batch
axis, and a ``(batch, classes)`` float tensor output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from privaudit.attacks.oracles._base import Oracle, OutputKind, check_output_kind
from privaudit.attacks.oracles._formats import require_format
from privaudit.errors import DataError, MissingDependencyError, UnsupportedFormatError

__all__ = ["OnnxOracle"]

DEFAULT_MAX_BYTES = 512 * 2**20
_STANDARD_DOMAINS = frozenset(("", "ai.onnx", "ai.onnx.ml"))
_FLOAT_TYPES: dict[str, type[np.floating[Any]]] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
}


def _onnx_modules() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError as error:
        raise MissingDependencyError(
            "loading ONNX models needs onnx and onnxruntime; run: pip install 'privaudit[audit]'"
        ) from error
    return onnx, onnxruntime


class OnnxOracle(Oracle):
    """Query an ONNX classifier with ONNX Runtime (CPU only).

    Build it with :meth:`load`.

    Attributes
    ----------
    input_name, output_name
        The graph input fed and the graph output read.
    input_shape : tuple
        The shape of one example, from the graph (``None`` for a symbolic axis).
    """

    kind = "onnx"

    def __init__(
        self,
        *,
        session: Any,
        input_name: str,
        output_name: str,
        input_shape: tuple[int | None, ...],
        input_dtype: type[np.floating[Any]],
        output: OutputKind,
        query_budget: int | None = None,
        batch_size: int = 1024,
        timeout_s: float | None = 600.0,
    ) -> None:
        super().__init__(query_budget=query_budget, batch_size=batch_size, timeout_s=timeout_s)
        self.session = session
        self.input_name = input_name
        self.output_name = output_name
        self.input_shape = input_shape
        self._input_dtype = input_dtype
        self.output = check_output_kind(output)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        output: OutputKind = "logits",
        input_name: str | None = None,
        output_name: str | None = None,
        threads: int = 1,
        max_bytes: int = DEFAULT_MAX_BYTES,
        query_budget: int | None = None,
        batch_size: int = 1024,
        timeout_s: float | None = 600.0,
    ) -> OnnxOracle:
        """Load an ONNX model.

        Parameters
        ----------
        path
            The ``.onnx`` file (its content is checked, not its name).
        output
            What the chosen output holds: ``"logits"`` (a ``torch.onnx.export`` of a
            classifier) or ``"probabilities"`` (a softmax; skl2onnx's
            ``probabilities`` output with ``zipmap=False``).
        input_name, output_name
            Which graph input and output to use; by default the only input and the
            first output (or the one called ``probabilities`` when ``output`` is
            ``"probabilities"``).
        threads
            ONNX Runtime's intra-op threads.
        max_bytes
            The largest file accepted.

        Raises
        ------
        UnsupportedFormatError
            If the file is not ONNX, uses external data, or imports operators from a
            non-standard domain.
        DataError
            If the graph's input or output is not a float tensor of the expected
            rank, or the model cannot be parsed.
        """
        onnx, ort = _onnx_modules()
        output = check_output_kind(output)
        file = Path(path)
        require_format(file, "onnx", max_bytes=max_bytes)
        data = file.read_bytes()
        try:
            proto = onnx.load_model_from_string(data)
        except Exception as error:
            raise DataError(f"{file.name!r} is not a valid ONNX model: {error}") from None
        _check_self_contained(proto, onnx, file.name)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as error:
            raise DataError(f"ONNX Runtime cannot run {file.name!r}: {error}") from None
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise DataError(
                f"{file.name!r} has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                "an oracle feeds exactly one"
            )
        chosen_input = _pick(inputs, input_name, "input", file.name)
        if chosen_input.type not in _FLOAT_TYPES or len(chosen_input.shape) < 2:
            raise DataError(
                f"{file.name!r}: input {chosen_input.name!r} must be a float tensor with a batch "
                f"axis, shape (batch, ...); got {chosen_input.type} of shape {chosen_input.shape}"
            )
        outputs = session.get_outputs()
        if output_name is None and output == "probabilities":
            names = [o.name for o in outputs]
            output_name = "probabilities" if "probabilities" in names else None
        chosen_output = _pick(outputs, output_name, "output", file.name)
        if chosen_output.type not in _FLOAT_TYPES or len(chosen_output.shape) != 2:
            hint = (
                " (skl2onnx: convert with options={'zipmap': False})"
                if "seq" in chosen_output.type or "map" in chosen_output.type
                else ""
            )
            raise DataError(
                f"{file.name!r}: output {chosen_output.name!r} must be a float tensor of shape "
                f"(batch, classes); got {chosen_output.type} of shape "
                f"{chosen_output.shape}{hint}"
            )
        oracle = cls(
            session=session,
            input_name=chosen_input.name,
            output_name=chosen_output.name,
            input_shape=tuple(d if isinstance(d, int) else None for d in chosen_input.shape[1:]),
            input_dtype=_FLOAT_TYPES[chosen_input.type],
            output=output,
            query_budget=query_budget,
            batch_size=batch_size,
            timeout_s=timeout_s,
        )
        classes = chosen_output.shape[1]
        if isinstance(classes, int):
            oracle.n_classes = classes
        return oracle

    def _predict_batch(self, batch: np.ndarray, *, deadline: float | None) -> np.ndarray:
        rank = len(self.input_shape)
        shaped = batch
        if batch.ndim - 1 != rank or any(
            want is not None and want != got
            for want, got in zip(self.input_shape, batch.shape[1:], strict=False)
        ):
            known = [d for d in self.input_shape if d is not None]
            if len(known) != rank or int(np.prod(known)) != int(np.prod(batch.shape[1:])):
                raise DataError(
                    f"the ONNX model takes examples of shape {self.input_shape}; got shape "
                    f"{batch.shape[1:]}"
                )
            shaped = batch.reshape(batch.shape[0], *known)
        (answer,) = self.session.run(
            [self.output_name], {self.input_name: shaped.astype(self._input_dtype)}
        )
        return np.asarray(answer)


def _pick(items: list[Any], name: str | None, what: str, file: str) -> Any:
    if name is None:
        return items[0]
    for item in items:
        if item.name == name:
            return item
    raise DataError(
        f"{file!r} has no {what} called {name!r}; it has {', '.join(i.name for i in items)}"
    )


def _check_self_contained(proto: Any, onnx: Any, file: str) -> None:
    """Refuse external data and operators from non-standard domains."""
    external = onnx.TensorProto.EXTERNAL
    graphs = [proto.graph]
    tensors = []
    while graphs:
        graph = graphs.pop()
        tensors.extend(graph.initializer)
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.HasField("t"):
                    tensors.append(attribute.t)
                tensors.extend(attribute.tensors)
                if attribute.HasField("g"):
                    graphs.append(attribute.g)
                graphs.extend(attribute.graphs)
    if any(tensor.data_location == external for tensor in tensors):
        raise UnsupportedFormatError(
            f"{file!r} keeps tensors in external data files, which privaudit does not read "
            "(external paths have been used to read files outside the model's folder); save "
            "the model as one file: onnx.save_model(model, path, save_as_external_data=False)",
            format="onnx",
        )
    domains = sorted({opset.domain for opset in proto.opset_import} - _STANDARD_DOMAINS)
    if domains:
        raise UnsupportedFormatError(
            f"{file!r} imports operators from non-standard domains ({', '.join(domains)}); "
            "privaudit runs only the standard ONNX operators (ai.onnx, ai.onnx.ml), no "
            "custom-operator libraries",
            format="onnx",
            domains=domains,
        )
