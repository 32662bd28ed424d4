"""The robust membership-inference attack (RMIA) of Zarifzadeh, Liu and Shokri [ZLS24]_.

References
----------
.. [ZLS24] S. Zarifzadeh, P. Liu, R. Shokri, "Low-Cost High-Power Membership Inference
   Attacks", ICML 2024, arXiv:2312.03262.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Literal, Self

import numpy as np
import numpy.typing as npt

from privaudit.attacks.membership._base import MembershipAttack
from privaudit.attacks.membership._inputs import AuditSignals, check_signals
from privaudit.attacks.membership._signals import true_label_probability
from privaudit.errors import DataError, ParameterError
from privaudit.randomness import simulation_generator
from privaudit.registry import attacks

__all__ = ["RMIA"]

OFFLINE_A_GRID = tuple(round(0.1 * step, 1) for step in range(11))
"""The values of ``a`` tried by ``offline_a="auto"`` (0, 0.1, ..., 1), as in [ZLS24]_."""


def _marginal(
    probabilities: np.ndarray, member: np.ndarray, *, online: bool, offline_a: float
) -> np.ndarray:
    """``Pr(x)``: the reference models' mean true-label probability, ``(n, A)``.

    Online, the mean over all reference models (IN and OUT). Offline, the mean over OUT
    models corrected by the linear approximation of the IN mean from the paper:
    ``Pr(x) = ½((1 + a)·P̄_out(x) + (1 − a))``. An example with no OUT model falls back
    to the mean over all its models.
    """
    mean_all = probabilities.mean(axis=0)
    if online:
        return np.asarray(mean_all, dtype=np.float64)
    out = np.broadcast_to(~member[:, :, None], probabilities.shape)
    count = out.sum(axis=0)
    mean_out = np.where(out, probabilities, 0.0).sum(axis=0) / np.maximum(count, 1)
    corrected = 0.5 * ((1.0 + offline_a) * mean_out + (1.0 - offline_a))
    return np.asarray(np.where(count > 0, corrected, mean_all), dtype=np.float64)


def _pairwise_score(ratio_x: np.ndarray, ratio_z: np.ndarray, gamma: float) -> np.ndarray:
    """``mean_a P_z[ratio_x / ratio_z >= γ]`` by sorting (no n × m matrix), ``(n,)``."""
    scores = np.empty(ratio_x.shape)
    for column in range(ratio_x.shape[1]):  # a handful of augmentations
        ordered = np.sort(ratio_z[:, column])
        # ratio_x / ratio_z >= γ  ⇔  ratio_z <= ratio_x / γ  (all ratios are > 0)
        scores[:, column] = np.searchsorted(ordered, ratio_x[:, column] / gamma, side="right")
    return np.asarray(scores.mean(axis=1) / ratio_z.shape[0], dtype=np.float64)


@attacks.register("rmia")
class RMIA(MembershipAttack):
    """Pairwise likelihood-ratio test against population examples [ZLS24]_.

    With ``p(x|θ)`` the true-label probability (``sigmoid`` of the signal) under the
    target ``θ`` and ``Pr(x)`` its average under reference models, the ratio of ``x``
    against a population example ``z`` is

    .. math:: LR(x, z) = \\frac{p(x|θ) / \\Pr(x)}{p(z|θ) / \\Pr(z)}

    and the score is the fraction of population examples it dominates,
    ``Score(x) = P_z[LR(x, z) >= γ]`` (the mean over augmented queries of that
    fraction when there are several).

    Parameters
    ----------
    online
        Average over all reference models (True), or over OUT models only with the
        offline correction ``Pr(x) = ½((1 + a)·P̄_out(x) + (1 − a))`` (False).
    offline_a
        The ``a`` of the offline correction in [0, 1], or ``"auto"``: pick it from
        ``OFFLINE_A_GRID`` by the AUC it gives when reference model 1 plays the target
        and models 2..K the references (its membership is known, the target's is not
        used). Ignored when ``online``.
    gamma
        The threshold γ > 0 of the pairwise test (the library default of the authors is
        1; their experiments also use 2).
    n_population
        How many population examples ``z`` to compare against. ``None`` uses every
        audited example (or every row given as ``population_signals``); an int draws
        that many without replacement with ``random_state``.
    random_state
        Seed of the population draw (simulation randomness).

    Attributes
    ----------
    scores_ : numpy.ndarray
        ``(n,)`` scores in [0, 1] (higher = member).
    offline_a_ : float or None
        The ``a`` used (tuned when ``offline_a="auto"``); ``None`` online.
    n_population_ : int
        The number of population examples compared against.

    Notes
    -----
    By default the population is the audited examples themselves, about half of
    which are the target's members; pass ``population_signals`` (signals of
    examples no model trained on) to ``fit`` for the paper's setting. With one fixed
    population the score is a non-decreasing step function of ``p(x|θ)/Pr(x)``, so
    the population only sets the resolution of the ranking (``m + 1`` levels).

    Examples
    --------
    >>> import numpy as np
    >>> from privaudit.randomness import simulation_generator
    >>> rng = simulation_generator(0)
    >>> keep = rng.random((5, 400)) < 0.5
    >>> signals = rng.normal(size=(5, 400)) + 1.5 * keep
    >>> scores = RMIA(online=False, offline_a="auto").fit(signals, keep).scores_
    >>> bool(((0 <= scores) & (scores <= 1)).all())
    True
    """

    min_reference: ClassVar[int] = 1

    def __init__(
        self,
        *,
        online: bool = True,
        offline_a: float | Literal["auto"] = "auto",
        gamma: float = 1.0,
        n_population: int | None = None,
        random_state: int | None = None,
    ) -> None:
        if not isinstance(online, bool):
            raise ParameterError(f"online must be True or False; got {online!r}")
        if offline_a != "auto" and (
            isinstance(offline_a, bool)
            or not isinstance(offline_a, int | float)
            or not 0.0 <= float(offline_a) <= 1.0
        ):
            raise ParameterError(
                f"offline_a must be a number in [0, 1] or 'auto'; got {offline_a!r}",
                parameter="offline_a",
            )
        if (
            isinstance(gamma, bool)
            or not isinstance(gamma, int | float)
            or not (np.isfinite(gamma) and gamma > 0)
        ):
            raise ParameterError(
                f"gamma must be a finite number > 0 (1 or 2 in the paper); got {gamma!r}",
                parameter="gamma",
            )
        if n_population is not None and (
            isinstance(n_population, bool) or not isinstance(n_population, int) or n_population < 1
        ):
            raise ParameterError(
                f"n_population must be None or an int >= 1; got {n_population!r}",
                parameter="n_population",
            )
        self.online = online
        self.offline_a = offline_a
        self.gamma = float(gamma)
        self.n_population = n_population
        self.random_state = random_state

    @property
    def min_reference_for_fit(self) -> int:
        """Tuning ``a`` needs a pseudo-target and at least one reference besides it."""
        return 2 if (not self.online and self.offline_a == "auto") else 1

    def fit(
        self,
        signals: npt.ArrayLike,
        keep: npt.ArrayLike,
        labels: npt.ArrayLike | None = None,
        *,
        population_signals: npt.ArrayLike | None = None,
    ) -> Self:
        """Score the target's examples; see :meth:`MembershipAttack.fit`.

        Parameters
        ----------
        population_signals
            Optional ``(K + 1, m[, A])`` signals of population examples that no model
            (target or reference) trained on, same model rows as ``signals``.
        """
        self._population = None
        if population_signals is not None:
            population = check_signals(population_signals, name="population_signals")
            shape = np.shape(signals)
            if population.shape[0] != shape[0] or population.shape[2] != (
                shape[2] if len(shape) == 3 else 1
            ):
                raise DataError(
                    "population_signals must have the same models (rows) and augmentations "
                    f"as signals {shape}; got {population.shape}"
                )
            self._population = population
        if np.shape(signals)[0] - 1 < self.min_reference_for_fit:
            raise DataError(
                "RMIA with offline_a='auto' needs at least 2 reference models (one plays the "
                "target to tune a); pass a number for offline_a or train more reference models"
            )
        super().fit(signals, keep, labels)
        return self

    def _score(self, data: AuditSignals) -> np.ndarray:
        population = self._population
        if population is None:
            population_probs = None
            population_member = None
        else:
            population_probs = true_label_probability(population)
            population_member = np.zeros(population.shape[:2], dtype=bool)
        probabilities = true_label_probability(data.signals)
        n_pool = data.n_examples if population is None else population.shape[1]
        if self.n_population is None or self.n_population >= n_pool:
            chosen = np.arange(n_pool)
        else:
            rng = simulation_generator(self.random_state)
            chosen = np.sort(rng.choice(n_pool, size=self.n_population, replace=False))
        self.n_population_ = int(chosen.size)

        def score(models: np.ndarray, a: float) -> np.ndarray:
            """RMIA scores with model ``models[0]`` as target, the rest as references."""
            probs = probabilities[models]
            member = data.keep[models[1:]]
            ratio_x = probs[0] / _marginal(probs[1:], member, online=self.online, offline_a=a)
            if population_probs is None or population_member is None:
                ratio_z = ratio_x[chosen]
            else:
                pop = population_probs[models][:, chosen]
                pop_member = population_member[models[1:]][:, chosen]
                ratio_z = pop[0] / _marginal(pop[1:], pop_member, online=self.online, offline_a=a)
            return _pairwise_score(ratio_x, ratio_z, self.gamma)

        all_models = np.arange(data.signals.shape[0])
        if self.online:
            self.offline_a_ = None
        elif self.offline_a == "auto":
            self.offline_a_ = _tune_offline_a(score, data)
        else:
            self.offline_a_ = float(self.offline_a)
        return score(all_models, self.offline_a_ or 0.0)


def _tune_offline_a(score: Callable[[np.ndarray, float], np.ndarray], data: AuditSignals) -> float:
    """The grid value of ``a`` with the best AUC when reference model 1 plays the target."""
    from privaudit.attacks.membership._metrics import roc_auc

    pseudo_target = np.concatenate([[1], np.arange(2, data.signals.shape[0])])
    truth = data.keep[1]
    if truth.all() or not truth.any():
        raise DataError(
            "offline_a='auto' tunes a on reference model 1, which needs both members and "
            "non-members; pass a number for offline_a"
        )
    aucs = [roc_auc(truth, score(pseudo_target, a)) for a in OFFLINE_A_GRID]
    return float(OFFLINE_A_GRID[int(np.argmax(aucs))])
