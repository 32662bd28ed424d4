"""Job kinds used only by the tests (loaded with PRIVAUDIT_JOB_PLUGINS=privaudit_testkinds)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from pydantic import Field

from privaudit.api.jobs import JobContext, JobParams, job_kind
from privaudit.errors import DataError


class NoParams(JobParams):
    pass


class StepParams(JobParams):
    steps: int = Field(default=3, ge=1, le=200)
    step_s: float = Field(default=0.01, ge=0.0, le=2.0)


@job_kind("test.noop", params=NoParams)
def noop(context: JobContext, params: NoParams) -> dict[str, Any]:
    """Do nothing and succeed."""
    return {"ok": True, "attempt": context.attempt}


@job_kind("test.steps", params=StepParams, resumable=True)
def steps(context: JobContext, params: StepParams) -> dict[str, Any]:
    """Resumable: one work unit per step, each leaving a done marker; finished units are
    skipped when the job is resumed. Every executed unit is logged, to count re-runs."""
    with (context.work_dir / "attempts.log").open("a") as log:
        log.write(f"{context.attempt}\n")
    for unit in range(params.steps):
        marker = context.work_dir / f"unit-{unit}.done"
        if marker.exists():
            continue
        context.progress("stepping", unit, params.steps)
        time.sleep(params.step_s)
        with (context.work_dir / "executions.log").open("a") as log:
            log.write(f"{unit}\n")
        marker.touch()
    context.progress("stepping", params.steps, params.steps)
    return {"steps": params.steps, "attempt": context.attempt}


@job_kind("test.sleep", params=StepParams)
def sleep(context: JobContext, params: StepParams) -> dict[str, Any]:
    """Not resumable: sleeps ``steps * step_s`` seconds, reporting progress."""
    for unit in range(params.steps):
        context.progress("sleeping", unit, params.steps)
        time.sleep(params.step_s)
    return {"slept_s": params.steps * params.step_s}


@job_kind("test.fail", params=NoParams)
def fail(context: JobContext, params: NoParams) -> dict[str, Any]:
    """Fail with a privaudit error."""
    raise DataError("the test data is bad on purpose", column="x")


@job_kind("test.crash", params=NoParams)
def crash(context: JobContext, params: NoParams) -> dict[str, Any]:
    """Kill its own process, as a segfault or the OOM killer would."""
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


@job_kind("test.stubborn", params=StepParams)
def stubborn(context: JobContext, params: StepParams) -> dict[str, Any]:
    """Never looks at cancellation: only killing its process stops it."""
    context.progress("ignoring", 0, 1)
    time.sleep(params.steps * params.step_s)
    return {"ignored": True}


@job_kind("test.admin_only", params=NoParams, scope="admin")
def admin_only(context: JobContext, params: NoParams) -> dict[str, Any]:
    """Needs the admin scope."""
    return {}
