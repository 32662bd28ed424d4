"""Documented error responses, so the OpenAPI document lists every status we return."""

from __future__ import annotations

from typing import Any

from privaudit.api.problems import PROBLEM_MEDIA_TYPE
from privaudit.api.schemas import Problem

__all__ = ["problems"]

_DESCRIPTIONS = {
    400: "Malformed request",
    401: "Missing or invalid API key",
    403: "The API key lacks the needed scope",
    404: "Not found (or owned by another tenant)",
    405: "Method not allowed",
    409: "Conflicts with the current state",
    413: "Request body too large",
    415: "Unsupported format",
    422: "Invalid parameters",
    429: "Budget or rate limit exhausted",
    500: "Internal error",
    503: "Service unavailable",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for the given statuses, all problem+json."""
    return {
        status: {
            "model": Problem,
            "description": _DESCRIPTIONS[status],
            "content": {PROBLEM_MEDIA_TYPE: {"schema": Problem.model_json_schema()}},
        }
        for status in statuses
    }
