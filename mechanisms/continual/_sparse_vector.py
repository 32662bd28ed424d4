"""Sparse-vector-triggered recomputation for MaxSum and SumSelect (large ``d``).

The "sparse-vector" strategy of :class:`~privaudit.mechanisms.continual.MaxSum` and
:class:`~privaudit.mechanisms.continual.SumSelect`, after the upper bounds of [JRSS23]_.
It keeps one private answer and replaces it only when the sparse vector technique
says it has gone stale:

* MaxSum holds a value ``r`` (``0`` at the start); the query at step ``t`` is
  ``f_t = M(t) - r`` with ``M(t) = max_j S_j(t)`` (sensitivity ``Δ = 1``). A refresh
  releases ``r = M(t) + ξ`` (Laplace mechanism, ``ξ`` of scale ``1/ε_c``).
* SumSelect holds an index ``j`` (``0`` at the start); the query is the gap
  ``f_t = M(t) - S_j(t)`` (``Δ = 2``: both terms move by at most 1). A refresh selects
  ``j = argmax_i (S_i(t) + Z_i)`` (report noisy max, ``Z_i`` of scale ``2/ε_c``, the
  lowest index on ties).

A round is one AboveThreshold [DR14]_ (Theorem 3.23) in the form of [LSL17]_: a
threshold noise ``ν`` of scale ``Δ/ε_a``, a fresh noise ``η_t`` of scale ``2Δ/ε_b`` for
every query, and the round ends (a refresh) at the first ``t`` with
``f_t + η_t >= τ + ν``; it is ``(ε_a + ε_b)``-DP. At most ``K`` refreshes are allowed
(``K + 1`` rounds, ``K`` refreshes), so the whole stream is

* ε-DP with ``ε = (K + 1)(ε_a + ε_b) + K ε_c`` (basic composition), or
* ρ-zCDP with ``ρ = (K + 1)(ε_a + ε_b)²/2 + K ε_c²/2`` (an ε-DP step is ``ε²/2``-zCDP,
  [BS16]_ Proposition 1.4; zCDP composes by addition, Lemma 2.3).

AboveThreshold is private for adaptively chosen queries and composition is adaptive,
so the guarantee holds for records chosen after seeing the earlier releases.

Noise is exact discrete Laplace on the grid ``2^-g`` (sums and ``τ`` are integers
there; discrete noise shifted by a whole number of sensitivities keeps the Laplace
likelihood ratio, so the proofs above carry over unchanged). Scales are rounded up to
integers: the realised ε's (the plan's guarantee) are at most the designed ones.

Error (with probability ``>= 1 - β``, splitting β in three): let ``A_ν, A_η, A_c``
bound every threshold noise (``K + 1`` draws), every query noise (``T`` draws) and
every refresh noise (``K`` draws for MaxSum, ``K·d`` for SumSelect). With
``c = 1`` (MaxSum) or ``2`` (SumSelect) and ``τ = T/K + A_ν + A_η + c·A_c``:

* a step without a refresh has ``f_t < τ + A_ν + A_η``, and a refresh leaves an error
  of at most ``c·A_c``; MaxSum is also never below ``r - A_c`` because ``M`` only
  grows. So the error at every step is at most ``τ + A_ν + A_η``;
* a refresh needs ``f_t >= τ - A_ν - A_η``, which forces ``M`` to have grown by
  ``τ - A_ν - A_η - c·A_c = T/K`` since the previous refresh; ``M(T) <= T``, so there
  are at most ``K`` refreshes and the budget is never exhausted on this event.

``K`` and the split of the budget between ``ε_a``, ``ε_b`` and ``ε_c`` minimise that
bound (it behaves as ``T/K + Õ(√K/√ρ)`` under zCDP, so ``K ≈ T^{2/3}`` and the error is
``Õ(T^{1/3}/ρ^{1/3})``; as ``T/K + Õ(K/ε)`` under pure DP, so ``K ≈ √T`` and the error
is ``Õ(√(T/ε))``). The mechanisms cap the stated bound at ``T`` (MaxSum clips its
releases to ``[0, t]``).

This is the recomputation strategy that the reference notes (§5.1) attribute to
[JRSS23]_ for large ``d``, built from textbook parts; the paper's abstract says only
that simple mechanisms match its lower bounds, and its own algorithm and constants
were not available to compare with. Two choices are ours: the rounds compose in zCDP (an
(ε, δ) budget is spent as the ρ that converts to it) rather than by the advanced
composition theorem, which gives the same ``T^{1/3}`` rate; and SumSelect watches the
gap ``M(t) - S_j(t)`` of the held index (``Δ = 2``) instead of keeping a second,
private value of ``M``: one noisy release per refresh fewer, twice the round noise.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import numpy as np
import numpy.typing as npt

from privaudit.errors import ParameterError
from privaudit.guarantees import PrivacyGuarantee
from privaudit.mechanisms.continual._column_tree import MAX_NOISE_SCALE, grid_bits_for
from privaudit.mechanisms.continual._noise import BLOCK, NoiseSpec, NoiseStream
from privaudit.mechanisms.continual._tails import laplace_max_bound

__all__ = [
    "SparseVectorPlan",
    "SparseVectorRun",
    "SparseVectorSnapshot",
    "noise_left",
    "sparse_vector_plans",
]

Task = Literal["max", "select"]
IntArray = npt.NDArray[np.int64]

_SHARES = np.linspace(0.05, 0.95, 19)
_REFRESH_GRID = 128
_SAFETY = 1.0 - 1e-12  # per-round budgets shrink by this before rounding: no float overshoot
_INT64_ROOM = 1 << 62
_FIRST_WINDOW = 32  # steps scanned at once for the next refresh, doubling while none
_LAST_WINDOW = 1 << 14


@dataclass(frozen=True)
class SparseVectorPlan:
    """The calibrated schedule: refresh budget ``K``, threshold ``τ``, noise scales."""

    task: Task
    horizon: int
    columns: int
    max_refreshes: int  # K
    grid_bits: int  # sums, τ and noise are integers in units of 2^-grid_bits
    threshold_scale: int  # units; scale of ν
    query_scale: int  # units; scale of η_t
    refresh_scale: int  # units; scale of ξ (max) or of the Z_i (select)
    threshold_units: int  # τ
    design_beta: float
    composition: Literal["pure", "zcdp"]
    guarantee: PrivacyGuarantee

    @property
    def sensitivity(self) -> int:
        """``Δ`` of the query ``f_t``: 1 for MaxSum, 2 for SumSelect."""
        return 1 if self.task == "max" else 2

    @property
    def refresh_factor(self) -> int:
        """``c``: a refresh is within ``c·A_c`` of the truth (1: MaxSum, 2: SumSelect)."""
        return 1 if self.task == "max" else 2

    def round_epsilons(self) -> tuple[Fraction, Fraction, Fraction]:
        """The realised ``(ε_a, ε_b, ε_c)`` of one round, from the integer scales."""
        unit = 1 << self.grid_bits
        delta = self.sensitivity
        return (
            Fraction(delta * unit, self.threshold_scale),
            Fraction(2 * delta * unit, self.query_scale),
            Fraction(self.refresh_factor * unit, self.refresh_scale),
        )

    def noise_bounds_units(self, beta: float) -> tuple[int, int, int]:
        """``(A_ν, A_η, A_c)`` at failure probability ``beta`` (``beta/3`` each)."""
        k = self.max_refreshes
        refresh_draws = k if self.task == "max" else k * self.columns
        return (
            laplace_max_bound(self.threshold_scale, k + 1, beta / 3),
            laplace_max_bound(self.query_scale, self.horizon, beta / 3),
            laplace_max_bound(self.refresh_scale, refresh_draws, beta / 3),
        )

    def error_bound_units(self, beta: float) -> int | None:
        """The error bound in units, or ``None`` when at this ``beta`` the noise bounds
        no longer leave ``T/K`` of slack in ``τ`` (the budget argument fails)."""
        a_nu, a_eta, a_c = self.noise_bounds_units(beta)
        slack = self.threshold_units - a_nu - a_eta - self.refresh_factor * a_c
        if slack * self.max_refreshes < self.horizon << self.grid_bits:
            return None
        return max(self.threshold_units + a_nu + a_eta, self.refresh_factor * a_c)


def _approximate_errors(
    task: Task, horizon: int, columns: int, budget: float, composition: str, beta: float
) -> tuple[np.ndarray, ...]:
    """The error bound over a grid of (K, SVT share w, threshold share u), with the
    noise bounds ``A ≈ b·ln(2N/(β/3))`` of continuous Laplace."""
    k = np.unique(np.round(np.geomspace(1, horizon, _REFRESH_GRID)).astype(np.int64))
    kk, w, u = np.meshgrid(k.astype(float), _SHARES, _SHARES, indexing="ij")
    if composition == "pure":
        e_svt = w * budget / (kk + 1)
        e_c = (1 - w) * budget / kk
    else:
        e_svt = np.sqrt(2 * w * budget / (kk + 1))
        e_c = np.sqrt(2 * (1 - w) * budget / kk)
    delta = 1 if task == "max" else 2
    third = beta / 3
    a_nu = delta / (u * e_svt) * np.log(2 * (kk + 1) / third)
    a_eta = 2 * delta / ((1 - u) * e_svt) * np.log(2 * horizon / third)
    refresh_draws = kk if task == "max" else kk * columns
    c = 1 if task == "max" else 2
    a_c = c / e_c * np.log(2 * refresh_draws / third)
    error = horizon / kk + 2 * a_nu + 2 * a_eta + c * a_c
    return error, kk, w, u, e_svt, e_c


def sparse_vector_plans(
    *,
    task: Task,
    horizon: int,
    columns: int,
    epsilon: float,
    rho: float | None,
    beta: float,
    neighbouring: str,
) -> list[SparseVectorPlan]:
    """The pure-DP plan and, when ``rho`` is given, the zCDP plan, each with the ``K``
    and budget split that minimise the error bound at ``beta``."""
    plans = [_plan(task, horizon, columns, "pure", epsilon, beta, neighbouring)]
    if rho is not None:
        plans.append(_plan(task, horizon, columns, "zcdp", rho, beta, neighbouring))
    return plans


def _plan(
    task: Task,
    horizon: int,
    columns: int,
    composition: Literal["pure", "zcdp"],
    budget: float,
    beta: float,
    neighbouring: str,
) -> SparseVectorPlan:
    with np.errstate(all="ignore"):  # a budget or beta near the float limits: no plan
        error, kk, _, u, e_svt, e_c = _approximate_errors(
            task, horizon, columns, budget, composition, beta
        )
        usable = np.isfinite(error) & (e_svt > 0) & (e_c > 0) & np.isfinite(e_svt * e_c)
    if not usable.any():
        raise ParameterError(
            f"the sparse-vector schedule cannot be calibrated for a {composition} budget of "
            f"{budget!r} at beta={beta!r}; use an epsilon (and delta, beta) far from the "
            "limits of floating point",
            parameter="epsilon",
        )
    error = np.where(usable, error, np.inf)
    best = np.unravel_index(int(np.argmin(error)), error.shape)
    k = int(kk[best])
    eps_svt = float(e_svt[best]) * _SAFETY
    eps_a = Fraction(float(u[best]) * eps_svt)
    eps_b = Fraction(eps_svt) - eps_a
    eps_c = Fraction(float(e_c[best]) * _SAFETY)
    delta = 1 if task == "max" else 2
    c = 1 if task == "max" else 2
    scales = (Fraction(delta) / eps_a, Fraction(2 * delta) / eps_b, Fraction(c) / eps_c)
    grid = grid_bits_for(min(scales))
    threshold_scale, query_scale, refresh_scale = (math.ceil(b * (1 << grid)) for b in scales)
    largest = max(threshold_scale, query_scale, refresh_scale)
    if largest > MAX_NOISE_SCALE or (horizon << grid) + 64 * largest >= _INT64_ROOM:
        raise ParameterError(
            f"the sparse-vector schedule needs a noise scale of {largest} units, beyond "
            "the samplers' range; use a larger epsilon",
            parameter="epsilon",
        )
    draft = SparseVectorPlan(
        task=task,
        horizon=horizon,
        columns=columns,
        max_refreshes=k,
        grid_bits=grid,
        threshold_scale=threshold_scale,
        query_scale=query_scale,
        refresh_scale=refresh_scale,
        threshold_units=0,  # τ and the guarantee follow from the integer scales, below
        design_beta=beta,
        composition=composition,
        guarantee=PrivacyGuarantee.pure(math.inf, neighbouring=neighbouring),
    )
    a_nu, a_eta, a_c = draft.noise_bounds_units(beta)
    tau = -(-(horizon << grid) // k) + a_nu + a_eta + c * a_c  # ⌈T·2^g/K⌉ + ...
    ea, eb, ec = draft.round_epsilons()
    if composition == "pure":
        spent = (k + 1) * (ea + eb) + k * ec
        guarantee = PrivacyGuarantee.pure(float(spent), neighbouring=neighbouring)
    else:
        spent = (k + 1) * (ea + eb) ** 2 / 2 + k * ec**2 / 2
        guarantee = PrivacyGuarantee.zcdp(float(spent), neighbouring=neighbouring)
    assert spent <= Fraction(budget), (spent, budget)  # scales were rounded up
    return dataclasses.replace(draft, threshold_units=tau, guarantee=guarantee)


def noise_left(
    plan: SparseVectorPlan, name: str, t: int, refreshes: int, *, fresh: bool = False
) -> int:
    """How many draws of the noise stream ``name`` (``threshold``, ``query`` or
    ``refresh``) the rest of the stream may use after ``t`` steps and ``refreshes``
    refreshes (``fresh``: the first ``ν`` is not drawn yet)."""
    if name == "threshold":
        return plan.max_refreshes + 1 - refreshes - (0 if fresh else 1)
    if name == "query":
        return plan.horizon - t
    per_refresh = 1 if plan.task == "max" else plan.columns
    return (plan.max_refreshes - refreshes) * per_refresh


@dataclass(frozen=True)
class SparseVectorSnapshot:
    """What a :class:`SparseVectorRun` continues from (the defaults: a fresh run)."""

    t: int = 0
    held: int = 0
    refreshes: int = 0
    exhausted: bool = False
    threshold_noise: int | None = None  # None: the first round's ν is not drawn yet
    pending: Mapping[str, Sequence[int]] = dataclasses.field(default_factory=dict)


class SparseVectorRun:
    """The running schedule: the held answer, the threshold noise, the refresh count."""

    def __init__(
        self,
        plan: SparseVectorPlan,
        rng: np.random.Generator,
        *,
        block: int = BLOCK,
        restored: SparseVectorSnapshot | None = None,
    ) -> None:
        """A fresh schedule, or one ``restored`` after ``t`` steps (see :meth:`export`)."""
        self.plan = plan
        at = restored or SparseVectorSnapshot()
        self._threshold = self._stream(plan.threshold_scale, rng, block, at, "threshold")
        self._query = self._stream(plan.query_scale, rng, block, at, "query")
        self._refresh = self._stream(plan.refresh_scale, rng, block, at, "refresh")
        # ν of the current round; None until the first step needs it (nothing is drawn
        # before then, so a restore draws nothing from its generator).
        self._nu: int | None = at.threshold_noise
        self.held = at.held  # MaxSum: r in units; SumSelect: the index j
        self.refreshes = at.refreshes
        self.exhausted = at.exhausted

    def _stream(
        self,
        scale: int,
        rng: np.random.Generator,
        block: int,
        at: SparseVectorSnapshot,
        name: str,
    ) -> NoiseStream:
        total = noise_left(self.plan, name, at.t, at.refreshes, fresh=at.threshold_noise is None)
        pending = at.pending.get(name, ())
        return NoiseStream(NoiseSpec(laplace_scale=scale), rng, total, block=block, pending=pending)

    def export(self) -> SparseVectorSnapshot:
        """The schedule's numbers (``t`` is the caller's): the held answer, the refresh
        count, the current ``ν`` and the noise drawn ahead. Once the budget is exhausted
        no noise is used again, and none is kept."""
        pending = {
            name: ([] if self.exhausted else stream.pending().tolist())
            for name, stream in (
                ("threshold", self._threshold),
                ("query", self._query),
                ("refresh", self._refresh),
            )
        }
        return SparseVectorSnapshot(
            held=self.held,
            refreshes=self.refreshes,
            exhausted=self.exhausted,
            threshold_noise=self._nu,
            pending=pending,
        )

    def output(self) -> float | int:
        if self.plan.task == "max":
            return self.held * 2.0**-self.plan.grid_bits
        return self.held

    def advance(
        self, sums: IntArray, maxima: IntArray, *, hold: bool
    ) -> tuple[list[float | int], int | None]:
        """Run the schedule over a batch (``sums``: running column sums, one row per
        step; ``maxima``: their row maxima). Return the releases and, if the refresh
        budget ran out in this batch, the position of that step: then the releases stop
        there (``hold=False``) or go on with the held answer (``hold=True``)."""
        n = maxima.size
        out: list[float | int] = []
        if self.exhausted:
            return [self.output()] * n, None
        plan = self.plan
        g = plan.grid_bits
        if self._nu is None:
            self._nu = int(self._threshold.take(1)[0])
        eta = self._query.take(n)
        pos, window = 0, _FIRST_WINDOW
        while pos < n:
            end = min(n, pos + window)
            if plan.task == "max":
                f = (maxima[pos:end] << g) - self.held
            else:
                f = (maxima[pos:end] - sums[pos:end, self.held]) << g
            hits = np.flatnonzero(f + eta[pos:end] >= plan.threshold_units + self._nu)
            if hits.size == 0:
                out.extend([self.output()] * (end - pos))
                pos, window = end, min(2 * window, _LAST_WINDOW)
                continue
            fire = pos + int(hits[0])
            out.extend([self.output()] * (fire - pos))
            if self.refreshes >= plan.max_refreshes:
                self.exhausted = True
                if hold:
                    out.extend([self.output()] * (n - fire))
                return out, fire
            self._refresh_at(sums[fire], int(maxima[fire]))
            out.append(self.output())
            pos, window = fire + 1, _FIRST_WINDOW
        return out, None

    def _refresh_at(self, sums: IntArray, maximum: int) -> None:
        g = self.plan.grid_bits
        if self.plan.task == "max":
            self.held = (maximum << g) + int(self._refresh.take(1)[0])
        else:
            noisy = (sums << g) + self._refresh.take(sums.size)
            self.held = int(np.argmax(noisy))  # the first maximum: the lowest index
        self.refreshes += 1
        self._nu = int(self._threshold.take(1)[0])
