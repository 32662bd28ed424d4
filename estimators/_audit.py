"""Audit a mechanism: run it on two neighbouring inputs and bound its ε from below.

The auditor picks neighbours ``x`` and ``x'`` (for an LDP frequency oracle: two values
of one user), runs the mechanism ``n_trials`` times on each, and counts how often the
output falls in an event ``E``. With ``x`` as the positive class this is a membership
game [JUO20]_ [NST21]_: ``TPR = P[M(x) ∈ E]``, ``FPR = P[M(x') ∈ E]``, and ε-DP
forces ``TPR <= e^ε FPR + δ`` (and the same for the complement). The trials are
independent, so the Clopper-Pearson bound of the counts is **rigorous**: it exceeds
the mechanism's true ε with probability at most α, *provided E does not depend on the
counted trials*.

That proviso is where audits go wrong: choosing the most revealing outputs and counting
on the same samples overstates ε. :func:`audit_mechanism` therefore either

* takes an event fixed in advance (a function of the output), counted on every trial;
  or
* (``event="split"``, the default) splits the trials: on the first part it estimates
  each output's probability under ``x`` and ``x'``, ranks outputs by the smoothed
  likelihood ratio, and keeps the top-ranked set that maximises the Clopper-Pearson
  bound *on that part*; the bound is then computed only from the other part, which the
  choice never saw. The bound is valid whatever the choice was, because conditional on
  the selection part the event is fixed and the evaluation trials are still
  independent draws.

Outputs are compared by value: every report array of a trial (engine ``Reports``,
multidimensional reports, or an array with one row per trial) becomes one key.

References
----------
.. [JUO20] M. Jagielski, J. Ullman, A. Oprea, "Auditing Differentially Private Machine
   Learning: How Private is Private SGD?", NeurIPS 2020, arXiv:2006.07709.
.. [NST21] M. Nasr, S. Song, A. Thakurta, N. Papernot, N. Carlini, "Adversary
   Instantiation: Lower Bounds for Differentially Private Machine Learning",
   IEEE S&P 2021, arXiv:2101.04535.
.. [DWWZK18] Z. Ding, Y. Wang, G. Wang, D. Zhang, D. Kifer, "Detecting Violations of
   Differential Privacy", CCS 2018 (hypothesis tests on a held-out event).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from privaudit.errors import DataError, LimitExceededError, ParameterError
from privaudit.estimators._bayes import BayesianEpsilon
from privaudit.estimators._checks import check_alpha, check_count, check_delta, check_fraction
from privaudit.estimators._frequentist import ClopperPearsonEpsilon, clopper_pearson_lower_bounds
from privaudit.estimators._result import EpsilonEstimate, ThreatModel
from privaudit.guarantees import PrivacyGuarantee

__all__ = ["MechanismAudit", "audit_mechanism"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

Event = Callable[[Any], npt.ArrayLike]
"""A fixed event: maps a batch of outputs to one boolean per trial (True: in E)."""

MAX_OUTPUTS = 1_000_000
"""Most distinct outputs ``event="split"`` tracks; beyond it, pass a fixed event."""

_CHUNK = 1 << 16


class Mechanism(Protocol):
    """What :func:`audit_mechanism` needs: a vectorised randomizer and a guarantee."""

    @property
    def guarantee(self) -> PrivacyGuarantee: ...

    def randomize(self, values: Any, *, rng: np.random.Generator | None = None) -> Any: ...


@dataclass(frozen=True)
class MechanismAudit:
    """The outcome of :func:`audit_mechanism`.

    Attributes
    ----------
    claimed_epsilon, claimed_delta
        The guarantee the mechanism states (``mechanism.guarantee``).
    clopper_pearson
        The rigorous one-sided lower bound (``sided="lower"``).
    bayesian
        The joint-beta posterior lower bound on the same counts (heuristic).
    n_trials
        Trials run on each of the two inputs.
    event
        How the event was chosen: ``strategy`` (``"split"`` or ``"fixed"``), the
        trials per input used to choose it and to count, and for ``"split"`` how many
        distinct outputs were seen and how many the event holds.
    """

    mechanism: str
    x: Any
    x_neighbour: Any
    n_trials: int
    claimed_epsilon: float
    claimed_delta: float
    clopper_pearson: EpsilonEstimate
    bayesian: EpsilonEstimate
    event: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def lower_bound(self) -> float:
        """The rigorous (Clopper-Pearson) lower bound on ε."""
        return self.clopper_pearson.lower

    @property
    def violation(self) -> bool:
        """Whether the rigorous lower bound exceeds the claimed ε: evidence, at level
        1 − α, that the mechanism does not meet its guarantee."""
        return self.clopper_pearson.lower > self.claimed_epsilon

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "mechanism": self.mechanism,
            "x": _jsonable(self.x),
            "x_neighbour": _jsonable(self.x_neighbour),
            "n_trials": self.n_trials,
            "claimed_epsilon": self.claimed_epsilon,
            "claimed_delta": self.claimed_delta,
            "violation": self.violation,
            "clopper_pearson": self.clopper_pearson.to_dict(),
            "bayesian": self.bayesian.to_dict(),
            "event": dict(self.event),
        }

    def __str__(self) -> str:
        verdict = "VIOLATION" if self.violation else "consistent with the claim"
        return (
            f"{self.mechanism}: claimed ε={self.claimed_epsilon:g}; {self.clopper_pearson}; "
            f"Bayesian ε >= {self.bayesian.lower:.4g}; {verdict}"
        )


def audit_mechanism(
    mechanism: Mechanism,
    x: Any,
    x_neighbour: Any,
    *,
    n_trials: int,
    event: str | Event = "split",
    alpha: float = 0.05,
    delta: float | None = None,
    selection_fraction: float = 0.5,
    rng: np.random.Generator | None = None,
) -> MechanismAudit:
    """Lower-bound a mechanism's ε by running it on two neighbouring inputs.

    Parameters
    ----------
    mechanism
        Anything with ``randomize(values, *, rng=...)`` (vectorised: one output row per
        input row) and a ``guarantee`` (:class:`~privaudit.guarantees.PrivacyGuarantee`
        with an ε): every LDP frequency oracle, longitudinal and multidimensional
        protocol of :mod:`privaudit.mechanisms.ldp`.
    x, x_neighbour
        The two neighbouring inputs of one trial: values for a frequency oracle,
        tuples (length ``d``) for a multidimensional protocol. ``x`` is the positive
        class of the game.
    n_trials
        Runs of the mechanism on each input. The bound's resolution depends on the
        event's probabilities: for a k-ary protocol these shrink like 1/k, so the
        trials needed to get close to ε grow with k (docs/estimators.md).
    event
        ``"split"`` (default): choose the event on the first ``selection_fraction`` of
        the trials and count on the rest (see the module docstring). Or a function
        mapping a batch of outputs to one boolean per trial, fixed before the audit
        (e.g. ``lambda r: r.arrays["values"] == x`` for GRR, the likelihood-ratio
        event of its channel); it is counted on every trial.
    alpha
        The bound exceeds the true ε with probability at most α.
    delta
        The δ at which ε is bounded; default: the claimed δ (0 for pure DP).
    selection_fraction
        The share of trials used to choose a ``"split"`` event, in (0, 1).
    rng
        Passed to ``mechanism.randomize``: ``None`` runs the release path with its
        secure randomness; pass :func:`privaudit.simulation_generator` output for a
        reproducible audit.

    Returns
    -------
    MechanismAudit
        The Clopper-Pearson (rigorous) and Bayesian (heuristic) lower bounds, labelled
        with the ``mechanism`` threat model, next to the claimed ε.

    Examples
    --------
    >>> from privaudit import simulation_generator
    >>> from privaudit.mechanisms.ldp import GRR
    >>> audit = audit_mechanism(
    ...     GRR(k=4, epsilon=1.0), 0, 1, n_trials=100_000, rng=simulation_generator(0)
    ... )
    >>> audit.violation, 0.8 < audit.lower_bound < 1.0
    (False, True)
    """
    guarantee = getattr(mechanism, "guarantee", None)
    if not isinstance(guarantee, PrivacyGuarantee) or guarantee.epsilon is None:
        raise ParameterError(
            "mechanism must expose a `guarantee` (PrivacyGuarantee) stated with an epsilon "
            f"(pure or approximate DP); got {guarantee!r}",
            parameter="mechanism",
        )
    if not callable(getattr(mechanism, "randomize", None)):
        raise ParameterError("mechanism must have a randomize(values, *, rng=...) method")
    n_trials = check_count("n_trials", n_trials, minimum=2)
    alpha = check_alpha(alpha)
    delta = guarantee.delta if delta is None else check_delta(delta)
    if _same_input(x, x_neighbour):
        raise ParameterError(
            "x and x_neighbour are the same input: no test can tell them apart; "
            "pass two different neighbouring inputs",
            parameter="x_neighbour",
        )
    description: dict[str, Any]
    if isinstance(event, str):
        if event != "split":
            raise ParameterError(
                f"event must be 'split' or a function of the outputs; got {event!r}",
                parameter="event",
            )
        fraction = check_fraction("selection_fraction", selection_fraction)
        n_select = min(max(1, round(n_trials * fraction)), n_trials - 1)
        counts, description = _split_counts(
            mechanism, x, x_neighbour, n_select, n_trials - n_select, alpha, delta, rng
        )
    elif callable(event):
        tp = _count_event(mechanism, x, n_trials, event, rng)
        fp = _count_event(mechanism, x_neighbour, n_trials, event, rng)
        counts = {"tp": tp, "fn": n_trials - tp, "tn": n_trials - fp, "fp": fp}
        description = {
            "strategy": "fixed",
            "selection_trials": 0,
            "evaluation_trials": n_trials,
        }
    else:
        raise ParameterError(
            f"event must be 'split' or a function of the outputs; got {type(event).__name__}",
            parameter="event",
        )
    settings = {
        "delta": delta,
        "alpha": alpha,
        "sided": "lower",
        "threat_model": ThreatModel.MECHANISM,
    }
    exact = ClopperPearsonEpsilon(**settings).fit(**counts)  # type: ignore[arg-type]
    bayes = BayesianEpsilon(**settings).fit(**counts)  # type: ignore[arg-type]
    return MechanismAudit(
        mechanism=repr(mechanism),
        x=x,
        x_neighbour=x_neighbour,
        n_trials=n_trials,
        claimed_epsilon=float(guarantee.epsilon),
        claimed_delta=float(guarantee.delta),
        clopper_pearson=exact.result_,
        bayesian=bayes.result_,
        event=description,
    )


# --- the split-sample event ---------------------------------------------------------------


def _split_counts(
    mechanism: Mechanism,
    x: Any,
    x_neighbour: Any,
    n_select: int,
    n_evaluate: int,
    alpha: float,
    delta: float,
    rng: np.random.Generator | None,
) -> tuple[dict[str, int], dict[str, Any]]:
    table = _OutputTable()
    # Columns: selection under x, under x'; evaluation under x, under x'.
    for column, (value, n) in enumerate(
        [(x, n_select), (x_neighbour, n_select), (x, n_evaluate), (x_neighbour, n_evaluate)]
    ):
        for start in range(0, n, _CHUNK):
            size = min(_CHUNK, n - start)
            table.add(column, _output_rows(mechanism.randomize(_repeat(value, size), rng=rng)))
    counts = table.counts()
    under_x, under_neighbour = counts[:, 0], counts[:, 1]
    # Rank outputs by the smoothed likelihood ratio seen on the selection trials only.
    score = np.log(under_x + 0.5) - np.log(under_neighbour + 0.5)
    order = np.argsort(-score, kind="stable")
    # Candidate events: the top-j outputs, j = 1 .. M − 1 (the whole space says nothing).
    top = max(1, order.size - 1)
    tp = np.cumsum(under_x[order])[:top]
    fp = np.cumsum(under_neighbour[order])[:top]
    bounds = clopper_pearson_lower_bounds(tp, n_select - tp, n_select - fp, fp, alpha, delta)
    chosen = int(np.argmax(bounds)) + 1
    in_event = np.zeros(order.size, dtype=bool)
    in_event[order[:chosen]] = True
    tp_eval = int(counts[in_event, 2].sum())
    fp_eval = int(counts[in_event, 3].sum())
    result = {"tp": tp_eval, "fn": n_evaluate - tp_eval, "tn": n_evaluate - fp_eval, "fp": fp_eval}
    description = {
        "strategy": "split",
        "selection_trials": n_select,
        "evaluation_trials": n_evaluate,
        "outputs_seen": int(order.size),
        "outputs_in_event": chosen,
        "selection_bound": float(bounds[chosen - 1]),
    }
    return result, description


class _OutputTable:
    """Counts of distinct outputs (rows of int64) in a few columns."""

    def __init__(self) -> None:
        self._index: dict[bytes, int] = {}
        self._counts: list[list[int]] = []

    def add(self, column: int, rows: IntArray) -> None:
        unique, counts = np.unique(rows, axis=0, return_counts=True)
        for row, count in zip(unique, counts, strict=True):
            key = row.tobytes()
            position = self._index.get(key)
            if position is None:
                if len(self._index) >= MAX_OUTPUTS:
                    raise LimitExceededError(
                        f"the mechanism produced more than {MAX_OUTPUTS} distinct outputs; "
                        "event='split' cannot estimate their probabilities. Pass a fixed "
                        "event (a function of the outputs) instead",
                        limit=MAX_OUTPUTS,
                    )
                position = self._index[key] = len(self._counts)
                self._counts.append([0, 0, 0, 0])
            self._counts[position][column] += int(count)

    def counts(self) -> IntArray:
        return np.asarray(self._counts, dtype=np.int64).reshape(-1, 4)


# --- outputs ------------------------------------------------------------------------------


def _count_event(
    mechanism: Mechanism, value: Any, n: int, event: Event, rng: np.random.Generator | None
) -> int:
    total = 0
    for start in range(0, n, _CHUNK):
        size = min(_CHUNK, n - start)
        outputs = mechanism.randomize(_repeat(value, size), rng=rng)
        hits = np.asarray(event(outputs))
        if hits.shape != (size,) or hits.dtype != np.bool_:
            raise DataError(
                f"event must return one boolean per trial (shape ({size},), dtype bool); "
                f"got shape {hits.shape}, dtype {hits.dtype}"
            )
        total += int(hits.sum())
    return total


def _repeat(value: Any, n: int) -> npt.NDArray[Any]:
    array = np.asarray(value)
    return np.repeat(array[None, ...], n, axis=0)


def _output_rows(outputs: Any) -> IntArray:
    """One int64 row per trial holding everything the trial released."""
    parts = getattr(outputs, "parts", None)
    if parts is not None:  # multidimensional reports: one engine batch per attribute
        attribute = getattr(outputs, "attribute", None)
        blocks = [_output_rows(part) for part in parts]
        if attribute is None:
            return np.concatenate(blocks, axis=1)
        attribute = np.asarray(attribute, dtype=np.int64)
        width = max(block.shape[1] for block in blocks)
        rows = np.full((attribute.size, width + 1), -1, dtype=np.int64)
        rows[:, 0] = attribute
        for j, block in enumerate(blocks):
            rows[attribute == j, 1 : 1 + block.shape[1]] = block
        return rows
    arrays = getattr(outputs, "arrays", None)
    if isinstance(arrays, dict):
        columns = [_as_rows(arrays[name]) for name in sorted(arrays)]
        return np.concatenate(columns, axis=1)
    return _as_rows(outputs)


def _as_rows(array: Any) -> IntArray:
    values = np.asarray(array)
    if values.ndim == 0:
        raise DataError("the mechanism must return one output per trial, not a scalar")
    if np.issubdtype(values.dtype, np.floating):
        # Compare floats by their bits (a continuous output is all distinct outputs).
        values = np.ascontiguousarray(values, dtype=np.float64).view(np.int64)
    elif not (np.issubdtype(values.dtype, np.integer) or values.dtype == np.bool_):
        raise DataError(f"cannot compare outputs of dtype {values.dtype}; return numbers")
    rows: IntArray = values.reshape(values.shape[0], -1).astype(np.int64)
    return rows


def _same_input(x: Any, x_neighbour: Any) -> bool:
    a, b = np.asarray(x), np.asarray(x_neighbour)
    return a.shape == b.shape and bool(np.all(a == b))


def _jsonable(value: Any) -> Any:
    array = np.asarray(value)
    return array.item() if array.ndim == 0 else array.tolist()
