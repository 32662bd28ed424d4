"""Empirical privacy estimators (epsilon from attack outcomes, with intervals)."""

__all__: list[str] = []
