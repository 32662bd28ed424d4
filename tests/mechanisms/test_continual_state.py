"""Exporting a continual counter's state and continuing from it: same releases, same noise.

No statistics here: every check is an exact equality, with seeded generators.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privaudit import simulation_generator
from privaudit.errors import LimitExceededError, ParameterError
from privaudit.mechanisms.continual import (
    STATE_VERSION,
    BinaryTreeCounter,
    BufferedToeplitzCounter,
    ContinualCounter,
    CounterState,
    HonakerCounter,
    MatrixFactorizationCounter,
)

COUNTERS = [
    BinaryTreeCounter,
    HonakerCounter,
    MatrixFactorizationCounter,
    BufferedToeplitzCounter,
]
NOISES = [{"noise_multiplier": 1.5}, {"epsilon": 2.0}]


def noise_id(noise: dict[str, float]) -> str:
    return "gaussian" if "noise_multiplier" in noise else "laplace"


def through_json(state: CounterState) -> dict[str, Any]:
    """What a database gives back: the state's dict after a JSON round trip."""
    loaded: dict[str, Any] = json.loads(json.dumps(state.to_dict(), allow_nan=False))
    return loaded


@pytest.mark.parametrize("noise", NOISES, ids=noise_id)
@pytest.mark.parametrize("cls", COUNTERS)
def test_restoring_after_37_items_continues_exactly_as_never_stopping(
    cls: type[ContinualCounter], noise: dict[str, float]
) -> None:
    items = simulation_generator(7).random(100)
    uninterrupted = cls(T=100, rng=simulation_generator(1), **noise)
    expected = uninterrupted.push_many(items)

    first = cls(T=100, rng=simulation_generator(1), **noise)
    before = [first.push(float(x)) for x in items[:30]] + list(first.push_many(items[30:37]))
    state = first.state()
    # T = 100 is below the default draw-ahead block, so the first push drew all the noise
    # the stream will need; the rest is in the state, so the generator given to the
    # restored counter (another seed) is never used. Redrawing anything would show.
    restored = cls.from_state(through_json(state), rng=simulation_generator(999))
    assert type(restored) is cls
    assert restored.t == 37
    assert restored.state() == state  # the released nodes' noise, bit for bit
    after = restored.push_many(items[37:])
    np.testing.assert_array_equal(np.concatenate([before, after]), expected)
    assert restored.state() == uninterrupted.state()


@pytest.mark.parametrize("cls", COUNTERS)
def test_a_restored_counter_keeps_released_noise_and_draws_only_new_noise(
    cls: type[ContinualCounter],
) -> None:
    # draw_ahead=1: nothing is drawn ahead, so the state at t = 37 holds no pending noise
    # and the next push must draw fresh noise, here from a generator of another seed.
    items = simulation_generator(8).random(40)
    original = cls(T=64, noise_multiplier=1.0, rng=simulation_generator(2), draw_ahead=1)
    original.push_many(items[:37])
    state = original.state()
    assert state.pending_noise == ()
    restored = cls.from_state(state, rng=simulation_generator(3), draw_ahead=1)
    original.push(float(items[37]))
    restored.push(float(items[37]))
    kept, fresh = state.arrays, restored.state().arrays
    if cls is BinaryTreeCounter:
        # 37 = 100101b, 38 = 100110b: the nodes of heights 5 and 2 are released through
        # both; the new node (36, 38] merges the leaf 37 and gets new noise.
        assert fresh["noisy"][5] == kept["noisy"][5] and fresh["noisy"][2] == kept["noisy"][2]
        assert fresh["noisy"][1] != original.state().arrays["noisy"][1]
    elif cls is HonakerCounter:
        # Heights 0..5 have completed nodes; push 38 completes heights 0 and 1 only.
        assert fresh["estimate"][2:] == kept["estimate"][2:]
        assert fresh["exact"][2:] == kept["exact"][2:]
    elif cls is BufferedToeplitzCounter:
        # The encoder depends on the items only; the decoder carries the new noise.
        now = original.state().arrays
        assert fresh["encoder_high"] == now["encoder_high"]
        assert fresh["encoder_low"] == now["encoder_low"]
        assert fresh["decoder"] != now["decoder"] and fresh["release"] != now["release"]
    else:
        assert fresh["measurements"][:37] == kept["measurements"]
        assert fresh["measurements"][37] != original.state().arrays["measurements"][37]
    assert fresh != original.state().arrays  # the new noise did come from the new source


@pytest.mark.parametrize("cls", COUNTERS)
def test_the_state_holds_no_randomness(cls: type[ContinualCounter]) -> None:
    one = cls(T=16, epsilon=1.0, rng=simulation_generator(1), draw_ahead=1)
    two = cls(T=16, epsilon=1.0, rng=simulation_generator(2), draw_ahead=1)
    assert one.state() == two.state()  # no seed, no generator state
    assert one.state().to_dict()["pending_noise"] == []
    secure = cls.from_state(one.state())
    assert secure.secure  # restored counters default to the secure source


@pytest.mark.parametrize("cls", COUNTERS)
def test_draw_ahead_bounds_the_pending_noise(cls: type[ContinualCounter]) -> None:
    counter = cls(T=1000, epsilon=1.0, rng=simulation_generator(4), draw_ahead=1)
    counter.push_many(np.full(100, 0.5))
    assert counter.state().pending_noise == ()  # a batch draws exactly what it uses
    counter.push(0.25)
    assert counter.state().pending_noise == ()
    bigger = cls(T=1000, epsilon=1.0, rng=simulation_generator(4), draw_ahead=300)
    bigger.push(0.5)
    assert 0 < len(bigger.state().pending_noise) < 300
    with pytest.raises(ParameterError, match="draw_ahead"):
        cls(T=10, epsilon=1.0, draw_ahead=0)


@pytest.mark.parametrize("cls", COUNTERS)
def test_state_size_bound_covers_the_exported_arrays(cls: type[ContinualCounter]) -> None:
    T = 77  # noqa: N806
    counter = cls(T=T, noise_multiplier=1.0, rng=simulation_generator(5), draw_ahead=1)
    largest = 0
    for _ in range(T):
        counter.push(1.0)
        largest = max(largest, sum(len(v) for v in counter.state().arrays.values()))
    assert largest == cls.state_size_bound(T)


@pytest.mark.parametrize("cls", COUNTERS)
def test_a_restored_counter_refuses_items_past_the_horizon(cls: type[ContinualCounter]) -> None:
    counter = cls(T=5, epsilon=1.0, rng=simulation_generator(6))
    counter.push_many([1.0] * 5)
    restored = cls.from_state(counter.state())
    with pytest.raises(LimitExceededError):
        restored.push(0.0)


@settings(max_examples=40, deadline=None)
@given(
    cls=st.sampled_from(COUNTERS),
    T=st.integers(1, 70),
    cuts=st.lists(st.floats(0, 1), max_size=4),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_number_of_restores_at_any_points_changes_nothing(
    cls: type[ContinualCounter],
    T: int,  # noqa: N803
    cuts: list[float],
    seed: int,
) -> None:
    items = simulation_generator(seed).random(T)
    expected = cls(T=T, noise_multiplier=2.0, rng=simulation_generator(seed)).push_many(items)
    points = sorted({0, T, *(round(c * T) for c in cuts)})
    counter = cls(T=T, noise_multiplier=2.0, rng=simulation_generator(seed))
    releases: list[float] = []
    for start, stop in itertools.pairwise(points):
        releases.extend(counter.push_many(items[start:stop]))
        counter = ContinualCounter.from_state(through_json(counter.state()))  # type: ignore[assignment]
    np.testing.assert_array_equal(releases, expected)


# --- strict validation ------------------------------------------------------------------


def tree_state() -> dict[str, Any]:
    counter = BinaryTreeCounter(T=8, epsilon=1.0, rng=simulation_generator(0), draw_ahead=1)
    counter.push_many([1.0, 0.5, 0.25, 0.0, 1.0])  # t = 5 = 101b: heights 0 and 2 in use
    return through_json(counter.state())


def tampered(**changes: Any) -> dict[str, Any]:
    state = tree_state()
    for path, value in changes.items():
        target = state
        *parents, last = path.split("__")
        for part in parents:
            target = target[part]
        target[int(last) if isinstance(target, list) else last] = value
    return state


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (tampered(version=STATE_VERSION + 1), "version"),
        (tampered(mechanism="continual.honaker"), "continual.honaker"),
        (tampered(T=16), "calibrated"),  # another horizon: other levels and noise scale
        (tampered(T=7), "calibrated"),
        (tampered(calibration="discrete_laplace scale=1"), "calibrated"),
        (tampered(epsilon=None), "exactly one"),
        (tampered(t=9), r"state.t must lie in \[0, 8\]"),
        (tampered(t=True), "integers"),
        (tampered(t=5.0), "integers"),
        (tampered(arrays__partial=[0, 0, 0]), "must hold 4 values"),
        (tampered(arrays__noisy__0=None), "integers"),
        (tampered(arrays__noisy__1=12), "must be empty"),
        (tampered(arrays__partial__1=3), "must be empty"),
        (tampered(arrays__partial__0=(1 << 32) + 1), "must lie in"),
        (tampered(arrays__partial__2=-1), "must lie in"),
        (tampered(arrays__noisy__2=0.5), "integers"),
        (tampered(arrays__extra=[]), "has the arrays"),
        (tampered(arrays=[]), "arrays must map"),
        (tampered(pending_noise=[1] * 4), "pending_noise holds 4 draws"),
        (tampered(pending_noise=[1 << 63]), "must lie in"),
        (tampered(pending_noise="1,2"), "must be a list"),
        (tampered(seed=42), "unknown"),
        ({k: v for k, v in tree_state().items() if k != "t"}, "missing"),
    ],
)
def test_a_bad_state_is_refused_with_a_clear_error(state: dict[str, Any], message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        BinaryTreeCounter.from_state(state)


def test_the_untampered_state_is_accepted() -> None:
    assert BinaryTreeCounter.from_state(tree_state()).t == 5


def test_other_counters_validate_their_own_arrays() -> None:
    honaker = HonakerCounter(T=8, noise_multiplier=1.0, rng=simulation_generator(0))
    honaker.push_many([1.0] * 3)  # heights 0 and 1 have completed nodes
    state = through_json(honaker.state())
    state["arrays"]["estimate"][1] = float("nan")
    with pytest.raises(ParameterError, match="finite"):
        HonakerCounter.from_state(state)
    state["arrays"]["estimate"][1] = 1.0
    state["arrays"]["estimate"][2] = 1.0  # no node of height 2 has completed at t = 3
    with pytest.raises(ParameterError, match="must be empty"):
        HonakerCounter.from_state(state)

    toeplitz = MatrixFactorizationCounter(T=8, noise_multiplier=1.0, rng=simulation_generator(0))
    toeplitz.push_many([1.0] * 3)
    state = through_json(toeplitz.state())
    state["arrays"]["inputs"].append(0)
    with pytest.raises(ParameterError, match="must hold 3 values"):
        MatrixFactorizationCounter.from_state(state)
    state = through_json(toeplitz.state())
    state["arrays"]["inputs"][0] = (1 << toeplitz.grid_bits) + 1  # above one item of 1.0
    with pytest.raises(ParameterError, match="must lie in"):
        MatrixFactorizationCounter.from_state(state)


def test_the_base_class_dispatches_by_mechanism_and_refuses_others() -> None:
    state = tree_state()
    assert type(ContinualCounter.from_state(state)) is BinaryTreeCounter
    for name in ("nope", "continual"):
        with pytest.raises(ParameterError, match="not a continual counter"):
            ContinualCounter.from_state({**state, "mechanism": name})
    with pytest.raises(ParameterError, match="CounterState"):
        ContinualCounter.from_state("{}")  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", COUNTERS)
@pytest.mark.parametrize(
    ("noise", "message"),
    [
        ({"noise_multiplier": 5e-324}, "ρ = 1/"),
        ({"noise_multiplier": 1e-160}, "ρ = 1/"),
        ({"noise_multiplier": 1e300}, "noise scale"),
        ({"noise_multiplier": 1.2e308}, "noise scale"),
        ({"epsilon": 5e-324}, "noise scale"),
    ],
)
def test_extreme_noise_parameters_are_refused_up_front(
    cls: type[ContinualCounter], noise: dict[str, float], message: str
) -> None:
    # Found by schemathesis through POST /v1/streams and by the property test below: the
    # counter was built and only its guarantee failed (ZeroDivisionError), a square
    # overflowed (OverflowError), or the Toeplitz input grid had negative bits.
    with pytest.raises(ParameterError, match=message):
        cls(T=363_824 if cls is not MatrixFactorizationCounter else 64, **noise)
    assert cls(T=4, noise_multiplier=1e-150).guarantee.rho == pytest.approx(5e299)


def test_the_toeplitz_counter_refuses_a_noise_scale_that_leaves_no_input_grid() -> None:
    # Found by the property test below: the input grid had -1 bits (a negative shift).
    # The trees keep 17 bits here, the Toeplitz strategy takes 20 of them.
    assert BinaryTreeCounter(T=11, epsilon=2e-10).grid_bits >= 16
    with pytest.raises(ParameterError, match="leaves -1 bits"):
        MatrixFactorizationCounter(T=11, epsilon=2e-10)


@settings(max_examples=300, deadline=None)
@given(
    cls=st.sampled_from(COUNTERS),
    T=st.integers(1, 1 << 24),
    value=st.floats(min_value=0, exclude_min=True, allow_infinity=False),
    laplace=st.booleans(),
)
def test_any_positive_noise_parameter_builds_a_counter_or_a_parameter_error(
    cls: type[ContinualCounter],
    T: int,  # noqa: N803
    value: float,
    laplace: bool,
) -> None:
    # What a REST client can send: never another exception, and a counter that is built
    # can state its guarantee and its error.
    if cls is MatrixFactorizationCounter:
        T = T % 512 + 1  # noqa: N806  (its tables grow with T)
    elif cls is BufferedToeplitzCounter:
        T = T % 4096 + 1  # noqa: N806  (each new T fits its parameters, ~10 ms)
    noise = {"epsilon": value} if laplace else {"noise_multiplier": value}
    try:
        counter = cls(T=T, **noise)
    except ParameterError:
        return
    assert counter.guarantee.to_dict()
    assert 0 < counter.max_variance() < float("inf")
    assert 0 < counter.sensitivity < float("inf")
