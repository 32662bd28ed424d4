"""Audit config mode ``model``: the user's own model file, queried on a dataset file.

The target is a random forest trained on a known half of scikit-learn's digits, saved
with skops (never pickle); the dataset is an ``.npz`` with its membership column.
Reference models come from a recipe, trained here as resumable units.
"""

from __future__ import annotations

import pickle  # noqa: TID251  (only to write a pickle that must be refused)
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier

from privaudit.attacks.membership import parse_audit_config, run_audit
from privaudit.errors import DataError, ParameterError, UnsupportedFormatError

skops_io = pytest.importorskip("skops.io")

N_EXAMPLES = 600
TREES = 20


@pytest.fixture(scope="module")
def own_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("own-model")
    data = load_digits()
    features, labels = data.data[:N_EXAMPLES] / 16.0, data.target[:N_EXAMPLES]
    member = np.random.default_rng(7).permutation(N_EXAMPLES) < N_EXAMPLES // 2
    forest = RandomForestClassifier(n_estimators=TREES, random_state=0)
    forest.fit(features[member], labels[member])
    skops_io.dump(forest, folder / "forest.skops")
    np.savez(folder / "audit.npz", features=features, label=labels, member=member)
    (folder / "forest.pkl").write_bytes(pickle.dumps(forest))
    return {
        "forest.skops": folder / "forest.skops",
        "audit.npz": folder / "audit.npz",
        "forest.pkl": folder / "forest.pkl",
    }


def _config(**inputs: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "inputs": {"mode": "model", "model": "forest.skops", "dataset": "audit.npz", **inputs},
        "attacks": ["loss", {"attack": "lira", "params": {"online": False}}],
        "reference_models": 8,
    }


RECIPE = {"trainer": "sklearn", "estimator": "random_forest", "params": {"n_estimators": TREES}}


def test_an_own_model_is_audited_with_reference_models_trained_here(
    own_model: dict[str, Path], tmp_path: Path
) -> None:
    config = parse_audit_config(_config(recipe=RECIPE))
    artifacts = {name: own_model[name] for name in ("forest.skops", "audit.npz")}
    seen: list[tuple[str, int, int | None]] = []
    first = run_audit(
        config,
        artifacts=artifacts,
        work_dir=tmp_path,
        on_progress=lambda stage, done, total: seen.append((stage, done, total)),
    )
    assert (first.n_models, first.trained, first.skipped) == (8, 8, 0)
    assert ("train models", 8, 8) in seen and ("compute signals", 1, 1) in seen
    aucs = {attack.name: attack.metrics.auc for attack in first.report.attacks}
    # A 20-tree forest on 300 digits memorises its members: every attack sees it, and
    # LiRA (8 offline references) beats LOSS. Seeded: a fixed outcome, not a draw.
    assert aucs["loss"] > 0.6
    assert aucs["lira-offline"] > aucs["loss"]
    members = first.report.attacks[0].metrics
    assert (members.n_members, members.n_nonmembers) == (N_EXAMPLES // 2, N_EXAMPLES // 2)
    names = [artifact.name for artifact in first.report.inputs.artifacts]
    assert names == ["forest.skops", "audit.npz"]

    # Run again on the same work directory: the reference models are reused, and the
    # figures are the same.
    second = run_audit(config, artifacts=artifacts, work_dir=tmp_path)
    assert (second.trained, second.skipped) == (0, 8)
    again = {attack.name: attack.metrics.auc for attack in second.report.attacks}
    assert again == aucs


def test_without_a_recipe_only_attacks_without_references_run(
    own_model: dict[str, Path],
) -> None:
    artifacts = {name: own_model[name] for name in ("forest.skops", "audit.npz")}
    loss_only = _config()
    del loss_only["reference_models"]
    loss_only["attacks"] = ["loss"]
    outcome = run_audit(parse_audit_config(loss_only), artifacts=artifacts)
    assert outcome.n_models == 0 and outcome.report.attacks[0].metrics.auc > 0.6

    with_lira = dict(loss_only, attacks=["loss", "lira"])
    with pytest.raises(DataError, match=r"needs at least .* reference models; the inputs have 0"):
        run_audit(parse_audit_config(with_lira), artifacts=artifacts)
    with pytest.raises(ParameterError, match="reference models only with a recipe"):
        parse_audit_config(_config())


def test_a_pickled_model_is_refused_whatever_its_name(own_model: dict[str, Path]) -> None:
    config = parse_audit_config(dict(_config(recipe=RECIPE), attacks=["loss"]))
    artifacts = {"forest.skops": own_model["forest.pkl"], "audit.npz": own_model["audit.npz"]}
    with pytest.raises(UnsupportedFormatError, match="pickle") as caught:
        run_audit(config, artifacts=artifacts)
    assert caught.value.details["format"] == "pickle"


def test_labels_the_model_cannot_answer_are_refused(
    own_model: dict[str, Path], tmp_path: Path
) -> None:
    with np.load(own_model["audit.npz"]) as data:
        arrays = {key: data[key] for key in data.files}
    arrays["label"] = arrays["label"] + 5  # classes 5..14; the forest knows 0..9
    np.savez(tmp_path / "shifted.npz", **arrays)
    config = parse_audit_config(dict(_config(recipe=RECIPE), attacks=["loss"]))
    artifacts = {"forest.skops": own_model["forest.skops"], "audit.npz": tmp_path / "shifted.npz"}
    with pytest.raises(DataError, match=r"labels up to 14, but the model .* answers 10 classes"):
        run_audit(config, artifacts=artifacts)

    np.savez(tmp_path / "nomember.npz", features=arrays["features"], label=arrays["label"])
    artifacts["audit.npz"] = tmp_path / "nomember.npz"
    with pytest.raises(DataError, match=r"artifact 'audit.npz': .*has no array 'member'"):
        run_audit(config, artifacts=artifacts)


TORCH_RECIPE = {
    "trainer": "torch",
    "architecture": "mlp",
    "architecture_params": {"hidden": [64]},
    "optimizer": "adam",
    "learning_rate": 0.01,
    "epochs": 100,
    "batch_size": 100,
}


@pytest.mark.parametrize(
    "recipe",
    [None, pytest.param(TORCH_RECIPE, marks=pytest.mark.slow, id="with-references")],
)
def test_an_own_torch_model_from_safetensors(tmp_path: Path, recipe: dict[str, Any] | None) -> None:
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    from privaudit.attacks.membership import build_architecture

    data = load_digits()
    features, labels = data.data[:200] / 16.0, data.target[:200]
    member = np.random.default_rng(3).permutation(200) < 100
    torch.manual_seed(0)
    net = build_architecture("mlp", input_shape=(64,), n_classes=10, config={"hidden": [64]})
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    x = torch.tensor(features[member], dtype=torch.float32)
    y = torch.tensor(labels[member])
    for _ in range(200):  # full batch, long enough to overfit its 100 members
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()
    safetensors_torch.save_file(net.state_dict(), tmp_path / "net.safetensors")
    np.savez(tmp_path / "audit.npz", features=features, label=labels, member=member)
    config = parse_audit_config(
        {
            "version": 1,
            "inputs": {
                "mode": "model",
                "model": "net.safetensors",
                "dataset": "audit.npz",
                "architecture": {
                    "name": "mlp",
                    "input_shape": [64],
                    "n_classes": 10,
                    "config": {"hidden": [64]},
                },
                **({} if recipe is None else {"recipe": recipe}),
            },
            **({} if recipe is None else {"reference_models": 2}),
            "attacks": ["loss"]
            if recipe is None
            else ["loss", {"attack": "lira", "params": {"online": False}}],
        }
    )
    artifacts = {
        "net.safetensors": tmp_path / "net.safetensors",
        "audit.npz": tmp_path / "audit.npz",
    }
    outcome = run_audit(config, artifacts=artifacts)
    aucs = {attack.name: attack.metrics.auc for attack in outcome.report.attacks}
    # Seeded, deterministic on the CPU: the overfitted network leaks, and LOSS sees it;
    # with a recipe, two torch reference models are trained here and LiRA runs too.
    assert aucs["loss"] > 0.6, aucs
    if recipe is not None:
        assert (outcome.n_models, outcome.trained) == (2, 2) and aucs["lira-offline"] > 0.6

    wrong = config.model_dump(mode="json")
    wrong["inputs"]["architecture"]["config"] = {"hidden": [32]}
    with pytest.raises(DataError, match="does not fit"):
        run_audit(parse_audit_config(wrong), artifacts=artifacts)
