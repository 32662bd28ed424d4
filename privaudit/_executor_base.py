"""What every executor shares: work units, their results, and the failure they raise.

The public names are re-exported by :mod:`privaudit.executor`; this module exists so
that the Ray backend (:mod:`privaudit._ray_executor`) and the local backends can share
them without importing each other.
"""

from __future__ import annotations

import os
import socket
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from privaudit.errors import ConflictError, JobCancelledError, ParameterError, WorkUnitError

if TYPE_CHECKING:
    from privaudit.progress import ProgressCallback

__all__ = [
    "ExecutorBase",
    "UnitResult",
    "WorkUnit",
    "check_units",
    "describe_failure",
    "unit_failure",
]


@dataclass(frozen=True)
class WorkUnit:
    """One independent call ``function(*args, **kwargs)``, identified by ``index``.

    A unit should be *idempotent*: running it twice gives the same effect as once, so
    that an executor may retry it and a restarted run may skip it once it is done.

    ``function`` must be importable by name in a worker process (a module-level
    function of an installed module, or a ``functools.partial`` of one), and the
    arguments must be picklable. They travel between processes privaudit started (or a
    Ray cluster the caller trusts) and are privaudit's own objects; data that came from
    a client reaches a unit as arrays or JSON it loads itself, never as a pickle.
    """

    index: int
    function: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class UnitResult:
    """What one unit returned, with the wall time of its call and where it ran."""

    index: int
    value: Any
    seconds: float
    worker: str


def check_units(units: Iterable[WorkUnit]) -> list[WorkUnit]:
    """Return ``units`` as a list after checking their types and unique indices."""
    checked = list(units)
    seen: set[int] = set()
    for unit in checked:
        if not isinstance(unit, WorkUnit):
            raise ParameterError(
                f"an executor runs WorkUnit objects; got {type(unit).__name__}. Wrap the call "
                "as WorkUnit(index, function, args, kwargs)"
            )
        if isinstance(unit.index, bool) or not isinstance(unit.index, int):
            raise ParameterError(f"a work unit's index must be an int; got {unit.index!r}")
        if unit.index in seen:
            raise ParameterError(f"work unit indices must be unique; {unit.index} appears twice")
        if not callable(unit.function):
            raise ParameterError(f"work unit {unit.index}'s function is not callable")
        seen.add(unit.index)
    return checked


def describe_failure(error: BaseException) -> tuple[str, str, str]:
    """``(type name, message, formatted traceback)`` of an exception, for sending back."""
    kind = type(error).__qualname__
    module = type(error).__module__
    if module not in ("builtins", "__main__"):
        kind = f"{module}.{kind}"
    text = "".join(traceback.format_exception(error))
    return kind, str(error), text


def unit_failure(
    index: int | None,
    error_type: str,
    message: str,
    remote_traceback: str | None = None,
    *,
    worker: str = "",
) -> WorkUnitError:
    """The :class:`WorkUnitError` for a unit whose call raised ``error_type: message``."""
    where = f" on {worker}" if worker else ""
    subject = "worker initialisation" if index is None else f"work unit {index}"
    return WorkUnitError(
        f"{subject} failed{where}: {error_type}: {message}",
        index=index,
        error_type=error_type,
        remote_traceback=remote_traceback,
    )


def this_worker(device: str = "") -> str:
    """A short description of the current process: host, pid and device."""
    where = f"pid {os.getpid()} on {socket.gethostname()}"
    return f"{where} ({device})" if device else where


class ExecutorBase:
    """Context management and cancellation shared by the executors.

    Subclasses implement :meth:`start`, :meth:`_execute` (a generator of results),
    :meth:`shutdown`, :attr:`capacity` and :meth:`describe`.
    """

    name: str = "base"

    def __init__(self) -> None:
        self._cancelled = threading.Event()
        self._running = False

    @property
    def capacity(self) -> int:
        """How many units run at the same time."""
        raise NotImplementedError

    def start(self) -> Self:
        """Start the workers now (otherwise the first :meth:`run` does); returns self."""
        return self

    def run(
        self, units: Iterable[WorkUnit], *, on_progress: ProgressCallback | None = None
    ) -> Iterator[UnitResult]:
        """Run ``units``; yield each one's :class:`UnitResult` as it completes.

        The units are checked at once; the work starts when iteration starts. After each
        completed unit, ``on_progress(done, total)`` is called (an exception it raises,
        such as a job's :class:`~privaudit.errors.JobCancelledError`, stops the run and
        propagates). Leaving the loop early, an error, or :meth:`cancel` stops the
        units still pending and those running.

        Raises
        ------
        WorkUnitError
            When a unit raises or its worker dies; the message names the unit's index.
        JobCancelledError
            When :meth:`cancel` was called during the run.
        """
        checked = check_units(units)
        if self._running:
            raise ConflictError(
                f"this {self.name} executor is already running units; finish or close the "
                "other run's result loop first (one run at a time)"
            )
        return self._guarded(checked, on_progress)

    def _guarded(
        self, units: list[WorkUnit], on_progress: ProgressCallback | None
    ) -> Iterator[UnitResult]:
        if self._running:
            raise ConflictError(f"this {self.name} executor is already running units")
        self._running = True
        self._cancelled.clear()
        try:
            yield from self._execute(units, on_progress)
        finally:
            self._running = False

    def _execute(
        self, units: list[WorkUnit], on_progress: ProgressCallback | None
    ) -> Iterator[UnitResult]:
        raise NotImplementedError

    def cancel(self) -> None:
        """Ask the current run to stop (thread-safe); the run raises ``JobCancelledError``."""
        self._cancelled.set()

    def _check_cancelled(self, done: int, total: int) -> None:
        if self._cancelled.is_set():
            raise JobCancelledError(
                f"the {self.name} executor's run was cancelled after {done} of {total} units"
            )

    def shutdown(self) -> None:
        """Stop the workers and release their resources; idempotent."""

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description (backend, capacity, devices)."""
        return {"executor": self.name, "capacity": self.capacity}

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()
