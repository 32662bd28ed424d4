"""Randomized response for binary signals, and the information cascade it leads to."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from privaudit.errors import ParameterError
from privaudit.guarantees import PrivacyGuarantee
from privaudit.mechanisms.sequential._model import (
    FloatArray,
    ReportArray,
    SequentialMechanism,
    as_llr,
    check_epsilon,
    check_theta,
)
from privaudit.mechanisms.sequential._simulate import stopping_time
from privaudit.registry import mechanisms

__all__ = ["RandomizedResponse"]

TIE_TOLERANCE = 1e-9
"""Relative slack below which the public LLR counts as equal to the signal's LLR.

The public LLR is a sum of floating-point logarithms; after ``j`` equal steps it may
land an ulp either side of the signal's LLR where the exact value is a tie."""


@mechanisms.register("binary_rr")
class RandomizedResponse(SequentialMechanism):
    """Randomized response before an information cascade, for binary signals [LR25]_.

    Agent n's signal ``s ∈ {−1, +1}`` equals the state θ with probability ``p > 1/2``;
    its log-likelihood ratio is ``λ = log(p/(1−p))``. While the public LLR satisfies
    ``|l| <= λ`` the agent's Bayesian action follows its signal (ties are broken
    toward the signal) and it publishes that action flipped with the constant
    probability ``u = 1/(1 + e^ε)`` [War65]_. Once ``|l| > λ`` the action is
    ``sign(l)`` whatever the signal: an *information cascade*. The action then says
    nothing about the signal, so it is published unchanged, and the public stops
    learning.

    **Guarantee:** ε-DP in the binary signal, per agent, for every public ``l``
    (``(1 − u)/u = e^ε`` before a cascade; a report independent of the signal in one).

    **Cascade formulas** [LR25]_ (their code, ``figure_02_binary_stopping_time.py``).
    Before the cascade each report is right with probability ``p(1−u) + (1−p)u`` and
    moves ``l`` by ``±log(1/ρ)``, ``ρ = P(wrong report)/P(right report)``, so the net
    count of right reports is a gambler's-ruin walk. A cascade starts after
    ``k = ⌊log_ρ((1−p)/p)⌋ + 1`` net reports one way (``k = 2`` without privacy), so

    * ``P[right cascade] = (ρ^k − 1)/(ρ^{2k} − 1) = 1/(1 + ρ^k)``
      (non-private: ``p²/(2p² − 2p + 1)``),
    * ``E[τ] = (k/μ)(1 − ρ^k)/(1 + ρ^k)`` with drift ``μ = (2p − 1)(1 − 2u)``,

    where τ is the index of the report that starts the cascade. ``k`` jumps by one
    where ε crosses ``ε_k = log((1 − w_k)/w_k)``, ``w_k = (1 − α^{(k−2)/(k−1)}) / (1 −
    α^{(k−2)/(k−1)} + α^{−1/(k−1)} − α)``, ``α = (1−p)/p``
    (:meth:`cascade_epsilon_boundaries`): ``k(ε) = k`` on ``(ε_{k+1}, ε_k]``, which
    makes the probability of a right cascade non-monotone in ε.

    Parameters
    ----------
    epsilon
        ε > 0; ``math.inf`` is the non-private baseline.
    p
        Signal accuracy ``P(s = θ)``, in (1/2, 1).

    References
    ----------
    .. [LR25] Y. Liu and M. A. Rahimian, "Differentially Private Sequential
       Learning", FORC 2025, arXiv:2502.19525.
    .. [War65] S. L. Warner, "Randomized response", JASA 1965.

    Examples
    --------
    >>> import math
    >>> from privaudit.mechanisms.sequential import RandomizedResponse
    >>> rr = RandomizedResponse(epsilon=1.0, p=0.7)
    >>> rr.cascade_threshold(), rr.non_private().cascade_threshold()
    (3, 2)
    >>> p_right = rr.right_cascade_probability()
    >>> bool(p_right < rr.non_private().right_cascade_probability())  # privacy hurts
    True
    """

    name = "binary_rr"

    def __init__(self, *, epsilon: float, p: float) -> None:
        self.epsilon = check_epsilon(epsilon)
        if isinstance(p, bool) or not isinstance(p, int | float | np.floating):
            raise ParameterError(f"p must be a probability in (0.5, 1); got {p!r}")
        if not 0.5 < float(p) < 1.0:
            raise ParameterError(
                f"p (the probability that a signal is right) must be in (0.5, 1); got {p!r}"
            )
        self.p = float(p)

    def __repr__(self) -> str:
        return f"RandomizedResponse(epsilon={self.epsilon:g}, p={self.p:g})"

    # -- parameters --------------------------------------------------------------------

    @property
    def flip(self) -> float:
        """``u = 1/(1 + e^ε)`` (0 without privacy)."""
        return float(math.exp(-np.logaddexp(0.0, self.epsilon)))

    @property
    def signal_llr(self) -> float:
        """``λ = log(p/(1−p))``: how far one signal moves a belief."""
        return math.log(self.p / (1.0 - self.p))

    @property
    def error_ratio(self) -> float:
        """``ρ = P(wrong report)/P(right report)`` before a cascade."""
        u, p = self.flip, self.p
        return ((1 - p) * (1 - u) + p * u) / (p * (1 - u) + (1 - p) * u)

    @property
    def guarantee(self) -> PrivacyGuarantee:
        """ε-DP in the agent's binary signal."""
        return PrivacyGuarantee.pure(
            self.epsilon,
            neighbouring="the two values of one agent's binary signal, "
            "whatever the public log-likelihood ratio",
        )

    def non_private(self) -> RandomizedResponse:
        """The same signals, actions published unchanged."""
        return RandomizedResponse(epsilon=math.inf, p=self.p)

    # -- the agent ---------------------------------------------------------------------

    def in_cascade(self, llr: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Whether the public LLR overrides any signal: ``|l| > λ`` (beyond a tie)."""
        result: npt.NDArray[np.bool_] = np.abs(as_llr(llr)) > self.cascade_bound
        return result

    @property
    def cascade_bound(self) -> float:
        """``λ`` plus the tie tolerance: a cascade is ``|l| > cascade_bound``."""
        return self.signal_llr * (1.0 + TIE_TOLERANCE)

    def sample_signals(self, theta: int, size: int, rng: np.random.Generator) -> FloatArray:
        """``size`` signals: θ with probability ``p``, −θ otherwise (as floats ±1)."""
        right = rng.random(size) < self.p
        signals: FloatArray = np.where(right, 1.0, -1.0) * check_theta(theta)
        return signals

    def decide(self, signals: npt.ArrayLike, llr: npt.ArrayLike) -> ReportArray:
        """The signal before a cascade, ``sign(l)`` in one."""
        public = as_llr(llr)
        own = np.where(np.asarray(signals) > 0, 1, -1)
        return np.where(self.in_cascade(public), np.sign(public), own).astype(np.int8)

    def flip_probability(self, signals: npt.ArrayLike, llr: npt.ArrayLike) -> FloatArray:
        """``u`` before a cascade, 0 in one."""
        cascade = self.in_cascade(llr)
        shape = np.broadcast_shapes(np.shape(signals), cascade.shape)
        result: FloatArray = np.broadcast_to(np.where(cascade, 0.0, self.flip), shape).copy()
        return result

    # -- the public ------------------------------------------------------------------

    def log_report_probabilities(
        self, llr: npt.ArrayLike, theta: int
    ) -> tuple[FloatArray, FloatArray]:
        """The report law: informative before a cascade, ``x = sign(l)`` in one."""
        public = as_llr(llr)
        right = self.p * (1 - self.flip) + (1 - self.p) * self.flip  # P(x = θ)
        plus = right if check_theta(theta) == 1 else 1.0 - right
        cascade = self.in_cascade(public)
        probability_plus = np.where(cascade, (public > 0).astype(np.float64), plus)
        with np.errstate(divide="ignore"):  # log 0 = −inf for an impossible report
            log_plus: FloatArray = np.log(probability_plus)
            log_minus: FloatArray = np.log1p(-probability_plus)
        return log_minus, log_plus

    # -- cascade formulas --------------------------------------------------------------

    def cascade_threshold(self) -> int:
        """``k = ⌊log_ρ((1−p)/p)⌋ + 1``: net reports one way that start a cascade."""
        ratio = math.log((1 - self.p) / self.p) / math.log(self.error_ratio)
        # A ratio within float noise of an integer is that integer (the tie at ε_k).
        return math.floor(ratio + TIE_TOLERANCE) + 1

    def right_cascade_probability(self) -> float:
        """``1/(1 + ρ^k)``: the probability that the cascade is on the true state."""
        return 1.0 / (1.0 + self.error_ratio ** self.cascade_threshold())

    def expected_cascade_time(self) -> float:
        """``E[τ] = (k/μ)(1 − ρ^k)/(1 + ρ^k)``, τ = the report that starts the cascade."""
        k, rho = self.cascade_threshold(), self.error_ratio
        drift = (2 * self.p - 1) * (1 - 2 * self.flip)
        return k / drift * (1 - rho**k) / (1 + rho**k)

    def cascade_time(self, llr: npt.ArrayLike) -> FloatArray:
        """Per path (rows of ``llr``, column n = ``l_n``), the first n in a cascade.

        ``inf`` for a path that has not cascaded within its horizon.
        """
        return stopping_time(llr, np.nextafter(self.cascade_bound, math.inf))

    @staticmethod
    def cascade_epsilon_boundaries(p: float, k_max: int) -> dict[int, float]:
        """``{k: ε_k}`` for ``k = 3 .. k_max``: below ``ε_k`` a cascade needs ``k`` or more.

        ``k(ε) = k`` for ε in ``(ε_{k+1}, ε_k]``; ``ε_2 = ∞``.
        """
        RandomizedResponse(epsilon=1.0, p=p)  # validates p
        if isinstance(k_max, bool) or not isinstance(k_max, int) or k_max < 3:
            raise ParameterError(f"k_max must be an integer >= 3; got {k_max!r}")
        alpha = (1 - p) / p
        boundaries = {}
        for k in range(3, k_max + 1):
            power = alpha ** ((k - 2) / (k - 1))
            w = (1 - power) / (1 - power + alpha ** (-1 / (k - 1)) - alpha)
            boundaries[k] = math.log((1 - w) / w)
        return boundaries
