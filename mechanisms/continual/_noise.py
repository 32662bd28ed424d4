"""Exact discrete noise drawn ahead in blocks (it does not depend on the data)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from privaudit.mechanisms.continual._discrete import discrete_gaussian, discrete_laplace

__all__ = ["BLOCK", "NoiseSpec", "NoiseStream"]

IntArray = npt.NDArray[np.int64]

BLOCK = 1 << 16
"""How many draws a :class:`NoiseStream` makes ahead by default."""


@dataclass(frozen=True)
class NoiseSpec:
    """One exact discrete law on the integers: Laplace of integer scale, or Gaussian σ²."""

    laplace_scale: int | None = None
    gaussian_sigma2: Fraction | None = None

    @property
    def law(self) -> str:
        """The law as stored in a state's calibration (compared on restore: keep it stable)."""
        if self.laplace_scale is not None:
            return f"discrete_laplace scale={self.laplace_scale}"
        return f"discrete_gaussian sigma2={self.gaussian_sigma2}"

    def draw(self, rng: np.random.Generator, size: int) -> IntArray:
        if self.laplace_scale is not None:
            return discrete_laplace(rng, self.laplace_scale, size)
        assert self.gaussian_sigma2 is not None
        return discrete_gaussian(rng, self.gaussian_sigma2, size)


class NoiseStream:
    """Draws of one :class:`NoiseSpec`, handed out in order and refilled in blocks.

    The noise is independent of the data, so drawing it ahead changes nothing in the
    mechanism's law. ``total`` (the most a stream can use) caps the last block;
    ``block`` is how far ahead to draw; ``pending`` restores draws made ahead by an
    earlier process (they count towards ``total``).
    """

    def __init__(
        self,
        spec: NoiseSpec,
        rng: np.random.Generator,
        total: int,
        *,
        block: int = BLOCK,
        pending: npt.ArrayLike = (),
    ) -> None:
        self._spec = spec
        self._rng = rng
        self._block = block
        self._buffer: IntArray = np.asarray(pending, dtype=np.int64).ravel()
        self._items: list[int] = self._buffer.tolist()  # the same draws, for take_one
        self._left = max(0, total - self._buffer.size)
        self._used = 0

    def take(self, n: int) -> IntArray:
        """The next ``n`` draws."""
        self.reserve(n)
        out = self._buffer[self._used : self._used + n]
        self._used += n
        return out

    def take_one(self) -> int:
        """The next draw, as a Python integer (the counters' per-step path: one list
        lookup, no NumPy scalar)."""
        used = self._used
        if used >= len(self._items):
            self.reserve(1)
            used = self._used
        self._used = used + 1
        return self._items[used]

    def reserve(self, n: int) -> None:
        """Make sure the next ``n`` draws are drawn (one sampler call for a batch)."""
        if self._used + n > self._buffer.size:
            rest = self._buffer[self._used :]
            block = max(n - rest.size, min(self._block, self._left))
            self._left = max(0, self._left - block)
            self._buffer = np.concatenate([rest, self._spec.draw(self._rng, block)])
            self._items = self._buffer.tolist()
            self._used = 0

    def pending(self) -> IntArray:
        """Draws made ahead and not handed out yet."""
        return self._buffer[self._used :].copy()
