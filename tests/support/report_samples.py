"""A small audit report built from plain data (no capability), for kernel tests."""

from __future__ import annotations

from scipy import stats

from privaudit.reports import (
    Artifact,
    AttackMetrics,
    AttackResult,
    AuditReport,
    Counts,
    EpsilonResult,
    EpsilonSummary,
    Histogram,
    Inputs,
    PosteriorGrid,
    PosteriorSummary,
    RocPoints,
    ThreatModelInfo,
    TprAtFpr,
    evaluate_gates,
    gate,
)

HOSTILE = '<script>alert("x")</script>'
N = 400  # members and non-members alike


def _interval(successes: int, trials: int) -> tuple[float, float]:
    low = 0.0 if successes == 0 else float(stats.beta.ppf(0.025, successes, trials - successes + 1))
    high = (
        1.0
        if successes == trials
        else float(stats.beta.isf(0.025, successes + 1, trials - successes))
    )
    return (low, high)


def _tprs(true_positives: tuple[int, int, int, int]) -> list[TprAtFpr]:
    limits_and_fp = ((0.1, 40), (0.01, 4), (0.001, 0), (0.0, 0))
    return [
        TprAtFpr(
            fpr_limit=limit,
            tpr=tp / N,
            fpr=fp / N,
            true_positives=tp,
            false_positives=fp,
            tpr_interval=_interval(tp, N),
            resolved=limit * N >= 1,
        )
        for (limit, fp), tp in zip(limits_and_fp, true_positives, strict=True)
    ]


def _attack(
    name: str,
    *,
    auc: float,
    advantage: float,
    tps: tuple[int, int, int, int],
    epsilon: float | None,
) -> AttackResult:
    estimate = None
    if epsilon is not None:
        estimate = EpsilonResult(
            delta=1e-5,
            alpha=0.025,
            threat_model="black-box",
            threshold_selection="split",
            threshold=0.5,
            thresholds_tried=200,
            selection_size=400,
            evaluation_size=400,
            counts=Counts(tp=150, fn=50, tn=190, fp=10),
            lower_bound=epsilon,
            rigor="heuristic",
            reason="the counts pool 800 guesses per trained model",
            posterior=PosteriorSummary(
                lower_bound=epsilon + 0.2,
                median=epsilon + 0.8,
                interval=(epsilon + 0.1, epsilon + 1.6),
                grid=PosteriorGrid(
                    epsilon=[0.0, epsilon, epsilon + 0.8, epsilon + 2.0],
                    density=[0.0, 0.2, 0.9, 0.0],
                    cdf=[0.0, 0.05, 0.5, 1.0],
                ),
            ),
        )
    return AttackResult(
        name=name,
        attack="scores",
        params={"online": True, "note": name},
        metrics=AttackMetrics(
            auc=auc,
            balanced_accuracy=0.5 + advantage / 2,
            advantage=advantage,
            n_members=N,
            n_nonmembers=N,
            tpr_at_fpr=_tprs(tps),
        ),
        epsilon=estimate,
        roc=RocPoints(
            fpr=[0.0, 0.0, 0.1, 1.0], tpr=[0.0, tps[2] / N, tps[0] / N, 1.0], full_points=801
        ),
        histogram=Histogram(
            edges=[0.0, 0.5, 1.0], members=[100, 300], nonmembers=[300, 100], clipped=False
        ),
        seconds=0.25,
    )


def hand_built_report(
    *, name: str = "strong", description: str = "toy scores", epsilon: bool = True
) -> AuditReport:
    """Two attacks: 'weak' (AUC 0.6) and ``name`` (AUC 0.9); one failing gate (AUC 0.8)."""
    attacks = [
        _attack(
            "weak", auc=0.6, advantage=0.2, tps=(120, 40, 8, 8), epsilon=1.0 if epsilon else None
        ),
        _attack(
            name, auc=0.9, advantage=0.7, tps=(320, 240, 200, 200), epsilon=2.5 if epsilon else None
        ),
    ]
    summary = None
    if epsilon:
        summary = EpsilonSummary(
            attack=name,
            lower_bound=2.5,
            rigor="heuristic",
            delta=1e-5,
            alpha=0.05,
            alpha_per_attack=0.025,
            threshold_selection="split",
            posterior_median=3.3,
            note="Bonferroni over 2 attacks.",
        )
    return AuditReport(
        title="Toy audit",
        threat_model=ThreatModelInfo(name="black-box", description="scores only"),
        inputs=Inputs(
            description=description,
            artifacts=[Artifact.from_bytes("scores.npy", b"\x00" * 16, description=description)],
            n_members=N,
            n_nonmembers=N,
        ),
        config={"seed": 0, "attacks": ["weak", name], "nested": {"delta": 1e-5}},
        attacks=attacks,
        epsilon=summary,
        verdict=evaluate_gates(attacks, [gate("auc", 0.8)]),
        timings={"train": 1.5, "total": 2.0},
        versions={"privaudit": "0.1.0", "numpy": "2.0"},
        notes=[f"note about {description}"],
    )
