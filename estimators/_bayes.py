"""Bayesian estimation of ε from a membership game [ZB23]_.

References
----------
.. [ZB23] S. Zanella-Béguelin, L. Wutschitz, S. Tople, A. Salem, V. Rühle, A. Paverd,
   M. Naseri, B. Köpf, D. Jones, "Bayesian Estimation of Differential Privacy",
   ICML 2023, arXiv:2206.05199.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import overload

import numpy as np
import numpy.typing as npt

from privaudit.errors import ParameterError
from privaudit.estimators._checks import Sided, check_choice, check_count, check_finite_epsilon
from privaudit.estimators._counts import Counts, CountsEstimator, PerModelCounts
from privaudit.estimators._hierarchical import HierarchicalDraws, sample_hierarchical
from privaudit.estimators._joint_beta import MAX_EPSILON, JointBetaPosterior
from privaudit.estimators._result import Rigor, ThreatModel

FloatArray = npt.NDArray[np.float64]

PRIORS: dict[str, tuple[float, float]] = {"jeffreys": (0.5, 0.5), "uniform": (1.0, 1.0)}
METHODS = ("joint-beta", "hierarchical")


class _DrawsPosterior:
    """The empirical law of posterior draws of ε (the hierarchical method's posterior)."""

    def __init__(self, draws: FloatArray) -> None:
        self._sorted = np.sort(draws)

    def cdf(self, value: float) -> float:
        return float(np.searchsorted(self._sorted, value, side="right") / self._sorted.size)

    def quantiles_above(self, tails: tuple[float, ...]) -> tuple[float, ...]:
        """The x with ``P[ε > x] = tail`` for each tail (as JointBetaPosterior's)."""
        quantiles = np.quantile(self._sorted, [1.0 - tail for tail in tails])
        return tuple(float(value) for value in quantiles)


@dataclass(frozen=True)
class PosteriorGrid:
    """The posterior of ε on a grid, for plots.

    Attributes
    ----------
    epsilon
        Grid points from 0 to the ``1 − tail`` posterior quantile.
    cdf
        ``P[ε <= epsilon]`` at each point (``cdf[0]`` is the mass at ε = 0).
    density
        The derivative of the CDF (finite differences), 0 where it is flat.
    """

    epsilon: FloatArray
    cdf: FloatArray
    density: FloatArray


class BayesianEpsilon(CountsEstimator):
    """Posterior credible interval for ε under the joint-beta model of [ZB23]_.

    FPR and FNR get independent Beta posteriors, ``FPR ~ Beta(FP + a, TN + b)`` and
    ``FNR ~ Beta(FN + a, TP + b)`` with the prior Beta(a, b) (Jeffreys: a = b = ½).
    The posterior of ε is the law of the smallest ε whose (ε, δ) region holds
    (FPR, FNR); the interval is equal-tailed, ``[F⁻¹(α/2), F⁻¹(1 − α/2)]``, or the
    lower bound ``F⁻¹(α)``. F is computed by deterministic quadrature over Beta CDFs
    (no sampling, no cap on ε; CDF error typically 1e-10), so a fit
    takes a few tens of milliseconds.

    With ``method="hierarchical"`` and per-model counts (arrays with one entry per
    trained model), the per-model error rates get a Beta-Binomial random effect around
    population rates, so guesses that share a trained model are not treated as
    independent; the interval is that of ε at the population rates, from NUTS draws in
    PyMC (the ``bayes`` extra; seconds, not milliseconds). With no correlation in the
    data it agrees with the joint-beta interval of the pooled counts; with correlation
    it is wider, as it should be (see ``privaudit.estimators._hierarchical``).

    This is a **heuristic**: a credible interval states belief under the prior, not a
    guarantee; with no errors observed (FN = FP = 0) the prior decides the bounds.
    Use :class:`ClopperPearsonEpsilon` for a bound with a frequentist guarantee.

    Parameters
    ----------
    delta, alpha, sided, threat_model, guesses_per_model
        As for every counts estimator (see ``CountsEstimator``).
    prior
        ``"jeffreys"`` (Beta(½, ½), as in [ZB23]_) or ``"uniform"`` (Beta(1, 1)).
    method
        ``"joint-beta"`` (exact quadrature; per-model arrays are pooled) or
        ``"hierarchical"`` (random effects per trained model; needs per-model counts).
    draws, tune, chains
        NUTS draws kept and tuning steps per chain, and the number of chains
        (``method="hierarchical"`` only). The fit raises
        :class:`~privaudit.errors.ConvergenceError` rather than return an interval from
        a chain that diverged, has R-hat above 1.01 or fewer than 400 effective draws.
    random_state
        Seed of the sampler (``method="hierarchical"`` only); ``None`` draws one.

    Attributes
    ----------
    interval_ : tuple of float
        ``(lower, upper)``; ``upper`` is ``inf`` when ``sided="lower"``.
    median_ : float
        The posterior median of ε (also ``point_``).
    result_ : EpsilonEstimate
        The interval with its labels.
    draws_ : HierarchicalDraws or None
        The posterior draws and sampler diagnostics (``method="hierarchical"``).

    Examples
    --------
    >>> est = BayesianEpsilon(delta=1e-5, alpha=0.05).fit(tp=450, fn=50, tn=450, fp=50)
    >>> [round(x, 3) for x in est.interval_], round(est.median_, 3)
    ([2.038, 2.513], 2.26)
    >>> round(est.cdf(2.26), 2)
    0.5
    >>> est.result_.rigor.value
    'heuristic'
    """

    median_: float
    draws_: HierarchicalDraws | None
    _posterior: JointBetaPosterior | _DrawsPosterior

    def __init__(
        self,
        *,
        delta: float = 1e-5,
        alpha: float = 0.05,
        sided: Sided = "two",
        prior: str = "jeffreys",
        method: str = "joint-beta",
        threat_model: ThreatModel | str = ThreatModel.UNSPECIFIED,
        guesses_per_model: int = 1,
        draws: int = 2000,
        tune: int = 1000,
        chains: int = 2,
        random_state: int | None = None,
    ) -> None:
        super().__init__(
            delta=delta,
            alpha=alpha,
            sided=sided,
            threat_model=threat_model,
            guesses_per_model=guesses_per_model,
        )
        self.prior = check_choice("prior", prior, tuple(PRIORS))
        self.method = check_choice("method", method, METHODS)
        self.draws = check_count("draws", draws, minimum=200)
        self.tune = check_count("tune", tune, minimum=100)
        self.chains = check_count("chains", chains, minimum=2)
        if random_state is not None:
            random_state = check_count("random_state", random_state)
        self.random_state = random_state

    @property
    def _models_correlation(self) -> bool:
        return self.method == "hierarchical"

    def _estimate(
        self, counts: Counts, per_model: PerModelCounts | None
    ) -> tuple[float, float, float | None]:
        self.draws_ = None
        if self.method == "hierarchical":
            if per_model is None or per_model.models < 2:
                raise ParameterError(
                    "method='hierarchical' models the rates of each trained model: pass "
                    "tp, fn, tn and fp as arrays with one count per trained model (at "
                    "least 2 models), or use method='joint-beta' for pooled counts",
                    parameter="method",
                )
            self.draws_ = sample_hierarchical(
                per_model,
                delta=self.delta,
                prior=PRIORS[self.prior],
                draws=self.draws,
                tune=self.tune,
                chains=self.chains,
                random_state=self.random_state,
            )
            self._posterior = _DrawsPosterior(self.draws_.epsilon)
        else:
            self._posterior = JointBetaPosterior(
                tp=counts.tp,
                fn=counts.fn,
                tn=counts.tn,
                fp=counts.fp,
                delta=self.delta,
                prior=PRIORS[self.prior],
            )
        if self.sided == "two":
            median, lower, upper = self._posterior.quantiles_above(
                (0.5, 1.0 - self.alpha / 2, self.alpha / 2)
            )
        else:
            median, lower = self._posterior.quantiles_above((0.5, 1.0 - self.alpha))
            upper = math.inf
        self.median_ = median
        return lower, upper, median

    def _rigor(self) -> tuple[Rigor, str]:
        if self.method == "hierarchical":
            return Rigor.HEURISTIC, (
                "an equal-tailed credible interval of a Beta-Binomial random-effects "
                f"posterior (per-model rates around population rates; {self.prior} prior "
                "on the population rates, Beta(1, 3) on the intra-model correlation), "
                "from MCMC draws: guesses sharing a trained model are not treated as "
                "independent, but it states belief under the model, not a guarantee"
            )
        return Rigor.HEURISTIC, (
            f"an equal-tailed credible interval of the joint-beta posterior under the "
            f"{self.prior} prior [ZB23]: a statement of belief given the prior, with no "
            "frequentist coverage guarantee; with no errors observed the prior decides it"
        )

    @overload
    def cdf(self, epsilon: float) -> float: ...

    @overload
    def cdf(self, epsilon: npt.ArrayLike) -> FloatArray: ...

    def cdf(self, epsilon: float | npt.ArrayLike) -> float | FloatArray:
        """Posterior probability that ε <= ``epsilon`` (a number or an array)."""
        posterior = self._fitted_posterior()
        if np.ndim(epsilon) == 0:
            return posterior.cdf(check_finite_epsilon(epsilon))
        values = np.asarray(epsilon, dtype=float)
        flat = [posterior.cdf(check_finite_epsilon(float(x))) for x in values.ravel()]
        return np.asarray(flat, dtype=float).reshape(values.shape)

    def posterior_grid(self, *, points: int = 200, tail: float = 1e-3) -> PosteriorGrid:
        """The posterior CDF and density of ε on ``points`` grid points, for plots.

        The grid runs from 0 to the ``1 − tail`` posterior quantile.
        """
        posterior = self._fitted_posterior()
        points = check_count("points", points, minimum=3)
        if not 0.0 < tail < 0.5:
            raise ParameterError(f"tail must be in (0, 0.5); got {tail!r}", parameter="tail")
        (top,) = posterior.quantiles_above((tail,))
        top = min(top, MAX_EPSILON) if top > 0 else 1.0
        grid = np.linspace(0.0, top, points)
        cdf = np.array([posterior.cdf(float(x)) for x in grid])
        density = np.gradient(cdf, grid)
        return PosteriorGrid(epsilon=grid, cdf=cdf, density=np.maximum(density, 0.0))

    def _fitted_posterior(self) -> JointBetaPosterior | _DrawsPosterior:
        self._require_fitted()
        return self._posterior
