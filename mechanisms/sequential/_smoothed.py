"""Smoothed randomized response for Gaussian signals."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.special import log_ndtr

from privaudit.errors import ParameterError
from privaudit.guarantees import PrivacyGuarantee
from privaudit.mechanisms.sequential._model import (
    FloatArray,
    ReportArray,
    SequentialMechanism,
    as_llr,
    as_reports,
    check_epsilon,
    check_theta,
)
from privaudit.registry import mechanisms

__all__ = ["Amplitude", "SmoothedRandomizedResponse"]

Amplitude = float | Literal["logistic"]
"""A flip amplitude in (0, 1/2], or ``"logistic"`` for ``1/(1 + e^ε)``."""

SIGNAL_NEIGHBOURS = "any two signals of one agent, whatever the public log-likelihood ratio"


def _check_positive_finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
        raise ParameterError(f"{name} must be a positive number; got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ParameterError(f"{name} must be finite and > 0; got {number!r}")
    return number


@mechanisms.register("smoothed_rr")
class SmoothedRandomizedResponse(SequentialMechanism):
    """Smoothed randomized response (SRR) for sequential learning [LR25]_.

    Agent n has a Gaussian signal ``s ~ N(θ, σ²)`` about the state θ ∈ {−1, +1} and
    sees the public log-likelihood ratio ``l``. Its Bayesian action is ``a = +1`` iff
    ``s > t(l)``, with the threshold ``t(l) = −σ² l / 2``. It publishes ``a``, flipped
    with probability

    ``u(s, l) = A · exp(−ε · |s − t(l)|)``,

    a fair coin at the threshold (for ``A = 1/2``), where the signal barely decides
    the action, and almost never far from it.

    **Guarantee** (per agent, in the local model, for every public ``l``):
    with ``amplitude = 1/2`` (the default, the paper's current mechanism) a report is
    ε-*metric* DP in the signal, ``P[x | s] <= e^{ε|s − s'|} P[x | s']``
    [CABP13]_: on either side of the threshold the log-probability of each report
    has slope at most ε, and at the threshold ``u = 1/2`` makes it continuous. There
    is no pure ε-DP: a signal far above the threshold reports +1 almost surely.
    A smaller amplitude ``A < 1/2`` leaves a jump of ``log((1 − A)/A)`` in the
    log-probabilities at the threshold: the guarantee becomes
    ``P[x | s] <= e^{ε|s − s'| + log((1−A)/A)·[s, s' on opposite sides]} P[x | s']``,
    stated as ε-metric DP for ``d(s, s') = |s − s'| + (log((1−A)/A)/ε)·[s ≠ s']``.
    ``amplitude="logistic"`` is the paper's older variant ``A = 1/(1 + e^ε)``, whose
    jump is exactly ε: ε-metric DP for ``d = |s − s'| + [s ≠ s']`` (ε across the
    threshold plus ε per unit of distance). Amplitudes above 1/2 are refused: the
    slope at the threshold would exceed ε.

    **Report law** (closed form, [LR25]_ and its code): with ``z = (t − θ)/σ``,
    ``R = E[e^{−ε(s−t)} 1{s>t}] = e^{εσz + ε²σ²/2} Φ(−z − εσ)`` and
    ``L = E[e^{−ε(t−s)} 1{s<t}] = e^{−εσz + ε²σ²/2} Φ(z − εσ)``,

    ``P(x=+1 | l, θ) = Φ(−z) − A·R + A·L``,

    evaluated in log space (``log Φ`` via :func:`scipy.special.log_ndtr`, and
    ``Φ(z) − A·L >= Φ(z)/2`` so no difference cancels), so it stays accurate for
    large |l| and large ε.

    Parameters
    ----------
    epsilon
        ε > 0 per unit of signal distance; ``math.inf`` is the non-private baseline
        (agents publish their Bayesian action).
    sigma
        Standard deviation σ > 0 of the Gaussian signals.
    amplitude
        ``A`` in (0, 1/2], or ``"logistic"`` for ``1/(1 + e^ε)``.

    References
    ----------
    .. [LR25] Y. Liu and M. A. Rahimian, "Differentially Private Sequential
       Learning", FORC 2025, arXiv:2502.19525 (later "Privacy-Aware Sequential
       Learning"); code: github.com/YuxinLiu1997/Privacy-Aware-Sequential-Learning.
    .. [CABP13] K. Chatzikokolakis, M. Andrés, N. Bordenabe and C. Palamidessi,
       "Broadening the Scope of Differential Privacy Using Metrics", PETS 2013.

    Examples
    --------
    >>> from privaudit.mechanisms.sequential import SmoothedRandomizedResponse
    >>> srr = SmoothedRandomizedResponse(epsilon=1.0, sigma=1.0)
    >>> srr.guarantee.notion.value, srr.guarantee.metric
    ('metric', "|s - s'| (signal space)")
    >>> float(srr.flip_probability(0.0, 0.0))  # at the threshold t(0) = 0: a fair coin
    0.5
    >>> round(float(srr.report_probability(0.0, theta=1)), 4)
    0.7407
    """

    name = "smoothed_rr"

    def __init__(self, *, epsilon: float, sigma: float, amplitude: Amplitude = 0.5) -> None:
        self.epsilon = check_epsilon(epsilon)
        self.sigma = _check_positive_finite("sigma", sigma)
        if amplitude == "logistic":
            # 1/(1 + e^ε) without overflow for large ε.
            self.flip_amplitude = float(math.exp(-np.logaddexp(0.0, self.epsilon)))
        elif isinstance(amplitude, bool) or not isinstance(amplitude, int | float | np.floating):
            raise ParameterError(
                f"amplitude must be a number in (0, 0.5] or 'logistic'; got {amplitude!r}"
            )
        elif not 0.0 < float(amplitude) <= 0.5:
            raise ParameterError(
                f"amplitude must be in (0, 0.5] (0.5: continuous at the threshold; "
                f"'logistic': 1/(1+e^epsilon)); got {amplitude!r}"
            )
        else:
            self.flip_amplitude = float(amplitude)
        self.amplitude: Amplitude = amplitude

    def __repr__(self) -> str:
        return (
            f"SmoothedRandomizedResponse(epsilon={self.epsilon:g}, sigma={self.sigma:g}, "
            f"amplitude={self.amplitude!r})"
        )

    # -- the agent ---------------------------------------------------------------------

    def threshold(self, llr: npt.ArrayLike) -> FloatArray:
        """The Bayesian decision threshold ``t(l) = −σ² l / 2`` on the signal."""
        result: FloatArray = -0.5 * self.sigma**2 * as_llr(llr)
        return result

    def sample_signals(self, theta: int, size: int, rng: np.random.Generator) -> FloatArray:
        """``size`` signals ``N(θ, σ²)``."""
        signals: FloatArray = rng.normal(check_theta(theta), self.sigma, size)
        return signals

    def decide(self, signals: npt.ArrayLike, llr: npt.ArrayLike) -> ReportArray:
        """``+1`` iff ``s > t(l)``, i.e. iff the posterior log-odds ``2s/σ² + l`` are positive."""
        above = np.asarray(signals, dtype=np.float64) > self.threshold(llr)
        return np.where(above, 1, -1).astype(np.int8)

    def flip_probability(self, signals: npt.ArrayLike, llr: npt.ArrayLike) -> FloatArray:
        """``A · exp(−ε |s − t(l)|)`` (zero for the non-private baseline)."""
        distance = np.abs(np.asarray(signals, dtype=np.float64) - self.threshold(llr))
        if not self.is_private:
            return np.zeros_like(distance)
        result: FloatArray = self.flip_amplitude * np.exp(-self.epsilon * distance)
        return result

    @property
    def threshold_jump(self) -> float:
        """``log((1 − A)/A)``: the extra privacy loss across the threshold (0 for A = 1/2)."""
        if self.flip_amplitude == 0.0:
            return math.inf
        return math.log((1.0 - self.flip_amplitude) / self.flip_amplitude)

    @property
    def guarantee(self) -> PrivacyGuarantee:
        """ε-metric DP in the signal; see the class docstring for each amplitude."""
        jump = self.threshold_jump
        if jump == 0.0 or not self.is_private:
            metric = "|s - s'| (signal space)"
        else:
            metric = f"|s - s'| + {jump / self.epsilon:.6g}·[s != s'] (signal space)"
        return PrivacyGuarantee.metric_dp(
            self.epsilon, metric=metric, neighbouring=SIGNAL_NEIGHBOURS
        )

    def non_private(self) -> SmoothedRandomizedResponse:
        """Gaussian signals, actions published unchanged."""
        return SmoothedRandomizedResponse(epsilon=math.inf, sigma=self.sigma)

    # -- the public ------------------------------------------------------------------

    def log_report_probabilities(
        self, llr: npt.ArrayLike, theta: int
    ) -> tuple[FloatArray, FloatArray]:
        """``(log P(x=−1 | l, θ), log P(x=+1 | l, θ))`` from the closed form above."""
        z = (self.threshold(llr) - check_theta(theta)) / self.sigma
        return self._log_report_probability(z), self._log_report_probability(-z)

    def log_probability_of(
        self, reports: npt.ArrayLike, llr: npt.ArrayLike, theta: int
    ) -> FloatArray:
        """``log P(x | l, θ)`` of each given report: three ``log Φ`` per report, not six."""
        z = (self.threshold(llr) - check_theta(theta)) / self.sigma
        return self._log_report_probability(np.where(as_reports(reports) > 0, -z, z))

    def _log_report_probability(self, w: FloatArray) -> FloatArray:
        """``log P(x | l, θ)`` at ``w = −x (t − θ)/σ`` (the law is symmetric under x → −x).

        ``P(x) = Φ(w) − A·R(w) + A·R(−w)``, ``R(w) = e^{−εσw + ε²σ²/2} Φ(w − εσ)``:
        ``Φ(w)`` is the mass on the side where the action is x, ``A·R(w)`` the part of it
        flipped away, ``A·R(−w)`` what the other side flips to x.
        """
        log_side: FloatArray = log_ndtr(w)
        if not self.is_private:
            return log_side
        scale = self.epsilon * self.sigma
        log_flipped_away = -scale * w + 0.5 * scale**2 + log_ndtr(w - scale)
        log_flipped_in = scale * w + 0.5 * scale**2 + log_ndtr(-w - scale)
        # Φ(w) − A·R(w) >= Φ(w)/2 (R(w) <= Φ(w), A <= 1/2): no cancellation.
        kept = log_side + np.log1p(
            -np.minimum(np.exp(log_flipped_away - log_side), 1.0) * self.flip_amplitude
        )
        result: FloatArray = np.logaddexp(kept, math.log(self.flip_amplitude) + log_flipped_in)
        return result

    # -- asymptotics -------------------------------------------------------------------

    def drift_constant(self) -> float:
        """``K``: far from the start, ``E[e^{εσ² l_{n+1}/2} − e^{εσ² l_n/2}] → K`` (θ = +1).

        ``K = A e^{ε²σ²/2} [(εσ²/2)(e^ε − e^{−ε}) − e^{−ε}(1 − e^{−ε²σ²})]``; for
        ``A = 1/2`` this is the authors' ``K(ε, σ) = C(ε) − ½ e^{−ε+ε²σ²/2}(1 −
        e^{−ε²σ²})`` ("revised Theorem 4.8" in their code). Derivation: for large
        ``l``, ``P(x=−1 | θ) ≈ A e^{εt − εθ + ε²σ²/2}`` (a flipped +1), a −1 moves ``l``
        by −2ε and a +1 by about ``P(−|−1) − P(−|+1)``; the general ``A`` is ours.

        Raises
        ------
        ParameterError
            For the non-private baseline, or where ``K <= 0``.
        """
        if not self.is_private:
            raise ParameterError("the non-private baseline has no drift constant (epsilon=inf)")
        eps, var = self.epsilon, self.sigma**2
        value = (
            self.flip_amplitude
            * math.exp(0.5 * eps**2 * var)
            * (
                0.5 * eps * var * 2.0 * math.sinh(eps)
                + math.exp(-eps) * math.expm1(-(eps**2) * var)
            )
        )
        if not value > 0:
            raise ParameterError(
                f"the drift constant is not positive at epsilon={eps:g}, sigma={self.sigma:g}"
            )
        return value

    def asymptotic_llr(self, n: npt.ArrayLike) -> FloatArray:
        """``(2/(εσ²)) log(K n)``: the growth ``Θ_ε(log n)`` of the public LLR [LR25]_.

        An asymptotic approximation of the typical ``l_n`` (θ = +1) for large ``n``,
        from ``e^{εσ² l_n/2} ≈ K n``; not an exact mean.
        """
        steps = np.asarray(n, dtype=np.float64)
        result: FloatArray = (
            2.0 / (self.epsilon * self.sigma**2) * np.log(self.drift_constant() * steps)
        )
        return result

    def asymptotic_stopping_time(self, bound: float) -> float:
        """``E[τ_B] ≈ e^{εσ²B/2} / K`` for ``τ_B = inf{n : |l_n| >= B}`` as ``B → ∞``.

        A high-threshold approximation [LR25]_, not an exact value at finite ``B``.
        """
        bound = _check_positive_finite("bound", bound)
        return math.exp(0.5 * self.epsilon * self.sigma**2 * bound) / self.drift_constant()
