"""MaxSum and SumSelect under continual observation [JRSS23]_.

A stream of records ``x_1, x_2, ... ∈ {0,1}^d`` arrives one per step; after every step
the mechanism releases either the largest column sum ``M(t) = max_j S_j(t)``,
``S_j(t) = Σ_{i<=t} x_i[j]`` (:class:`MaxSum`), or the index of a column whose sum is
close to it (:class:`SumSelect`). In the batch model (one release at the end) both are
easy: ``M`` has sensitivity 1, so one Laplace draw gives error ``O(1/ε)``, and report
noisy max gives ``O(log(d)/ε)``. Under continual observation every mechanism pays
``Ω̃(min(T^{1/3}, √d, T))`` for (ε, δ)-DP, and simple mechanisms match it, even when the
records are chosen adaptively ([JRSS23]_, abstract). The two strategies here are the
first two terms of that ``min``; the third, ``T``, is a cap that holds always:

* ``"counters"``: a binary-tree counter per column, release the max (or argmax) of the
  noisy column sums (:mod:`._column_tree`); error ``Õ(√d)`` (zCDP) or ``Õ(d)`` (pure).
* ``"sparse-vector"``: hold one private answer and recompute it when the sparse vector
  technique detects that it went stale (:mod:`._sparse_vector`); error ``Õ(T^{1/3})``
  (zCDP) or ``Õ(√T)`` (pure), whatever ``d``.
* MaxSum's releases are clipped to ``[0, t]`` (post-processing), and a SumSelect gap
  is at most ``M(t) <= t``, so no stated bound exceeds ``T``.

``strategy="auto"`` computes both stated bounds at the design ``beta`` and keeps the
smaller.

**Relation to [JRSS23]_.** What its abstract states, and these mechanisms keep: the
problems, the ``Ω̃(T^{1/3})`` price over batch for (ε, δ)-DP (lower bounds for streams
fixed in advance), and upper bounds matching it from simple mechanisms that stay
private when records are chosen adaptively. That these are per-column counters (small
``d``) and sparse-vector-triggered recomputation (large ``d``) comes from the
project's reference notes (§5.1), not from the paper's text: only the abstract could
be read when this was written and checked, so the paper's algorithms, constants and
theorem numbers are not taken from it, and none is cited. The mechanisms, their
accounting and every constant are derived here, from the standard results cited (the
binary mechanism, AboveThreshold, report noisy max, zCDP composition), in the module
docstrings of :mod:`._column_tree`, :mod:`._sparse_vector` and :mod:`._tails`. The
stated bounds have the rates of that ``min``: with ``ρ`` the zCDP budget of (ε, δ)
(:func:`rho_for_approximate_dp`, about ``ε²/(4 ln(1/δ))`` for small ε),

* counters: ``√(d/ρ)·L^{1.5}·√(log(dT/β))`` (zCDP) or ``(d·L/ε)·(√(L·log(dT/β)) +
  log(dT/β))`` (pure), ``L = ⌊log2 T⌋ + 1``;
* sparse vector: ``T^{1/3}·log^{2/3}(dT/β)/ρ^{1/3}`` (zCDP; with the ``ρ`` above,
  ``T^{1/3}·log^{2/3}(dT/β)·log^{1/3}(1/δ)/ε^{2/3}``) or ``√(T·log(dT/β)/ε)`` (pure),
  up to constants (``d`` enters only SumSelect's, through a union bound);

each capped at ``T``. The tests check these rates on the stated bounds (how they grow
with ``T`` and ``d``) and the bounds against the errors on random and adversarially
shaped streams, adaptive ones included.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Self

import numpy as np
import numpy.typing as npt

from privaudit.errors import BudgetExhaustedError, DataError, LimitExceededError, ParameterError
from privaudit.guarantees import PrivacyGuarantee
from privaudit.mechanisms.continual._base import MAX_HORIZON, check_draw_ahead
from privaudit.mechanisms.continual._column_tree import (
    ColumnTreeNoise,
    CountersPlan,
    counters_plans,
)
from privaudit.mechanisms.continual._sparse_vector import (
    SparseVectorPlan,
    SparseVectorRun,
    SparseVectorSnapshot,
    Task,
    noise_left,
    sparse_vector_plans,
)
from privaudit.mechanisms.continual._state import (
    SELECTION_STATE_VERSION,
    SelectionState,
    check_array_names,
    check_calibration,
    check_mechanism,
    check_version,
    state_array,
    state_int,
)
from privaudit.randomness import RandomSource, is_secure, resolve_rng
from privaudit.registry import mechanisms

__all__ = ["RECORD_NEIGHBOURING", "MaxSum", "SumSelect", "rho_for_approximate_dp"]

IntArray = npt.NDArray[np.int64]
Strategy = Literal["auto", "counters", "sparse-vector"]

RECORD_NEIGHBOURING = (
    "replace one record x_t in {0,1}^d of the stream by any other (event level; the "
    "records may be chosen adaptively after the earlier releases)"
)
MAX_COLUMNS = 1 << 16
_STRATEGIES = ("auto", "counters", "sparse-vector")
_CHUNK_CELLS = 1 << 21  # a batch is processed in slices of at most this many sums
_NOISE_LIMIT = 1 << 62  # one noise draw or held value, in units, is far inside int64


def rho_for_approximate_dp(epsilon: float, delta: float) -> float:
    """The ρ whose zCDP converts to exactly (ε, δ)-DP by ``ε = ρ + 2√(ρ ln(1/δ))`` [BS16]_.

    ``ρ = (√(ε + ln(1/δ)) - √(ln(1/δ)))²``, computed as ``(ε/(√(ε + c²) + c))²``,
    ``c = √(ln(1/δ))``, so that it is accurate for small ε.
    """
    c = math.sqrt(math.log(1.0 / delta))
    return (epsilon / (math.sqrt(epsilon + c * c) + c)) ** 2


class _ContinualSelection:
    """What MaxSum and SumSelect share: parameters, strategies, records, the stream."""

    task: ClassVar[Task]
    name: ClassVar[str]
    """The registry name."""

    def __init__(
        self,
        *,
        d: int,
        horizon: int,
        epsilon: float,
        delta: float = 0.0,
        strategy: Strategy = "auto",
        beta: float = 0.05,
        on_exhausted: Literal["raise", "hold"] = "raise",
        rng: RandomSource = None,
        draw_ahead: int | None = None,
    ) -> None:
        self.d = _check_int("d", d, 1, MAX_COLUMNS, "the number of columns")
        self.horizon = _check_int("horizon", horizon, 1, MAX_HORIZON, "the most records")
        self.epsilon = _check_real("epsilon", epsilon, low=0.0, high=math.inf)
        if isinstance(delta, bool) or not isinstance(delta, int | float | np.integer | np.floating):
            raise ParameterError(f"delta must be a number in [0, 1); got {delta!r}")
        if not (math.isfinite(delta) and 0.0 <= delta < 1.0):
            raise ParameterError(
                f"delta must be in [0, 1) (0 for pure ε-DP); got {delta!r}", parameter="delta"
            )
        self.delta = float(delta)
        self.beta = _check_real("beta", beta, low=0.0, high=1.0)
        if strategy not in _STRATEGIES:
            raise ParameterError(
                f"strategy must be one of {', '.join(_STRATEGIES)}; got {strategy!r}",
                parameter="strategy",
            )
        if on_exhausted not in ("raise", "hold"):
            raise ParameterError(
                f"on_exhausted must be 'raise' or 'hold'; got {on_exhausted!r}",
                parameter="on_exhausted",
            )
        self.on_exhausted = on_exhausted
        self.requested_strategy: str = strategy
        self.draw_ahead = check_draw_ahead(draw_ahead)
        self._rng = resolve_rng(rng)
        rho = rho_for_approximate_dp(self.epsilon, self.delta) if self.delta > 0 else None
        self._plans: dict[str, CountersPlan | SparseVectorPlan] = {}
        self.strategy_bounds: dict[str, float] = {}
        """The stated bound at the design ``beta`` of each strategy considered."""
        noise_bounds: dict[str, float] = {}  # the same before the cap at T: they decide
        wanted = ("counters", "sparse-vector") if strategy == "auto" else (strategy,)
        refusal: ParameterError | None = None
        for name in wanted:
            try:
                plan, bound = self._best_plan(name, rho)
            except ParameterError as error:
                if strategy != "auto":
                    raise
                refusal = refusal or error
                continue
            self._plans[name] = plan
            noise_bounds[name] = bound
            self.strategy_bounds[name] = min(bound, float(self.horizon))
        if not self._plans:
            assert refusal is not None
            raise refusal
        self.strategy: str = min(noise_bounds, key=noise_bounds.__getitem__)
        """The strategy in use: ``"counters"`` or ``"sparse-vector"``."""
        self._plan = self._plans[self.strategy]
        self._t = 0
        self._sums = np.zeros(self.d, dtype=np.int64)
        self._tree: ColumnTreeNoise | None = None
        self._schedule: SparseVectorRun | None = None
        if isinstance(self._plan, CountersPlan):
            self._tree = ColumnTreeNoise(self._plan, self._rng, block=self.draw_ahead)
        else:
            self._schedule = SparseVectorRun(self._plan, self._rng, block=self.draw_ahead)

    # --- design -------------------------------------------------------------------------

    def _best_plan(
        self, strategy: str, rho: float | None
    ) -> tuple[CountersPlan | SparseVectorPlan, float]:
        try:
            return self._design(strategy, rho)
        except ArithmeticError as error:  # a subnormal ε, δ or β: nothing to calibrate
            raise ParameterError(
                f"the {strategy} strategy cannot be calibrated for epsilon={self.epsilon!r}, "
                f"delta={self.delta!r}, beta={self.beta!r} ({type(error).__name__}: "
                f"{error}); use values far from the limits of floating point",
                parameter="epsilon",
            ) from None

    def _design(
        self, strategy: str, rho: float | None
    ) -> tuple[CountersPlan | SparseVectorPlan, float]:
        plans: list[CountersPlan | SparseVectorPlan]
        if strategy == "counters":
            plans = list(
                counters_plans(
                    horizon=self.horizon,
                    columns=self.d,
                    epsilon=self.epsilon,
                    rho=rho,
                    neighbouring=RECORD_NEIGHBOURING,
                )
            )
        else:
            plans = list(
                sparse_vector_plans(
                    task=self.task,
                    horizon=self.horizon,
                    columns=self.d,
                    epsilon=self.epsilon,
                    rho=rho,
                    beta=self.beta,
                    neighbouring=RECORD_NEIGHBOURING,
                )
            )
        scored = [(self._noise_bound_of(plan, self.beta), plan) for plan in plans]
        bound, plan = min(scored, key=lambda pair: pair[0])
        return plan, bound

    def _noise_bound_of(self, plan: CountersPlan | SparseVectorPlan, beta: float) -> float:
        """The plan's own bound (``inf`` where none is stated); plans and strategies
        are chosen by it."""
        if isinstance(plan, CountersPlan):
            factor = 1 if self.task == "max" else 2  # argmax: two noises apart at most
            return factor * plan.noise_bound_units(beta) * 2.0**-plan.grid_bits
        units = plan.error_bound_units(beta)
        return math.inf if units is None else units * 2.0**-plan.grid_bits

    def _bound_of(self, plan: CountersPlan | SparseVectorPlan, beta: float) -> float:
        """The stated bound: the plan's, capped at ``T``. A MaxSum release is clipped
        to ``[0, t]``, where ``M(t)`` lies too, and a SumSelect gap is at most
        ``M(t) <= t``, so no error ever exceeds ``T`` (the last term of the ``min`` in
        [JRSS23]_'s bounds); ``T`` also stands in where the plan states none."""
        return min(self._noise_bound_of(plan, beta), float(self.horizon))

    # --- the public API -----------------------------------------------------------------

    @property
    def guarantee(self) -> PrivacyGuarantee:
        """What the whole stream of ``horizon`` releases satisfies.

        ε-DP when the noise is discrete Laplace (always so with ``delta=0``), ρ-zCDP when
        the construction composes in zCDP (discrete Gaussian counters, or rounds of the
        sparse vector technique); ``guarantee.to_approximate(delta)`` is then
        (ε', δ)-DP with ``ε' <= epsilon``. The realised ε or ρ comes from the integer
        noise scales actually used (rounded up), so it is at most the one asked.
        Neighbours differ in one record (:data:`RECORD_NEIGHBOURING`), and it holds for
        records chosen adaptively.
        """
        return self._plan.guarantee

    def error_bound(self, beta: float) -> float:
        """The stated bound on the error over *all* steps, with probability ``>= 1 - beta``.

        MaxSum: ``max_t |release_t - M(t)|``; SumSelect: ``max_t (M(t) - S_{j_t}(t))``.
        See the class docstring for the formula of each strategy. It is never above
        ``horizon`` (``T``), which holds with probability 1. For the sparse-vector
        strategy the threshold and refresh budget were sized for the design ``beta``:
        at a ``beta`` so far below it that the noise bounds no longer leave ``T/K`` of
        slack in the threshold, only ``T`` is stated.

        Raises
        ------
        ParameterError
            If ``beta`` is not in (0, 1).
        """
        beta = _check_real("beta", beta, low=0.0, high=1.0)
        return self._bound_of(self._plan, beta)

    @property
    def t(self) -> int:
        """How many records have been pushed."""
        return self._t

    @property
    def secure(self) -> bool:
        """Whether the noise comes from the ChaCha20 release source."""
        return is_secure(self._rng)

    @property
    def max_refreshes(self) -> int | None:
        """``K``, the refresh budget of the sparse-vector strategy (``None`` for counters)."""
        plan = self._plan
        return plan.max_refreshes if isinstance(plan, SparseVectorPlan) else None

    @property
    def refreshes(self) -> int:
        """How many refreshes the sparse-vector schedule has made (0 for counters)."""
        return 0 if self._schedule is None else self._schedule.refreshes

    @property
    def threshold(self) -> float | None:
        """``τ`` of the sparse-vector strategy, in value units (``None`` for counters)."""
        plan = self._plan
        if isinstance(plan, SparseVectorPlan):
            return plan.threshold_units * 2.0**-plan.grid_bits
        return None

    @property
    def budget_exhausted(self) -> bool:
        """Whether the refresh budget ran out (only possible beyond the design ``beta``)."""
        return self._schedule is not None and self._schedule.exhausted

    @property
    def noise_scales(self) -> dict[str, float]:
        """The noise in value units: ``{"node_laplace": b}`` or ``{"node_gaussian": σ}``
        (counters); ``{"threshold": .., "query": .., "refresh": ..}`` Laplace scales
        (sparse vector)."""
        plan = self._plan
        if isinstance(plan, CountersPlan):
            return {f"node_{plan.kind}": plan.node_scale()}
        unit = 2.0**-plan.grid_bits
        return {
            "threshold": plan.threshold_scale * unit,
            "query": plan.query_scale * unit,
            "refresh": plan.refresh_scale * unit,
        }

    # --- durable state --------------------------------------------------------------------

    def state_size_bound(self) -> int:
        """The most numbers :meth:`state` holds over the horizon, drawn-ahead noise
        excluded (``draw_ahead=1`` keeps none): ``d`` sums, plus ``L·d`` node noises
        (counters) or 4 (sparse vector)."""
        if isinstance(self._plan, CountersPlan):
            return self.d * (1 + self._plan.levels)
        return self.d + 4

    def state(self) -> SelectionState:
        """Everything needed to continue this stream exactly, as plain numbers.

        The exact column sums, ``t``, the noise already drawn that future releases
        depend on (counters: the latest node of every height; sparse vector: the
        current noisy threshold, the held answer and the refresh count), the noise drawn
        ahead (pass a small ``draw_ahead`` to keep it short), the parameters and the
        calibration. No randomness source or seed. It is as sensitive as the records:
        the exact sums are not private.
        """
        arrays: dict[str, tuple[int | None, ...]]
        pending: dict[str, tuple[int, ...]]
        if self._tree is not None:
            nodes, node_pending = self._tree.export(self._t)
            empty: list[int | None] = [None] * self.d
            arrays = {"node_noise": tuple(v for row in nodes for v in (row or empty))}
            pending = {"node": tuple(node_pending)}
        else:
            assert self._schedule is not None
            snapshot = self._schedule.export()
            arrays = {
                "held": (snapshot.held,),
                "refreshes": (snapshot.refreshes,),
                "exhausted": (int(snapshot.exhausted),),
                "threshold_noise": (snapshot.threshold_noise,),
            }
            pending = {name: tuple(values) for name, values in snapshot.pending.items()}
        return SelectionState(
            version=SELECTION_STATE_VERSION,
            mechanism=self.name,
            parameters=self._parameters(),
            calibration=self._calibration(),
            t=self._t,
            sums=tuple(self._sums.tolist()),
            arrays=arrays,
            pending=pending,
        )

    @classmethod
    def from_state(
        cls,
        state: SelectionState | Mapping[str, Any],
        *,
        rng: RandomSource = None,
        draw_ahead: int | None = None,
    ) -> Self:
        """Continue a stream from :meth:`state` (or its :meth:`SelectionState.to_dict`).

        The restored mechanism releases exactly what the exported one would have: the
        noise of every tree node that has influenced a release, the sparse vector's
        noisy threshold, and any noise drawn ahead are taken from the state, never drawn
        again. Noise needed beyond them comes from ``rng`` (``None``: the secure source).

        Raises
        ------
        ParameterError
            If the state is malformed or does not fit: another version or mechanism,
            parameters this version refuses or calibrates differently, a count past the
            horizon, sums or noise of the wrong names, lengths, types or ranges, a
            refresh count above ``K``, or more drawn-ahead noise than the horizon needs.
        """
        if isinstance(state, Mapping):
            state = SelectionState.from_dict(state)
        if not isinstance(state, SelectionState):
            raise ParameterError(
                f"state must be a SelectionState or its to_dict(); got {type(state).__name__}"
            )
        check_version(state.version, SELECTION_STATE_VERSION, "selection")
        check_mechanism(state.mechanism, cls, cls.name)
        names = ("d", "horizon", "epsilon", "delta", "strategy", "beta", "on_exhausted")
        check_array_names(state.parameters, names, f"{cls.name} parameters")
        mech = cls(**state.parameters, rng=rng, draw_ahead=draw_ahead)
        check_calibration(state.calibration, mech._calibration())
        t = state_int(state.t, "t", 0, mech.horizon)
        if len(state.sums) != mech.d:
            raise ParameterError(
                f"state.sums must hold d={mech.d} column sums; got {len(state.sums)}",
                parameter="state.sums",
            )
        mech._sums = np.array([state_int(v, "sums", 0, t) for v in state.sums], dtype=np.int64)
        mech._t = t
        if isinstance(mech._plan, CountersPlan):
            mech._tree = mech._restore_tree(mech._plan, state)
        else:
            mech._schedule = mech._restore_schedule(mech._plan, state)
        return mech

    def _parameters(self) -> dict[str, Any]:
        return {
            "d": self.d,
            "horizon": self.horizon,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "strategy": self.requested_strategy,
            "beta": self.beta,
            "on_exhausted": self.on_exhausted,
        }

    def _calibration(self) -> str:
        """The strategy and plan derived from the parameters (checked on restore)."""
        plan = self._plan
        if isinstance(plan, CountersPlan):
            law = plan.node_noise.law
            return f"counters; {law}; grid_bits={plan.grid_bits}; levels={plan.levels}"
        return (
            f"sparse-vector; {plan.composition}; K={plan.max_refreshes}; "
            f"grid_bits={plan.grid_bits}; discrete_laplace scales={plan.threshold_scale},"
            f"{plan.query_scale},{plan.refresh_scale}; threshold={plan.threshold_units}"
        )

    def _restore_tree(self, plan: CountersPlan, state: SelectionState) -> ColumnTreeNoise:
        d, t = self.d, self._t
        check_array_names(state.arrays, ("node_noise",), self.name)
        check_array_names(state.pending, ("node",), f"{self.name} pending")
        flat = state_array(state.arrays, "node_noise", plan.levels * d)
        nodes: list[IntArray | None] = []
        for height in range(plan.levels):
            row = flat[height * d : (height + 1) * d]
            where = f"arrays.node_noise[{height * d}:{(height + 1) * d}]"
            if t >> height:  # a node of this height was drawn
                nodes.append(
                    np.array([state_int(v, where, -_NOISE_LIMIT, _NOISE_LIMIT) for v in row])
                )
            elif any(v is not None for v in row):
                raise ParameterError(
                    f"state.{where} must be null: no node of height {height} is drawn by t={t}",
                    parameter=f"state.{where}",
                )
            else:
                nodes.append(None)
        pending = _pending(state, "node", (self.horizon - t) * d)
        return ColumnTreeNoise(
            plan, self._rng, block=self.draw_ahead, t=t, node_noise=nodes, pending=pending
        )

    def _restore_schedule(self, plan: SparseVectorPlan, state: SelectionState) -> SparseVectorRun:
        names = ("held", "refreshes", "exhausted", "threshold_noise")
        check_array_names(state.arrays, names, self.name)
        check_array_names(state.pending, ("threshold", "query", "refresh"), f"{self.name} pending")
        one = {name: state_array(state.arrays, name, 1)[0] for name in names}
        k = plan.max_refreshes
        refreshes = state_int(one["refreshes"], "arrays.refreshes", 0, k)
        exhausted = state_int(one["exhausted"], "arrays.exhausted", 0, 1) == 1
        if self.task == "max":
            held = state_int(one["held"], "arrays.held", -_NOISE_LIMIT, _NOISE_LIMIT)
        else:
            held = state_int(one["held"], "arrays.held", 0, self.d - 1)
        if refreshes == 0 and held != 0:
            raise ParameterError(
                f"state.arrays.held must be 0 before the first refresh; got {held}",
                parameter="state.arrays.held",
            )
        if exhausted and (refreshes != k or any(state.pending.values())):
            raise ParameterError(
                f"an exhausted schedule has made all K={k} refreshes and keeps no noise; got "
                f"{refreshes} refreshes",
                parameter="state.arrays.exhausted",
            )
        nu = one["threshold_noise"]
        if nu is not None or refreshes > 0 or self._t > 0:  # null: not drawn yet
            nu = state_int(nu, "arrays.threshold_noise", -_NOISE_LIMIT, _NOISE_LIMIT)
        limits = {
            name: noise_left(plan, name, self._t, refreshes, fresh=nu is None)
            for name in ("threshold", "query", "refresh")
        }
        snapshot = SparseVectorSnapshot(
            t=self._t,
            held=held,
            refreshes=refreshes,
            exhausted=exhausted,
            threshold_noise=nu,
            pending={name: _pending(state, name, limit) for name, limit in limits.items()},
        )
        return SparseVectorRun(plan, self._rng, block=self.draw_ahead, restored=snapshot)

    def _push_one(self, record: npt.ArrayLike) -> float | int:
        rows = _as_records(record, self.d, single=True)
        return self._push_rows(rows)[0]  # type: ignore[no-any-return]

    def _push_rows(self, rows: IntArray) -> np.ndarray:
        if self.budget_exhausted and self.on_exhausted == "raise":
            raise BudgetExhaustedError(
                f"the refresh budget (K={self.max_refreshes}) ran out after {self._t} "
                "records, so this mechanism releases nothing more; start a new one (with "
                "its own privacy budget) for the rest of the stream",
                refreshes=self.refreshes,
            )
        n = rows.shape[0]
        if self._t + n > self.horizon:
            raise LimitExceededError(
                f"this mechanism's horizon is {self.horizon} records and {self._t} were "
                f"pushed; {n} more would pass it. Start a new one (with its own budget).",
                horizon=self.horizon,
                pushed=self._t,
            )
        dtype = np.float64 if self.task == "max" else np.int64
        out = np.empty(n, dtype=dtype)
        step = max(1, _CHUNK_CELLS // self.d)
        for start in range(0, n, step):
            chunk = rows[start : start + step]
            sums = self._sums + np.cumsum(chunk, axis=0, dtype=np.int64)
            maxima = sums.max(axis=1)
            if self._tree is not None:
                released = self._from_counters(sums)
            else:
                assert self._schedule is not None
                hold = self.on_exhausted == "hold"
                values, stop = self._schedule.advance(sums, maxima, hold=hold)
                released = self._clip(np.asarray(values, dtype=dtype))
                if stop is not None and not hold:
                    self._sums = sums[stop]
                    self._t += stop + 1
                    raise BudgetExhaustedError(
                        f"the refresh budget (K={self.max_refreshes}) ran out at record "
                        f"{self._t}: the noise went beyond what the schedule was sized "
                        f"for (probability <= beta={self.beta:g}), so the error bound no "
                        "longer holds and nothing more is released; start a new mechanism "
                        "(with its own privacy budget) for the rest of the stream. The "
                        "releases of this call before that record are in "
                        "error.details['releases'].",
                        refreshes=self.refreshes,
                        releases=[*out[:start].tolist(), *released.tolist()],
                    )
            out[start : start + chunk.shape[0]] = released
            self._sums = sums[-1]
            self._t += chunk.shape[0]
        return out

    def _clip(self, released: np.ndarray) -> np.ndarray:
        """MaxSum: clip the releases of steps ``t + 1, t + 2, ...`` to ``[0, step]``,
        where ``M`` lies (post-processing: no privacy cost, never a larger error)."""
        if self.task != "max":
            return released
        steps = np.arange(self._t + 1, self._t + 1 + released.size, dtype=np.float64)
        clipped: np.ndarray = np.clip(released, 0.0, steps)
        return clipped

    def _from_counters(self, sums: IntArray) -> np.ndarray:
        assert self._tree is not None and isinstance(self._plan, CountersPlan)
        noisy = (sums << self._plan.grid_bits) + self._tree.next(self._t, sums.shape[0])
        if self.task == "max":
            return self._clip(noisy.max(axis=1) * 2.0**-self._plan.grid_bits)
        return noisy.argmax(axis=1)  # type: ignore[no-any-return]  # lowest index on ties

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(d={self.d}, horizon={self.horizon}, "
            f"epsilon={self.epsilon:g}, delta={self.delta:g}, strategy={self.strategy!r}, "
            f"t={self._t})"
        )


@mechanisms.register("continual.max_sum")
class MaxSum(_ContinualSelection):
    """The largest column sum of a stream of records in ``{0,1}^d``, after every record.

    ``push(record)`` returns a private estimate of ``M(t) = max_j S_j(t)``, where
    ``S_j(t)`` is the number of the first ``t`` records with a 1 in column ``j``.

    **Strategies.** ``"counters"``: a binary-tree counter per column (discrete noise on
    every node, ``L = ⌊log2 T⌋ + 1`` heights) and the release ``max_j (S_j(t) +
    N_{t,j})``. Discrete Laplace nodes of scale ``d·L/ε`` give ε-DP; with ``delta > 0``
    discrete Gaussian nodes of ``σ² = d·L/(2ρ)`` give ρ-zCDP, ``ρ =``
    :func:`rho_for_approximate_dp` ``(ε, δ)`` (the composition over the ``d`` columns is
    exact in both: ``ε/d`` or ``ρ/d`` per column). Whichever has the smaller bound is
    used. ``"sparse-vector"``: hold a private value ``r``, and at the first step where
    AboveThreshold finds ``M(t) - r`` above the threshold ``τ``, replace it by
    ``M(t) + ξ`` (a *refresh*); at most ``K`` refreshes (:attr:`max_refreshes`), with ``K``
    and ``τ`` chosen to minimise the bound: up to logarithms ``K ≈ T^{2/3}ρ^{1/3}`` and
    ``τ ≈ T^{1/3}/ρ^{1/3}`` when the rounds compose in zCDP, ``K ≈ √(Tε)`` and
    ``τ ≈ √(T/ε)`` in pure DP. ``"auto"`` (default) uses the strategy with the smaller
    stated bound. Every release is clipped to ``[0, t]`` (where ``M(t)`` lies; free
    post-processing), so no error exceeds ``T``.

    **Error bound** (:meth:`error_bound`; with probability ``>= 1 - β`` over the noise,
    for every stream, adaptive or not, at every step ``t <= T``; the smaller of ``T``,
    which holds always, and):

    * counters: ``A`` such that ``Σ_t Σ_j P[|N_{t,j}| > A] <= β``, ``N_{t,j}`` the sum of
      ``popcount(t)`` node noises: exact Laplace moment generating function (Chernoff),
      or sub-Gaussian tails for the discrete Gaussian [CKS20]_; grows as ``√(d)·L^{1.5}``
      (zCDP) or ``d·L^{1.5}`` (pure), times ``√(log(dT/β))``;
    * sparse vector: ``τ + A_ν + A_η`` with ``τ = T/K + A_ν + A_η + A_ξ``, where the ``A``
      bound the threshold noises (``K + 1`` draws), the query noises (``T`` draws) and the
      refresh noises (``K`` draws) at ``β/3`` each by the exact discrete Laplace tail.
      The same event keeps the refreshes within ``K``.

    The rates of these bounds, and how they relate to [JRSS23]_, are in the module
    docstring.

    **Refresh budget.** If the ``K + 1``-th round of AboveThreshold fires (possible
    only on the failure event above, probability ``<= beta``), the budget is exhausted:
    with ``on_exhausted="raise"`` (default) that push raises
    :class:`~privaudit.errors.BudgetExhaustedError` and the mechanism releases nothing
    more; with ``"hold"`` it keeps releasing the last value (post-processing, no privacy
    cost) and :attr:`budget_exhausted` turns true; the error bound is void either way.

    **Noise.** Exact discrete Laplace/Gaussian samplers [CKS20]_ on integer sums (the
    sums and noise are integers in units of ``2^-g``), from the ChaCha20 release
    source unless ``rng`` is a seeded generator (simulation).

    Parameters
    ----------
    d
        The number of columns, ``1 <= d <= 65536``.
    horizon
        ``T``, the most records the stream may hold (at most ``2^24``).
    epsilon, delta
        The privacy budget for the whole stream. ``delta=0`` (default): pure ε-DP.
        ``delta > 0``: (ε, δ)-DP through zCDP (the guarantee is then stated as ρ-zCDP,
        whose conversion at ``delta`` is at most ``epsilon``).
    strategy
        ``"auto"``, ``"counters"`` or ``"sparse-vector"``.
    beta
        The design failure probability: the sparse-vector schedule is sized so that
        with probability ``>= 1 - beta`` it stays within its refresh budget, and
        ``"auto"`` compares the bounds at this ``beta``. Default 0.05.
    on_exhausted
        ``"raise"`` (default) or ``"hold"``: what to do if the refresh budget runs out.
    rng
        ``None`` (default) for the secure ChaCha20 source; a seeded generator from
        :func:`privaudit.simulation_generator` only to simulate.
    draw_ahead
        How many noise draws to make at once (the noise is data-independent); ``None``
        for 2^16, ``1`` to draw only what each push uses, which keeps :meth:`state`
        short.

    **Durable state.** :meth:`state` exports a
    :class:`~privaudit.mechanisms.continual.SelectionState` and :meth:`from_state`
    continues from it with exactly the releases an uninterrupted run would give: the
    noise that later releases depend on is in the state, never drawn again.

    Raises
    ------
    ParameterError
        A parameter outside its range; a noise scale beyond the samplers' range.

    References
    ----------
    .. [JRSS23] P. Jain, S. Raskhodnikova, S. Sivakumar and A. Smith, "The Price of
       Differential Privacy under Continual Observation", ICML 2023 (arXiv 2112.00828).
    .. [DR14] C. Dwork and A. Roth, "The Algorithmic Foundations of Differential
       Privacy", 2014 (AboveThreshold, Theorem 3.23; report noisy max, Claim 3.9).
    .. [LSL17] M. Lyu, D. Su and N. Li, "Understanding the Sparse Vector Technique for
       Differential Privacy", PVLDB 2017 (the threshold/query budget split).
    .. [BS16] M. Bun and T. Steinke, "Concentrated Differential Privacy", TCC 2016.
    .. [CKS20] C. L. Canonne, G. Kamath and T. Steinke, "The Discrete Gaussian for
       Differential Privacy", NeurIPS 2020.

    Examples
    --------
    >>> from privaudit import simulation_generator
    >>> mech = MaxSum(d=3, horizon=1024, epsilon=1.0, delta=1e-6, rng=simulation_generator(0))
    >>> mech.strategy, mech.guarantee.notion.value  # discrete Gaussian tree counters
    ('counters', 'zcdp')
    >>> mech.guarantee.to_approximate(1e-6).epsilon <= 1.0
    True
    >>> releases = mech.push_many([[1, 0, 0], [1, 1, 0], [0, 1, 1]])
    >>> releases.shape, mech.t
    ((3,), 3)
    """

    task = "max"
    name = "continual.max_sum"

    def push(self, record: npt.ArrayLike) -> float:
        """Add one record (a 0/1 vector of length ``d``); return the private max sum.

        Raises
        ------
        DataError
            If ``record`` is not a vector of ``d`` zeros and ones.
        LimitExceededError
            If ``horizon`` records were already pushed.
        BudgetExhaustedError
            If the refresh budget ran out (``on_exhausted="raise"``).
        """
        return float(self._push_one(record))

    def push_many(self, records: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Push every row of ``records`` (``n × d``, zeros and ones) in order; return the
        ``n`` releases. All rows are checked before any is pushed."""
        return self._push_rows(_as_records(records, self.d, single=False))


@mechanisms.register("continual.sum_select")
class SumSelect(_ContinualSelection):
    """A column whose sum is close to the largest, after every record in ``{0,1}^d``.

    ``push(record)`` returns an index ``j_t`` (``0 <= j_t < d``) with, with probability
    ``>= 1 - β`` at every step at once, ``S_{j_t}(t) >= M(t) - error_bound(β)``.

    **Strategies** (as for :class:`MaxSum`, whose docstring gives the accounting):
    ``"counters"`` releases ``argmax_j (S_j(t) + N_{t,j})`` of the per-column tree
    counters, lowest index on ties, so the bound is ``2A`` (two noises apart at most).
    ``"sparse-vector"`` holds an index ``j``; the AboveThreshold query is the gap
    ``M(t) - S_j(t)`` (sensitivity 2, so the threshold and query noises are twice
    MaxSum's), and a refresh selects ``argmax_i (S_i(t) + Z_i)`` by report noisy max
    with discrete Laplace ``Z_i`` of scale ``2/ε_c`` (ε_c-DP under replacement of a
    record, [DR14]_ Claim 3.9 with the non-monotone factor 2). Bound: ``τ + A_ν + A_η``
    with ``τ = T/K + A_ν + A_η + 2A_Z``, ``A_Z`` bounding the ``K·d`` selection noises.
    The refreshes are counted by MaxSum's argument: the held column's sum never
    decreases, so a refresh needs ``M`` to have grown by ``T/K`` since the previous one.
    Either bound is capped at ``T`` (a gap is at most ``M(t) <= t``), which holds always.

    Parameters and raises are those of :class:`MaxSum`.

    Examples
    --------
    >>> from privaudit import simulation_generator
    >>> mech = SumSelect(d=4, horizon=32, epsilon=2.0, rng=simulation_generator(1))
    >>> index = mech.push([0, 0, 1, 0])
    >>> 0 <= index < 4
    True
    """

    task = "select"
    name = "continual.sum_select"

    def push(self, record: npt.ArrayLike) -> int:
        """Add one record (a 0/1 vector of length ``d``); return the selected column.

        Raises
        ------
        DataError, LimitExceededError, BudgetExhaustedError
            As for :meth:`MaxSum.push`.
        """
        return int(self._push_one(record))

    def push_many(self, records: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Push every row of ``records`` in order; return the ``n`` selected columns."""
        return self._push_rows(_as_records(records, self.d, single=False))


def _as_records(records: object, d: int, *, single: bool) -> IntArray:
    """Check that ``records`` is one (``single``) or several records of ``d`` zeros and
    ones; return them as an ``n × d`` integer array."""
    what = f"a record is a vector of d={d} zeros and ones"
    try:
        array = np.asarray(records)
    except (ValueError, TypeError) as error:
        raise DataError(f"{what}; could not read {type(records).__name__}: {error}") from None
    if not single and array.size == 0:
        return np.zeros((0, d), dtype=np.int64)
    if single and array.shape != (d,):
        raise DataError(f"{what}; got shape {array.shape}", expected_shape=[d])
    if not single and (array.ndim != 2 or array.shape[1] != d):
        raise DataError(
            f"records must be an n × d array (one row per record, d={d}); got shape {array.shape}",
            expected_shape=["n", d],
        )
    if array.dtype.kind not in "biuf":
        raise DataError(f"{what}; got values of type {array.dtype}")
    valid = (array == 0) | (array == 1)
    if not valid.all():
        where = tuple(int(i) for i in np.argwhere(~valid)[0])
        raise DataError(f"{what}; got {array[where].item()!r} at position {where}")
    return array.reshape(-1, d).astype(np.int64)


def _check_int(name: str, value: object, low: int, high: int, meaning: str) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | np.integer)
        or not (low <= value <= high)
    ):
        raise ParameterError(
            f"{name} ({meaning}) must be an integer in [{low}, {high}]; got {value!r}",
            parameter=name,
        )
    return int(value)


def _check_real(name: str, value: object, *, low: float, high: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | np.integer | np.floating)
        or not (low < value < high)
        or math.isnan(value)
    ):
        bounds = f"> {low:g}" if math.isinf(high) else f"in ({low:g}, {high:g})"
        raise ParameterError(f"{name} must be a finite number {bounds}; got {value!r}")
    return float(value)


def _pending(state: SelectionState, name: str, limit: int) -> list[int]:
    """The drawn-ahead noise of stream ``name``, at most ``limit`` draws, each in range."""
    values = state.pending[name]
    if len(values) > limit:
        raise ParameterError(
            f"state.pending.{name} holds {len(values)} draws; after t={state.t} the horizon "
            f"needs at most {limit}",
            parameter=f"state.pending.{name}",
        )
    return [state_int(v, f"pending.{name}", -_NOISE_LIMIT, _NOISE_LIMIT) for v in values]
