"""Frequentist ε intervals from a membership game: a confidence rectangle on (FPR, FNR).

Each rate gets a binomial confidence interval; by the union bound the rectangle of the
two holds both true rates with probability >= 1 − α, and the ε interval is the range
of ε over the rectangle [JUO20]_ [NST21]_ (the "beta" and "jeffreys" methods of
privacy-estimates [ZB23]_).

References
----------
.. [JUO20] M. Jagielski, J. Ullman, A. Oprea, "Auditing Differentially Private Machine
   Learning: How Private is Private SGD?", NeurIPS 2020, arXiv:2006.07709.
.. [NST21] M. Nasr, S. Song, A. Thakurta, N. Papernot, N. Carlini, "Adversary
   Instantiation: Lower Bounds for Differentially Private Machine Learning",
   IEEE S&P 2021, arXiv:2101.04535.
.. [ZB23] S. Zanella-Béguelin et al., "Bayesian Estimation of Differential Privacy",
   ICML 2023, arXiv:2206.05199.
.. [CP34] C. J. Clopper, E. S. Pearson, "The use of confidence or fiducial limits
   illustrated in the case of the binomial", Biometrika 26(4), 1934.
.. [BCD01] L. D. Brown, T. T. Cai, A. DasGupta, "Interval Estimation for a Binomial
   Proportion", Statistical Science 16(2), 2001 (the Jeffreys interval).
"""

from __future__ import annotations

import math
from abc import abstractmethod

import numpy as np
import numpy.typing as npt
from scipy import special

from privaudit.estimators._counts import Counts, CountsEstimator, PerModelCounts
from privaudit.estimators._rates import epsilon_array
from privaudit.estimators._result import Rigor

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def clopper_pearson_interval(successes: int, trials: int, alpha: float) -> tuple[float, float]:
    """Exact two-sided binomial interval at level 1 − α (α/2 in each tail) [CP34]_."""
    if trials == 0:
        return (0.0, 1.0)
    failures = trials - successes
    low = 0.0 if successes == 0 else float(special.betaincinv(successes, failures + 1, alpha / 2))
    # The upper limit from its complement keeps precision when it is close to 1.
    high = (
        1.0
        if failures == 0
        else 1.0 - float(special.betaincinv(failures, successes + 1, alpha / 2))
    )
    return (low, high)


def jeffreys_interval(successes: int, trials: int, alpha: float) -> tuple[float, float]:
    """Equal-tailed Jeffreys interval, with the ends forced to 0 and 1 at 0 and n [BCD01]_."""
    if trials == 0:
        return (0.0, 1.0)
    failures = trials - successes
    low = (
        0.0
        if successes == 0
        else float(special.betaincinv(successes + 0.5, failures + 0.5, alpha / 2))
    )
    high = (
        1.0
        if failures == 0
        else 1.0 - float(special.betaincinv(failures + 0.5, successes + 0.5, alpha / 2))
    )
    return (low, high)


def clopper_pearson_lower_bounds(
    tp: IntArray, fn: IntArray, tn: IntArray, fp: IntArray, alpha: float, delta: float
) -> FloatArray:
    """Vectorised ``ClopperPearsonEpsilon(sided="lower")`` lower bounds, one per matrix
    (for threshold and event searches)."""
    negatives, positives = tn + fp, tp + fn
    with np.errstate(divide="ignore", invalid="ignore"):
        fpr_high = np.where(tn == 0, 1.0, 1.0 - special.betaincinv(tn, fp + 1, alpha / 2))
        fnr_high = np.where(tp == 0, 1.0, 1.0 - special.betaincinv(tp, fn + 1, alpha / 2))
    fpr_high = np.where(negatives == 0, 1.0, fpr_high)
    fnr_high = np.where(positives == 0, 1.0, fnr_high)
    epsilon = epsilon_array(fpr_high, fnr_high, delta)
    bounds: FloatArray = np.where(fpr_high + fnr_high >= 1.0 - delta, 0.0, epsilon)
    return bounds


class _RectangleEstimator(CountsEstimator):
    """ε over a confidence rectangle for (FPR, FNR); subclasses choose the rate interval."""

    @staticmethod
    @abstractmethod
    def _rate_interval(successes: int, trials: int, alpha: float) -> tuple[float, float]:
        """Two-sided interval for a binomial proportion at level 1 − α."""

    def _estimate(
        self, counts: Counts, per_model: PerModelCounts | None
    ) -> tuple[float, float, float | None]:
        # Two-sided: α/2 per rate (α/4 per tail). Lower bound: only the upper limits
        # matter, α/2 each, which is the lower end of the two-sided rectangle at 2α.
        rate_alpha = self.alpha / 2 if self.sided == "two" else self.alpha
        fpr_low, fpr_high = self._rate_interval(counts.fp, counts.negatives, rate_alpha)
        fnr_low, fnr_high = self._rate_interval(counts.fn, counts.positives, rate_alpha)
        delta = self.delta
        corners = epsilon_array(np.array([fpr_low, fpr_high]), np.array([fnr_low, fnr_high]), delta)
        eps_low_corner, eps_high_corner = float(corners[0]), float(corners[1])
        if self.sided == "two":
            # ε is 0 on the band 1 − δ <= FPR + FNR <= 1 + δ; elsewhere it is monotone
            # in each rate, so its range over the rectangle is set by two corners.
            touches_band = fpr_low + fnr_low <= 1.0 + delta and fpr_high + fnr_high >= 1.0 - delta
            lower = 0.0 if touches_band else min(eps_low_corner, eps_high_corner)
            upper = max(eps_low_corner, eps_high_corner)
        else:
            # For the attack as oriented (members positive): a worse-than-random upper
            # corner gives no evidence.
            lower = 0.0 if fpr_high + fnr_high >= 1.0 - delta else eps_high_corner
            upper = math.inf
        point = None
        if counts.positives and counts.negatives:
            observed_fpr = np.array(counts.fp / counts.negatives)
            observed_fnr = np.array(counts.fn / counts.positives)
            point = float(epsilon_array(observed_fpr, observed_fnr, delta))
        return lower, upper, point


class ClopperPearsonEpsilon(_RectangleEstimator):
    """ε interval from Clopper-Pearson intervals on FPR and FNR [JUO20]_ [NST21]_.

    **Rigorous** when every guess comes from its own independently trained model: the
    two-sided interval holds the ε of the attack's true rates with probability
    >= 1 − α (Clopper-Pearson at α/2 per rate, union bound). ``sided="lower"`` bounds
    ε from below using the two upper limits at α/2 each, for the attack as oriented
    (members are positives); it equals the lower end of the two-sided interval at 2α
    whenever the observed attack is not worse than random. Orient the attack before
    running the game, never after seeing the counts.

    Parameters
    ----------
    delta, alpha, sided, threat_model, guesses_per_model
        As for every counts estimator (see ``CountsEstimator``).

    Attributes
    ----------
    interval_ : tuple of float
        ``(lower, upper)``; ``upper`` is ``inf`` when ``sided="lower"``.
    point_ : float or None
        The ε of the observed rates (``None`` if a class has no trials).
    result_ : EpsilonEstimate
        The interval with its labels.

    Examples
    --------
    >>> est = ClopperPearsonEpsilon(delta=0.0, alpha=0.01, sided="lower")
    >>> round(est.fit(tp=500, fn=0, tn=500, fp=0).interval_[0], 2)  # TF-Privacy's 4.54
    4.54
    >>> est.result_.rigor.value
    'rigorous'
    """

    method = "clopper-pearson"

    @staticmethod
    def _rate_interval(successes: int, trials: int, alpha: float) -> tuple[float, float]:
        return clopper_pearson_interval(successes, trials, alpha)

    def _rigor(self) -> tuple[Rigor, str]:
        if self.sided == "two":
            return Rigor.RIGOROUS, (
                "Clopper-Pearson intervals at level α/2 for FPR and for FNR hold both true "
                "rates with probability >= 1 − α (union bound) [JUO20, NST21]; assumes each "
                "guess comes from an independently trained model"
            )
        return Rigor.RIGOROUS, (
            "Clopper-Pearson upper limits for FPR and FNR at α/2 each (union bound) "
            "[JUO20, NST21], for the attack as oriented (members positive); assumes each "
            "guess comes from an independently trained model"
        )


class JeffreysEpsilon(_RectangleEstimator):
    """ε interval from Jeffreys intervals on FPR and FNR (the "jeffreys" method of [ZB23]_).

    Same rectangle construction as :class:`ClopperPearsonEpsilon`, with the
    equal-tailed Jeffreys interval per rate [BCD01]_ (ends forced to 0 and 1 when a
    count is 0 or n). Narrower, but its coverage is only approximately 1 − α, so the
    result is labelled **heuristic**.

    Examples
    --------
    >>> est = JeffreysEpsilon(delta=1e-5).fit(tp=450, fn=50, tn=450, fp=50)
    >>> est.result_.rigor.value, est.interval_[0] < est.point_ < est.interval_[1]
    ('heuristic', True)
    """

    method = "jeffreys"

    @staticmethod
    def _rate_interval(successes: int, trials: int, alpha: float) -> tuple[float, float]:
        return jeffreys_interval(successes, trials, alpha)

    def _rigor(self) -> tuple[Rigor, str]:
        return Rigor.HEURISTIC, (
            "Jeffreys intervals per rate (union bound) have approximately, not provably, "
            "1 − α coverage [BCD01]"
        )
