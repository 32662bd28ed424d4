"""Privacy auditing with one training run [SNJ23]_.

m canaries are each included in the training set independently with probability ½.
After one training run the auditor scores them, guesses "included" for the top k⁺
and "excluded" for the bottom k⁻, and abstains on the rest: r = k⁺ + k⁻ guesses, of
which v are correct. Under (ε, δ)-DP the number of correct guesses is dominated by
Binomial(r, e^ε/(1 + e^ε)) up to a δ term, which gives a p-value for the hypothesis
"the training run is (ε, δ)-DP"; the ε lower bound is the largest ε that the test
rejects at level α. The guarantee needs no independence between training runs (there
is one), only the independent coin of each canary.

References
----------
.. [SNJ23] T. Steinke, M. Nasr, M. Jagielski, "Privacy Auditing with One (1) Training
   Run", NeurIPS 2023, arXiv:2305.08846 (the p-value is that of their reference code).
"""

from __future__ import annotations

import math
from typing import NoReturn, Self

import numpy as np
import numpy.typing as npt
from scipy import optimize, special, stats

from privaudit.errors import DataError, NotFittedError, ParameterError
from privaudit.estimators._checks import check_alpha, check_count, check_delta, check_finite_epsilon
from privaudit.estimators._result import EpsilonEstimate, Rigor, ThreatModel, check_threat_model

_MAX_EPSILON = 700.0


def one_run_p_value(*, m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """P-value of "(ε, δ)-DP" given v correct guesses out of r, with m canaries [SNJ23]_.

    ``P[Binom(r, q) >= v] + 2 m δ max_{1<=i<=v} P[v − i <= Binom(r, q) < v] / i`` with
    ``q = e^ε / (1 + e^ε)``, capped at 1.
    """
    q = float(special.expit(epsilon))
    tail = float(stats.binom.sf(v - 1, r, q))
    if delta == 0.0 or v == 0:
        return min(tail, 1.0)
    # P[v − i <= B < v] for i = 1..v is a running sum of the pmf from v − 1 downwards.
    below = stats.binom.pmf(np.arange(v - 1, -1, -1), r, q)
    spread = float(np.max(np.cumsum(below) / np.arange(1, v + 1)))
    return min(tail + 2.0 * m * delta * spread, 1.0)


class OneRunAudit:
    """Lower bound on ε from one training run with m canaries [SNJ23]_ (**rigorous**).

    Parameters
    ----------
    delta
        The δ of the hypothesis (ε, δ)-DP, in [0, 1).
    alpha
        The level of the test: the bound holds with probability >= 1 − α.
    threat_model
        What the auditor's scores could see (black-box scores, white-box gradients).

    Attributes
    ----------
    epsilon_lower_ : float
        The largest ε that the test rejects at level α (0 if none).
    interval_ : tuple of float
        ``(epsilon_lower_, inf)``.
    result_ : EpsilonEstimate
        The bound with its labels; ``evidence`` holds m, r and v.

    Examples
    --------
    >>> audit = OneRunAudit(delta=0.0, alpha=0.05).fit(m=1000, r=100, v=100)
    >>> round(audit.epsilon_lower_, 3)  # logit(0.05 ** (1/100))
    3.493
    >>> round(OneRunAudit(delta=1e-5).fit(m=1000, r=1000, v=600).epsilon_lower_, 3)
    0.297
    """

    method = "one-run"

    epsilon_lower_: float
    interval_: tuple[float, float]
    result_: EpsilonEstimate

    def __init__(
        self,
        *,
        delta: float = 0.0,
        alpha: float = 0.05,
        threat_model: ThreatModel | str = ThreatModel.UNSPECIFIED,
    ) -> None:
        self.delta = check_delta(delta)
        self.alpha = check_alpha(alpha)
        self.threat_model = check_threat_model(threat_model)

    def fit(self, *, m: int, r: int, v: int) -> Self:
        """Bound ε from the counts of one run.

        Parameters
        ----------
        m
            Number of canaries (each included with probability ½).
        r
            Number of guesses made (canaries not abstained on), ``r <= m``.
        v
            Number of correct guesses, ``v <= r``.

        Returns
        -------
        self
        """
        m = check_count("m", m)
        r = check_count("r", r)
        v = check_count("v", v)
        if not v <= r <= m:
            raise ParameterError(
                f"need v <= r <= m (correct guesses <= guesses <= canaries); got m={m}, r={r}, "
                f"v={v}",
                parameter="r",
            )
        self._counts = (m, r, v)
        lower = self._epsilon_lower(m, r, v)
        self.epsilon_lower_ = lower
        self.interval_ = (lower, math.inf)
        self.result_ = EpsilonEstimate(
            method=self.method,
            lower=lower,
            upper=math.inf,
            point=None,
            alpha=self.alpha,
            sided="lower",
            delta=self.delta,
            rigor=Rigor.RIGOROUS,
            reason=(
                "one-run audit [SNJ23]: a level-α test of (ε, δ)-DP that needs only the "
                "independent inclusion coin of each canary and guesses fixed before the "
                "coins are revealed"
            ),
            threat_model=self.threat_model,
            evidence={"m": m, "r": r, "v": v},
        )
        return self

    def fit_guesses(self, *, guesses: npt.ArrayLike, included: npt.ArrayLike) -> Self:
        """Bound ε from per-canary guesses (+1 in, −1 out, 0 abstain) and the truth.

        ``included`` holds each canary's inclusion: +1/−1, or True/False.
        """
        guess = np.asarray(guesses)
        truth = np.asarray(included)
        if guess.ndim != 1 or truth.shape != guess.shape:
            raise DataError(
                f"guesses and included must be 1-D arrays of one length; got shapes "
                f"{guess.shape} and {truth.shape}"
            )
        if not np.isin(guess, (-1, 0, 1)).all():
            raise DataError("guesses must be +1 (included), -1 (excluded) or 0 (abstain)")
        if truth.dtype == bool:
            truth = np.where(truth, 1, -1)
        elif not np.isin(truth, (-1, 1)).all():
            raise DataError("included must be +1/-1 or True/False for each canary")
        made = guess != 0
        return self.fit(
            m=int(guess.size), r=int(made.sum()), v=int((guess[made] == truth[made]).sum())
        )

    def p_value(self, epsilon: float) -> float:
        """The p-value of the hypothesis "(ε, δ)-DP" for the fitted counts."""
        if "_counts" not in self.__dict__:
            self._not_fitted("p_value")
        m, r, v = self._counts
        return one_run_p_value(
            m=m, r=r, v=v, epsilon=check_finite_epsilon(epsilon), delta=self.delta
        )

    def _epsilon_lower(self, m: int, r: int, v: int) -> float:
        def p_value(epsilon: float) -> float:
            return one_run_p_value(m=m, r=r, v=v, epsilon=epsilon, delta=self.delta)

        if p_value(0.0) >= self.alpha:
            return 0.0
        upper = 1.0
        while p_value(upper) < self.alpha:
            if upper >= _MAX_EPSILON:
                return math.inf
            upper = min(2.0 * upper, _MAX_EPSILON)
        # The p-value grows with ε: the bound is where it crosses α.
        root: float = optimize.brentq(
            lambda eps: p_value(eps) - self.alpha, 0.0, upper, xtol=1e-10, rtol=1e-10
        )
        return root

    def _not_fitted(self, name: str) -> NoReturn:
        raise NotFittedError(
            f"OneRunAudit.{name} needs the counts; call fit(m=..., r=..., v=...) first"
        )

    def __getattr__(self, name: str) -> NoReturn:
        if name.endswith("_") and not name.startswith("_"):
            self._not_fitted(name)
        raise AttributeError(f"'OneRunAudit' object has no attribute {name!r}")

    def __repr__(self) -> str:
        return (
            f"OneRunAudit(delta={self.delta!r}, alpha={self.alpha!r}, "
            f"threat_model={self.threat_model.value!r})"
        )
