"""Exporting MaxSum's and SumSelect's state and continuing from it: the same releases.

No statistics here: every check is an exact equality, with seeded generators. A run cut
at any point, its state sent through JSON and restored, must give exactly the releases
of a run that never stopped and was fed the same batches (the tree counters assign the
noise drawn for a batch height by height, so batching is part of the comparison).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privaudit import simulation_generator
from privaudit.errors import BudgetExhaustedError, LimitExceededError, ParameterError
from privaudit.mechanisms.continual import MaxSum, SelectionState, SumSelect

CLASSES = [MaxSum, SumSelect]
STRATEGIES = ["counters", "sparse-vector"]
D, HORIZON = 5, 240


def records(n: int, d: int = D) -> np.ndarray:
    """Columns 0 and 1 take turns (steps [0, 36) column 0, then 72 steps each), the
    others get 30% noise bits: ``M`` grows by one a step and the leading column changes
    every 72 steps, so the sparse vector refreshes for both tasks on both sides of 120."""
    rows = (simulation_generator(5).random((n, d)) < 0.3).astype(np.int64)
    rows[:, :2] = 0
    rows[np.arange(n), ((np.arange(n) + 36) // 72) % 2] = 1
    return rows


def through_json(state: SelectionState) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(state.to_dict(), allow_nan=False))
    return loaded


def make(cls: type[MaxSum | SumSelect], strategy: str, **kw: Any) -> MaxSum | SumSelect:
    params: dict[str, Any] = {"d": D, "horizon": HORIZON, "epsilon": 300.0, "strategy": strategy}
    return cls(**{**params, **kw})


@pytest.mark.parametrize("draw_ahead", [None, 1, 7])
@pytest.mark.parametrize("delta", [0.0, 1e-6])
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("cls", CLASSES)
def test_restoring_half_way_continues_exactly_as_never_stopping(
    cls: type[MaxSum | SumSelect], strategy: str, delta: float, draw_ahead: int | None
) -> None:
    rows = records(HORIZON)
    half = HORIZON // 2
    straight = make(cls, strategy, delta=delta, rng=simulation_generator(1), draw_ahead=draw_ahead)
    expected = np.concatenate([straight.push_many(rows[:half]), straight.push_many(rows[half:])])

    generator = simulation_generator(1)
    first = make(cls, strategy, delta=delta, rng=generator, draw_ahead=draw_ahead)
    before = first.push_many(rows[:half])
    # The restored one continues the same generator: with draw_ahead=None the first
    # block held all the noise (it is in the state); with 1 or 7 new draws follow.
    restored = cls.from_state(through_json(first.state()), rng=generator, draw_ahead=draw_ahead)
    after = restored.push_many(rows[half:])
    assert np.array_equal(np.concatenate([before, after]), expected)
    assert restored.state() == straight.state()
    assert restored.t == HORIZON and restored.refreshes == straight.refreshes
    if strategy == "sparse-vector":
        assert 0 < first.refreshes < straight.refreshes  # refreshes on both sides of the cut


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("cls", CLASSES)
def test_released_noise_comes_from_the_state_not_the_generator(
    cls: type[MaxSum | SumSelect], strategy: str
) -> None:
    # A state restored twice with two different generators: the noise already drawn
    # (tree nodes in use, the noisy threshold, the held answer) is the same in both,
    # so at the next step where no new noise is needed they agree.
    rows = records(HORIZON)
    first = make(cls, strategy, rng=simulation_generator(1), draw_ahead=1)
    first.push_many(rows[:127])
    state = through_json(first.state())
    one = cls.from_state(state, rng=simulation_generator(2), draw_ahead=1)
    two = cls.from_state(state, rng=simulation_generator(3), draw_ahead=1)
    assert one.state() == two.state()
    if strategy == "counters":
        # Step 128 draws one new node (height 7) and uses no other: the noise differs.
        assert one.push(rows[127]) != two.push(rows[127]) or cls is SumSelect
    else:
        nu = state["arrays"]["threshold_noise"]
        assert one.state().arrays["threshold_noise"] == (nu[0],)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("cls", CLASSES)
def test_the_state_is_bounded_and_holds_no_randomness(
    cls: type[MaxSum | SumSelect], strategy: str
) -> None:
    mech = make(cls, strategy, rng=simulation_generator(4), draw_ahead=1)
    mech.push_many(records(100))
    state = mech.state()
    text = json.dumps(state.to_dict())
    assert "seed" not in text and "generator" not in text
    assert sum(len(v) for v in state.pending.values()) == 0  # draw_ahead=1: nothing ahead
    numbers = len(state.sums) + sum(len(v) for v in state.arrays.values())
    assert numbers <= mech.state_size_bound()
    levels = HORIZON.bit_length()
    assert mech.state_size_bound() == (D * (1 + levels) if strategy == "counters" else D + 4)
    assert state.parameters["strategy"] == strategy and state.t == 100


@pytest.mark.parametrize("cls", CLASSES)
def test_a_restored_mechanism_refuses_records_past_the_horizon(
    cls: type[MaxSum | SumSelect],
) -> None:
    mech = make(cls, "counters", horizon=8, rng=simulation_generator(1))
    mech.push_many(records(8)[:6])
    restored = cls.from_state(through_json(mech.state()), rng=simulation_generator(1))
    with pytest.raises(LimitExceededError, match="horizon is 8 records and 6 were pushed"):
        restored.push_many(records(8)[:3])
    assert restored.t == 6


def test_an_exhausted_schedule_stays_exhausted_after_a_restore() -> None:
    mech = MaxSum(d=3, horizon=64, epsilon=30.0, strategy="sparse-vector", draw_ahead=1)
    state = through_json(mech.state())
    k = mech.max_refreshes
    assert k is not None
    # A state with all K refreshes made is valid; its next refresh exhausts the budget.
    state["arrays"]["refreshes"] = [k]
    state["arrays"]["threshold_noise"] = [0]  # ν = 0: drawn, and in range
    full = MaxSum.from_state(state, rng=simulation_generator(1), draw_ahead=1)
    ones = np.ones((64, 3), dtype=np.int64)
    with pytest.raises(BudgetExhaustedError) as caught:
        full.push_many(ones)
    # With nu = 0 and r = 0 the round fires at the first t with t + eta_t >= tau; at
    # t = 64 that fails only if eta_64 < -(64 - tau), beyond 50 query noise scales:
    # probability below e^-50 (the test cannot fail falsely in practice).
    assert mech.threshold is not None
    assert mech.threshold + 50 * mech.noise_scales["query"] < 64
    released = caught.value.details["releases"]
    assert full.t == len(released) + 1 and full.budget_exhausted
    again = MaxSum.from_state(through_json(full.state()), draw_ahead=1)
    assert again.budget_exhausted and again.t == full.t
    with pytest.raises(BudgetExhaustedError, match="ran out after"):
        again.push(ones[0])


# --- refused states ---------------------------------------------------------------------


def _valid(strategy: str = "counters", cls: type[MaxSum | SumSelect] = MaxSum) -> dict[str, Any]:
    mech = make(cls, strategy, horizon=16, rng=simulation_generator(1), draw_ahead=1)
    mech.push_many(records(16)[:5])
    return through_json(mech.state())


def _edit(path: str, value: Any, strategy: str = "counters") -> dict[str, Any]:
    state = _valid(strategy)
    *parents, last = path.split(".")
    target: Any = state
    for name in parents:
        target = target[name]
    if isinstance(target, list):
        target[int(last)] = value
    elif value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return state


_DELETE = object()


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ("not a mapping", "must be a SelectionState or its to_dict"),
        ([], "must be a SelectionState or its to_dict"),
        (_edit("version", 2), "version 2"),
        (_edit("version", True), "must hold integers"),
        (_edit("mechanism", "continual.sum_select"), "MaxSum restores"),
        (_edit("calibration", "other"), "calibrated as 'other'"),
        (_edit("extra", 1), r"unknown \['extra'\]"),
        (_edit("sums", _DELETE), r"missing \['sums'\]"),
        (_edit("t", 17), r"state.t must lie in \[0, 16\]"),
        (_edit("t", 1.0), "must hold integers"),
        (_edit("sums", [0, 0]), "must hold d=5 column sums"),
        (_edit("sums.0", 6), r"state.sums must lie in \[0, 5\]"),
        (_edit("sums.1", -1), r"state.sums must lie in \[0, 5\]"),
        (_edit("parameters.d", 6), "calibrated as"),
        (_edit("parameters.d", 6, "sparse-vector"), "must hold d=6 column sums"),
        (_edit("parameters.epsilon", -1.0), "epsilon must be"),
        (_edit("parameters.seed", 1), "parameters"),
        (_edit("parameters.strategy", "sparse-vector"), "calibrated as"),
        (_edit("arrays.extra", []), "has the arrays"),
        (_edit("arrays.node_noise", [0] * 3), "must hold 25 values"),
        (_edit("arrays.node_noise.0", None), "must hold integers"),
        (_edit("arrays.node_noise.0", 1 << 63), "must lie in"),
        (_edit("arrays.node_noise.15", 7), "must be null: no node of height 3"),
        (_edit("pending.node", list(range(56))), "holds 56 draws"),
        (_edit("pending.node", [0.5]), "must hold integers"),
        (_edit("pending", {"node": [], "query": []}), "pending"),
        (_edit("arrays.refreshes.0", 99, "sparse-vector"), "must lie in"),
        (_edit("arrays.exhausted.0", 1, "sparse-vector"), "exhausted schedule"),
        (_edit("arrays.exhausted.0", 2, "sparse-vector"), r"exhausted must lie in \[0, 1\]"),
        (_edit("arrays.threshold_noise.0", None, "sparse-vector"), "must hold integers"),
        (_edit("arrays.held", [0, 0], "sparse-vector"), "must hold 1 values"),
        (_edit("pending.query", list(range(12)), "sparse-vector"), "holds 12 draws"),
    ],
)
def test_a_bad_state_is_refused_with_a_clear_error(state: Any, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        MaxSum.from_state(state)


def test_the_untampered_states_are_accepted() -> None:
    for strategy in STRATEGIES:
        for cls in CLASSES:
            assert cls.from_state(_valid(strategy, cls)).t == 5


def test_a_held_answer_needs_a_refresh() -> None:
    state = through_json(make(MaxSum, "sparse-vector", horizon=16).state())
    assert state["arrays"]["refreshes"] == [0] and state["arrays"]["threshold_noise"] == [None]
    state["arrays"]["held"] = [5]
    with pytest.raises(ParameterError, match="held must be 0 before the first refresh"):
        MaxSum.from_state(state)


def test_a_sum_select_index_must_be_a_column() -> None:
    state = _valid("sparse-vector", SumSelect)
    state["arrays"]["held"] = [D]
    with pytest.raises(ParameterError, match=r"held must lie in \[0, 4\]"):
        SumSelect.from_state(state)


@settings(max_examples=60, deadline=None)
@given(
    strategy=st.sampled_from(STRATEGIES),
    where=st.sampled_from(["sums", "arrays", "pending", "t"]),
    index=st.integers(0, 40),
    value=st.one_of(
        st.none(), st.booleans(), st.integers(-(1 << 64), 1 << 64), st.floats(), st.text()
    ),
)
def test_any_forged_value_is_refused_or_restores_a_consistent_state(
    strategy: str, where: str, index: int, value: Any
) -> None:
    # Forging one number gives a ParameterError, or a state that restores and exports
    # itself unchanged (then the value was in range); never another exception.
    state = _valid(strategy)
    if where == "t":
        state["t"] = value
    else:
        target = state[where] if where == "sums" else next(iter(state[where].values()))
        if where != "sums":
            target = state[where][sorted(state[where])[index % len(state[where])]]
        if not target:
            target.append(value)
        else:
            target[index % len(target)] = value
    try:
        restored = MaxSum.from_state(state)
    except ParameterError:
        return
    assert through_json(restored.state()) == state


@settings(max_examples=80, deadline=None)
@given(
    cls=st.sampled_from(CLASSES),
    strategy=st.sampled_from(["auto", *STRATEGIES]),
    epsilon=st.sampled_from([5e-324, 1e-300, 1e-3, 1.0, 1e300, 1.7e308]),
    delta=st.sampled_from([0.0, 5e-324, 1e-300, 1e-6, 0.999999]),
    beta=st.sampled_from([5e-324, 1e-300, 0.05, 0.999999]),
)
def test_extreme_parameters_build_a_mechanism_or_a_parameter_error(
    cls: type[MaxSum | SumSelect], strategy: str, epsilon: float, delta: float, beta: float
) -> None:
    # What a REST client can send: never another exception (it would be a 500).
    try:
        mech = cls(
            d=1024, horizon=1 << 24, epsilon=epsilon, delta=delta, beta=beta, strategy=strategy
        )
    except ParameterError:
        return
    assert mech.error_bound(mech.beta) <= 1 << 24
    assert cls.from_state(through_json(mech.state())).state() == mech.state()
