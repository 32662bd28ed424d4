"""Job kinds: what the service can run as durable jobs.

A capability issue adds a kind by registering a function with :func:`job_kind`::

    class SleepParams(JobParams):
        seconds: float = Field(gt=0, le=60)

    @job_kind("demo.sleep", params=SleepParams, resumable=True)
    def sleep(context: JobContext, params: SleepParams) -> dict[str, object]:
        ...
        return {"slept": params.seconds}

The function runs in its own process, started by a worker. It reports progress with
:meth:`JobContext.progress` (which also raises :class:`JobCancelledError` once the
job's owner cancels it), keeps resumable state under :attr:`JobContext.work_dir`, and
returns a JSON-serialisable result, which the worker stores as the job's result
artifact.

A *resumable* kind promises that running it again after a crash is safe and picks up
where it stopped (work units keyed by index, each writing a done marker). A kind that
is not resumable is marked failed, with the reason, when its worker is lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from privaudit.errors import JobCancelledError
from privaudit.registry import Registry

__all__ = ["JobContext", "JobKind", "JobParams", "ProgressSink", "job_kind", "job_kinds"]


class JobParams(BaseModel):
    """Base of job parameter models: strict (no coercion) and closed (no unknown fields)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class ProgressSink(Protocol):
    """Where a running job's progress goes (``None``: only ask); returns whether
    cancellation was requested."""

    def __call__(self, progress: dict[str, Any] | None) -> bool: ...


JobFunction = Callable[["JobContext", Any], dict[str, Any] | None]


@dataclass(frozen=True)
class JobKind:
    """A registered job kind."""

    name: str
    params_model: type[JobParams]
    run: JobFunction
    resumable: bool = False
    scope: str = "jobs:write"
    description: str = ""
    submit_route: str | None = None
    """A kind with its own submission route (``/v1/audits``), which checks inputs that
    ``POST /v1/jobs`` cannot (uploaded artifacts); ``POST /v1/jobs`` refuses it."""


job_kinds: Registry[JobKind] = Registry("job kind")
"""Every job kind the service knows, by name."""


def job_kind(
    name: str,
    *,
    params: type[JobParams],
    resumable: bool = False,
    scope: str = "jobs:write",
    submit_route: str | None = None,
) -> Callable[[JobFunction], JobFunction]:
    """Register the decorated function as the job kind ``name``.

    ``submit_route`` names the kind's own submission route, for kinds that ``POST
    /v1/jobs`` must not accept (their inputs are checked there).
    """

    def decorator(function: JobFunction) -> JobFunction:
        description = (function.__doc__ or "").strip().split("\n\n")[0]
        job_kinds.add(
            name,
            JobKind(
                name=name,
                params_model=params,
                run=function,
                resumable=resumable,
                scope=scope,
                description=description,
                submit_route=submit_route,
            ),
        )
        return function

    return decorator


@dataclass
class JobContext:
    """What a running job can see and do.

    Attributes
    ----------
    job_id, tenant_id
        The job and its owner.
    attempt
        1 on the first run, 2 after one re-queue, ...
    work_dir
        The job's own directory under the tenant's artifact directory; resumable
        kinds keep their finished work units here.
    """

    job_id: str
    tenant_id: str
    attempt: int
    work_dir: Path
    _sink: ProgressSink
    _min_interval_s: float = 0.2
    _stage: str = field(default="", init=False)
    _stage_started: float = field(default=0.0, init=False)
    _stage_first_done: int = field(default=0, init=False)
    _last_report: float = field(default=0.0, init=False)

    def progress(self, stage: str, done: int, total: int | None = None) -> None:
        """Report progress; raises :class:`JobCancelledError` if the job was cancelled.

        Calls are cheap: the database is written at most every 0.2 s, and always for
        the last unit of a stage. The ETA is extrapolated from this stage's rate in
        this attempt (units finished in an earlier attempt do not count as speed).
        """
        now = time.monotonic()
        if stage != self._stage:
            self._stage, self._stage_started, self._stage_first_done = stage, now, done
        final = total is not None and done >= total
        if not final and now - self._last_report < self._min_interval_s:
            return
        self._last_report = now
        eta_s: float | None = None
        advanced = done - self._stage_first_done
        if total is not None and advanced > 0:
            rate = advanced / max(now - self._stage_started, 1e-9)
            eta_s = round(max(total - done, 0) / rate, 3)
        cancelled = self._sink({"stage": stage, "done": done, "total": total, "eta_s": eta_s})
        if cancelled:
            raise JobCancelledError(f"job {self.job_id} was cancelled by its owner")

    def check_cancelled(self) -> None:
        """Raise :class:`JobCancelledError` if cancellation was requested."""
        if self._sink(None):
            raise JobCancelledError(f"job {self.job_id} was cancelled by its owner")
