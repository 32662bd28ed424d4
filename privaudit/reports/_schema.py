"""The canonical audit report: one versioned schema that every output format renders.

A report is plain data (pydantic models, frozen, closed to unknown fields): what was
audited and under which threat model, the configuration, every attack's metrics with
the counts and intervals they rest on, the empirical ε with its rigour label, a
verdict against optional gates, timings and versions. Capabilities build it (for
membership inference: ``privaudit.attacks.membership.build_membership_report``); the
kernel only validates, stores and renders it, so it never imports a capability.

Version policy: :data:`SCHEMA_VERSION` changes whenever a field is removed, renamed or
changes meaning; a reader refuses versions it does not know rather than guess.
"""

from __future__ import annotations

import hashlib
import math
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import numpy as np
import numpy.typing as npt
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    model_validator,
)

__all__ = [
    "MAX_ATTACKS",
    "MAX_CURVE_POINTS",
    "MAX_HISTOGRAM_BINS",
    "REPORT_KIND",
    "SCHEMA_VERSION",
    "Artifact",
    "AttackMetrics",
    "AttackResult",
    "AuditReport",
    "Counts",
    "EpsilonResult",
    "EpsilonSummary",
    "Gate",
    "GateMetric",
    "GateResult",
    "Histogram",
    "Inputs",
    "PosteriorGrid",
    "PosteriorSummary",
    "RocPoints",
    "ThreatModelInfo",
    "TprAtFpr",
    "Verdict",
    "collect_versions",
    "to_json_value",
]

SCHEMA_VERSION: Literal[1] = 1
"""The version of the report schema this privaudit writes and reads."""

REPORT_KIND: Literal["privaudit.audit-report"] = "privaudit.audit-report"
"""The ``kind`` field of every report: tells a report apart from other JSON."""

MAX_ATTACKS = 64
MAX_CURVE_POINTS = 4096
"""Most points stored per ROC curve or posterior grid (curves are sampled to fit)."""
MAX_HISTOGRAM_BINS = 512
_MAX_TEXT = 20_000
_MAX_NAME = 200

Rigor = Literal["rigorous", "heuristic"]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0)]
Count = Annotated[int, Field(ge=0)]
Name = Annotated[str, Field(min_length=1, max_length=_MAX_NAME)]
Text = Annotated[str, Field(max_length=_MAX_TEXT)]


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class _Model(BaseModel):
    """Frozen, closed to unknown fields, no NaN or infinity (JSON has neither)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class ThreatModelInfo(_Model):
    """What the attacker could observe, by name and in words."""

    name: Name = Field(description="e.g. 'black-box', 'white-box', 'mechanism'.")
    description: Text


class Artifact(_Model):
    """One input the audit read, identified by its SHA-256."""

    name: Name
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Lowercase hex digest.")
    size_bytes: Count | None = None
    description: Text = ""

    @classmethod
    def from_bytes(cls, name: str, data: bytes, *, description: str = "") -> Self:
        """The artifact of a byte string."""
        digest = hashlib.sha256(data).hexdigest()
        return cls(name=name, sha256=digest, size_bytes=len(data), description=description)

    @classmethod
    def from_file(cls, path: str | Path, *, name: str | None = None, description: str = "") -> Self:
        """The artifact of a file, hashed in 1 MiB chunks."""
        path = Path(path)
        digest = hashlib.sha256()
        size = 0
        with path.open("rb") as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        return cls(
            name=name or path.name,
            sha256=digest.hexdigest(),
            size_bytes=size,
            description=description,
        )

    @classmethod
    def from_array(cls, name: str, array: npt.ArrayLike, *, description: str = "") -> Self:
        """The artifact of an in-memory array.

        The digest covers ``f"{dtype.str}{shape}"`` (e.g. ``"<f8(1797, 64)"``) followed
        by the C-ordered bytes, so equal values of another dtype or shape differ.
        """
        values = np.ascontiguousarray(array)
        header = f"{values.dtype.str}{values.shape}".encode()
        digest = hashlib.sha256(header + values.tobytes()).hexdigest()
        return cls(name=name, sha256=digest, size_bytes=int(values.nbytes), description=description)


class Inputs(_Model):
    """What was audited."""

    description: Text
    artifacts: list[Artifact] = Field(default_factory=list, max_length=256)
    n_members: Count = Field(description="Challenges that were training members.")
    n_nonmembers: Count = Field(description="Challenges that were not.")


class TprAtFpr(_Model):
    """The TPR of the last ROC point with FPR <= ``fpr_limit``, with its evidence."""

    fpr_limit: Probability
    tpr: Probability
    fpr: Probability = Field(description="The FPR actually reached at that point.")
    true_positives: Count
    false_positives: Count
    tpr_interval: tuple[Probability, Probability] = Field(
        description="Exact (Clopper-Pearson) interval of the TPR over the members."
    )
    confidence: Probability = 0.95
    resolved: bool = Field(
        description="fpr_limit x n_nonmembers >= 1; if false the figure is the TPR at 0 FPR."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        low, high = self.tpr_interval
        if not low <= self.tpr <= high:
            raise ValueError(f"tpr {self.tpr} lies outside its interval {self.tpr_interval}")
        if self.fpr > self.fpr_limit:
            raise ValueError(f"fpr {self.fpr} exceeds fpr_limit {self.fpr_limit}")
        return self


class AttackMetrics(_Model):
    """How well one attack's scores separate members from non-members."""

    auc: Probability
    balanced_accuracy: Probability
    advantage: Annotated[float, Field(ge=-1.0, le=1.0)]
    n_members: Count
    n_nonmembers: Count
    tpr_at_fpr: list[TprAtFpr] = Field(max_length=64)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for entry in self.tpr_at_fpr:
            if entry.true_positives > self.n_members:
                raise ValueError("true_positives exceeds n_members")
            if entry.false_positives > self.n_nonmembers:
                raise ValueError("false_positives exceeds n_nonmembers")
        return self

    def at_fpr(self, fpr_limit: float) -> TprAtFpr | None:
        """The entry for ``fpr_limit``, if it was computed."""
        return next((e for e in self.tpr_at_fpr if math.isclose(e.fpr_limit, fpr_limit)), None)


class Counts(_Model):
    """A confusion matrix: members guessed member (tp) or not (fn), and so on."""

    tp: Count
    fn: Count
    tn: Count
    fp: Count


class PosteriorGrid(_Model):
    """The posterior of ε on a grid (for plots)."""

    epsilon: list[NonNegative] = Field(min_length=2, max_length=MAX_CURVE_POINTS)
    density: list[NonNegative] = Field(min_length=2, max_length=MAX_CURVE_POINTS)
    cdf: list[Probability] = Field(min_length=2, max_length=MAX_CURVE_POINTS)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if not len(self.epsilon) == len(self.density) == len(self.cdf):
            raise ValueError("epsilon, density and cdf must have one length")
        return self


class PosteriorSummary(_Model):
    """The Bayesian (joint-beta) posterior of ε: a heuristic summary."""

    method: Name = "joint-beta"
    rigor: Rigor = "heuristic"
    reason: Text = ""
    lower_bound: NonNegative = Field(description="One-sided lower credible bound at alpha.")
    median: NonNegative
    interval: tuple[NonNegative, NonNegative | None] = Field(
        description="Equal-tailed credible interval at alpha (null upper: unbounded)."
    )
    grid: PosteriorGrid | None = None


class EpsilonResult(_Model):
    """The empirical ε one attack's scores exhibit, and how it was obtained."""

    delta: Probability
    alpha: Probability = Field(description="The level of this attack's bounds.")
    threat_model: Name
    threshold_selection: Literal["split", "bonferroni"]
    threshold: float
    thresholds_tried: Count
    selection_size: Count
    evaluation_size: Count
    counts: Counts = Field(description="At the threshold, on the evaluation part.")
    lower_bound: NonNegative = Field(description="Clopper-Pearson lower bound on ε.")
    method: Name = "clopper-pearson"
    rigor: Rigor
    reason: Text
    posterior: PosteriorSummary | None = None


class RocPoints(_Model):
    """ROC points for plots; every metric was computed on the full curve."""

    fpr: list[Probability] = Field(min_length=2, max_length=MAX_CURVE_POINTS)
    tpr: list[Probability] = Field(min_length=2, max_length=MAX_CURVE_POINTS)
    full_points: Count = Field(description="Points of the full curve before sampling.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if len(self.fpr) != len(self.tpr):
            raise ValueError("fpr and tpr must have one length")
        return self


class Histogram(_Model):
    """Score histograms of members and non-members on shared bins."""

    edges: list[float] = Field(min_length=2, max_length=MAX_HISTOGRAM_BINS + 1)
    members: list[Count] = Field(max_length=MAX_HISTOGRAM_BINS)
    nonmembers: list[Count] = Field(max_length=MAX_HISTOGRAM_BINS)
    clipped: bool = Field(description="Scores beyond the edges were counted in the end bins.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        bins = len(self.edges) - 1
        if len(self.members) != bins or len(self.nonmembers) != bins:
            raise ValueError(f"{len(self.edges)} edges need {bins} counts per group")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("histogram edges must increase")
        return self


class AttackResult(_Model):
    """One attack's configuration, figures and plot data."""

    name: Name = Field(description="Display name, unique within the report.")
    attack: Name = Field(description="The registered attack, e.g. 'lira'.")
    params: dict[str, JsonValue] = Field(default_factory=dict)
    metrics: AttackMetrics
    epsilon: EpsilonResult | None = None
    roc: RocPoints | None = None
    histogram: Histogram | None = None
    seconds: NonNegative | None = None


class EpsilonSummary(_Model):
    """The headline ε: the largest lower bound over the attacks."""

    attack: Name
    lower_bound: NonNegative
    rigor: Rigor
    delta: Probability
    alpha: Probability = Field(description="Overall level: the largest bound holds at 1 − α.")
    alpha_per_attack: Probability
    threshold_selection: Literal["split", "bonferroni"]
    posterior_median: NonNegative | None = None
    note: Text = ""


GateMetric = Literal["auc", "advantage", "balanced_accuracy", "tpr_at_fpr", "epsilon_lower_bound"]


class Gate(_Model):
    """A ceiling on the worst attack: the audit fails if ``metric`` exceeds ``limit``."""

    metric: GateMetric
    limit: float
    fpr_limit: Probability | None = Field(
        default=None, description="For metric 'tpr_at_fpr': the FPR at which the TPR is read."
    )

    @model_validator(mode="after")
    def _fpr(self) -> Self:
        if (self.metric == "tpr_at_fpr") != (self.fpr_limit is not None):
            raise ValueError("fpr_limit is required for metric 'tpr_at_fpr' and only for it")
        return self

    @property
    def label(self) -> str:
        """E.g. ``max auc`` or ``max tpr_at_fpr(0.1%)``."""
        if self.fpr_limit is not None:
            return f"max tpr_at_fpr({100 * self.fpr_limit:g}%)"
        return f"max {self.metric}"


class GateResult(_Model):
    """One gate against the worst attack."""

    gate: Gate
    observed: float | None = Field(description="The worst (largest) value over attacks.")
    attack: Name | None = Field(description="The attack that reached it.")
    passed: bool
    detail: Text = ""


class Verdict(_Model):
    """``pass`` when every gate holds, ``fail`` when one does not, ``not-gated`` without gates."""

    status: Literal["pass", "fail", "not-gated"]
    gates: list[GateResult] = Field(default_factory=list, max_length=64)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if not self.gates:
            expected = "not-gated"
        else:
            expected = "pass" if all(g.passed for g in self.gates) else "fail"
        if self.status != expected:
            raise ValueError(f"status {self.status!r} contradicts the gates ({expected!r})")
        return self

    @property
    def passed(self) -> bool:
        """False only when a gate failed."""
        return self.status != "fail"


class AuditReport(_Model):
    """An audit report (schema version :data:`SCHEMA_VERSION`).

    Build one from a capability (e.g. ``build_membership_report``), render it with
    :func:`privaudit.reports.render`, read one back with
    :func:`privaudit.reports.load_report`.
    """

    kind: Literal["privaudit.audit-report"] = REPORT_KIND
    schema_version: Literal[1] = SCHEMA_VERSION
    title: Name
    created_at: AwareDatetime = Field(default_factory=_now)
    threat_model: ThreatModelInfo
    inputs: Inputs
    config: dict[str, JsonValue] = Field(default_factory=dict)
    attacks: list[AttackResult] = Field(min_length=1, max_length=MAX_ATTACKS)
    epsilon: EpsilonSummary | None = None
    verdict: Verdict
    timings: dict[str, NonNegative] = Field(
        default_factory=dict, description="Wall seconds per stage; 'total' for the whole audit."
    )
    versions: dict[str, str] = Field(default_factory=dict)
    notes: list[Text] = Field(default_factory=list, max_length=64)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [attack.name for attack in self.attacks]
        if len(set(names)) != len(names):
            raise ValueError(f"attack names must be unique; got {names}")
        if self.epsilon is not None and self.epsilon.attack not in names:
            raise ValueError(f"epsilon.attack {self.epsilon.attack!r} is not an attack")
        return self

    def attack(self, name: str) -> AttackResult:
        """The attack called ``name``."""
        for result in self.attacks:
            if result.name == name:
                return result
        raise KeyError(name)


def collect_versions(packages: Iterable[str] = ()) -> dict[str, str]:
    """Versions of Python, privaudit, numpy, scipy and the installed ``packages``.

    Reads package metadata only, so naming ``torch`` does not import it; packages that
    are not installed are left out.
    """
    from privaudit import __version__

    versions = {"python": ".".join(map(str, sys.version_info[:3])), "privaudit": __version__}
    for name in ("numpy", "scipy", *packages):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def to_json_value(value: Any) -> JsonValue:
    """``value`` as plain JSON: numpy scalars and arrays, tuples, enums converted.

    Infinite and NaN floats become ``None``; objects of other types, their ``str``.

    Examples
    --------
    >>> import numpy as np
    >>> to_json_value({"k": np.int64(3), "x": (1.5, float("inf")), "a": np.arange(2)})
    {'k': 3, 'x': [1.5, None], 'a': [0, 1]}
    """
    if isinstance(value, dict):
        return {str(key): to_json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_value(item) for item in value]
    if isinstance(value, np.ndarray):
        return to_json_value(value.tolist())
    if isinstance(value, np.generic):
        return to_json_value(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
