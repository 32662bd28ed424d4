"""The continual counters against their closed forms.

Statistical tests use fixed seeds; each states α, the probability that it fails
although the code is exactly right.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

import privaudit.mechanisms.continual as continual
from privaudit import simulation_generator
from privaudit.errors import DataError, LimitExceededError, ParameterError
from privaudit.guarantees import Notion
from privaudit.mechanisms.continual import (
    BinaryTreeCounter,
    BufferedToeplitzCounter,
    ContinualCounter,
    HonakerCounter,
    MatrixFactorizationCounter,
    sqrt_toeplitz_coefficients,
)
from privaudit.mechanisms.continual._toeplitz import COEFFICIENT_BITS
from privaudit.registry import mechanisms

COUNTERS = [
    BinaryTreeCounter,
    HonakerCounter,
    MatrixFactorizationCounter,
    BufferedToeplitzCounter,
]
NOISES = [{"noise_multiplier": 1.5}, {"epsilon": 2.0}]


def noise_id(noise: dict[str, float]) -> str:
    return "gaussian" if "noise_multiplier" in noise else "laplace"


# --- strategy matrices, built densely for small T ------------------------------------


def tree_strategy(T: int) -> np.ndarray:  # noqa: N803
    """One row per dyadic node (t - 2^j, t] with 2^j | t <= T, one column per item."""
    rows = []
    for t in range(1, T + 1):
        j = 0
        while t % (1 << j) == 0:
            row = np.zeros(T)
            row[t - (1 << j) : t] = 1.0
            rows.append(row)
            j += 1
    return np.array(rows)


def toeplitz(coefficients: np.ndarray) -> np.ndarray:
    T = coefficients.size  # noqa: N806
    matrix = np.zeros((T, T))
    for j in range(T):
        matrix[j:, j] = coefficients[: T - j]
    return matrix


@pytest.mark.parametrize("T", [1, 2, 5, 8, 13, 64])
@pytest.mark.parametrize("cls", [BinaryTreeCounter, HonakerCounter])
def test_tree_sensitivity_is_the_largest_column_norm(cls: type[ContinualCounter], T: int) -> None:  # noqa: N803
    strategy = tree_strategy(T)
    l1 = np.abs(strategy).sum(axis=0).max()
    l2 = np.sqrt((strategy**2).sum(axis=0)).max()
    assert cls(T=T, epsilon=1.0).sensitivity == pytest.approx(l1, rel=1e-15)
    assert cls(T=T, noise_multiplier=1.0).sensitivity == pytest.approx(l2, rel=1e-15)


@pytest.mark.parametrize("T", [1, 2, 7, 64])
def test_toeplitz_sensitivity_is_the_largest_column_norm(T: int) -> None:  # noqa: N803
    gaussian = MatrixFactorizationCounter(T=T, noise_multiplier=1.0)
    laplace = MatrixFactorizationCounter(T=T, epsilon=1.0)
    strategy = toeplitz(gaussian.strategy_coefficients)
    assert gaussian.sensitivity == pytest.approx(np.linalg.norm(strategy, axis=0).max(), rel=1e-14)
    assert laplace.sensitivity == pytest.approx(np.abs(strategy).sum(axis=0).max(), rel=1e-14)


def test_square_root_coefficients_square_to_the_prefix_sum_matrix() -> None:
    T = 12  # noqa: N806
    exact = [Fraction(math.comb(2 * j, j), 4**j) for j in range(T)]
    # Convolving the sequence with itself gives all ones: C·C = A exactly.
    assert all(sum(exact[i] * exact[n - i] for i in range(n + 1)) == 1 for n in range(T))
    np.testing.assert_allclose(sqrt_toeplitz_coefficients(T), [float(c) for c in exact], rtol=1e-15)
    counter = MatrixFactorizationCounter(T=T, noise_multiplier=1.0)
    used = counter.strategy_coefficients
    assert np.abs(used - [float(c) for c in exact]).max() <= 2.0 ** -(COEFFICIENT_BITS + 1)
    assert ((used * 2**COEFFICIENT_BITS) == np.rint(used * 2**COEFFICIENT_BITS)).all()
    # The decoder undoes the rounded strategy: B·C = A (the releases are unbiased).
    product = toeplitz(counter.decoder_coefficients) @ toeplitz(used)
    np.testing.assert_allclose(product, np.tril(np.ones((T, T))), atol=1e-12)


# --- closed forms (reference notes §5.2) ----------------------------------------------


@pytest.mark.parametrize("T", [1, 16, 1000, 1024])
def test_tree_variances_reproduce_the_reference_closed_forms(T: int) -> None:  # noqa: N803
    L = T.bit_length()  # noqa: N806
    sigma, epsilon = 1.5, 0.7
    tree_g = BinaryTreeCounter(T=T, noise_multiplier=sigma)
    tree_l = BinaryTreeCounter(T=T, epsilon=epsilon)
    honaker = HonakerCounter(T=T, noise_multiplier=sigma)
    steps = range(1, T + 1)
    gaussian = [sigma**2 * L * t.bit_count() for t in steps]
    laplace = [2 * L**2 * t.bit_count() / epsilon**2 for t in steps]
    per_height = [2**j / (2 ** (j + 1) - 1) for j in range(L)]
    online = [sigma**2 * L * sum(per_height[j] for j in range(L) if t >> j & 1) for t in steps]
    np.testing.assert_allclose([tree_g.variance(t) for t in steps], gaussian, rtol=1e-12)
    np.testing.assert_allclose([tree_l.variance(t) for t in steps], laplace, rtol=1e-9)
    np.testing.assert_allclose([honaker.variance(t) for t in steps], online, rtol=1e-12)
    assert tree_g.max_variance() == pytest.approx(max(gaussian), rel=1e-12)
    assert tree_l.max_variance() == pytest.approx(max(laplace), rel=1e-9)
    assert honaker.max_variance() == pytest.approx(max(online), rel=1e-12)


def test_honaker_node_variance_falls_to_one_half() -> None:
    variances = HonakerCounter(T=2**20, noise_multiplier=1.0).node_variances
    np.testing.assert_allclose(
        variances, [2**j / (2 ** (j + 1) - 1) for j in range(21)], rtol=1e-13
    )


@pytest.mark.parametrize(("T", "S"), [(2**10, 3.2726), (2**16, 4.5964), (2**20, 5.4790)])
def test_toeplitz_variance_reproduces_the_reference(T: int, S: float) -> None:  # noqa: N803
    coefficients = sqrt_toeplitz_coefficients(T)
    exact_s = float(np.sum(coefficients**2))
    assert exact_s == pytest.approx(S, abs=5e-5)  # the notes give S to 4 decimals
    sigma = 1.3
    counter = MatrixFactorizationCounter(T=T, noise_multiplier=sigma)
    # Var(t) = σ² S Σ_{j<t} c_j² for the exact square root; ours rounds the strategy to
    # 2^-20, which moves the variances by a relative 1e-5 at most.
    cumulative = np.cumsum(coefficients**2)
    for t in (1, 2, 3, T // 3, T):
        assert counter.variance(t) == pytest.approx(
            sigma**2 * exact_s * cumulative[t - 1], rel=1e-5
        )
    assert counter.max_variance() == pytest.approx(sigma**2 * exact_s**2, rel=1e-5)


def test_square_root_factorization_beats_the_tree_tenfold_at_1024() -> None:
    tree = BinaryTreeCounter(T=1024, noise_multiplier=1.0).max_variance()
    honaker = HonakerCounter(T=1024, noise_multiplier=1.0).max_variance()
    toeplitz_max = MatrixFactorizationCounter(T=1024, noise_multiplier=1.0).max_variance()
    assert toeplitz_max < honaker < tree
    assert tree / toeplitz_max > 10


# --- simulation against the closed forms ----------------------------------------------

T_SIM = 16
RUNS = 800
ALPHA = 1e-6  # per test; split over the T_SIM steps (Bonferroni) and both tails


def simulate(
    cls: type[ContinualCounter], noise: dict[str, float], seed: int
) -> tuple[np.ndarray, ContinualCounter]:
    """Errors (release - true prefix sum), one row per independent run."""
    rng = simulation_generator(seed)
    stream = rng.integers(0, 9, size=T_SIM) / 8  # on the grid: snapping is exact
    truth = np.cumsum(stream)
    errors = np.empty((RUNS, T_SIM))
    counter: ContinualCounter | None = None
    for run in range(RUNS):
        counter = cls(T=T_SIM, rng=rng, **noise)
        errors[run] = counter.push_many(stream) - truth
    assert counter is not None
    return errors, counter


@pytest.mark.parametrize("noise", NOISES, ids=noise_id)
@pytest.mark.parametrize("cls", COUNTERS)
def test_empirical_variance_and_mean_match_the_closed_form(
    cls: type[ContinualCounter], noise: dict[str, float]
) -> None:
    seed = 10 * COUNTERS.index(cls) + NOISES.index(noise)
    errors, counter = simulate(cls, noise, seed=seed)
    variances = np.array([counter.variance(t) for t in range(1, T_SIM + 1)])
    mse = (errors**2).mean(axis=0)
    level = ALPHA / (2 * T_SIM)
    if "noise_multiplier" in noise:
        # Each release error is a sum of discrete Gaussians of scale ~2^34 grid units,
        # Gaussian to far below α: RUNS·MSE/Var ~ χ²(RUNS) exactly, mean ~ N(0, Var/RUNS).
        low = stats.chi2.ppf(level, RUNS) / RUNS
        high = stats.chi2.isf(level, RUNS) / RUNS
        assert ((mse / variances > low) & (mse / variances < high)).all(), mse / variances
    else:
        # Sums of Laplace noise: MSE is a mean of RUNS i.i.d. terms with variance
        # μ4 - Var², μ4 = 3Var² + Σ κ4 (κ4 = 12b⁴ = 3 Var_node² per Laplace node; for the
        # Toeplitz counter Σ_j b_j⁴ of the decoder weights). Normal approximation (CLT at
        # 800 runs), α split as above.
        kurtosis_excess = laplace_excess_kurtosis(counter)
        sd = np.sqrt((2 * variances**2 + kurtosis_excess) / RUNS)
        z = stats.norm.isf(level)
        assert (np.abs(mse - variances) < z * sd).all(), (mse - variances) / sd
    z_mean = errors.mean(axis=0) / np.sqrt(variances / RUNS)
    assert (np.abs(z_mean) < stats.norm.isf(level)).all(), z_mean


def laplace_excess_kurtosis(counter: ContinualCounter) -> np.ndarray:
    """Σ κ4 of the release errors, per step: 3·Var_node² × Σ (weight of node)⁴."""
    node = counter.noise_variance
    steps = range(1, T_SIM + 1)
    if isinstance(counter, MatrixFactorizationCounter | BufferedToeplitzCounter):
        b4 = np.cumsum(counter.decoder_coefficients**4)
        return 3 * node**2 * b4
    if isinstance(counter, BinaryTreeCounter):
        return np.array([3 * node**2 * t.bit_count() for t in steps])
    # Honaker: every node's estimate is a fixed linear combination of the noise of its
    # subtree; the κ4 of a sum is the sum of the κ4s weighted by the fourth powers.
    assert isinstance(counter, HonakerCounter)
    fourth = [1.0]
    for j in range(1, counter.levels):
        w = counter._own_weight[j]
        fourth.append(w**4 + 2 * (1 - w) ** 4 * fourth[j - 1])
    return np.array(
        [3 * node**2 * sum(fourth[j] for j in range(t.bit_length()) if t >> j & 1) for t in steps]
    )


# --- streaming, grid, guarantee -------------------------------------------------------


@pytest.mark.parametrize("cls", [BinaryTreeCounter, HonakerCounter])
def test_tree_state_stays_logarithmic(cls: type[ContinualCounter]) -> None:
    T = 3000  # noqa: N806
    counter = cls(T=T, noise_multiplier=1.0, rng=simulation_generator(0))
    largest = 0
    for x in simulation_generator(1).random(T):
        counter.push(float(x))
        largest = max(largest, counter.state_size)
    assert largest <= 2 * T.bit_length()


def test_toeplitz_state_is_two_numbers_per_step() -> None:
    assert MatrixFactorizationCounter(T=100, noise_multiplier=1.0).state_size == 200


@pytest.mark.parametrize("cls", [BinaryTreeCounter])
def test_tree_releases_lie_on_the_grid(cls: type[ContinualCounter]) -> None:
    counter = cls(T=50, epsilon=1.0, rng=simulation_generator(3))
    releases = counter.push_many(simulation_generator(4).random(50))
    scaled = releases * 2.0**counter.grid_bits
    assert (scaled == np.rint(scaled)).all()


@pytest.mark.parametrize("cls", COUNTERS)
def test_guarantee_and_defaults(cls: type[ContinualCounter]) -> None:
    pure = cls(T=10, epsilon=0.5)
    assert pure.guarantee.notion is Notion.PURE and pure.guarantee.epsilon == 0.5
    assert pure.secure  # rng=None is the ChaCha20 release source
    zcdp = cls(T=10, noise_multiplier=2.0)
    assert zcdp.guarantee.notion is Notion.ZCDP and zcdp.guarantee.rho == pytest.approx(1 / 8)
    assert not cls(T=10, epsilon=1.0, rng=simulation_generator(0)).secure
    assert mechanisms.get(cls.name) is cls
    # The realised noise is at least the nominal one (scales are rounded up).
    assert pure._laplace_scale * 0.5 >= pure._l1_units()  # type: ignore[operator]
    assert zcdp._sigma2 >= 4 * zcdp._l2_squared_units()  # type: ignore[operator]


def test_public_names() -> None:
    assert set(continual.__all__) >= {
        "BinaryTreeCounter",
        "HonakerCounter",
        "MatrixFactorizationCounter",
    }


# --- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize("cls", COUNTERS)
def test_bad_parameters_are_refused(cls: type[ContinualCounter]) -> None:
    for T in (0, -1, 2.5, True, "8", 2**25):  # noqa: N806
        with pytest.raises(ParameterError, match="horizon"):
            cls(T=T, epsilon=1.0)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="exactly one"):
        cls(T=8)
    with pytest.raises(ParameterError, match="exactly one"):
        cls(T=8, epsilon=1.0, noise_multiplier=1.0)
    for bad in (0.0, -1.0, math.nan, math.inf, True):
        with pytest.raises(ParameterError, match="epsilon"):
            cls(T=8, epsilon=bad)
        with pytest.raises(ParameterError, match="noise_multiplier"):
            cls(T=8, noise_multiplier=bad)
    with pytest.raises(ParameterError, match="rng"):
        cls(T=8, epsilon=1.0, rng=5)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="epsilon"):
        cls(T=8, epsilon=1e-30)  # a noise scale beyond the samplers
    with pytest.raises(TypeError):
        cls(8, epsilon=1.0)  # type: ignore[misc]


@pytest.mark.parametrize("cls", COUNTERS)
def test_bad_items_and_the_horizon_are_refused(cls: type[ContinualCounter]) -> None:
    counter = cls(T=3, noise_multiplier=1.0, rng=simulation_generator(0))
    for bad in (-0.1, 1.5, math.nan, math.inf, "0.5", True, None):
        with pytest.raises(DataError):
            counter.push(bad)  # type: ignore[arg-type]
    with pytest.raises(DataError):
        counter.push_many([0.5, 2.0])
    assert counter.t == 0  # nothing was consumed by the refused calls
    counter.push_many([0.0, 1.0])
    counter.push(0.5)
    with pytest.raises(LimitExceededError, match="horizon"):
        counter.push(0.5)
    with pytest.raises(LimitExceededError):
        cls(T=2, epsilon=1.0).push_many([0.1, 0.2, 0.3])
    for t in (0, 4, 1.0):
        with pytest.raises(ParameterError):
            counter.variance(t)  # type: ignore[arg-type]


# --- the buffered (BLT) counter ---------------------------------------------------------


def blt_with_noise(T: int, noise: list[int]) -> BufferedToeplitzCounter:  # noqa: N803
    """A BLT counter whose noise is ``noise`` (given as drawn-ahead noise of a state)."""
    fresh = BufferedToeplitzCounter(T=T, noise_multiplier=1.0, draw_ahead=1)
    state = fresh.state().to_dict()
    state["pending_noise"] = noise
    return BufferedToeplitzCounter.from_state(state)


@pytest.mark.parametrize("T", [1, 2, 7, 64, 300])
def test_blt_sensitivity_bounds_the_largest_column_norm_tightly(T: int) -> None:  # noqa: N803
    gaussian = BufferedToeplitzCounter(T=T, noise_multiplier=1.0)
    laplace = BufferedToeplitzCounter(T=T, epsilon=1.0)
    strategy = toeplitz(gaussian.strategy_coefficients)
    l2 = np.linalg.norm(strategy, axis=0).max()
    l1 = np.abs(strategy).sum(axis=0).max()
    # An upper bound (it covers the integer encoder's rounding), a relative 1e-9 above.
    assert l2 <= gaussian.sensitivity <= l2 * (1 + 1e-9)
    assert l1 <= laplace.sensitivity <= l1 * (1 + 1e-9)


def test_blt_decoder_undoes_the_strategy() -> None:
    counter = BufferedToeplitzCounter(T=200, noise_multiplier=1.0)
    product = toeplitz(counter.decoder_coefficients) @ toeplitz(counter.strategy_coefficients)
    np.testing.assert_allclose(product, np.tril(np.ones((200, 200))), atol=1e-9)


def test_blt_streaming_releases_are_the_dense_ones() -> None:
    # Zero noise: the releases are the prefix sums (the integer encoder's rounding is
    # far below 1e-9). Known noise z: the releases are the prefix sums plus B z.
    T = 500  # noqa: N806
    items = simulation_generator(3).integers(0, 9, size=T) / 8  # on the grid
    silent = blt_with_noise(T, [0] * T)
    np.testing.assert_allclose(silent.push_many(items), np.cumsum(items), rtol=0, atol=1e-9)
    noise = simulation_generator(4).integers(-(2**40), 2**40, size=T)
    counter = blt_with_noise(T, noise.tolist())
    unit = 2.0 ** -(counter.grid_bits + COEFFICIENT_BITS)
    expected = np.cumsum(items) + toeplitz(counter.decoder_coefficients) @ noise * unit
    np.testing.assert_allclose(counter.push_many(items), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("T", "within"), [(2**10, 1.0005), (2**16, 1.005)])
def test_blt_largest_variance_is_close_to_the_square_root(T: int, within: float) -> None:  # noqa: N803
    s = float(np.sum(sqrt_toeplitz_coefficients(T) ** 2))
    blt = BufferedToeplitzCounter(T=T, noise_multiplier=1.0)
    # Optimal among Toeplitz strategies: the square root's S² [DMPS24]; BLT is a fit.
    assert s * s * (1 - 1e-6) <= blt.max_variance() <= s * s * within
    assert blt.max_variance() == blt.variance(T)
    # The closed form (no table of size T) is the table's sum of squares.
    table = np.cumsum(blt.decoder_coefficients**2) * blt.noise_variance
    for t in (1, 2, 3, T // 3, T):
        assert blt.variance(t) == pytest.approx(table[t - 1], rel=1e-11)
    assert blt.state_size == BufferedToeplitzCounter.state_size_bound(T) == 19
