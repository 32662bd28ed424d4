"""privaudit's REST service (``pip install privaudit[server]``).

Only this subpackage knows HTTP, SQL and job scheduling; capabilities plug in job
kinds (:func:`privaudit.api.jobs.job_kind`) and routers. Names are imported lazily so
that ``privaudit`` CLI commands that do not serve stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from privaudit.api.app import create_app
    from privaudit.api.settings import Settings

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from privaudit.api.app import create_app

        return create_app
    if name == "Settings":
        from privaudit.api.settings import Settings

        return Settings
    raise AttributeError(f"module 'privaudit.api' has no attribute {name!r}")
