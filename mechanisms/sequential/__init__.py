"""Sequential learning with private signals: smoothed randomized response and friends.

Agents act one after another on a private signal and the public history; each
publishes a randomized action, and the public log-likelihood ratio is updated from
the published actions alone (post-processing). See docs/sequential.md.

* :class:`SmoothedRandomizedResponse`: Gaussian signals; flip probability
  ``A·exp(−ε|s − t(l)|)`` around the Bayesian threshold; ε-metric DP in the signal.
* :class:`RandomizedResponse`: binary signals; constant flip before an information
  cascade; ε-DP; closed-form cascade probabilities and times.
* :func:`simulate_sequential_learning`: many histories at once (vectorised over
  paths), with :func:`stopping_time`, :func:`first_correct_time` and
  :func:`wrong_action_count`.
"""

from privaudit.mechanisms.sequential._binary import RandomizedResponse
from privaudit.mechanisms.sequential._model import SequentialMechanism
from privaudit.mechanisms.sequential._simulate import (
    SequentialLearningResult,
    first_correct_time,
    simulate_sequential_learning,
    stopping_time,
    wrong_action_count,
)
from privaudit.mechanisms.sequential._smoothed import SmoothedRandomizedResponse

__all__ = [
    "RandomizedResponse",
    "SequentialLearningResult",
    "SequentialMechanism",
    "SmoothedRandomizedResponse",
    "first_correct_time",
    "simulate_sequential_learning",
    "stopping_time",
    "wrong_action_count",
]
