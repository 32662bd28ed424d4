"""The digits audit at a reduced size: reference-based attacks beat LOSS; units are pure."""

from __future__ import annotations

import json

import numpy as np
import pytest

from privaudit.attacks.membership import digits_keep_matrix, run_digits_demo, train_digits_unit
from privaudit.errors import ParameterError


def test_reduced_demo_reference_attacks_beat_loss() -> None:
    # K = 4 (5 forests): a few seconds. With 1797 examples an AUC's standard error is
    # about 0.01. Measured over seeds 0-3 at this size: LOSS 0.78-0.81, LiRA online
    # with per-example variance 0.86-0.88 (weak with 4 references, as the paper warns),
    # LiRA with fixed variance 0.93-0.94, RMIA 0.95-0.98. Seed 3 is the least favourable
    # of those; the margins asserted are several standard errors below the ones seen.
    result = run_digits_demo(n_reference=4, seed=3)
    loss = result.metrics["loss"].auc
    for name in ("lira-online-fixed-var", "rmia-online", "rmia-offline"):
        assert result.metrics[name].auc > loss + 0.08, (name, result.table())
    assert result.metrics["lira-online"].auc > loss + 0.03, result.table()
    assert result.metrics["loss"].n_members + result.metrics["loss"].n_nonmembers == 1797
    assert result.target_accuracy["train"] > result.target_accuracy["test"]
    summary = json.loads(json.dumps(result.to_dict()))
    assert set(summary["attacks"]) == set(result.metrics) and summary["n_reference"] == 4
    assert "whole audit" in result.table()


def test_keep_matrix_is_balanced_and_seeded() -> None:
    keep = digits_keep_matrix(n_models=17, n_examples=100, seed=1)
    assert keep.shape == (17, 100) and (keep.sum(axis=0) == 8).all()
    np.testing.assert_array_equal(keep, digits_keep_matrix(n_models=17, n_examples=100, seed=1))
    assert not np.array_equal(keep, digits_keep_matrix(n_models=17, n_examples=100, seed=2))


def test_training_unit_is_deterministic() -> None:
    first = train_digits_unit(5, 2, n_models=3)
    np.testing.assert_array_equal(first, train_digits_unit(5, 2, n_models=3))
    assert first.shape == (1797, 10)
    assert not np.array_equal(first, train_digits_unit(5, 1, n_models=3))


def test_demo_parameters_are_checked() -> None:
    with pytest.raises(ParameterError, match="n_reference"):
        run_digits_demo(n_reference=1)
