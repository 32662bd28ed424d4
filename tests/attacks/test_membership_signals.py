"""The logit-scaled confidence: definition, stability, and its three entry points agree."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from privaudit.attacks.membership import (
    logit_confidence,
    logit_confidence_from_logits,
    logit_confidence_from_loss,
    true_label_probability,
)
from privaudit.errors import DataError, ParameterError
from privaudit.randomness import simulation_generator


def test_three_entry_points_agree() -> None:
    rng = simulation_generator(0)
    logits = rng.normal(0, 3, size=(4, 50, 2, 7))  # (models, n, augmentations, classes)
    labels = rng.integers(0, 7, size=50)
    probabilities = softmax(logits, axis=-1)
    from_logits = logit_confidence_from_logits(logits, labels)
    from_probs = logit_confidence(probabilities, labels)
    assert from_logits.shape == (4, 50, 2)
    np.testing.assert_allclose(from_probs, from_logits, rtol=1e-9, atol=1e-9)
    p_true = np.take_along_axis(probabilities, labels[None, :, None, None], axis=-1)[..., 0]
    np.testing.assert_allclose(true_label_probability(from_logits), p_true, rtol=1e-12)
    np.testing.assert_allclose(logit_confidence_from_loss(-np.log(p_true)), from_logits, atol=1e-8)


def test_stable_where_the_naive_formula_is_not() -> None:
    # p_y = 1 − 1e-20 is 1.0 in float64, but the other classes still carry the odds.
    probabilities = np.array([[1.0, 0.5e-20, 0.5e-20]])
    assert logit_confidence(probabilities, [0], floor=1e-30)[0] == pytest.approx(np.log(1e20))
    assert logit_confidence(probabilities, [0])[0] == pytest.approx(np.log(1e12))  # floored
    assert logit_confidence_from_logits(np.array([[800.0, 0.0]]), [0])[0] == pytest.approx(800.0)
    # Exact zeros and ones are floored: finite and symmetric.
    edge = logit_confidence(np.array([[1.0, 0.0], [1.0, 0.0]]), [0, 1], floor=1e-6)
    assert edge.tolist() == pytest.approx([np.log(1e6), -np.log(1e6)])


def test_example_axis_in_every_layout() -> None:
    probabilities = softmax(simulation_generator(1).normal(size=(3, 5, 4)), axis=-1)
    labels = np.array([0, 1, 2, 3, 0])
    stacked = logit_confidence(probabilities, labels)  # (models, n, classes)
    for model in range(3):
        np.testing.assert_allclose(logit_confidence(probabilities[model], labels), stacked[model])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: logit_confidence(np.array([[0.5, 0.6]]), [0]), "sum to 1"),
        (lambda: logit_confidence(np.array([[0.5, 0.5]]), [2]), r"labels must lie in \[0, 2\)"),
        (lambda: logit_confidence(np.array([[0.5, 0.5]]), [0.0]), "integer"),
        (lambda: logit_confidence(np.array([[np.nan, 0.5]]), [0]), "NaN"),
        (lambda: logit_confidence(np.full((2, 3), 1 / 3), [0, 1, 0]), "example axis"),
        (lambda: logit_confidence_from_loss([0.0]), "> 0"),
        (lambda: logit_confidence_from_logits(np.ones((2, 1)), [0, 0]), "2 classes"),
    ],
)
def test_bad_signal_inputs(call: object, message: str) -> None:
    assert callable(call)
    with pytest.raises(DataError, match=message):
        call()


def test_floor_is_checked() -> None:
    with pytest.raises(ParameterError, match="floor"):
        logit_confidence(np.array([[0.5, 0.5]]), [0], floor=0.0)
