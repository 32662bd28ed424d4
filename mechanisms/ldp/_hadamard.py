"""Hadamard Response (the high-privacy, one-block form)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from privaudit.errors import ParameterError
from privaudit.mechanisms.ldp._engine import (
    Field,
    FloatArray,
    FrequencyOracle,
    IntArray,
    Reports,
    check_prior,
)
from privaudit.mechanisms.ldp._sampling import bernoulli
from privaudit.registry import mechanisms

__all__ = ["HadamardResponse", "fwht", "parity"]

_CHANNEL_CELLS = 1 << 24


def fwht(vector: npt.ArrayLike) -> npt.NDArray[Any]:
    """The fast Walsh–Hadamard transform ``H_K·v`` of a vector of length ``K = 2^m``,
    ``H_K[i, j] = (−1)^popcount(i & j)`` (Sylvester order), in ``O(K log K)``; integer
    input stays integer."""
    result = np.array(vector, copy=True)
    size = result.shape[0]
    if size & (size - 1) or size == 0:
        raise ParameterError(f"the Walsh–Hadamard transform needs a power-of-2 length; got {size}")
    half = 1
    while half < size:
        pairs = result.reshape(-1, 2, half)
        low, high = pairs[:, 0, :], pairs[:, 1, :]
        result = np.stack((low + high, low - high), axis=1).reshape(size)
        half *= 2
    return result


def parity(values: IntArray) -> IntArray:
    """``popcount(v) mod 2`` elementwise, for ``0 <= v < 2^32``."""
    folded = values.copy()
    for shift in (16, 8, 4, 2, 1):
        folded ^= folded >> shift
    bits: IntArray = folded & 1
    return bits


@mechanisms.register("hr")
class HadamardResponse(FrequencyOracle):
    """Hadamard Response [ASZ19]_, in its high-privacy one-block form.

    With ``K = 2^⌈log2(k + 1)⌉`` and the Sylvester–Hadamard matrix ``H_K``, value ``x``
    owns the set ``C_x = {j ∈ [K] : H_K[x + 1, j] = +1}`` of ``K/2`` outputs (row 0,
    all ones, is skipped). A user reports an output uniform in ``C_x`` with probability
    ``e^ε/(e^ε + 1)`` and uniform in its complement otherwise, so each output is
    ``2e^ε/(K(e^ε + 1))`` or ``2/(K(e^ε + 1))`` likely: ε-LDP, tightly. Any two rows
    share ``K/4`` outputs, so report ``j`` supports ``{x : j ∈ C_x}`` and the protocol
    is pure with ``p* = e^ε/(e^ε + 1)`` and ``q* = 1/2`` (``Var* = (e^ε + 1)²/(n(e^ε − 1)²)``:
    close to OUE's ``4e^ε/(n(e^ε − 1)²)`` for small ε, but ``(e^ε + 1)²/(4e^ε)`` times it
    in general, so use it for ε ≲ 1; the multi-block general-privacy form of [ASZ19]_
    is not implemented). A report takes ``log2 K`` bits.

    The client draws ``j`` uniformly and flips its lowest bit shared with ``x + 1``
    when it falls on the wrong side; the server keeps a ``K``-bin histogram and gets
    every support count from one fast Walsh–Hadamard transform:
    ``C(x) = (n + (H_K·hist)[x + 1])/2``, ``O(n + K log K)``.

    References
    ----------
    .. [ASZ19] J. Acharya, Z. Sun, H. Zhang, "Hadamard response: estimating
       distributions privately, efficiently, and with little communication", AISTATS
       2019 (arXiv:1802.04705).

    Examples
    --------
    >>> from privaudit.mechanisms.ldp._hadamard import HadamardResponse
    >>> from privaudit import simulation_generator
    >>> hr = HadamardResponse(k=6, epsilon=1.0)
    >>> hr.outputs, hr.bits_per_report()
    (8, 3.0)
    >>> reports = hr.randomize([0, 1, 2, 3, 4, 5] * 50_000, rng=simulation_generator(0))
    >>> estimate = hr.estimate(reports)  # true frequencies: 1/6 each
    >>> bool(abs(estimate - 1 / 6).max() < 4 * hr.variance(300_000, 1 / 6) ** 0.5)
    True
    """

    name = "hr"

    def __init__(self, *, k: int, epsilon: float) -> None:
        super().__init__(k=k, epsilon=epsilon)
        self.outputs = 1 << self.k.bit_length()  # 2^⌈log2(k + 1)⌉: room for rows 1..k
        e = math.exp(self.epsilon)
        self._p = e / (e + 1)

    def _support_probabilities(self) -> tuple[float, float]:
        return self._p, 0.5

    def _statistics_size(self) -> int:
        return self.outputs

    def bits_per_report(self) -> float:
        return float(self.outputs.bit_length() - 1)

    def _randomize(self, values: IntArray, rng: np.random.Generator) -> dict[str, Any]:
        rows = values + 1
        lowest = rows & -rows  # flipping this bit of j flips the sign of H[row, j]
        draw = rng.integers(0, self.outputs, size=values.size, dtype=np.int64)
        inside = parity(rows & draw) == 0
        want_inside = bernoulli(rng, self._p, values.size)
        return {"outputs": np.where(inside == want_inside, draw, draw ^ lowest)}

    def report_schema(self) -> list[Field]:
        return [Field("outputs", 0, 0, self.outputs - 1)]

    def _statistics(self, reports: Reports) -> IntArray:
        outputs = reports.arrays["outputs"].astype(np.int64, copy=False)
        return np.bincount(outputs, minlength=self.outputs).astype(np.int64)

    def _support_counts(self, statistics: IntArray, n: int) -> FloatArray:
        transformed = fwht(statistics)
        counts: FloatArray = (n + transformed[1 : self.k + 1]) / 2.0
        return counts

    def reconstruction_success(self, prior: npt.ArrayLike | None = None) -> float:
        """Exact success of the attacker who guesses uniformly among the values the
        output supports, ``{x < k : j ∈ C_x}`` (uniformly in ``[k]`` if none, which
        happens only for ``k = 2``, output 3) [AGCP23]_.

        Computed with two Walsh–Hadamard transforms in ``O(K log K)``: the support
        sizes ``|S(j)| = (k + Σ_{x<k} H[x + 1, j])/2``, then for each ``x`` the sum of
        ``1/|S(j)|`` over ``j ∈ C_x``.
        """
        weights = check_prior(prior, self.k)
        k, size = self.k, self.outputs
        rows = np.zeros(size, dtype=np.int64)
        rows[1 : k + 1] = 1
        support_sizes = (k + fwht(rows)) // 2
        inverse = np.where(support_sizes > 0, 1.0 / np.maximum(support_sizes, 1), 0.0)
        empty = int((support_sizes == 0).sum())
        inside = (inverse.sum() + fwht(inverse)[1 : k + 1]) / 2.0
        per_value = 2 * self._p / size * inside + 2 * (1 - self._p) / size * empty / k
        if weights is None:
            return float(per_value.mean())
        return float(weights @ per_value)

    def channel(self) -> FloatArray:
        """``P[report = j | value = x]`` as a ``(k, K)`` matrix (small ``k`` only)."""
        if self.k * self.outputs > _CHANNEL_CELLS:
            raise ParameterError(
                f"the channel has K = {self.outputs} columns; k={self.k} is too large"
            )
        rows = np.arange(1, self.k + 1, dtype=np.int64)[:, None]
        columns = np.arange(self.outputs, dtype=np.int64)[None, :]
        inside = parity(rows & columns) == 0
        matrix: FloatArray = np.where(inside, self._p, 1 - self._p) * (2.0 / self.outputs)
        return matrix
