"""Byte formats of what travels between a querier and a party.

Every message is one frame::

    b"PVS1" | kind (1 byte) | header length (uint32, big-endian) | header (UTF-8 JSON)
           | section count (uint16) | per section: length (uint32) | bytes

The header carries the public metadata (parameters, dimension, ids, ...); the sections
carry SEAL or TenSEAL objects in their own formats. Every length is checked against the
frame and against a caller-given bound before anything is parsed, so a truncated,
padded or oversized frame raises :class:`~privaudit.errors.DataError` or
:class:`~privaudit.errors.LimitExceededError`, never an exception from a C++ binding.
"""

from __future__ import annotations

import json
import struct
from enum import IntEnum
from typing import Any

from privaudit.errors import DataError, LimitExceededError

__all__ = ["Kind", "decode_frame", "encode_frame"]

MAGIC = b"PVS1"
_PREFIX = struct.Struct(">4sBI")
_COUNT = struct.Struct(">H")
_LENGTH = struct.Struct(">I")
MAX_HEADER_BYTES = 8 * 2**20


class Kind(IntEnum):
    """What a frame holds."""

    CONTEXT = 1
    QUERY = 2
    SCORES = 3


def encode_frame(kind: Kind, header: dict[str, Any], sections: list[bytes]) -> bytes:
    """Serialize one message."""
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    parts = [_PREFIX.pack(MAGIC, int(kind), len(text)), text, _COUNT.pack(len(sections))]
    for section in sections:
        parts += [_LENGTH.pack(len(section)), section]
    return b"".join(parts)


def decode_frame(
    blob: bytes, *, kind: Kind, max_bytes: int, max_sections: int
) -> tuple[dict[str, Any], list[bytes]]:
    """Parse one message of the expected ``kind``; refuse anything malformed or too big."""
    name = kind.name.lower()
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise DataError(f"the {name} message must be bytes; got {type(blob).__name__}")
    blob = bytes(blob)
    if len(blob) > max_bytes:
        raise LimitExceededError(
            f"the {name} message is {len(blob):,} bytes; at most {max_bytes:,} are accepted",
            size=len(blob),
            limit=max_bytes,
        )
    if len(blob) < _PREFIX.size or blob[:4] != MAGIC:
        raise DataError(f"not a privaudit vector-search {name} message (bad magic bytes)")
    _, found_kind, header_length = _PREFIX.unpack_from(blob)
    if found_kind != int(kind):
        raise DataError(f"expected a {name} message; got message kind {found_kind}")
    if header_length > MAX_HEADER_BYTES:
        raise LimitExceededError(f"the {name} header is too long ({header_length:,} bytes)")
    offset = _PREFIX.size
    header_bytes = _take(blob, offset, header_length, name)
    offset += header_length
    try:
        header = json.loads(header_bytes)
    except (ValueError, RecursionError) as error:
        # ValueError: bad UTF-8 or JSON, or an integer of over 4,300 digits;
        # RecursionError: arrays or objects nested too deep.
        raise DataError(f"the {name} header is not valid JSON ({str(error)[:200]})") from None
    if not isinstance(header, dict):
        raise DataError(f"the {name} header must be a JSON object")
    (count,) = _COUNT.unpack(_take(blob, offset, _COUNT.size, name))
    offset += _COUNT.size
    if count > max_sections:
        raise LimitExceededError(
            f"the {name} message has {count} sections; at most {max_sections} are accepted"
        )
    sections = []
    for _ in range(count):
        (length,) = _LENGTH.unpack(_take(blob, offset, _LENGTH.size, name))
        offset += _LENGTH.size
        sections.append(_take(blob, offset, length, name))
        offset += length
    if offset != len(blob):
        raise DataError(f"the {name} message has {len(blob) - offset} trailing bytes")
    return header, sections


def _take(blob: bytes, offset: int, length: int, name: str) -> bytes:
    if offset + length > len(blob):
        raise DataError(f"the {name} message is truncated at byte {len(blob)}")
    return blob[offset : offset + length]


def field(header: dict[str, Any], key: str, kind: type | tuple[type, ...], name: str) -> Any:
    """A header field of the given type, or a DataError naming it."""
    value = header.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        raise DataError(f"the {name} header field {key!r} is missing or of the wrong type")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)
