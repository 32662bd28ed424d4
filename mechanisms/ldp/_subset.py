"""Subset selection (k-subset mechanism), its two report forms and their validation.

A subset-selection report is a set of ω values of ``[k]``. On the wire it takes the
smaller of two forms, a deterministic function of ``(k, ω)`` (see
:func:`subset_report_form`):

* *positions*: the ω members in ascending order, ``⌈log2 k⌉`` bits each;
* *bitmap*: ``k`` bits with exactly ω set, in :func:`numpy.packbits` order (as unary
  encoding's reports), ``8⌈k/8⌉`` bits; the client builds it without listing the
  members and the server counts it with
  :func:`~privaudit.mechanisms.ldp._unary.column_bit_counts`.

Either way a report must *be* a set of exactly ω members: the validators here reject a
batch in which any report repeats a member, lists them out of order, or has more or
fewer than ω of them (a forged report with ω copies of one value would otherwise
count ω times for it).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from privaudit.errors import DataError, ParameterError
from privaudit.mechanisms.ldp._engine import (
    Field,
    FloatArray,
    FrequencyOracle,
    IntArray,
    Reports,
    check_prior,
)
from privaudit.mechanisms.ldp._sampling import (
    bernoulli,
    conditional_subset_bitmaps,
    conditional_subsets,
)
from privaudit.mechanisms.ldp._unary import column_bit_counts
from privaudit.registry import mechanisms

__all__ = [
    "ReportForm",
    "SubsetRounding",
    "SubsetSelection",
    "check_subset_bitmaps",
    "check_subset_positions",
    "subset_parameters",
    "subset_report_form",
]

SubsetRounding = Literal["optimal", "round", "ceil"]
ReportForm = Literal["bitmap", "positions"]

_COUNT_CELLS = 1 << 24
_CHECK_CELLS = 1 << 22  # report cells validated at once (bounded memory)


def subset_report_form(k: int, omega: int, *, position_bits: int | None = None) -> ReportForm:
    """The wire form of a report of ω members of ``[k]``: ``"bitmap"`` when its
    ``8⌈k/8⌉`` bits are fewer than the ``ω·position_bits`` of the positions form,
    ``"positions"`` otherwise (ties too).

    ``position_bits`` defaults to ``⌈log2 k⌉``, the bits of one member on the wire
    (the fewest that hold ``k − 1``); a protocol whose positions carry padding passes
    its own. At k = 1024, ε = 1 (ω = 275): 1024 bits against 2750, so the bitmap.
    """
    if position_bits is None:
        position_bits = max(1, (k - 1).bit_length())
    bitmap_bits = 8 * ((k + 7) // 8)
    return "bitmap" if bitmap_bits < omega * position_bits else "positions"


def _row_popcounts(bits: npt.NDArray[Any]) -> IntArray:
    """The number of bits set in each row of a ``(n, bytes)`` array of byte values."""
    n, n_bytes = bits.shape
    counts = np.empty(n, dtype=np.int64)
    chunk = max(1, _CHECK_CELLS // max(1, n_bytes))
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        part = np.ascontiguousarray(bits[start:stop], dtype=np.uint8)
        if n_bytes % 8 == 0:
            part = part.view(np.uint64)  # eight times fewer popcounts
        counts[start:stop] = np.bitwise_count(part).sum(axis=1, dtype=np.int64)
    return counts


def _first(bad: Any) -> int:
    """Index of the first true entry of a boolean array."""
    return int(np.flatnonzero(bad)[0])


def check_subset_bitmaps(
    bits: npt.NDArray[Any],
    sizes: IntArray,
    widths: IntArray,
    *,
    blocks: IntArray | None = None,
) -> None:
    """Check bitmap-form reports: row ``i`` must set exactly ``sizes[i]`` bits, all at
    positions below ``widths[i]`` (the padding bits after them are 0).

    ``bits`` holds byte values in ``[0, 255]`` (the engine checks the range first);
    ``blocks``, when given, names each report's block in the messages (MSS).

    Raises
    ------
    DataError
        Naming the first bad report, what it holds and what was expected.
    """
    n, n_bytes = bits.shape
    if n == 0:
        return

    def report(i: int) -> str:
        return f"report {i}" if blocks is None else f"report {i} (block {int(blocks[i])})"

    counts = _row_popcounts(bits)
    bad = counts != sizes
    if bad.any():
        i = _first(bad)
        raise DataError(
            f"{report(i)} sets {int(counts[i])} bits of its subset bitmap; a report "
            f"is a set of exactly ω = {int(sizes[i])} values, one bit each"
        )
    for width in np.unique(widths).tolist():
        if width >= 8 * n_bytes:
            continue
        rows = np.flatnonzero(widths == width)
        first_byte = width // 8
        beyond = np.packbits(np.arange(8 * (n_bytes - first_byte)) >= width - 8 * first_byte)
        tail = np.asarray(bits[rows, first_byte:], dtype=np.uint8) & beyond
        bad = tail.any(axis=1)
        if bad.any():
            i = int(rows[_first(bad)])
            raise DataError(
                f"{report(i)} sets a bit at or past position {width} of its subset "
                f"bitmap; only positions 0 .. {width - 1} are values, the padding bits "
                "must be 0"
            )


def check_subset_positions(rows: npt.NDArray[Any]) -> None:
    """Check positions-form reports: each row strictly ascending (so its members are
    distinct and in the canonical order); the engine has checked the range.

    Raises
    ------
    DataError
        Naming the first bad report and its members.
    """
    n, width = rows.shape
    if n == 0 or width < 2:
        return
    chunk = max(1, _CHECK_CELLS // width)
    for start in range(0, n, chunk):
        part = rows[start : start + chunk]
        bad = (part[:, 1:] <= part[:, :-1]).any(axis=1)  # no subtraction: rows may be unsigned
        if bad.any():
            i = start + _first(bad)
            shown = rows[i].tolist()
            raise DataError(
                f"report {i} lists {shown[:8]}{' …' if width > 8 else ''}: the members "
                "of a subset must be distinct and in ascending order"
            )


def subset_parameters(
    k: int, epsilon: float, subset_size: int | SubsetRounding
) -> tuple[int, float, float]:
    """``(ω, p*, q*)`` of subset selection on a domain of ``k`` values.

    ``subset_size`` is an explicit ω, or a rule: ``"optimal"`` (the integer that
    minimises the approximate variance), ``"round"`` (``max(1, rint(k/(e^ε+1)))``, as
    multi-freq-ldpy) or ``"ceil"`` (``ceil(k/(e^ε+1))``, as the PGR reference code).
    """
    e = math.exp(epsilon)

    def probabilities(omega: int) -> tuple[float, float]:
        p = omega * e / (omega * e + k - omega)
        q = (omega * e * (omega - 1) + (k - omega) * omega) / ((k - 1) * (omega * e + k - omega))
        return p, q

    if isinstance(subset_size, str):
        if subset_size == "round":
            omega = max(1, int(np.rint(k / (e + 1))))
        elif subset_size == "ceil":
            omega = max(1, math.ceil(k / (e + 1)))
        elif subset_size == "optimal":
            sizes = np.arange(1, k)
            p = sizes * e / (sizes * e + k - sizes)
            q = (sizes * e * (sizes - 1) + (k - sizes) * sizes) / (
                (k - 1) * (sizes * e + k - sizes)
            )
            omega = int(sizes[np.argmin(q * (1 - q) / (p - q) ** 2)])
        else:
            raise ParameterError(
                "subset_size must be an int or one of 'optimal', 'round', 'ceil'; "
                f"got {subset_size!r}"
            )
    elif isinstance(subset_size, int | np.integer) and not isinstance(subset_size, bool):
        omega = int(subset_size)
    else:
        raise ParameterError(f"subset_size must be an int or a rounding rule; got {subset_size!r}")
    omega = min(omega, k - 1)
    if omega < 1:
        raise ParameterError(f"subset size must be in [1, k-1] = [1, {k - 1}]; got {omega}")
    p_star, q_star = probabilities(omega)
    return omega, p_star, q_star


@mechanisms.register("ss")
class SubsetSelection(FrequencyOracle):
    """Subset selection [WHW16]_ [YB18]_: each user reports a set of ``ω`` values that
    contains its own with probability ``p = ωe^ε/(ωe^ε + k − ω)``.

    Every ω-subset containing the value is ``e^ε`` times as likely as any subset that
    does not, so the protocol is ε-LDP, tightly. Pure with ``p* = p`` and
    ``q* = [ωe^ε(ω − 1) + (k − ω)ω] / [(k − 1)(ωe^ε + k − ω)]``. A report carries
    ``⌈log2 C(k, ω)⌉`` bits of information (:meth:`bits_per_report`); the wire spends
    :meth:`wire_bits_per_report`, the smaller of the two forms below.

    A report takes the form :attr:`report_form` = :func:`subset_report_form` ``(k, ω)``
    (part of the fingerprint): ``"positions"``, field ``subsets``, the members in
    ascending order (``uint16`` while ``k ≤ 2^16``); or ``"bitmap"``, field ``bits``,
    ``⌈k/8⌉`` bytes in :func:`numpy.packbits` order with exactly ω bits set. Both
    branches are sampled exactly uniformly by
    :func:`~privaudit.mechanisms.ldp._sampling.conditional_subsets` and
    :func:`~privaudit.mechanisms.ldp._sampling.conditional_subset_bitmaps` (their
    docstrings have the argument), so every subset has exactly the probability the
    channel says. :meth:`validate_reports` accepts only reports that are sets of exactly
    ω values, in the canonical encoding of the form.

    Parameters
    ----------
    subset_size
        ω, or how to choose it (see :func:`subset_parameters`); peers disagree.

    References
    ----------
    .. [WHW16] S. Wang, L. Huang, P. Wang, Y. Nie, H. Xu, W. Yang, X.-Y. Li, C. Qiao,
       "Mutual information optimally local private discrete distribution estimation",
       arXiv:1607.08025, 2016.
    .. [YB18] M. Ye and A. Barg, "Optimal schemes for discrete distribution estimation
       under locally differential privacy", IEEE Trans. Inf. Theory 64(8), 2018.
    """

    name = "ss"

    def __init__(
        self, *, k: int, epsilon: float, subset_size: int | SubsetRounding = "optimal"
    ) -> None:
        super().__init__(k=k, epsilon=epsilon)
        self.subset_size_rule = subset_size
        self.subset_size, self._p, self._q = subset_parameters(self.k, self.epsilon, subset_size)
        self.report_form: ReportForm = subset_report_form(self.k, self.subset_size)

    def fingerprint(self) -> str:
        return f"{super().fingerprint()}:omega={self.subset_size}:form={self.report_form}"

    def public_params(self) -> dict[str, Any]:
        return {"subset_size": self.subset_size}

    def _support_probabilities(self) -> tuple[float, float]:
        return self._p, self._q

    def _randomize(self, values: IntArray, rng: np.random.Generator) -> dict[str, Any]:
        field = "bits" if self.report_form == "bitmap" else "subsets"
        return {field: self._subsets(values, rng, self.report_form)}

    def _subsets(
        self, values: IntArray, rng: np.random.Generator, form: ReportForm
    ) -> npt.NDArray[Any]:
        """The randomized subsets of ``values`` in ``form`` (also what MSS calls per
        block, in its own form): ``(n, ω)`` sorted members, or ``(n, ⌈k/8⌉)`` bitmaps."""
        # With probability p the subset is {v} ∪ a uniform (ω−1)-subset of [k] ∖ {v},
        # otherwise a uniform ω-subset of [k] ∖ {v}: both samplers draw each branch
        # exactly (see their docstrings), as sorted rows or as bitmaps, so a report is
        # a set and carries nothing beyond it.
        include = bernoulli(rng, self._p, values.size)
        if form == "bitmap":
            return conditional_subset_bitmaps(values, include, self.subset_size, self.k, rng)
        return conditional_subsets(values, include, self.subset_size, self.k, rng)

    def validate_reports(self, reports: Reports) -> Reports:
        """Check a batch (see :meth:`FrequencyOracle.validate_reports`), and that every
        report is a set of exactly ω values: positions strictly ascending, or a bitmap
        with exactly ω bits set and its padding bits 0.

        Raises
        ------
        DataError
            Naming the first bad report and what is wrong with it.
        """
        reports = super().validate_reports(reports)
        if self.report_form == "bitmap":
            n = reports.n
            check_subset_bitmaps(
                reports.arrays["bits"],
                np.full(n, self.subset_size, dtype=np.int64),
                np.full(n, self.k, dtype=np.int64),
            )
        else:
            check_subset_positions(reports.arrays["subsets"])
        return reports

    def _statistics(self, reports: Reports) -> IntArray:
        if self.report_form == "bitmap":
            packed = reports.arrays["bits"].astype(np.uint8, copy=False)  # validated: 0..255
            return column_bit_counts(packed, self.k)
        subsets = reports.arrays["subsets"]
        counts = np.zeros(self.k, dtype=np.int64)
        # bincount widens its input to intp: bound that copy to ~16 M entries.
        chunk = max(1, _COUNT_CELLS // max(1, subsets.shape[1]))
        for start in range(0, subsets.shape[0], chunk):
            counts += np.bincount(subsets[start : start + chunk].ravel(), minlength=self.k)
        return counts

    def _support_counts(self, statistics: IntArray, n: int) -> FloatArray:
        return statistics.astype(float)

    def report_schema(self) -> list[Field]:
        if self.report_form == "bitmap":
            return [Field("bits", (self.k + 7) // 8, 0, 255)]
        return [Field("subsets", self.subset_size, 0, self.k - 1)]

    def bits_per_report(self) -> float:
        """The information content of a report, ``⌈log2 C(k, ω)⌉`` bits: what an
        optimal code (the subset's rank among the ``C(k, ω)``) would take. This is the
        size MSS's moduli search and the issue's "bits ≤ 80% of SS" target compare;
        :meth:`wire_bits_per_report` is what the wire format spends."""
        log_binomial = (
            math.lgamma(self.k + 1)
            - math.lgamma(self.subset_size + 1)
            - math.lgamma(self.k - self.subset_size + 1)
        ) / math.log(2)
        return float(math.ceil(log_binomial - 1e-9))

    def reconstruction_success(self, prior: npt.ArrayLike | None = None) -> float:
        """The attacker guesses uniformly within the reported subset: ``p/ω``."""
        check_prior(prior, self.k)  # validated; this attacker's success does not depend on it
        return self._p / self.subset_size

    def channel(self) -> FloatArray:
        """``P[report = Z | value = v]`` over all ω-subsets ``Z``, in the order of
        :func:`itertools.combinations` (small ``k`` only)."""
        subsets = list(itertools.combinations(range(self.k), self.subset_size))
        if len(subsets) > 100_000:
            raise ParameterError("too many subsets to enumerate the channel")
        with_v = math.comb(self.k - 1, self.subset_size - 1)
        without_v = math.comb(self.k - 1, self.subset_size)
        matrix = np.empty((self.k, len(subsets)))
        for column, subset in enumerate(subsets):
            for v in range(self.k):
                matrix[v, column] = self._p / with_v if v in subset else (1 - self._p) / without_v
        return matrix
