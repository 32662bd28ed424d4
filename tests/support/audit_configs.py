"""Audit configs for the tests (plain JSON data, as a client would send them)."""

from __future__ import annotations

from typing import Any


def digits_config(
    *, reference_models: int, trees: int, seed: int, **overrides: Any
) -> dict[str, Any]:
    """Mode train on the built-in digits: forests of ``trees`` trees; LOSS and LiRA."""
    config: dict[str, Any] = {
        "version": 1,
        "inputs": {
            "mode": "train",
            "dataset": {"builtin": "digits"},
            "recipe": {
                "trainer": "sklearn",
                "estimator": "random_forest",
                "params": {"n_estimators": trees},
            },
        },
        "attacks": ["loss", "lira"],
        "reference_models": reference_models,
        "seed": seed,
    }
    config.update(overrides)
    return config


def signals_config(name: str = "signals.npz", **overrides: Any) -> dict[str, Any]:
    """Mode signals from the artifact ``name``: LOSS, LiRA and offline RMIA."""
    config: dict[str, Any] = {
        "version": 1,
        "inputs": {"mode": "signals", "signals": name},
        "attacks": ["loss", "lira", {"attack": "rmia", "params": {"online": False}}],
    }
    config.update(overrides)
    return config
