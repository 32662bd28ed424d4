"""Training recipes: allow-listed, checked, JSON round-trips; torch trains on the CPU."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from privaudit.attacks.membership import (
    ReferenceTrainingPlan,
    SklearnRecipe,
    TorchRecipe,
    TrainingRecipe,
    recipe_from_config,
    run_reference_training,
    trainers,
)
from privaudit.attacks.membership._recipes import _translate
from privaudit.errors import DataError, NotFoundError, ParameterError

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    return data.data[:600] / 16.0, data.target[:600]


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the two cores are shared; one thread is faster here
    yield
    torch.set_num_threads(threads)


def test_trainers_are_registered() -> None:
    assert trainers.names() == ["sklearn", "torch"]
    assert isinstance(SklearnRecipe(estimator="gaussian_nb"), TrainingRecipe)


def test_sklearn_recipe_checks_its_estimator_and_params() -> None:
    with pytest.raises(NotFoundError, match="did you mean 'random_forest'"):
        SklearnRecipe(estimator="random_forests")
    with pytest.raises(ParameterError, match=r"no parameter.*n_trees.*n_estimators"):
        SklearnRecipe(estimator="random_forest", params={"n_trees": 5})
    with pytest.raises(ParameterError, match=r"random_state.*seed"):
        SklearnRecipe(estimator="random_forest", params={"random_state": 1})
    with pytest.raises(ParameterError, match="n_jobs"):
        SklearnRecipe(estimator="random_forest", params={"n_jobs": 4})
    with pytest.raises(ParameterError, match="n_estimators"):
        SklearnRecipe(estimator="random_forest", params={"n_estimators": 0})
    with pytest.raises(ParameterError, match="JSON data"):
        SklearnRecipe(estimator="mlp", params={"activation": object()})
    with pytest.raises(ParameterError, match="finite"):
        SklearnRecipe(estimator="mlp", params={"alpha": math.nan})


def test_recipes_round_trip_through_their_config() -> None:
    recipes: list[TrainingRecipe] = [
        SklearnRecipe(estimator="mlp", params={"hidden_layer_sizes": [16, 8], "max_iter": 5}),
        TorchRecipe(
            architecture="small_cnn",
            architecture_params={"channels": [4, 8]},
            input_shape=(1, 8, 8),
            optimizer="adamw",
            flip=True,
        ),
    ]
    for recipe in recipes:
        config = recipe.to_config()
        assert recipe_from_config(config) == recipe
        assert (
            "device" not in recipe.fingerprint_config() and "version" in recipe.fingerprint_config()
        )
    assert recipes[0].to_config()["params"]["hidden_layer_sizes"] == [16, 8]
    with pytest.raises(ParameterError, match="'trainer' key"):
        recipe_from_config({"estimator": "mlp"})
    with pytest.raises(ParameterError, match=r"no option.*layers"):
        recipe_from_config({"trainer": "sklearn", "estimator": "mlp", "layers": 3})
    with pytest.raises(NotFoundError, match="unknown trainer"):
        recipe_from_config({"trainer": "jax"})


def test_sklearn_outputs_have_a_column_per_class(digits: tuple[np.ndarray, np.ndarray]) -> None:
    features, labels = digits
    members = labels != 9  # class 9 never trains this model
    recipe = SklearnRecipe(estimator="decision_tree", params={"max_depth": 5})
    outputs = recipe.fit_predict(features, labels, members, seed=1, n_classes=10)
    assert outputs.shape == (600, 10) and (outputs[:, 9] == 0).all()
    np.testing.assert_allclose(outputs.sum(axis=1), 1.0)
    again = recipe.fit_predict(features, labels, members, seed=1, n_classes=10)
    np.testing.assert_array_equal(outputs, again)


def test_torch_recipe_checks_its_options(digits: tuple[np.ndarray, np.ndarray]) -> None:
    bad: list[dict[str, object]] = [
        {"architecture": "resnet"},
        {"architecture": "mlp", "architecture_params": {"width": 3}},
        {"architecture": "mlp", "optimizer": "lbfgs"},
        {"architecture": "mlp", "epochs": 0},
        {"architecture": "mlp", "learning_rate": 0},
        {"architecture": "mlp", "flip": True},
        {"architecture": "mlp", "device": "tpu"},
        {"architecture": "mlp", "shift": -1},
    ]
    for options in bad:
        with pytest.raises((ParameterError, NotFoundError)):
            TorchRecipe(**options)  # type: ignore[arg-type]
    features, labels = digits
    with pytest.raises(DataError, match="holds 49 values"):
        ReferenceTrainingPlan.for_dataset(
            features,
            labels,
            recipe=TorchRecipe(architecture="mlp", input_shape=(7, 7)),
            n_models=2,
            seed=0,
        )
    with pytest.raises(ParameterError, match="hidden"):
        ReferenceTrainingPlan.for_dataset(
            features,
            labels,
            recipe=TorchRecipe(architecture="mlp", architecture_params={"hidden": [0]}),
            n_models=2,
            seed=0,
        )
    with pytest.raises(ParameterError, match="channels, height, width"):
        ReferenceTrainingPlan.for_dataset(
            features, labels, recipe=TorchRecipe(architecture="small_cnn"), n_models=2, seed=0
        )


def test_torch_mlp_trains_deterministically_on_the_cpu(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    features, labels = digits
    members = np.arange(600) % 2 == 0
    recipe = TorchRecipe(
        architecture="mlp",
        architecture_params={"hidden": [32]},
        epochs=8,
        batch_size=32,
        device="cpu",
    )
    state = torch.random.get_rng_state()
    logits = recipe.fit_predict(features, labels, members, seed=7, n_classes=10)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's RNG is untouched
    assert logits.shape == (600, 10) and logits.dtype == np.float32
    np.testing.assert_array_equal(
        logits, recipe.fit_predict(features, labels, members, seed=7, n_classes=10)
    )
    assert not np.array_equal(
        logits, recipe.fit_predict(features, labels, members, seed=8, n_classes=10)
    )
    # 300 training digits, 8 epochs: far above the 10% of chance on the held-out half
    # (measured about 0.9 on both halves).
    correct = logits.argmax(axis=1) == labels
    assert correct[members].mean() > 0.7 and correct[~members].mean() > 0.6


def test_small_cnn_with_augmentations_returns_every_view(
    digits: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    features, labels = digits
    recipe = TorchRecipe(
        architecture="small_cnn",
        architecture_params={"channels": [4, 8], "hidden": 16},
        input_shape=(1, 8, 8),
        epochs=2,
        batch_size=64,
        flip=True,
        shift=1,
        augmented_queries=True,
    )
    assert recipe.n_queries == 10
    plan = ReferenceTrainingPlan.for_dataset(features, labels, recipe=recipe, n_models=2, seed=1)
    result = run_reference_training(plan, features, labels, workdir=tmp_path, executor="serial")
    assert result.outputs.shape == (2, 600, 10, 10) and result.output == "logits"
    assert result.signals(labels).shape == (2, 600, 10)
    assert np.isfinite(result.signals(labels)).all()


def test_translate_moves_pixels_and_fills_with_zeros() -> None:
    image = torch.zeros(2, 1, 4, 4)
    image[:, 0, 1, 1] = 1.0
    moved = _translate(torch, image, torch.tensor([1, -1]), torch.tensor([2, 0]), 2)
    assert moved[0, 0, 3, 2] == 1 and moved[0].sum() == 1  # right 1, down 2
    assert moved[1, 0, 1, 0] == 1 and moved[1].sum() == 1  # left 1
    edge = _translate(torch, image, torch.tensor([-2, -2]), torch.tensor([0, 0]), 2)
    assert edge.sum() == 0  # moved off the image, nothing wraps around
