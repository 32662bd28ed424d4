"""Calibrated Gaussian noise on encrypted scores, with the guarantee it gives.

The querier decrypts every score of every shard it queries (an inner-product oracle on
the parties' vectors). A party can add Gaussian noise to the encrypted scores before it
returns them; under the sensitivity assumption below, each query is then ρ-zCDP for the
party's vectors [BS16]_, and ``q`` queries are ``q·ρ``-zCDP (composition).

Sensitivity (replace one vector of the shard; vectors of norm at most ``R``, queries of
norm at most ``Q``): only that vector's score changes, by at most

* ``|<x - x', q>| <= 2 R Q`` for inner product and cosine (``R = 1`` after normalising),
* ``|‖x‖² - ‖x'‖²| + 2 |<x - x', q>| <= R² + 4 R Q`` for the squared distance, whose
  party-side score is ``‖x‖² - 2 <x, q>``.

The party enforces ``R`` at ingest. It cannot see ``Q``: the query is encrypted. The
guarantee therefore holds against a querier that runs :class:`Querier` honestly
(queries normalised, or of norm at most ``Q``); a querier that scales its query by ``c``
divides the effective noise by ``c``. The query budget bounds what such a querier learns
in any case.

References
----------
.. [BS16] M. Bun and T. Steinke, "Concentrated Differential Privacy: Simplifications,
   Extensions, and Lower Bounds", TCC 2016 (Proposition 1.6: the Gaussian mechanism
   with sensitivity Δ and variance σ² is Δ²/(2σ²)-zCDP; Lemma 2.3: composition).
.. [Mir12] I. Mironov, "On significance of the least significant bits for differential
   privacy", CCS 2012.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from privaudit.errors import ParameterError
from privaudit.guarantees import PrivacyGuarantee
from privaudit.randomness import RandomSource, resolve_rng

__all__ = ["ScoreNoise"]

METRICS = ("cosine", "inner_product", "squared_l2")
# Noise is rounded to this grid before encoding (see ScoreNoise.sample).
NOISE_GRID = 2.0**-24


@dataclass(frozen=True, slots=True)
class ScoreNoise:
    """Gaussian noise of standard deviation ``sigma`` added to every returned score.

    Parameters
    ----------
    sigma
        Standard deviation of the noise on each score.
    vector_norm_bound
        ``R``: the largest L2 norm of a stored vector (1 for cosine, where vectors are
        normalised at ingest). The party refuses longer vectors.
    query_norm_bound
        ``Q``: the largest query norm the guarantee assumes (1 for the normalised
        queries of cosine search).

    Examples
    --------
    >>> noise = ScoreNoise.for_rho(0.5, metric="cosine")
    >>> round(noise.sigma, 4), noise.rho_per_query("cosine")
    (2.0, 0.5)
    >>> noise.guarantee("cosine", queries=10)
    PrivacyGuarantee(zcdp, ρ=5, neighbours: replace one vector of the shard ...)
    """

    sigma: float
    vector_norm_bound: float = 1.0
    query_norm_bound: float = 1.0

    def __post_init__(self) -> None:
        for name in ("sigma", "vector_norm_bound", "query_norm_bound"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ParameterError(f"{name} must be a positive number; got {value!r}")
            if not (math.isfinite(value) and value > 0):
                raise ParameterError(f"{name} must be positive and finite; got {value!r}")

    @classmethod
    def for_rho(
        cls,
        rho: float,
        *,
        metric: str,
        vector_norm_bound: float = 1.0,
        query_norm_bound: float = 1.0,
    ) -> ScoreNoise:
        """The noise that makes one query ``rho``-zCDP: ``σ = Δ / √(2ρ)`` [BS16]_."""
        if isinstance(rho, bool) or not isinstance(rho, int | float) or not 0 < rho < math.inf:
            raise ParameterError(f"rho must be positive and finite; got {rho!r}")
        probe = cls(1.0, vector_norm_bound, query_norm_bound)
        return cls(
            probe.sensitivity(metric) / math.sqrt(2 * rho), vector_norm_bound, query_norm_bound
        )

    def sensitivity(self, metric: str) -> float:
        """L2 sensitivity of one query's score vector (replace one vector)."""
        bound_r, bound_q = self.vector_norm_bound, self.query_norm_bound
        if metric in ("cosine", "inner_product"):
            return 2 * bound_r * bound_q
        if metric == "squared_l2":
            return bound_r**2 + 4 * bound_r * bound_q
        raise ParameterError(f"metric must be one of {list(METRICS)}; got {metric!r}")

    def rho_per_query(self, metric: str) -> float:
        """ρ of one query: ``Δ² / (2σ²)``."""
        return self.sensitivity(metric) ** 2 / (2 * self.sigma**2)

    def guarantee(self, metric: str, *, queries: int) -> PrivacyGuarantee:
        """The zCDP guarantee of ``queries`` noisy queries for the party's vectors."""
        if isinstance(queries, bool) or not isinstance(queries, int) or queries < 1:
            raise ParameterError(f"queries must be a positive int; got {queries!r}")
        return PrivacyGuarantee.zcdp(
            self.rho_per_query(metric) * queries,
            neighbouring=(
                f"replace one vector of the shard (vectors of norm <= {self.vector_norm_bound:g}"
                f", queries of norm <= {self.query_norm_bound:g})"
            ),
        )

    def sample(self, size: int, rng: RandomSource = None) -> npt.NDArray[np.float64]:
        """``size`` noise values; ``rng=None`` draws release randomness (ChaCha20).

        The Gaussian samples are rounded to a grid of 2^-24 before they are encoded, so
        the floating-point low-order bits that Mironov's attack reads [Mir12]_ never
        reach the querier; CKKS encoding and encryption then add their own error of
        about 1e-7. This is not a formally verified discrete Gaussian sampler.
        """
        noise = resolve_rng(rng).normal(0.0, self.sigma, size=size)
        snapped: npt.NDArray[np.float64] = np.round(noise / NOISE_GRID) * NOISE_GRID
        return snapped
