"""Differentially private mechanisms.

LDP frequency oracles, sequential learning, continual release.

Each mechanism is registered in :data:`privaudit.registry.mechanisms` and reports a
:class:`privaudit.PrivacyGuarantee`.
"""

__all__: list[str] = []
