"""Thin, checked access to TenSEAL's low-level SEAL bindings (``tenseal.sealapi``).

The bindings save and load through file paths only, and raise bare C++ exceptions
(mapped by pybind11 to ``RuntimeError``/``ValueError``) on malformed input. Everything
here turns bytes into SEAL objects and back through a private temporary file, bounds
the size first, and maps every SEAL failure to a :class:`~privaudit.errors.DataError`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from functools import partial
from typing import Any

from privaudit.errors import DataError, LimitExceededError, MissingDependencyError

__all__ = ["dump", "load_ciphertext", "load_into", "sealapi"]

# mkstemp creates its file there with O_EXCL and mode 0600: not readable by others.
_SHM = "/dev/shm"  # noqa: S108

# What pybind11 turns SEAL's std::logic_error / invalid_argument / out_of_range into.
SEAL_FAILURES: tuple[type[BaseException], ...] = (
    RuntimeError,
    ValueError,
    IndexError,
    OverflowError,
    TypeError,
    MemoryError,
)


def sealapi() -> Any:
    """Import ``tenseal.sealapi`` or say which extra to install."""
    try:
        import tenseal.sealapi as api
    except ImportError as error:
        raise MissingDependencyError(
            "encrypted vector search needs TenSEAL; run: pip install 'privaudit[crypto]'"
        ) from error
    return api


def _temporary_path() -> str:
    # /dev/shm keeps the round trip in memory where it exists (Linux).
    directory = _SHM if os.path.isdir(_SHM) and os.access(_SHM, os.W_OK) else None
    handle, path = tempfile.mkstemp(prefix="privaudit-seal-", dir=directory)
    os.close(handle)
    return path


def dump(save: Callable[[str], None]) -> bytes:
    """Bytes written by a SEAL ``save(path)`` method (ciphertexts, keys, parameters)."""
    path = _temporary_path()
    try:
        save(path)
        with open(path, "rb") as handle:
            return handle.read()
    finally:
        os.unlink(path)


def load_into(load: Callable[[str], None], blob: bytes, *, what: str, max_bytes: int) -> None:
    """Run a SEAL ``load(path)`` method on ``blob``, refusing oversized or malformed data.

    Parameters
    ----------
    load
        A bound method such as ``partial(ciphertext.load, context)``.
    blob
        The serialized object (SEAL's own format, zstd-compressed or not).
    what
        Names the object in error messages ("query ciphertext", "Galois keys").
    max_bytes
        The largest ``blob`` accepted; SEAL itself also checks every declared size
        against the encryption parameters before it allocates.

    Raises
    ------
    LimitExceededError
        If ``blob`` is longer than ``max_bytes``.
    DataError
        If ``blob`` is not bytes, or SEAL refuses it (bad header, sizes that do not fit
        the parameters, coefficients out of range, truncated data).
    """
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise DataError(f"{what} must be bytes; got {type(blob).__name__}")
    if len(blob) > max_bytes:
        raise LimitExceededError(
            f"{what} is {len(blob):,} bytes; at most {max_bytes:,} are accepted",
            size=len(blob),
            limit=max_bytes,
        )
    if len(blob) == 0:
        raise DataError(f"{what} is empty; send the bytes the querier serialized")
    path = _temporary_path()
    try:
        with open(path, "wb") as handle:
            handle.write(blob)
        load(path)
    except SEAL_FAILURES as error:
        raise DataError(
            f"{what} is malformed or does not match the encryption parameters ({error}); "
            "send bytes serialized by privaudit's Querier for this context"
        ) from None
    finally:
        os.unlink(path)


def load_ciphertext(context: Any, blob: bytes, *, what: str, max_bytes: int) -> Any:
    """A ``sealapi.Ciphertext`` from ``blob``, checked by SEAL against ``context``."""
    ciphertext = sealapi().Ciphertext()
    load_into(partial(ciphertext.load, context), blob, what=what, max_bytes=max_bytes)
    return ciphertext
