"""MaxSum and SumSelect under continual observation: stated bounds, accounting, inputs.

Statistical tests use fixed seeds; each states α, the probability that it fails
although the code is exactly right.

The error tests run ``RUNS`` independent repetitions of a mechanism on one stream and
count the repetitions whose error over all steps exceeds ``error_bound(BETA)`` (or
that exhausted the refresh budget, which can only happen on the same failure event).
Each repetition fails with probability at most ``BETA``, so the count is dominated by
Binomial(RUNS, BETA); the test allows up to ``ALLOWED`` failures, exceeded with
probability ``α = P[Bin(RUNS, BETA) > ALLOWED] < 1e-6`` per test.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

import privaudit.mechanisms.continual as continual
from privaudit import simulation_generator
from privaudit.errors import BudgetExhaustedError, DataError, LimitExceededError, ParameterError
from privaudit.guarantees import Notion
from privaudit.mechanisms.continual import (
    MaxSum,
    SumSelect,
    discrete_gaussian_variance,
    discrete_laplace_variance,
    rho_for_approximate_dp,
)
from privaudit.mechanisms.continual._column_tree import (
    ColumnTreeNoise,
    CountersPlan,
    counters_plans,
)
from privaudit.mechanisms.continual._noise import NoiseSpec
from privaudit.mechanisms.continual._sparse_vector import (
    SparseVectorPlan,
    SparseVectorRun,
    sparse_vector_plans,
)
from privaudit.mechanisms.continual._tails import (
    laplace_max_bound,
    popcount_histogram,
    tree_noise_bound,
)
from privaudit.registry import mechanisms

Mechanism = MaxSum | SumSelect

BETA = 0.05
RUNS = 10
ALLOWED = 6  # P[Binomial(10, 0.05) > 6] = 8.4e-8: only a systematic excess fails


def test_the_allowance_is_what_the_module_docstring_says() -> None:
    assert stats.binom.sf(ALLOWED, RUNS, BETA) < 1e-6


# --- streams: random and adversarially shaped -----------------------------------------


def random_stream(T: int, d: int, rng: np.random.Generator) -> np.ndarray:  # noqa: N803
    return (rng.random((T, d)) < 0.5).astype(np.int64)


def sparse_random_stream(T: int, d: int, rng: np.random.Generator) -> np.ndarray:  # noqa: N803
    return (rng.random((T, d)) < 0.05).astype(np.int64)


def last_column(T: int, d: int, rng: np.random.Generator) -> np.ndarray:  # noqa: N803
    """All mass on one column, the one SumSelect's initial index (0) is farthest from."""
    stream = np.zeros((T, d), dtype=np.int64)
    stream[:, d - 1] = 1
    return stream


def alternating_leaders(T: int, d: int, rng: np.random.Generator) -> np.ndarray:  # noqa: N803
    """Two columns race: each leads in turn, for blocks of T/8 steps."""
    stream = np.zeros((T, d), dtype=np.int64)
    block = max(1, T // 8)
    leader = np.where((np.arange(T) // block) % 2 == 0, 0, d - 1)
    stream[np.arange(T), leader] = 1
    stream[np.arange(T) % 2 == 0, d // 2] = 1  # a third column, half as fast
    return stream


def late_overtake(T: int, d: int, rng: np.random.Generator) -> np.ndarray:  # noqa: N803
    """Column 0 leads the first half; column d-1 starts at T/4 and overtakes at 3T/4."""
    stream = np.zeros((T, d), dtype=np.int64)
    stream[: T // 2, 0] = 1
    stream[T // 4 :, d - 1] = 1
    return stream


def near_ties(T: int, d: int, rng: np.random.Generator) -> np.ndarray:  # noqa: N803
    """Round robin: every column within one of the others at every step."""
    stream = np.zeros((T, d), dtype=np.int64)
    stream[np.arange(T), np.arange(T) % d] = 1
    return stream


def leader_stalls(T: int, d: int, rng: np.random.Generator) -> np.ndarray:  # noqa: N803
    """Every column counts, except in block b (of T/8 steps) column b - 1 stalls: the
    column a selection would hold falls behind the others again and again."""
    stream = np.ones((T, d), dtype=np.int64)
    block = max(1, T // 8)
    steps = np.arange(T)
    stalled = steps >= block
    stream[steps[stalled], (steps[stalled] // block - 1) % d] = 0
    return stream


def all_tied(T: int, d: int, rng: np.random.Generator) -> np.ndarray:  # noqa: N803
    """Every column counts at every other step: all ``d`` tied for the lead throughout,
    so the max of ``d`` noisy counters is biased up the most, with ``M(t) = ⌈t/2⌉``
    mid-range, where clipping releases to ``[0, t]`` does not hide that bias."""
    stream = np.zeros((T, d), dtype=np.int64)
    stream[::2] = 1
    return stream


def rotating_bursts(T: int, d: int, rng: np.random.Generator) -> np.ndarray:  # noqa: N803
    """Blocks of ``⌈T^{1/3}⌉`` steps (the order of the sparse vector's threshold): in
    every other block all columns count but one, the next in turn, and the blocks
    between are empty. The max moves in bursts with pauses (the query climbs toward the
    threshold, then waits), the lead is shared by ties and passes on, and the column
    a selection holds falls a burst behind in its turn."""
    stream = np.zeros((T, d), dtype=np.int64)
    block = math.ceil(T ** (1 / 3))
    steps = np.arange(T)
    blocks = steps // block
    growing = steps[blocks % 2 == 0]
    stream[growing] = 1
    stream[growing, (blocks[growing] // 2) % d] = 0
    return stream


def grow_then_stall(T: int, d: int, rng: np.random.Generator) -> np.ndarray:  # noqa: N803
    """The max grows for the first T/8 steps, then no record has a 1: a release above
    the truth is never caught up with."""
    stream = np.zeros((T, d), dtype=np.int64)
    stream[: T // 8, d // 2] = 1
    return stream


STREAMS: list[Callable[[int, int, np.random.Generator], np.ndarray]] = [
    random_stream,
    sparse_random_stream,
    last_column,
    alternating_leaders,
    late_overtake,
    near_ties,
    leader_stalls,
    all_tied,
    rotating_bursts,
    grow_then_stall,
]


def max_error(mech: Mechanism, stream: np.ndarray) -> float:
    """The error over all steps: |release - M(t)| or M(t) - S_{j_t}(t)."""
    sums = np.cumsum(stream, axis=0)
    maxima = sums.max(axis=1)
    out = mech.push_many(stream)
    if isinstance(mech, MaxSum):
        return float(np.abs(out - maxima).max())
    return float((maxima - sums[np.arange(len(stream)), out]).max())


# (strategy, horizon, d, epsilon, delta): small enough for seconds, large enough that
# the sparse-vector schedule refreshes several times and every stated bound is below
# T (the cap that holds with probability 1, so a bound at T would test nothing).
# Counters run with discrete Laplace (delta = 0) and discrete Gaussian noise; the
# sparse-vector schedule composes in pure DP here, and in zCDP only from about 50
# rounds on (the slow configurations).
CONFIGS = [
    ("counters", 256, 4, 8.0, 0.0),
    ("counters", 256, 4, 8.0, 1e-6),
    ("sparse-vector", 1024, 8, 8.0, 0.0),
]
SLOW_CONFIGS = [
    ("sparse-vector", 8192, 8, 32.0, 1e-6),  # zCDP composition, K = 53
    ("sparse-vector", 2**16, 256, 1.0, 1e-6),
    ("counters", 2**12, 16, 1.0, 1e-6),
    ("counters", 2**12, 16, 4.0, 0.0),
]


def check_error_within_bound(
    cls: type[Mechanism],
    config: tuple[str, int, int, float, float],
    stream_of: Callable[[int, int, np.random.Generator], np.ndarray],
    seed: int,
) -> None:
    strategy, horizon, d, epsilon, delta = config
    rng = simulation_generator(seed)
    stream = stream_of(horizon, d, rng)
    failures = 0
    worst = 0.0
    for _ in range(RUNS):
        mech = cls(
            d=d,
            horizon=horizon,
            epsilon=epsilon,
            delta=delta,
            strategy=strategy,  # type: ignore[arg-type]
            on_exhausted="hold",
            rng=rng,
        )
        error = max_error(mech, stream)
        bound = mech.error_bound(BETA)
        assert bound < horizon  # a noise bound, not the trivial cap
        worst = max(worst, error / bound)
        failures += error > bound or mech.budget_exhausted
        if mech.max_refreshes is not None:
            assert mech.refreshes <= mech.max_refreshes
    assert failures <= ALLOWED, (failures, worst)


@pytest.mark.parametrize("stream_of", STREAMS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c[0]}-T{c[1]}-delta{c[4]:g}")
@pytest.mark.parametrize("cls", [MaxSum, SumSelect])
def test_error_over_all_steps_is_within_the_stated_bound(
    cls: type[Mechanism],
    config: tuple[str, int, int, float, float],
    stream_of: Callable[[int, int, np.random.Generator], np.ndarray],
) -> None:
    seed = 1000 * [MaxSum, SumSelect].index(cls) + 10 * CONFIGS.index(config)
    check_error_within_bound(cls, config, stream_of, seed + STREAMS.index(stream_of))


@pytest.mark.slow
@pytest.mark.parametrize("stream_of", STREAMS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("config", SLOW_CONFIGS, ids=lambda c: f"{c[0]}-T{c[1]}-d{c[2]}")
@pytest.mark.parametrize("cls", [MaxSum, SumSelect])
def test_error_within_the_stated_bound_at_larger_sizes(
    cls: type[Mechanism],
    config: tuple[str, int, int, float, float],
    stream_of: Callable[[int, int, np.random.Generator], np.ndarray],
) -> None:
    seed = 5000 + 1000 * [MaxSum, SumSelect].index(cls) + 10 * SLOW_CONFIGS.index(config)
    check_error_within_bound(cls, config, stream_of, seed + STREAMS.index(stream_of))


def test_the_configurations_exercise_what_they_are_meant_to() -> None:
    rng = simulation_generator(3)
    mech = MaxSum(d=8, horizon=8192, epsilon=32.0, delta=1e-6, strategy="sparse-vector", rng=rng)
    assert mech.guarantee.notion is Notion.ZCDP
    mech.push_many(last_column(8192, 8, rng))
    assert mech.refreshes >= 5
    assert MaxSum(d=8, horizon=2048, epsilon=8.0, strategy="sparse-vector").max_refreshes >= 5
    gaussian = MaxSum(d=4, horizon=128, epsilon=2.0, delta=1e-6, strategy="counters")
    assert gaussian.guarantee.notion is Notion.ZCDP and "node_gaussian" in gaussian.noise_scales
    laplace = MaxSum(d=4, horizon=128, epsilon=2.0, strategy="counters")
    assert laplace.guarantee.notion is Notion.PURE and "node_laplace" in laplace.noise_scales


Adversary = Callable[[np.ndarray, float, Mechanism], np.ndarray]


def check_adaptive_adversary(cls: type[Mechanism], d: int, seed: int, adversary: Adversary) -> None:
    """``RUNS`` runs of the sparse-vector schedule (T = 1024, ε = 8) against an
    adversary that picks each record from the true sums and the last release; as in
    :func:`check_error_within_bound`, at most ``ALLOWED`` runs may exceed the bound.
    The guarantee and the bound hold for adaptive streams."""
    T = 1024  # noqa: N806
    rng = simulation_generator(seed)
    failures, refreshes = 0, []
    for _ in range(RUNS):
        mech = cls(d=d, horizon=T, epsilon=8.0, strategy="sparse-vector", rng=rng)
        sums = np.zeros(d, dtype=np.int64)
        release: float = 0  # MaxSum holds 0, SumSelect the index 0, before any record
        worst = 0.0
        for _ in range(T):
            record = adversary(sums, release, mech)
            sums += record
            release = mech.push(record)
            if isinstance(mech, MaxSum):
                worst = max(worst, abs(release - sums.max()))
            else:
                worst = max(worst, float(sums.max() - sums[int(release)]))
        bound = mech.error_bound(BETA)
        assert bound < T  # a noise bound, not the trivial cap
        failures += worst > bound or mech.budget_exhausted
        refreshes.append(mech.refreshes)
    assert failures <= ALLOWED
    assert min(refreshes) >= 2  # the adversary forces refreshes


def test_sum_select_within_the_bound_against_an_adaptive_adversary() -> None:
    # The adversary sees each release and stalls the column just selected (every other
    # column counts): the selected column falls behind at every step until a refresh
    # moves the index (about T/τ refreshes).
    def stall_the_selected(sums: np.ndarray, index: float, mech: Mechanism) -> np.ndarray:
        record = np.ones(sums.size, dtype=np.int64)
        record[int(index)] = 0
        return record

    check_adaptive_adversary(SumSelect, 6, 4, stall_the_selected)


def test_max_sum_within_the_bound_against_an_adaptive_adversary() -> None:
    # The adversary sees each release. While the release is no more than τ/2 below the
    # truth it makes the leader grow (the release falls behind, toward a refresh);
    # otherwise it makes the runner-up grow, which ties the leader and takes the lead
    # while the max stalls. Ties, leader changes and refreshes, chosen adaptively.
    def lead_or_chase(sums: np.ndarray, release: float, mech: Mechanism) -> np.ndarray:
        assert mech.threshold is not None
        order = np.argsort(-sums, kind="stable")
        record = np.zeros(sums.size, dtype=np.int64)
        record[order[0] if release >= sums.max() - mech.threshold / 2 else order[1]] = 1
        return record

    check_adaptive_adversary(MaxSum, 4, 15, lead_or_chase)


# --- the rates: the parameter choices give the paper's shape --------------------------


def test_sparse_vector_bound_grows_as_t_to_the_third_in_zcdp() -> None:
    # [JRSS23]'s Õ(T^{1/3}) term: with δ > 0 the rounds compose in zCDP, the schedule
    # takes K ≈ T^{2/3} refreshes and the bound grows as T^{1/3} up to logarithms:
    # ×2 per 8× of T, plus the log factor. A schedule sized as for pure DP (K ≈ √T)
    # would grow as √T, ×2.83. Deterministic: no noise is drawn.
    for cls in (MaxSum, SumSelect):
        short, long = (
            cls(d=16, horizon=T, epsilon=1.0, delta=1e-6, strategy="sparse-vector")
            for T in (2**19, 2**22)
        )
        assert short.guarantee.notion is long.guarantee.notion is Notion.ZCDP
        assert long.error_bound(BETA) / short.error_bound(BETA) < 2.4
        assert short.max_refreshes is not None and long.max_refreshes is not None
        assert long.max_refreshes / short.max_refreshes > 3.2  # 8^{2/3} = 4


def test_sparse_vector_bound_grows_as_the_square_root_of_t_in_pure_dp() -> None:
    # δ = 0: K + 1 rounds compose linearly, so K ≈ √T and the bound is Õ(√T).
    for cls in (MaxSum, SumSelect):
        short, long = (
            cls(d=16, horizon=T, epsilon=1.0, strategy="sparse-vector") for T in (2**19, 2**22)
        )
        assert 2.6 < long.error_bound(BETA) / short.error_bound(BETA) < 3.2  # √8 = 2.83
        assert short.max_refreshes is not None and long.max_refreshes is not None
        assert 2.3 < long.max_refreshes / short.max_refreshes < 3.1


def test_sparse_vector_bound_does_not_grow_with_d() -> None:
    # MaxSum's schedule never looks at d; SumSelect's only through the union bound
    # over the K·d selection noises (log d).
    for delta in (0.0, 1e-6):
        few, many = (
            MaxSum(d=d, horizon=2**16, epsilon=1.0, delta=delta, strategy="sparse-vector")
            for d in (1, 2**16)
        )
        assert few.error_bound(BETA) == many.error_bound(BETA)
        few_s, many_s = (
            SumSelect(d=d, horizon=2**16, epsilon=1.0, delta=delta, strategy="sparse-vector")
            for d in (1, 2**16)
        )
        assert 1 < many_s.error_bound(BETA) / few_s.error_bound(BETA) < 1.25


def test_counters_bound_grows_as_root_d_in_zcdp_and_d_in_pure_dp() -> None:
    # The d-column tree: √d·log^{1.5}T (zCDP: the columns' ρ add up) or d·log^{1.5}T
    # (pure: the ε add up), times √log(dT/β) from the union bound. 16× the columns:
    # ×4 or ×16, and a little more from that logarithm. 64× the horizon: far less than
    # the ×4 of T^{1/3}.
    for delta, low, high in ((1e-6, 4.0, 5.0), (0.0, 16.0, 20.0)):
        base, wide, long = (
            MaxSum(d=d, horizon=T, epsilon=8.0, delta=delta, strategy="counters")
            for d, T in ((16, 2**16), (256, 2**16), (16, 2**22))
        )
        expected = Notion.ZCDP if delta else Notion.PURE
        assert base.guarantee.notion is wide.guarantee.notion is expected
        assert wide.error_bound(BETA) < 2**16  # not the cap
        assert low < wide.error_bound(BETA) / base.error_bound(BETA) < high
        assert long.error_bound(BETA) / base.error_bound(BETA) < 2.0


# --- the cap at T: the last term of the paper's min ----------------------------------


@pytest.mark.parametrize("cls", [MaxSum, SumSelect])
@pytest.mark.parametrize("strategy", ["counters", "sparse-vector"])
def test_no_error_exceeds_the_horizon(cls: type[Mechanism], strategy: str) -> None:
    # At ε = 0.05 every noise bound is far above T = 64, so the stated bound is T,
    # which holds with probability 1: MaxSum's releases are clipped to [0, t] (where
    # M(t) lies), and a SumSelect gap is at most M(t) <= t. Without the clip the
    # counters' releases (node noise of scale d·L/ε = 420) would leave [0, t] at
    # nearly every step.
    T, d = 64, 3  # noqa: N806
    rng = simulation_generator(16)
    stream = alternating_leaders(T, d, rng)
    mech = cls(d=d, horizon=T, epsilon=0.05, strategy=strategy, rng=rng)  # type: ignore[arg-type]
    assert mech.error_bound(BETA) == mech.strategy_bounds[strategy] == T
    if isinstance(mech, MaxSum):
        out = mech.push_many(stream)
        assert ((out >= 0) & (out <= np.arange(1, T + 1))).all()
        assert np.abs(out - np.cumsum(stream, axis=0).max(axis=1)).max() <= T
    else:
        assert max_error(mech, stream) <= T


def test_below_the_design_beta_only_the_horizon_is_stated() -> None:
    # The threshold and K were sized for beta = 0.05; at 1e-300 the noise bounds leave
    # no T/K of slack in τ, so the refresh budget may run out: only T is stated.
    mech = MaxSum(d=4, horizon=2**16, epsilon=1.0, strategy="sparse-vector")
    assert mech.error_bound(0.05) < 2**16
    assert mech.error_bound(1e-300) == 2**16


# --- the noise has the scale the accounting claims ------------------------------------

LEVEL = 1e-6  # α of each test below, split over its comparisons (Bonferroni)


def node_noises(noise: np.ndarray) -> np.ndarray:
    """Tree noise ``N_1 .. N_T`` (rows) → node noises: ``N_t - N_{t - lowbit(t)}`` is the
    noise of the node that completes at ``t`` (``N_0 = 0``), one per step and column."""
    steps = np.arange(1, noise.shape[0] + 1)
    padded = np.concatenate([np.zeros((1, *noise.shape[1:])), noise])
    return padded[steps] - padded[steps - (steps & -steps)]  # type: ignore[no-any-return]


def tail_probability(spec: NoiseSpec, k: int) -> float:
    """``P[|X| >= k]`` (``k >= 1``) of the discrete law, exactly."""
    if spec.laplace_scale is not None:
        r = math.exp(-1 / spec.laplace_scale)
        return 2 * r**k / (1 + r)
    assert spec.gaussian_sigma2 is not None
    sigma2 = float(spec.gaussian_sigma2)
    x = np.arange(0, math.ceil(40 * math.sqrt(sigma2)) + 2)
    weights = np.exp(-(x**2) / (2 * sigma2))
    total = weights[0] + 2 * weights[1:].sum()
    return float(2 * weights[k:].sum() / total)


def check_iid_law(samples: np.ndarray, spec: NoiseSpec) -> None:
    """Integer samples are i.i.d. draws of ``spec``: second moment (CLT), the tail at
    the median of |X| (binomial), and no lag-1 correlation; α = LEVEL in all."""
    x = samples.ravel().astype(float)
    n = x.size
    z = stats.norm.isf(LEVEL / 6)
    if spec.laplace_scale is not None:
        var = discrete_laplace_variance(spec.laplace_scale)
    else:
        assert spec.gaussian_sigma2 is not None
        var = discrete_gaussian_variance(spec.gaussian_sigma2)
    assert abs(np.mean(x**2) - var) < z * np.std(x**2) / math.sqrt(n), np.mean(x**2) / var
    k = max(1, int(np.median(np.abs(x))))
    p = tail_probability(spec, k)
    hits = int((np.abs(x) >= k).sum())
    assert stats.binom.cdf(hits, n, p) > LEVEL / 6 and stats.binom.sf(hits - 1, n, p) > LEVEL / 6
    assert abs(np.corrcoef(x[:-1], x[1:])[0, 1]) < z / math.sqrt(n)


@pytest.mark.parametrize(("delta", "kind"), [(0.0, "laplace"), (1e-3, "gaussian")])
def test_max_sum_releases_carry_tree_noise_of_the_planned_law(delta: float, kind: str) -> None:
    # d = 1: the release is S(t) + N_t exactly, N_t the sum of the nodes of t's binary
    # expansion; the node noises come back out as differences and must be i.i.d. draws
    # of the node law the guarantee was computed for.
    T = 2**12  # noqa: N806
    rng = simulation_generator(5)
    stream = (rng.random((T, 1)) < 0.5).astype(np.int64)
    mech = MaxSum(d=1, horizon=T, epsilon=1.5, delta=delta, strategy="counters", rng=rng)
    plan = mech._plan
    assert isinstance(plan, CountersPlan) and plan.kind == kind
    errors = (mech.push_many(stream) - np.cumsum(stream[:, 0])) * 2.0**plan.grid_bits
    assert (errors == np.rint(errors)).all()  # integers in units: no float rounding
    check_iid_law(node_noises(errors), plan.node_noise)


@pytest.mark.parametrize("delta", [0.0, 1e-6])
def test_every_column_gets_tree_noise_of_the_planned_law(delta: float) -> None:
    # d = 3 columns, the scale d·L/ε (or σ² = d·L/(2ρ)) per node, and the noise drawn in
    # batches of several sizes (the per-height bookkeeping crosses batch boundaries).
    d, T, epsilon = 3, 2**11, 2.0  # noqa: N806
    plans = counters_plans(
        horizon=T,
        columns=d,
        epsilon=epsilon,
        rho=rho_for_approximate_dp(epsilon, delta) if delta else None,
        neighbouring="test",
    )
    plan = plans[-1]
    L = T.bit_length()  # noqa: N806
    if plan.kind == "laplace":
        assert plan.node_noise.laplace_scale == math.ceil(
            Fraction(d * L) / Fraction(epsilon) * 2**plan.grid_bits
        )
    tree = ColumnTreeNoise(plan, simulation_generator(6))
    sizes = [1, 7, 100, 1, T - 109]
    parts, start = [], 0
    for size in sizes:
        parts.append(tree.next(start, size))
        start += size
    check_iid_law(node_noises(np.concatenate(parts)), plan.node_noise)


def test_sparse_vector_refreshes_have_the_refresh_noise() -> None:
    # With the threshold forced far below every query, every step refreshes, and each
    # release is M(t) + ξ_t clipped to [0, t]: the ξ must be i.i.d. draws of the
    # planned refresh law. M(t) = ⌈t/2⌉ keeps the truth mid-range; from t = T/4 on the
    # clip would need |ξ| >= 512, over 60 scales (probability < 1e-20 in this test).
    T = 4096  # noqa: N806
    mech = MaxSum(
        d=2, horizon=T, epsilon=8.0, strategy="sparse-vector", rng=simulation_generator(7)
    )
    plan = mech._plan
    assert isinstance(plan, SparseVectorPlan)
    assert mech.noise_scales["refresh"] * 60 < T // 8
    forced = dataclasses.replace(plan, threshold_units=-(1 << 50), max_refreshes=T)
    mech._schedule = SparseVectorRun(forced, simulation_generator(8))
    stream = np.zeros((T, 2), dtype=np.int64)
    stream[::2, 0] = 1
    out = mech.push_many(stream)
    assert mech.refreshes == T
    steps = np.arange(1, T + 1)
    assert ((out >= 0) & (out <= steps)).all()
    xi = (out - (steps + 1) // 2)[T // 4 :] * 2.0**plan.grid_bits
    check_iid_law(xi, NoiseSpec(laplace_scale=plan.refresh_scale))


# --- accounting: the guarantee is the stated formula of the actual scales -------------


def test_counters_guarantee_is_the_column_composition() -> None:
    epsilon, delta, d, T = 1.0, 1e-6, 5, 1000  # noqa: N806
    L = T.bit_length()  # noqa: N806
    laplace, gaussian = counters_plans(
        horizon=T,
        columns=d,
        epsilon=epsilon,
        rho=rho_for_approximate_dp(epsilon, delta),
        neighbouring="test",
    )
    s = laplace.node_noise.laplace_scale
    assert s is not None
    realised = Fraction(d * L * 2**laplace.grid_bits, s)
    assert laplace.guarantee.epsilon == float(realised)
    assert 1 - 2**-15 < realised <= epsilon
    sigma2 = gaussian.node_noise.gaussian_sigma2
    assert sigma2 is not None
    rho = rho_for_approximate_dp(epsilon, delta)
    assert gaussian.guarantee.rho == float(Fraction(d * L) / (2 * sigma2))
    assert 1 - 2**-14 < gaussian.guarantee.rho / rho <= 1
    assert gaussian.guarantee.to_approximate(delta).epsilon <= epsilon * (1 + 1e-12)


@pytest.mark.parametrize("task", ["max", "select"])
@pytest.mark.parametrize("delta", [0.0, 1e-6])
def test_sparse_vector_guarantee_is_the_round_composition(task: str, delta: float) -> None:
    epsilon, T, d = 4.0, 50_000, 30  # noqa: N806
    rho = rho_for_approximate_dp(epsilon, delta) if delta else None
    for plan in sparse_vector_plans(
        task=task,  # type: ignore[arg-type]
        horizon=T,
        columns=d,
        epsilon=epsilon,
        rho=rho,
        beta=BETA,
        neighbouring="test",
    ):
        k, g = plan.max_refreshes, plan.grid_bits
        sensitivity = 1 if task == "max" else 2
        # [LSL17]: threshold Lap(Δ/ε_a), queries Lap(2Δ/ε_b); refresh Lap(c/ε_c).
        eps_a = Fraction(sensitivity * 2**g, plan.threshold_scale)
        eps_b = Fraction(2 * sensitivity * 2**g, plan.query_scale)
        eps_c = Fraction(sensitivity * 2**g, plan.refresh_scale)  # c = Δ here
        if plan.composition == "pure":
            expected = (k + 1) * (eps_a + eps_b) + k * eps_c
            assert plan.guarantee.epsilon == float(expected) and expected <= epsilon
            assert expected > epsilon * (1 - 1e-3)  # the budget is used, not wasted
        else:
            assert rho is not None
            expected = (k + 1) * (eps_a + eps_b) ** 2 / 2 + k * eps_c**2 / 2
            assert plan.guarantee.rho == float(expected) and expected <= rho
            assert expected > rho * (1 - 1e-3)
        # τ = ⌈T/K⌉ + A_ν + A_η + c·A_c at the design β (all in units of 2^-g)
        a_nu, a_eta, a_c = plan.noise_bounds_units(BETA)
        c = 1 if task == "max" else 2
        assert plan.threshold_units == -(-(T << g) // k) + a_nu + a_eta + c * a_c
        assert plan.error_bound_units(BETA) == plan.threshold_units + a_nu + a_eta


def test_zcdp_budget_converts_back_to_the_asked_epsilon_delta() -> None:
    for epsilon, delta in [(0.1, 1e-9), (1.0, 1e-6), (8.0, 1e-3)]:
        rho = rho_for_approximate_dp(epsilon, delta)
        assert rho + 2 * math.sqrt(rho * math.log(1 / delta)) == pytest.approx(epsilon, rel=1e-12)
    mech = SumSelect(d=2000, horizon=2**16, epsilon=1.0, delta=1e-6)
    assert mech.strategy == "sparse-vector"
    assert mech.guarantee.to_approximate(1e-6).epsilon <= 1.0 + 1e-12


def test_the_run_draws_from_the_planned_scales() -> None:
    mech = MaxSum(d=4, horizon=4096, epsilon=2.0, strategy="sparse-vector")
    plan, run = mech._plan, mech._schedule
    assert isinstance(plan, SparseVectorPlan) and run is not None
    assert run._threshold._spec.laplace_scale == plan.threshold_scale
    assert run._query._spec.laplace_scale == plan.query_scale
    assert run._refresh._spec.laplace_scale == plan.refresh_scale
    scales = mech.noise_scales
    assert scales["query"] == plan.query_scale * 2.0**-plan.grid_bits


# --- strategies, budget, randomness ---------------------------------------------------


def test_auto_keeps_the_strategy_with_the_smaller_bound() -> None:
    small = MaxSum(d=1, horizon=4096, epsilon=1.0, delta=1e-6)
    assert small.strategy == "counters"
    large = MaxSum(d=4096, horizon=4096, epsilon=1.0, delta=1e-6)
    assert large.strategy == "sparse-vector"
    for mech in (small, large):
        assert set(mech.strategy_bounds) == {"counters", "sparse-vector"}
        assert mech.strategy_bounds[mech.strategy] == min(mech.strategy_bounds.values())
        assert mech.error_bound(mech.beta) == mech.strategy_bounds[mech.strategy]
    forced = MaxSum(d=1, horizon=4096, epsilon=1.0, strategy="sparse-vector")
    assert forced.strategy == "sparse-vector" and set(forced.strategy_bounds) == {"sparse-vector"}
    assert forced.max_refreshes is not None and forced.threshold is not None
    assert small.max_refreshes is None and small.threshold is None and small.refreshes == 0


def test_sum_select_counters_bound_is_twice_max_sum() -> None:
    kwargs = {"d": 6, "horizon": 2**15, "epsilon": 1.0, "strategy": "counters"}
    assert SumSelect(**kwargs).error_bound(0.1) == 2 * MaxSum(**kwargs).error_bound(0.1)  # type: ignore[arg-type]


def force_budget(mech: Mechanism, k: int) -> None:
    """Shrink the refresh budget of a built mechanism (to reach the exhausted state)."""
    assert mech._schedule is not None
    mech._schedule.plan = dataclasses.replace(mech._schedule.plan, max_refreshes=k)


def test_an_exhausted_budget_raises_and_refuses_more() -> None:
    T = 4096  # noqa: N806
    mech = MaxSum(
        d=2, horizon=T, epsilon=16.0, strategy="sparse-vector", rng=simulation_generator(8)
    )
    force_budget(mech, 1)
    ones = np.ones((T, 2), dtype=np.int64)
    with pytest.raises(BudgetExhaustedError, match="refresh budget") as caught:
        mech.push_many(ones)
    assert mech.budget_exhausted and mech.refreshes == 1
    releases = caught.value.details["releases"]
    assert len(releases) == mech.t - 1  # every step before the exhausting one
    with pytest.raises(BudgetExhaustedError, match="releases nothing more"):
        mech.push([1, 1])
    assert caught.value.code == "budget_exhausted"


def test_an_exhausted_budget_can_hold_the_last_value() -> None:
    T = 4096  # noqa: N806
    mech = SumSelect(
        d=3,
        horizon=T,
        epsilon=16.0,
        strategy="sparse-vector",
        on_exhausted="hold",
        rng=simulation_generator(9),
    )
    force_budget(mech, 0)
    stream = np.zeros((T, 3), dtype=np.int64)
    stream[:, 2] = 1
    out = mech.push_many(stream)
    assert mech.budget_exhausted and mech.refreshes == 0
    assert (out == 0).all() and mech.t == T  # held the initial index to the end


def test_one_at_a_time_equals_a_batch() -> None:
    rng = simulation_generator(10)
    stream = leader_stalls(3000, 5, rng)
    for cls in (MaxSum, SumSelect):
        a, b = (
            cls(
                d=5,
                horizon=3000,
                epsilon=32.0,
                strategy="sparse-vector",
                rng=simulation_generator(11),
            )
            for _ in range(2)
        )
        np.testing.assert_array_equal(a.push_many(stream), [b.push(row) for row in stream])
        assert a.refreshes == b.refreshes > 0


def test_noise_is_secure_by_default_and_seeded_only_when_asked() -> None:
    assert MaxSum(d=2, horizon=8, epsilon=1.0).secure
    assert SumSelect(d=2, horizon=8, epsilon=1.0, strategy="sparse-vector").secure
    assert not MaxSum(d=2, horizon=8, epsilon=1.0, rng=simulation_generator(0)).secure
    a = MaxSum(d=3, horizon=64, epsilon=1.0, rng=simulation_generator(12))
    b = MaxSum(d=3, horizon=64, epsilon=1.0, rng=simulation_generator(12))
    stream = np.eye(3, dtype=np.int64)[np.arange(64) % 3]
    np.testing.assert_array_equal(a.push_many(stream), b.push_many(stream))


def test_public_names_and_registry() -> None:
    assert {"MaxSum", "SumSelect", "rho_for_approximate_dp"} <= set(continual.__all__)
    assert mechanisms.get("continual.max_sum") is MaxSum
    assert mechanisms.get("continual.sum_select") is SumSelect
    assert "adaptive" in MaxSum(d=1, horizon=2, epsilon=1.0).guarantee.neighbouring


# --- the tail bounds ------------------------------------------------------------------


def test_popcount_histogram_counts_every_step() -> None:
    for horizon in (1, 2, 7, 8, 100, 1023, 1024, 5000):
        brute: dict[int, int] = {}
        for t in range(1, horizon + 1):
            brute[t.bit_count()] = brute.get(t.bit_count(), 0) + 1
        assert popcount_histogram(horizon) == dict(sorted(brute.items()))


def test_laplace_max_bound_is_the_exact_union_bound() -> None:
    for scale, draws, beta in [(1, 1, 0.5), (7, 100, 0.01), (65536, 10**6, 1e-3)]:
        a = laplace_max_bound(scale, draws, beta)
        r = math.exp(-1 / scale)
        union = [draws * 2 * r**k / (1 + r) for k in (a, a + 1)]  # draws · P[|X| >= k]
        assert union[1] <= beta < union[0]


def test_tree_bound_holds_in_simulation_and_is_not_vacuous() -> None:
    # 200 runs of 4 columns × 64 steps of tree noise: the bound at β = 0.1 fails in a
    # run with probability <= 0.1, so more than `allowed` failures has probability
    # < 1e-6. The bound is also below twice the median observed maximum: a union bound,
    # not a loose one.
    runs = 200
    allowed = int(stats.binom.isf(1e-6, runs, 0.1))
    assert stats.binom.sf(allowed, runs, 0.1) < 1e-6
    (plan,) = counters_plans(horizon=64, columns=4, epsilon=1.0, rho=None, neighbouring="t")
    bound = tree_noise_bound(
        horizon=64, columns=4, beta=0.1, laplace_scale=plan.node_noise.laplace_scale
    )
    rng = simulation_generator(13)
    maxima = np.array([np.abs(ColumnTreeNoise(plan, rng).next(0, 64)).max() for _ in range(runs)])
    assert (maxima > bound).sum() <= allowed
    assert bound < 2 * np.median(maxima)


# --- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [MaxSum, SumSelect])
def test_bad_parameters_are_refused(cls: type[Mechanism]) -> None:
    for d in (0, -1, 2.0, True, "3", 2**16 + 1):
        with pytest.raises(ParameterError, match="d "):
            cls(d=d, horizon=8, epsilon=1.0)  # type: ignore[arg-type]
    for horizon in (0, 1.5, 2**24 + 1, None):
        with pytest.raises(ParameterError, match="horizon"):
            cls(d=2, horizon=horizon, epsilon=1.0)  # type: ignore[arg-type]
    for epsilon in (0.0, -1.0, math.nan, math.inf, True, "1"):
        with pytest.raises(ParameterError, match="epsilon"):
            cls(d=2, horizon=8, epsilon=epsilon)  # type: ignore[arg-type]
    for delta in (-0.1, 1.0, math.nan, True, None):
        with pytest.raises(ParameterError, match="delta"):
            cls(d=2, horizon=8, epsilon=1.0, delta=delta)  # type: ignore[arg-type]
    for beta in (0.0, 1.0, -0.5):
        with pytest.raises(ParameterError, match="beta"):
            cls(d=2, horizon=8, epsilon=1.0, beta=beta)
    with pytest.raises(ParameterError, match="strategy"):
        cls(d=2, horizon=8, epsilon=1.0, strategy="tree")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="on_exhausted"):
        cls(d=2, horizon=8, epsilon=1.0, on_exhausted="ignore")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="rng"):
        cls(d=2, horizon=8, epsilon=1.0, rng=3)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="epsilon"):
        cls(d=2, horizon=8, epsilon=1e-30, strategy="counters")
    with pytest.raises(TypeError):
        cls(2, 8, 1.0)  # type: ignore[misc]
    mech = cls(d=2, horizon=8, epsilon=1.0, strategy="sparse-vector")
    with pytest.raises(ParameterError, match="beta"):
        mech.error_bound(1.5)


@pytest.mark.parametrize("cls", [MaxSum, SumSelect])
def test_bad_records_and_the_horizon_are_refused(cls: type[Mechanism]) -> None:
    mech = cls(d=3, horizon=4, epsilon=1.0, rng=simulation_generator(14))
    for bad in (
        [1, 0],
        [1, 0, 2],
        [0.5, 0, 1],
        [1, 0, math.nan],
        ["1", "0", "0"],
        None,
        1,
        [[1, 0, 0]],
        [1, [0], 0],
    ):
        with pytest.raises(DataError):
            mech.push(bad)  # type: ignore[arg-type]
    for bad_rows in ([1, 0, 0], [[1, 0, 0], [0, 1]], [[1, 0, -1]], np.ones((2, 4))):
        with pytest.raises(DataError):
            mech.push_many(bad_rows)
    assert mech.t == 0  # nothing consumed by refused calls
    assert mech.push_many([]).shape == (0,)
    mech.push([True, False, True])
    mech.push_many(np.array([[1.0, 0.0, 0.0], [0, 0, 0]]))
    mech.push((0, 1, 1))
    assert mech.t == 4
    with pytest.raises(LimitExceededError, match="horizon"):
        mech.push([0, 0, 0])
    with pytest.raises(LimitExceededError):
        cls(d=1, horizon=2, epsilon=1.0).push_many([[1], [1], [1]])
