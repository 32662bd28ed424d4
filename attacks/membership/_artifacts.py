"""Reading audit artifacts safely: content sniffing and ``.npz`` without pickle.

An artifact is judged by its bytes, never by its name. Only NumPy's ``.npz`` (a zip
of ``.npy`` arrays) is read, with ``allow_pickle=False``, and each member's header is
checked *before* its data is read: an object dtype (which only pickle can hold), a
declared size above the limit (a zip bomb), too many members or a member that is not
an ``.npy`` array is refused. Pickle and anything unknown are refused by
:func:`sniff_format` as :class:`~privaudit.errors.UnsupportedFormatError`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import IO

import numpy as np

from privaudit.errors import DataError, LimitExceededError, UnsupportedFormatError

__all__ = ["DEFAULT_MAX_ARRAY_BYTES", "read_npz", "sniff_format"]

DEFAULT_MAX_ARRAY_BYTES = 1024 * 1024 * 1024
"""Default bound on the bytes all arrays of one ``.npz`` may take once loaded."""

MAX_MEMBERS = 16

_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip, or an empty one
_NPY_MAGIC = b"\x93NUMPY"


def sniff_format(head: bytes) -> str:
    """The format of a file from its first bytes: ``"npz"`` or ``"npy"``.

    Raises
    ------
    UnsupportedFormatError
        For pickle (protocol 2 and later start with ``0x80``; joblib and ``torch.save``
        files are pickles or zips of pickles) and for anything unrecognised.

    Examples
    --------
    >>> sniff_format(b"PK\\x03\\x04...")
    'npz'
    >>> try:
    ...     sniff_format(b"\\x80\\x04\\x95")
    ... except UnsupportedFormatError as error:
    ...     print(error.code, error.details)
    unsupported_format {'format': 'pickle'}
    """
    if head.startswith(_ZIP_MAGICS):
        return "npz"
    if head.startswith(_NPY_MAGIC):
        return "npy"
    if head[:1] == b"\x80":
        raise UnsupportedFormatError(
            "this file is a Python pickle, which can run code when it is read; privaudit "
            "never unpickles: save arrays with numpy.savez (allow_pickle=False reads them)",
            format="pickle",
        )
    raise UnsupportedFormatError(
        "unrecognised file format: an audit's arrays must be a NumPy .npz (numpy.savez or "
        "numpy.savez_compressed)",
        format="unknown",
    )


def read_npz(
    path: str | Path,
    *,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
    max_array_bytes: int = DEFAULT_MAX_ARRAY_BYTES,
    name: str | None = None,
) -> dict[str, np.ndarray]:
    """Load the arrays of an ``.npz`` file, checking every header before any data.

    Parameters
    ----------
    path
        The file; its content must be a zip of ``.npy`` members.
    required, optional
        Array names (without ``.npy``) that must, or may, be present; any other member
        is refused, so a typo does not pass silently.
    max_array_bytes
        Bound on the bytes of all arrays once loaded (declared shape times item size).
    name
        How the file is called in messages (default: its path).

    Raises
    ------
    UnsupportedFormatError
        If the file is not an ``.npz``, or an array needs pickle (object dtype).
    DataError
        If an array is missing, unexpected, or unreadable.
    LimitExceededError
        If the arrays would take more than ``max_array_bytes``.
    """
    path = Path(path)
    label = name or str(path)
    try:
        with path.open("rb") as handle:
            found = sniff_format(handle.read(8))
    except OSError as error:
        raise DataError(f"cannot read {label}: {error.strerror}", path=str(path)) from None
    if found != "npz":
        raise UnsupportedFormatError(
            f"{label} is a single .npy array; an audit needs a .npz holding "
            f"{', '.join(required)} (numpy.savez)",
            format=found,
        )
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > MAX_MEMBERS:
                raise LimitExceededError(
                    f"{label} holds {len(members)} files; at most {MAX_MEMBERS} are read",
                    limit=MAX_MEMBERS,
                )
            arrays = {_array_name(label, member.filename): member for member in members}
            missing = [key for key in required if key not in arrays]
            unexpected = sorted(set(arrays) - set(required) - set(optional))
            if missing or unexpected:
                allowed = ", ".join([*required, *(f"{key} (optional)" for key in optional)])
                raise names_error(f"{label} must hold the arrays {allowed}", missing, unexpected)
            total = 0
            for key, member in arrays.items():
                with archive.open(member) as stream:
                    shape, dtype = _header(label, key, stream)
                total += int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
                if total > max_array_bytes:
                    raise LimitExceededError(
                        f"the arrays of {label} would take more than {max_array_bytes} bytes "
                        f"once loaded ({key} alone: shape {shape}, {dtype})",
                        limit=max_array_bytes,
                    )
    except zipfile.BadZipFile as error:
        raise DataError(f"{label} is not a readable .npz (zip): {error}") from None
    try:
        with np.load(path, allow_pickle=False) as loaded:
            return {key: np.asarray(loaded[key]) for key in arrays}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise DataError(f"{label}: an array cannot be read: {error}") from None


def names_error(
    lead: str, missing: list[str], unexpected: list[str], *, unexpected_label: str = "unexpected"
) -> DataError:
    """``DataError("LEAD; missing [...]; unexpected [...]")`` with both lists as details."""
    parts = []
    if missing:
        parts.append(f"missing {missing}")
    if unexpected:
        parts.append(f"{unexpected_label} {unexpected}")
    return DataError(f"{lead}; {'; '.join(parts)}", missing=missing, unexpected=unexpected)


def _array_name(label: str, filename: str) -> str:
    if not filename.endswith(".npy") or "/" in filename or filename.startswith("."):
        raise DataError(
            f"{label} holds {filename!r}, which is not an array: an .npz holds only "
            "NAME.npy members (numpy.savez writes them)"
        )
    return filename[: -len(".npy")]


def _header(label: str, key: str, stream: IO[bytes]) -> tuple[tuple[int, ...], np.dtype]:
    from numpy.lib import format as npy

    try:
        version = npy.read_magic(stream)
        if version == (1, 0):
            shape, _fortran, dtype = npy.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, _fortran, dtype = npy.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except ValueError as error:
        raise DataError(f"{label}: {key} is not a valid .npy array: {error}") from None
    if dtype.hasobject:
        raise UnsupportedFormatError(
            f"{label}: {key} has dtype {dtype}, which only pickle can hold; privaudit never "
            "unpickles: store numbers or booleans",
            format="pickle",
        )
    return tuple(int(size) for size in shape), dtype
