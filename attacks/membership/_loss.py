"""The LOSS (threshold) attack of Yeom et al. [YGFJ18]_.

References
----------
.. [YGFJ18] S. Yeom, I. Giacomelli, M. Fredrikson, S. Jha, "Privacy Risk in Machine
   Learning: Analyzing the Connection to Overfitting", IEEE CSF 2018, arXiv:1709.01604.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from privaudit.attacks.membership._base import MembershipAttack
from privaudit.attacks.membership._inputs import AuditSignals
from privaudit.registry import attacks

__all__ = ["LossAttack"]


@attacks.register("loss")
class LossAttack(MembershipAttack):
    """Guess "member" when the target's loss on the example is low [YGFJ18]_.

    The score is the target's logit-scaled confidence ``φ`` (the mean over augmented
    queries), a decreasing function of the cross-entropy loss ``softplus(−φ)``; so
    thresholding the score is thresholding the loss, and the ROC curve is that of
    Yeom's attack at every threshold (the paper's own threshold, the average
    training loss, is one point on it). The attack needs no reference model; rows
    ``1..K`` of ``signals`` are ignored.

    Attributes
    ----------
    scores_ : numpy.ndarray
        ``(n,)`` membership scores of the target model (higher = member).

    Examples
    --------
    >>> import numpy as np
    >>> signals = np.array([[3.0, -1.0, 0.5]])  # a target and no reference model
    >>> LossAttack().fit(signals, keep=np.array([[True, False, True]])).scores_.tolist()
    [3.0, -1.0, 0.5]
    """

    min_reference: ClassVar[int] = 0

    def __init__(self) -> None:
        pass

    def _score(self, data: AuditSignals) -> np.ndarray:
        return np.asarray(data.target.mean(axis=1), dtype=np.float64)
