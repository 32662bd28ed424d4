"""Membership-inference attacks on one input contract, and how to score them.

Every attack reads the same three arrays (see docs/membership.md):

* ``signals`` ``(K + 1, n[, A])``: the logit-scaled confidence
  ``φ = log p_y − log Σ_{y'≠y} p_{y'}`` of model ``k`` on example ``i`` (and augmented
  query ``a``); row 0 is the target model, rows ``1..K`` reference models trained
  like it. Compute it with :func:`logit_confidence` (from probabilities),
  :func:`logit_confidence_from_logits` or :func:`logit_confidence_from_loss`.
* ``keep`` ``(K + 1, n)``: whether example ``i`` was in model ``k``'s training set;
  attacks read rows ``1..K`` only.
* ``labels`` ``(n,)``: the class of each example.

Attacks (scikit-learn style: keyword-only parameters, ``fit`` returns ``self``,
``scores_`` holds the target's membership scores, higher = member):

* :class:`LossAttack`: Yeom et al.'s loss threshold (no reference model needed).
* :class:`ShadowModelAttack`: Shokri et al.'s per-class attack classifiers.
* :class:`LiRA`: Carlini et al.'s likelihood-ratio attack, online or offline.
* :class:`RMIA`: Zarifzadeh et al.'s pairwise likelihood ratio against a population.

:func:`membership_metrics` turns scores and ``keep[0]`` into AUC, TPR at low FPR,
balanced accuracy and advantage, each with its member and non-member counts.
:func:`build_membership_report` turns attacks' scores into the canonical audit report
(``privaudit.reports``), with an empirical ε whose threshold is chosen honestly.
:func:`run_digits_demo` audits a random forest on scikit-learn's digits end to end;
``privaudit audit --demo`` runs it from the command line.

Reference models are trained from a *recipe* (:class:`SklearnRecipe`,
:class:`TorchRecipe`; registered by trainer name in :data:`trainers`) as resumable
work units: a :class:`ReferenceTrainingPlan` fixes seed, models, data and recipe, and
:func:`run_reference_training` trains the units not yet done in a working directory on
an executor (:mod:`privaudit.executor`).

Your own model and data: :func:`load_dataset` reads the audited examples, their
labels and the target's membership from ``.npz``, CSV or Parquet; the model is queried
through an oracle of :mod:`privaudit.attacks.oracles` (skops, safetensors with an
architecture from :data:`architectures`, ONNX, or an HTTP endpoint).

An audit can also be described as data: :class:`AuditConfig` (strict, versioned; read
from YAML with :func:`load_audit_config`) names the inputs (precomputed signals, or
models trained here with a recipe), the attacks, K, the seed, ε and the gates;
:func:`run_audit` runs it in stages, keeping trained models as resumable work units.
``privaudit audit --config audit.yaml`` and the service's ``POST /v1/audits`` both use
them.
"""

from privaudit.attacks.membership._architectures import (
    architecture_defaults,
    architectures,
    build_architecture,
)
from privaudit.attacks.membership._artifacts import read_npz
from privaudit.attacks.membership._audit import (
    STAGES,
    AuditInputs,
    AuditOutcome,
    check_audit_artifacts,
    run_audit,
)
from privaudit.attacks.membership._base import MembershipAttack
from privaudit.attacks.membership._config import (
    CONFIG_VERSION,
    AttackSpec,
    AuditConfig,
    build_attack,
    load_audit_config,
    parse_audit_config,
)
from privaudit.attacks.membership._datasets import AuditDataset, load_dataset
from privaudit.attacks.membership._digits_demo import (
    DEMO_ATTACKS,
    DIGITS_RECIPE,
    DigitsDemoResult,
    digits_forest,
    digits_keep_matrix,
    run_digits_demo,
    train_digits_unit,
)
from privaudit.attacks.membership._lira import LiRA
from privaudit.attacks.membership._loss import LossAttack
from privaudit.attacks.membership._metrics import (
    DEFAULT_FPR_LIMITS,
    MembershipMetrics,
    RocCurve,
    TprAtFpr,
    membership_metrics,
    roc_auc,
    roc_curve,
)
from privaudit.attacks.membership._recipes import (
    SklearnRecipe,
    TorchRecipe,
    TrainingRecipe,
    recipe_from_config,
    sklearn_estimators,
    trainers,
    warm_up_torch,
)
from privaudit.attacks.membership._reference_training import (
    ReferenceTrainingPlan,
    ReferenceTrainingResult,
    dataset_fingerprint,
    reference_keep_matrix,
    run_reference_training,
    train_reference_unit,
)
from privaudit.attacks.membership._report import BLACK_BOX_THREAT_MODEL, build_membership_report
from privaudit.attacks.membership._rmia import RMIA
from privaudit.attacks.membership._shadow import ShadowModelAttack
from privaudit.attacks.membership._signals import (
    logit_confidence,
    logit_confidence_from_logits,
    logit_confidence_from_loss,
    true_label_probability,
)

__all__ = [
    "BLACK_BOX_THREAT_MODEL",
    "CONFIG_VERSION",
    "DEFAULT_FPR_LIMITS",
    "DEMO_ATTACKS",
    "DIGITS_RECIPE",
    "RMIA",
    "STAGES",
    "AttackSpec",
    "AuditConfig",
    "AuditDataset",
    "AuditInputs",
    "AuditOutcome",
    "DigitsDemoResult",
    "LiRA",
    "LossAttack",
    "MembershipAttack",
    "MembershipMetrics",
    "ReferenceTrainingPlan",
    "ReferenceTrainingResult",
    "RocCurve",
    "ShadowModelAttack",
    "SklearnRecipe",
    "TorchRecipe",
    "TprAtFpr",
    "TrainingRecipe",
    "architecture_defaults",
    "architectures",
    "build_architecture",
    "build_attack",
    "build_membership_report",
    "check_audit_artifacts",
    "dataset_fingerprint",
    "digits_forest",
    "digits_keep_matrix",
    "load_audit_config",
    "load_dataset",
    "logit_confidence",
    "logit_confidence_from_logits",
    "logit_confidence_from_loss",
    "membership_metrics",
    "parse_audit_config",
    "read_npz",
    "recipe_from_config",
    "reference_keep_matrix",
    "roc_auc",
    "roc_curve",
    "run_audit",
    "run_digits_demo",
    "run_reference_training",
    "sklearn_estimators",
    "train_digits_unit",
    "train_reference_unit",
    "trainers",
    "true_label_probability",
    "warm_up_torch",
]
