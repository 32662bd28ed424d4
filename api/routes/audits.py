"""Membership audits: submit (multipart, checked before queueing), read, follow, report.

``POST /v1/audits`` takes ``multipart/form-data``: a ``config`` part (the audit config as
JSON, see docs/membership.md) and one file part per artifact the config names. Every
part is streamed to disk with a running byte count and refused with 413 past its limit;
the config is validated, each artifact's content is checked (an ``.npz`` read with
``allow_pickle=False``; pickle or anything unknown is 415), and the config is checked
against the artifacts (shapes, K, labels) *before* anything is queued. Accepted
artifacts are stored by SHA-256 in the tenant's blob store and an ``audit.membership``
job is queued: 202 with the audit and a ``Location``.

``GET /v1/audits/{id}`` shows status and progress (stage, models done/total, ETA),
``/events`` streams it (SSE), ``/cancel`` stops it, and ``/report?format=json|html|md``
returns the report once the audit succeeded (409 before). Another tenant's audit, or a
job that is not an audit, is 404.
"""

import json
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import FileResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from privaudit.api.audits import AUDIT_KIND, ArtifactRef, AuditJobParams, report_dir
from privaudit.api.blobs import BlobStore
from privaudit.api.deps import DatabaseDep, SettingsDep, require_scope
from privaudit.api.jobs import store
from privaudit.api.jobs.batching import SubmissionWriter
from privaudit.api.jobs.kinds import job_kinds
from privaudit.api.keys import Principal, register_scope
from privaudit.api.problems import problem_response
from privaudit.api.routes._responses import problems
from privaudit.api.routes.jobs import (
    IDEMPOTENCY_KEY_PATTERN,
    job_event_stream,
    json_response,
)
from privaudit.api.routing import JSONSchemaRoute, parse_json
from privaudit.api.schemas import JobErrorOut, JobProgressOut, JobStatus
from privaudit.api.settings import Settings
from privaudit.api.uploads import MultipartLimits, PartTooLargeError, read_multipart
from privaudit.attacks.membership import (
    AuditConfig,
    check_audit_artifacts,
    parse_audit_config,
)
from privaudit.errors import (
    ConflictError,
    DataError,
    LimitExceededError,
    NotFoundError,
)
from privaudit.registry import report_formats
from privaudit.reports import parse_report, render

register_scope("audits:write", "submit and cancel membership audits (POST /v1/audits)")
register_scope("audits:read", "read membership audits, their progress, events and reports")

router = APIRouter(
    prefix="/v1/audits",
    tags=["audits"],
    responses=problems(401, 403, 422, 500),
    route_class=JSONSchemaRoute,
)

Reader = Annotated[Principal, Depends(require_scope("audits:read"))]
Writer = Annotated[Principal, Depends(require_scope("audits:write"))]

ReportFormat = Literal[tuple(report_formats.names())]  # type: ignore[valid-type]
CONFIG_PART = "config"


class AuditArtifactOut(BaseModel):
    name: str = Field(description="The artifact name the config uses (the part name).")
    sha256: str
    size_bytes: int
    filename: str | None = Field(description="The file name the client sent (informative).")


class AuditLinks(BaseModel):
    self: str
    events: str
    cancel: str
    report: str


class AuditOut(BaseModel):
    """A membership audit as its owner sees it."""

    id: str
    status: JobStatus
    progress: JobProgressOut | None = Field(
        description="stage (load inputs, train models, compute signals, run attacks, estimate "
        "epsilon, render report), done/total (models while training) and eta_s."
    )
    error: JobErrorOut | None
    attempts: int
    max_attempts: int
    config: dict[str, Any]
    artifacts: list[AuditArtifactOut]
    result: dict[str, Any] | None = Field(
        description="Once succeeded: verdict, models (total, trained, skipped), per-stage "
        "seconds, epsilon and each attack's headline metrics."
    )
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    links: AuditLinks


def _audit_out(job: store.JobRow, settings: Settings) -> AuditOut:
    base = f"/v1/audits/{job.id}"
    params = job.params or {}
    result: dict[str, Any] | None = None
    if job.status == "succeeded" and job.result_ref:
        path = _tenant_file(settings.artifacts_dir, job.tenant_id, job.result_ref)
        if path is not None:
            result = json.loads(path.read_text(encoding="utf-8"))
    return AuditOut(
        id=job.id,
        status=job.status,
        progress=JobProgressOut(**job.progress) if job.progress else None,
        error=JobErrorOut(**job.error) if job.error else None,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        config=params.get("config", {}),
        artifacts=[
            AuditArtifactOut(name=name, **ref) for name, ref in params.get("artifacts", {}).items()
        ],
        result=result,
        created_at=job.created_at,
        updated_at=job.updated_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        links=AuditLinks(
            self=base, events=f"{base}/events", cancel=f"{base}/cancel", report=f"{base}/report"
        ),
    )


def _tenant_file(root: Path, tenant_id: str, relative: str) -> Path | None:
    tenant_root = (root / tenant_id).resolve()
    path = (root / relative).resolve()
    return path if path.is_relative_to(tenant_root) and path.is_file() else None


def _audit_job(database: Any, tenant_id: str, audit_id: str) -> store.JobRow:
    with database.engine.connect() as connection:
        job = store.get_job(connection, tenant_id=tenant_id, job_id=audit_id)
    if job.kind != AUDIT_KIND:
        raise NotFoundError(f"no audit {audit_id!r} in this tenant", audit_id=audit_id)
    return job


_SUBMIT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [CONFIG_PART],
                    "properties": {
                        CONFIG_PART: {
                            "type": "string",
                            "description": "The audit config as JSON (schema: AuditConfig).",
                        },
                    },
                    "additionalProperties": {
                        "type": "string",
                        "format": "binary",
                        "description": "An artifact the config names (an .npz), by part name.",
                    },
                },
                "encoding": {CONFIG_PART: {"contentType": "application/json"}},
            }
        },
    }
}


@router.post(
    "",
    status_code=202,
    response_model=AuditOut,
    openapi_extra=_SUBMIT_BODY,
    responses={
        200: {"model": AuditOut, "description": "Replay of an earlier submission (same key)"},
        **problems(409, 413, 415),
    },
)
async def submit_audit(
    request: Request,
    principal: Writer,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description="Retrying with the same key returns the first audit, not a new one.",
        ),
    ] = None,
) -> Response:
    """Queue a membership audit: a JSON ``config`` part plus one file part per artifact.

    Everything is checked before the job is queued: part sizes (413), the config (422),
    each artifact's format (415: only .npz, never pickle) and the config against the
    artifacts (422: shapes, K, labels). Answers 202 with a ``Location`` to poll.
    """
    settings: Settings = request.app.state.settings
    blobs = BlobStore.for_tenant(settings.artifacts_dir, principal.tenant_id)
    staging = blobs.staging()
    try:
        try:
            parts = await read_multipart(
                request,
                staging_dir=staging,
                limits=MultipartLimits(
                    text_fields=frozenset({CONFIG_PART}),
                    max_text_bytes=settings.audit_max_config_bytes,
                    max_file_bytes=settings.audit_max_artifact_bytes,
                    max_files=settings.audit_max_artifacts,
                ),
            )
        except PartTooLargeError as error:
            return problem_response(
                request,
                status=413,
                code="payload_too_large",
                title="Payload too large",
                detail=str(error),
                headers={"Connection": "close"},
                part=error.part,
                limit_bytes=error.limit,
            )
        # Validating a recipe imports its trainer (scikit-learn): off the event loop.
        config = await run_in_threadpool(_config, parts.pop(CONFIG_PART, None), settings)
        files = {name: part.path for name, part in parts.items() if part.path is not None}
        if files or config.artifact_names():
            # Reads the arrays: off the event loop.
            inputs = await run_in_threadpool(
                check_audit_artifacts,
                config,
                files,
                max_array_bytes=settings.audit_max_array_bytes,
                max_examples=settings.audit_max_examples,
                open_model=False,  # an uploaded model is parsed only in the job's process
            )
            _check_reference_models(inputs.n_reference, settings)
        references: dict[str, ArtifactRef] = {}
        for name, part in parts.items():
            assert part.path is not None
            await run_in_threadpool(blobs.put, part.path, part.sha256)
            references[name] = ArtifactRef(
                sha256=part.sha256, size_bytes=part.size, filename=part.filename
            )
    finally:
        await run_in_threadpool(BlobStore.discard, staging)
    params = AuditJobParams(
        config=config.model_dump(mode="json"),
        artifacts=references,
        executor=settings.audit_executor,
    ).model_dump(mode="json")
    size = len(json.dumps(params))
    if size > settings.max_params_bytes:
        raise LimitExceededError(
            f"the audit's config takes {size} bytes of JSON; the limit is "
            f"{settings.max_params_bytes} (PRIVAUDIT_MAX_PARAMS_BYTES)",
            limit=settings.max_params_bytes,
        )
    writer: SubmissionWriter = request.app.state.submissions
    job, created = await writer.submit(
        tenant_id=principal.tenant_id,
        kind=job_kinds.get(AUDIT_KIND),
        params=params,
        idempotency_key=idempotency_key,
        max_attempts=settings.job_max_attempts,
    )
    return json_response(
        _audit_out(job, settings),
        status_code=202 if created else 200,
        headers={"Location": f"/v1/audits/{job.id}", "Retry-After": "1"},
    )


def _config(part: Any, settings: Settings) -> AuditConfig:
    if part is None or part.text is None:
        raise DataError(
            f"the request needs a {CONFIG_PART!r} part holding the audit config as JSON "
            "(and one file part per artifact the config names)"
        )
    try:
        data = parse_json(part.text)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"the {CONFIG_PART!r} part is not UTF-8 JSON: {error}") from None
    config = parse_audit_config(data, source=f"the {CONFIG_PART!r} part")
    if config.n_reference is not None:
        _check_reference_models(config.n_reference, settings)
    return config


def _check_reference_models(k: int, settings: Settings) -> None:
    if k > settings.audit_max_reference_models:
        raise LimitExceededError(
            f"the audit has {k} reference models; this service allows at most "
            f"{settings.audit_max_reference_models} (PRIVAUDIT_AUDIT_MAX_REFERENCE_MODELS)",
            limit=settings.audit_max_reference_models,
        )


@router.get("/{audit_id}", response_model=AuditOut, responses=problems(404))
def get_audit(
    audit_id: str, principal: Reader, database: DatabaseDep, settings: SettingsDep
) -> Response:
    """One audit: status, progress (stage, models done/total, ETA), errors, result, links."""
    job = _audit_job(database, principal.tenant_id, audit_id)
    return json_response(_audit_out(job, settings))


@router.post(
    "/{audit_id}/cancel", status_code=202, response_model=AuditOut, responses=problems(404, 409)
)
def cancel_audit(
    audit_id: str, principal: Writer, database: DatabaseDep, settings: SettingsDep
) -> Response:
    """Cancel a queued audit at once, or ask a running one to stop."""
    _audit_job(database, principal.tenant_id, audit_id)
    with database.write_transaction() as connection:
        job = store.request_cancel(connection, tenant_id=principal.tenant_id, job_id=audit_id)
    return json_response(_audit_out(job, settings), status_code=202)


@router.get(
    "/{audit_id}/report",
    response_class=FileResponse,
    responses={
        200: {
            "description": "The report in the format asked for.",
            "content": {
                renderer_type: {}
                for renderer_type in ("application/json", "text/html", "text/markdown")
            },
        },
        **problems(404, 409),
    },
)
def get_report(
    audit_id: str,
    principal: Reader,
    database: DatabaseDep,
    settings: SettingsDep,
    format: Annotated[ReportFormat, Query(description="A registered format.")] = "json",  # type: ignore[valid-type]
) -> Response:
    """The audit report, once the audit succeeded (409 before)."""
    job = _audit_job(database, principal.tenant_id, audit_id)
    if job.status != "succeeded":
        raise ConflictError(
            f"audit {audit_id} is {job.status}; its report exists once it succeeded "
            f"(follow /v1/audits/{audit_id}/events)",
            status=job.status,
        )
    renderer = report_formats.get(format)
    directory = report_dir(settings.artifacts_dir / principal.tenant_id / audit_id)
    media_type = renderer.media_type
    if media_type.startswith("text/"):
        media_type += "; charset=utf-8"
    path = _tenant_file(
        settings.artifacts_dir,
        principal.tenant_id,
        (directory / f"report{renderer.suffix}").relative_to(settings.artifacts_dir).as_posix(),
    )
    if path is not None:
        return FileResponse(path, media_type=media_type)
    canonical = directory / "report.json"
    if not canonical.is_file():
        raise NotFoundError("the audit's report is missing from the artifact store")
    report = parse_report(canonical.read_bytes(), source="the stored report")
    return Response(render(report, format), media_type=media_type)


def _audit_checked(audit_id: str, principal: Reader, database: DatabaseDep) -> str:
    _audit_job(database, principal.tenant_id, audit_id)
    return principal.tenant_id


@router.get(
    "/{audit_id}/events",
    response_class=EventSourceResponse,
    responses={200: {"description": "text/event-stream of audit events"}, **problems(404)},
)
async def audit_events(
    audit_id: str,
    request: Request,
    tenant_id: Annotated[str, Depends(_audit_checked)],
    database: DatabaseDep,
    settings: SettingsDep,
) -> AsyncIterator[ServerSentEvent]:
    """Server-sent events: an ``audit`` event with the full audit whenever it changes,
    ending after the terminal status. Poll ``GET /v1/audits/{id}`` where SSE is not an
    option."""

    def read() -> AuditOut:
        return _audit_out(_audit_job(database, tenant_id, audit_id), settings)

    async for event in job_event_stream(request, settings, read, event="audit"):
        yield event
