"""Membership audits as durable jobs: the ``audit.membership`` kind and its parameters.

``POST /v1/audits`` (:mod:`privaudit.api.routes.audits`) checks the config and the
uploaded artifacts, stores the artifacts by SHA-256 in the tenant's blob store
(:mod:`privaudit.api.blobs`), and queues this kind with :class:`AuditJobParams`: the
validated config and the digest of each artifact. The job runs
:func:`privaudit.attacks.membership.run_audit` with the job's own directory as the work
directory, so trained models are resumable units: a job whose worker was lost is
queued again and its next attempt skips the models already trained (the counts are in
the result). The report is written in every registered format to
``{work_dir}/report/``, where ``GET /v1/audits/{id}/report`` reads it.

This module is imported by every worker's fork server, so it stays light: the audit
capability (scipy, scikit-learn, ...) is imported by the audit job's own process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from privaudit.api.blobs import BlobStore
from privaudit.api.jobs import JobContext, JobParams, job_kind

__all__ = ["AUDIT_KIND", "ArtifactRef", "AuditJobParams", "membership_audit", "report_dir"]

AUDIT_KIND = "audit.membership"
REPORT_DIR = "report"


class ArtifactRef(JobParams):
    """An uploaded artifact, by the SHA-256 of its bytes in the tenant's blob store."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0)
    filename: str | None = Field(default=None, max_length=255)


class AuditJobParams(JobParams):
    """What an audit job runs: the config and its artifacts by name."""

    config: dict[str, Any] = Field(
        description="An audit config (privaudit.attacks.membership.AuditConfig, version 1), "
        "validated by POST /v1/audits."
    )
    artifacts: dict[str, ArtifactRef] = Field(default_factory=dict, max_length=64)
    executor: Literal["serial", "local", "ray"] = Field(
        default="serial",
        description="Where the models are trained (the service's PRIVAUDIT_AUDIT_EXECUTOR).",
    )


def report_dir(work_dir: Path) -> Path:
    """Where an audit job writes its report files."""
    return work_dir / REPORT_DIR


@job_kind(
    AUDIT_KIND,
    params=AuditJobParams,
    resumable=True,
    scope="audits:write",
    submit_route="/v1/audits",
)
def membership_audit(context: JobContext, params: AuditJobParams) -> dict[str, Any]:
    """Run a membership-inference audit (submit it with POST /v1/audits).

    Stages: load inputs, train models (target and reference models, one resumable unit
    each), compute signals, run attacks, estimate epsilon, render report.
    """
    context.progress("load inputs", 0, 1)
    from privaudit.attacks.membership import parse_audit_config, run_audit
    from privaudit.registry import report_formats

    config = parse_audit_config(params.config)
    blobs = BlobStore(context.work_dir.parent)  # the tenant's directory
    artifacts = {name: blobs.verified(ref.sha256) for name, ref in params.artifacts.items()}
    outcome = run_audit(
        config,
        artifacts=artifacts,
        work_dir=context.work_dir,
        out_dir=report_dir(context.work_dir),
        formats=report_formats.names(),
        on_progress=context.progress,
        executor=params.executor,
    )
    return {"attempt": context.attempt, **outcome.to_dict()}
