"""The one frequency-oracle engine every LDP protocol plugs into.

A *pure* protocol [WBLJ17]_ maps each report ``y`` to a support set ``S(y)`` of
domain values such that ``P[v ∈ S(Y) | input v] = p*`` and
``P[v ∈ S(Y) | input v' ≠ v] = q*``. Then, with ``C(v)`` the number of reports whose
support contains ``v``, one unbiased estimator and one variance formula serve every
protocol::

    f̂(v) = (C(v)/n − q*) / (p* − q*)
    Var[f̂(v)] = q*(1 − q*) / (n (p* − q*)²) + f_v (1 − p* − q*) / (n (p* − q*))

(the second term vanishes as ``f_v → 0``; the first is what papers plot).

A protocol implements four things: its support probabilities, a vectorised
``randomize``, the *sufficient statistics* of a batch of reports (an integer vector
that adds up across batches, so aggregation streams and shards merge), and how to get
the support counts ``C`` from those statistics. Everything else (estimation,
variance, post-processing, aggregation, the guarantee) lives here.

References
----------
.. [WBLJ17] T. Wang, J. Blocki, N. Li, S. Jha, "Locally Differentially Private
   Protocols for Frequency Estimation", USENIX Security 2017.
.. [WLL20] T. Wang, M. Lopuhaä-Zwakenberg, Z. Li, B. Skoric, N. Li, "Locally
   Differentially Private Frequency Estimation with Consistency", NDSS 2020.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt

from privaudit.errors import DataError, ParameterError
from privaudit.guarantees import PrivacyGuarantee
from privaudit.mechanisms.ldp import _wire
from privaudit.mechanisms.ldp._wire import Field
from privaudit.randomness import RandomSource, resolve_rng
from privaudit.registry import mechanisms

__all__ = [
    "LOCAL_NEIGHBOURS",
    "MIN_EPSILON",
    "Aggregator",
    "Field",
    "FrequencyOracle",
    "PostProcess",
    "Reports",
    "check_domain",
    "check_epsilon",
    "check_prior",
    "check_values",
    "frequency_oracle_names",
    "postprocess_frequencies",
    "project_to_simplex",
]

LOCAL_NEIGHBOURS = "any two input values of one user (local model)"

MIN_EPSILON = 1e-4
"""Smallest epsilon accepted: below it p* − q* vanishes in double precision for large k."""

PostProcess = Literal["clip", "simplex"] | None

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def check_epsilon(epsilon: object, *, name: str = "epsilon") -> float:
    """Return ``epsilon`` as a float after checking it is finite and > 0."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float | np.floating):
        raise ParameterError(f"{name} must be a positive number; got {epsilon!r}")
    value = float(epsilon)
    if not math.isfinite(value) or value <= 0:
        raise ParameterError(f"{name} must be finite and > 0; got {value!r}")
    if value > 50:
        raise ParameterError(
            f"{name}={value} is beyond 50, where e^epsilon overflows the probabilities "
            "of every protocol; use a smaller epsilon"
        )
    if value < MIN_EPSILON:
        raise ParameterError(
            f"{name}={value!r} is below {MIN_EPSILON}: the support probabilities become "
            "numerically equal and no estimate is possible; use a larger epsilon"
        )
    return value


def check_domain(k: object, *, name: str = "k", minimum: int = 2) -> int:
    """Return the domain size ``k`` after checking it is an integer >= ``minimum``."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise ParameterError(f"{name} must be an integer domain size; got {k!r}")
    if k < minimum:
        raise ParameterError(f"{name} must be >= {minimum}; got {k}")
    if k > 2**31:
        raise ParameterError(f"{name} must be <= 2^31; got {k}")
    return int(k)


def check_values(values: object, k: int) -> IntArray:
    """Return user values as a 1-D int64 array, checking each is in ``[0, k)``."""
    array = np.asarray(values)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise DataError(f"values must be a 1-D array of integers; got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if (
            np.issubdtype(array.dtype, np.floating)
            and np.all(np.isfinite(array))
            and np.all(array == np.round(array))
        ):
            array = array.astype(np.int64)
        else:
            raise DataError(f"values must be integers in [0, {k}); got dtype {array.dtype}")
    array = array.astype(np.int64, copy=False)
    if array.size and (array.min() < 0 or array.max() >= k):
        bad = array[(array < 0) | (array >= k)][0]
        raise DataError(
            f"values must lie in [0, {k}) (items are 0-based); found {int(bad)}",
            domain_size=k,
        )
    return array


def check_prior(prior: npt.ArrayLike | None, k: int) -> FloatArray | None:
    """Return a prior over ``[k]`` as a float array, or ``None`` when it is uniform
    (``None`` or all entries equal); raise :class:`DataError` if it is not a
    distribution."""
    if prior is None:
        return None
    weights = np.asarray(prior, dtype=float)
    if weights.shape != (k,):
        raise DataError(f"prior must have one probability per value ({k}); got {weights.shape}")
    if not np.all(np.isfinite(weights)) or weights.min() < 0:
        raise DataError("prior must be finite and non-negative")
    total = float(weights.sum())
    if not math.isclose(total, 1.0, rel_tol=0, abs_tol=1e-9):
        raise DataError(f"prior must sum to 1; it sums to {total!r}")
    if np.all(weights == weights[0]):
        return None
    normalised: FloatArray = weights / total
    return normalised


@dataclass(frozen=True)
class Reports:
    """A batch of randomized reports: the protocol name, its parameters' fingerprint,
    and the report arrays (one row per user)."""

    protocol: str
    fingerprint: str
    arrays: dict[str, npt.NDArray[Any]]

    @property
    def n(self) -> int:
        """Number of reports."""
        first = next(iter(self.arrays.values()), None)
        return 0 if first is None else int(first.shape[0])

    def __len__(self) -> int:
        return self.n


class FrequencyOracle(ABC):
    """Base class of pure LDP frequency oracles (see the module docstring).

    Subclasses set :attr:`name` and implement :meth:`_support_probabilities`,
    :meth:`_randomize`, :meth:`_statistics`, :meth:`_support_counts` and
    :meth:`bits_per_report`; most add :meth:`reconstruction_success`.

    Parameters
    ----------
    k
        Domain size; values are ``0 .. k-1``.
    epsilon
        The privacy parameter of ε-LDP.
    """

    name: ClassVar[str] = ""

    def __init__(self, *, k: int, epsilon: float) -> None:
        self.k = check_domain(k)
        self.epsilon = check_epsilon(epsilon)

    # --- what a protocol defines -------------------------------------------------

    @abstractmethod
    def _support_probabilities(self) -> tuple[float, float]:
        """``(p*, q*)``."""

    @abstractmethod
    def _randomize(self, values: IntArray, rng: np.random.Generator) -> dict[str, Any]:
        """Randomize valid values; return the report arrays."""

    @abstractmethod
    def _statistics(self, reports: Reports) -> IntArray:
        """Additive sufficient statistics of a batch (an int64 vector)."""

    @abstractmethod
    def _support_counts(self, statistics: IntArray, n: int) -> FloatArray:
        """``C(v)`` for every ``v`` in ``[k]`` from the summed statistics."""

    @abstractmethod
    def bits_per_report(self) -> float:
        """The information content of one report in bits (what an optimal code for the
        protocol's outputs takes; an average where reports differ in size). Compare
        protocols with it; :meth:`wire_bits_per_report` is what the wire spends."""

    def wire_bits_per_report(self) -> float:
        """Bits the wire format (:meth:`encode`) spends per report, from the report
        schema: each field's values per report times the bits of its range.

        A batch adds a header (14 bytes plus the fingerprint) and pads each field to a
        whole byte once, so ``len(encode(reports))`` is ``n`` times this plus at most
        ``14 + len(fingerprint) + len(schema)`` bytes.

        Raises
        ------
        NotImplementedError
            If the protocol defines no report schema (no wire form).
        """
        return float(sum(field.width * _wire.field_bits(field) for field in self.report_schema()))

    def _statistics_size(self) -> int:
        """Length of the statistics vector (``k`` unless the protocol says otherwise)."""
        return self.k

    def report_schema(self) -> list[Field]:
        """The fields of a report batch: name, values per report, value range."""
        raise NotImplementedError(f"{type(self).__name__} does not define its report schema")

    # --- reports in and out ------------------------------------------------------------

    def validate_reports(self, reports: Reports) -> Reports:
        """Check a batch against this protocol's schema (shapes, integer types, ranges).

        Raises
        ------
        DataError
            Saying which field is wrong and how.
        """
        if not isinstance(reports, Reports):
            raise DataError(f"expected a Reports batch, got {type(reports).__name__}")
        if reports.fingerprint != self.fingerprint():
            raise DataError(
                f"these reports were made by {reports.fingerprint}, not by {self.fingerprint()}"
            )
        schema = self.report_schema()
        if set(reports.arrays) != {field.name for field in schema}:
            raise DataError(
                f"a {self.name} batch has fields {[f.name for f in schema]}; "
                f"got {sorted(reports.arrays)}"
            )
        sizes = set()
        for field in schema:
            array = reports.arrays[field.name]
            expected_ndim = 2 if field.columns else 1
            if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.integer):
                raise DataError(f"field {field.name!r} must be an integer array")
            if array.ndim != expected_ndim or (field.columns and array.shape[1] != field.columns):
                raise DataError(
                    f"field {field.name!r} must have shape (n, {field.columns or ''}); "
                    f"got {array.shape}"
                )
            if array.size and (array.min() < field.low or array.max() > field.high):
                raise DataError(
                    f"field {field.name!r} must lie in [{field.low}, {field.high}]; found "
                    f"values in [{int(array.min())}, {int(array.max())}]"
                )
            sizes.add(array.shape[0])
        if len(sizes) != 1:
            raise DataError(f"fields disagree on the number of reports: {sorted(sizes)}")
        return reports

    def encode(self, reports: Reports) -> bytes:
        """The compact, versioned binary form of a batch (see :mod:`._wire`)."""
        self.validate_reports(reports)
        return _wire.encode(self.fingerprint(), reports.n, self.report_schema(), reports.arrays)

    def decode(self, data: bytes, *, max_reports: int = 10_000_000) -> Reports:
        """Read a batch encoded by :meth:`encode`; untrusted input is safe to pass.

        Raises
        ------
        DataError
            If the bytes are malformed or were made by another protocol or parameters.
        LimitExceededError
            If the batch holds more than ``max_reports`` reports.
        """
        _n, arrays = _wire.decode(
            data,
            fingerprint=self.fingerprint(),
            schema=self.report_schema(),
            max_reports=max_reports,
        )
        return self.validate_reports(Reports(self.name, self.fingerprint(), arrays))

    # --- the engine ------------------------------------------------------------------

    @property
    def p_star(self) -> float:
        """``P[v ∈ S(Y) | input v]``."""
        return self._support_probabilities()[0]

    @property
    def q_star(self) -> float:
        """``P[v ∈ S(Y) | input v' ≠ v]``."""
        return self._support_probabilities()[1]

    @property
    def guarantee(self) -> PrivacyGuarantee:
        """ε-LDP: pure DP between any two inputs of one user."""
        return PrivacyGuarantee.pure(self.epsilon, neighbouring=LOCAL_NEIGHBOURS)

    def fingerprint(self) -> str:
        """What reports must agree on to be aggregated together."""
        return f"{self.name}:k={self.k}:epsilon={self.epsilon!r}"

    def public_params(self) -> dict[str, Any]:
        """Constructor arguments beyond ``k`` and ``epsilon`` that rebuild this exact
        protocol (resolved: e.g. the subset size, not the rounding rule), so a client
        given them randomizes compatibly: ``type(self)(k=..., epsilon=..., **params)``."""
        return {}

    def randomize(self, values: npt.ArrayLike, *, rng: RandomSource = None) -> Reports:
        """Randomize each user's value (vectorised over users).

        Parameters
        ----------
        values
            One integer in ``[0, k)`` per user.
        rng
            ``None`` (default) draws from the cryptographically secure release source;
            pass :func:`privaudit.simulation_generator` output only for simulations.
        """
        checked = check_values(values, self.k)
        arrays = self._randomize(checked, resolve_rng(rng))
        return Reports(self.name, self.fingerprint(), arrays)

    def statistics(self, reports: Reports) -> IntArray:
        """The additive sufficient statistics of a batch (checked against this protocol)."""
        return self._statistics(self.validate_reports(reports))

    def support_counts(self, reports: Reports) -> FloatArray:
        """``C(v)``: how many reports support each value."""
        return self._support_counts(self.statistics(reports), reports.n)

    def estimate(self, reports: Reports, *, postprocess: PostProcess = None) -> FloatArray:
        """Estimate the frequency of every value.

        Parameters
        ----------
        postprocess
            ``None`` (default): the unbiased estimate (it can be negative and need not
            sum to 1). ``"clip"``: clip at 0 and renormalise. ``"simplex"``: Euclidean
            projection onto the probability simplex [WLL20]_. Both are biased.
        """
        return self._estimate_from_statistics(self.statistics(reports), reports.n, postprocess)

    def _estimate_from_statistics(
        self, statistics: IntArray, n: int, postprocess: PostProcess
    ) -> FloatArray:
        if n <= 0:
            raise DataError("cannot estimate from zero reports")
        p, q = self._support_probabilities()
        counts = self._support_counts(statistics, n)
        return postprocess_frequencies((counts / n - q) / (p - q), postprocess)

    def aggregator(self) -> Aggregator:
        """A streaming aggregator: bounded memory, mergeable across shards."""
        return Aggregator(self)

    def variance(self, n: int, f: npt.ArrayLike = 0.0) -> Any:
        """The exact variance of the unbiased estimate of a value with frequency ``f``
        over a fixed dataset of ``n`` users (``f=0``: the usual approximate variance)."""
        if n <= 0:
            raise ParameterError(f"n must be > 0; got {n}")
        p, q = self._support_probabilities()
        f_array = np.asarray(f, dtype=float)
        value = q * (1 - q) / (n * (p - q) ** 2) + f_array * (1 - p - q) / (n * (p - q))
        return float(value) if value.ndim == 0 else value

    def mse(self, n: int, f: npt.ArrayLike | None = None) -> float:
        """Mean over the domain of the estimate's variance (its MSE, being unbiased)."""
        if f is None:
            return float(np.mean(self.variance(n)))
        freq = np.asarray(f, dtype=float)
        if freq.shape != (self.k,):
            raise DataError(f"f must have one frequency per value ({self.k})")
        return float(np.mean(self.variance(n, freq)))

    def standard_errors(self, n: int, f: npt.ArrayLike) -> FloatArray:
        """Standard errors of the unbiased estimate at frequencies ``f`` (what a service
        returns beside an estimate; protocols whose exact variance is costly may answer
        with a documented approximation)."""
        variance = np.asarray(self.variance(n, np.clip(np.asarray(f, dtype=float), 0.0, 1.0)))
        errors: FloatArray = np.sqrt(np.maximum(np.broadcast_to(variance, (self.k,)), 0.0))
        return errors

    def reconstruction_success(self, prior: npt.ArrayLike | None = None) -> float:
        """Exact success rate of the single-report Bayes-naive attacker (guessing the
        user's value from one report), for values drawn from ``prior`` (uniform if
        ``None``)."""
        raise NotImplementedError(f"{type(self).__name__} does not define the attack")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(k={self.k}, epsilon={self.epsilon:g})"


class Aggregator:
    """Streaming aggregation of one protocol's reports.

    Holds only the protocol's sufficient statistics and the report count, so memory
    does not grow with the number of reports; two aggregators of the same protocol
    :meth:`merge`.
    """

    def __init__(self, oracle: FrequencyOracle) -> None:
        self.oracle = oracle
        self.statistics: IntArray = np.zeros(oracle._statistics_size(), dtype=np.int64)
        self.n = 0

    def update(self, reports: Reports) -> Aggregator:
        """Add a batch of reports; returns ``self``."""
        self.statistics += self.oracle.statistics(reports)
        self.n += reports.n
        return self

    def merge(self, other: Aggregator) -> Aggregator:
        """Add another aggregator's reports (same protocol and parameters); returns ``self``."""
        if other.oracle.fingerprint() != self.oracle.fingerprint():
            raise DataError(
                f"cannot merge {other.oracle.fingerprint()} into {self.oracle.fingerprint()}"
            )
        self.statistics += other.statistics
        self.n += other.n
        return self

    def estimate(self, *, postprocess: PostProcess = None) -> FloatArray:
        """The frequency estimate from everything added so far."""
        return self.oracle._estimate_from_statistics(self.statistics, self.n, postprocess)


def frequency_oracle_names() -> list[str]:
    """Names of the registered :class:`FrequencyOracle` protocols, sorted."""
    return [
        name
        for name in mechanisms.names()
        if isinstance(mechanisms.get(name), type)
        and issubclass(mechanisms.get(name), FrequencyOracle)
    ]


def postprocess_frequencies(estimate: FloatArray, how: PostProcess) -> FloatArray:
    """Apply an optional (biased) post-processing to an unbiased estimate."""
    if how is None:
        return estimate
    if how == "clip":
        clipped = np.clip(estimate, 0.0, None)
        total = clipped.sum()
        return clipped / total if total > 0 else np.full_like(estimate, 1.0 / estimate.size)
    if how == "simplex":
        return project_to_simplex(estimate)
    raise ParameterError(f"postprocess must be None, 'clip' or 'simplex'; got {how!r}")


def project_to_simplex(vector: npt.ArrayLike) -> FloatArray:
    """Euclidean projection onto ``{x : x >= 0, sum(x) = 1}`` (sort-based, O(k log k))."""
    v = np.asarray(vector, dtype=float)
    u = np.sort(v)[::-1]
    cumulative = np.cumsum(u) - 1.0
    index = np.arange(1, v.size + 1)
    rho = np.nonzero(u - cumulative / index > 0)[0][-1]
    theta = cumulative[rho] / (rho + 1.0)
    projected: FloatArray = np.maximum(v - theta, 0.0)
    return projected
