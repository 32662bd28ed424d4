"""A versioned, compact binary encoding of report batches.

Layout of version 1 (all integers big-endian)::

    b"PAR" | version (1 byte) | fingerprint length (u16) | fingerprint (UTF-8)
          | n (u64) | for each field of the protocol's report schema, in order:
            its n × columns values, each minus the field's minimum, in the fewest
            bits that hold the field's range, bit-packed and padded to a whole byte.

A protocol's *report schema* (:meth:`FrequencyOracle.report_schema`) names each field,
its number of columns and its value range, so the encoding carries no per-field
metadata, and the decoder knows the exact length to expect before it allocates
anything. Decoding untrusted bytes never crashes: a wrong magic, version,
fingerprint, length or out-of-range value raises :class:`DataError` saying which.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from privaudit.errors import DataError, LimitExceededError

__all__ = ["MAGIC", "VERSION", "Field", "decode", "encode", "field_bits"]

MAGIC = b"PAR"
VERSION = 1
_HEADER = struct.Struct(">3sBH")
_COUNT = struct.Struct(">Q")
_CHUNK_VALUES = 1 << 20


@dataclass(frozen=True)
class Field:
    """One array of a report batch: ``columns`` values per report (0: a 1-D array)
    in ``[low, high]``."""

    name: str
    columns: int
    low: int
    high: int

    @property
    def width(self) -> int:
        """Values per report."""
        return max(self.columns, 1)


def field_bits(field: Field) -> int:
    """Bits per value: the fewest that hold ``high − low``."""
    span = field.high - field.low
    return max(1, int(span).bit_length())


def _pack(values: npt.NDArray[np.int64], bits: int) -> bytes:
    out = bytearray()
    flat = values.ravel().astype(">u8")
    bit_rows: list[npt.NDArray[np.uint8]] = []
    for start in range(0, flat.size, _CHUNK_VALUES):
        chunk = flat[start : start + _CHUNK_VALUES]
        unpacked = np.unpackbits(chunk.view(np.uint8).reshape(-1, 8), axis=1)[:, 64 - bits :]
        bit_rows.append(unpacked.ravel())
    if bit_rows:
        out += np.packbits(np.concatenate(bit_rows)).tobytes()
    return bytes(out)


def _unpack(data: memoryview, count: int, bits: int) -> npt.NDArray[np.int64]:
    raw = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: count * bits].reshape(count, bits)
    weights = (1 << np.arange(bits - 1, -1, -1, dtype=np.uint64)).astype(np.uint64)
    return (raw.astype(np.uint64) @ weights).astype(np.int64)


def encode(
    fingerprint: str, n: int, schema: list[Field], arrays: dict[str, npt.NDArray[np.int64]]
) -> bytes:
    """Encode a batch whose arrays follow ``schema``."""
    name = fingerprint.encode()
    parts = [_HEADER.pack(MAGIC, VERSION, len(name)), name, _COUNT.pack(n)]
    for field in schema:
        values = np.asarray(arrays[field.name], dtype=np.int64)
        parts.append(_pack(values - field.low, field_bits(field)))
    return b"".join(parts)


def decode(
    data: bytes, *, fingerprint: str, schema: list[Field], max_reports: int
) -> tuple[int, dict[str, npt.NDArray[np.int64]]]:
    """Decode and validate bytes made by :func:`encode` for this protocol.

    Returns ``(n, arrays)``.

    Raises
    ------
    DataError
        On any malformed input, with what was expected and what was found.
    LimitExceededError
        If the batch holds more than ``max_reports`` reports.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DataError(f"expected bytes, got {type(data).__name__}")
    view = memoryview(bytes(data))
    if len(view) < _HEADER.size:
        raise DataError(f"a report batch starts with {_HEADER.size} header bytes; got {len(view)}")
    magic, version, name_length = _HEADER.unpack_from(view, 0)
    if magic != MAGIC:
        raise DataError(
            f"not a privaudit report batch (magic {bytes(magic)!r}, expected {MAGIC!r})"
        )
    if version != VERSION:
        raise DataError(f"unsupported report format version {version}; this reader knows {VERSION}")
    offset = _HEADER.size
    if len(view) < offset + name_length + _COUNT.size:
        raise DataError("the batch ends inside its header")
    try:
        found = bytes(view[offset : offset + name_length]).decode()
    except UnicodeDecodeError:
        raise DataError("the protocol fingerprint is not UTF-8") from None
    if found != fingerprint:
        raise DataError(f"these reports were made by {found}, not by {fingerprint}")
    offset += name_length
    (n,) = _COUNT.unpack_from(view, offset)
    offset += _COUNT.size
    if n > max_reports:
        raise LimitExceededError(f"the batch holds {n} reports; the limit is {max_reports}")
    expected = offset + sum((n * field.width * field_bits(field) + 7) // 8 for field in schema)
    if len(view) != expected:
        raise DataError(
            f"a batch of {n} reports for {fingerprint} takes {expected} bytes; got {len(view)}"
        )
    arrays: dict[str, npt.NDArray[np.int64]] = {}
    for field in schema:
        bits = field_bits(field)
        size = (n * field.width * bits + 7) // 8
        values = _unpack(view[offset : offset + size], n * field.width, bits) + field.low
        offset += size
        if values.size and (values.max() > field.high):
            raise DataError(
                f"field {field.name!r} holds {int(values.max())}, above its maximum {field.high}"
            )
        arrays[field.name] = values.reshape(n, field.columns) if field.columns else values
    return int(n), arrays
