"""The binary wire format of report batches: round trips and hostile input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from privaudit import simulation_generator
from privaudit.errors import DataError, LimitExceededError
from privaudit.mechanisms.ldp import GRR, OUE, SUE, FrequencyOracle, Reports, SubsetSelection, _wire
from privaudit.mechanisms.ldp._subset import subset_report_form

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
    grr = GRR(k=1000, epsilon=1.0)
    grr_payload = len(grr.encode(grr.randomize(np.arange(1000), rng=simulation_generator(0))))
    assert grr_payload - len(grr.fingerprint()) - 14 == (1000 * 10 + 7) // 8
    assert grr.wire_bits_per_report() == 10


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
    assert oracle.report_form == "bitmap"
    for candidate in (bytes(corrupted), bytes(good[: cut % len(good)])):
        try:
            reports = oracle.decode(candidate)
        except (DataError, LimitExceededError):
            continue
        # Anything accepted is a batch of sets of exactly ω values of [50].
        cells = np.unpackbits(reports.arrays["bits"].astype(np.uint8), axis=1)
        assert (cells[:, :50].sum(axis=1) == oracle.subset_size).all()
        assert not cells[:, 50:].any()


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


# --- subset selection: the report forms, and reports that are not sets -----------------


def test_subset_report_form_is_the_smaller_wire_form() -> None:
    # Bitmap iff 8⌈k/8⌉ bits < ω·⌈log2 k⌉ bits (a tie keeps the positions).
    assert subset_report_form(1024, 275) == "bitmap"  # 1024 < 2750
    assert subset_report_form(1024, 48) == "positions"  # 1024 > 480
    assert subset_report_form(16, 4) == "positions"  # 16 = 16
    assert subset_report_form(16, 5) == "bitmap"  # 16 < 20
    assert subset_report_form(13, 4) == "positions"  # 16 = 16 (the bitmap pads to a byte)
    assert subset_report_form(13, 5) == "bitmap"
    for k, epsilon in [(1024, 1.0), (1024, 3.0), (22_000, 1.0), (16, 1.5), (32, 1.0), (2, 1.0)]:
        oracle = SubsetSelection(k=k, epsilon=epsilon)
        positions = oracle.subset_size * (k - 1).bit_length()
        bitmap = 8 * ((k + 7) // 8)
        assert oracle.wire_bits_per_report() == min(positions, bitmap)
        assert oracle.report_form == ("bitmap" if bitmap < positions else "positions")
        assert oracle.report_form in oracle.fingerprint()
        assert oracle.bits_per_report() <= oracle.wire_bits_per_report()


@pytest.mark.parametrize(("epsilon", "bits"), [(1.0, 1024), (3.0, 48 * 10)])
def test_subset_wire_is_what_wire_bits_per_report_says(epsilon: float, bits: int) -> None:
    oracle = SubsetSelection(k=1024, epsilon=epsilon)
    assert oracle.wire_bits_per_report() == bits
    reports = oracle.randomize(np.arange(1000) % 1024, rng=simulation_generator(0))
    payload = len(oracle.encode(reports)) - len(oracle.fingerprint()) - 14
    assert payload == (1000 * bits + 7) // 8


def crafted(oracle: FrequencyOracle, arrays: dict[str, np.ndarray]) -> bytes:
    """Bytes of a batch made by the wire encoder alone, with no validation: what a
    hostile client can send."""
    return _wire.encode(
        oracle.fingerprint(), len(next(iter(arrays.values()))), oracle.report_schema(), arrays
    )


def test_a_report_with_repeated_members_is_refused() -> None:
    # ω copies of one value would count ω times for it: the batch is refused whole,
    # through validate_reports, estimate, the aggregator and decode of crafted bytes.
    oracle = SubsetSelection(k=1024, epsilon=3.0)  # positions form, ω = 48
    good = oracle.randomize(np.arange(200) % 1024, rng=simulation_generator(4))
    subsets = good.arrays["subsets"].copy()
    subsets[17] = 7
    forged = Reports("ss", oracle.fingerprint(), {"subsets": subsets})
    message = r"report 17 lists \[7, 7, 7, .*distinct and in ascending order"
    for call in (oracle.validate_reports, oracle.estimate, oracle.aggregator().update):
        with pytest.raises(DataError, match=message):
            call(forged)
    with pytest.raises(DataError, match=message):
        oracle.decode(crafted(oracle, {"subsets": subsets}))
    with pytest.raises(DataError, match=message):
        oracle.encode(forged)  # nor does our encoder make it
    descending = good.arrays["subsets"].copy()
    descending[3] = descending[3][::-1]
    with pytest.raises(DataError, match="report 3 lists"):
        oracle.decode(crafted(oracle, {"subsets": descending}))
    assert oracle.decode(crafted(oracle, good.arrays)).n == 200  # the honest batch passes


def test_a_bitmap_report_needs_exactly_omega_bits_and_zero_padding() -> None:
    oracle = SubsetSelection(k=1020, epsilon=1.0)  # bitmap form, 4 padding bits
    assert oracle.report_form == "bitmap" and oracle.subset_size == 274
    good = oracle.randomize(np.arange(100) % 1020, rng=simulation_generator(5))
    bits = good.arrays["bits"]
    cells = np.unpackbits(bits, axis=1)
    extra = cells.copy()
    extra[40, np.flatnonzero(extra[40, :1020] == 0)[0]] = 1  # ω + 1 members
    missing = cells.copy()
    missing[41, np.flatnonzero(missing[41] == 1)[0]] = 0  # ω − 1 members
    padded = cells.copy()
    padded[42, np.flatnonzero(padded[42] == 1)[0]] = 0
    padded[42, 1023] = 1  # ω bits, one of them a padding bit
    for forged, message in [
        (extra, "report 40 sets 275 bits of its subset bitmap; .* exactly ω = 274"),
        (missing, "report 41 sets 273 bits"),
        (padded, "report 42 sets a bit at or past position 1020 .* padding bits must be 0"),
    ]:
        payload = crafted(oracle, {"bits": np.packbits(forged, axis=1)})
        with pytest.raises(DataError, match=message):
            oracle.decode(payload)
        with pytest.raises(DataError, match=message):
            oracle.estimate(
                Reports("ss", oracle.fingerprint(), {"bits": np.packbits(forged, axis=1)})
            )
    assert oracle.decode(crafted(oracle, {"bits": bits})).n == 100


@settings(max_examples=150, deadline=None)
@given(
    k=st.integers(3, 40),
    omega=st.integers(2, 6),
    rows=st.lists(st.lists(st.integers(0, 39), min_size=6, max_size=6), min_size=1, max_size=6),
)
def test_malformed_positions_are_refused_exactly_when_not_sets(
    k: int, omega: int, rows: list[list[int]]
) -> None:
    # Any in-range rows, as crafted bytes: accepted iff every row is strictly ascending
    # (a sorted set of ω members), by a reference written independently of the code.
    omega = min(omega, k - 1)
    oracle = SubsetSelection(k=k, epsilon=8.0, subset_size=omega)
    assume(oracle.report_form == "positions")
    array = np.array([[x % k for x in row[:omega]] for row in rows], dtype=np.int64)
    valid = all(list(row) == sorted(set(row)) and len(set(row)) == omega for row in array.tolist())
    payload = crafted(oracle, {"subsets": array})
    if not valid:
        with pytest.raises(DataError, match="distinct and in ascending order"):
            oracle.decode(payload)
        return
    np.testing.assert_array_equal(oracle.decode(payload).arrays["subsets"], array)


@settings(max_examples=150, deadline=None)
@given(
    k=st.sampled_from([9, 12, 16, 20, 64]),
    rows=st.lists(st.binary(min_size=8, max_size=8), min_size=1, max_size=5),
    honest=st.booleans(),
)
def test_malformed_bitmaps_are_refused_exactly_when_not_sets(
    k: int, rows: list[bytes], honest: bool
) -> None:
    # Arbitrary bytes as bitmap rows (or honest rows, so acceptance is exercised):
    # accepted iff each row has exactly ω bits among its first k and none after.
    omega = k // 2 + 1
    oracle = SubsetSelection(k=k, epsilon=8.0, subset_size=omega)
    assert oracle.report_form == "bitmap"
    n_bytes = (k + 7) // 8
    array = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), 8)[:, :n_bytes]
    if honest:
        array = oracle.randomize(
            np.frombuffer(b"".join(rows), dtype=np.uint8)[: len(rows)] % k,
            rng=simulation_generator(len(rows)),
        ).arrays["bits"]
    cells = np.unpackbits(array, axis=1)
    valid = bool((cells[:, :k].sum(axis=1) == omega).all() and not cells[:, k:].any())
    payload = crafted(oracle, {"bits": array})
    if not valid:
        with pytest.raises(DataError, match="subset bitmap"):
            oracle.decode(payload)
        return
    back = oracle.decode(payload)
    np.testing.assert_array_equal(back.arrays["bits"], array)
    np.testing.assert_array_equal(oracle.statistics(back), cells[:, :k].sum(axis=0))
