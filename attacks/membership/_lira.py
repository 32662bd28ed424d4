"""The likelihood-ratio attack (LiRA) of Carlini et al. [CCN22]_.

References
----------
.. [CCN22] N. Carlini, S. Chien, M. Nasr, S. Song, A. Terzis, F. Tramèr, "Membership
   Inference Attacks From First Principles", IEEE S&P 2022, arXiv:2112.03570.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy.special import log_ndtr

from privaudit.attacks.membership._base import MembershipAttack
from privaudit.attacks.membership._inputs import AuditSignals
from privaudit.errors import DataError, ParameterError
from privaudit.registry import attacks

__all__ = ["LiRA"]


@dataclass(frozen=True)
class _GroupStats:
    """Per-example location and scale of one group (IN or OUT), shape ``(n, A)``."""

    count: np.ndarray
    median: np.ndarray
    std: np.ndarray
    global_std: float


def _group_stats(values: np.ndarray, member: np.ndarray, *, group: str) -> _GroupStats:
    """Median, standard deviation and pooled standard deviation of a masked group.

    ``values`` is ``(K, n, A)``; ``member`` ``(K, n)`` marks which models are in the group.
    """
    mask = np.broadcast_to(member[:, :, None], values.shape)
    count = mask.sum(axis=0)
    # Median of the first c sorted values: push the others to +inf before sorting.
    ordered = np.sort(np.where(mask, values, np.inf), axis=0)
    low = np.clip((count - 1) // 2, 0, None)
    high = np.clip(count // 2, 0, None)
    upper = np.clip(high, 0, values.shape[0] - 1)
    take_low = np.take_along_axis(ordered, low[None], axis=0)[0]
    take_high = np.take_along_axis(ordered, upper[None], axis=0)[0]
    with np.errstate(invalid="ignore"):
        median = np.where(count > 0, 0.5 * (take_low + take_high), 0.0)
    safe_count = np.maximum(count, 1)
    mean = np.where(mask, values, 0.0).sum(axis=0) / safe_count
    squares = np.where(mask, (values - mean[None]) ** 2, 0.0).sum(axis=0)
    std = np.sqrt(squares / safe_count)
    # Pooled within-example variance over the examples with at least two models.
    pooled = count >= 2
    degrees = (count[pooled] - 1).sum()
    if degrees > 0:
        global_var = squares[pooled].sum() / degrees
    else:  # no example has two models in this group: the spread of the whole group
        global_var = float(np.var(values[mask])) if mask.any() else 0.0
    if not global_var > 0:
        raise DataError(
            f"the reference models' {group} signals do not vary (zero variance), so no "
            "Gaussian can be fitted; use more reference models, or a floor in "
            "logit_confidence that keeps confident predictions apart"
        )
    return _GroupStats(count=count, median=median, std=std, global_std=float(np.sqrt(global_var)))


@attacks.register("lira")
class LiRA(MembershipAttack):
    """Likelihood-ratio membership test with Gaussians fitted per example [CCN22]_.

    For each example and augmented query, the reference models that trained on it
    (IN) and those that did not (OUT) give two samples of the signal; LiRA fits a
    Gaussian to each, ``N(μ_in, σ_in²)`` and ``N(μ_out, σ_out²)`` with ``μ`` the median
    (as the authors' code does) and ``σ`` the standard deviation, and scores the
    target's signal ``φ``:

    * online: ``Λ = log N(φ; μ_in, σ_in²) − log N(φ; μ_out, σ_out²)``;
    * offline (``online=False``, OUT models only): the one-sided test of the paper,
      reported as ``Λ = −log(1 − Φ((φ − μ_out)/σ_out))``, minus the log p-value of
      "``φ`` comes from the OUT distribution", which keeps full resolution in the
      upper tail where members lie.

    Augmented queries are treated as independent: the score is the mean of the
    per-query scores (Section VI-A of the paper).

    Parameters
    ----------
    online
        Use IN and OUT models (True) or OUT models only (False).
    fixed_variance
        Use one pooled within-example standard deviation per group (IN, OUT) for every
        example instead of each example's own; the paper recommends it below about 64
        reference models. The pooled estimate is ``Σ_i Σ_k (φ_ki − φ̄_i)² / Σ_i (c_i − 1)``
        over examples with ``c_i >= 2`` models in the group (the authors' code instead
        takes ``np.std`` of all IN signals, which mixes in the spread between examples).
    min_models_for_variance
        Examples with fewer models than this in a group, or whose group has zero
        spread, use the pooled standard deviation for that group, whatever
        ``fixed_variance`` says. An example with no IN (or no OUT) model at all takes
        ``μ_in = μ_out + d`` (or ``μ_out = μ_in − d``), with ``d`` the median of
        ``μ_in − μ_out`` over the examples that have both. Scores are therefore always
        finite.

    Attributes
    ----------
    scores_ : numpy.ndarray
        ``(n,)`` membership scores of the target model (higher = member).
    n_fallback_ : int
        How many examples used a pooled standard deviation or an imputed median
        because they had too few IN or OUT models (0 with ``fixed_variance`` except
        for imputed medians).

    Examples
    --------
    >>> import numpy as np
    >>> from privaudit.randomness import simulation_generator
    >>> rng = simulation_generator(0)
    >>> keep = rng.random((33, 500)) < 0.5
    >>> signals = rng.normal(size=(33, 500)) + 1.0 * keep  # members score 1 higher
    >>> attack = LiRA(online=True).fit(signals, keep)
    >>> attack.scores_.shape, bool(np.isfinite(attack.scores_).all())
    ((500,), True)
    """

    min_reference: ClassVar[int] = 1

    def __init__(
        self,
        *,
        online: bool = True,
        fixed_variance: bool = False,
        min_models_for_variance: int = 2,
    ) -> None:
        if not isinstance(online, bool):
            raise ParameterError(f"online must be True or False; got {online!r}")
        if not isinstance(fixed_variance, bool):
            raise ParameterError(f"fixed_variance must be True or False; got {fixed_variance!r}")
        if (
            isinstance(min_models_for_variance, bool)
            or not isinstance(min_models_for_variance, int)
            or min_models_for_variance < 2
        ):
            raise ParameterError(
                "min_models_for_variance must be an int >= 2 (a standard deviation needs two "
                f"values); got {min_models_for_variance!r}",
                parameter="min_models_for_variance",
            )
        self.online = online
        self.fixed_variance = fixed_variance
        self.min_models_for_variance = min_models_for_variance

    def _scale(self, stats: _GroupStats) -> tuple[np.ndarray, np.ndarray]:
        """The σ each example uses and where it fell back to the pooled one."""
        fallback = (stats.count < self.min_models_for_variance) | ~(stats.std > 0)
        if self.fixed_variance:
            return np.full_like(stats.std, stats.global_std), np.zeros_like(fallback)
        return np.where(fallback, stats.global_std, stats.std), fallback

    def _score(self, data: AuditSignals) -> np.ndarray:
        reference, member = data.reference, data.reference_keep
        target = data.target
        out = _group_stats(reference, ~member, group="OUT")
        sigma_out, fell_back_out = self._scale(out)
        if not self.online:
            no_out = out.count == 0
            if no_out.any():  # impute from the IN models: μ_out = μ_in − d
                inside = _group_stats(reference, member, group="IN")
                shift = _median_shift(inside, out)
                mu_out = np.where(no_out, inside.median - shift, out.median)
            else:
                mu_out = out.median
            self.n_fallback_ = int((fell_back_out | no_out).any(axis=1).sum())
            z = (target - mu_out) / sigma_out
            return np.asarray(-log_ndtr(-z).mean(axis=1), dtype=np.float64)
        inside = _group_stats(reference, member, group="IN")
        sigma_in, fell_back_in = self._scale(inside)
        shift = _median_shift(inside, out)
        mu_in = np.where(inside.count > 0, inside.median, out.median + shift)
        mu_out = np.where(out.count > 0, out.median, inside.median - shift)
        fell_back = fell_back_in | fell_back_out | (inside.count == 0) | (out.count == 0)
        self.n_fallback_ = int(fell_back.any(axis=1).sum())
        log_in = -0.5 * ((target - mu_in) / sigma_in) ** 2 - np.log(sigma_in)
        log_out = -0.5 * ((target - mu_out) / sigma_out) ** 2 - np.log(sigma_out)
        return np.asarray((log_in - log_out).mean(axis=1), dtype=np.float64)


def _median_shift(inside: _GroupStats, out: _GroupStats) -> np.ndarray:
    """Median of ``μ_in − μ_out`` per augmentation over the examples that have both."""
    both = (inside.count > 0) & (out.count > 0)
    shifts = np.where(both, inside.median - out.median, np.nan)
    result = np.zeros(shifts.shape[1])
    for column in range(shifts.shape[1]):  # a handful of augmentations
        values = shifts[:, column][both[:, column]]
        if values.size:
            result[column] = np.median(values)
    return result
