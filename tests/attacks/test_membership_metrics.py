"""Membership metrics against scikit-learn and a hand-computed example with ties."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from privaudit.attacks.membership import membership_metrics, roc_auc, roc_curve
from privaudit.errors import DataError
from privaudit.randomness import simulation_generator


@pytest.mark.parametrize("seed", range(5))
def test_roc_and_auc_match_sklearn_with_ties(seed: int) -> None:
    rng = simulation_generator(seed)
    truth = rng.random(300) < 0.4
    scores = rng.integers(0, 25, size=300) + 3.0 * truth  # many ties
    curve = roc_curve(truth, scores)
    fpr, tpr, thresholds = skm.roc_curve(truth, scores, drop_intermediate=False)
    np.testing.assert_allclose(curve.fpr, fpr)
    np.testing.assert_allclose(curve.tpr, tpr)
    np.testing.assert_array_equal(curve.thresholds[1:], thresholds[1:])
    assert roc_auc(truth, scores) == pytest.approx(skm.roc_auc_score(truth, scores), abs=1e-12)
    result = membership_metrics(truth, scores)
    best = np.max(tpr - fpr)
    assert result.advantage == pytest.approx(best)
    assert result.balanced_accuracy == pytest.approx(
        max(skm.balanced_accuracy_score(truth, scores >= t) for t in np.unique(scores))
    )
    # TPR at FPR <= x: the last sklearn point whose FPR is within the limit.
    for limit in (0.1, 0.01, 0.0):
        assert result.tpr(limit) == tpr[np.flatnonzero(fpr <= limit)[-1]]


@settings(max_examples=60, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.booleans(), st.integers(-5, 5)), min_size=2, max_size=60).filter(
        lambda rows: len({member for member, _ in rows}) == 2
    )
)
def test_properties_on_arbitrary_small_inputs(pairs: list[tuple[bool, int]]) -> None:
    truth = np.array([member for member, _ in pairs])
    scores = np.array([score for _, score in pairs], dtype=float)
    result = membership_metrics(truth, scores)
    assert result.auc == pytest.approx(skm.roc_auc_score(truth, scores), abs=1e-12)
    # Invariant under a strictly increasing map of the scores; mirrored by negation.
    assert roc_auc(truth, np.exp(scores / 3)) == pytest.approx(result.auc, abs=1e-12)
    assert roc_auc(truth, -scores) == pytest.approx(1 - result.auc, abs=1e-12)
    assert np.all(np.diff(result.roc.fpr) >= 0) and np.all(np.diff(result.roc.tpr) >= 0)
    limits = [entry.tpr for entry in result.tpr_at_fpr]  # 10%, 1%, 0.1%, 0%: non-increasing
    assert limits == sorted(limits, reverse=True)
    assert 0.5 <= result.balanced_accuracy <= 1 and result.advantage >= 0


def test_hand_computed_example_with_ties() -> None:
    # 4 members (M) and 5 non-members (N), sorted by score (higher = member):
    #   9: M   8: M, N (tie)   7: M   5: N   4: M, N (tie)   2: N   1: N
    truth = [1, 1, 0, 1, 0, 1, 0, 0, 0]
    scores = [9, 8, 8, 7, 5, 4, 4, 2, 1]
    result = membership_metrics(truth, scores, fpr_limits=(0.0, 0.1, 0.2, 0.5))
    # ROC points (FPR, TPR): (0,0) (0,1/4) (1/5,2/4) (1/5,3/4) (2/5,3/4) (3/5,1) (4/5,1) (1,1)
    assert result.roc.fpr.tolist() == [0, 0, 0.2, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert result.roc.tpr.tolist() == [0, 0.25, 0.5, 0.75, 0.75, 1, 1, 1]
    at = {entry.fpr_limit: entry for entry in result.tpr_at_fpr}
    assert at[0.0].tpr == 0.25 and at[0.0].false_positives == 0 and not at[0.0].resolved
    assert at[0.1].tpr == 0.25 and not at[0.1].resolved  # 0.1 · 5 < 1 false positive
    assert at[0.2].tpr == 0.75 and at[0.2].true_positives == 3 and at[0.2].resolved
    assert at[0.5].tpr == 0.75 and at[0.5].fpr == 0.4
    # AUC: P(score_M > score_N) + ½ P(tie), counted over the 4 · 5 pairs
    wins = sum(
        (m > n) + 0.5 * (m == n)
        for m, t in zip(scores, truth, strict=True)
        if t
        for n, u in zip(scores, truth, strict=True)
        if not u
    )
    assert result.auc == pytest.approx(wins / 20) == pytest.approx(0.8)
    assert result.advantage == pytest.approx(0.55)  # at (FPR, TPR) = (0.2, 0.75)
    assert result.balanced_accuracy == pytest.approx(0.775)
    assert (result.n_members, result.n_nonmembers) == (4, 5)
    low, high = at[0.2].tpr_interval
    assert low < 0.75 < high


def test_to_dict_carries_the_counts_and_is_json() -> None:
    result = membership_metrics([True, False, True, False], [0.9, 0.1, 0.8, 0.2])
    data = json.loads(json.dumps(result.to_dict()))
    assert data["auc"] == 1.0 and data["n_members"] == 2 and data["n_nonmembers"] == 2
    assert [entry["fpr_limit"] for entry in data["tpr_at_fpr"]] == [0.1, 0.01, 0.001, 0.0]
    assert all(entry["n_nonmembers"] == 2 for entry in data["tpr_at_fpr"])
    with pytest.raises(DataError, match=r"no TPR at FPR 0\.5"):
        result.tpr(0.5)


@pytest.mark.parametrize(
    ("truth", "scores", "message"),
    [
        ([True, True], [0.1, 0.2], "one non-member"),
        ([False, False], [0.1, 0.2], "one member"),
        ([True, False], [0.1, np.nan], "NaN"),
        ([True, False], [0.1], "same length"),
        ([2, 0], [0.1, 0.2], "booleans"),
    ],
)
def test_bad_metric_inputs(truth: list[object], scores: list[float], message: str) -> None:
    with pytest.raises(DataError, match=message):
        membership_metrics(truth, scores)
