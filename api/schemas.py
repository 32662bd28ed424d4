"""Request and response models of the REST API. Requests are strict and closed."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ErrorCatalogEntry",
    "Health",
    "JobErrorOut",
    "JobKindOut",
    "JobLinks",
    "JobOut",
    "JobPage",
    "JobProgressOut",
    "JobSubmission",
    "Problem",
    "StrictRequest",
]

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelling", "cancelled"]


class StrictRequest(BaseModel):
    """Base of request bodies: no type coercion (``false`` is not a float), no extra fields."""

    model_config = ConfigDict(strict=True, extra="forbid")


class JobSubmission(StrictRequest):
    """Submit a job of a registered kind."""

    kind: str = Field(
        min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.\-]*$", examples=["demo.sleep"]
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Parameters of the kind (see GET /v1/job-kinds)."
    )


class JobProgressOut(BaseModel):
    stage: str
    done: int
    total: int | None = None
    eta_s: float | None = Field(default=None, description="Estimated seconds left in this stage.")
    updated_at: datetime | None = None


class JobErrorOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str
    message: str


class JobLinks(BaseModel):
    self: str
    events: str
    cancel: str
    result: str


class JobOut(BaseModel):
    """A job as its owner sees it."""

    id: str
    kind: str
    status: JobStatus
    params: dict[str, Any]
    progress: JobProgressOut | None
    error: JobErrorOut | None
    resumable: bool
    attempts: int
    max_attempts: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    links: JobLinks


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next, older page.")


class JobKindOut(BaseModel):
    name: str
    description: str
    resumable: bool
    scope: str
    params_schema: dict[str, Any]
    submit_route: str | None = Field(
        default=None, description="Submitted with this route instead of POST /v1/jobs."
    )


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    database: Literal["ok"]


class ErrorCatalogEntry(BaseModel):
    code: str
    title: str
    status: int
    description: str


class Problem(BaseModel):
    """An RFC 9457 problem document (``application/problem+json``)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None
