"""Job kinds used only by the benchmarks.

Loaded by the benchmark's server through ``PRIVAUDIT_JOB_PLUGINS=_bench_kinds`` (with
this folder on ``PYTHONPATH``), so the service and its workers both know the kind.
"""

from __future__ import annotations

from privaudit.api.jobs.kinds import JobContext, JobParams, job_kind

__all__ = ["NOOP_KIND", "NoopParams", "noop"]

NOOP_KIND = "bench.noop"


class NoopParams(JobParams):
    """No parameters: the body is ``{"kind": "bench.noop", "params": {}}``."""


@job_kind(NOOP_KIND, params=NoopParams)
def noop(context: JobContext, params: NoopParams) -> dict[str, object]:
    """Do nothing and return an empty result (measures the service, not a job)."""
    return {}
