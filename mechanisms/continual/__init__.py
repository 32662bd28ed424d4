"""Continual observation: counters that release a running sum after every item.

Four counters over a horizon ``T`` of items ``x_t ∈ [0, 1]``, with one constructor
``Counter(*, T, epsilon=None, noise_multiplier=None, rng=None)`` (exactly one of
``epsilon``, for discrete Laplace noise and pure ε-DP, or ``noise_multiplier``, for
discrete Gaussian noise and ρ-zCDP) and one API: ``push(x)`` returns the private
running sum, ``push_many(xs)``, ``variance(t)`` and ``max_variance()`` (exact),
``sensitivity``, ``guarantee``, and ``state()`` / ``Counter.from_state(state)`` to
store a stream and continue it later with the same noise (:class:`CounterState`).

* :class:`BinaryTreeCounter`: the binary mechanism, ``O(log T)`` state.
* :class:`HonakerCounter`: the same tree with Honaker's online variance reduction.
* :class:`MatrixFactorizationCounter`: the square-root Toeplitz factorization, the
  lowest largest variance; ``O(T)`` state and ``O(t)`` per push.
* :class:`BufferedToeplitzCounter`: a Buffered Linear Toeplitz fit of the square root
  (within 1% of its largest variance up to ``T = 2^20``) with ``O(1)`` state and cost
  per push (6 buffers).

The exact discrete samplers they draw from are in :mod:`._discrete` and re-exported
here (``discrete_laplace``, ``discrete_gaussian``).

Over streams of records in ``{0,1}^d`` [JRSS23]_, with one constructor
``Mechanism(*, d, horizon, epsilon, delta=0.0, strategy="auto", ...)``, ``push(record)``,
``push_many(records)``, ``guarantee``, ``error_bound(beta)`` and ``state()`` /
``Mechanism.from_state(state)`` (:class:`SelectionState`):

* :class:`MaxSum`: the largest column sum after every record.
* :class:`SumSelect`: the index of a column whose sum is close to the largest.

Each runs per-column tree counters (small ``d``) or sparse-vector-triggered
recomputation (large ``d``), whichever has the smaller stated error bound.
"""

from privaudit.mechanisms.continual._base import ContinualCounter
from privaudit.mechanisms.continual._blt import BufferedToeplitzCounter
from privaudit.mechanisms.continual._discrete import (
    discrete_gaussian,
    discrete_gaussian_variance,
    discrete_laplace,
    discrete_laplace_variance,
)
from privaudit.mechanisms.continual._selection import (
    RECORD_NEIGHBOURING,
    MaxSum,
    SumSelect,
    rho_for_approximate_dp,
)
from privaudit.mechanisms.continual._state import (
    SELECTION_STATE_VERSION,
    STATE_VERSION,
    CounterState,
    SelectionState,
)
from privaudit.mechanisms.continual._toeplitz import (
    MatrixFactorizationCounter,
    sqrt_toeplitz_coefficients,
)
from privaudit.mechanisms.continual._tree import BinaryTreeCounter, HonakerCounter

__all__ = [
    "RECORD_NEIGHBOURING",
    "SELECTION_STATE_VERSION",
    "STATE_VERSION",
    "BinaryTreeCounter",
    "BufferedToeplitzCounter",
    "ContinualCounter",
    "CounterState",
    "HonakerCounter",
    "MatrixFactorizationCounter",
    "MaxSum",
    "SelectionState",
    "SumSelect",
    "discrete_gaussian",
    "discrete_gaussian_variance",
    "discrete_laplace",
    "discrete_laplace_variance",
    "rho_for_approximate_dp",
    "sqrt_toeplitz_coefficients",
]
