"""Unary encoding: symmetric (basic one-time RAPPOR) and optimized (OUE)."""

from __future__ import annotations

import itertools
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

__all__ = ["OUE", "SUE", "UnaryEncoding"]

_CHUNK_CELLS = 1 << 24


class UnaryEncoding(FrequencyOracle):
    """Unary encoding: the value becomes a one-hot vector of ``k`` bits, and each bit
    is reported as 1 with probability ``p`` if it is the user's bit and ``q``
    otherwise [WBLJ17]_. ε-LDP when ``p(1 − q) / (q(1 − p)) = e^ε``.

    Reports are stored bit-packed (``k`` bits per user).
    """

    def _randomize(self, values: IntArray, rng: np.random.Generator) -> dict[str, Any]:
        p, q = self._support_probabilities()
        n, k = values.size, self.k
        packed = np.empty((n, (k + 7) // 8), dtype=np.uint8)
        chunk = max(1, _CHUNK_CELLS // k)
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            bits = bernoulli(rng, q, (stop - start, k))
            rows = np.arange(stop - start)
            bits[rows, values[start:stop]] = bernoulli(rng, p, stop - start)
            packed[start:stop] = np.packbits(bits, axis=1)
        return {"bits": packed}

    def _statistics(self, reports: Reports) -> IntArray:
        packed = reports.arrays["bits"].astype(np.uint8, copy=False)  # validated: 0..255
        counts = np.zeros(self.k, dtype=np.int64)
        chunk = max(1, _CHUNK_CELLS // self.k)
        for start in range(0, packed.shape[0], chunk):
            bits = np.unpackbits(packed[start : start + chunk], axis=1, count=self.k)
            counts += bits.sum(axis=0, dtype=np.int64)
        return counts

    def _support_counts(self, statistics: IntArray, n: int) -> FloatArray:
        return statistics.astype(float)

    def report_schema(self) -> list[Field]:
        return [Field("bits", (self.k + 7) // 8, 0, 255)]

    def bits_per_report(self) -> float:
        return float(self.k)

    def reconstruction_success(self, prior: npt.ArrayLike | None = None) -> float:
        """The attacker guesses uniformly among the 1-bits (uniformly in ``[k]`` if
        none): ``p(1 − (1 − q)^k)/(kq) + (1 − p)(1 − q)^(k−1)/k``, exactly."""
        check_prior(prior, self.k)  # validated; this attacker's success does not depend on it
        p, q, k = self.p_star, self.q_star, self.k
        # With the true bit set, the guess is right w.p. E[1/(1 + B)], B ~ Bin(k-1, q).
        hit_if_set = (1 - (1 - q) ** k) / (k * q)
        hit_if_unset = (1 - q) ** (k - 1) / k  # only when every bit is 0
        return p * hit_if_set + (1 - p) * hit_if_unset

    def channel(self) -> FloatArray:
        """``P[report = y | value = v]`` over all ``2^k`` bit vectors (small ``k`` only)."""
        if self.k > 16:
            raise ParameterError(f"the channel has 2^k columns; k={self.k} is too large")
        p, q = self._support_probabilities()
        outputs = np.array(list(itertools.product([0, 1], repeat=self.k)), dtype=bool)
        matrix = np.empty((self.k, outputs.shape[0]))
        for v in range(self.k):
            probability = np.where(outputs, q, 1 - q)
            probability[:, v] = np.where(outputs[:, v], p, 1 - p)
            matrix[v] = probability.prod(axis=1)
        return matrix


@mechanisms.register("sue")
class SUE(UnaryEncoding):
    """Symmetric unary encoding (basic one-time RAPPOR [EPK14]_):
    ``p = e^(ε/2)/(e^(ε/2) + 1)``, ``q = 1 − p``.

    References
    ----------
    .. [EPK14] Ú. Erlingsson, V. Pihur, A. Korolova, "RAPPOR: Randomized Aggregatable
       Privacy-Preserving Ordinal Response", CCS 2014.
    """

    name = "sue"

    def _support_probabilities(self) -> tuple[float, float]:
        half = math.exp(self.epsilon / 2)
        return half / (half + 1), 1.0 / (half + 1)


@mechanisms.register("oue")
class OUE(UnaryEncoding):
    """Optimized unary encoding [WBLJ17]_: ``p = 1/2``, ``q = 1/(e^ε + 1)``, which
    minimises the variance among unary encodings (``4e^ε/(n(e^ε − 1)²)`` as f → 0)."""

    name = "oue"

    def _support_probabilities(self) -> tuple[float, float]:
        return 0.5, 1.0 / (math.exp(self.epsilon) + 1)
