"""Renderers by name, and reading a report back with validation.

A renderer is an object with ``name``, ``suffix``, ``media_type`` and
``render(report) -> str``, registered in :data:`privaudit.registry.report_formats`.
Adding a format (``junit``, ``sarif``) is one class plus one registration; every
renderer reads the same :class:`AuditReport` and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import ValidationError

from privaudit.errors import DataError, LimitExceededError
from privaudit.registry import report_formats
from privaudit.reports._schema import REPORT_KIND, SCHEMA_VERSION, AuditReport

__all__ = [
    "MAX_REPORT_BYTES",
    "JsonRenderer",
    "Renderer",
    "load_report",
    "parse_report",
    "render",
    "report_json_schema",
    "write_report",
]

MAX_REPORT_BYTES = 32 * 1024 * 1024
"""Largest report file :func:`load_report` reads (a report is usually well under 1 MiB)."""


@runtime_checkable
class Renderer(Protocol):
    """Turns an :class:`AuditReport` into one document of a format."""

    name: str
    suffix: str
    media_type: str

    def render(self, report: AuditReport) -> str:
        """The document, as text."""
        ...


@report_formats.register("json")
class JsonRenderer:
    """The canonical form: the report as JSON (what :func:`load_report` reads back)."""

    name: ClassVar[str] = "json"
    suffix: ClassVar[str] = ".json"
    media_type: ClassVar[str] = "application/json"

    def render(self, report: AuditReport) -> str:
        """Indented JSON, one trailing newline."""
        return report.model_dump_json(indent=2) + "\n"


def _renderer(format_name: str) -> Renderer:
    found = report_formats.get(format_name)
    renderer = found() if isinstance(found, type) else found
    if not isinstance(renderer, Renderer):
        raise DataError(f"report format {format_name!r} is registered to a non-renderer")
    return renderer


def render(report: AuditReport, format_name: str) -> str:
    """Render ``report`` in a registered format (``"json"``, ``"html"``, ``"md"``).

    Raises
    ------
    NotFoundError
        If no format of that name is registered.
    """
    return _renderer(format_name).render(report)


def write_report(
    report: AuditReport,
    directory: str | Path,
    *,
    formats: Iterable[str] = ("json", "html", "md"),
    stem: str = "report",
) -> dict[str, Path]:
    """Write ``report`` to ``directory/stem.suffix`` in each format; return the paths."""
    renderers = [_renderer(name) for name in formats]  # fail before writing anything
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for renderer in renderers:
        path = target / f"{stem}{renderer.suffix}"
        path.write_text(renderer.render(report), encoding="utf-8")
        written[renderer.name] = path
    return written


def report_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a report of version :data:`SCHEMA_VERSION`."""
    schema = AuditReport.model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:privaudit:audit-report:{SCHEMA_VERSION}",
        **schema,
    }


def _refuse_constant(name: str) -> None:
    raise DataError(f"a report may not contain {name} (JSON has no such number)")


def parse_report(text: str | bytes, *, source: str = "the report") -> AuditReport:
    """Validate a report's JSON text against the schema.

    Raises
    ------
    DataError
        If the text is not JSON, not a privaudit report, of another schema version, or
        breaks the schema; the message names the fields at fault.
    LimitExceededError
        If the text is longer than :data:`MAX_REPORT_BYTES`.
    """
    size = len(text.encode() if isinstance(text, str) else text)
    if size > MAX_REPORT_BYTES:
        raise LimitExceededError(
            f"{source} is {size} bytes; reports are limited to {MAX_REPORT_BYTES}",
            limit=MAX_REPORT_BYTES,
        )
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{source} is not valid UTF-8 JSON: {error}") from error
    if not isinstance(document, dict) or document.get("kind") != REPORT_KIND:
        raise DataError(
            f"{source} is not a privaudit audit report: expected a JSON object with "
            f'"kind": "{REPORT_KIND}"'
        )
    version = document.get("schema_version")
    if version != SCHEMA_VERSION:
        raise DataError(
            f"{source} has schema_version {version!r}; this privaudit reads version "
            f"{SCHEMA_VERSION} only (upgrade privaudit to read newer reports)",
            schema_version=version,
        )
    try:
        return AuditReport.model_validate_json(text, strict=True)
    except ValidationError as error:
        problems = [
            f"{'.'.join(map(str, item['loc'])) or '(top level)'}: {item['msg']}"
            for item in error.errors(include_url=False)
        ]
        shown = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise DataError(
            f"{source} breaks the audit report schema (version {SCHEMA_VERSION}): {shown}{more}",
            errors=problems[:20],
        ) from None


def load_report(path: str | Path) -> AuditReport:
    """Read and validate a report JSON file (see :func:`parse_report`)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_REPORT_BYTES:
            raise LimitExceededError(
                f"{path} is {size} bytes; reports are limited to {MAX_REPORT_BYTES}",
                limit=MAX_REPORT_BYTES,
            )
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read the report {str(path)!r}: {error.strerror}") from error
    return parse_report(data, source=str(path))
