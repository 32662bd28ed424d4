"""The square-root Toeplitz factorization counter (matrix mechanism for prefix sums)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from privaudit.errors import ParameterError
from privaudit.mechanisms.continual._base import _MIN_GRID_BITS, ContinualCounter, noise_grid_bits
from privaudit.mechanisms.continual._state import (
    check_array_names,
    state_array,
    state_float,
    state_int,
)
from privaudit.registry import mechanisms

__all__ = ["MatrixFactorizationCounter", "inverse_power_series", "sqrt_toeplitz_coefficients"]

FloatArray = npt.NDArray[np.float64]

COEFFICIENT_BITS = 20  # the strategy's coefficients are multiples of 2^-20
_GRID_BITS_MAX = 32
_INT64_DOT_BITS = 61  # |Q x| < 2^61: the exact int64 dot product cannot overflow


def sqrt_toeplitz_coefficients(n: int) -> FloatArray:
    """``c_0 = 1, c_j = c_{j-1}(2j - 1)/(2j)`` (= binom(2j, j)/4^j), ``j < n``.

    The lower-triangular Toeplitz matrix ``C`` of these is the square root of the
    prefix-sum matrix ``A`` (the coefficients of ``(1 - x)^{-1/2}``) [FHU23]_.
    """
    j = np.arange(1, n, dtype=float)
    return np.concatenate([[1.0], np.cumprod((2.0 * j - 1.0) / (2.0 * j))])


def inverse_power_series(f: FloatArray, n: int) -> FloatArray:
    """The first ``n`` coefficients of ``1/f(x)`` (``f[0] != 0``), by Newton iteration
    ``g ← g(2 - f g) mod x^{2m}`` with FFT products: ``O(n log n)``."""
    if n <= 512:  # the direct recurrence g_i = -(Σ_{j=1..i} f_j g_{i-j})/f_0 is faster here
        f = np.concatenate([f[:n], np.zeros(max(0, n - f.size))])
        g = np.zeros(n)
        g[0] = 1.0 / f[0]
        for i in range(1, n):
            g[i] = -float(np.dot(f[1 : i + 1], g[i - 1 :: -1])) / f[0]
        return g
    from scipy.signal import fftconvolve  # here: importing scipy.signal takes ~0.3 s

    g = np.array([1.0 / f[0]])
    m = 1
    while m < n:
        m = min(2 * m, n)
        fg = fftconvolve(f[:m], g)[:m]
        correction = fftconvolve(g, fg)[:m]
        g = np.concatenate([g, np.zeros(m - g.size)]) * 2.0 - correction
    return g[:n]


def strategy_input_bits(counter: ContinualCounter, *, norm1: float, norm2_squared: float) -> int:
    """The bits of the input grid left for a counter whose strategy has column norms
    ``norm1`` (ℓ1) and ``norm2_squared`` (ℓ2²) and coefficients on the ``2^-20`` grid:
    the samplers' grid for its noise scale, less :data:`COEFFICIENT_BITS`.

    Raises
    ------
    ParameterError
        If fewer than the minimum are left (a tiny epsilon or a huge noise_multiplier).
    """
    if counter.epsilon is not None:
        noise_value_scale = norm1 / counter.epsilon
    else:
        assert counter.noise_multiplier is not None
        noise_value_scale = math.sqrt(norm2_squared) * counter.noise_multiplier
    noise_bits = noise_grid_bits(noise_value_scale) - COEFFICIENT_BITS
    if noise_bits < _MIN_GRID_BITS:
        raise ParameterError(
            f"a noise scale of {noise_value_scale:g} leaves {noise_bits} bits for this "
            f"counter's input grid (its strategy takes {COEFFICIENT_BITS} of the samplers' "
            f"bits), fewer than {_MIN_GRID_BITS}; use a larger epsilon or a smaller "
            "noise_multiplier"
        )
    return noise_bits


@mechanisms.register("continual.sqrt_toeplitz")
class MatrixFactorizationCounter(ContinualCounter):
    """Continual counting by the square-root Toeplitz factorization [FHU23]_ [HUU23]_.

    The prefix-sum matrix is ``A = B·C`` with ``C`` lower-triangular Toeplitz; the
    counter privatises ``y = C x + z`` and releases ``B y = A x + B z``. Here ``C`` has
    the square-root coefficients ``c_j = binom(2j, j)/4^j`` rounded to multiples of
    ``2^-20`` (:data:`COEFFICIENT_BITS`), so that ``C x`` is an *integer* on the grid of
    the snapped inputs and the noise is exact discrete noise on that grid; ``B = A C^{-1}``
    is then computed in floating point (post-processing of ``y``, so its rounding cannot
    leak; it only perturbs the releases by a relative ``~1e-12``). With unrounded
    coefficients ``B = C`` and this is the mechanism of [FHU23]_, which is optimal for the
    largest per-step error among Toeplitz factorizations [DMPS24]_.

    Sensitivity: the first column of ``C`` is the longest, ``Δ₂ = (Σ_{j<T} c_j²)^{1/2} =
    √S`` and ``Δ₁ = Σ_{j<T} c_j``. With ``noise_multiplier`` σ, ``z`` is discrete Gaussian
    of variance ``σ²S`` (standard deviation ``σ√S``), and the ``T`` releases are
    ρ-zCDP with ``ρ = 1/(2σ²)`` [CKS20]_; with ``epsilon``, discrete Laplace of scale
    ``Δ₁/ε``, ε-DP (valid, but ``Δ₁`` grows like ``√T``: prefer the tree for pure DP).
    ``Var(t) = Var(z) · Σ_{j<t} b_j²``; for exact square-root coefficients this is
    ``σ² S Σ_{j<t} c_j²``, largest at ``t = T`` (``σ² S²``).

    Cost (dense Toeplitz, exact): the state is the snapped inputs and the privatised
    ``y`` so far (``2T`` numbers, preallocated: 16 bytes per step of the horizon) plus
    the tables ``c`` and ``b`` (16 bytes per step); push number ``t`` computes two dot
    products of length ``t`` (exact ``int64`` for ``C x``, float for ``B y``), so a
    stream of ``T`` pushes costs ``O(T²)``. For long streams use
    :class:`~privaudit.mechanisms.continual.BufferedToeplitzCounter`: ``O(1)`` per push
    and state, within 1% of this counter's largest variance up to ``T = 2^20``.

    Parameters
    ----------
    T, epsilon, noise_multiplier, rng, draw_ahead
        As for :class:`~privaudit.mechanisms.continual.BinaryTreeCounter`.

    The state (:meth:`state`, :meth:`from_state`) holds the ``t`` snapped inputs so far
    (``inputs``, integers in units of ``2^-k``) and the ``t`` private measurements
    ``y`` (``measurements``, floats in units of ``2^-(k+20)``): ``2t`` numbers.

    References
    ----------
    .. [FHU23] H. Fichtenberger, M. Henzinger and J. Upadhyay, "Constant matters:
       fine-grained error bound on differentially private continual observation",
       ICML 2023 (arXiv 2202.11205).
    .. [HUU23] M. Henzinger, J. Upadhyay and S. Upadhyay, "Almost tight error bounds on
       differentially private continual counting", SODA 2023 (arXiv 2211.05006).
    .. [DMPS24] K. Dvijotham, H. B. McMahan, K. Pillutla, T. Steinke and A. Thakurta,
       "Efficient and near-optimal noise generation for streaming differential privacy",
       FOCS 2024 (arXiv 2404.16706).

    Examples
    --------
    >>> from privaudit import simulation_generator
    >>> counter = MatrixFactorizationCounter(
    ...     T=1024, noise_multiplier=1.0, rng=simulation_generator(0)
    ... )
    >>> round(counter.max_variance(), 3)  # σ² S², S = Σ_{j<1024} c_j² ≈ 3.2726
    10.71
    """

    name = "continual.sqrt_toeplitz"

    def _setup(self) -> None:
        T = self.T  # noqa: N806
        exact = sqrt_toeplitz_coefficients(T)
        self._q = np.rint(exact * 2.0**COEFFICIENT_BITS).astype(np.int64)  # integer strategy
        q_sum = int(self._q.sum())
        # Inputs are snapped as finely as keeps |C x| (in units 2^-(k+20)) inside int64
        # and the noise scale inside the samplers' range.
        norm2 = float(np.sum((self._q / 2.0**COEFFICIENT_BITS) ** 2))
        noise_bits = strategy_input_bits(
            self, norm1=q_sum / 2.0**COEFFICIENT_BITS, norm2_squared=norm2
        )
        self._grid_bits = min(_GRID_BITS_MAX, _INT64_DOT_BITS - q_sum.bit_length(), noise_bits)
        self._q_reversed = np.ascontiguousarray(self._q[::-1])
        strategy = self._q / 2.0**COEFFICIENT_BITS
        decoder = np.cumsum(inverse_power_series(strategy, T))  # B = A C^{-1}
        self._b_reversed = np.ascontiguousarray(decoder[::-1])
        self._b_cumulative_squares = np.cumsum(decoder**2)
        self._inputs = np.zeros(T, dtype=np.int64)
        self._measurements = np.zeros(T, dtype=np.float64)  # y, already private

    @property
    def strategy_coefficients(self) -> FloatArray:
        """The coefficients of ``C`` actually used (multiples of ``2^-20``)."""
        return self._q / 2.0**COEFFICIENT_BITS

    @property
    def decoder_coefficients(self) -> FloatArray:
        """The coefficients of ``B = A C^{-1}`` (float)."""
        return self._b_reversed[::-1].copy()

    @property
    def grid_bits(self) -> int:
        return self._grid_bits

    def _noise_unit_bits(self) -> int:
        return self._grid_bits + COEFFICIENT_BITS

    def _l1_units(self) -> int:
        return int(self._q.sum()) << self._grid_bits

    def _l2_squared_units(self) -> int:
        return sum(int(v) * int(v) for v in self._q.tolist()) << (2 * self._grid_bits)

    def _advance(self, x: int) -> float:
        t = self._t
        self._inputs[t - 1] = x
        # (C x)_t exactly, then y_t = (C x)_t + z_t in Python ints (no overflow).
        strategy_row = int(np.dot(self._inputs[:t], self._q_reversed[self.T - t :]))
        self._measurements[t - 1] = float(strategy_row + self._one_noise())
        release = float(np.dot(self._measurements[:t], self._b_reversed[self.T - t :]))
        return release * 2.0 ** -self._noise_unit_bits()

    def _noise_total(self) -> int:
        return self.T

    def _unit_variance_factor(self, t: int) -> float:
        return float(self._b_cumulative_squares[t - 1])

    def max_variance(self) -> float:
        return self.noise_variance * float(self._b_cumulative_squares.max())

    @property
    def state_size(self) -> int:
        return 2 * self.T

    @classmethod
    def state_size_bound(cls, T: int) -> int:  # noqa: N803
        return 2 * T

    def _export_arrays(self) -> dict[str, list[int | float | None]]:
        t = self._t
        return {
            "inputs": self._inputs[:t].tolist(),
            "measurements": self._measurements[:t].tolist(),
        }

    def _import_arrays(self, arrays: Mapping[str, Sequence[int | float | None]]) -> None:
        check_array_names(arrays, ("inputs", "measurements"), self.name)
        t, top = self._t, 1 << self._grid_bits
        inputs = state_array(arrays, "inputs", t)
        measurements = state_array(arrays, "measurements", t)
        self._inputs[:t] = [
            state_int(v, f"arrays.inputs[{i}]", 0, top) for i, v in enumerate(inputs)
        ]
        self._measurements[:t] = [
            state_float(v, f"arrays.measurements[{i}]") for i, v in enumerate(measurements)
        ]
