"""The anchor of ``api_throughput.py``: the same HTTP stack with no database and no auth.

A minimal FastAPI app, served by uvicorn with the same defaults as ``privaudit serve``
(uvloop and httptools when installed, no access log). It answers the same two routes
as the service, with the same request validation and a response of the same shape:

- ``POST /v1/jobs`` validates ``{"kind", "params"}`` exactly as the service's strict
  ``JobSubmission`` does and answers 202 with a ``Location``;
- ``GET /v1/jobs/{job_id}`` answers a constant job document of the service's shape.

Handlers are plain ``def`` (run in the thread pool), like the service's routes, so the
ratio between the two isolates what the service adds: authentication, the database
and its own code. It is deliberately independent of ``privaudit``.

Run it alone with ``uvicorn _anchor_app:app`` from this folder.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import FastAPI, Response
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["app"]


class Submission(BaseModel):
    """Same constraints as ``privaudit.api.schemas.JobSubmission``."""

    model_config = ConfigDict(strict=True, extra="forbid")

    kind: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.\-]*$")
    params: dict[str, Any] = Field(default_factory=dict)


class Links(BaseModel):
    self: str
    events: str
    cancel: str
    result: str


class JobDocument(BaseModel):
    """Same fields as ``privaudit.api.schemas.JobOut``."""

    id: str
    kind: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelling", "cancelled"]
    params: dict[str, Any]
    progress: dict[str, Any] | None
    error: dict[str, Any] | None
    resumable: bool
    attempts: int
    max_attempts: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    links: Links


_CREATED = datetime(2025, 1, 1, tzinfo=UTC)

app = FastAPI(title="privaudit benchmark anchor")


def _document(job_id: str, kind: str, params: dict[str, Any]) -> JobDocument:
    base = f"/v1/jobs/{job_id}"
    return JobDocument(
        id=job_id,
        kind=kind,
        status="queued",
        params=params,
        progress=None,
        error=None,
        resumable=False,
        attempts=0,
        max_attempts=3,
        created_at=_CREATED,
        updated_at=_CREATED,
        started_at=None,
        finished_at=None,
        links=Links(
            self=base, events=f"{base}/events", cancel=f"{base}/cancel", result=f"{base}/result"
        ),
    )


@app.get("/v1/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/jobs", status_code=202)
def submit(submission: Submission, response: Response) -> JobDocument:
    job_id = uuid.uuid4().hex
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    response.headers["Retry-After"] = "1"
    return _document(job_id, submission.kind, submission.params)


@app.get("/v1/jobs/{job_id}")
def read(job_id: str) -> JobDocument:
    return _document(job_id, "bench.noop", {})
