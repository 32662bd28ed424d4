"""Projective Geometry Response."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from privaudit.errors import DataError, ParameterError
from privaudit.mechanisms.ldp._engine import (
    Field,
    FloatArray,
    FrequencyOracle,
    IntArray,
    Reports,
    check_prior,
)
from privaudit.mechanisms.ldp._hashing import is_prime
from privaudit.mechanisms.ldp._sampling import bernoulli
from privaudit.registry import mechanisms

__all__ = ["ProjectiveGeometryResponse", "projective_parameters"]

_CHUNK_CELLS = 1 << 22
_DEFAULT_CELLS = 1 << 24  # the default prime keeps the server's transform within q^t cells
_MAX_CELLS = 1 << 27  # an explicit prime may use up to this many (2 GiB of float64)
_LARGEST_DEFAULT_PRIME = 4096
_CHANNEL_CELLS = 1 << 24


def projective_parameters(k: int, q: int) -> tuple[int, int, int, int]:
    """``(t, K, cset, cint)`` of PG(t − 1, q) for a domain of ``k`` values.

    ``t`` is the smallest ``t >= 2`` with ``K = (q^t − 1)/(q − 1) >= k`` points;
    ``cset = (q^(t−1) − 1)/(q − 1)`` points lie on each hyperplane
    ``{u : <u, v> = 0}`` and ``cint = (q^(t−2) − 1)/(q − 1)`` on two of them.
    """
    t = 2
    while (q**t - 1) // (q - 1) < k:
        t += 1
    return t, (q**t - 1) // (q - 1), (q ** (t - 1) - 1) // (q - 1), (q ** (t - 2) - 1) // (q - 1)


def _probabilities(k: int, epsilon: float, q: int) -> tuple[float, float, float]:
    """``(p, s, r)``: the probability of each output off the hyperplane, ``p*``, ``q*``."""
    _, points, cset, cint = projective_parameters(k, q)
    e = math.exp(epsilon)
    p = 1.0 / ((e - 1) * cset + points)
    return p, e * p * cset, p * ((e - 1) * cint + cset)


@functools.lru_cache(maxsize=256)
def _default_prime(k: int, epsilon: float) -> int:
    best: tuple[float, int, int] | None = None
    sieve = np.ones(_LARGEST_DEFAULT_PRIME + 1, dtype=bool)
    sieve[:2] = False
    for i in range(2, math.isqrt(_LARGEST_DEFAULT_PRIME) + 1):
        if sieve[i]:
            sieve[i * i :: i] = False
    for q in map(int, np.nonzero(sieve)[0]):
        t = projective_parameters(k, q)[0]
        if q**t > _DEFAULT_CELLS:
            continue
        _, s, r = _probabilities(k, epsilon, q)
        score = (r * (1 - r) / (s - r) ** 2, q**t, q)
        if best is None or score < best:
            best = score
    if best is None:
        raise ParameterError(
            f"k={k} is too large for Projective Geometry Response: even q=2 needs more "
            f"than {_DEFAULT_CELLS} cells in the server transform"
        )
    return best[2]


@mechanisms.register("pgr")
class ProjectiveGeometryResponse(FrequencyOracle):
    """Projective Geometry Response [FNNT22]_.

    The domain is padded to the ``K = (q^t − 1)/(q − 1)`` points of the projective
    space PG(t − 1, q), each named by its canonical vector in ``F_q^t`` (first non-zero
    coordinate 1); values ``0 .. k−1`` are the first ``k`` points. Value ``v`` owns the
    ``cset`` points of its hyperplane ``S_v = {u : <u, v> = 0}``; a user outputs each
    point of ``S_v`` with probability ``e^ε·p`` and each other point with probability
    ``p = 1/((e^ε − 1)·cset + K)``, so it is ε-LDP, tightly. Two hyperplanes share
    ``cint`` points, which makes it a pure protocol with

    * ``p* = s = e^ε·p·cset``,
    * ``q* = r = p·((e^ε − 1)·cint + cset)``,

    and ``Var* = r(1 − r)/(n(s − r)²)``, within about 2% of OUE's for a good ``q``. A
    report takes ``⌈log2 K⌉`` bits.

    The client picks the side of the hyperplane, then solves ``<u, v> = c`` for the
    coordinate where ``v`` has its leading 1 (``c = 0`` or uniform in ``1 .. q−1``),
    the other coordinates uniform, and canonicalises ``u``. The server keeps a ``K``-bin
    histogram ``y`` and computes every ``T[x] = Σ_{u ∈ S_x} y[u]`` with one
    ``t``-dimensional real FFT over ``F_q^t``: lifting ``y`` to the vectors,
    ``T[x] = (n + ŷ(x))/q``. That costs ``O(q^t·t·log q) = O(K·q·t·log q)`` time and
    ``O(q^t)`` memory (the reference code's dynamic programme costs ``O(Kqt)``).

    Parameters
    ----------
    q
        The prime field size. ``None`` (default): the prime ``q <= 4096`` that minimises
        ``Var*`` among those whose transform fits in ``2^24`` cells (ties: fewer cells);
        the paper's rule of thumb is a prime power near ``e^ε + 1``. An explicit prime
        is used as given (its transform must fit in ``2^27`` cells).

    References
    ----------
    .. [FNNT22] V. Feldman, J. Nelson, H. Nguyen, K. Talwar, "Private frequency
       estimation via projective geometry", ICML 2022 (arXiv:2203.00194).

    Examples
    --------
    >>> from privaudit.mechanisms.ldp._projective import ProjectiveGeometryResponse
    >>> from privaudit import simulation_generator
    >>> pgr = ProjectiveGeometryResponse(k=1024, epsilon=1.0)
    >>> pgr.q, pgr.t, pgr.points, pgr.bits_per_report()
    (3, 7, 1093, 11.0)
    >>> reports = pgr.randomize([5] * 60_000 + [9] * 40_000, rng=simulation_generator(0))
    >>> estimate = pgr.estimate(reports)[[5, 9, 100]]  # true frequencies: 0.6, 0.4, 0
    >>> bool(abs(estimate - [0.6, 0.4, 0.0]).max() < 4 * pgr.variance(100_000, 0.6) ** 0.5)
    True
    """

    name = "pgr"

    def __init__(self, *, k: int, epsilon: float, q: int | None = None) -> None:
        super().__init__(k=k, epsilon=epsilon)
        if q is None:
            self.q = _default_prime(self.k, self.epsilon)
        else:
            if isinstance(q, bool) or not isinstance(q, int | np.integer) or not is_prime(int(q)):
                raise ParameterError(f"q must be a prime (2, 3, 5, 7, ...) or None; got {q!r}")
            self.q = int(q)
        self.q_rule = q
        self.t, self.points, self.cset, self.cint = projective_parameters(self.k, self.q)
        if self.q**self.t > _MAX_CELLS:
            raise ParameterError(
                f"q={self.q} needs t={self.t} and a server transform of q^t = "
                f"{self.q**self.t} cells, above the limit {_MAX_CELLS}; use a smaller prime "
                "or q=None"
            )
        self._p, self._s, self._r = _probabilities(self.k, self.epsilon, self.q)
        self._powers = np.array([self.q**i for i in range(self.t + 1)], dtype=np.int64)
        # offsets[j]: index of the first point whose leading 1 is j places from the end.
        self._offsets = (self._powers - 1) // (self.q - 1)
        self._inverses = np.array([0] + [pow(c, -1, self.q) for c in range(1, self.q)])
        self._vector_to_point: npt.NDArray[np.int32] | None = None

    def fingerprint(self) -> str:
        return f"{super().fingerprint()}:q={self.q}:t={self.t}"

    def public_params(self) -> dict[str, Any]:
        return {"q": self.q}

    def _support_probabilities(self) -> tuple[float, float]:
        return self._s, self._r

    def _statistics_size(self) -> int:
        return self.points

    def bits_per_report(self) -> float:
        return float((self.points - 1).bit_length())

    # --- points and vectors --------------------------------------------------------

    def point_vectors(self, points: npt.ArrayLike) -> IntArray:
        """The canonical vectors (rows of ``t`` digits in ``F_q``) of point indices."""
        index = np.asarray(points, dtype=np.int64)
        place = np.searchsorted(self._offsets, index, side="right") - 1
        value = self._powers[place] + index - self._offsets[place]
        exponents = self._powers[self.t - 1 :: -1][: self.t]
        vectors: IntArray = value[..., None] // exponents % self.q
        return vectors

    def vector_points(self, vectors: IntArray) -> IntArray:
        """Point indices of canonical vectors (the inverse of :meth:`point_vectors`)."""
        leading = np.argmax(vectors != 0, axis=-1)
        place = self.t - 1 - leading
        value = vectors @ self._powers[self.t - 1 :: -1][: self.t]
        index: IntArray = self._offsets[place] + value - self._powers[place]
        return index

    def _canonical(self, vectors: IntArray) -> IntArray:
        leading = np.take_along_axis(vectors, np.argmax(vectors != 0, axis=1)[:, None], axis=1)
        scaled: IntArray = vectors * self._inverses[leading] % self.q
        return scaled

    # --- client ----------------------------------------------------------------------

    def _randomize(self, values: IntArray, rng: np.random.Generator) -> dict[str, Any]:
        q, t, n = self.q, self.t, values.size
        out = np.empty(n, dtype=np.int64)
        rows = max(1, _CHUNK_CELLS // t)
        for start in range(0, n, rows):
            stop = min(n, start + rows)
            own = self.point_vectors(values[start:stop])
            on_plane = bernoulli(rng, self._s, stop - start)
            target = np.where(on_plane, 0, rng.integers(1, q, size=stop - start))
            vectors = self._solve(own, target, rng)
            zero = ~vectors.any(axis=1)  # only possible on the hyperplane: draw again
            while zero.any():
                vectors[zero] = self._solve(own[zero], target[zero], rng)
                zero = ~vectors.any(axis=1)
            out[start:stop] = self.vector_points(self._canonical(vectors))
        return {"points": out}

    def _solve(self, own: IntArray, target: IntArray, rng: np.random.Generator) -> IntArray:
        """Uniform ``u`` with ``<u, v> = target``: all coordinates uniform except the one
        where ``v`` has its leading 1, which is solved for."""
        vectors = rng.integers(0, self.q, size=own.shape, dtype=np.int64)
        leading = np.argmax(own != 0, axis=1)[:, None]
        np.put_along_axis(vectors, leading, 0, axis=1)
        rest = (vectors * own).sum(axis=1)
        np.put_along_axis(vectors, leading, ((target - rest) % self.q)[:, None], axis=1)
        return vectors

    # --- server ----------------------------------------------------------------------

    def report_schema(self) -> list[Field]:
        return [Field("points", 0, 0, self.points - 1)]

    def _statistics(self, reports: Reports) -> IntArray:
        points = reports.arrays["points"].astype(np.int64, copy=False)
        return np.bincount(points, minlength=self.points).astype(np.int64)

    def _support_counts(self, statistics: IntArray, n: int) -> FloatArray:
        sums = self.hyperplane_sums(statistics.astype(float))[: self.k]
        counts: FloatArray = np.rint(sums)
        return counts

    def _lift_map(self) -> npt.NDArray[np.int32]:
        """For each vector of ``F_q^t`` (base-q order), its point index; ``K`` for 0."""
        if self._vector_to_point is None:
            mapping = np.full(self.q**self.t, self.points, dtype=np.int32)
            canonical = self.point_vectors(np.arange(self.points))
            place_values = self._powers[self.t - 1 :: -1][: self.t]
            for scale in range(1, self.q):
                mapping[(canonical * scale % self.q) @ place_values] = np.arange(self.points)
            self._vector_to_point = mapping
        return self._vector_to_point

    def hyperplane_sums(self, weights: npt.ArrayLike) -> FloatArray:
        """``T[x] = Σ_{u : <u, x> = 0} w[u]`` for every point ``x`` of PG(t − 1, q).

        ``w`` is lifted to ``F_q^t`` (``W(λu) = w[u]``, ``W(0) = 0``); then
        ``Σ_{<z,x>=0} W(z) = (1/q) Σ_c Ŵ(c·x) = (Σ W + (q − 1)Ŵ(x))/q`` because ``Ŵ``
        is constant on lines, and each point has ``q − 1`` vectors.
        """
        w = np.asarray(weights, dtype=float)
        if w.shape != (self.points,):
            raise DataError(f"weights must have one entry per point ({self.points})")
        lifted = np.append(w, 0.0)[self._lift_map()].reshape((self.q,) * self.t)
        spectrum = np.fft.rfftn(lifted)
        vectors = self.point_vectors(np.arange(self.points))
        # rfftn keeps the last axis up to q//2; Ŵ(x) = Ŵ(−x) for the others.
        mirror = vectors[:, -1] > self.q // 2
        vectors[mirror] = -vectors[mirror] % self.q
        transform = spectrum[tuple(vectors.T)].real
        sums: FloatArray = (w.sum() + transform) / self.q
        return sums

    # --- analysis --------------------------------------------------------------------

    def reconstruction_success(self, prior: npt.ArrayLike | None = None) -> float:
        """Exact success of the attacker who guesses uniformly among the values that
        the reported point supports, ``{x < k : <u, x> = 0}``, or uniformly in ``[k]``
        when padding leaves none [AGCP23]_. Two hyperplane sums give the support sizes
        and, for each value, ``Σ_{u ∈ S_v} 1/|S(u)|``."""
        weights = check_prior(prior, self.k)
        indicator = np.zeros(self.points)
        indicator[: self.k] = 1.0
        sizes = np.rint(self.hyperplane_sums(indicator))
        inverse = np.where(sizes > 0, 1.0 / np.maximum(sizes, 1.0), 0.0)
        empty = float((sizes == 0).sum())
        on_plane = self.hyperplane_sums(inverse)[: self.k]
        e = math.exp(self.epsilon)
        per_value = e * self._p * on_plane + self._p * empty / self.k
        if weights is None:
            return float(per_value.mean())
        return float(weights @ per_value)

    def channel(self) -> FloatArray:
        """``P[report = u | value = x]`` as a ``(k, K)`` matrix (small ``k`` only)."""
        if self.k * self.points > _CHANNEL_CELLS:
            raise ParameterError(
                f"the channel has K = {self.points} columns; k={self.k} is too large"
            )
        own = self.point_vectors(np.arange(self.k))
        every = self.point_vectors(np.arange(self.points))
        on_plane = (own @ every.T) % self.q == 0
        matrix: FloatArray = np.where(on_plane, math.exp(self.epsilon) * self._p, self._p)
        return matrix

    def __repr__(self) -> str:
        return f"{type(self).__name__}(k={self.k}, epsilon={self.epsilon:g}, q={self.q})"
