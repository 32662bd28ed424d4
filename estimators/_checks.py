"""Input checks shared by the estimators: each error says what was given and what is allowed."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from privaudit.errors import ParameterError

Sided = Literal["two", "lower"]
SIDES: tuple[Sided, ...] = ("two", "lower")


def check_delta(delta: object) -> float:
    """Return δ as a float in [0, 1)."""
    if isinstance(delta, bool) or not isinstance(delta, int | float | np.integer | np.floating):
        raise ParameterError(f"delta must be a number in [0, 1); got {delta!r}", parameter="delta")
    value = float(delta)
    if not 0.0 <= value < 1.0:  # also refuses NaN
        raise ParameterError(
            f"delta must be in [0, 1); got {value!r} (use 0 for pure DP)", parameter="delta"
        )
    return value


def check_alpha(alpha: object) -> float:
    """Return α (one minus the confidence or credibility level) as a float in (0, 1)."""
    if isinstance(alpha, bool) or not isinstance(alpha, int | float | np.integer | np.floating):
        raise ParameterError(f"alpha must be a number in (0, 1); got {alpha!r}", parameter="alpha")
    value = float(alpha)
    if not 0.0 < value < 1.0:
        raise ParameterError(
            f"alpha must be in (0, 1), e.g. 0.05 for 95% intervals; got {value!r}",
            parameter="alpha",
        )
    return value


def check_sided(sided: object) -> Sided:
    """Return ``sided`` after checking it is ``"two"`` or ``"lower"``."""
    for side in SIDES:
        if sided == side:
            return side
    raise ParameterError(
        f"sided must be 'two' (an interval) or 'lower' (a lower bound); got {sided!r}",
        parameter="sided",
    )


def check_count(name: str, value: object, *, minimum: int = 0) -> int:
    """Return a count as an int after checking it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        hint = " (a whole number of guesses, as an int)" if isinstance(value, float) else ""
        raise ParameterError(
            f"{name} must be an integer count{hint}; got {value!r}", parameter=name
        )
    if value < minimum:
        raise ParameterError(f"{name} must be >= {minimum}; got {value}", parameter=name)
    return int(value)


def check_choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``allowed``."""
    if isinstance(value, str) and value in allowed:
        return value
    raise ParameterError(f"{name} must be one of {list(allowed)}; got {value!r}", parameter=name)


def check_finite_epsilon(epsilon: object) -> float:
    """Return ε >= 0 (``inf`` allowed) as a float."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float | np.integer | np.floating):
        raise ParameterError(f"epsilon must be a number >= 0; got {epsilon!r}", parameter="epsilon")
    value = float(epsilon)
    if math.isnan(value) or value < 0:
        raise ParameterError(f"epsilon must be >= 0; got {value!r}", parameter="epsilon")
    return value


def check_fraction(name: str, value: object) -> float:
    """Return a share of the trials as a float in (0, 1)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ParameterError(f"{name} must be a number in (0, 1); got {value!r}", parameter=name)
    fraction = float(value)
    if not 0.0 < fraction < 1.0:  # also refuses NaN
        raise ParameterError(
            f"{name} must be in (0, 1), e.g. 0.5; got {fraction!r}", parameter=name
        )
    return fraction
