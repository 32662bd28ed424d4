"""build_membership_report: scores → the canonical report, with honest ε figures."""

from __future__ import annotations

import numpy as np
import pytest
from membership_planted import planted

from privaudit.attacks.membership import (
    LiRA,
    LossAttack,
    build_membership_report,
    membership_metrics,
)
from privaudit.errors import DataError, ParameterError
from privaudit.estimators import estimate_from_scores
from privaudit.randomness import simulation_generator
from privaudit.reports import gate, parse_report, render


def _scores(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = simulation_generator(seed)
    member = rng.random(n) < 0.5
    return member, {
        "weak": 0.3 * member + rng.normal(size=n),
        "strong": 2.0 * member + rng.normal(size=n),
    }


def test_metrics_and_plots_are_those_of_the_scores() -> None:
    member, scores = _scores()
    report = build_membership_report(scores, member, description="planted normal scores")
    assert report.inputs.n_members == member.sum()
    for name, values in scores.items():
        expected = membership_metrics(member, values)
        result = report.attack(name)
        assert result.metrics.auc == expected.auc
        assert result.metrics.advantage == expected.advantage
        assert [e.tpr for e in result.metrics.tpr_at_fpr] == [e.tpr for e in expected.tpr_at_fpr]
        assert result.metrics.tpr_at_fpr[1].tpr_interval == expected.tpr_at_fpr[1].tpr_interval
        assert result.histogram is not None and result.roc is not None
        assert sum(result.histogram.members) == member.sum()
        assert sum(result.histogram.nonmembers) == (~member).sum()
        assert (result.roc.fpr[0], result.roc.tpr[0]) == (0.0, 0.0)
        assert (result.roc.fpr[-1], result.roc.tpr[-1]) == (1.0, 1.0)
    assert report.attack("strong").metrics.auc > report.attack("weak").metrics.auc + 0.3
    assert parse_report(render(report, "json")) == report


def test_roc_points_are_sampled_without_changing_the_low_fpr_corners() -> None:
    rng = simulation_generator(1)
    member = rng.random(20_000) < 0.5
    scores = member + rng.normal(size=member.size)
    report = build_membership_report({"s": scores}, member, description="x", estimate_epsilon=False)
    roc = report.attacks[0].roc
    assert roc is not None and roc.full_points == 20_001 and len(roc.fpr) <= 1002
    assert np.all(np.diff(roc.fpr) >= 0) and np.all(np.diff(roc.tpr) >= 0)
    full = membership_metrics(member, scores).roc
    n_nonmembers = int((~member).sum())
    for count in (0, 1, 5, 10, 50):  # the curve at 0, 1, 5, ... false positives
        fpr = count / n_nonmembers
        sampled = np.asarray(roc.tpr)[np.flatnonzero(np.asarray(roc.fpr) <= fpr)[-1]]
        assert sampled == full.tpr[np.flatnonzero(full.fpr <= fpr)[-1]]


def test_epsilon_is_estimated_honestly() -> None:
    member, scores = _scores()
    report = build_membership_report(scores, member, description="x", alpha=0.05)
    summary = report.epsilon
    assert summary is not None and summary.attack == "strong"
    assert summary.alpha_per_attack == pytest.approx(0.025)  # Bonferroni over 2 attacks
    assert "Bonferroni over 2 attacks" in summary.note
    strong = report.attack("strong").epsilon
    weak = report.attack("weak").epsilon
    assert strong is not None and weak is not None
    assert summary.lower_bound == strong.lower_bound > weak.lower_bound
    # One split for every attack, the figures of estimate_from_scores at α/2.
    assert strong.selection_size == weak.selection_size
    assert strong.evaluation_size + strong.selection_size == member.size
    # All challenges against one model: pooled guesses, so every bound is heuristic.
    assert strong.rigor == weak.rigor == summary.rigor == "heuristic"
    assert "guesses per trained model" in strong.reason
    assert strong.posterior is not None and strong.posterior.rigor == "heuristic"
    low, high = strong.posterior.interval
    assert high is not None and low <= strong.posterior.median <= high
    assert strong.posterior.grid is not None and len(strong.posterior.grid.epsilon) == 200


def test_one_challenge_per_model_is_rigorous_and_matches_the_estimator() -> None:
    member, scores = _scores()
    report = build_membership_report(
        {"strong": scores["strong"]}, member, description="x", guesses_per_model=1
    )
    result = report.attack("strong").epsilon
    assert result is not None and result.rigor == "rigorous"
    seed = int(simulation_generator(0).integers(0, 2**63))
    direct = estimate_from_scores(
        scores["strong"], member, delta=1e-5, alpha=0.05, threat_model="black-box",
        rng=simulation_generator(np.random.SeedSequence(seed)),
    )  # fmt: skip
    assert result.lower_bound == direct.lower_bound
    assert result.counts.model_dump() == {
        k: direct.clopper_pearson.evidence[k] for k in ("tp", "fn", "tn", "fp")
    }


def test_reports_are_reproducible_and_gated() -> None:
    member, scores = _scores()
    first = build_membership_report(scores, member, description="x", gates=[gate("auc", 0.8)])
    second = build_membership_report(scores, member, description="x", gates=[gate("auc", 0.8)])
    assert first.attacks == second.attacks and first.epsilon == second.epsilon
    assert first.verdict.status == "fail" and first.verdict.gates[0].attack == "strong"
    with pytest.raises(ParameterError, match=r"TPR at FPR 0\.05"):
        build_membership_report(
            scores, member, description="x", gates=[gate("tpr_at_fpr", 0.5, fpr_limit=0.05)]
        )


def test_fitted_attacks_bring_their_names_and_parameters() -> None:
    data = planted(n=600, n_reference=8)
    attacks = {
        "loss": LossAttack().fit(data.signals, data.keep),
        "lira-fixed": LiRA(fixed_variance=True).fit(data.signals, data.keep),
    }
    report = build_membership_report(
        attacks, data.keep[0], description="planted signals", estimate_epsilon=False
    )
    assert [(a.name, a.attack) for a in report.attacks] == [
        ("loss", "loss"),
        ("lira-fixed", "lira"),
    ]
    assert report.attack("lira-fixed").params["fixed_variance"] is True
    assert report.epsilon is None
    assert report.timings["total"] >= report.timings["report"] > 0


def test_bad_inputs_are_clear_errors() -> None:
    member, scores = _scores()
    with pytest.raises(DataError, match="has \\(10,\\) scores; membership has 2000"):
        build_membership_report({"x": np.zeros(10)}, member, description="x")
    with pytest.raises(ParameterError, match="attacks is empty"):
        build_membership_report({}, member, description="x")
    with pytest.raises(DataError, match="booleans or 0/1"):
        build_membership_report(scores, member * 2.0, description="x")
