"""Synthetic signals with a planted membership effect whose optimal test is known.

Model ``k`` gives example ``i`` (augmented query ``a``) the signal

    φ[k, i, a] = μ_i + δ · keep[k, i] + σ · ε[k, i, a],   μ_i ~ N(0, τ²), ε ~ N(0, 1),

so each example has its own difficulty ``μ_i``. Knowing ``μ_i``, the Neyman-Pearson
test of membership thresholds the mean deviation ``mean_a φ[0, i, a] − μ_i``, whose AUC
is ``Φ(δ √A / (σ √2))``. A global threshold on ``mean_a φ`` (the LOSS attack) cannot
remove ``μ_i`` and reaches ``Φ(δ / √(2 (τ² + σ²/A)))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from privaudit.randomness import simulation_generator


@dataclass(frozen=True)
class Planted:
    signals: np.ndarray
    keep: np.ndarray
    labels: np.ndarray
    difficulty: np.ndarray


def planted(
    *,
    n: int = 4000,
    n_reference: int = 64,
    shift: float = 1.0,
    noise: float = 1.0,
    spread: float = 2.0,
    augmentations: int = 1,
    n_classes: int = 3,
    seed: int = 0,
) -> Planted:
    rng = simulation_generator(seed)
    keep = rng.random((n_reference + 1, n)) < 0.5
    difficulty = rng.normal(0.0, spread, size=n)
    noise_draws = rng.normal(0.0, noise, size=(n_reference + 1, n, augmentations))
    signals = difficulty[None, :, None] + shift * keep[:, :, None] + noise_draws
    labels = rng.integers(0, n_classes, size=n)
    if augmentations == 1:
        signals = signals[:, :, 0]
    return Planted(signals=signals, keep=keep, labels=labels, difficulty=difficulty)


def optimal_auc(*, shift: float = 1.0, noise: float = 1.0, augmentations: int = 1) -> float:
    return float(norm.cdf(shift * math.sqrt(augmentations) / (noise * math.sqrt(2))))


def loss_auc(
    *, shift: float = 1.0, noise: float = 1.0, spread: float = 2.0, augmentations: int = 1
) -> float:
    return float(norm.cdf(shift / math.sqrt(2 * (spread**2 + noise**2 / augmentations))))
