"""Generalized randomized response (k-RR, direct encoding)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

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

__all__ = ["GRR"]


@mechanisms.register("grr")
class GRR(FrequencyOracle):
    """Generalized randomized response [War65]_ [KBR16]_.

    Each user reports its value with probability ``p = e^ε/(e^ε + k − 1)``, and
    otherwise one of the other ``k − 1`` values uniformly. Pure protocol with
    ``p* = p``, ``q* = 1/(e^ε + k − 1)``; ε-LDP, tight. One report takes
    ``⌈log2 k⌉`` bits.

    References
    ----------
    .. [War65] S. L. Warner, "Randomized response", JASA 1965.
    .. [KBR16] P. Kairouz, K. Bonawitz, D. Ramage, "Discrete distribution estimation
       under local privacy", ICML 2016.

    Examples
    --------
    >>> from privaudit.mechanisms.ldp import GRR
    >>> from privaudit import simulation_generator
    >>> grr = GRR(k=4, epsilon=1.0)
    >>> reports = grr.randomize([0, 1, 2, 3] * 2500, rng=simulation_generator(0))
    >>> estimate = grr.estimate(reports)  # true frequencies: 0.25 each
    >>> bool(abs(estimate - 0.25).max() < 4 * grr.variance(10_000, 0.25) ** 0.5)
    True
    """

    name = "grr"

    def _support_probabilities(self) -> tuple[float, float]:
        e = math.exp(self.epsilon)
        return e / (e + self.k - 1), 1.0 / (e + self.k - 1)

    def _randomize(self, values: IntArray, rng: np.random.Generator) -> dict[str, Any]:
        keep = bernoulli(rng, self.p_star, values.size)
        other = rng.integers(0, self.k - 1, size=values.size)
        other += other >= values  # skip the true value: uniform over the other k - 1
        return {"values": np.where(keep, values, other).astype(np.int64)}

    def _statistics(self, reports: Reports) -> IntArray:
        values = reports.arrays["values"]
        return np.bincount(values, minlength=self.k).astype(np.int64)

    def _support_counts(self, statistics: IntArray, n: int) -> FloatArray:
        return statistics.astype(float)

    def report_schema(self) -> list[Field]:
        return [Field("values", 0, 0, self.k - 1)]

    def bits_per_report(self) -> float:
        return float(math.ceil(math.log2(self.k)))

    def reconstruction_success(self, prior: npt.ArrayLike | None = None) -> float:
        """The attacker guesses the reported value: right with probability ``p``."""
        check_prior(prior, self.k)  # validated; this attacker's success does not depend on it
        return self.p_star

    def channel(self) -> FloatArray:
        """``P[report = y | value = v]`` as a ``(k, k)`` matrix."""
        p, q = self._support_probabilities()
        matrix = np.full((self.k, self.k), q)
        np.fill_diagonal(matrix, p)
        return matrix
