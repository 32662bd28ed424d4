"""The one input contract of the membership attacks, checked once.

* ``signals``: float array of shape ``(K + 1, n)`` or ``(K + 1, n, A)``: the
  logit-scaled confidence (see :mod:`privaudit.attacks.membership._signals`) of model
  ``k`` on example ``i`` (and augmented query ``a``). Row 0 is the **target** model,
  rows ``1..K`` are the **reference** (shadow) models trained like it.
* ``keep``: boolean array of shape ``(K + 1, n)``: ``keep[k, i]`` is true when example
  ``i`` was in the training set of model ``k``. Attacks read rows ``1..K`` only; row 0
  is the ground truth the audit is scored against and never reaches an attack's scores.
* ``labels``: integer class of each example, shape ``(n,)`` (needed by attacks that
  condition on the class, such as :class:`ShadowModelAttack`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from privaudit.errors import DataError

__all__ = ["AuditSignals", "check_audit_inputs"]


@dataclass(frozen=True)
class AuditSignals:
    """Validated inputs: signals always carry an augmentation axis ``(K + 1, n, A)``."""

    signals: np.ndarray
    keep: np.ndarray
    labels: np.ndarray | None

    @property
    def n_reference(self) -> int:
        """K, the number of reference models."""
        return int(self.signals.shape[0]) - 1

    @property
    def n_examples(self) -> int:
        """n, the number of audited examples."""
        return int(self.signals.shape[1])

    @property
    def target(self) -> np.ndarray:
        """The target model's signals, ``(n, A)``."""
        return np.asarray(self.signals[0])

    @property
    def reference(self) -> np.ndarray:
        """The reference models' signals, ``(K, n, A)``."""
        return np.asarray(self.signals[1:])

    @property
    def reference_keep(self) -> np.ndarray:
        """The reference models' membership, ``(K, n)``."""
        return np.asarray(self.keep[1:])


def check_signals(signals: npt.ArrayLike, *, name: str = "signals") -> np.ndarray:
    """Return ``signals`` as float64 of shape ``(M, n, A)`` after checking it is finite."""
    try:
        array = np.asarray(signals, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise DataError(f"{name} must be a numeric array; {error}") from error
    if array.ndim not in (2, 3):
        raise DataError(
            f"{name} must have shape (models, n) or (models, n, augmentations) with row 0 the "
            f"target model; got shape {array.shape}"
        )
    if array.ndim == 2:
        array = array[:, :, None]
    if 0 in array.shape:
        raise DataError(f"{name} must not be empty; got shape {array.shape}")
    bad = ~np.isfinite(array)
    if bad.any():
        rows, cols = np.nonzero(bad.any(axis=2))
        raise DataError(
            f"{name} contain {int(bad.sum())} NaN or infinite values (first at model {rows[0]}, "
            f"example {cols[0]}); compute signals with logit_confidence, which floors "
            "probabilities so every signal is finite"
        )
    return array


def check_audit_inputs(
    signals: npt.ArrayLike,
    keep: npt.ArrayLike,
    labels: npt.ArrayLike | None = None,
    *,
    min_reference: int = 1,
) -> AuditSignals:
    """Check the attack input contract and return it normalised.

    Raises
    ------
    DataError
        If a shape disagrees, a value is not finite, ``keep`` is not boolean (or 0/1),
        there are fewer than ``min_reference`` reference models, or (with reference
        models required) no reference model has a member or none has a non-member.
    """
    array = check_signals(signals)
    n_models, n_examples = array.shape[:2]
    keep_array = np.asarray(keep)
    if keep_array.dtype != np.bool_:
        if not np.issubdtype(keep_array.dtype, np.number) or not np.isin(keep_array, (0, 1)).all():
            raise DataError(
                f"keep must be booleans (or 0/1): keep[k, i] says whether example i was in "
                f"model k's training set; got dtype {keep_array.dtype}"
            )
        keep_array = keep_array.astype(bool)
    if keep_array.shape != (n_models, n_examples):
        raise DataError(
            f"keep must have shape (models, n) = {(n_models, n_examples)} to match signals; "
            f"got {keep_array.shape}"
        )
    if n_models - 1 < min_reference:
        raise DataError(
            f"this attack needs at least {min_reference} reference model(s) in rows 1.. of "
            f"signals (row 0 is the target); got {n_models - 1}. Train reference models like "
            "the target on random halves of the data"
        )
    if min_reference > 0:
        reference_keep = keep_array[1:]
        if not reference_keep.any():
            raise DataError(
                "keep has no member in any reference model (rows 1..K are all False): "
                "the attack cannot learn what membership looks like"
            )
        if reference_keep.all():
            raise DataError(
                "keep has no non-member in any reference model (rows 1..K are all True): "
                "the attack cannot learn what non-membership looks like"
            )
    label_array: np.ndarray | None = None
    if labels is not None:
        label_array = np.asarray(labels)
        if label_array.shape != (n_examples,) or not np.issubdtype(label_array.dtype, np.integer):
            raise DataError(
                f"labels must be {n_examples} integer class indices (one per example); got "
                f"dtype {label_array.dtype} and shape {label_array.shape}"
            )
    return AuditSignals(signals=array, keep=keep_array, labels=label_array)
