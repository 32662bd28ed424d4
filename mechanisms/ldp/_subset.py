"""Subset selection (k-subset mechanism)."""

from __future__ import annotations

import itertools
import math
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from privaudit.errors import ParameterError
from privaudit.mechanisms.ldp._engine import (
    Field,
    FloatArray,
    FrequencyOracle,
    IntArray,
    Reports,
    check_prior,
)
from privaudit.mechanisms.ldp._sampling import bernoulli, conditional_subsets
from privaudit.registry import mechanisms

__all__ = ["SubsetRounding", "SubsetSelection", "subset_parameters"]

SubsetRounding = Literal["optimal", "round", "ceil"]

_COUNT_CELLS = 1 << 24


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
    ``q* = [ωe^ε(ω − 1) + (k − ω)ω] / [(k − 1)(ωe^ε + k − ω)]``. A report takes
    ``⌈log2 C(k, ω)⌉`` bits.

    A report is the subset's members in ascending order (``uint16`` while
    ``k ≤ 2^16``). Both branches are sampled exactly uniformly by
    :func:`~privaudit.mechanisms.ldp._sampling.conditional_subsets` (its docstring
    has the argument), so every subset has exactly the probability the channel says.

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

    def fingerprint(self) -> str:
        return f"{super().fingerprint()}:omega={self.subset_size}"

    def public_params(self) -> dict[str, Any]:
        return {"subset_size": self.subset_size}

    def _support_probabilities(self) -> tuple[float, float]:
        return self._p, self._q

    def _randomize(self, values: IntArray, rng: np.random.Generator) -> dict[str, Any]:
        # With probability p the subset is {v} ∪ a uniform (ω−1)-subset of [k] ∖ {v},
        # otherwise a uniform ω-subset of [k] ∖ {v}: conditional_subsets samples each
        # branch exactly (see its docstring) and returns the rows sorted, so a report
        # is a set and carries nothing beyond it.
        include = bernoulli(rng, self._p, values.size)
        subsets = conditional_subsets(values, include, self.subset_size, self.k, rng)
        return {"subsets": subsets}

    def _statistics(self, reports: Reports) -> IntArray:
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
        return [Field("subsets", self.subset_size, 0, self.k - 1)]

    def bits_per_report(self) -> float:
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
