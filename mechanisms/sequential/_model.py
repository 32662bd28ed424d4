"""The sequential-learning model that every mechanism of this package plugs into.

State θ ∈ {−1, +1} with a uniform prior. Agent n draws a private signal ``s_n`` whose
law depends on θ, sees the public log-likelihood ratio ``l_n = log P(history | θ=+1) /
P(history | θ=−1)`` (``l_0 = 0``), takes the Bayesian action ``a_n ∈ {−1, +1}`` and
publishes a randomized version ``x_n`` of it. Everyone then updates the public ratio
from ``x_n`` alone:

``l_{n+1} = l_n + log P(x_n | l_n, θ=+1) − log P(x_n | l_n, θ=−1)``,

which needs only public data (the report and the report law), so it is
post-processing and costs no privacy.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np
import numpy.typing as npt

from privaudit.errors import DataError, ParameterError
from privaudit.guarantees import PrivacyGuarantee
from privaudit.randomness import RandomSource, resolve_rng

__all__ = ["FloatArray", "ReportArray", "SequentialMechanism", "check_theta"]

FloatArray = npt.NDArray[np.float64]
ReportArray = npt.NDArray[np.int8]
"""Actions and reports: ``int8`` arrays of −1 and +1."""


def check_theta(theta: object) -> int:
    """Return the state ``theta`` as an int after checking it is −1 or +1."""
    if isinstance(theta, bool) or not isinstance(theta, int | np.integer) or theta not in (-1, 1):
        raise ParameterError(f"theta must be the state -1 or +1; got {theta!r}")
    return int(theta)


def check_epsilon(epsilon: object) -> float:
    """Return ``epsilon`` as a float: > 0, and ``math.inf`` for the non-private baseline."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float | np.floating):
        raise ParameterError(
            f"epsilon must be a positive number (math.inf for no privacy); got {epsilon!r}"
        )
    value = float(epsilon)
    if math.isnan(value) or value <= 0:
        raise ParameterError(
            f"epsilon must be > 0 (math.inf for the non-private baseline); got {value!r}"
        )
    return value


def as_llr(llr: object) -> FloatArray:
    """Public log-likelihood ratios as a float array (a scalar becomes 0-d); finite."""
    array = np.asarray(llr, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise DataError("the public log-likelihood ratio must be finite; got inf or nan")
    return array


def as_reports(reports: object) -> ReportArray:
    """Reports as an ``int8`` array, checking each is −1 or +1."""
    array = np.asarray(reports)
    if array.size and not np.all((array == 1) | (array == -1)):
        raise DataError("reports (public actions) must be -1 or +1")
    return array.astype(np.int8, copy=False)


class SequentialMechanism(ABC):
    """An agent's randomizer in the sequential-learning model, with its report law.

    Subclasses fix the signal model (Gaussian or binary) and the flip probability;
    this class derives from them the randomizer, the public belief update and the
    helpers that the simulator uses. ``epsilon = math.inf`` is the non-private
    baseline (agents publish their Bayesian action unchanged).
    """

    name: str
    epsilon: float

    # -- what a subclass defines -------------------------------------------------

    @abstractmethod
    def sample_signals(self, theta: int, size: int, rng: np.random.Generator) -> FloatArray:
        """Draw ``size`` private signals in state ``theta`` (simulation only)."""

    @abstractmethod
    def decide(self, signals: npt.ArrayLike, llr: npt.ArrayLike) -> ReportArray:
        """The Bayesian action ``a ∈ {−1, +1}`` of agents with these signals and public LLR."""

    @abstractmethod
    def flip_probability(self, signals: npt.ArrayLike, llr: npt.ArrayLike) -> FloatArray:
        """The probability that an agent publishes the opposite of its action."""

    @abstractmethod
    def log_report_probabilities(
        self, llr: npt.ArrayLike, theta: int
    ) -> tuple[FloatArray, FloatArray]:
        """``(log P(x=−1 | l, θ), log P(x=+1 | l, θ))``, the exact law of a report."""

    @property
    @abstractmethod
    def guarantee(self) -> PrivacyGuarantee:
        """What one agent's report guarantees about its signal."""

    @abstractmethod
    def non_private(self) -> SequentialMechanism:
        """The same signal model with ``epsilon = math.inf``: the baseline to compare with."""

    # -- derived from the above ----------------------------------------------------

    @property
    def is_private(self) -> bool:
        """Whether reports are randomized at all (``epsilon < inf``)."""
        return math.isfinite(self.epsilon)

    def randomize(
        self, signals: npt.ArrayLike, llr: npt.ArrayLike, *, rng: RandomSource = None
    ) -> ReportArray:
        """Publish each agent's action, flipped with :meth:`flip_probability`.

        Vectorised over agents: ``signals`` and ``llr`` broadcast together.

        Parameters
        ----------
        signals
            The agents' private signals.
        llr
            The public log-likelihood ratio each agent sees.
        rng
            ``None`` (default): release randomness, ChaCha20
            (:func:`privaudit.randomness.secure_generator`). A seeded
            :func:`privaudit.simulation_generator` only for simulations.

        Returns
        -------
        numpy.ndarray
            ``int8`` reports in {−1, +1}. The flip is one comparison of a 53-bit
            uniform with the flip probability: the output is a bit, so float rounding
            moves its law by about 1e-16 at most; none of the leaks of adding float
            noise (Mironov, CCS 2012) apply.
        """
        return self.act(signals, llr, rng=rng)[1]

    def act(
        self, signals: npt.ArrayLike, llr: npt.ArrayLike, *, rng: RandomSource = None
    ) -> tuple[ReportArray, ReportArray]:
        """``(intended, published)``: the Bayesian actions and the reports of :meth:`randomize`.

        The intended actions are private (they reveal the side of the threshold each
        signal is on); only the published ones may be released.
        """
        generator = resolve_rng(rng)
        intended = self.decide(signals, llr)
        if not self.is_private:
            return intended, intended.copy()
        flips = generator.random(intended.shape) < self.flip_probability(signals, llr)
        return intended, np.where(flips, -intended, intended).astype(np.int8)

    def report_probability(self, llr: npt.ArrayLike, theta: int) -> FloatArray:
        """``P(x = +1 | l, θ)``: the probability that an agent reports +1."""
        _, log_plus = self.log_report_probabilities(llr, check_theta(theta))
        return np.exp(log_plus)

    def llr_increment(self, llr: npt.ArrayLike, reports: npt.ArrayLike) -> FloatArray:
        """``log P(x | l, +1) − log P(x | l, −1)``: what a report ``x`` tells the public.

        Zero where the report carries no information (both states give it the same
        probability, e.g. in an information cascade).
        """
        public = as_llr(llr)
        published = as_reports(reports)
        with np.errstate(invalid="ignore"):  # −inf − (−inf) where a report is impossible
            step = self.log_probability_of(published, public, 1) - self.log_probability_of(
                published, public, -1
            )
        # A report that neither state can produce only comes from a law mismatch: keep
        # the belief rather than propagate nan.
        result: FloatArray = np.where(np.isnan(step), 0.0, step)
        return result

    def log_probability_of(
        self, reports: npt.ArrayLike, llr: npt.ArrayLike, theta: int
    ) -> FloatArray:
        """``log P(x | l, θ)`` of each report ``x`` (from :meth:`log_report_probabilities`)."""
        log_minus, log_plus = self.log_report_probabilities(llr, theta)
        result: FloatArray = np.where(as_reports(reports) > 0, log_plus, log_minus)
        return result

    def update_llr(self, llr: npt.ArrayLike, reports: npt.ArrayLike) -> FloatArray:
        """The public belief update ``l_{n+1} = l_n + llr_increment(l_n, x_n)``.

        Pure post-processing of published reports: it reads no signal and no
        randomness, so it costs no privacy.
        """
        public = as_llr(llr)
        result: FloatArray = public + self.llr_increment(public, reports)
        return result
