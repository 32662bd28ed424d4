"""Process plumbing for workers: die with the parent, load job-kind plugins."""

from __future__ import annotations

import ctypes
import importlib
import os
import signal
import sys
import threading
import time

from privaudit.errors import ConfigurationError

__all__ = ["BUILTIN_JOB_MODULES", "die_with_parent", "load_job_modules"]

BUILTIN_JOB_MODULES: list[str] = ["privaudit.api.audits"]
"""Modules that register the service's own job kinds (capability issues append here)."""

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Make this process receive ``sig`` when its parent dies, so no orphan keeps running
    a job whose lease was given to someone else.

    Uses ``prctl(PR_SET_PDEATHSIG)`` on Linux, and everywhere a watchdog thread that
    notices re-parenting.
    """
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - non-glibc systems
            pass

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os.kill(os.getpid(), sig)
            time.sleep(1.0)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def load_job_modules(extra: list[str]) -> None:
    """Import the built-in job-kind modules and the operator's plugins."""
    for name in [*BUILTIN_JOB_MODULES, *extra]:
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise ConfigurationError(
                f"cannot import job plugin module {name!r} (PRIVAUDIT_JOB_PLUGINS): {error}"
            ) from error
