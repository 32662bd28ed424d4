"""A vectorised simulator of sequential learning, and statistics of its trajectories."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from privaudit.errors import DataError, ParameterError
from privaudit.mechanisms.sequential._model import (
    FloatArray,
    ReportArray,
    SequentialMechanism,
    check_theta,
)
from privaudit.progress import ProgressCallback
from privaudit.randomness import RandomSource, resolve_rng

__all__ = [
    "SequentialLearningResult",
    "first_correct_time",
    "simulate_sequential_learning",
    "stopping_time",
    "wrong_action_count",
]

MAX_CELLS = 250_000_000
"""Most LLR values one simulation keeps (2 GB of float64)."""

IntArray = npt.NDArray[np.int64]


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ParameterError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def stopping_time(llr: npt.ArrayLike, bound: float) -> FloatArray:
    """``τ_B = inf{n >= 1 : |l_n| >= B}`` for each path.

    Parameters
    ----------
    llr
        Trajectories, one row per path, column ``n`` holding ``l_n`` (column 0 is
        ``l_0``, which does not count).
    bound
        ``B > 0``.

    Returns
    -------
    numpy.ndarray
        ``τ_B`` per path as floats; ``inf`` where the path stays below ``B`` up to its
        horizon (so a mean over paths is never silently taken over the finished ones).
    """
    trajectories = _check_trajectories("llr", llr, np.float64)
    if isinstance(bound, bool) or not isinstance(bound, int | float | np.floating):
        raise ParameterError(f"bound must be a positive number; got {bound!r}")
    if not (math.isfinite(bound) and bound > 0):
        raise ParameterError(f"bound must be finite and > 0; got {bound!r}")
    return _first_true(np.abs(trajectories[:, 1:]) >= bound)


def first_correct_time(actions: npt.ArrayLike, theta: int) -> FloatArray:
    """The index ``n >= 1`` of the first action equal to θ on each path (``inf`` if none)."""
    return _first_true(_check_trajectories("actions", actions, np.int8) == check_theta(theta))


def wrong_action_count(actions: npt.ArrayLike, theta: int) -> IntArray:
    """How many actions differ from θ on each path."""
    wrong = _check_trajectories("actions", actions, np.int8) != check_theta(theta)
    counts: IntArray = wrong.sum(axis=1, dtype=np.int64)
    return counts


def _first_true(hits: npt.NDArray[np.bool_]) -> FloatArray:
    first = np.argmax(hits, axis=1).astype(np.float64) + 1.0
    result: FloatArray = np.where(hits.any(axis=1), first, math.inf)
    return result


def _check_trajectories(name: str, values: npt.ArrayLike, dtype: type) -> npt.NDArray[np.generic]:
    array = np.asarray(values)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] == 0:
        raise DataError(
            f"{name} must be a 2-D array, one row per path; got shape {np.shape(values)}"
        )
    return array.astype(dtype, copy=False)


@dataclass(frozen=True, slots=True)
class SequentialLearningResult:
    """What :func:`simulate_sequential_learning` returns.

    Attributes
    ----------
    mechanism
        The mechanism every agent used.
    theta
        The true state.
    llr
        ``(n_paths, n_agents + 1)``: column ``n`` is the public LLR ``l_n`` after
        ``n`` reports (column 0 is ``l_0 = 0``).
    actions
        ``(n_paths, n_agents)`` ``int8``: the public (randomized) actions ``x_n``,
        the record that the next agents and the public see.
    intended_actions
        ``(n_paths, n_agents)`` ``int8``: each agent's Bayesian action ``a_n`` before
        randomization (private; kept for analysis).
    """

    mechanism: SequentialMechanism
    theta: int
    llr: FloatArray
    actions: ReportArray
    intended_actions: ReportArray

    @property
    def n_paths(self) -> int:
        return int(self.llr.shape[0])

    @property
    def n_agents(self) -> int:
        return int(self.llr.shape[1] - 1)

    def mean_belief(self) -> FloatArray:
        """``θ · mean over paths of l_n``, for n = 0 .. n_agents: the public's mean
        log-likelihood ratio in favour of the true state."""
        result: FloatArray = self.theta * self.llr.mean(axis=0)
        return result

    def stopping_time(self, bound: float) -> FloatArray:
        """:func:`stopping_time` of every path."""
        return stopping_time(self.llr, bound)

    def first_correct_time(self) -> FloatArray:
        """:func:`first_correct_time` of the public actions of every path."""
        return first_correct_time(self.actions, self.theta)

    def wrong_action_count(self) -> IntArray:
        """:func:`wrong_action_count` of the public actions of every path."""
        return wrong_action_count(self.actions, self.theta)


def simulate_sequential_learning(
    *,
    mechanism: SequentialMechanism,
    theta: int,
    n_agents: int,
    n_paths: int,
    rng: RandomSource,
    on_progress: ProgressCallback | None = None,
) -> SequentialLearningResult:
    """Simulate ``n_paths`` independent histories of ``n_agents`` agents.

    Each agent draws a signal, takes its Bayesian action given the public LLR,
    publishes it through ``mechanism`` and the public updates the LLR from the
    report (:meth:`SequentialMechanism.update_llr`). Vectorised over paths: one numpy
    step per agent, so the cost is ``n_agents`` steps on arrays of ``n_paths``.

    Parameters
    ----------
    mechanism
        A :class:`SequentialMechanism` (for the non-private baseline, pass
        ``mechanism.non_private()``).
    theta
        The true state, −1 or +1.
    n_agents, n_paths
        Horizon and number of independent paths (``n_paths · (n_agents + 1)`` at
        most 2.5·10^8).
    rng
        A seeded :func:`privaudit.simulation_generator` for a reproducible
        simulation; ``None`` uses release randomness (ChaCha20), which is slower and
        not reproducible.
    on_progress
        Called as ``on_progress(done, n_agents)`` about a hundred times.

    Returns
    -------
    SequentialLearningResult

    Examples
    --------
    >>> from privaudit import simulation_generator
    >>> from privaudit.mechanisms.sequential import (
    ...     SmoothedRandomizedResponse, simulate_sequential_learning)
    >>> srr = SmoothedRandomizedResponse(epsilon=1.0, sigma=1.0)
    >>> result = simulate_sequential_learning(
    ...     mechanism=srr, theta=1, n_agents=200, n_paths=500, rng=simulation_generator(0))
    >>> result.llr.shape, result.actions.shape
    ((500, 201), (500, 200))
    >>> bool(result.mean_belief()[-1] > 0)  # the public learns the true state
    True
    """
    if not isinstance(mechanism, SequentialMechanism):
        raise ParameterError(
            "mechanism must be a SequentialMechanism (SmoothedRandomizedResponse, "
            f"RandomizedResponse); got {type(mechanism).__name__}"
        )
    theta = check_theta(theta)
    n_agents = _check_count("n_agents", n_agents)
    n_paths = _check_count("n_paths", n_paths)
    if n_paths * (n_agents + 1) > MAX_CELLS:
        raise ParameterError(
            f"n_paths x (n_agents + 1) = {n_paths * (n_agents + 1):,} is more than "
            f"{MAX_CELLS:,} stored LLR values; simulate fewer paths per call"
        )
    generator = resolve_rng(rng)
    # Time-major while simulating, so each step writes one contiguous row.
    llr = np.zeros((n_agents + 1, n_paths))
    actions = np.empty((n_agents, n_paths), dtype=np.int8)
    intended = np.empty((n_agents, n_paths), dtype=np.int8)
    every = max(1, n_agents // 100)
    for n in range(n_agents):
        public = llr[n]
        signals = mechanism.sample_signals(theta, n_paths, generator)
        intended[n], actions[n] = mechanism.act(signals, public, rng=generator)
        llr[n + 1] = public + mechanism.llr_increment(public, actions[n])
        if on_progress is not None and ((n + 1) % every == 0 or n + 1 == n_agents):
            on_progress(n + 1, n_agents)
    return SequentialLearningResult(
        mechanism=mechanism,
        theta=theta,
        llr=llr.T,
        actions=actions.T,
        intended_actions=intended.T,
    )
