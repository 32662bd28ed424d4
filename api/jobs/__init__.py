"""Durable jobs: kinds, the job table's operations, and the worker that runs them."""

from privaudit.api.jobs.kinds import JobContext, JobKind, JobParams, job_kind, job_kinds

__all__ = ["JobContext", "JobKind", "JobParams", "job_kind", "job_kinds"]
