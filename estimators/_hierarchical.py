"""A random-effects posterior of ε for games with many guesses per trained model.

The multi-sample heuristic of [ZB23]_ pools every (model, challenge point) guess of a
membership game as an independent Bernoulli trial. Guesses scored against one trained
model share that model's training run, so they are correlated: a model that happened to
overfit makes many guesses right at once. Pooled counts then carry less information than
their size suggests and the joint-beta interval is too narrow.

This module models the per-model error rates as draws from a population,

``FP_m ~ BetaBinomial(N_m, μ_FP κ_FP, (1 − μ_FP) κ_FP)`` and the same for FN,

where ``μ`` is the population rate (the error rate of the attack on a fresh trained
model: what ε is about) and ``ρ = 1 / (1 + κ)`` is the intra-model correlation of two
guesses of the same model. ρ = 0 is the pooled model of [ZB23]_; the data decide how far
from it to go. Priors: ``μ ~ Beta(a, b)`` (the estimator's prior, Jeffreys by default)
and ``ρ ~ Beta(1, 3)`` (mean ¼, mass all the way down to ρ = 0). The posterior is
sampled with NUTS in PyMC [PyMC23]_ (imported lazily: only this method needs it), and ε
is the smallest ε whose region holds ``(μ_FP, μ_FN)``, draw by draw. [YIL25]_ also sample a
hierarchical model of membership attacks with MCMC (theirs has a latent attack strength).

References
----------
.. [ZB23] S. Zanella-Béguelin et al., "Bayesian Estimation of Differential Privacy",
   ICML 2023, arXiv:2206.05199.
.. [YIL25] C. Yildirim, K. Kaya, S. Yildirim, E. Savaş, "MCMC for Bayesian Estimation
   of Differential Privacy from Membership Inference Attacks", arXiv:2504.16683, 2025.
.. [PyMC23] O. Abril-Pla et al., "PyMC: a modern, and comprehensive probabilistic
   programming framework in Python", PeerJ Computer Science 9:e1516, 2023.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from privaudit.errors import ConvergenceError, MissingDependencyError
from privaudit.estimators._counts import PerModelCounts
from privaudit.estimators._rates import epsilon_array

FloatArray = npt.NDArray[np.float64]

CORRELATION_PRIOR = (1.0, 3.0)
"""Beta prior of the intra-model correlation ρ."""
MIN_CORRELATION = 1e-6
MAX_R_HAT = 1.01
MIN_EFFECTIVE_DRAWS = 400


@dataclass(frozen=True)
class HierarchicalDraws:
    """Posterior draws of the hierarchical model and their diagnostics.

    Attributes
    ----------
    epsilon
        ε of the population rates, one value per draw (chains concatenated).
    population_fpr, population_fnr
        Draws of μ_FP and μ_FN.
    correlation_fp, correlation_fn
        Draws of ρ for false positives and for false negatives.
    r_hat, effective_draws
        The worst (largest) split R-hat and the smallest bulk effective sample size over
        the model's four parameters.
    divergences
        NUTS divergences after tuning (the fit refuses any).
    """

    epsilon: FloatArray
    population_fpr: FloatArray
    population_fnr: FloatArray
    correlation_fp: FloatArray
    correlation_fn: FloatArray
    r_hat: float
    effective_draws: float
    divergences: int

    def diagnostics(self) -> dict[str, float | int]:
        """R-hat, effective draws, divergences and posterior means of ρ."""
        return {
            "r_hat": self.r_hat,
            "effective_draws": self.effective_draws,
            "divergences": self.divergences,
            "draws": int(self.epsilon.size),
            "correlation_fp_mean": float(self.correlation_fp.mean()),
            "correlation_fn_mean": float(self.correlation_fn.mean()),
        }


def sample_hierarchical(
    counts: PerModelCounts,
    *,
    delta: float,
    prior: tuple[float, float],
    draws: int,
    tune: int,
    chains: int,
    random_state: int | None,
) -> HierarchicalDraws:
    """Sample the Beta-Binomial random-effects posterior and return ε draws.

    Raises
    ------
    MissingDependencyError
        If PyMC (the ``bayes`` extra) is not installed.
    ConvergenceError
        If NUTS diverged, R-hat exceeds 1.01 or fewer than 400 effective draws remain.
    """
    pm, az = _import_pymc()

    a, b = prior
    with pm.Model():
        population = pm.Beta("population", alpha=a, beta=b, shape=2)
        correlation = pm.Beta("correlation", *CORRELATION_PRIOR, shape=2)
        # ρ below ~1e-6 is indistinguishable from 0 for any realistic game, and keeping
        # κ = 1/ρ − 1 <= 1e6 keeps the Beta-Binomial's log-gamma differences accurate.
        concentration = 1.0 / (MIN_CORRELATION + (1.0 - MIN_CORRELATION) * correlation) - 1.0
        for index, (name, errors, trials) in enumerate(
            (("fp", counts.fp, counts.negatives), ("fn", counts.fn, counts.positives))
        ):
            pm.BetaBinomial(
                name,
                alpha=population[index] * concentration[index],
                beta=(1.0 - population[index]) * concentration[index],
                n=trials,
                observed=errors,
            )
        # PyMC logs its sampler banner at INFO; a library call should be quiet.
        logger = logging.getLogger("pymc")
        level = logger.level
        logger.setLevel(logging.WARNING)
        try:
            trace = pm.sample(
                draws=draws,
                tune=tune,
                chains=chains,
                cores=1,
                random_seed=random_state,
                target_accept=0.9,
                progressbar=False,
                compute_convergence_checks=False,
                compile_kwargs=_compile_mode(),
            )
        finally:
            logger.setLevel(level)
    posterior = trace.posterior
    population_draws = posterior["population"].values.reshape(-1, 2)
    correlation_draws = posterior["correlation"].values.reshape(-1, 2)
    r_hat = float(az.rhat(trace).to_array().max())
    effective = float(az.ess(trace, method="bulk").to_array().min())
    divergences = int(trace.sample_stats["diverging"].values.sum())
    if divergences or not r_hat <= MAX_R_HAT or not effective >= MIN_EFFECTIVE_DRAWS:
        raise ConvergenceError(
            f"the hierarchical posterior did not converge (divergences {divergences}, "
            f"R-hat {r_hat:.4f} > {MAX_R_HAT} or effective draws {effective:.0f} < "
            f"{MIN_EFFECTIVE_DRAWS}); raise draws= and tune=, or try another random_state",
            divergences=divergences,
            r_hat=r_hat,
            effective_draws=effective,
        )
    fpr = population_draws[:, 0].astype(np.float64)
    fnr = population_draws[:, 1].astype(np.float64)
    return HierarchicalDraws(
        epsilon=epsilon_array(fpr, fnr, delta),
        population_fpr=fpr,
        population_fnr=fnr,
        correlation_fp=correlation_draws[:, 0].astype(np.float64),
        correlation_fn=correlation_draws[:, 1].astype(np.float64),
        r_hat=r_hat,
        effective_draws=effective,
        divergences=divergences,
    )


def _import_pymc() -> tuple[Any, Any]:
    """PyMC and ArviZ, imported on first use (the default path never needs them)."""
    try:
        with warnings.catch_warnings():
            # ArviZ announces its coming 1.0 refactor with a FutureWarning on import.
            warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
            import arviz
            import pymc
    except ImportError as error:
        raise MissingDependencyError(
            "method='hierarchical' samples with PyMC: pip install 'privaudit[bayes]'"
        ) from error
    return pymc, arviz


def _compile_mode() -> dict[str, str]:
    # Numba compiles this model in ~20 s on a cold cache where PyTensor's C backend
    # takes over a minute; sampling speed is similar.
    return {"mode": "NUMBA"} if importlib.util.find_spec("numba") is not None else {}
