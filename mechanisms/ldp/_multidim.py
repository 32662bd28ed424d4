"""Multidimensional frequency estimation: SPL, SMP and RS+FD.

Each user holds a tuple ``x = (x_1, …, x_d)`` with ``x_j ∈ [k_j]``, and the server
estimates the frequencies of every attribute. Three ways to spend one budget ε:

* :class:`SPL` (*split*): every attribute is reported with ε/d (sequential
  composition).
* :class:`SMP` (*sample*): each user samples one attribute uniformly, reveals which, and
  reports it with the whole ε [WXY19]_; about n/d users describe each attribute.
* :class:`RSFD` (*random sampling plus fake data*) [ACBX21]_: each user samples one
  attribute and hides which: it is reported with an amplified budget ε′, the others
  with fake values.

Reports are a :class:`MultiReports`: one engine :class:`Reports` batch per attribute and,
where users reveal the attribute they sampled, that attribute. Each attribute is
estimated by one engine :class:`FrequencyOracle` (for RS+FD, a
:class:`PureProtocolView` with the protocol's own support probabilities), so
estimation, post-processing, variance and streaming aggregation are the engine's.

The neighbour relation of the guarantees is *any two tuples of one user*: the local
model with the whole tuple as the user's input.

References
----------
.. [WXY19] N. Wang, X. Xiao, Y. Yang, J. Zhao, S. C. Hui, H. Shin, J. Shin, G. Yu,
   "Collecting and Analyzing Multidimensional Data with Local Differential Privacy",
   ICDE 2019.
.. [ACBX21] H. H. Arcolezi, J.-F. Couchot, B. Al Bouna, X. Xiao, "Random Sampling Plus
   Fake Data: Multidimensional Frequency Estimates With Local Differential Privacy",
   CIKM 2021.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt

from privaudit.errors import DataError, NotFoundError, ParameterError
from privaudit.guarantees import PrivacyGuarantee
from privaudit.mechanisms.ldp._engine import (
    Aggregator,
    Field,
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
from privaudit.mechanisms.ldp._sampling import bernoulli
from privaudit.mechanisms.ldp._unary import OUE, SUE
from privaudit.randomness import RandomSource, resolve_rng
from privaudit.registry import mechanisms

__all__ = [
    "RSFD",
    "SMP",
    "SPL",
    "TUPLE_NEIGHBOURS",
    "MultiAggregator",
    "MultiReports",
    "MultidimensionalProtocol",
    "PureProtocolView",
    "check_domains",
    "check_tuples",
    "mean_inverse_binomial",
]

TUPLE_NEIGHBOURS = "any two tuples of attribute values of one user (local model)"

_CHUNK_CELLS = 1 << 24
_MAX_CHANNEL_CELLS = 1 << 22

RSFDVariant = Literal["grr", "ue-z", "ue-r"]
UnaryKind = Literal["oue", "sue"]


# --- validation ------------------------------------------------------------------------


def check_domains(domains: object) -> tuple[int, ...]:
    """Return the attribute domain sizes as a tuple of ints, each >= 2."""
    if isinstance(domains, str | bytes) or not isinstance(domains, Sequence | np.ndarray):
        raise ParameterError(
            f"domains must be a tuple of attribute domain sizes, e.g. (4, 10); got {domains!r}"
        )
    sizes = tuple(check_domain(k, name=f"domains[{j}]") for j, k in enumerate(domains))
    if not sizes:
        raise ParameterError("domains must name at least one attribute; got an empty tuple")
    return sizes


def check_tuples(values: object, domains: tuple[int, ...]) -> IntArray:
    """Return users' tuples as an ``(n, d)`` int64 array, checking attribute ``j`` of
    every row lies in ``[0, domains[j])``."""
    try:
        array = np.asarray(values)
    except ValueError as error:  # ragged rows
        raise DataError(
            f"values must be an (n, {len(domains)}) array of integers: {error}"
        ) from None
    if array.ndim != 2 or array.shape[1] != len(domains):
        raise DataError(
            f"values must be an (n, d) array with one column per attribute (d={len(domains)}); "
            f"got shape {array.shape}"
        )
    columns = []
    for j, k in enumerate(domains):
        try:
            columns.append(check_values(array[:, j], k))
        except DataError as error:
            raise DataError(f"attribute {j}: {error.message}", attribute=j) from None
    if not columns[0].size:
        return np.empty((0, len(domains)), dtype=np.int64)
    return np.column_stack(columns).astype(np.int64, copy=False)


def mean_inverse_binomial(n: int, probability: float) -> float:
    """``E[1/X | X >= 1]`` for ``X ~ Binomial(n, probability)``.

    Summed over ``±40`` standard deviations around the mean (the rest has negligible
    mass), from pmf ratios, in float64.
    """
    if n <= 0:
        raise ParameterError(f"n must be > 0; got {n}")
    if probability >= 1.0:
        return 1.0 / n
    mean = n * probability
    sd = math.sqrt(n * probability * (1 - probability))
    low = max(1, math.floor(mean - 40 * sd - 10))
    high = min(n, math.ceil(mean + 40 * sd + 10))
    m = np.arange(low, high + 1, dtype=float)
    # log pmf(m+1) − log pmf(m) = log((n − m)/(m + 1)) + log(p/(1 − p))
    steps = np.log((n - m[:-1]) / (m[:-1] + 1)) + math.log(probability / (1 - probability))
    log_pmf = np.concatenate([[0.0], np.cumsum(steps)])
    weights = np.exp(log_pmf - log_pmf.max())
    return float(np.sum(weights / m) / np.sum(weights))


# --- estimator views and reports -------------------------------------------------------


class PureProtocolView(FrequencyOracle):
    """The estimating half of a pure protocol whose reports another class produces.

    Reports keep the layout of ``layout`` (GRR values or unary bits; its sufficient
    statistics are reused), but support a value with the probabilities
    ``(p_star, q_star)`` of the owning protocol. Randomizing is the owner's job, so
    :meth:`randomize` is not available here. Used for each attribute of RS+FD and for
    one report of a longitudinal protocol.
    """

    name = "view"

    def __init__(
        self,
        *,
        layout: FrequencyOracle,
        p_star: float,
        q_star: float,
        fingerprint: str,
        guarantee: PrivacyGuarantee,
    ) -> None:
        if guarantee.epsilon is None:  # pragma: no cover - views are built for pure DP
            raise ParameterError("a pure protocol view needs an epsilon guarantee")
        super().__init__(k=layout.k, epsilon=guarantee.epsilon)
        if not 0.0 <= q_star < p_star <= 1.0:
            raise ParameterError(f"need 0 <= q* < p* <= 1; got p*={p_star!r}, q*={q_star!r}")
        self._layout = layout
        self._p = p_star
        self._q = q_star
        self._fingerprint = fingerprint
        self._guarantee = guarantee

    @property
    def guarantee(self) -> PrivacyGuarantee:
        return self._guarantee

    def fingerprint(self) -> str:
        return self._fingerprint

    def _support_probabilities(self) -> tuple[float, float]:
        return self._p, self._q

    def _randomize(self, values: IntArray, rng: np.random.Generator) -> dict[str, Any]:
        raise NotImplementedError(
            f"{self._fingerprint} reports are made by their protocol, not by its estimator view"
        )

    def _statistics(self, reports: Reports) -> IntArray:
        return self._layout._statistics(reports)

    def _statistics_size(self) -> int:
        return self._layout._statistics_size()

    def report_schema(self) -> list[Field]:
        return self._layout.report_schema()

    def _support_counts(self, statistics: IntArray, n: int) -> FloatArray:
        return self._layout._support_counts(statistics, n)

    def bits_per_report(self) -> float:
        return self._layout.bits_per_report()

    def __repr__(self) -> str:
        return f"PureProtocolView({self._fingerprint}, p*={self._p:.6g}, q*={self._q:.6g})"


@dataclass(frozen=True)
class MultiReports:
    """A batch of multidimensional reports.

    Attributes
    ----------
    protocol, fingerprint
        Which protocol made the batch, and with which parameters.
    parts
        One engine :class:`Reports` per attribute. Where every user reports every
        attribute (SPL, RS+FD) each part has one row per user; where users sample one
        attribute (SMP, ALLOMFREE) part ``j`` holds the reports of the users with
        ``attribute == j``, in user order.
    attribute
        The attribute each user reported, where it is revealed (SMP, ALLOMFREE);
        ``None`` otherwise (SPL, and RS+FD, whose sampled attribute stays hidden).
    """

    protocol: str
    fingerprint: str
    parts: tuple[Reports, ...]
    attribute: IntArray | None = None

    @property
    def n(self) -> int:
        """Number of users."""
        if self.attribute is not None:
            return int(self.attribute.size)
        return self.parts[0].n if self.parts else 0

    def __len__(self) -> int:
        return self.n


class MultiAggregator:
    """Streaming aggregation of a multidimensional protocol: one engine
    :class:`Aggregator` per attribute, so memory does not grow with the number of
    reports and shards :meth:`merge`."""

    def __init__(self, protocol: MultidimensionalProtocol) -> None:
        self.protocol = protocol
        self.parts = tuple(Aggregator(part) for part in protocol._parts)
        self.n = 0

    @property
    def counts(self) -> tuple[int, ...]:
        """Reports received so far for each attribute."""
        return tuple(part.n for part in self.parts)

    def update(self, reports: MultiReports) -> MultiAggregator:
        """Add a batch of reports; returns ``self``."""
        self.protocol._check_reports(reports)
        for aggregator, part in zip(self.parts, reports.parts, strict=True):
            aggregator.update(part)
        self.n += reports.n
        return self

    def merge(self, other: MultiAggregator) -> MultiAggregator:
        """Add another aggregator's reports (same protocol and parameters); returns ``self``."""
        if other.protocol.fingerprint() != self.protocol.fingerprint():
            raise DataError(
                f"cannot merge {other.protocol.fingerprint()} into {self.protocol.fingerprint()}"
            )
        for mine, theirs in zip(self.parts, other.parts, strict=True):
            mine.merge(theirs)
        self.n += other.n
        return self

    def estimate(self, *, postprocess: PostProcess = None) -> list[FloatArray]:
        """One frequency estimate per attribute from everything added so far."""
        for j, part in enumerate(self.parts):
            if part.n == 0:
                raise DataError(f"no report of attribute {j} yet; cannot estimate it")
        return [part.estimate(postprocess=postprocess) for part in self.parts]


# --- the common machinery --------------------------------------------------------------


class MultidimensionalProtocol(ABC):
    """Base class of protocols over a tuple of attributes.

    Subclasses set :attr:`domains`, :attr:`d` and ``_parts`` (one engine oracle per
    attribute that estimates that attribute's reports) and say whether users sample
    one attribute openly (``_sampled``).
    """

    name: ClassVar[str] = ""
    _sampled: ClassVar[bool] = False
    domains: tuple[int, ...]
    d: int
    _parts: tuple[FrequencyOracle, ...]

    @abstractmethod
    def fingerprint(self) -> str:
        """What reports must agree on to be aggregated together."""

    @abstractmethod
    def randomize(self, values: Any, *, rng: RandomSource = None) -> MultiReports:
        """Randomize each user's tuple (an ``(n, d)`` integer array)."""

    @property
    @abstractmethod
    def guarantee(self) -> PrivacyGuarantee:
        """The guarantee for one report of one user, neighbours being any two tuples."""

    @abstractmethod
    def channel(self) -> FloatArray:
        """``P[report | tuple]`` with tuples in :func:`itertools.product` order."""

    def _check_reports(self, reports: object) -> MultiReports:
        if not isinstance(reports, MultiReports):
            raise DataError(f"expected a MultiReports batch, got {type(reports).__name__}")
        if reports.fingerprint != self.fingerprint():
            raise DataError(
                f"these reports were made by {reports.fingerprint}, not by {self.fingerprint()}"
            )
        if len(reports.parts) != self.d:
            raise DataError(
                f"expected {self.d} parts (one per attribute); got {len(reports.parts)}"
            )
        if self._sampled:
            attribute = reports.attribute
            if (
                not isinstance(attribute, np.ndarray)
                or attribute.ndim != 1
                or not np.issubdtype(attribute.dtype, np.integer)
                or (attribute.size and (attribute.min() < 0 or attribute.max() >= self.d))
            ):
                raise DataError(
                    f"these reports need each user's sampled attribute: integers in [0, {self.d})"
                )
            counts = np.bincount(attribute, minlength=self.d)
            if counts.size != self.d or any(
                int(c) != part.n for c, part in zip(counts, reports.parts, strict=True)
            ):
                raise DataError("the parts do not match the users' sampled attributes")
        return reports

    def estimate(
        self, reports: MultiReports, *, postprocess: PostProcess = None
    ) -> list[FloatArray]:
        """Estimate the frequencies of every attribute: a list of ``d`` arrays.

        Where users sample one attribute, attribute ``j`` is estimated from the
        ``n_j`` users who reported it (the actual count, not ``n/d``).

        Parameters
        ----------
        postprocess
            As :meth:`FrequencyOracle.estimate`: ``None`` (unbiased), ``"clip"`` or
            ``"simplex"`` (biased), applied to each attribute.
        """
        checked = self._check_reports(reports)
        estimates = []
        for j, (oracle, part) in enumerate(zip(self._parts, checked.parts, strict=True)):
            if part.n == 0:
                raise DataError(f"no user reported attribute {j}; cannot estimate it")
            estimates.append(oracle.estimate(part, postprocess=postprocess))
        return estimates

    def aggregator(self) -> MultiAggregator:
        """A streaming aggregator: bounded memory, mergeable across shards."""
        return MultiAggregator(self)

    def variance(self, n: int, f: object = 0.0) -> list[Any]:
        """The variance of the unbiased estimate of each attribute, over a fixed dataset
        of ``n`` users.

        Parameters
        ----------
        f
            The true frequency of the value: one number for every attribute, or a
            sequence of ``d`` entries (attribute ``j``'s frequency, or an array of its
            frequencies). ``f=0`` gives the usual approximate variance.

        Returns
        -------
        list
            ``d`` entries, each a float or an array shaped like its ``f``.

        Notes
        -----
        Where users sample an attribute, the variance covers the sampling: with
        ``n_j ~ Bin(n, 1/d)`` users on attribute ``j`` (conditioned on ``n_j >= 1``)
        and ``A(f)`` the single-user variance of the attribute's oracle,
        ``Var = E[1/n_j] A(f) + f(1 − f)(n E[1/n_j] − 1)/(n − 1)``; the second term is
        the error of the sample's own frequency (hypergeometric). At ``f = 0`` it is
        ``E[1/n_j] A(0) ≈ d A(0)/n``, the published form.
        """
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n <= 0:
            raise ParameterError(f"n must be a positive integer; got {n!r}")
        per_attribute = self._per_attribute(f)
        result: list[Any] = []
        for oracle, frequency in zip(self._parts, per_attribute, strict=True):
            f_array = np.asarray(frequency, dtype=float)
            if self._sampled:
                inverse = mean_inverse_binomial(int(n), 1.0 / self.d)
                single = np.asarray(oracle.variance(1, f_array), dtype=float)
                # The sample's own frequency: hypergeometric, zero when n = 1.
                spread = (n * inverse - 1) / (n - 1) if n > 1 else 0.0
                value = inverse * single + f_array * (1 - f_array) * spread
            else:
                value = np.asarray(oracle.variance(int(n), f_array), dtype=float)
            result.append(float(value) if value.ndim == 0 else value)
        return result

    def mse(self, n: int, f: Sequence[npt.ArrayLike] | None = None) -> list[float]:
        """Per attribute, the mean over its domain of the estimate's variance (its MSE).

        ``f`` is ``None`` (the f → 0 approximation) or ``d`` frequency arrays."""
        if f is None:
            return [float(v) for v in self.variance(n)]
        frequencies = self._per_attribute(f)
        for j, (k, freq) in enumerate(zip(self.domains, frequencies, strict=True)):
            if np.shape(freq) != (k,):
                raise DataError(f"f[{j}] must have one frequency per value of attribute {j} ({k})")
        return [float(np.mean(v)) for v in self.variance(n, frequencies)]

    def _per_attribute(self, f: object) -> list[Any]:
        if isinstance(f, list | tuple) or (isinstance(f, np.ndarray) and f.ndim == 1):
            items = list(f)
            if len(items) != self.d:
                raise DataError(f"f must be one number or {self.d} entries (one per attribute)")
            return items
        if isinstance(f, int | float | np.number) or (isinstance(f, np.ndarray) and f.ndim == 0):
            return [f] * self.d
        raise DataError(f"f must be one number or {self.d} entries (one per attribute)")

    def bits_per_report(self) -> float:
        """Bits of one user's report in a compact encoding (for sampled designs, the
        attribute index plus the largest attribute report)."""
        sizes = [oracle.bits_per_report() for oracle in self._parts]
        if self._sampled:
            return float(math.ceil(math.log2(self.d)) + max(sizes)) if self.d > 1 else sizes[0]
        return float(sum(sizes))


def make_base_oracle(protocol: str, k: int, epsilon: float) -> FrequencyOracle:
    """A registered pure frequency oracle by name, or ``"adp"``: GRR if its approximate
    variance is at most OUE's (``k < 3e^ε + 2``), else OUE."""
    if protocol == "adp":
        grr, oue = GRR(k=k, epsilon=epsilon), OUE(k=k, epsilon=epsilon)
        return grr if grr.variance(1) <= oue.variance(1) else oue
    try:
        cls = mechanisms.get(protocol) if isinstance(protocol, str) else None
    except NotFoundError:
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, FrequencyOracle)):
        allowed = sorted(
            name
            for name in mechanisms.names()
            if isinstance(mechanisms.get(name), type)
            and issubclass(mechanisms.get(name), FrequencyOracle)
        )
        raise ParameterError(
            f"protocol must be 'adp' or a registered frequency oracle ({', '.join(allowed)}); "
            f"got {protocol!r}"
        )
    oracle: FrequencyOracle = cls(k=k, epsilon=epsilon)
    return oracle


def _check_size(rows: int, columns: int) -> None:
    if rows * columns > _MAX_CHANNEL_CELLS:
        raise ParameterError(
            f"the channel would have {rows} x {columns} cells; use smaller domains to enumerate it"
        )


def _kron(matrices: Sequence[FloatArray]) -> FloatArray:
    out: FloatArray = np.ones((1, 1))
    for matrix in matrices:
        out = np.asarray(np.kron(out, matrix), dtype=np.float64)
    return out


def sampled_channel(domains: tuple[int, ...], blocks: Sequence[FloatArray]) -> FloatArray:
    """Channel of "sample an attribute uniformly, reveal it, report it with
    ``blocks[j]``": columns are the outputs ``(0, y)`` of attribute 0, then ``(1, y)``,
    and so on; rows are tuples in :func:`itertools.product` order."""
    d = len(domains)
    _check_size(math.prod(domains), sum(block.shape[1] for block in blocks))
    columns = []
    for j, block in enumerate(blocks):
        factors = [block if i == j else np.ones((k, 1)) for i, k in enumerate(domains)]
        columns.append(_kron(factors) / d)
    return np.hstack(columns)


def _unary_outputs(k: int) -> npt.NDArray[np.bool_]:
    return np.array(list(itertools.product([0, 1], repeat=k)), dtype=bool)


# --- SPL and SMP -----------------------------------------------------------------------


class _PerAttributeOracles(MultidimensionalProtocol):
    """SPL and SMP: one engine oracle per attribute, ε-LDP for the whole tuple (SPL by
    composition of d reports at ε/d, SMP because the sampled attribute is public)."""

    epsilon: float

    def fingerprint(self) -> str:
        parts = ",".join(oracle.fingerprint() for oracle in self._parts)
        return f"{self.name}:domains={self.domains}:epsilon={self.epsilon!r}:[{parts}]"

    @property
    def guarantee(self) -> PrivacyGuarantee:
        """ε-LDP for the tuple."""
        return PrivacyGuarantee.pure(self.epsilon, neighbouring=TUPLE_NEIGHBOURS)


@mechanisms.register("spl")
class SPL(_PerAttributeOracles):
    """Budget splitting: every attribute is reported with its own oracle at ε/d.

    ε-LDP for any two tuples of one user, by sequential composition (d reports of
    ε/d each); each attribute is a pure protocol over all ``n`` users.

    Parameters
    ----------
    domains
        Domain size of each attribute.
    epsilon
        The budget of the whole tuple.
    protocol
        The oracle of every attribute: a registered frequency oracle (``"grr"``,
        ``"oue"``, ``"sue"``, ``"ss"``, ...) or ``"adp"`` (GRR or OUE per attribute,
        whichever has the smaller approximate variance).

    Examples
    --------
    >>> from privaudit import simulation_generator
    >>> from privaudit.mechanisms.ldp import SPL
    >>> rng = simulation_generator(0)
    >>> spl = SPL(domains=(2, 3), epsilon=4.0)
    >>> data = rng.integers(0, 2, size=(20_000, 2))
    >>> estimates = spl.estimate(spl.randomize(data, rng=rng), postprocess="clip")
    >>> [f.round(1).tolist() for f in estimates]
    [[0.5, 0.5], [0.5, 0.5, 0.0]]
    """

    name = "spl"

    def __init__(self, *, domains: Sequence[int], epsilon: float, protocol: str = "grr") -> None:
        self.domains = check_domains(domains)
        self.d = len(self.domains)
        self.epsilon = check_epsilon(epsilon)
        self.protocol = protocol
        share = self.epsilon / self.d
        self._parts = tuple(make_base_oracle(protocol, k, share) for k in self.domains)

    def randomize(self, values: Any, *, rng: RandomSource = None) -> MultiReports:
        """Report every attribute of each user's tuple (``(n, d)`` integers).

        ``rng=None`` (default) draws from the cryptographically secure release source."""
        checked = check_tuples(values, self.domains)
        generator = resolve_rng(rng)
        parts = tuple(
            oracle.randomize(checked[:, j], rng=generator) for j, oracle in enumerate(self._parts)
        )
        return MultiReports(self.name, self.fingerprint(), parts)

    def channel(self) -> FloatArray:
        """``P[reports | tuple]``: the Kronecker product of the attributes' channels."""
        blocks = [oracle.channel() for oracle in self._parts]  # type: ignore[attr-defined]
        _check_size(math.prod(self.domains), math.prod(b.shape[1] for b in blocks))
        return _kron(blocks)

    def __repr__(self) -> str:
        return f"SPL(domains={self.domains}, epsilon={self.epsilon:g}, protocol={self.protocol!r})"


@mechanisms.register("smp")
class SMP(_PerAttributeOracles):
    """Sampling [WXY19]_: each user samples one attribute uniformly, reveals it, and
    reports it with the whole ε.

    ε-LDP for any two tuples of one user: the revealed attribute does not depend on
    the data, and the report is one ε-LDP report. Attribute ``j`` is estimated from the
    ``n_j`` users who sampled it; :meth:`variance` includes the sampling error.

    Parameters
    ----------
    domains, epsilon, protocol
        As :class:`SPL`, but each attribute's oracle runs at the whole ε.
    """

    name = "smp"
    _sampled = True

    def __init__(self, *, domains: Sequence[int], epsilon: float, protocol: str = "grr") -> None:
        self.domains = check_domains(domains)
        self.d = len(self.domains)
        self.epsilon = check_epsilon(epsilon)
        self.protocol = protocol
        self._parts = tuple(make_base_oracle(protocol, k, self.epsilon) for k in self.domains)

    def randomize(self, values: Any, *, rng: RandomSource = None) -> MultiReports:
        """Sample an attribute per user and report it (``(n, d)`` integers in).

        ``rng=None`` (default) draws from the cryptographically secure release source."""
        checked = check_tuples(values, self.domains)
        generator = resolve_rng(rng)
        attribute: IntArray = np.asarray(
            generator.integers(0, self.d, size=checked.shape[0]), dtype=np.int64
        )
        parts = tuple(
            oracle.randomize(checked[attribute == j, j], rng=generator)
            for j, oracle in enumerate(self._parts)
        )
        return MultiReports(self.name, self.fingerprint(), parts, attribute)

    def channel(self) -> FloatArray:
        """``P[(attribute, report) | tuple]``, attribute 0's outputs first."""
        blocks = [oracle.channel() for oracle in self._parts]  # type: ignore[attr-defined]
        return sampled_channel(self.domains, blocks)

    def __repr__(self) -> str:
        return f"SMP(domains={self.domains}, epsilon={self.epsilon:g}, protocol={self.protocol!r})"


# --- RS+FD -----------------------------------------------------------------------------


@mechanisms.register("rsfd")
class RSFD(MultidimensionalProtocol):
    """Random sampling plus fake data [ACBX21]_.

    Each user samples one attribute ``j`` uniformly and keeps it secret; attribute
    ``j`` is randomized with the sampled budget ``ε′`` and every other attribute gets a
    fake report: a uniform value (``"grr"``), a unary encoding of the all-zero vector
    (``"ue-z"``) or of a uniform one-hot vector (``"ue-r"``), randomized alike.
    With ``p, q`` the base oracle's probabilities at ``ε′``, the count ``C`` of reports
    of attribute ``j`` supporting ``v`` has per-user probabilities

    * ``"grr"``: ``σ₀ = q/d + (d − 1)/(d k)``,
    * ``"ue-z"``: ``σ₀ = q``,
    * ``"ue-r"``: ``σ₀ = [q + (d − 1)(p + (k − 1)q)/k]/d``,

    and ``σ₁ = σ₀ + (p − q)/d`` for the users whose value is ``v``. So each attribute is
    a pure protocol with ``(p*, q*) = (σ₁, σ₀)``: ``f̂ = (C/n − σ₀)/(σ₁ − σ₀)`` (the
    published estimators, rearranged) with the engine's exact fixed-data variance.
    The published variance ``d²σ(1 − σ)/(n(p − q)²)``, ``σ = σ₀ + f(σ₁ − σ₀)``, is the
    variance for i.i.d. inputs: the fixed-data one plus ``f(1 − f)/n``; both agree at
    ``f = 0``.

    Privacy
    -------
    With ``amplify=True`` (the paper) ``ε′ = ln(d(e^ε − 1) + 1)``. Then the report is
    ``ε′``-LDP for any two tuples of one user, **not** ε-LDP: two tuples that differ in
    every attribute are told apart by the full ratio ``e^ε′`` (the tuple that matches
    every reported value is ``e^ε′`` times as likely), and :attr:`guarantee` says
    ``ε′``. The amplification argument gives ε only for tuples that differ in a single
    attribute, and even then only for ``"ue-z"``, or ``"grr"`` over equal domains
    (``"ue-r"``, and ``"grr"`` over unequal domains, exceed ε);
    :meth:`epsilon_one_attribute` computes that worst case exactly. With
    ``amplify=False`` the sampled attribute is randomized at ε itself and the report is
    ε-LDP for any two tuples.

    Parameters
    ----------
    domains
        Domain size of each attribute.
    epsilon
        The paper's ε (``amplify=True``) or the budget of the tuple (``amplify=False``).
    variant
        ``"grr"``, ``"ue-z"`` or ``"ue-r"``.
    unary
        Unary encoding of the ``"ue-*"`` variants: ``"oue"`` (default, as the paper)
        or ``"sue"``.
    amplify
        Whether the sampled attribute gets ``ε′ = ln(d(e^ε − 1) + 1)`` (default) or ε.

    Examples
    --------
    >>> from privaudit.mechanisms.ldp import RSFD
    >>> rsfd = RSFD(domains=(4, 4, 4), epsilon=1.0)
    >>> round(rsfd.guarantee.epsilon, 3), round(rsfd.epsilon_one_attribute(), 3)
    (1.817, 1.0)
    """

    name = "rsfd"

    def __init__(
        self,
        *,
        domains: Sequence[int],
        epsilon: float,
        variant: RSFDVariant = "grr",
        unary: UnaryKind = "oue",
        amplify: bool = True,
    ) -> None:
        self.domains = check_domains(domains)
        self.d = len(self.domains)
        self.epsilon = check_epsilon(epsilon)
        if variant not in ("grr", "ue-z", "ue-r"):
            raise ParameterError(f"variant must be 'grr', 'ue-z' or 'ue-r'; got {variant!r}")
        if unary not in ("oue", "sue"):
            raise ParameterError(f"unary must be 'oue' or 'sue'; got {unary!r}")
        if not isinstance(amplify, bool):
            raise ParameterError(f"amplify must be True or False; got {amplify!r}")
        self.variant: RSFDVariant = variant
        self.unary: UnaryKind = unary
        self.amplify = amplify
        sampled = math.log1p(self.d * math.expm1(self.epsilon)) if amplify else self.epsilon
        self.epsilon_sampled = check_epsilon(sampled, name="the sampled attribute's epsilon")
        self._bases: tuple[FrequencyOracle, ...] = tuple(
            self._base(k, self.epsilon_sampled) for k in self.domains
        )
        self._parts = tuple(
            PureProtocolView(
                layout=base,
                p_star=self._sigma(j)[1],
                q_star=self._sigma(j)[0],
                fingerprint=f"{self.fingerprint()}/attribute={j}",
                guarantee=self.guarantee,
            )
            for j, base in enumerate(self._bases)
        )

    def _base(self, k: int, epsilon: float) -> FrequencyOracle:
        if self.variant == "grr":
            return GRR(k=k, epsilon=epsilon)
        return OUE(k=k, epsilon=epsilon) if self.unary == "oue" else SUE(k=k, epsilon=epsilon)

    def _sigma(self, j: int) -> tuple[float, float]:
        """``(σ₀, σ₁)`` of attribute ``j``."""
        base, d, k = self._bases[j], self.d, self.domains[j]
        p, q = base.p_star, base.q_star
        if self.variant == "grr":
            sigma0 = q / d + (d - 1) / (d * k)
        elif self.variant == "ue-z":
            sigma0 = q
        else:
            sigma0 = (q + (d - 1) * (p + (k - 1) * q) / k) / d
        return sigma0, sigma0 + (p - q) / d

    def fingerprint(self) -> str:
        return (
            f"rsfd:domains={self.domains}:epsilon={self.epsilon!r}:variant={self.variant}"
            f":unary={self.unary}:amplify={self.amplify}"
        )

    @property
    def guarantee(self) -> PrivacyGuarantee:
        """``ε′``-LDP for any two tuples of one user (tight; see the class docstring)."""
        return PrivacyGuarantee.pure(self.epsilon_sampled, neighbouring=TUPLE_NEIGHBOURS)

    @property
    def guarantee_one_attribute(self) -> PrivacyGuarantee:
        """The exact guarantee for tuples that differ in one attribute only."""
        return PrivacyGuarantee.pure(
            self.epsilon_one_attribute(),
            neighbouring="two tuples of one user that differ in exactly one attribute",
        )

    def epsilon_one_attribute(self) -> float:
        """The exact worst-case ε between tuples that differ in one attribute.

        A report's likelihood is ``Π_i F_i(y_i) · (1/d) Σ_j r_j`` with
        ``r_j = M_j(y_j | x_j)/F_j(y_j)`` (``M`` the real randomizer, ``F`` the fake
        report's law). Changing attribute ``i`` changes ``r_i`` only, so the worst ratio
        is ``(r_i^max + S_i)/(r_i^min' + S_i)`` at the smallest ``S_i = Σ_{j≠i} r_j``;
        each term has a closed form per variant. With ``amplify`` on it equals ε for
        ``"ue-z"`` and for ``"grr"`` over equal domains, and exceeds ε otherwise.
        """
        worst = 0.0
        for i in range(self.d):
            top, bottom, rest = self._one_attribute_terms(i)
            worst = max(worst, (top + rest) / (bottom + rest))
        return math.log(worst)

    def _one_attribute_terms(self, i: int) -> tuple[float, float, float]:
        """For attribute ``i``: the ``r_i`` pair of the worst output, and ``min S_i``."""

        def terms(j: int) -> tuple[float, float, float]:
            base, k = self._bases[j], self.domains[j]
            p, q = base.p_star, base.q_star
            if self.variant == "grr":
                return k * p, k * q, k * q  # r if hit, r if miss, min r
            a, b = p / q, (1 - p) / (1 - q)
            if self.variant == "ue-z":
                return a, b, b
            # ue-r: r = ρ(bit)·k/(h a + (k − h) b), h = weight of the reported vector
            c = k / (a + (k - 1) * b)  # weight 1: only the true bit set
            return a * c, b * c, b * k / ((k - 1) * a + b)

        top, bottom, _ = terms(i)
        rest = sum(terms(j)[2] for j in range(self.d) if j != i)
        return top, bottom, rest

    def randomize(self, values: Any, *, rng: RandomSource = None) -> MultiReports:
        """Report every attribute of each user's tuple, the sampled one for real and
        the others fake; which one was sampled is not part of the report.

        ``rng=None`` (default) draws from the cryptographically secure release source."""
        checked = check_tuples(values, self.domains)
        generator = resolve_rng(rng)
        n = checked.shape[0]
        sampled: IntArray = np.asarray(generator.integers(0, self.d, size=n), dtype=np.int64)
        parts = []
        for j, (base, view) in enumerate(zip(self._bases, self._parts, strict=True)):
            real = sampled == j
            column = checked[:, j]
            k = self.domains[j]
            arrays: dict[str, Any]
            if self.variant == "grr":
                out: IntArray = np.asarray(generator.integers(0, k, size=n), dtype=np.int64)
                out[real] = base._randomize(column[real], generator)["values"]
                arrays = {"values": out}
            elif self.variant == "ue-r":
                hot = column.copy()
                hot[~real] = generator.integers(0, k, size=int(n - real.sum()))
                arrays = {"bits": base._randomize(hot, generator)["bits"]}
            else:
                bits = np.empty((n, (k + 7) // 8), dtype=np.uint8)
                bits[real] = base._randomize(column[real], generator)["bits"]
                bits[~real] = _zero_vector_bits(int(n - real.sum()), k, base.q_star, generator)
                arrays = {"bits": bits}
            parts.append(Reports(self.name, view.fingerprint(), arrays))
        return MultiReports(self.name, self.fingerprint(), tuple(parts))

    def channel(self) -> FloatArray:
        """``P[reports | tuple]`` over the product of the attributes' report spaces."""
        blocks, fakes = [], []
        for base, k in zip(self._bases, self.domains, strict=True):
            matrix: FloatArray = base.channel()  # type: ignore[attr-defined]
            blocks.append(matrix)
            if self.variant == "grr":
                fakes.append(np.full(k, 1.0 / k))
            elif self.variant == "ue-r":
                fakes.append(matrix.mean(axis=0))
            else:
                q = base.q_star
                fakes.append(np.where(_unary_outputs(k), q, 1 - q).prod(axis=1))
        _check_size(math.prod(self.domains), math.prod(b.shape[1] for b in blocks))
        total: FloatArray = np.zeros(
            (math.prod(self.domains), math.prod(b.shape[1] for b in blocks))
        )
        for j in range(self.d):
            factors = [
                blocks[i] if i == j else np.ones((k, 1)) @ fakes[i][None, :]
                for i, k in enumerate(self.domains)
            ]
            total += _kron(factors)
        return total / self.d

    def __repr__(self) -> str:
        return (
            f"RSFD(domains={self.domains}, epsilon={self.epsilon:g}, variant={self.variant!r}, "
            f"unary={self.unary!r}, amplify={self.amplify})"
        )


def _zero_vector_bits(n: int, k: int, q: float, rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    """Unary reports of the all-zero vector: every bit is 1 with probability ``q``."""
    packed = np.empty((n, (k + 7) // 8), dtype=np.uint8)
    chunk = max(1, _CHUNK_CELLS // k)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        packed[start:stop] = np.packbits(bernoulli(rng, q, (stop - start, k)), axis=1)
    return packed
