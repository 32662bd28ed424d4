"""The exact samplers behind subset selection and unary encoding (``_sampling``), and
the bit counting of unary reports.

Statistical tests use fixed seeds; each states its false-failure probability, which is
what the test would fail with if the code were exactly right.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
import scipy.stats

from privaudit import simulation_generator
from privaudit.mechanisms.ldp import OUE, SUE, SubsetSelection
from privaudit.mechanisms.ldp import _sampling as sampling
from privaudit.mechanisms.ldp._unary import column_bit_counts

CHI2_FALSE_FAILURE = 1e-6  # per chi-square test below


class ScriptedWords:
    """Stands in for a ``Generator``: ``integers`` returns the scripted words in turn."""

    def __init__(self, words: list[np.ndarray]) -> None:
        self.words = list(words)

    def integers(self, *args: Any, size: int, **kwargs: Any) -> np.ndarray:
        word = self.words.pop(0)
        assert word.size == size
        return word.copy()


@pytest.mark.parametrize("numerator", [1, 3, 5, 11, 17, 43, 63, 127])
def test_bernoulli_words_is_exact_on_every_random_input(numerator: int) -> None:
    # p = numerator / 2^digits. Give the 2^digits bit positions every possible sequence
    # of digits u1..u_digits once: exactly those with 0.u1u2… < p may come out 1, so the
    # number of ones is numerator, with no statistical slack.
    digits = max(1, numerator.bit_length())
    p = numerator / 2**digits
    positions = np.arange(2**digits)
    n_words = max(1, 2**digits // 64)
    script = []
    for digit in range(digits):  # digit 0 is the most significant
        bits = (positions >> (digits - 1 - digit)) & 1
        padded = np.zeros(64 * n_words, dtype=np.uint64)
        padded[: bits.size] = bits
        script.append(np.packbits(padded.astype(np.uint8), bitorder="little").view(np.uint64))
    rng = ScriptedWords(script)
    words = sampling.bernoulli_words(rng, p, n_words)  # type: ignore[arg-type]
    ones = np.unpackbits(words.view(np.uint8), bitorder="little")[: positions.size]
    assert int(ones.sum()) == numerator
    # And which ones: u < p as binary fractions, i.e. the integer u < numerator.
    np.testing.assert_array_equal(np.flatnonzero(ones), np.arange(numerator))


@pytest.mark.parametrize(
    "p", [1 / (math.e + 1), 0.5, 0.75, 1e-3, 1 - 1e-3, 0.3, 1 / (math.exp(0.05) + 1)]
)
def test_bernoulli_words_frequency_and_independence(p: float) -> None:
    rng = simulation_generator(20261123)
    words = sampling.bernoulli_words(rng, p, 40_000)  # 2.56 M bits
    bits = np.unpackbits(words.view(np.uint8), bitorder="little").reshape(-1, 64)
    n = bits.shape[0]
    # Every bit position of a word is Bernoulli(p): 64 counts against Bin(n, p), a
    # chi-square with 64 degrees of freedom.
    counts = bits.sum(axis=0)
    statistic = float((((counts - n * p) ** 2) / (n * p * (1 - p))).sum())
    assert statistic < scipy.stats.chi2.isf(CHI2_FALSE_FAILURE, 64)
    # Neighbouring bits and neighbouring words are independent: the 2x2 tables of
    # (bit j, bit j+1) and (word i, word i+1) at bit 0 pass a chi-square test (1 df).
    for left, right in ((bits[:, :-1].ravel(), bits[:, 1:].ravel()), (bits[:-1, 0], bits[1:, 0])):
        table = np.bincount(2 * left + right, minlength=4).reshape(2, 2)
        if table.min() == 0:
            continue  # too rare to table (p = 1e-3 at bit 0 of neighbouring words)
        chi2 = scipy.stats.chi2_contingency(table, correction=False)[0]
        assert chi2 < scipy.stats.chi2.isf(CHI2_FALSE_FAILURE, 1)


def test_bernoulli_words_edges() -> None:
    rng = simulation_generator(0)
    assert not sampling.bernoulli_words(rng, 0.0, 10).any()
    assert (sampling.bernoulli_words(rng, 1.0, 10) == np.uint64(2**64 - 1)).all()
    assert sampling.bernoulli_words(rng, 0.3, 0).size == 0
    with pytest.raises(ValueError, match="probability"):
        sampling.bernoulli_words(rng, 1.5, 3)


# (sampler, k, size): both samplers, below and above half the domain (the dense one
# then builds the complement), small enough to enumerate the subsets.
SAMPLERS = [
    ("sparse", 8, 2),
    ("sparse", 8, 6),
    ("dense", 8, 2),
    ("dense", 8, 5),
    ("dense", 9, 4),
    ("dense", 70, 1),
]


@pytest.mark.parametrize(("sampler", "k", "size"), SAMPLERS)
@pytest.mark.parametrize("include", [False, True])
def test_subsets_are_exactly_uniform(sampler: str, k: int, size: int, include: bool) -> None:
    # For a fixed value v, every size-subset of [k] with (include) or without v must be
    # equally likely: a chi-square test over all of them.
    rng = simulation_generator(7 + k + size + 100 * include)
    n = 30_000
    values = np.tile(np.arange(k), n // k + 1)[:n]
    flags = np.full(n, include)
    out = np.empty((n, size), dtype=sampling.subset_dtype(k))
    run = sampling._sparse_subsets if sampler == "sparse" else sampling._dense_subsets
    run(values, flags, size, k, rng, out)
    rows = out.astype(np.int64)
    assert (np.diff(rows, axis=1) > 0).all()  # sorted, distinct
    assert ((rows == values[:, None]).any(axis=1) == include).all()
    for v in (0, k // 2, k - 1):
        mine = rows[values == v]
        others = [x for x in range(k) if x != v]
        allowed = np.array(
            sorted(
                tuple(sorted((*c, v) if include else c))
                for c in itertools.combinations(others, size - include)
            )
        )
        seen, counts = np.unique(mine, axis=0, return_counts=True)  # lexicographic
        position = {tuple(row): i for i, row in enumerate(allowed)}
        assert all(tuple(row) in position for row in seen)  # nothing outside the support
        full = np.zeros(len(allowed))
        full[[position[tuple(row)] for row in seen]] = counts
        if full.size == 1:
            assert full[0] == mine.shape[0]
            continue
        statistic = scipy.stats.chisquare(full).statistic
        assert statistic < scipy.stats.chi2.isf(CHI2_FALSE_FAILURE, full.size - 1)


def bitmap_rows(bits: np.ndarray, k: int) -> np.ndarray:
    """The members of each bitmap row (numpy.packbits order), as sorted index rows;
    also checks each row's padding bits are 0."""
    cells = np.unpackbits(bits, axis=1)
    assert not cells[:, k:].any()  # padding bits stay 0
    counts = cells[:, :k].sum(axis=1)
    assert (counts == counts[0]).all()
    return np.nonzero(cells[:, :k])[1].reshape(bits.shape[0], -1)


# (k, size) for the bitmap sampler: below and above half the domain, k a multiple of 8
# or not (padding bits in the last byte), small enough to enumerate the subsets.
BITMAP_SAMPLERS = [(8, 2), (8, 5), (9, 4), (13, 6), (12, 10)]


@pytest.mark.parametrize(("k", "size"), BITMAP_SAMPLERS)
@pytest.mark.parametrize("include", [False, True])
def test_subset_bitmaps_are_exactly_uniform(k: int, size: int, include: bool) -> None:
    # The bitmap form: exactly `size` bits per row, padding 0, v set iff include, and
    # every allowed subset equally likely (chi-square over all of them).
    rng = simulation_generator(70 + k + size + 100 * include)
    n = 30_000
    values = np.tile(np.arange(k), n // k + 1)[:n]
    bits = sampling.conditional_subset_bitmaps(values, np.full(n, include), size, k, rng)
    assert bits.dtype == np.uint8 and bits.shape == (n, (k + 7) // 8)
    rows = bitmap_rows(bits, k)
    assert rows.shape == (n, size)
    assert ((rows == values[:, None]).any(axis=1) == include).all()
    for v in (0, k // 2, k - 1):
        mine = rows[values == v]
        others = [x for x in range(k) if x != v]
        allowed = sorted(
            tuple(sorted((*c, v) if include else c))
            for c in itertools.combinations(others, size - include)
        )
        position = {row: i for i, row in enumerate(allowed)}
        seen, counts = np.unique(mine, axis=0, return_counts=True)
        assert all(tuple(row) in position for row in seen.tolist())
        full = np.zeros(len(allowed))
        full[[position[tuple(row)] for row in seen.tolist()]] = counts
        statistic = scipy.stats.chisquare(full).statistic
        assert statistic < scipy.stats.chi2.isf(CHI2_FALSE_FAILURE, full.size - 1)


@pytest.mark.parametrize(("k", "size"), [(1024, 275), (1000, 600), (77, 20)])
def test_bitmaps_are_the_dense_samplers_sets(k: int, size: int) -> None:
    # Same random input, same subsets: the bitmap form is the dense sampler's sets in
    # numpy.packbits order (so the positions form's exactness carries over, and the
    # two forms cannot drift apart).
    # (Rows whose coin includes v then swap one member for v, in each form with its own
    # draws; their law is checked exactly by the uniformity tests above.)
    n = 3_000
    values = simulation_generator(1).integers(0, k, size=n)
    exclude = np.zeros(n, dtype=bool)
    bits = sampling.conditional_subset_bitmaps(values, exclude, size, k, simulation_generator(3))
    listed = np.empty((n, size), dtype=sampling.subset_dtype(k))
    sampling._dense_subsets(values, exclude, size, k, simulation_generator(3), listed)
    np.testing.assert_array_equal(bitmap_rows(bits, k), listed.astype(np.int64))


@pytest.mark.parametrize(("k", "size"), [(1024, 275), (1000, 600), (77, 20), (5000, 40), (40, 3)])
@pytest.mark.parametrize("bitmap", [False, True])
def test_the_include_coin_does_not_change_the_samplers_work(
    k: int, size: int, bitmap: bool
) -> None:
    """Timing side channel: a client's work must not depend on its include coin. Both
    samplers draw ``size`` members whatever the coin and then swap one for v where the
    coin says so, so the random stream they consume is the same draw for draw: the
    generators end in the same state for all-include and all-exclude coins."""
    n = 500
    values = simulation_generator(1).integers(0, k, size=n)
    sampler = sampling.conditional_subset_bitmaps if bitmap else sampling.conditional_subsets
    states = []
    for include in (np.zeros(n, dtype=bool), np.ones(n, dtype=bool)):
        rng = simulation_generator(9)
        sampler(values, include, size, k, rng)
        states.append(rng.bit_generator.state)
    assert states[0] == states[1]


@pytest.mark.parametrize(
    ("k", "size", "form"),
    [
        (1024, 275, "positions"),
        (1024, 275, "bitmap"),
        (300, 200, "positions"),
        (300, 200, "bitmap"),
        (100, 3, "positions"),
        (2000, 60, "positions"),
        (2000, 150, "positions"),
        (1001, 30, "bitmap"),
    ],
)
def test_large_subsets_have_uniform_marginals(k: int, size: int, form: str) -> None:
    # At production sizes (the dense sampler unless size < k/16 in the positions form),
    # for one value v: every other position is a member with probability t/(k−1)
    # (t = size − include), a chi-square over the k−1 positions; and rows are sets of
    # `size` members with v iff include.
    rng = simulation_generator(k + size)
    n = 20_000
    v = 5
    for include in (False, True):
        values = np.full(n, v)
        flags = np.full(n, include)
        if form == "bitmap":
            bits = sampling.conditional_subset_bitmaps(values, flags, size, k, rng)
            rows = bitmap_rows(bits, k)
        else:
            out = sampling.conditional_subsets(values, flags, size, k, rng)
            assert out.dtype == np.uint16
            rows = out.astype(np.int64)
        assert rows.shape == (n, size)
        assert (np.diff(rows, axis=1) > 0).all()
        assert (rows == v).any(axis=1).all() == include
        assert not include or (rows == v).sum() == n
        counts = np.bincount(rows.ravel(), minlength=k)
        others = np.delete(counts, v)
        t = size - include
        p = t / (k - 1)
        # Members of one row are negatively correlated: with N = k − 1 and z the
        # standardised counts, Cov(z) = (N/(N−1)) I − J/(N−1) (the counts sum to n t),
        # so Σ z² is (N/(N−1)) times a chi-square with N − 1 degrees of freedom.
        big_n = k - 1
        statistic = float((((others - n * p) ** 2) / (n * p * (1 - p))).sum())
        assert statistic * (big_n - 1) / big_n < scipy.stats.chi2.isf(CHI2_FALSE_FAILURE, big_n - 1)


def test_subset_selection_dense_path_is_unbiased_with_the_closed_form_variance() -> None:
    # The generic suite runs subset selection at k = 16 (the sparse sampler); this is the
    # same test at k = 128, ε = 1 (ω = 34: the dense sampler).
    # Its reports take the bitmap form (128 bits < 34 x 7), counted by column_bit_counts.
    k, n, repetitions = 128, 2_000, 200
    oracle = SubsetSelection(k=k, epsilon=1.0)
    assert oracle.subset_size >= k / 16 and oracle.report_form == "bitmap"
    rng = simulation_generator(20261124)
    data = np.minimum(rng.geometric(0.05, size=n) - 1, k - 1)
    truth = np.bincount(data, minlength=k) / n
    estimates = np.array(
        [oracle.estimate(oracle.randomize(data, rng=rng)) for _ in range(repetitions)]
    )
    predicted = np.asarray(oracle.variance(n, truth))
    # Each coordinate's mean within 5 standard errors (two-sided 5.7e-7 per coordinate;
    # < 1e-4 for the 128 together).
    z = (estimates.mean(axis=0) - truth) / np.sqrt(predicted / repetitions)
    assert np.abs(z).max() < 5, z
    # The domain-averaged MSE is a mean of 128 x 200 squared errors (relative standard
    # deviation about sqrt(2/25600) < 1%): a ±6% band is over six of them.
    empirical = float(np.mean((estimates - truth) ** 2))
    assert empirical == pytest.approx(float(np.mean(predicted)), rel=0.06)


@pytest.mark.parametrize(
    ("k", "epsilon", "form"), [(1024, 1.0, "bitmap"), (1024, 3.0, "positions")]
)
def test_subset_reports_round_trip_the_wire_and_count_in_chunks(
    k: int, epsilon: float, form: str
) -> None:
    oracle = SubsetSelection(k=k, epsilon=epsilon)
    assert oracle.report_form == form
    rng = simulation_generator(3)
    data = rng.integers(0, k, size=3_000)
    reports = oracle.randomize(data, rng=rng)
    if form == "bitmap":
        (field,) = reports.arrays
        assert field == "bits" and reports.arrays["bits"].dtype == np.uint8
        rows = bitmap_rows(reports.arrays["bits"], k)
    else:
        field = "subsets"
        assert reports.arrays["subsets"].dtype == np.uint16
        rows = reports.arrays["subsets"].astype(np.int64)
    assert rows.shape == (3_000, oracle.subset_size)
    back = oracle.decode(oracle.encode(reports))
    np.testing.assert_array_equal(back.arrays[field], reports.arrays[field])
    expected = np.bincount(rows.ravel(), minlength=k)
    np.testing.assert_array_equal(oracle.statistics(reports), expected)
    np.testing.assert_array_equal(oracle.statistics(back), expected)


# --- unary encoding ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "k"),
    # Below 2,048 rows the counts are unpacked; above, the carry-save word path runs
    # (7,651 = 2 groups of 3,825 plus one row; 4,000 x 1,024 spans many words).
    [
        (0, 9),
        (1, 5),
        (256, 8),
        (777, 13),
        (1_786, 64),
        (600, 1024),
        (3_000, 100),
        (7_651, 65),
        (4_000, 1024),
    ],
)
def test_column_bit_counts_equals_unpacking(n: int, k: int) -> None:
    rng = simulation_generator(n + k)
    bits = rng.random((n, k)) < 0.4
    bits[: n // 3] = True  # long runs of ones: every lane near its limit
    packed = np.packbits(bits, axis=1)
    np.testing.assert_array_equal(column_bit_counts(packed, k), bits.sum(axis=0))


@pytest.mark.parametrize("cls", [OUE, SUE])
@pytest.mark.parametrize("k", [1024, 45])
def test_unary_reports_have_the_stated_bit_probabilities(cls: type, k: int) -> None:
    oracle = cls(k=k, epsilon=1.0)
    p, q = oracle.p_star, oracle.q_star
    rng = simulation_generator(11 + k)
    n = 40_000
    values = rng.integers(0, k, size=n)
    packed = oracle.randomize(values, rng=rng).arrays["bits"]
    assert packed.shape == (n, (k + 7) // 8) and packed.dtype == np.uint8
    bits = np.unpackbits(packed, axis=1)
    assert not bits[:, k:].any()  # padding stays 0
    bits = bits[:, :k].astype(bool)
    own = bits[np.arange(n), values]
    # The user's bit: Bin(n, p); every other bit: Bin(n (k − 1), q). |z| < 5 each
    # (two-sided 5.7e-7).
    z_own = (own.sum() - n * p) / math.sqrt(n * p * (1 - p))
    others = int(bits.sum()) - int(own.sum())
    m = n * (k - 1)
    z_other = (others - m * q) / math.sqrt(m * q * (1 - q))
    assert abs(z_own) < 5 and abs(z_other) < 5
    # The aggregate equals the unpacked column sums.
    np.testing.assert_array_equal(
        oracle.statistics(oracle.randomize(values[:999], rng=simulation_generator(1))),
        np.unpackbits(
            oracle.randomize(values[:999], rng=simulation_generator(1)).arrays["bits"], axis=1
        )[:, :k].sum(axis=0),
    )


@pytest.mark.parametrize(("k", "size"), [(2, 1), (3, 2), (9, 8), (70, 69)])
def test_subsets_of_all_but_at_most_one_value_are_exact(k: int, size: int) -> None:
    # Regression: with size = k − 1 the dense sampler's start density was 1, which
    # divided by zero, and would overfill (and restart for ever) the rows that hold the
    # value. Here each subset is determined: without v all the others; with v, v and
    # all but one of the others (uniform over which one: checked by its support).
    rng = simulation_generator(k)
    values = np.arange(400) % k
    include = np.arange(400) % 3 == 0
    bitmaps = sampling.conditional_subset_bitmaps(values, include, size, k, rng)
    members = np.unpackbits(bitmaps, axis=1, count=k).astype(bool)
    assert (members.sum(axis=1) == size).all()
    assert (members[np.arange(400), values] == include).all()
    positions = sampling.conditional_subsets(values, include, size, k, rng)
    assert (np.diff(positions.astype(np.int64), axis=1) > 0).all()
    held = (positions.astype(np.int64) == values[:, None]).any(axis=1)
    assert (held == include).all()
