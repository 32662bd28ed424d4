"""The audit config: one strict, closed, versioned schema for the CLI and the REST service.

``privaudit audit --config audit.yaml`` reads it from YAML (``yaml.safe_load``) and
``POST /v1/audits`` from the JSON ``config`` part of a multipart request; both
validate it with :class:`AuditConfig` and run it with
:func:`privaudit.attacks.membership.run_audit`. A config names its inputs by
*artifact name*: in the CLI a path relative to the config file, in REST the name of an
uploaded part.

Inputs come in three modes:

* ``signals``: one ``.npz`` artifact holding ``signals`` ``(K + 1, n[, A])``, ``keep``
  ``(K + 1, n)`` and ``labels`` ``(n,)`` (the attacks' input contract; no model is
  ever loaded);
* ``train``: the target and ``K`` reference models are trained here, LiRA style, with a
  training ``recipe`` (:func:`~privaudit.attacks.membership.recipe_from_config`) on a
  ``dataset`` (today the built-in digits), as resumable work units on an executor;
* ``model``: the user's own trained model (a skops, safetensors or ONNX artifact, never
  a pickle; :func:`~privaudit.attacks.oracles.load_oracle`) is queried on the examples
  of a ``dataset`` artifact (``.npz``, CSV or Parquet with a membership column;
  :func:`~privaudit.attacks.membership.load_dataset`); with a ``recipe``, ``K``
  reference models are trained here on random halves of those examples.

Attacks are named from :data:`privaudit.registry.attacks` (``loss``, ``shadow``,
``lira``, ``rmia``) with their keyword parameters. Gates use the names of
``privaudit audit --demo`` (``max_auc``, ``max_advantage``, ``max_epsilon``,
``max_tpr_at_fpr``).

Examples
--------
>>> config = AuditConfig.model_validate(
...     {"version": 1, "inputs": {"mode": "signals", "signals": "signals.npz"},
...      "attacks": ["loss", {"attack": "lira", "params": {"online": False}}]})
>>> [spec.display_name for spec in config.attacks]
['loss', 'lira-offline']
>>> config.artifact_names()
['signals.npz']
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from privaudit.attacks.membership._base import MembershipAttack
from privaudit.attacks.membership._metrics import DEFAULT_FPR_LIMITS
from privaudit.errors import (
    ConfigurationError,
    LimitExceededError,
    ParameterError,
    PrivauditError,
)
from privaudit.registry import attacks as attack_registry
from privaudit.registry import report_formats
from privaudit.reports import Gate, gate

__all__ = [
    "CONFIG_VERSION",
    "MAX_CONFIG_BYTES",
    "ArchitectureConfig",
    "ArtifactName",
    "AttackSpec",
    "AuditConfig",
    "EpsilonConfig",
    "GatesConfig",
    "ModelInputs",
    "ReportConfig",
    "SignalsInputs",
    "TrainInputs",
    "load_audit_config",
    "parse_audit_config",
]

CONFIG_VERSION: Literal[1] = 1
"""The version of the audit config schema this privaudit reads."""

MAX_CONFIG_BYTES = 1024 * 1024
"""Largest config file :func:`load_audit_config` reads."""

MAX_REFERENCE_MODELS = 1024
MAX_ATTACKS = 16
ARTIFACT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,127}$"


def _relative_path(value: str) -> str:
    if any(part in ("", ".", "..") for part in value.split("/")):
        raise ValueError(
            f"an artifact name is a relative path without '.', '..' or empty segments; "
            f"got {value!r}"
        )
    return value


ArtifactName = Annotated[
    str,
    Field(
        pattern=ARTIFACT_NAME_PATTERN,
        description="An artifact: a path relative to the config file (CLI), or the name of "
        "an uploaded multipart part (REST). Letters, digits, '_', '-', '.', '/'.",
    ),
    AfterValidator(_relative_path),
]
Scalar = bool | int | float | str | None


class _Strict(BaseModel):
    """No coercion (``"0.5"`` is not a number), no unknown keys, no NaN or infinity,
    immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class SignalsInputs(_Strict):
    """Precomputed signals: no model is loaded or trained."""

    mode: Literal["signals"]
    signals: ArtifactName = Field(
        description="A .npz with arrays signals (K+1, n[, A]), keep (K+1, n) and labels (n,); "
        "row 0 is the target model."
    )


class DatasetConfig(_Strict):
    """The data models are trained on (built-in data sets only, for now)."""

    builtin: Literal["digits"] = Field(
        description="scikit-learn's bundled digits (1797 images, 10 classes)."
    )


DEFAULT_RECIPE: dict[str, Any] = {"trainer": "sklearn", "estimator": "random_forest"}
"""The recipe of mode train when the config names none (a forest of 100 trees)."""


def _bounded_recipe(value: Any) -> Any:
    if isinstance(value, dict) and len(str(value)) > 10_000:
        raise ValueError("a recipe is at most 10000 characters")
    return value


def _recipe(value: dict[str, Any]) -> dict[str, Any]:
    from privaudit.attacks.membership._recipes import recipe_from_config

    try:
        recipe_from_config(value)
    except PrivauditError as error:  # NotFoundError is not a ValueError: say it as one
        raise ValueError(error.message) from None
    return value


RecipeData = Annotated[dict[str, Any], BeforeValidator(_bounded_recipe), AfterValidator(_recipe)]
"""A training recipe as data, at most 10,000 characters, checked by the recipe registry."""


class TrainInputs(_Strict):
    """Train the target (model 0) and the K reference models here, LiRA style."""

    mode: Literal["train"]
    dataset: DatasetConfig
    recipe: RecipeData = Field(
        default_factory=lambda: dict(DEFAULT_RECIPE),
        description="A training recipe as data (privaudit.attacks.membership.recipe_from_config): "
        '{"trainer": "sklearn", "estimator": "random_forest", "params": {...}} or a torch '
        "recipe; default: a random forest of 100 trees.",
    )


class ArchitectureConfig(_Strict):
    """The registered network that safetensors weights belong to."""

    name: str = Field(
        pattern=r"^[a-z0-9_]{1,64}$",
        description="A name in privaudit.attacks.membership.architectures ('mlp', 'small_cnn').",
    )
    input_shape: list[Annotated[int, Field(ge=1, le=65_536)]] = Field(
        min_length=1, max_length=4, description="The shape of one example, e.g. [1, 28, 28]."
    )
    n_classes: int = Field(ge=2, le=100_000)
    config: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict, max_length=32)


class ModelInputs(_Strict):
    """Audit a trained model file on a dataset; train reference models here with a recipe."""

    mode: Literal["model"]
    model: ArtifactName = Field(
        description="The target model: skops (scikit-learn), safetensors (PyTorch weights of "
        "a registered architecture) or ONNX. Told apart by content; pickles are refused."
    )
    dataset: ArtifactName = Field(
        description="The audited examples: .npz, CSV or Parquet with features, a label and a "
        "member column (1 where the target trained on the example)."
    )
    features: str | list[str] | None = Field(
        default=None,
        description="The feature array (.npz, default 'features') or columns (table, default: "
        "every other column).",
    )
    label: str = "label"
    member: str = "member"
    architecture: ArchitectureConfig | None = Field(
        default=None, description="Safetensors weights only: the network they belong to."
    )
    output: Literal["probabilities", "logits"] = Field(
        default="logits", description="ONNX models only: what the model answers."
    )
    recipe: RecipeData | None = Field(
        default=None,
        description="How reference models are trained (as in mode train), on random halves of "
        "the dataset's examples. Without one, no reference models: attacks that need them "
        "(lira, rmia, shadow) are refused.",
    )


class AttackSpec(_Strict):
    """One attack: a registered name, its keyword parameters, an optional display name."""

    attack: Literal["loss", "shadow", "lira", "rmia"] = Field(
        description="A name in privaudit.registry.attacks."
    )
    name: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9_.\-]{0,63}$",
        description="Display name in the report (default: from the attack and its params, "
        "e.g. lira-offline-fixed-var).",
    )
    params: dict[str, Scalar] = Field(default_factory=dict, max_length=32)

    @model_validator(mode="after")
    def _check_params(self) -> Self:
        build_attack(self.attack, self.params)  # the attack's own checks, now
        return self

    @property
    def display_name(self) -> str:
        """The name shown in the report."""
        if self.name is not None:
            return self.name
        online = self.params.get("online", True)
        if self.attack == "lira":
            fixed = "-fixed-var" if self.params.get("fixed_variance") else ""
            return f"lira-{'online' if online else 'offline'}{fixed}"
        if self.attack == "rmia":
            return f"rmia-{'online' if online else 'offline'}"
        return self.attack


_NOT_CONFIGURABLE = {"shadow": {"classifier": "a classifier object cannot come from a config"}}


def build_attack(
    name: str, params: Mapping[str, Any], *, seed: int | None = None
) -> MembershipAttack:
    """The registered attack ``name`` built with ``params``.

    With ``seed``, an attack that takes a ``random_state`` and was not given one gets
    ``seed``, so a config run twice gives the same scores.

    Raises
    ------
    ParameterError
        If the attack does not take a parameter, or refuses its value.
    """
    attack_class = attack_registry.get(name)
    accepted = [
        parameter
        for parameter in inspect.signature(attack_class).parameters
        if parameter not in _NOT_CONFIGURABLE.get(name, {})
    ]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        refused = {key: _NOT_CONFIGURABLE.get(name, {}).get(key) for key in unknown}
        reasons = "; ".join(f"{key}: {why}" for key, why in refused.items() if why)
        raise ParameterError(
            f"attack {name!r} takes the params {accepted}; got {unknown}"
            + (f" ({reasons})" if reasons else ""),
            parameter="params",
        )
    options = dict(params)
    if seed is not None and "random_state" in accepted and options.get("random_state") is None:
        options["random_state"] = seed
    attack: MembershipAttack = attack_class(**options)
    return attack


class EpsilonConfig(_Strict):
    """How the empirical ε is estimated from each attack's scores."""

    estimate: bool = True
    delta: float = Field(default=1e-5, ge=0.0, lt=1.0)
    alpha: float = Field(default=0.05, gt=0.0, lt=1.0)
    threshold_selection: Literal["split", "bonferroni"] = Field(
        default="split",
        description="split: half of the challenges choose the threshold, the other half "
        "count; bonferroni: over the thresholds given, fixed in advance.",
    )
    thresholds: list[float] | None = Field(default=None, min_length=1, max_length=10_000)

    @model_validator(mode="after")
    def _thresholds(self) -> Self:
        if (self.threshold_selection == "bonferroni") != (self.thresholds is not None):
            raise ValueError(
                "thresholds are required with threshold_selection 'bonferroni', and only there"
            )
        if self.thresholds is not None and not all(math.isfinite(t) for t in self.thresholds):
            raise ValueError("thresholds must be finite numbers")
        return self


class GatesConfig(_Strict):
    """Ceilings on the worst attack; any one exceeded fails the audit (exit status 1)."""

    max_auc: float | None = Field(default=None, ge=0.0, le=1.0)
    max_advantage: float | None = Field(default=None, ge=0.0, le=1.0)
    max_epsilon: float | None = Field(default=None, ge=0.0)
    max_tpr_at_fpr: dict[str, float] = Field(
        default_factory=dict,
        max_length=len(DEFAULT_FPR_LIMITS),
        description='FPR -> largest TPR there, e.g. {"0.1%": 0.05} (FPRs: 10%, 1%, 0.1%, 0%).',
    )

    @field_validator("max_tpr_at_fpr")
    @classmethod
    def _known_fprs(cls, value: dict[str, float]) -> dict[str, float]:
        for fpr, limit in value.items():
            _tpr_gate(fpr, limit)
        return value

    def to_gates(self) -> list[Gate]:
        """The report's :class:`~privaudit.reports.Gate` objects."""
        gates = [
            gate(metric, limit)
            for metric, limit in (
                ("auc", self.max_auc),
                ("advantage", self.max_advantage),
                ("epsilon_lower_bound", self.max_epsilon),
            )
            if limit is not None
        ]
        return gates + [_tpr_gate(fpr, limit) for fpr, limit in self.max_tpr_at_fpr.items()]


def _tpr_gate(fpr_text: str, limit: float) -> Gate:
    text = fpr_text.strip()
    try:
        fpr = float(text.rstrip("%")) / (100.0 if text.endswith("%") else 1.0)
    except ValueError:
        raise ValueError(
            f"max_tpr_at_fpr keys are FPRs like '0.1%' or 0.001; got {fpr_text!r}"
        ) from None
    known = next((x for x in DEFAULT_FPR_LIMITS if math.isclose(x, fpr, abs_tol=1e-12)), None)
    if known is None:
        allowed = ", ".join(f"{100 * x:g}%" for x in DEFAULT_FPR_LIMITS)
        raise ValueError(f"max_tpr_at_fpr: the report has TPRs at FPR {allowed}; got {fpr_text!r}")
    if not 0.0 <= limit <= 1.0:
        raise ValueError(f"max_tpr_at_fpr[{fpr_text!r}] must be a TPR in [0, 1]; got {limit!r}")
    return gate("tpr_at_fpr", limit, fpr_limit=known)


class ReportConfig(_Strict):
    """The report's title and the formats written."""

    title: str | None = Field(default=None, min_length=1, max_length=200)
    formats: list[str] = Field(default_factory=lambda: ["json", "html", "md"], min_length=1)

    @field_validator("formats")
    @classmethod
    def _registered(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in report_formats:
                raise ValueError(
                    f"unknown report format {name!r}; known: {', '.join(report_formats.names())}"
                )
        if len(set(value)) != len(value):
            raise ValueError(f"report formats must be distinct; got {value}")
        return value


class AuditConfig(_Strict):
    """A membership-inference audit, as data (schema version :data:`CONFIG_VERSION`)."""

    version: Literal[1] = Field(description="The config schema version; 1 today.")
    inputs: Annotated[SignalsInputs | TrainInputs | ModelInputs, Field(discriminator="mode")]
    attacks: list[AttackSpec] = Field(min_length=1, max_length=MAX_ATTACKS)
    reference_models: int | None = Field(
        default=None,
        ge=1,
        le=MAX_REFERENCE_MODELS,
        description="K. Mode train, and mode model with a recipe: how many reference models "
        "to train (default 16). Mode signals: checked against the rows of signals (default: "
        "whatever they hold).",
    )
    seed: int = Field(
        default=0, ge=0, le=2**32 - 1, description="Seeds the keep matrix, every model and ε."
    )
    epsilon: EpsilonConfig = Field(default_factory=EpsilonConfig)
    gates: GatesConfig = Field(default_factory=GatesConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)

    @field_validator("attacks", mode="before")
    @classmethod
    def _names_as_specs(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"attack": item} if isinstance(item, str) else item for item in value]
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [spec.display_name for spec in self.attacks]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ValueError(
                f"attack display names must be unique; {duplicated} repeat: give each a 'name'"
            )
        k = self.reference_models
        if isinstance(self.inputs, TrainInputs) and k is not None and k < 2:
            raise ValueError("mode train needs reference_models >= 2")
        if isinstance(self.inputs, ModelInputs):
            if self.inputs.recipe is None and k is not None:
                raise ValueError(
                    "mode model trains reference models only with a recipe: add inputs.recipe "
                    "or leave reference_models out"
                )
            if self.inputs.recipe is not None and k is not None and k < 2:
                raise ValueError("mode model with a recipe needs reference_models >= 2")
        return self

    @property
    def n_reference(self) -> int | None:
        """K as configured (mode train, and mode model with a recipe: 16 by default; mode
        model without one: 0; mode signals: None = from the data)."""
        if self.reference_models is not None:
            return self.reference_models
        if isinstance(self.inputs, TrainInputs):
            return 16
        if isinstance(self.inputs, ModelInputs):
            return 0 if self.inputs.recipe is None else 16
        return None

    def artifact_names(self) -> list[str]:
        """The artifacts the config reads, in order."""
        if isinstance(self.inputs, SignalsInputs):
            return [self.inputs.signals]
        if isinstance(self.inputs, ModelInputs):
            return [self.inputs.model, self.inputs.dataset]
        return []


def parse_audit_config(data: Any, *, source: str = "the config") -> AuditConfig:
    """Validate ``data`` (parsed JSON or YAML) as an :class:`AuditConfig`.

    Raises
    ------
    ParameterError
        With every problem, each named by its path in the config (``attacks.1.params``).
    """
    if not isinstance(data, dict):
        raise ParameterError(
            f"{source} must be a mapping with version, inputs and attacks; got "
            f"{type(data).__name__}"
        )
    try:
        return AuditConfig.model_validate(data)
    except ValidationError as error:
        problems = [_describe(item) for item in error.errors(include_url=False)]
        shown = "; ".join(problems[:6])
        more = f" (and {len(problems) - 6} more)" if len(problems) > 6 else ""
        raise ParameterError(
            f"{source} is not a valid audit config (version {CONFIG_VERSION}): {shown}{more}",
            errors=problems[:50],
        ) from None


def _describe(item: Mapping[str, Any]) -> str:
    where = ".".join(str(part) for part in item.get("loc", ())) or "(top level)"
    message = str(item.get("msg", "invalid"))
    given = item.get("input")
    if item.get("type") == "float_type" and isinstance(given, str):
        try:
            float(given)
        except ValueError:
            pass
        else:
            message += f" (got the text {given!r}: YAML reads 1e-5 as text; write 1.0e-5)"
    return f"{where}: {message}"


def load_audit_config(path: str | Path) -> AuditConfig:
    """Read an audit config from a YAML (or JSON) file with ``yaml.safe_load``.

    Raises
    ------
    ConfigurationError
        If the file cannot be read or is not YAML.
    ParameterError
        If it is not a valid config.
    LimitExceededError
        If the file is larger than :data:`MAX_CONFIG_BYTES`.
    """
    import yaml

    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise LimitExceededError(
                f"{path} is {size} bytes; an audit config is at most {MAX_CONFIG_BYTES}",
                limit=MAX_CONFIG_BYTES,
            )
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "it is not UTF-8 text"
        raise ConfigurationError(f"cannot read the audit config {str(path)!r}: {reason}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigurationError(f"{path} is not valid YAML: {error}") from None
    return parse_audit_config(data, source=str(path))
