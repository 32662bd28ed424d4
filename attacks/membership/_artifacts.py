"""Reading audit arrays safely: ``.npz`` without pickle.

An artifact is judged by its bytes, never by its name
(:func:`privaudit.attacks.oracles.detect_format`, which model files go through too).
Only NumPy's ``.npz`` (a zip of ``.npy`` arrays) is read, with ``allow_pickle=False``,
and each member's header is checked *before* its data is read: an object dtype (which
only pickle can hold), a declared size above the limit (a zip bomb), too many members
or a member that is not an ``.npy`` array is refused. Pickle and anything else are
refused as :class:`~privaudit.errors.UnsupportedFormatError`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import IO

import numpy as np

from privaudit.attacks.oracles import detect_format
from privaudit.errors import DataError, LimitExceededError, UnsupportedFormatError

__all__ = ["DEFAULT_MAX_ARRAY_BYTES", "read_npz"]

DEFAULT_MAX_ARRAY_BYTES = 1024 * 1024 * 1024
"""Default bound on the bytes all arrays of one ``.npz`` may take once loaded."""

MAX_MEMBERS = 16

_NOT_NPZ = {
    "pickle": "is a Python pickle, which can run code when it is read; privaudit never unpickles",
    "npy": "is a single .npy array",
    "unknown": "is in an unrecognised file format",
}


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
        found = detect_format(path)
    except OSError as error:
        raise DataError(f"cannot read {label}: {error.strerror}", path=str(path)) from None
    if found.name == "zip" and found.detail.startswith("unreadable"):
        raise DataError(f"{label} is not a readable .npz (zip): {found.detail}")
    if found.name not in ("npz", "zip"):  # a zip of strangers is named member by member
        raise UnsupportedFormatError(
            f"{label} {_NOT_NPZ.get(found.name, f'is a {found.name} file')}"
            f"{f' ({found.detail})' if found.detail else ''}; the arrays "
            f"{', '.join(required)} must come as a NumPy .npz (numpy.savez)",
            format=found.name,
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
