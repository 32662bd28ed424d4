"""Durable jobs: submit (202 + Location), list, read, follow (SSE), cancel, result."""

import asyncio
import base64
import json
import re
import struct
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, Union

from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response
from fastapi.responses import FileResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, Field, create_model
from starlette.concurrency import run_in_threadpool

from privaudit.api.deps import DatabaseDep, SettingsDep, require_scope
from privaudit.api.jobs import store
from privaudit.api.jobs.batching import SubmissionWriter
from privaudit.api.jobs.kinds import job_kinds
from privaudit.api.keys import Principal
from privaudit.api.models import TERMINAL_STATUSES
from privaudit.api.routes._responses import problems
from privaudit.api.routing import JSONSchemaRoute
from privaudit.api.schemas import (
    JobErrorOut,
    JobKindOut,
    JobLinks,
    JobOut,
    JobPage,
    JobProgressOut,
    JobStatus,
    JobSubmission,
    StrictRequest,
)
from privaudit.api.settings import Settings
from privaudit.errors import (
    ConflictError,
    LimitExceededError,
    NotFoundError,
    ParameterError,
    PermissionDeniedError,
)

router = APIRouter(
    prefix="/v1",
    tags=["jobs"],
    responses=problems(401, 403, 413, 422, 500),
    route_class=JSONSchemaRoute,
)

Reader = Annotated[Principal, Depends(require_scope("jobs:read"))]
Writer = Annotated[Principal, Depends(require_scope("jobs:write"))]
JobId = Annotated[str, "job id"]

IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
CURSOR_PATTERN = r"^[A-Za-z0-9_\-]{32}$"  # base64url of 8 bytes of time + 16 bytes of id


def job_out(job: store.JobRow) -> JobOut:
    """The public view of a job row."""
    base = f"/v1/jobs/{job.id}"
    return JobOut(
        id=job.id,
        kind=job.kind,
        status=job.status,
        params=job.params,
        progress=JobProgressOut(**job.progress) if job.progress else None,
        error=JobErrorOut(**job.error) if job.error else None,
        resumable=job.resumable,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        created_at=job.created_at,
        updated_at=job.updated_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        links=JobLinks(
            self=base, events=f"{base}/events", cancel=f"{base}/cancel", result=f"{base}/result"
        ),
    )


@router.get("/job-kinds")
def list_job_kinds(_principal: Reader) -> list[JobKindOut]:
    """The job kinds this service runs, with the JSON schema of their params."""
    return [
        JobKindOut(
            name=kind.name,
            description=kind.description,
            resumable=kind.resumable,
            scope=kind.scope,
            params_schema=kind.params_model.model_json_schema(),
            submit_route=kind.submit_route,
        )
        for kind in (job_kinds.get(name) for name in job_kinds.names())
    ]


def json_response(
    model: BaseModel, *, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """Serialise a response model once (FastAPI would validate it again first)."""
    return Response(
        model.model_dump_json(),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


def submission_body() -> Any:
    """The request body of ``POST /v1/jobs``: one variant per registered kind, told apart
    by ``kind``, each with its kind's strict params model, so that the OpenAPI document
    states exactly what each kind accepts."""
    variants = []
    for name in job_kinds.names():
        kind = job_kinds.get(name)
        if kind.submit_route is not None:
            continue  # submitted through its own route
        variants.append(
            create_model(
                "Submit_" + re.sub(r"[^A-Za-z0-9]", "_", name),
                __base__=StrictRequest,
                __doc__=kind.description or f"Submit a {name} job.",
                kind=(Literal[name], Field(description="The job kind.")),  # type: ignore[arg-type]
                params=(kind.params_model, Field(default_factory=kind.params_model)),
            )
        )
    if not variants:
        return JobSubmission
    if len(variants) == 1:
        return variants[0]
    return Annotated[Union[tuple(variants)], Field(discriminator="kind")]  # noqa: UP007


def build_submit_router() -> APIRouter:
    """The submission route, built for the job kinds registered when the app is created."""
    submit_router = APIRouter(
        prefix="/v1",
        tags=["jobs"],
        responses=problems(401, 403, 413, 422, 500),
        route_class=JSONSchemaRoute,
    )
    body_type = submission_body()

    @submit_router.post(
        "/jobs",
        status_code=202,
        response_model=JobOut,
        responses={
            200: {"model": JobOut, "description": "Replay of an earlier submission (same key)"},
            **problems(409),
        },
    )
    async def submit_job(
        request: Request,
        submission: Annotated[body_type, Body()],  # type: ignore[valid-type]
        principal: Writer,
        idempotency_key: Annotated[
            str | None,
            Header(
                alias="Idempotency-Key",
                pattern=IDEMPOTENCY_KEY_PATTERN,
                description="Retrying with the same key returns the first job, not a new one.",
            ),
        ] = None,
    ) -> Response:
        """Queue a job. Answers 202 with a ``Location`` to poll; a replayed key answers 200."""
        settings: Settings = request.app.state.settings
        return await _submit(request, submission, principal, settings, idempotency_key)

    return submit_router


async def _submit(
    request: Request,
    submission: Any,
    principal: Principal,
    settings: Settings,
    idempotency_key: str | None,
) -> Response:
    try:
        kind = job_kinds.get(submission.kind)
    except NotFoundError as error:
        raise ParameterError(f"kind: {error.message}", kind=submission.kind) from None
    if kind.submit_route is not None:
        raise ParameterError(
            f"kind: {kind.name!r} jobs are submitted with POST {kind.submit_route}, which checks "
            "their uploaded inputs",
            kind=kind.name,
        )
    if not principal.allows(kind.scope):
        raise PermissionDeniedError(
            f"job kind {kind.name!r} needs the scope {kind.scope!r}", scope=kind.scope
        )
    params = submission.params
    if isinstance(params, BaseModel):
        params = params.model_dump(mode="json")
    size = len(json.dumps(params))
    if size > settings.max_params_bytes:
        raise LimitExceededError(
            f"params take {size} bytes of JSON; the limit is {settings.max_params_bytes} "
            "(PRIVAUDIT_MAX_PARAMS_BYTES). Upload large inputs as artifacts instead."
        )
    writer: SubmissionWriter = request.app.state.submissions
    job, created = await writer.submit(
        tenant_id=principal.tenant_id,
        kind=kind,
        params=params,
        idempotency_key=idempotency_key,
        max_attempts=settings.job_max_attempts,
    )
    return json_response(
        job_out(job),
        status_code=202 if created else 200,
        headers={"Location": f"/v1/jobs/{job.id}", "Retry-After": "1"},
    )


@router.get("/jobs", response_model=JobPage)
def list_jobs(
    principal: Reader,
    database: DatabaseDep,
    settings: SettingsDep,
    status: JobStatus | None = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[
        str | None,
        Query(
            pattern=CURSOR_PATTERN,
            description="next_cursor of the previous page: jobs created before it.",
        ),
    ] = None,
) -> Response:
    """The tenant's jobs, newest first, with keyset pagination."""
    limit = min(limit, settings.max_page_size)
    with database.engine.connect() as connection:
        jobs = store.list_jobs(
            connection,
            tenant_id=principal.tenant_id,
            status=status,
            kind=kind,
            limit=limit + 1,
            before=_decode_cursor(cursor) if cursor else None,
        )
    more = len(jobs) > limit
    jobs = jobs[:limit]
    next_cursor = _encode_cursor(jobs[-1]) if more and jobs else None
    return json_response(JobPage(items=[job_out(job) for job in jobs], next_cursor=next_cursor))


def _encode_cursor(job: store.JobRow) -> str:
    micros = int(job.created_at.timestamp() * 1_000_000)
    raw = struct.pack(">q", micros) + bytes.fromhex(job.id)
    return base64.urlsafe_b64encode(raw).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    # Every string of the documented pattern is a valid position (a time and an id), so
    # any cursor is accepted; one this API issued resumes exactly after its page.
    raw = base64.urlsafe_b64decode(cursor)
    (micros,) = struct.unpack(">q", raw[:8])
    lowest, highest = datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)
    try:
        created = datetime.fromtimestamp(micros / 1_000_000, UTC)
    except (OverflowError, OSError, ValueError):
        created = lowest if micros < 0 else highest
    return min(max(created, lowest), highest), raw[8:].hex()


@router.get("/jobs/{job_id}", response_model=JobOut, responses=problems(404))
def get_job(job_id: JobId, principal: Reader, database: DatabaseDep) -> Response:
    """One job: status, progress with ETA, error, links."""
    with database.engine.connect() as connection:
        job = store.get_job(connection, tenant_id=principal.tenant_id, job_id=job_id)
    return json_response(job_out(job))


@router.post(
    "/jobs/{job_id}/cancel",
    status_code=202,
    response_model=JobOut,
    responses=problems(404, 409),
)
def cancel_job(job_id: JobId, principal: Writer, database: DatabaseDep) -> Response:
    """Cancel a queued job at once, or ask a running one to stop (``cancelling``)."""
    with database.write_transaction() as connection:
        job = store.request_cancel(connection, tenant_id=principal.tenant_id, job_id=job_id)
    return json_response(job_out(job), status_code=202)


@router.get(
    "/jobs/{job_id}/result",
    response_class=FileResponse,
    responses={200: {"content": {"application/json": {}}}, **problems(404, 409)},
)
def get_result(
    job_id: JobId, principal: Reader, database: DatabaseDep, settings: SettingsDep
) -> FileResponse:
    """The result document of a succeeded job."""
    with database.engine.connect() as connection:
        job = store.get_job(connection, tenant_id=principal.tenant_id, job_id=job_id)
    if job.status != "succeeded" or not job.result_ref:
        raise ConflictError(f"job {job_id} is {job.status}; a result exists once it succeeded")
    path = _tenant_artifact(settings.artifacts_dir, principal.tenant_id, job.result_ref)
    return FileResponse(path, media_type="application/json")


def _tenant_artifact(root: Path, tenant_id: str, ref: str) -> Path:
    tenant_root = (root / tenant_id).resolve()
    path = (root / ref).resolve()
    if not path.is_relative_to(tenant_root) or not path.is_file():
        raise NotFoundError("the job's result file is missing from the artifact store")
    return path


def _tenant_job_checked(job_id: JobId, principal: Reader, database: DatabaseDep) -> str:
    with database.engine.connect() as connection:
        store.get_job(connection, tenant_id=principal.tenant_id, job_id=job_id)
    return principal.tenant_id


@router.get(
    "/jobs/{job_id}/events",
    response_class=EventSourceResponse,
    responses={200: {"description": "text/event-stream of job events"}, **problems(404)},
)
async def job_events(
    job_id: JobId,
    request: Request,
    tenant_id: Annotated[str, Depends(_tenant_job_checked)],
    database: DatabaseDep,
    settings: SettingsDep,
) -> AsyncIterator[ServerSentEvent]:
    """Server-sent events: a ``job`` event with the full job whenever it changes, ending
    after the terminal status. Poll ``GET /v1/jobs/{id}`` where SSE is not an option."""

    def read() -> JobOut:
        with database.engine.connect() as connection:
            return job_out(store.get_job(connection, tenant_id=tenant_id, job_id=job_id))

    async for event in job_event_stream(request, settings, read, event="job"):
        yield event


class _Observed(Protocol):
    status: JobStatus
    updated_at: datetime

    def model_dump(self, *, mode: str) -> dict[str, Any]: ...


async def job_event_stream(
    request: Request, settings: Settings, read: Callable[[], _Observed], *, event: str
) -> AsyncIterator[ServerSentEvent]:
    """Server-sent events of one job: ``read()`` (run in a thread) each time it changed,
    a keep-alive comment every 15 s, until a terminal status, the client leaves, or
    ``sse_max_duration_s`` passes."""
    deadline = time.monotonic() + settings.sse_max_duration_s
    last_seen: datetime | None = None
    last_sent = time.monotonic()
    while time.monotonic() < deadline:
        current = await run_in_threadpool(read)
        if current.updated_at != last_seen:
            last_seen = current.updated_at
            last_sent = time.monotonic()
            yield ServerSentEvent(
                data=current.model_dump(mode="json"),
                event=event,
                id=current.updated_at.isoformat(),
            )
            if current.status in TERMINAL_STATUSES:
                return
        elif time.monotonic() - last_sent > 15:
            last_sent = time.monotonic()
            yield ServerSentEvent(comment="keep-alive")
        if await request.is_disconnected():
            return
        await asyncio.sleep(settings.sse_poll_interval_s)
