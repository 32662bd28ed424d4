"""The binary wire format of report batches: round trips and hostile input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privaudit import simulation_generator
from privaudit.errors import DataError, LimitExceededError
from privaudit.mechanisms.ldp import GRR, OUE, SUE, FrequencyOracle, Reports, SubsetSelection

PROTOCOLS = [GRR, OUE, SUE, SubsetSelection]


@settings(max_examples=60, deadline=None)
@given(
    protocol=st.sampled_from(PROTOCOLS),
    k=st.integers(2, 300),
    epsilon=st.floats(0.1, 8.0),
    n=st.integers(0, 200),
    seed=st.integers(0, 2**32),
)
def test_encode_decode_round_trips(
    protocol: type[FrequencyOracle], k: int, epsilon: float, n: int, seed: int
) -> None:
    oracle = protocol(k=k, epsilon=epsilon)
    rng = simulation_generator(seed)
    reports = oracle.randomize(rng.integers(0, k, size=n), rng=rng)
    data = oracle.encode(reports)
    back = oracle.decode(data)
    assert back.n == n
    for name, array in reports.arrays.items():
        np.testing.assert_array_equal(back.arrays[name], array)
    if n:
        np.testing.assert_allclose(oracle.estimate(back), oracle.estimate(reports))


def test_encoding_is_compact() -> None:
    oracle = SubsetSelection(k=1024, epsilon=1.0)
    reports = oracle.randomize(np.arange(1000) % 1024, rng=simulation_generator(0))
    payload = len(oracle.encode(reports)) - len(oracle.fingerprint()) - 14
    # ω indices of 10 bits each, byte-aligned once per batch.
    assert payload == (1000 * oracle.subset_size * 10 + 7) // 8
    grr = GRR(k=1000, epsilon=1.0)
    grr_payload = len(grr.encode(grr.randomize(np.arange(1000), rng=simulation_generator(0))))
    assert grr_payload - len(grr.fingerprint()) - 14 == (1000 * 10 + 7) // 8


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes_are_refused_cleanly(data: bytes) -> None:
    oracle = GRR(k=10, epsilon=1.0)
    try:
        reports = oracle.decode(data)
    except (DataError, LimitExceededError):
        return
    assert reports.arrays["values"].max(initial=0) < 10  # only a valid batch gets through


@settings(max_examples=200, deadline=None)
@given(position=st.integers(0, 10_000), flip=st.integers(1, 255), cut=st.integers(0, 10_000))
def test_corrupted_batches_are_refused_or_stay_valid(position: int, flip: int, cut: int) -> None:
    oracle = SubsetSelection(k=50, epsilon=1.0)
    good = bytearray(
        oracle.encode(oracle.randomize(np.arange(40) % 50, rng=simulation_generator(1)))
    )
    corrupted = bytearray(good)
    corrupted[position % len(good)] ^= flip
    for candidate in (bytes(corrupted), bytes(good[: cut % len(good)])):
        try:
            reports = oracle.decode(candidate)
        except (DataError, LimitExceededError):
            continue
        oracle.validate_reports(reports)  # anything accepted is a valid batch


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b"XYZ" + b[3:], "magic"),
        (lambda b: b[:3] + bytes([9]) + b[4:], "version"),
        (lambda b: b[:-1], "bytes"),
        (lambda b: b + b"\x00", "bytes"),
    ],
)
def test_precise_errors(mutate: object, message: str) -> None:
    oracle = GRR(k=10, epsilon=1.0)
    data = oracle.encode(oracle.randomize([1, 2, 3], rng=simulation_generator(0)))
    with pytest.raises(DataError, match=message):
        oracle.decode(mutate(data))  # type: ignore[operator]


def test_other_parameters_and_huge_counts_are_refused() -> None:
    mine, theirs = GRR(k=10, epsilon=1.0), GRR(k=10, epsilon=2.0)
    data = theirs.encode(theirs.randomize([1], rng=simulation_generator(0)))
    with pytest.raises(DataError, match="made by"):
        mine.decode(data)
    many = mine.encode(mine.randomize(np.zeros(50, dtype=int), rng=simulation_generator(0)))
    with pytest.raises(LimitExceededError):
        mine.decode(many, max_reports=10)


def test_out_of_range_values_are_refused() -> None:
    oracle = GRR(k=5, epsilon=1.0)  # 3 bits hold up to 7, the domain ends at 4
    forged = Reports("grr", oracle.fingerprint(), {"values": np.array([4])})
    data = bytearray(oracle.encode(forged))
    data[-1] = 0b11100000  # the value 7
    with pytest.raises(DataError, match="above its maximum"):
        oracle.decode(bytes(data))
    with pytest.raises(DataError, match="must lie in"):
        oracle.estimate(Reports("grr", oracle.fingerprint(), {"values": np.array([9])}))
