"""Multipart uploads streamed to disk with a bound on every part.

Starlette's form parser spools file parts to disk with no per-part cap, so uploads are
parsed here with ``python-multipart``'s streaming parser: each file part goes straight
to a staging file while a running byte count (and SHA-256) is kept, and the request is
refused with :class:`PartTooLargeError` (413) the moment a part passes its limit,
without reading the rest. Text fields (the audit ``config``) are kept in memory under
their own, smaller, limit. The whole body is also bounded by the body-size middleware.

Accepted files go to the tenant's content-addressed store (:mod:`privaudit.api.blobs`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from privaudit.errors import DataError, LimitExceededError, UnsupportedFormatError

__all__ = [
    "MultipartLimits",
    "PartTooLargeError",
    "UploadedPart",
    "read_multipart",
]

PART_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,127}$")


class PartTooLargeError(Exception):
    """A part passed its size limit (answered 413 ``payload_too_large``)."""

    def __init__(self, part: str, limit: int) -> None:
        super().__init__(
            f"part {part!r} exceeds its limit of {limit} bytes; send a smaller file (the "
            "limits are in docs/service.md#limits)"
        )
        self.part = part
        self.limit = limit


@dataclass(frozen=True)
class MultipartLimits:
    """Bounds on one multipart request.

    Attributes
    ----------
    text_fields
        Names of parts read into memory as text (e.g. ``{"config"}``); every other
        part is a file, streamed to disk.
    max_text_bytes
        Largest text part.
    max_file_bytes
        Largest file part.
    max_files
        Most file parts.
    """

    text_fields: frozenset[str]
    max_text_bytes: int
    max_file_bytes: int
    max_files: int


@dataclass
class UploadedPart:
    """One part of a multipart request."""

    name: str
    filename: str | None
    content_type: str | None
    size: int = 0
    sha256: str = ""
    path: Path | None = None
    text: bytes | None = None
    _digest: Any = field(default_factory=hashlib.sha256, repr=False)
    _handle: BinaryIO | None = field(default=None, repr=False)


def _disposition(headers: dict[bytes, bytes]) -> tuple[str, str | None]:
    kind, options = parse_options_header(headers.get(b"content-disposition", b""))
    if kind != b"form-data" or b"name" not in options:
        raise DataError(
            "every part needs 'Content-Disposition: form-data; name=\"...\"' (send the "
            "request as multipart/form-data)"
        )
    name = options[b"name"].decode("latin-1")
    filename = options.get(b"filename")
    return name, None if filename is None else filename.decode("latin-1")[:255]


async def read_multipart(
    request: Request, *, staging_dir: Path, limits: MultipartLimits
) -> dict[str, UploadedPart]:
    """Parse a ``multipart/form-data`` request body, streaming file parts to ``staging_dir``.

    Returns
    -------
    dict
        Part name → :class:`UploadedPart`: text parts hold ``text``, file parts ``path``
        (in ``staging_dir``), both with their ``size`` and ``sha256``.

    Raises
    ------
    UnsupportedFormatError
        If the request is not ``multipart/form-data`` with a boundary (415).
    PartTooLargeError
        As soon as a part passes its limit (413).
    LimitExceededError
        If there are too many file parts (422).
    DataError
        If the body is malformed, truncated, or a part is unnamed, badly named or
        repeated (422).
    """
    content_type, options = parse_options_header(request.headers.get("content-type"))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise UnsupportedFormatError(
            "send the request as multipart/form-data: a 'config' part (JSON) and one file "
            f"part per artifact; got Content-Type {request.headers.get('content-type')!r}"
        )
    staging_dir.mkdir(parents=True, exist_ok=True)
    parts: dict[str, UploadedPart] = {}
    # Callbacks only record events; they are acted on (awaiting file writes) after each
    # chunk. A part's headers travel with its "begin" event, since one chunk may hold
    # several parts.
    events: list[tuple[str, bytes, dict[bytes, bytes]]] = []
    header_field = bytearray()
    header_value = bytearray()
    headers: dict[bytes, bytes] = {}
    ended = False

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        headers[bytes(header_field).lower()] = bytes(header_value)
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        events.append(("begin", b"", dict(headers)))
        headers.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        events.append(("data", data[start:end], {}))

    def on_part_end() -> None:
        events.append(("end", b"", {}))

    def on_end() -> None:
        nonlocal ended
        ended = True

    parser = MultipartParser(
        boundary,
        {
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_end": on_end,
        },
        max_header_count=8,
        max_header_size=4096,
    )
    current: UploadedPart | None = None
    files = 0
    try:
        async for chunk in request.stream():
            try:
                parser.write(chunk)
            except MultipartParseError as error:
                raise DataError(f"the multipart body is malformed: {error}") from None
            for event, data, part_headers in events:
                if event == "begin":
                    name, filename = _disposition(part_headers)
                    if not PART_NAME.match(name):
                        raise DataError(
                            f"part name {name[:100]!r} is not allowed: use letters, digits, "
                            "'_', '-', '.' and '/' (the artifact name the config gives)"
                        )
                    if name in parts:
                        raise DataError(f"part {name!r} appears twice; send each part once")
                    current = UploadedPart(name=name, filename=filename, content_type=None)
                    parts[name] = current
                    if name in limits.text_fields:
                        current.text = b""
                    else:
                        files += 1
                        if files > limits.max_files:
                            raise LimitExceededError(
                                f"at most {limits.max_files} artifact parts per request",
                                limit=limits.max_files,
                            )
                        current.path = staging_dir / f"part-{files:03d}"
                        current._handle = await run_in_threadpool(current.path.open, "wb")
                elif event == "data" and current is not None:
                    current.size += len(data)
                    text = current.text is not None
                    limit = limits.max_text_bytes if text else limits.max_file_bytes
                    if current.size > limit:
                        raise PartTooLargeError(current.name, limit)
                    current._digest.update(data)
                    if current.text is not None:
                        current.text += data
                    elif current._handle is not None:
                        await run_in_threadpool(current._handle.write, data)
                elif event == "end" and current is not None:
                    current.sha256 = current._digest.hexdigest()
                    if current._handle is not None:
                        await run_in_threadpool(current._handle.close)
                        current._handle = None
                    current = None
            events.clear()
        parser.finalize()
        if not ended or current is not None:
            raise DataError("the multipart body is truncated (no closing boundary)")
    finally:
        for part in parts.values():
            if part._handle is not None:
                part._handle.close()
    return parts
