"""Longitudinal frequency oracles: two rounds with memoization (as RAPPOR).

A user who reports the same value again and again must not leak more each time. The
*memoization* protocols [ACBX22]_ randomize twice:

1. **Round 1, permanent.** The value is randomized once with ``epsilon_perm`` (ε∞);
   the result (the *memo*) is kept by the client, one per (user, value), and reused
   for every later report of that value.
2. **Round 2, per report.** Every report re-randomizes the memo afresh, with
   parameters chosen so that a single report is exactly ``epsilon_1``-LDP
   (ε₁ < ε∞).

Every report is a function of the memo plus fresh noise, so any number of reports of
one value is ε∞-LDP (post-processing of round 1), while the first is ε₁-LDP. A user
whose value changes gets a new memo for the new value (and reuses the old one if the
value comes back); reports about ``m`` different values compose to ``m·ε∞``.

For one batch of reports (fresh round-1 *and* round-2 randomness, data fixed), one
report is a pure protocol with ``p1, q1`` of round 1 and ``p2, q2`` of round 2::

    p* = p1 p2 + (1 − p1) q2,   q* = q1 p2 + (1 − q1) q2
    f̂ = (C/n − q1(p2 − q2) − q2) / ((p1 − q1)(p2 − q2))      # = (C/n − q*)/(p* − q*)

so estimation, variance and streaming aggregation are the engine's (a
:class:`PureProtocolView` with ``(p*, q*)``). Conditional on the memos the estimate
is biased towards the memos' own estimate; it is unbiased over both rounds.

Client state is explicit: :meth:`LongitudinalProtocol.memoize` returns a
:class:`Memo`, :meth:`LongitudinalProtocol.randomize` turns a memo into one report
batch. The memo is what protects the user over time: keep it on the client, never send
it, and never draw a new one for a value the user already memoized.

References
----------
.. [ACBX22] H. H. Arcolezi, J.-F. Couchot, B. Al Bouna, X. Xiao, "Improving the Utility
   of Locally Differentially Private Protocols for Longitudinal and Multidimensional
   Frequency Estimates", Digital Communications and Networks, 2022 (arXiv:2111.04636).
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from privaudit.errors import DataError, ParameterError
from privaudit.guarantees import PrivacyGuarantee
from privaudit.mechanisms.ldp._engine import (
    Aggregator,
    FloatArray,
    FrequencyOracle,
    IntArray,
    PostProcess,
    Reports,
    check_domain,
    check_epsilon,
    check_values,
)
from privaudit.mechanisms.ldp._grr import GRR
from privaudit.mechanisms.ldp._multidim import (
    TUPLE_NEIGHBOURS,
    MultidimensionalProtocol,
    MultiReports,
    PureProtocolView,
    check_domains,
    check_tuples,
    sampled_channel,
)
from privaudit.mechanisms.ldp._sampling import bernoulli
from privaudit.mechanisms.ldp._unary import OUE, SUE
from privaudit.randomness import RandomSource, resolve_rng
from privaudit.registry import mechanisms

__all__ = [
    "ALLOMFREE",
    "LGRR",
    "LOSUE",
    "LOUE",
    "LSUE",
    "AllomfreeMemo",
    "LongitudinalProtocol",
    "Memo",
]

ONE_REPORT_NEIGHBOURS = "any two values of one user, one report (local model)"
MEMOIZED_NEIGHBOURS = (
    "any two values of one user, over any number of reports made from the user's "
    "memoized response for that value (local model)"
)

_CHUNK_CELLS = 1 << 24
_MAX_CHANNEL_CELLS = 1 << 22


@dataclass(frozen=True)
class Memo:
    """The permanent round-1 responses of a population (client-side state).

    Memoization is per (user, value): each pair a user has ever held keeps its own
    permanent response. Row ``i`` of :attr:`values` / :attr:`responses` is user ``i``'s
    current value and the permanent response memoized for it.

    Attributes
    ----------
    protocol, fingerprint
        The protocol that drew the memo, and its parameters.
    values
        Each user's current value, shape ``(n,)``.
    keys
        ``user·k + value`` of every memoized pair, sorted.
    table
        The permanent responses, aligned with :attr:`keys` (GRR: one value per row;
        unary: ``⌈k/8⌉`` packed bytes per row).
    current
        For each user, the row of :attr:`table` that holds its current value's response.
    """

    protocol: str
    fingerprint: str
    values: IntArray
    keys: IntArray
    table: npt.NDArray[Any]
    current: IntArray

    @property
    def n(self) -> int:
        """Number of users."""
        return int(self.values.size)

    @property
    def responses(self) -> npt.NDArray[Any]:
        """Each user's permanent response for its current value (one row per user)."""
        return self.table[self.current]

    def __len__(self) -> int:
        return self.n


class LongitudinalProtocol(ABC):
    """Base class of the two-round memoization protocols (see the module docstring).

    Parameters
    ----------
    k
        Domain size; values are ``0 .. k-1``.
    epsilon_perm
        ε∞: the bound over any number of reports of one memoized value.
    epsilon_1
        ε₁: the bound of a single report; ``0 < epsilon_1 < epsilon_perm``.
    """

    name: ClassVar[str] = ""
    _key: ClassVar[str] = ""

    def __init__(self, *, k: int, epsilon_perm: float, epsilon_1: float) -> None:
        self.k = check_domain(k)
        self.epsilon_perm = check_epsilon(epsilon_perm, name="epsilon_perm")
        self.epsilon_1 = check_epsilon(epsilon_1, name="epsilon_1")
        if not self.epsilon_1 < self.epsilon_perm:
            raise ParameterError(
                "epsilon_1 (one report) must be smaller than epsilon_perm (any number of "
                f"reports): need 0 < epsilon_1 < epsilon_perm; got epsilon_1={self.epsilon_1!r}, "
                f"epsilon_perm={self.epsilon_perm!r}. Lower epsilon_1 or raise epsilon_perm."
            )
        self._round1 = self._first_round()
        self.p1, self.q1 = self._round1.p_star, self._round1.q_star
        self.p2, self.q2 = self._second_round()
        if not 0.0 <= self.q2 < self.p2 <= 1.0:  # pragma: no cover - guarded per protocol
            raise ParameterError(
                f"{self.name}: no valid second round for epsilon_1={self.epsilon_1!r} and "
                f"epsilon_perm={self.epsilon_perm!r} (p2={self.p2!r}, q2={self.q2!r})"
            )
        self._view = PureProtocolView(
            layout=self._round1,
            p_star=self.p_star,
            q_star=self.q_star,
            fingerprint=self.fingerprint(),
            guarantee=self.guarantee,
        )

    # --- what a protocol defines -------------------------------------------------------

    @abstractmethod
    def _first_round(self) -> FrequencyOracle:
        """The round-1 oracle at ``epsilon_perm`` (its randomizer draws the memos)."""

    @abstractmethod
    def _second_round(self) -> tuple[float, float]:
        """``(p2, q2)`` such that one report is exactly ``epsilon_1``-LDP."""

    @abstractmethod
    def _rerandomize(self, responses: npt.NDArray[Any], rng: np.random.Generator) -> dict[str, Any]:
        """Round 2: one fresh report from each permanent response."""

    @abstractmethod
    def _second_round_matrix(self) -> FloatArray:
        """``P[report | memo]`` over the memo and report spaces of :meth:`channel`."""

    @staticmethod
    @abstractmethod
    def _ratio(p: float, q: float) -> float:
        """The worst likelihood ratio of a pure protocol of this family with ``(p, q)``."""

    # --- parameters and guarantees -----------------------------------------------------

    @property
    def p_star(self) -> float:
        """``P[v ∈ S(report) | value v]`` of one report (both rounds)."""
        return self.p1 * self.p2 + (1 - self.p1) * self.q2

    @property
    def q_star(self) -> float:
        """``P[v ∈ S(report) | value v' ≠ v]`` of one report (both rounds)."""
        return self.q1 * self.p2 + (1 - self.q1) * self.q2

    @property
    def guarantee(self) -> PrivacyGuarantee:
        """``epsilon_1``-LDP: one report of one user."""
        return PrivacyGuarantee.pure(self.epsilon_1, neighbouring=ONE_REPORT_NEIGHBOURS)

    @property
    def guarantee_longitudinal(self) -> PrivacyGuarantee:
        """``epsilon_perm``-LDP: any number of reports from one memoized value (they are
        post-processing of round 1). Reports about ``m`` distinct values of a user
        compose to ``m·epsilon_perm``."""
        return PrivacyGuarantee.pure(self.epsilon_perm, neighbouring=MEMOIZED_NEIGHBOURS)

    def first_report_epsilon(self) -> float:
        """The exact ε of a single report, from the chained channel of both rounds."""
        return math.log(self._ratio(self.p_star, self.q_star))

    def longitudinal_epsilon(self) -> float:
        """The exact ε of round 1 alone: the limit over infinitely many reports."""
        return math.log(self._ratio(self.p1, self.q1))

    def fingerprint(self) -> str:
        """What memos and reports must agree on to be used together."""
        return (
            f"{self.name}:k={self.k}:epsilon_perm={self.epsilon_perm!r}"
            f":epsilon_1={self.epsilon_1!r}"
        )

    def bits_per_report(self) -> float:
        """Bits one report takes in the compact encoding."""
        return self._round1.bits_per_report()

    # --- client --------------------------------------------------------------------------

    def memoize(
        self, values: npt.ArrayLike, *, rng: RandomSource = None, memo: Memo | None = None
    ) -> Memo:
        """Draw (or look up) each user's permanent round-1 response.

        Parameters
        ----------
        values
            Each user's current value, one integer in ``[0, k)`` per user.
        rng
            ``None`` (default) draws from the cryptographically secure release source;
            pass :func:`privaudit.simulation_generator` output only for simulations.
        memo
            The population's previous memo (same users, same order). A user whose
            (user, value) pair is in it keeps that permanent response; only new pairs
            are randomized.

        Returns
        -------
        Memo
            The new state, holding every memoized pair so far.
        """
        checked = check_values(values, self.k)
        generator = resolve_rng(rng)
        n = checked.size
        keys = np.arange(n, dtype=np.int64) * self.k + checked
        if memo is None:
            table = self._round1._randomize(checked, generator)[self._key]
            current = np.arange(n, dtype=np.int64)
            return Memo(self.name, self.fingerprint(), checked, keys, table, current)
        self._check_memo(memo)
        if memo.n != n:
            raise DataError(
                f"the memo holds {memo.n} users but {n} values were given; pass one value "
                "per user, in the memo's order"
            )
        position = np.searchsorted(memo.keys, keys)
        found = position < memo.keys.size
        found[found] = memo.keys[position[found]] == keys[found]
        fresh = self._round1._randomize(checked[~found], generator)[self._key]
        all_keys = np.concatenate([memo.keys, keys[~found]])
        order = np.argsort(all_keys, kind="stable")
        all_keys = all_keys[order]
        table = np.concatenate([memo.table, fresh])[order]
        current = np.searchsorted(all_keys, keys).astype(np.int64)
        return Memo(self.name, self.fingerprint(), checked, all_keys, table, current)

    def randomize(self, source: Memo | npt.ArrayLike, *, rng: RandomSource = None) -> Reports:
        """One report per user (round 2).

        Parameters
        ----------
        source
            A :class:`Memo` from :meth:`memoize` (the longitudinal use), or the values
            themselves: then a fresh memo is drawn and thrown away, which is right for
            a one-off report but **not** for repeated ones (each call would draw a new
            permanent response, and repeated calls compose as independent
            ``epsilon_1`` reports instead of staying within ``epsilon_perm``).
        rng
            ``None`` (default) draws from the cryptographically secure release source.
        """
        generator = resolve_rng(rng)
        if isinstance(source, Memo):
            memo = self._check_memo(source)
        else:
            memo = self.memoize(source, rng=generator)
        arrays = self._rerandomize(memo.responses, generator)
        return Reports(self.name, self.fingerprint(), arrays)

    def _check_memo(self, memo: object) -> Memo:
        if not isinstance(memo, Memo):
            raise DataError(f"expected a Memo, got {type(memo).__name__}")
        if memo.fingerprint != self.fingerprint():
            raise DataError(
                f"this memo was drawn by {memo.fingerprint}, not by {self.fingerprint()}"
            )
        return memo

    # --- server ---------------------------------------------------------------------------

    def estimate(self, reports: Reports, *, postprocess: PostProcess = None) -> FloatArray:
        """Estimate the frequency of every value from one report per user.

        ``f̂ = (C/n − q1(p2 − q2) − q2)/((p1 − q1)(p2 − q2))``: unbiased over both
        rounds; ``postprocess`` as :meth:`FrequencyOracle.estimate`."""
        return self._view.estimate(reports, postprocess=postprocess)

    def encode(self, reports: Reports) -> bytes:
        """The compact, versioned binary form of a batch (the engine's wire format)."""
        return self._view.encode(reports)

    def decode(self, data: bytes, *, max_reports: int = 10_000_000) -> Reports:
        """Read a batch encoded by :meth:`encode`; untrusted input is safe to pass."""
        return self._view.decode(data, max_reports=max_reports)

    def support_counts(self, reports: Reports) -> FloatArray:
        """``C(v)``: how many reports support each value."""
        return self._view.support_counts(reports)

    def aggregator(self) -> Aggregator:
        """A streaming aggregator of one round of reports (bounded memory, mergeable)."""
        return Aggregator(self._view)

    def variance(self, n: int, f: npt.ArrayLike = 0.0) -> Any:
        """The exact variance of the estimate of a value with frequency ``f`` over a
        fixed dataset of ``n`` users, one report each.

        The randomness covered is both rounds: the memos (drawn once per user) and the
        report drawn from them. With ``p*, q*`` of one report (see :attr:`p_star`)::

            Var = q*(1 − q*)/(n (p* − q*)²) + f (1 − p* − q*)/(n (p* − q*))

        which is ``P(1 − P)/(n (p1 − q1)²(p2 − q2)²) − f(1 − f)/n`` with
        ``P = q2 + (p2 − q2)(q1 + (p1 − q1) f)``: the published form is the variance
        for i.i.d. inputs and equals this one at ``f = 0``. Estimates of later rounds
        from the same memos are correlated with this one (they share round 1).
        """
        return self._view.variance(n, f)

    def mse(self, n: int, f: npt.ArrayLike | None = None) -> float:
        """Mean over the domain of the estimate's variance."""
        return self._view.mse(n, f)

    def reconstruction_success(self, prior: npt.ArrayLike | None = None) -> float:
        """Success rate of the Bayes-naive attacker against one report (uniform prior)."""
        return self._reconstruction()

    @abstractmethod
    def _reconstruction(self) -> float: ...

    def channel(self, reports: int = 1) -> FloatArray:
        """``P[(y_1, …, y_T) | v]``: the exact law of ``T`` reports of one memoized value,
        ``Σ_m P1(m | v) Π_t P2(y_t | m)``, reports in :func:`itertools.product` order
        (small ``k`` only)."""
        if isinstance(reports, bool) or not isinstance(reports, int) or reports < 1:
            raise ParameterError(f"reports must be an integer >= 1; got {reports!r}")
        first: FloatArray = self._round1.channel()  # type: ignore[attr-defined]
        second = self._second_round_matrix()
        states, outputs = second.shape
        if self.k * states + states * outputs**reports > _MAX_CHANNEL_CELLS:
            raise ParameterError(
                f"the channel of {reports} reports has {outputs}^{reports} columns; "
                "use a smaller k or fewer reports"
            )
        joint = second
        for _ in range(reports - 1):
            joint = (joint[:, :, None] * second[:, None, :]).reshape(states, -1)
        law: FloatArray = first @ joint
        return law

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(k={self.k}, epsilon_perm={self.epsilon_perm:g}, "
            f"epsilon_1={self.epsilon_1:g})"
        )


class _GRRFamily(LongitudinalProtocol):
    """Memos and reports are values in ``[k]``; both rounds are GRR-shaped."""

    _key = "values"

    def _first_round(self) -> FrequencyOracle:
        return GRR(k=self.k, epsilon=self.epsilon_perm)

    def _rerandomize(self, responses: npt.NDArray[Any], rng: np.random.Generator) -> dict[str, Any]:
        memo = np.asarray(responses, dtype=np.int64)
        keep = bernoulli(rng, self.p2, memo.size)
        other = rng.integers(0, self.k - 1, size=memo.size)
        other += other >= memo  # uniform over the k − 1 values other than the memo
        return {"values": np.where(keep, memo, other).astype(np.int64)}

    def _second_round_matrix(self) -> FloatArray:
        matrix = np.full((self.k, self.k), self.q2)
        np.fill_diagonal(matrix, self.p2)
        return matrix

    @staticmethod
    def _ratio(p: float, q: float) -> float:
        return max(p / q, q / p)

    def _reconstruction(self) -> float:
        return self.p_star


class _UnaryFamily(LongitudinalProtocol):
    """Memos and reports are ``k``-bit vectors (bit-packed); round 2 keeps a memo bit
    1 with probability ``p2`` and turns a 0 into 1 with probability ``q2``."""

    _key = "bits"

    def _rerandomize(self, responses: npt.NDArray[Any], rng: np.random.Generator) -> dict[str, Any]:
        packed = np.asarray(responses, dtype=np.uint8)
        out = np.empty_like(packed)
        chunk = max(1, _CHUNK_CELLS // self.k)
        for start in range(0, packed.shape[0], chunk):
            bits = np.unpackbits(packed[start : start + chunk], axis=1, count=self.k).astype(bool)
            fresh = bernoulli(rng, np.where(bits, self.p2, self.q2), bits.shape)
            out[start : start + chunk] = np.packbits(fresh, axis=1)
        return {"bits": out}

    def _second_round_matrix(self) -> FloatArray:
        if self.k > 10:
            raise ParameterError(f"the memo space has 2^k states; k={self.k} is too large")
        states = np.array(list(itertools.product([0, 1], repeat=self.k)), dtype=bool)
        if_one = np.where(states, self.p2, 1 - self.p2)  # (outputs, k), for a memo bit of 1
        if_zero = np.where(states, self.q2, 1 - self.q2)
        per_bit = np.where(states[:, None, :], if_one[None, :, :], if_zero[None, :, :])
        matrix: FloatArray = per_bit.prod(axis=2)
        return matrix

    @staticmethod
    def _ratio(p: float, q: float) -> float:
        ratio = p * (1 - q) / (q * (1 - p))
        return max(ratio, 1.0 / ratio)

    def _reconstruction(self) -> float:
        p, q, k = self.p_star, self.q_star, self.k
        return p * (1 - (1 - q) ** k) / (k * q) + (1 - p) * (1 - q) ** (k - 1) / k


@mechanisms.register("lgrr")
class LGRR(_GRRFamily):
    """Longitudinal GRR [ACBX22]_: GRR at ε∞, then GRR of the memo at the ``p2`` that
    makes one report exactly ε₁-LDP.

    Round 1: ``p1 = e^ε∞/(e^ε∞ + k − 1)``, ``q1 = (1 − p1)/(k − 1)``. One report
    supports ``v`` with ``p* = p1 p2 + (1 − p1) q2`` if the value is ``v`` and
    ``q* = q1 p2 + (1 − q1) q2`` otherwise, and the worst ratio is ``p*/q*``; solving
    ``p* = e^ε₁ q*`` with ``q2 = (1 − p2)/(k − 1)`` gives::

        p2 = [e^ε₁ (1 − q1) − (1 − p1)] / [k p1 − 1 + e^ε₁ (p1 − q1)]

    so one report is distributed exactly as GRR(ε₁) would report it.

    Parameters
    ----------
    paper_compatible
        Use the published ``p2`` (multi-freq-ldpy), which solves the k = 2 equation:
        for ``k > 2`` one report is then ε-LDP for an ε *smaller* than ε₁ (safe, but
        noisier than needed; :meth:`first_report_epsilon` computes it). The guarantee
        still states ε₁. Both agree for ``k = 2``.

    Examples
    --------
    >>> from privaudit.mechanisms.ldp import LGRR
    >>> round(LGRR(k=5, epsilon_perm=2.0, epsilon_1=1.0).first_report_epsilon(), 12)
    1.0
    >>> lgrr = LGRR(k=5, epsilon_perm=2.0, epsilon_1=1.0, paper_compatible=True)
    >>> round(lgrr.first_report_epsilon(), 3)
    0.86
    """

    name = "lgrr"

    def __init__(
        self, *, k: int, epsilon_perm: float, epsilon_1: float, paper_compatible: bool = False
    ) -> None:
        if not isinstance(paper_compatible, bool):
            raise ParameterError(
                f"paper_compatible must be True or False; got {paper_compatible!r}"
            )
        self.paper_compatible = paper_compatible
        super().__init__(k=k, epsilon_perm=epsilon_perm, epsilon_1=epsilon_1)

    def _second_round(self) -> tuple[float, float]:
        k, p1, q1, e = self.k, self.p1, self.q1, math.exp(self.epsilon_1)
        if self.paper_compatible:
            p2 = (q1 - e * p1) / (-p1 * e + k * q1 * e - q1 * e - p1 * (k - 1) + q1)
        else:
            p2 = (e * (1 - q1) - (1 - p1)) / (k * p1 - 1 + e * (p1 - q1))
        return p2, (1 - p2) / (k - 1)

    def fingerprint(self) -> str:
        return super().fingerprint() + (":paper" if self.paper_compatible else "")


@mechanisms.register("lsue")
class LSUE(_UnaryFamily):
    """Longitudinal SUE (basic RAPPOR): SUE at ε∞, then a symmetric second round.

    Round 1: ``p1 = e^(ε∞/2)/(e^(ε∞/2) + 1)``, ``q1 = 1 − p1``. Both rounds symmetric
    keep one report symmetric (``q* = 1 − p*``), and one report is SUE(ε₁) exactly
    when ``p* = e^(ε₁/2)/(e^(ε₁/2) + 1)``: with ``a = e^(ε∞/2)``, ``b = e^(ε₁/2)``,
    ``p2 = (ab − 1)/((a − 1)(b + 1))``, ``q2 = 1 − p2`` (the published closed form,
    simplified).
    """

    name = "lsue"

    def _first_round(self) -> FrequencyOracle:
        return SUE(k=self.k, epsilon=self.epsilon_perm)

    def _second_round(self) -> tuple[float, float]:
        b = math.exp(self.epsilon_1 / 2)
        p2 = math.expm1((self.epsilon_perm + self.epsilon_1) / 2) / (
            math.expm1(self.epsilon_perm / 2) * (b + 1)
        )
        return p2, 1 - p2


@mechanisms.register("losue")
class LOSUE(_UnaryFamily):
    """Longitudinal OUE then SUE (L-OSUE) [ACBX22]_: OUE at ε∞, then a symmetric round.

    Round 1: ``p1 = 1/2``, ``q1 = 1/(e^ε∞ + 1)``. Then ``p* = 1/2`` whatever ``p2``, and
    one report is OUE(ε₁) exactly for
    ``p2 = (e^(ε₁+ε∞) − 1)/((e^ε∞ − 1)(e^ε₁ + 1))``, ``q2 = 1 − p2``.
    """

    name = "losue"

    def _first_round(self) -> FrequencyOracle:
        return OUE(k=self.k, epsilon=self.epsilon_perm)

    def _second_round(self) -> tuple[float, float]:
        p2 = math.expm1(self.epsilon_1 + self.epsilon_perm) / (
            math.expm1(self.epsilon_perm) * (math.exp(self.epsilon_1) + 1)
        )
        return p2, 1 - p2


@mechanisms.register("loue")
class LOUE(_UnaryFamily):
    """Longitudinal OUE (L-OUE) [ACBX22]_: OUE in both rounds (``p1 = p2 = 1/2``).

    Round 1: ``q1 = 1/(e^ε∞ + 1)``. One report has ``p* = 1/4 + q2/2`` and
    ``q* = q1/2 + (1 − q1) q2``; ``p*(1 − q*) = e^ε₁ q*(1 − p*)`` is a quadratic in
    ``q2`` with exactly one root in ``(0, 1/2)``, which is ``q2``. It exists only while
    ``ε₁ < ln((2e^ε∞ + 1)/3)`` (with ``q2 = 0`` one report is that private and no
    more); otherwise the constructor raises :class:`~privaudit.errors.ParameterError`.
    """

    name = "loue"

    def _first_round(self) -> FrequencyOracle:
        return OUE(k=self.k, epsilon=self.epsilon_perm)

    def _second_round(self) -> tuple[float, float]:
        q1, e = self.q1, math.exp(self.epsilon_1)
        # f(x) = P(1 − Q) − e Q(1 − P) = a x² + b x + c with P = 1/4 + x/2, Q = q1/2 + (1 − q1)x
        a = (1 - q1) * (e - 1) / 2
        b = 0.25 - e * (0.75 - q1)
        c = 0.25 - q1 / 8 - 3 * e * q1 / 8
        if c <= 0:
            limit = math.log((2 * math.exp(self.epsilon_perm) + 1) / 3)
            raise ParameterError(
                f"L-OUE cannot make one report {self.epsilon_1!r}-LDP from "
                f"epsilon_perm={self.epsilon_perm!r}: with p2 = 1/2 a report is at best "
                f"ln((2e^epsilon_perm + 1)/3) = {limit:.6g}-LDP; use epsilon_1 < {limit:.6g} "
                "or LOSUE"
            )
        q2 = 2 * c / (-b + math.sqrt(b * b - 4 * a * c))  # the smaller root, stably
        return 0.5, q2


# --- ALLOMFREE -------------------------------------------------------------------------


@dataclass(frozen=True)
class AllomfreeMemo:
    """ALLOMFREE's client state: each user's sampled attribute (drawn once, kept) and,
    per attribute, the :class:`Memo` of the users who sampled it (in user order)."""

    fingerprint: str
    attribute: IntArray
    memos: tuple[Memo, ...]

    @property
    def n(self) -> int:
        """Number of users."""
        return int(self.attribute.size)

    def __len__(self) -> int:
        return self.n


@mechanisms.register("allomfree")
class ALLOMFREE(MultidimensionalProtocol):
    """Adaptive longitudinal multidimensional frequency estimation [ACBX22]_.

    Each user samples one attribute uniformly, once (the attribute is part of the
    memo and is revealed with every report), and reports it with L-GRR or L-OSUE,
    whichever has the smaller approximate variance (``f = 0``) for that attribute's
    domain. Attribute ``j`` is estimated from the ``n_j`` users who sampled it.

    One report is ``epsilon_1``-LDP and any number of reports of one memoized tuple is
    ``epsilon_perm``-LDP, for any two tuples of one user: the attribute does not depend
    on the data, and the rest is one longitudinal report. (Re-sampling the attribute
    for every report would not keep the ε∞ bound; this class never does.)

    With the exact L-GRR, one report of either choice is GRR(ε₁) or OUE(ε₁), so the
    choice is GRR exactly when ``k < 3e^ε₁ + 2``.

    Parameters
    ----------
    domains
        Domain size of each attribute.
    epsilon_perm, epsilon_1
        As :class:`LongitudinalProtocol`.
    paper_compatible
        Passed to :class:`LGRR`.
    """

    name = "allomfree"
    _sampled = True

    def __init__(
        self,
        *,
        domains: Sequence[int],
        epsilon_perm: float,
        epsilon_1: float,
        paper_compatible: bool = False,
    ) -> None:
        self.domains = check_domains(domains)
        self.d = len(self.domains)
        self.protocols: tuple[LongitudinalProtocol, ...] = tuple(
            self._choose(k, epsilon_perm, epsilon_1, paper_compatible) for k in self.domains
        )
        self.epsilon_perm = self.protocols[0].epsilon_perm
        self.epsilon_1 = self.protocols[0].epsilon_1
        self.paper_compatible = paper_compatible
        self._parts = tuple(protocol._view for protocol in self.protocols)

    @staticmethod
    def _choose(
        k: int, epsilon_perm: float, epsilon_1: float, paper_compatible: bool
    ) -> LongitudinalProtocol:
        grr = LGRR(
            k=k, epsilon_perm=epsilon_perm, epsilon_1=epsilon_1, paper_compatible=paper_compatible
        )
        osue = LOSUE(k=k, epsilon_perm=epsilon_perm, epsilon_1=epsilon_1)
        return grr if grr.variance(1) <= osue.variance(1) else osue

    def fingerprint(self) -> str:
        inner = ",".join(protocol.fingerprint() for protocol in self.protocols)
        return f"allomfree:domains={self.domains}:[{inner}]"

    @property
    def guarantee(self) -> PrivacyGuarantee:
        """``epsilon_1``-LDP: one report, any two tuples of one user."""
        return PrivacyGuarantee.pure(self.epsilon_1, neighbouring=f"{TUPLE_NEIGHBOURS}, one report")

    @property
    def guarantee_longitudinal(self) -> PrivacyGuarantee:
        """``epsilon_perm``-LDP: any number of reports from one memoized tuple."""
        return PrivacyGuarantee.pure(
            self.epsilon_perm,
            neighbouring=f"{TUPLE_NEIGHBOURS}, over any number of reports from its memo",
        )

    def memoize(
        self, values: Any, *, rng: RandomSource = None, memo: AllomfreeMemo | None = None
    ) -> AllomfreeMemo:
        """Sample each new user's attribute and memoize its value (see
        :meth:`LongitudinalProtocol.memoize`); with ``memo``, users keep their attribute
        and their permanent response for every (user, value) pair seen before.

        ``values`` is an ``(n, d)`` integer array; ``rng=None`` means secure randomness.
        """
        checked = check_tuples(values, self.domains)
        generator = resolve_rng(rng)
        n = checked.shape[0]
        if memo is None:
            attribute: IntArray = np.asarray(generator.integers(0, self.d, size=n), dtype=np.int64)
        else:
            self._check_memo(memo)
            if memo.n != n:
                raise DataError(
                    f"the memo holds {memo.n} users but {n} tuples were given; pass one tuple "
                    "per user, in the memo's order"
                )
            attribute = memo.attribute
        memos = tuple(
            protocol.memoize(
                checked[attribute == j, j],
                rng=generator,
                memo=None if memo is None else memo.memos[j],
            )
            for j, protocol in enumerate(self.protocols)
        )
        return AllomfreeMemo(self.fingerprint(), attribute, memos)

    def randomize(self, values: AllomfreeMemo | Any, *, rng: RandomSource = None) -> MultiReports:
        """One report per user from its memo (or, given tuples, from a fresh memo that
        is thrown away: see :meth:`LongitudinalProtocol.randomize`)."""
        generator = resolve_rng(rng)
        memo = (
            self._check_memo(values)
            if isinstance(values, AllomfreeMemo)
            else self.memoize(values, rng=generator)
        )
        parts = tuple(
            protocol.randomize(inner, rng=generator)
            for protocol, inner in zip(self.protocols, memo.memos, strict=True)
        )
        return MultiReports(self.name, self.fingerprint(), parts, memo.attribute.copy())

    def _check_memo(self, memo: object) -> AllomfreeMemo:
        if not isinstance(memo, AllomfreeMemo):
            raise DataError(f"expected an AllomfreeMemo, got {type(memo).__name__}")
        if memo.fingerprint != self.fingerprint():
            raise DataError(
                f"this memo was drawn by {memo.fingerprint}, not by {self.fingerprint()}"
            )
        return memo

    def channel(self, reports: int = 1) -> FloatArray:
        """``P[(attribute, y_1, …, y_T) | tuple]`` for ``T`` reports of one memo."""
        return sampled_channel(
            self.domains, [protocol.channel(reports) for protocol in self.protocols]
        )

    def __repr__(self) -> str:
        return (
            f"ALLOMFREE(domains={self.domains}, epsilon_perm={self.epsilon_perm:g}, "
            f"epsilon_1={self.epsilon_1:g})"
        )
