"""What every membership attack shares: the estimator contract and the input checks."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, NoReturn, Self

import numpy as np
import numpy.typing as npt

from privaudit.attacks.membership._inputs import AuditSignals, check_audit_inputs
from privaudit.errors import NotFittedError

__all__ = ["MembershipAttack"]


class MembershipAttack(ABC):
    """Base class: keyword-only parameters; ``fit(signals, keep, labels)`` returns ``self``.

    After ``fit``, ``scores_`` holds one membership score per example for the target
    model (row 0 of ``signals``): higher means more likely a member. ``keep[0]``, the
    target's true membership, is never read by an attack; pass it to
    :func:`membership_metrics` to score the audit.
    """

    min_reference: ClassVar[int] = 1
    """How many reference models the attack needs at least."""

    scores_: np.ndarray
    n_reference_: int

    def fit(
        self, signals: npt.ArrayLike, keep: npt.ArrayLike, labels: npt.ArrayLike | None = None
    ) -> Self:
        """Score every example's membership in the target model.

        Parameters
        ----------
        signals
            ``(K + 1, n)`` or ``(K + 1, n, A)`` logit-scaled confidences; row 0 is the
            target, rows ``1..K`` the reference models (:func:`logit_confidence`).
        keep
            ``(K + 1, n)`` booleans: example ``i`` was in model ``k``'s training set.
            Row 0 is ignored by the attack.
        labels
            ``(n,)`` integer classes (required by :class:`ShadowModelAttack` only).

        Returns
        -------
        self
        """
        data = check_audit_inputs(signals, keep, labels, min_reference=self.min_reference)
        scores = self._score(data)
        self.n_reference_ = data.n_reference
        self.scores_ = scores
        return self

    @abstractmethod
    def _score(self, data: AuditSignals) -> np.ndarray:
        """Membership scores ``(n,)`` of the target, from checked inputs."""

    def _params(self) -> dict[str, Any]:
        return {
            key: value
            for key, value in vars(self).items()
            if not key.endswith("_") and not key.startswith("_")
        }

    def __getattr__(self, name: str) -> NoReturn:
        # Only reached for attributes that are not set: fitted ones before fit().
        if name.endswith("_") and not name.startswith("_"):
            raise NotFittedError(
                f"{type(self).__name__}.{name} is set by fit(); call "
                "fit(signals, keep, labels) first"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self) -> str:
        params = ", ".join(f"{key}={value!r}" for key, value in self._params().items())
        return f"{type(self).__name__}({params})"
