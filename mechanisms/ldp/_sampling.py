"""Vectorised sampling helpers for LDP randomizers."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["bernoulli", "subsets_excluding"]

_CHUNK_CELLS = 1 << 24  # bound the boolean work matrix to 16 M cells per chunk


def bernoulli(
    rng: np.random.Generator, p: float | npt.NDArray[np.float64], size: object
) -> npt.NDArray[np.bool_]:
    """``True`` with probability ``p`` (53-bit uniform comparison)."""
    return rng.random(size) < p  # type: ignore[call-overload,no-any-return]


def subsets_excluding(
    excluded: npt.NDArray[np.int64], size: int, k: int, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """For each user, a uniformly random ``size``-subset of ``[k] ∖ {excluded[u]}``.

    Floyd's algorithm, vectorised over users, on a boolean membership matrix that is
    processed in chunks; returns an ``(n, size)`` array with each row sorted.
    """
    n = excluded.size
    out = np.empty((n, size), dtype=np.int64)
    if n == 0 or size == 0:
        return out
    space = k - 1  # draw positions in [0, k-1), then skip over the excluded value
    chunk = max(1, min(n, _CHUNK_CELLS // max(space, 1)))
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        rows = np.arange(stop - start)
        chosen = np.zeros((stop - start, space), dtype=bool)
        for j in range(space - size, space):
            t = rng.integers(0, j + 1, size=stop - start)
            taken = chosen[rows, t]
            chosen[rows, np.where(taken, j, t)] = True
        positions = np.nonzero(chosen)[1].reshape(stop - start, size)
        out[start:stop] = positions + (positions >= excluded[start:stop, None])
    return out
