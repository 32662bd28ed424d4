"""RFC 9457 problem details for every error the service returns.

Each problem carries the kernel's stable error ``code`` and a ``type`` URI that
resolves, on the same server, to the description of that code
(``GET /v1/errors/{code}``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from privaudit.errors import PrivauditError, all_error_classes

__all__ = ["PROBLEM_MEDIA_TYPE", "STATUS_BY_CODE", "error_catalog", "install", "problem_response"]

PROBLEM_MEDIA_TYPE = "application/problem+json"

STATUS_BY_CODE: dict[str, int] = {
    "privaudit_error": 500,
    "bad_parameter": 422,
    "bad_input_data": 422,
    "unsupported_format": 415,
    "not_fitted": 500,
    "budget_exhausted": 429,
    "limit_exceeded": 422,
    "not_found": 404,
    "conflict": 409,
    "unauthenticated": 401,
    "permission_denied": 403,
    "missing_dependency": 501,
    "bad_configuration": 500,
    "did_not_converge": 422,
    "job_cancelled": 409,
    "work_unit_failed": 500,
}

# Codes the service itself adds to the kernel's (HTTP-only situations).
SERVICE_CODES: dict[str, tuple[int, str, str]] = {
    "payload_too_large": (413, "Payload too large", "The request body exceeds the size limit."),
    "method_not_allowed": (405, "Method not allowed", "The resource does not support this method."),
    "internal_error": (500, "Internal error", "An unexpected error; the server log has details."),
    "unavailable": (503, "Service unavailable", "A dependency (the database) is not reachable."),
    "worker_lost": (
        500,
        "Job run lost",
        "A job's run ended without finishing it (its process crashed or was killed, or its "
        "worker stopped heartbeating). Appears in a job's error, not as an HTTP status.",
    ),
}


def error_catalog() -> dict[str, dict[str, Any]]:
    """Every error code the API can return, with its HTTP status and meaning."""
    catalog: dict[str, dict[str, Any]] = {}
    for cls in all_error_classes():
        if cls.__module__ != "privaudit.errors":
            continue
        catalog[cls.code] = {
            "code": cls.code,
            "title": cls.title,
            "status": STATUS_BY_CODE.get(cls.code, 500),
            "description": (cls.__doc__ or "").strip().split("\n\n")[0],
        }
    for code, (status, title, description) in SERVICE_CODES.items():
        catalog[code] = {"code": code, "title": title, "status": status, "description": description}
    return catalog


def problem_response(
    request: Request | None,
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem+json response."""
    body: dict[str, Any] = {
        "type": f"/v1/errors/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if request is not None:
        body["instance"] = request.url.path
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _for_privaudit_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, PrivauditError)
    status = STATUS_BY_CODE.get(error.code, 500)
    headers = {"WWW-Authenticate": 'Bearer realm="privaudit"'} if status == 401 else None
    extra = {k: v for k, v in error.details.items() if k not in {"type", "title", "status"}}
    return problem_response(
        request,
        status=status,
        code=error.code,
        title=error.title,
        detail=error.message,
        headers=headers,
        **extra,
    )


def _for_validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    errors = [
        {
            "loc": list(item.get("loc", ())),
            "msg": str(item.get("msg", "")),
            "type": item.get("type"),
        }
        for item in error.errors()[:50]
    ]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(part) for part in first["loc"])
    return problem_response(
        request,
        status=422,
        code="bad_parameter",
        title="Bad parameter",
        detail=f"{where}: {first['msg']}" if where else str(first["msg"]),
        errors=errors,
    )


def _for_http_exception(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    if error.status_code == 400:
        # FastAPI's "error parsing the body" (bytes that are not UTF-8 JSON): the same
        # 422 as any other malformed JSON.
        return problem_response(
            request,
            status=422,
            code="bad_parameter",
            title="Bad parameter",
            detail="the request body is not valid UTF-8 JSON",
        )
    headers = dict(error.headers or {})
    if error.status_code == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
    code = {
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
        401: "unauthenticated",
        403: "permission_denied",
    }.get(error.status_code, "privaudit_error" if error.status_code >= 500 else "bad_parameter")
    return problem_response(
        request,
        status=error.status_code,
        code=code,
        title=error_catalog().get(code, {}).get("title", "Error"),
        detail=str(error.detail),
        headers=headers,
    )


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route offers for this path (routes may live in several routers)."""
    methods: set[str] = set()
    for route in request.app.routes:
        match, _child = route.matches(request.scope)
        if match is not Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)


def _for_unexpected(request: Request, _error: Exception) -> JSONResponse:
    return problem_response(
        request,
        status=500,
        code="internal_error",
        title="Internal error",
        detail="an unexpected error occurred; the server log has the details",
    )


def install(app: FastAPI) -> None:
    """Register the problem+json handlers on ``app``."""
    app.add_exception_handler(PrivauditError, _for_privaudit_error)
    app.add_exception_handler(RequestValidationError, _for_validation_error)
    app.add_exception_handler(StarletteHTTPException, _for_http_exception)
    app.add_exception_handler(Exception, _for_unexpected)
