"""Modular subset selection (MSS) against independent computations.

Statistical tests use fixed seeds; each states its false-failure probability, which is
what the test would fail with if the code were exactly right. Importing the module
registers "mss", so running this file before ``test_ldp_oracles.py`` in one session puts
MSS through the generic oracle suite too.
"""

from __future__ import annotations

import itertools
import math
from unittest import mock

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

import privaudit.mechanisms.ldp._modular as _modular  # registers "mss"
from privaudit import simulation_generator
from privaudit.errors import DataError, ParameterError
from privaudit.mechanisms.ldp import Reports, SubsetSelection, _wire
from privaudit.mechanisms.ldp._modular import (
    ModularSubsetSelection,
    choose_moduli,
    design_rank,
)
from privaudit.registry import mechanisms


def dense_design(k: int, moduli: tuple[int, ...]) -> np.ndarray:
    """The stacked 0/1 residue design, built the obvious way."""
    return np.vstack([(np.arange(k)[None, :] % m == np.arange(m)[:, None]) for m in moduli]).astype(
        float
    )


def dense_normal(oracle: ModularSubsetSelection) -> np.ndarray:
    """``N̄ = Σ_j A_jᵀA_j/(ℓ V_j)`` per report, dense."""
    k, ell = oracle.k, oracle.n_moduli
    total = np.zeros((k, k))
    for block, m in zip(oracle._blocks, oracle.moduli, strict=True):
        p, q = block.p_star, block.q_star
        a = dense_design(k, (m,))
        total += a.T @ a * (p - q) ** 2 / (q * (1 - q)) / ell
    return total


def zipf(k: int, s: float = 1.1) -> np.ndarray:
    weights: np.ndarray = np.arange(1, k + 1, dtype=float) ** -s
    normalised: np.ndarray = weights / weights.sum()
    return normalised


def fixed_dataset(k: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = simulation_generator(seed)
    data = rng.choice(k, size=n, p=zipf(k))
    return data, np.bincount(data, minlength=k) / n


def test_mss_is_registered() -> None:
    assert mechanisms.get("mss") is ModularSubsetSelection


# --- the design ------------------------------------------------------------------------


COPRIME_SETS = [(2, 3), (3, 5), (4, 9), (5, 7), (2, 3, 5), (4, 5, 9), (7, 8, 9), (3, 5, 7, 11)]


@pytest.mark.parametrize("moduli", COPRIME_SETS)
def test_rank_formula_matches_the_numerical_rank(moduli: tuple[int, ...]) -> None:
    # rank(A) = min(k, Σm − ℓ + 1) for pairwise coprime moduli, primes or not, on both
    # sides of the threshold k = Σm − ℓ + 1.
    for k in range(2, sum(moduli) + 6):
        a = dense_design(k, moduli)
        assert np.linalg.matrix_rank(a) == design_rank(k, moduli), (k, moduli)


@pytest.mark.parametrize(("k", "epsilon"), [(2, 0.5), (5, 2.0), (16, 1.5), (100, 1.0), (200, 4.0)])
def test_automatic_moduli_are_valid(k: int, epsilon: float) -> None:
    choice = choose_moduli(k, epsilon)
    moduli = choice.moduli
    assert all(m >= 2 for m in moduli)
    assert all(math.gcd(a, b) == 1 for a, b in itertools.combinations(moduli, 2))
    assert math.prod(moduli) >= k
    assert sum(moduli) >= k + len(moduli) - 1
    if k <= 100:
        assert np.linalg.matrix_rank(dense_design(k, moduli)) == k
    oracle = ModularSubsetSelection(k=k, epsilon=epsilon)
    assert oracle.moduli == moduli
    # The oracle and the condition number against dense linear algebra.
    normal = dense_normal(oracle)
    eigenvalues = np.linalg.eigvalsh(normal)
    assert choice.condition == pytest.approx(eigenvalues[-1] / eigenvalues[0], rel=1e-3)
    assert choice.condition <= 100
    ss = SubsetSelection(k=k, epsilon=epsilon)
    p, q = ss.p_star, ss.q_star
    ss_variance = q * (1 - q) / (p - q) ** 2
    trace = float(np.trace(np.linalg.inv(normal)))
    assert choice.mse_ratio == pytest.approx(trace / k / ss_variance, rel=1e-8)
    assert oracle.exact_mse(1) == pytest.approx(trace / k, rel=1e-8)
    # The worst case over datasets, against the exact MSE of every point mass.
    point_masses = (
        [oracle.exact_mse(1, np.eye(k)[v]) for v in range(k)]
        if k <= 100
        else oracle.point_mass_mse(1)  # checked against exact_mse point by point below
    )
    ss_point_mass = (k * ss_variance + (1 - p - q) / (p - q)) / k
    assert choice.worst_mse_ratio == pytest.approx(max(point_masses) / ss_point_mass, rel=1e-8)
    assert choice.meets_budget == (choice.worst_mse_ratio <= 1.25)
    assert choice.meets_budget or k == 2  # k = 2 has only (2, 3): worst-case ratio 1.30
    assert choice.mse_ratio <= choice.worst_mse_ratio * (1 + 1e-9)


@pytest.mark.parametrize("damping", [0.0, 40.0])
def test_point_mass_mse_is_the_exact_mse_of_each_point_mass(damping: float) -> None:
    oracle = ModularSubsetSelection(k=60, epsilon=3.0, moduli=(17, 19, 29), damping=damping)
    brute = [oracle.exact_mse(500, np.eye(60)[v]) for v in range(60)]
    np.testing.assert_allclose(oracle.point_mass_mse(500), brute, rtol=1e-9)
    assert oracle.worst_case_mse(500) == pytest.approx(max(brute), rel=1e-9)
    # Any dataset's MSE is at most the worst point mass (affine, or convex with damping).
    f = zipf(60)
    assert oracle.exact_mse(500, f) <= oracle.worst_case_mse(500)


def test_a_tighter_budget_buys_accuracy_with_bits() -> None:
    loose, tight = choose_moduli(1024, 2.0), choose_moduli(1024, 2.0, mse_budget=1.1)
    assert tight.worst_mse_ratio <= 1.1 < loose.worst_mse_ratio
    assert tight.bits_ratio > loose.bits_ratio
    assert choose_moduli(1024, 2.0, n_moduli=3).moduli.__len__() == 3


def test_a_fixed_subset_size_still_gets_moduli_within_budget() -> None:
    # With ω = 1 in every block the MSE grows with the moduli, so the bisection's premise
    # fails and the coarse scan decides; ω = 1 reports cannot be shorter than ⌈log2 k⌉.
    choice = choose_moduli(120, 3.0, subset_size=1)
    assert choice.meets_budget and choice.worst_mse_ratio <= 1.25
    oracle = ModularSubsetSelection(k=120, epsilon=3.0, subset_size=1)
    assert oracle.subset_sizes == (1,) * oracle.n_moduli


@pytest.mark.parametrize("epsilon", [1.0, 3.0, 5.0])
def test_issue_targets_at_k_1024(epsilon: float) -> None:
    # Exact MSE at most 1.3× subset selection's on every dataset (so on the paper's
    # Zipf(1.1) data too), with at most 80% of its bits.
    choice = choose_moduli(1024, epsilon, mse_budget=1.25)
    mss = ModularSubsetSelection(k=1024, epsilon=epsilon)
    ss = SubsetSelection(k=1024, epsilon=epsilon)
    assert mss.exact_mse(10_000) / ss.variance(10_000) == pytest.approx(choice.mse_ratio)
    assert choice.worst_mse_ratio <= 1.25
    f = zipf(1024)
    assert mss.exact_mse(10_000, f) / ss.mse(10_000, f) <= choice.worst_mse_ratio
    assert mss.bits_per_report() / ss.bits_per_report() == pytest.approx(choice.bits_ratio)
    assert choice.bits_ratio <= 0.8
    assert mss.max_bits_per_report() >= mss.bits_per_report()


@pytest.mark.slow  # about 2 s; test_large_domain_exact_mse_is_fast covers ε = 3 by default
def test_issue_targets_at_k_22000() -> None:
    for epsilon in (1.0, 3.0, 5.0):
        choice = choose_moduli(22_000, epsilon)
        assert choice.meets_budget
        assert choice.worst_mse_ratio <= 1.3 and choice.bits_ratio <= 0.8
        assert choice.condition <= 100


# --- estimation ------------------------------------------------------------------------


def brute_force_covariance(
    oracle: ModularSubsetSelection, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``E f̂`` and ``Cov(f̂)`` for a fixed dataset by enumerating the channel.

    ``n f̂ = L Σ_u Y_u`` with ``Y_u`` the user's stacked, debiased residue indicator; each
    user's ``E[Y]`` and ``Cov(Y)`` come from the enumerated report distribution, not
    from the module's closed forms.
    """
    k, ell, n = oracle.k, oracle.n_moduli, int(counts.sum())
    channel = oracle.channel()
    outputs = []  # the stacked vector Y of every possible report (J, Z)
    total = sum(oracle.moduli)
    start = 0
    for block, m in zip(oracle._blocks, oracle.moduli, strict=True):
        p, q = block.p_star, block.q_star
        for subset in itertools.combinations(range(m), block.subset_size):
            y = np.zeros(total)
            indicator = np.zeros(m)
            indicator[list(subset)] = 1
            y[start : start + m] = ell * (indicator - q) / (p - q)
            outputs.append(y)
        start += m
    ys = np.array(outputs)  # (outputs, Σm)
    weights = np.concatenate(
        [
            np.full(m, (b.p_star - b.q_star) ** 2 / (b.q_star * (1 - b.q_star)) / ell)
            for b, m in zip(oracle._blocks, oracle.moduli, strict=True)
        ]
    )
    a = dense_design(k, oracle.moduli)
    shift = oracle.damping / n
    lift = np.linalg.solve(a.T @ (weights[:, None] * a) + shift * np.eye(k), a.T * weights)
    mean = np.zeros(k)
    covariance = np.zeros((k, k))
    for v in range(k):
        law = channel[v]
        expected = law @ ys
        second = ys.T @ (law[:, None] * ys)
        mean += counts[v] * (lift @ expected)
        covariance += counts[v] * lift @ (second - np.outer(expected, expected)) @ lift.T
    return mean / n, covariance / n**2


@pytest.mark.parametrize(
    ("k", "epsilon", "moduli", "damping"),
    [
        (7, 1.0, (3, 5), 0.0),
        (10, 2.0, (3, 4, 5), 0.0),
        (12, 0.7, (5, 9), 0.0),
        (10, 2.0, (3, 4, 5), 30.0),
    ],
)
def test_closed_forms_equal_brute_force(
    k: int, epsilon: float, moduli: tuple[int, ...], damping: float
) -> None:
    oracle = ModularSubsetSelection(k=k, epsilon=epsilon, moduli=moduli, damping=damping)
    counts = np.arange(1, k + 1)[::-1] ** 2  # skewed fixed dataset
    n = int(counts.sum())
    f = counts / n
    mean, covariance = brute_force_covariance(oracle, counts)
    bias = mean - f
    if damping == 0:
        np.testing.assert_allclose(mean, f, atol=1e-12)  # unbiased
    else:
        assert np.linalg.norm(mean) < np.linalg.norm(f)  # shrunk towards 0
    np.testing.assert_allclose(oracle.variance(n, f), np.diag(covariance), rtol=1e-9)
    assert oracle.exact_mse(n, f) == pytest.approx(
        (np.trace(covariance) + bias @ bias) / k, rel=1e-9
    )


def test_decoder_equals_the_dense_linear_estimator() -> None:
    oracle = ModularSubsetSelection(k=60, epsilon=1.5)
    rng = simulation_generator(5)
    reports = oracle.randomize(rng.integers(0, 60, size=3_000), rng=rng)
    statistics = oracle.statistics(reports)
    a = dense_design(60, oracle.moduli)
    rows, rhs, start = [], [], 0
    for block, m in zip(oracle._blocks, oracle.moduli, strict=True):
        p, q = block.p_star, block.q_star
        size, counts = statistics[start], statistics[start + 1 : start + 1 + m]
        rows.append(np.full(m, (p - q) ** 2 / (q * (1 - q))))
        rhs.append((counts - size * q) / (3_000 / oracle.n_moduli * (p - q)))
        start += m + 1
    w = np.concatenate(rows)
    expected = np.linalg.solve(a.T @ (w[:, None] * a), a.T @ (w * np.concatenate(rhs)))
    np.testing.assert_allclose(oracle.estimate(reports), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("k", "epsilon", "damping"), [(1024, 1.0, 0.0), (5000, 3.0, 50.0), (22_000, 1.0, 0.0)]
)
def test_toeplitz_cg_and_lsmr_decoders_agree(k: int, epsilon: float, damping: float) -> None:
    """The default decoder (the Gohberg–Semencul inverse of the Toeplitz normal matrix),
    CG on the normal equations and LSMR on the stacked design solve the same
    least-squares problem, with and without damping."""
    oracle = ModularSubsetSelection(k=k, epsilon=epsilon, damping=damping)
    rng = simulation_generator(k)
    reports = oracle.randomize(np.minimum(rng.zipf(1.5, 20_000) - 1, k - 1), rng=rng)
    statistics = oracle.statistics(reports)
    by_toeplitz = oracle._solve(statistics, 20_000)
    by_cg = oracle._solve(statistics, 20_000, solver="cg")
    by_lsmr = oracle._solve(statistics, 20_000, solver="lsmr")
    scale = np.abs(by_lsmr).max()
    np.testing.assert_allclose(by_toeplitz, by_lsmr, rtol=0, atol=1e-10 * scale)
    np.testing.assert_allclose(by_cg, by_lsmr, rtol=0, atol=1e-10 * scale)
    np.testing.assert_allclose(by_toeplitz, by_cg, rtol=0, atol=1e-12 * scale)
    # Again, from the generator the design now keeps: the same estimate.
    np.testing.assert_array_equal(oracle._solve(statistics, 20_000), by_toeplitz)
    with pytest.raises(ParameterError, match="solver"):
        oracle._solve(statistics, 20_000, solver="dense")


@pytest.mark.parametrize("shift", [0.0, 0.3])
def test_fast_solve_meets_the_cg_residual_on_vectors_and_matrices(shift: float) -> None:
    """``_Design.solve`` reaches ``‖b − K x‖ ≤ 1e-13 ‖b‖`` (checked with the dense
    ``K``), for one and for several right-hand sides."""
    k = 60
    design = ModularSubsetSelection(k=k, epsilon=1.0, moduli=(37, 41, 43))._design
    dense = scipy.linalg.toeplitz(design.column) + shift * np.eye(k)
    rng = np.random.default_rng(3)
    for b in (rng.standard_normal(k), rng.standard_normal((k, 3))):
        x = design.solve(b, shift)
        residual = b - dense @ x
        assert np.all(np.linalg.norm(residual, axis=0) <= 1e-13 * np.linalg.norm(b, axis=0))


def test_fast_solve_falls_back_to_cg_when_the_design_is_ill_conditioned() -> None:
    # κ(N) ≈ 1e7: the Gohberg–Semencul product and its refinements miss the 1e-13
    # residual, so the solve is the iterative one (CG, then Levinson), as before.
    k = 60
    design = ModularSubsetSelection(k=k, epsilon=1.0, moduli=(7, 9, 11, 37))._design
    dense = scipy.linalg.toeplitz(design.column)
    assert np.linalg.cond(dense) > 1e6
    b = np.random.default_rng(4).standard_normal(k)
    plain = design.inverse().apply(b)
    assert np.linalg.norm(b - dense @ plain) > 1e-13 * np.linalg.norm(b)
    np.testing.assert_array_equal(design.solve(b), design.iterative_solve(b))
    exact = np.linalg.solve(dense, b)
    np.testing.assert_allclose(design.solve(b), exact, rtol=0, atol=1e-9 * np.abs(exact).max())


@pytest.mark.parametrize("epsilon", [2.0, 5.0])
def test_empirical_mse_matches_exact_mse(epsilon: float) -> None:
    # The issue's acceptance test: the empirical MSE is within 10% of exact_mse(n, f).
    k, n, repetitions = 64, 3_000, 250 if epsilon == 2.0 else 450
    data, truth = fixed_dataset(k, n, seed=11)
    oracle = ModularSubsetSelection(k=k, epsilon=epsilon)
    rng = simulation_generator(20261123)
    per_repetition = np.array(
        [
            np.mean((oracle.estimate(oracle.randomize(data, rng=rng)) - truth) ** 2)
            for _ in range(repetitions)
        ]
    )
    empirical = float(per_repetition.mean())
    exact = oracle.exact_mse(n, truth)
    # The mean of R per-repetition MSEs has relative standard deviation sd/(√R·mean),
    # about 1.3-1.5% here (checked below): the ±10% band is > 6 of them,
    # a false-failure probability below 1e-9 under the normal approximation.
    relative_sd = float(per_repetition.std(ddof=1) / math.sqrt(repetitions) / empirical)
    assert relative_sd < 0.10 / 6
    assert empirical == pytest.approx(exact, rel=0.10)
    assert float(np.mean(oracle.variance(n, truth))) == pytest.approx(exact, rel=1e-9)
    if epsilon == 5.0:
        # Skewed data at large ε: the f → 0 oracle understates the MSE (errata 1).
        assert oracle.exact_mse(n) < 0.85 * exact


def test_damping_shrinks_and_zero_damping_is_unbiased() -> None:
    k, n, repetitions = 40, 2_000, 150
    data, truth = fixed_dataset(k, n, seed=3)
    rng = simulation_generator(8)
    plain = ModularSubsetSelection(k=k, epsilon=2.0)
    ridge = ModularSubsetSelection(k=k, epsilon=2.0, moduli=plain.moduli, damping=200.0)
    reports = [plain.randomize(data, rng=rng) for _ in range(repetitions)]
    unbiased = np.array([plain.estimate(r) for r in reports])
    shrunk = np.array([ridge.estimate(r) for r in reports])  # same reports, same fingerprint
    # Unbiased: every coordinate within 5 standard errors (two-sided 5.7e-7 each, < 3e-5
    # for the 40 together).
    z = (unbiased.mean(axis=0) - truth) / np.sqrt(plain.variance(n, truth) / repetitions)
    assert np.abs(z).max() < 5
    # The ridge estimate is the linear shrinkage E f̂ = (N + λI)⁻¹ N f of the same reports.
    normal = n * dense_normal(plain)
    expected = np.linalg.solve(normal + 200.0 * np.eye(k), normal @ truth)
    z_ridge = (shrunk.mean(axis=0) - expected) / np.sqrt(ridge.variance(n, truth) / repetitions)
    assert np.abs(z_ridge).max() < 5
    assert np.linalg.norm(expected) < np.linalg.norm(truth)
    assert np.all(np.linalg.norm(shrunk, axis=1) < np.linalg.norm(unbiased, axis=1))
    standard_error = np.sqrt(ridge.variance(n, truth) / repetitions)
    assert np.abs(expected - truth).max() > 10 * standard_error.max()  # a real bias


def test_statistics_are_additive_and_laid_out_by_block() -> None:
    oracle = ModularSubsetSelection(k=50, epsilon=1.0)
    rng = simulation_generator(4)
    data = rng.integers(0, 50, size=2_000)
    first, second = oracle.randomize(data[:700], rng=rng), oracle.randomize(data[700:], rng=rng)
    a, b = oracle.statistics(first), oracle.statistics(second)
    assert a.shape == (sum(oracle.moduli) + oracle.n_moduli,)
    start = 0
    for m, omega in zip(oracle.moduli, oracle.subset_sizes, strict=True):
        size = a[start]
        assert a[start + 1 : start + 1 + m].sum() == omega * size
        start += m + 1
    assert sum(a[s] for s in oracle._starts) == 700
    aggregator = oracle.aggregator().update(first).update(second)
    np.testing.assert_array_equal(aggregator.statistics, a + b)
    np.testing.assert_allclose(
        aggregator.estimate(),
        (700 * oracle.estimate(first) + 1_300 * oracle.estimate(second)) / 2_000,
        rtol=1e-10,
        atol=1e-13,
    )
    one = oracle.randomize([3], rng=rng)  # empty blocks are fine: unbiased over the blocks
    assert np.isfinite(oracle.estimate(one)).all()
    with pytest.raises(DataError, match="reports but n="):
        oracle._estimate_from_statistics(a, 701, None)


@pytest.mark.parametrize(("k", "epsilon"), [(50, 1.0), (1024, 3.0), (8000, 3.0)])
def test_statistics_count_every_member_of_every_report(k: int, epsilon: float) -> None:
    # Narrow positions reports (one bincount of offset positions) and wide ones (>= 128
    # columns: block by block) both equal a plain count, report by report.
    oracle = ModularSubsetSelection(k=k, epsilon=epsilon)
    rng = simulation_generator(11)
    reports = oracle.randomize(rng.integers(0, k, size=600), rng=rng)
    expected = np.zeros(sum(oracle.moduli) + oracle.n_moduli, dtype=np.int64)
    if oracle.report_form == "bitmap":
        rows = np.unpackbits(reports.arrays["bits"], axis=1)  # numpy.packbits order
        members = [np.flatnonzero(row) for row in rows]
    else:
        members = [row[row >= 0].astype(np.int64) for row in reports.arrays["subsets"]]
    for j, residues in zip(reports.arrays["block"].tolist(), members, strict=True):
        start = int(oracle._starts[j])
        expected[start] += 1
        expected[start + 1 + residues] += 1
    np.testing.assert_array_equal(oracle.statistics(reports), expected)


# --- the attack, bits, channel -----------------------------------------------------------


def test_reconstruction_success_matches_monte_carlo() -> None:
    k, epsilon, n = 60, 2.0, 200_000
    oracle = ModularSubsetSelection(k=k, epsilon=epsilon, moduli=(13, 17, 37))
    prior = zipf(k, 0.8)
    rng = simulation_generator(9)
    values = rng.choice(k, size=n, p=prior)
    reports = oracle.randomize(values, rng=rng)
    block, subsets = reports.arrays["block"], reports.arrays["subsets"]
    omega = np.asarray(oracle.subset_sizes)[block]
    moduli = np.asarray(oracle.moduli)[block]
    s = subsets[np.arange(n), (rng.random(n) * omega).astype(int)]  # uniform member of Z
    members = (k - 1 - s) // moduli + 1  # |{x < k : x ≡ s (mod m_J)}| (s < k here)
    guess = s + moduli * (rng.random(n) * members).astype(int)
    rate = float(np.mean(guess == values))
    exact = oracle.reconstruction_success(prior)
    # Binomial standard error; 5 of them: two-sided false failure 5.7e-7.
    assert abs(rate - exact) < 5 * math.sqrt(exact * (1 - exact) / n)
    uniform = np.mean(
        [
            b.p_star / b.subset_size * min(m, k) / k
            for b, m in zip(oracle._blocks, oracle.moduli, strict=True)
        ]
    )
    assert oracle.reconstruction_success() == pytest.approx(uniform)
    paper = np.mean(
        [
            b.p_star / (b.subset_size * math.ceil(k / m))
            for b, m in zip(oracle._blocks, oracle.moduli, strict=True)
        ]
    )
    assert oracle.paper_reconstruction_success() == pytest.approx(paper)
    assert oracle.paper_reconstruction_success() != pytest.approx(oracle.reconstruction_success())


def test_bits_and_channel() -> None:
    oracle = ModularSubsetSelection(k=10, epsilon=1.0, moduli=(3, 4, 5))
    omegas = oracle.subset_sizes
    per_block = [
        math.ceil(math.log2(math.comb(m, w)) - 1e-9) for m, w in zip((3, 4, 5), omegas, strict=True)
    ]
    assert oracle.bits_per_report() == pytest.approx(2 + sum(per_block) / 3)
    assert oracle.max_bits_per_report() == 2 + max(per_block)
    channel = oracle.channel()
    assert channel.shape == (
        10,
        sum(math.comb(m, w) for m, w in zip((3, 4, 5), omegas, strict=True)),
    )
    np.testing.assert_allclose(channel.sum(axis=1), 1.0)
    # Values congruent modulo every modulus would be indistinguishable; here each pair differs.
    assert len({tuple(row) for row in channel.round(12)}) == 10
    ratio = channel[:, None, :] / channel[None, :, :]
    assert ratio.max() == pytest.approx(math.exp(1.0), rel=1e-12)  # ε-LDP, tightly


# --- parameters and reports -----------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"moduli": (4, 6, 35)}, "coprime"),
        ({"moduli": (3, 5)}, "rank"),
        ({"moduli": (1, 97)}, r"\[2, 2\^31\]"),
        ({"moduli": (97, 101), "n_moduli": 3}, "disagrees"),
        ({"damping": -1.0}, "damping"),
        ({"subset_size": [1, 2]}, "explicit moduli"),
        ({"moduli": (97, 101), "subset_size": [1]}, "one subset size per modulus"),
        ({"n_moduli": 0}, "n_moduli"),
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        ModularSubsetSelection(k=20, epsilon=1.0, **kwargs)  # type: ignore[arg-type]


def test_public_params_rebuild_the_protocol_and_reports_round_trip() -> None:
    oracle = ModularSubsetSelection(k=200, epsilon=2.0, damping=3.0)
    rebuilt = ModularSubsetSelection(k=200, epsilon=2.0, **oracle.public_params())
    assert rebuilt.fingerprint() == oracle.fingerprint()
    assert rebuilt.subset_sizes == oracle.subset_sizes and rebuilt.damping == 3.0
    rng = simulation_generator(2)
    reports = oracle.randomize(rng.integers(0, 200, size=500), rng=rng)
    back = oracle.decode(oracle.encode(reports))
    np.testing.assert_array_equal(back.arrays["subsets"], reports.arrays["subsets"])
    np.testing.assert_allclose(rebuilt.estimate(back), oracle.estimate(reports))
    forged = dict(reports.arrays)
    forged["subsets"] = forged["subsets"].copy()
    forged["subsets"][0, :] = 0  # too many residues for its block
    with pytest.raises(DataError, match="exactly"):
        oracle.statistics(type(reports)(reports.protocol, reports.fingerprint, forged))


def test_variance_needs_the_frequency_vector() -> None:
    oracle = ModularSubsetSelection(k=30, epsilon=1.0)
    approximate = oracle.variance(1_000)
    assert approximate.shape == (30,)
    assert float(approximate.mean()) == pytest.approx(oracle.exact_mse(1_000))
    assert oracle.mse(1_000) == oracle.exact_mse(1_000)
    with pytest.raises(ParameterError, match="scalar f"):
        oracle.variance(1_000, 0.1)
    with pytest.raises(DataError):
        oracle.variance(1_000, np.ones(29))
    # A clipped estimate that does not sum to 1 is rescaled, as the REST route passes it.
    f = zipf(30)
    np.testing.assert_allclose(oracle.variance(1_000, 2 * f), oracle.variance(1_000, f))


def test_large_domain_exact_mse_is_fast_and_agrees_with_its_f_to_0_limit() -> None:
    oracle = ModularSubsetSelection(k=22_000, epsilon=3.0)
    f = zipf(22_000)
    exact = oracle.exact_mse(100_000, f)
    approximate = oracle.exact_mse(100_000)
    assert approximate < exact < 1.05 * approximate  # Zipf over 22 000 values is nearly flat
    choice = oracle.moduli_choice
    assert choice is not None and choice.meets_budget
    assert choice.worst_mse_ratio <= 1.3 and choice.bits_ratio <= 0.8  # the issue's targets
    # The solves behind it, checked with an independent (FFT) Toeplitz product.
    solution = oracle._design.inverse_first_column()
    e0 = np.zeros(22_000)
    e0[0] = 1.0
    residual = scipy.linalg.matmul_toeplitz(oracle._design.column, solution) - e0
    assert np.abs(residual).max() < 1e-10


# --- report forms and reports that are not sets ------------------------------------------


def crafted(oracle: ModularSubsetSelection, arrays: dict[str, np.ndarray]) -> bytes:
    """Bytes made by the wire encoder alone, with no validation (a hostile client)."""
    n = len(arrays["block"])
    return _wire.encode(oracle.fingerprint(), n, oracle.report_schema(), arrays)


def reference_valid(
    oracle: ModularSubsetSelection, block: np.ndarray, rows: list[list[int]]
) -> bool:
    """Each report of block j is a set of exactly ω_j residues of [m_j], written
    independently of the code: members as a sorted list of distinct residues."""
    for j, members in zip(block.tolist(), rows, strict=True):
        omega, m = oracle.subset_sizes[j], oracle.moduli[j]
        if len(members) != omega or len(set(members)) != omega:
            return False
        if any(not 0 <= r < m for r in members):
            return False
    return True


@pytest.mark.parametrize(
    ("k", "epsilon", "form"), [(1024, 1.0, "bitmap"), (1024, 3.0, "positions"), (50, 1.0, "bitmap")]
)
def test_the_smaller_report_form_and_its_wire_bits(k: int, epsilon: float, form: str) -> None:
    oracle = ModularSubsetSelection(k=k, epsilon=epsilon)
    largest, widest = max(oracle.moduli), max(oracle.subset_sizes)
    header = (oracle.n_moduli - 1).bit_length()
    positions = widest * largest.bit_length()  # residues and the -1 padding
    bitmap = 8 * ((largest + 7) // 8)
    assert oracle.report_form == form == ("bitmap" if bitmap < positions else "positions")
    assert f"form={form}" in oracle.fingerprint()
    assert oracle.wire_bits_per_report() == header + min(positions, bitmap)
    assert oracle.bits_per_report() < oracle.wire_bits_per_report()
    rng = simulation_generator(6)
    reports = oracle.randomize(rng.integers(0, k, size=2_000), rng=rng)
    payload = len(oracle.encode(reports)) - len(oracle.fingerprint()) - 14
    assert payload == (2_000 * header + 7) // 8 + (2_000 * min(positions, bitmap) + 7) // 8
    # Both forms count the same thing: c_j[r] = reports of block j whose subset holds r.
    block = reports.arrays["block"]
    if form == "bitmap":
        cells = np.unpackbits(reports.arrays["bits"], axis=1)
        members = [np.flatnonzero(row).tolist() for row in cells]
    else:
        members = [[r for r in row if r >= 0] for row in reports.arrays["subsets"].tolist()]
    assert reference_valid(oracle, block, members)
    expected = np.zeros(oracle._statistics_size(), dtype=np.int64)
    for j, row in zip(block.tolist(), members, strict=True):
        expected[oracle._starts[j]] += 1
        expected[oracle._starts[j] + 1 + np.array(row)] += 1
    np.testing.assert_array_equal(oracle.statistics(reports), expected)
    np.testing.assert_array_equal(
        oracle.statistics(oracle.decode(oracle.encode(reports))), expected
    )


@pytest.mark.parametrize("screen_width", [0, _modular._SCREEN_WIDTH])
def test_forged_positions_reports_are_refused_whole(
    screen_width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Screen width 0: every batch goes through the block-by-block screen first.
    monkeypatch.setattr(_modular, "_SCREEN_WIDTH", screen_width)
    oracle = ModularSubsetSelection(k=200, epsilon=2.0)
    assert oracle.report_form == "positions"
    rng = simulation_generator(12)
    good = oracle.randomize(rng.integers(0, 200, size=300), rng=rng)
    block, subsets = good.arrays["block"], good.arrays["subsets"]
    i = int(np.flatnonzero(np.asarray(oracle.subset_sizes)[block] >= 3)[0])
    j = int(block[i])
    omega, m = oracle.subset_sizes[j], oracle.moduli[j]
    width = subsets.shape[1]

    def forge(row: list[int]) -> np.ndarray:
        forged = subsets.copy()
        forged[i] = row
        return forged

    pad = [-1] * (width - omega)
    cases = [
        ([0] * omega + pad, "must list distinct residues in ascending order"),  # ω copies
        (list(range(omega))[::-1] + pad, "must list distinct residues in ascending order"),
        ([-1, *range(omega), *pad[1:]], "residues first, then only -1 padding"),
        ([*range(1, omega), m, *pad], r"outside \[0, m_j\)"),
        (list(range(omega + 1)) + pad[1:], f"exactly ω_j = {omega} residues"),
        ([*range(omega - 1), -1, *pad], f"exactly ω_j = {omega} residues"),
    ]
    for row, message in cases:
        forged = forge(row)
        pattern = rf"report {i} \(block {j}\) .*{message}"
        with pytest.raises(DataError, match=pattern):
            oracle.decode(crafted(oracle, {"block": block, "subsets": forged}))
        with pytest.raises(DataError, match=pattern):
            oracle.aggregator().update(
                Reports("mss", oracle.fingerprint(), {"block": block, "subsets": forged})
            )
    assert oracle.decode(crafted(oracle, good.arrays)).n == 300


def test_forged_bitmap_reports_are_refused_whole() -> None:
    oracle = ModularSubsetSelection(k=50, epsilon=1.0)
    assert oracle.report_form == "bitmap"
    rng = simulation_generator(13)
    good = oracle.randomize(rng.integers(0, 50, size=300), rng=rng)
    block, bits = good.arrays["block"], good.arrays["bits"]
    i = int(np.flatnonzero(np.asarray(oracle.moduli)[block] < max(oracle.moduli))[0])
    j = int(block[i])
    m = oracle.moduli[j]
    cells = np.unpackbits(bits, axis=1)
    extra, beyond = cells.copy(), cells.copy()
    extra[i, np.flatnonzero(extra[i, :m] == 0)[0]] = 1
    beyond[i, np.flatnonzero(beyond[i] == 1)[0]] = 0
    beyond[i, m] = 1  # a residue m_j: still ω_j bits, but not a residue of block j
    for forged, message in [
        (extra, f"report {i} \\(block {j}\\) sets {oracle.subset_sizes[j] + 1} bits"),
        (beyond, f"report {i} \\(block {j}\\) sets a bit at or past position {m} "),
    ]:
        arrays = {"block": block, "bits": np.packbits(forged, axis=1)}
        with pytest.raises(DataError, match=message):
            oracle.decode(crafted(oracle, arrays))
        with pytest.raises(DataError, match=message):
            oracle.estimate(Reports("mss", oracle.fingerprint(), arrays))
    assert oracle.decode(crafted(oracle, good.arrays)).n == 300


@settings(max_examples=150, deadline=None)
@given(
    data=st.lists(
        st.tuples(st.integers(0, 2), st.lists(st.integers(-1, 12), min_size=4, max_size=4)),
        min_size=1,
        max_size=6,
    ),
    screened=st.booleans(),
)
def test_malformed_positions_are_refused_exactly_when_not_sets(
    data: list[tuple[int, list[int]]], screened: bool
) -> None:
    with mock.patch.object(_modular, "_SCREEN_WIDTH", 0 if screened else 1_000):
        check_positions_against_reference(data)


def check_positions_against_reference(data: list[tuple[int, list[int]]]) -> None:
    oracle = ModularSubsetSelection(k=20, epsilon=1.0, moduli=(7, 11, 13), subset_size=[2, 3, 4])
    assert oracle.report_form == "positions"
    block = np.array([b for b, _ in data], dtype=np.int64)
    subsets = np.array([row for _, row in data], dtype=np.int64)
    # Valid: the first ω_j entries are the members (ascending), the rest -1.
    canonical = all(
        row == sorted(row[: oracle.subset_sizes[b]]) + [-1] * (4 - oracle.subset_sizes[b])
        for b, row in data
    )
    valid = canonical and reference_valid(
        oracle, block, [row[: oracle.subset_sizes[b]] for b, row in data]
    )
    payload = crafted(oracle, {"block": block, "subsets": subsets})
    if not valid:
        with pytest.raises(DataError, match=r"report \d+ \(block \d\)"):
            oracle.decode(payload)
        return
    np.testing.assert_array_equal(oracle.decode(payload).arrays["subsets"], subsets)


@settings(max_examples=200, deadline=None)
@given(
    data=st.lists(
        st.tuples(st.integers(0, 2), st.sets(st.integers(0, 23), min_size=2, max_size=12)),
        min_size=1,
        max_size=6,
    ),
    honest=st.booleans(),
)
def test_malformed_bitmaps_are_refused_exactly_when_not_sets(
    data: list[tuple[int, set[int]]], honest: bool
) -> None:
    # Rows are arbitrary sets of bit positions of the 24-bit rows (past m_j, or of the
    # wrong size, or right), or honest reports: accepted iff each is a set of exactly
    # ω_j residues of [m_j].
    oracle = ModularSubsetSelection(k=30, epsilon=1.0, moduli=(7, 13, 23), subset_size=[3, 6, 11])
    assert oracle.report_form == "bitmap"
    block = np.array([b for b, _ in data], dtype=np.int64)
    cells = np.zeros((len(data), 24), dtype=np.uint8)
    for i, (_, members) in enumerate(data):
        cells[i, sorted(members)] = 1
    bits = np.packbits(cells, axis=1)
    if honest:
        made = oracle.randomize(block * 7 % 30, rng=simulation_generator(len(data)))
        block, bits = made.arrays["block"], made.arrays["bits"]
        cells = np.unpackbits(bits, axis=1)
    valid = reference_valid(oracle, block, [np.flatnonzero(row).tolist() for row in cells])
    payload = crafted(oracle, {"block": block, "bits": bits})
    if not valid:
        with pytest.raises(DataError, match="subset bitmap"):
            oracle.decode(payload)
        return
    np.testing.assert_array_equal(oracle.decode(payload).arrays["bits"], bits)
