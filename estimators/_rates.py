"""ε from one pair of error rates: the smallest ε whose privacy region holds them.

By the hypothesis-testing characterisation of (ε, δ)-DP [KOV15]_, every test that
tells neighbouring inputs apart has (FPR, FNR) in the region
``FPR + e^ε FNR >= 1 − δ``, ``e^ε FPR + FNR >= 1 − δ`` and their mirror images
(the same with 1 − FNR and 1 − FPR, for tests worse than random). Inverting the
constraints gives the ε a test exhibits.

References
----------
.. [KOV15] P. Kairouz, S. Oh, P. Viswanath, "The Composition Theorem for Differential
   Privacy", ICML 2015, arXiv:1311.0776.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from privaudit.errors import ParameterError
from privaudit.estimators._checks import check_delta

FloatArray = npt.NDArray[np.float64]


def epsilon_from_rates(fpr: float, fnr: float, *, delta: float = 0.0) -> float:
    """The smallest ε such that a test with these error rates is allowed by (ε, δ)-DP.

    Parameters
    ----------
    fpr, fnr
        False-positive and false-negative rate of a membership test, in [0, 1].
    delta
        The δ of (ε, δ)-DP, in [0, 1).

    Returns
    -------
    float
        ``max(0, log((1 − δ − FPR)/FNR), log((1 − δ − FNR)/FPR))`` after reflecting a
        worse-than-random test (FPR + FNR > 1) to ``(1 − FNR, 1 − FPR)``; 0 when the
        test is no better than random within δ (no evidence); ``inf`` when one rate
        is 0 and the other leaves more than δ (no finite ε allows the test).

    Examples
    --------
    >>> round(epsilon_from_rates(0.1, 0.1), 4)       # log(0.9 / 0.1)
    2.1972
    >>> epsilon_from_rates(0.75, 0.75) == epsilon_from_rates(0.25, 0.25)  # reflected
    True
    >>> epsilon_from_rates(0.5, 0.5), epsilon_from_rates(0.0, 1.0)
    (0.0, 0.0)
    >>> epsilon_from_rates(0.0, 0.3)
    inf
    """
    checked = [_check_rate(name, value) for name, value in (("fpr", fpr), ("fnr", fnr))]
    delta = check_delta(delta)
    return float(epsilon_array(np.asarray(checked[0]), np.asarray(checked[1]), delta))


def epsilon_array(fpr: FloatArray, fnr: FloatArray, delta: float) -> FloatArray:
    """Vectorised :func:`epsilon_from_rates` without input checks (rates in [0, 1])."""
    worse_than_random = fpr > 1.0 - fnr
    reflected_fpr = np.where(worse_than_random, 1.0 - fnr, fpr)
    reflected_fnr = np.where(worse_than_random, 1.0 - fpr, fnr)
    low = np.minimum(reflected_fpr, reflected_fnr)
    high = np.maximum(reflected_fpr, reflected_fnr)
    # The "no evidence" test comes first: (0, 1) is the never-say-member test, ε = 0.
    no_evidence = high >= 1.0 - delta - low
    with np.errstate(divide="ignore", invalid="ignore"):
        # A difference of logs: the ratio itself overflows for subnormal rates.
        epsilon = np.log(1.0 - delta - high) - np.log(low)
    result: FloatArray = np.where(no_evidence, 0.0, np.where(low == 0.0, np.inf, epsilon))
    return result


def _check_rate(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ParameterError(f"{name} must be a number in [0, 1]; got {value!r}", parameter=name)
    rate = float(value)
    if not 0.0 <= rate <= 1.0:  # also refuses NaN
        raise ParameterError(
            f"{name} must be an error rate in [0, 1]; got {rate!r}", parameter=name
        )
    return rate
