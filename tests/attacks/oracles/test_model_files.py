"""Model files: detected by content; skops, safetensors and ONNX load and answer like
the model they came from; pickles, torch.save, TorchScript and untrusted skops types
are refused with errors that say what to send instead."""

from __future__ import annotations

import builtins
import json
import pickle  # noqa: TID251 - writes real pickles, to check that they are refused
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
import safetensors.torch
import skops.io
import torch
from onnx import TensorProto, helper
from sklearn.datasets import load_digits
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from privaudit.attacks.membership import architecture_defaults, build_architecture
from privaudit.attacks.oracles import (
    OnnxOracle,
    SklearnOracle,
    TorchOracle,
    detect_format,
    load_oracle,
)
from privaudit.attacks.oracles._sklearn import check_trees
from privaudit.errors import (
    DataError,
    LimitExceededError,
    NotFoundError,
    ParameterError,
    UnsupportedFormatError,
)

X, Y = load_digits(return_X_y=True)
X_TRAIN, Y_TRAIN, X_TEST = X[:600], Y[:600], X[600:700]


@pytest.fixture(scope="module")
def forest() -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=8, max_depth=8, random_state=0).fit(X_TRAIN, Y_TRAIN)


def _mlp(hidden: tuple[int, ...] = (16,)) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_architecture("mlp", input_shape=(64,), n_classes=10, config={"hidden": hidden})


def _logits(module: torch.nn.Module, features: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = module(torch.tensor(features, dtype=torch.float32).reshape(len(features), -1))
    return np.asarray(out.numpy(), dtype=np.float64)


def _save_torchscript(module: torch.nn.Module, path: Path, *, trace: bool = False) -> None:
    with warnings.catch_warnings():  # torch.jit is deprecated, and still what people send
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = (
            torch.jit.trace(module, torch.zeros(1, 64)) if trace else torch.jit.script(module)
        )
        torch.jit.save(scripted, path)


class Opaque:
    """A class of this test module: not a type privaudit trusts."""

    def __init__(self) -> None:
        self.payload = [1, 2, 3]


# -- content detection ------------------------------------------------------------


def test_formats_are_told_apart_by_content_not_name(
    tmp_path: Path, forest: RandomForestClassifier
) -> None:
    module = _mlp()
    files = {
        "skops": tmp_path / "a.bin",
        "safetensors": tmp_path / "b.bin",
        "torch_archive": tmp_path / "c.safetensors",
        "torchscript": tmp_path / "d.onnx",
        "pickle": tmp_path / "e.skops",
        "npz": tmp_path / "f.onnx",
    }
    skops.io.dump(forest, files["skops"])
    safetensors.torch.save_file(module.state_dict(), files["safetensors"])
    torch.save(module.state_dict(), files["torch_archive"])
    _save_torchscript(module, files["torchscript"])
    files["pickle"].write_bytes(pickle.dumps(forest))
    with files["npz"].open("wb") as handle:  # savez would add ".npz" to the name
        np.savez(handle, a=np.zeros(3))
    assert {name: detect_format(path).name for name, path in files.items()} == {
        name: name for name in files
    }
    text = tmp_path / "old.pkl"
    text.write_bytes(pickle.dumps({"a": [1, 2]}, protocol=0))
    assert detect_format(text).name == "pickle"
    assert detect_format(tmp_path / "b.bin").name == "safetensors"


def _refusal(path: Path, **options: Any) -> str:
    with pytest.raises(UnsupportedFormatError) as info:
        load_oracle(path, **options)
    assert info.value.code == "unsupported_format"
    return str(info.value)


def test_a_pickle_is_refused_whatever_its_name(
    tmp_path: Path, forest: RandomForestClassifier
) -> None:
    for name in ("model.skops", "model.onnx", "model.pkl"):
        path = tmp_path / name
        path.write_bytes(pickle.dumps(forest))
        message = _refusal(path)
        assert "is a Python pickle (protocol" in message
        assert "skops.io.dump" in message and "safetensors" in message
    with pytest.raises(UnsupportedFormatError, match="Python pickle"):
        SklearnOracle.load(tmp_path / "model.skops")


def test_a_torch_save_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(_mlp().state_dict(), path)
    message = _refusal(path, architecture="mlp", input_shape=(64,), n_classes=10)
    assert "torch.save archive" in message
    assert "safetensors.torch.save_file(model.state_dict()" in message
    with pytest.raises(UnsupportedFormatError, match=r"torch\.save archive"):
        TorchOracle.load(path, architecture="mlp", input_shape=(64,), n_classes=10)


def test_a_torchscript_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"  # the name lies
    _save_torchscript(_mlp(), path, trace=True)
    message = _refusal(path)
    assert "TorchScript archive: loading it runs the code" in message
    assert "torch.onnx.export" in message


def test_compressed_and_other_files_are_refused(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "model.joblib"
    path.write_bytes(gzip.compress(pickle.dumps([1, 2, 3])))
    assert "compressed data (gzip)" in _refusal(path)
    path.write_bytes(b"just some bytes")
    assert "not a format privaudit recognises" in _refusal(path)
    np.save(tmp_path / "a.npy", np.zeros(3))
    assert "data, not a model" in _refusal(tmp_path / "a.npy")


def test_files_over_the_size_limit_are_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.onnx"
    path.write_bytes(b"\x08" * 2048)
    with pytest.raises(LimitExceededError, match="2048 bytes, over the limit of 1024"):
        load_oracle(path, max_bytes=1024)


# -- scikit-learn via skops -------------------------------------------------------


def test_forest_round_trip_through_skops(tmp_path: Path, forest: RandomForestClassifier) -> None:
    path = tmp_path / "forest.skops"
    skops.io.dump(forest, path)
    oracle = load_oracle(path, query_budget=500)
    assert isinstance(oracle, SklearnOracle)
    np.testing.assert_array_equal(oracle.predict_proba(X_TEST), forest.predict_proba(X_TEST))
    assert oracle.classes.tolist() == list(range(10))
    assert (oracle.queries_used, oracle.n_classes, oracle.n_features) == (100, 10, 64)
    with pytest.raises(DataError, match="takes 64 features per example; got 8"):
        oracle.predict(np.zeros((2, 8)))


def test_pipeline_and_boosting_round_trip(tmp_path: Path) -> None:
    models = [
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)),
        GradientBoostingClassifier(n_estimators=3, max_depth=2, random_state=0),
    ]
    for index, model in enumerate(models):
        model.fit(X_TRAIN[:200], Y_TRAIN[:200])
        path = tmp_path / f"model{index}.skops"
        skops.io.dump(model, path)
        answers = SklearnOracle.load(path).predict_proba(X_TEST)
        np.testing.assert_allclose(answers, model.predict_proba(X_TEST), rtol=1e-12)


def test_a_custom_class_in_a_skops_file_is_refused(tmp_path: Path) -> None:
    model = LogisticRegression(max_iter=200).fit(X_TRAIN[:200], Y_TRAIN[:200])
    model.smuggled = Opaque()  # type: ignore[attr-defined]
    path = tmp_path / "custom.skops"
    skops.io.dump(model, path)
    with pytest.raises(DataError, match=r"types that privaudit does not trust") as info:
        SklearnOracle.load(path)
    assert info.value.details["untrusted_types"] == [f"{__name__}.Opaque"]
    assert f"{__name__}.Opaque" in str(info.value)
    assert not isinstance(info.value, UnsupportedFormatError)


def test_a_function_like_eval_in_a_skops_file_is_refused(tmp_path: Path) -> None:
    model = make_pipeline(FunctionTransformer(builtins.abs), LogisticRegression(max_iter=200)).fit(
        X_TRAIN[:200], Y_TRAIN[:200]
    )
    model.steps[0][1].func = builtins.eval  # what an attacker would put there
    path = tmp_path / "eval.skops"
    skops.io.dump(model, path)
    with pytest.raises(DataError, match=r"builtins\.eval"):
        SklearnOracle.load(path)
    # The operator's explicit trust is the only way in, and it is per type.
    skops.io.dump(make_pipeline(FunctionTransformer(builtins.abs)), path)
    with pytest.raises(DataError, match=r"builtins\.abs"):
        SklearnOracle.load(path)


def test_crafted_tree_indices_are_refused(tmp_path: Path, forest: RandomForestClassifier) -> None:
    # A tree whose first split points back at the root would loop (or, pointed past the
    # end, read out of bounds) in predict. Rewrite one node in a skops file, as an
    # attacker would, and check it is refused before any prediction.
    path = tmp_path / "forest.skops"
    skops.io.dump(forest, path)
    crafted = tmp_path / "crafted.skops"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(crafted, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith(".npy"):
                import io

                array = np.load(io.BytesIO(data), allow_pickle=False)
                if array.dtype.names and "left_child" in array.dtype.names:
                    array = array.copy()
                    array["left_child"][0] = 0  # the root is its own child
                    buffer = io.BytesIO()
                    np.save(buffer, array, allow_pickle=False)
                    data = buffer.getvalue()
            target.writestr(info, data)
    with pytest.raises(DataError, match="out of bounds"):
        SklearnOracle.load(crafted)
    assert check_trees(forest) == 8  # the genuine forest passes, every tree checked


def test_an_unfitted_or_non_classifier_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "scaler.skops"
    skops.io.dump(StandardScaler().fit(X_TRAIN), path)
    with pytest.raises(DataError, match="classifier with predict_proba"):
        SklearnOracle.load(path)
    skops.io.dump(LogisticRegression(), path)
    with pytest.raises(DataError, match="not fitted"):
        SklearnOracle.load(path)


# -- PyTorch via safetensors ------------------------------------------------------


def test_mlp_round_trip_through_safetensors(tmp_path: Path) -> None:
    module = _mlp((16, 8))
    path = tmp_path / "mlp.safetensors"
    safetensors.torch.save_file(module.state_dict(), path)
    config = tmp_path / "mlp.json"
    spec = {"architecture": "mlp", "input_shape": [64], "n_classes": 10}
    config.write_text(json.dumps({**spec, "config": {"hidden": [16, 8]}}))
    oracle = TorchOracle.from_config_file(path, config, query_budget=200)
    assert oracle.output == "logits" and oracle.n_classes == 10
    np.testing.assert_allclose(oracle.predict(X_TEST), _logits(module, X_TEST), atol=1e-5)
    assert oracle.predict_proba(X_TEST[:3]).sum(axis=1) == pytest.approx(np.ones(3))
    assert oracle.architecture == "mlp" and oracle.config == {"hidden": [16, 8]}


def test_small_cnn_round_trip_through_safetensors(tmp_path: Path) -> None:
    torch.manual_seed(1)
    config = {"channels": [4, 8], "hidden": 16}
    module = build_architecture("small_cnn", input_shape=(1, 8, 8), n_classes=10, config=config)
    path = tmp_path / "cnn.safetensors"
    safetensors.torch.save_file(module.state_dict(), path)
    oracle = load_oracle(
        path, architecture="small_cnn", input_shape=(1, 8, 8), n_classes=10, config=config
    )
    images = X_TEST.reshape(-1, 1, 8, 8)
    with torch.no_grad():
        expected = module(torch.tensor(images, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(oracle.predict(X_TEST), expected, atol=1e-5)  # flat inputs
    np.testing.assert_allclose(oracle.predict(images), expected, atol=1e-5)  # shaped inputs


def test_weights_that_do_not_fit_the_architecture_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "mlp.safetensors"
    safetensors.torch.save_file(_mlp((32,)).state_dict(), path)
    options: dict[str, Any] = {"architecture": "mlp", "input_shape": (64,), "n_classes": 10}
    with pytest.raises(
        DataError, match=r"1\.weight: file \(32, 64\), architecture \(16, 64\)"
    ) as info:
        TorchOracle.load(path, config={"hidden": [16]}, **options)
    assert info.value.details["missing"] == [] and info.value.details["unexpected"] == []
    with pytest.raises(DataError, match=r"missing tensors: 5\.bias, 5\.weight") as info:
        TorchOracle.load(path, config={"hidden": [32, 8]}, **options)
    state = _mlp((32,)).state_dict()
    safetensors.torch.save_file({**state, "extra": torch.zeros(2)}, path)
    with pytest.raises(DataError, match=r"unexpected tensors: extra"):
        TorchOracle.load(path, config={"hidden": [32]}, **options)
    safetensors.torch.save_file({**state, "1.bias": torch.zeros(32, dtype=torch.int64)}, path)
    with pytest.raises(DataError, match=r"non-float tensors: 1\.bias"):
        TorchOracle.load(path, config={"hidden": [32]}, **options)


def test_architecture_config_is_validated(tmp_path: Path) -> None:
    path = tmp_path / "mlp.safetensors"
    safetensors.torch.save_file(_mlp().state_dict(), path)
    with pytest.raises(NotFoundError, match=r"unknown architecture 'mpl' \(did you mean 'mlp'"):
        TorchOracle.load(path, architecture="mpl", input_shape=(64,), n_classes=10)
    with pytest.raises(ParameterError, match="takes the config keys hidden, dropout; got unknown"):
        TorchOracle.load(
            path, architecture="mlp", input_shape=(64,), n_classes=10, config={"width": 3}
        )
    with pytest.raises(ParameterError, match="n_classes must be an integer >= 2"):
        build_architecture("mlp", input_shape=(64,), n_classes=1)
    with pytest.raises(ParameterError, match=r"small_cnn needs input_shape \(channels"):
        build_architecture("small_cnn", input_shape=(64,), n_classes=10)
    with pytest.raises(ParameterError, match="dropout must be in"):
        build_architecture("mlp", input_shape=(64,), n_classes=10, config={"dropout": 1.5})
    assert architecture_defaults("small_cnn") == {"channels": (16, 32), "hidden": 64}
    with pytest.raises(ParameterError, match="safetensors weights, which need the network"):
        load_oracle(path)
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"architecture": "mlp", "input_shape": [64]}))
    with pytest.raises(DataError, match=r"missing: \['n_classes'\]"):
        TorchOracle.from_config_file(path, config)


# -- ONNX -----------------------------------------------------------------------


def _linear_onnx(weights: np.ndarray, **graph_options: Any) -> onnx.ModelProto:
    w = onnx.numpy_helper.from_array(weights, "W")  # raw data, so it can live externally
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["logits"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", weights.shape[0]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", weights.shape[1]])],
        [w],
        **graph_options,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_onnx_exported_from_torch_round_trip(tmp_path: Path) -> None:
    module = _mlp()
    path = tmp_path / "mlp.onnx"
    with warnings.catch_warnings():  # the TorchScript-based exporter announces its successor
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module,
            (torch.zeros(2, 64),),
            path,
            dynamo=False,
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}},
        )
    oracle = load_oracle(path, query_budget=1000)
    assert isinstance(oracle, OnnxOracle)
    assert (oracle.input_shape, oracle.n_classes, oracle.output) == ((64,), 10, "logits")
    np.testing.assert_allclose(oracle.predict(X_TEST), _logits(module, X_TEST), atol=1e-4)


def test_onnx_built_by_hand_and_its_checks(tmp_path: Path) -> None:
    weights = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    path = tmp_path / "linear.onnx"
    onnx.save_model(_linear_onnx(weights), path)
    oracle = OnnxOracle.load(path)
    inputs = np.linspace(-1, 1, 8).reshape(2, 4)
    np.testing.assert_allclose(oracle.predict(inputs), inputs @ weights, rtol=1e-5)
    with pytest.raises(DataError, match=r"takes examples of shape \(4,\); got shape \(5,\)"):
        oracle.predict(np.zeros((1, 5)))
    with pytest.raises(DataError, match="declared to answer probabilities"):
        OnnxOracle.load(path, output="probabilities").predict(inputs)


def test_onnx_external_data_and_custom_domains_are_refused(tmp_path: Path) -> None:
    model = _linear_onnx(np.ones((4, 3), dtype=np.float32))
    path = tmp_path / "external.onnx"
    onnx.save_model(
        model, path, save_as_external_data=True, all_tensors_to_one_file=True, size_threshold=0
    )
    with pytest.raises(UnsupportedFormatError, match="external data files"):
        OnnxOracle.load(path)
    custom = _linear_onnx(np.ones((4, 3), dtype=np.float32))
    custom.opset_import.append(helper.make_opsetid("com.example.native", 1))
    onnx.save_model(custom, path)
    with pytest.raises(UnsupportedFormatError, match=r"non-standard domains \(com.example"):
        OnnxOracle.load(path)


def test_onnx_with_a_label_output_is_refused(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("ArgMax", ["x"], ["label"], axis=1, keepdims=0)],
        "argmax",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["n"])],
    )
    path = tmp_path / "argmax.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(DataError, match=r"must be a float tensor of shape \(batch, classes\)"):
        OnnxOracle.load(path)
