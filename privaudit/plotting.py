"""Matplotlib for the ``--plot`` options of the CLI: an optional extra, drawn headless.

Capabilities that save a figure call :func:`pyplot` instead of importing matplotlib
themselves, so a missing extra is one clear :class:`MissingDependencyError` and no
command ever needs a display.
"""

from __future__ import annotations

from types import ModuleType

from privaudit.errors import MissingDependencyError

__all__ = ["pyplot"]


def pyplot() -> ModuleType:
    """Return ``matplotlib.pyplot`` on the non-interactive ``Agg`` backend.

    Raises
    ------
    MissingDependencyError
        If matplotlib is not installed (the ``plot`` extra).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise MissingDependencyError(
            "plots need matplotlib: pip install 'privaudit[plot]'"
        ) from error
    return plt
