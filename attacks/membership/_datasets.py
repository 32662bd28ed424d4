"""Audit datasets from ``.npz``, ``.csv`` or ``.parquet`` files, never from pickles.

An audit needs, for each example: its features (what the model is queried with), its
label (the class whose confidence is the signal), and whether it was in the target
model's training set (the ground truth the audit is scored against). A table holds
them as columns; an ``.npz`` holds them as arrays. The format is read from the
content: Parquet starts with ``PAR1``, ``.npz`` is a zip of ``.npy`` arrays (read with
``allow_pickle=False``), and anything else must be UTF-8 text (CSV).

Every size is bounded before it is allocated where the format allows (the file, an
``.npz``'s unpacked arrays, a Parquet file's row count), and every problem is a
:class:`~privaudit.errors.DataError` that names the column: missing columns (with the
columns there are), missing values and NaNs (with the first row), and wrong types.
"""

from __future__ import annotations

import difflib
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from privaudit.attacks.membership._artifacts import read_npz
from privaudit.attacks.oracles import check_file_size, detect_format
from privaudit.errors import (
    DataError,
    LimitExceededError,
    MissingDependencyError,
    UnsupportedFormatError,
)

__all__ = ["AuditDataset", "load_dataset"]

DEFAULT_MAX_BYTES = 1024 * 2**20
DEFAULT_MAX_ROWS = 10_000_000
_TEXT_PROBE = 4096


@dataclass(frozen=True)
class AuditDataset:
    """The examples of an audit.

    Attributes
    ----------
    features : numpy.ndarray
        ``(n, ...)`` float64: what the model is queried with.
    labels : numpy.ndarray
        ``(n,)`` int64 class indices (column ``labels[i]`` of the model's answer).
    member : numpy.ndarray
        ``(n,)`` bool: whether example ``i`` was in the target model's training set.
    feature_names : tuple of str
        The feature columns of a table, or the array's name in an ``.npz``.
    format : str
        ``"npz"``, ``"csv"`` or ``"parquet"``.
    """

    features: np.ndarray
    labels: np.ndarray
    member: np.ndarray
    feature_names: tuple[str, ...]
    format: str

    @property
    def n_examples(self) -> int:
        """The number of examples."""
        return int(self.labels.shape[0])

    @property
    def n_members(self) -> int:
        """How many examples the target model trained on."""
        return int(self.member.sum())


@dataclass(frozen=True)
class _Request:
    """What :func:`load_dataset` was asked for."""

    file: Path
    features: str | Sequence[str] | None
    label: str
    member: str
    max_bytes: int
    max_rows: int


def load_dataset(
    path: str | Path,
    *,
    features: str | Sequence[str] | None = None,
    label: str = "label",
    member: str = "member",
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> AuditDataset:
    """Load an audit dataset with a column (or mask) marking the target's members.

    Parameters
    ----------
    path
        A ``.npz``, CSV or Parquet file (told apart by content).
    features
        Tables: the feature columns (default: every column but ``label`` and
        ``member``). ``.npz``: the name of the features array, ``(n, ...)`` (default
        ``"features"``).
    label
        The column (or array) of integer class labels, ``0 .. C-1``.
    member
        The column (or boolean mask array) marking the target's training members:
        booleans, or 0/1.
    max_bytes, max_rows
        Bounds on the file (and on an ``.npz``'s unpacked arrays) and on the rows.

    Raises
    ------
    UnsupportedFormatError
        If the file is a pickle, an ``.npz`` with object arrays, or another binary
        format.
    DataError
        If a column is missing, has missing values or NaNs, has the wrong type, or
        ``member`` marks no member or no non-member.
    LimitExceededError
        If the file or the row count is over its bound.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "audit.npz"
    >>> np.savez(path, features=np.eye(4), label=[0, 1, 0, 1], member=[1, 1, 0, 0])
    >>> data = load_dataset(path)
    >>> data.features.shape, data.labels.tolist(), data.member.tolist()
    ((4, 4), [0, 1, 0, 1], [True, True, False, False])
    """
    file = Path(path)
    check_file_size(file, max_bytes=max_bytes, what="dataset")
    request = _Request(file, features, label, member, max_bytes, max_rows)
    with file.open("rb") as handle:
        head = handle.read(_TEXT_PROBE)
    found = detect_format(file)
    if head.startswith(b"PAR1"):
        columns, rows = _read_parquet(request)
        return _from_columns(request, columns, rows, "parquet")
    if found.name == "npz":
        return _read_npz(request)
    # A text pickle (protocol 0) would parse as a (nonsense) CSV, harmlessly; and a CSV
    # can look like one (a letter first, "." last), so text goes to the CSV reader.
    text_like = found.name == "unknown" or found.detail == "protocol 0 or 1"
    if text_like and b"\x00" not in head and _is_text(head):
        columns, rows = _read_csv(request)
        return _from_columns(request, columns, rows, "csv")
    kind = found.name + (f" ({found.detail})" if found.detail else "")
    raise UnsupportedFormatError(
        f"dataset {file.name!r} is {kind} data, not .npz, CSV or Parquet; privaudit never "
        "loads pickles (pandas.to_pickle, joblib). Save the table with "
        "DataFrame.to_parquet or to_csv, or arrays with numpy.savez",
        format=found.name,
    )


def _is_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        return error.start >= len(head) - 3  # a character cut at the probe's end
    return True


def _too_many_rows(file: Path, rows: int, max_rows: int) -> LimitExceededError:
    return LimitExceededError(
        f"dataset {file.name!r} has {rows} rows, over the limit of {max_rows}; audit a sample",
        limit="max_rows",
    )


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.csv
        import pyarrow.parquet
    except ImportError as error:
        raise MissingDependencyError(
            "reading CSV and Parquet datasets needs pyarrow; run: pip install 'privaudit[audit]'"
        ) from error
    return pyarrow


def _missing(file: Path, what: str, name: str, available: Sequence[str]) -> DataError:
    close = difflib.get_close_matches(name, list(available), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return DataError(
        f"dataset {file.name!r} has no {what} {name!r}{hint}; it has: "
        f"{', '.join(available[:20])}{' ...' if len(available) > 20 else ''}",
        column=name,
    )


def _read_parquet(request: _Request) -> tuple[dict[str, Any], int]:
    pa = _pyarrow()
    file = request.file
    try:
        parquet = pa.parquet.ParquetFile(file)
    except pa.ArrowException as error:
        raise DataError(f"dataset {file.name!r} is not a readable Parquet file: {error}") from None
    metadata = parquet.metadata
    if metadata.num_rows > request.max_rows:
        raise _too_many_rows(file, metadata.num_rows, request.max_rows)
    unpacked = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
    if unpacked > 4 * request.max_bytes:
        raise LimitExceededError(
            f"dataset {file.name!r} unpacks to {unpacked} bytes, over the limit of "
            f"{4 * request.max_bytes}",
            limit="max_bytes",
        )
    wanted = _table_columns(request, list(parquet.schema_arrow.names))
    table = parquet.read(columns=wanted)
    return {name: table.column(name) for name in wanted}, table.num_rows


def _read_csv(request: _Request) -> tuple[dict[str, Any], int]:
    pa = _pyarrow()
    file = request.file
    try:
        table = pa.csv.read_csv(file)
    except pa.ArrowException as error:
        raise DataError(f"dataset {file.name!r} is not a readable CSV file: {error}") from None
    names = list(table.column_names)
    if len(set(names)) != len(names):
        raise DataError(f"dataset {file.name!r} has repeated column names: {names}")
    if table.num_rows > request.max_rows:
        raise _too_many_rows(file, table.num_rows, request.max_rows)
    return {name: table.column(name) for name in _table_columns(request, names)}, table.num_rows


def _table_columns(request: _Request, names: list[str]) -> list[str]:
    """The feature columns, then the label and member columns, all checked to exist."""
    file, features, label, member = request.file, request.features, request.label, request.member
    for name in (label, member):
        if name not in names:
            raise _missing(file, "column", name, names)
    if features is None:
        chosen = [name for name in names if name not in (label, member)]
    else:
        chosen = [features] if isinstance(features, str) else list(features)
        for name in chosen:
            if name not in names:
                raise _missing(file, "feature column", name, names)
    if not chosen:
        raise DataError(
            f"dataset {file.name!r} has no feature column besides {label!r} and {member!r}"
        )
    return [*chosen, label, member]


def _from_columns(request: _Request, columns: dict[str, Any], rows: int, kind: str) -> AuditDataset:
    pa = _pyarrow()
    file, label, member = request.file, request.label, request.member
    names = list(columns)
    feature_names = names[:-2]
    arrays = {}
    for name in names:
        column = columns[name]
        if column.null_count:
            first = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(
                f"dataset {file.name!r}: column {name!r} has {column.null_count} missing "
                f"values (first at row {first}); fill or drop them",
                column=name,
            )
        kind_of = column.type
        if not (
            pa.types.is_integer(kind_of)
            or pa.types.is_floating(kind_of)
            or pa.types.is_boolean(kind_of)
        ):
            raise DataError(
                f"dataset {file.name!r}: column {name!r} has type {kind_of}; features, labels "
                "and the member column must be numbers or booleans (encode categories as "
                "integers first)",
                column=name,
            )
        arrays[name] = column.to_numpy()
    matrix = np.column_stack([arrays[name].astype(np.float64) for name in feature_names])
    matrix = matrix.reshape(rows, len(feature_names))
    return _checked(request, kind, matrix, arrays[label], arrays[member], feature_names)


def _read_npz(request: _Request) -> AuditDataset:
    file, features, label, member = request.file, request.features, request.label, request.member
    max_bytes, max_rows = request.max_bytes, request.max_rows
    if features is not None and not isinstance(features, str):
        raise DataError(
            f"dataset {file.name!r} is an .npz: features names one array (a string); got "
            f"{features!r}"
        )
    feature_key = features or "features"
    with zipfile.ZipFile(file) as archive:
        keys = [name.removesuffix(".npy") for name in archive.namelist()]
    for key, what in ((feature_key, "features array"), (label, "array"), (member, "array")):
        if key not in keys:
            raise _missing(file, what, key, keys)
    wanted = (feature_key, label, member)
    arrays = read_npz(
        file,
        required=wanted,
        optional=tuple(key for key in keys if key not in wanted),
        max_array_bytes=max_bytes,
        name=f"dataset {file.name!r}",
    )
    matrix = arrays[feature_key]
    if matrix.ndim < 2 or not (np.issubdtype(matrix.dtype, np.number) or matrix.dtype == np.bool_):
        raise DataError(
            f"dataset {file.name!r}: {feature_key!r} must be a numeric array with one row per "
            f"example, (n, ...); got dtype {matrix.dtype} and shape {matrix.shape}",
            column=feature_key,
        )
    if matrix.shape[0] > max_rows:
        raise _too_many_rows(file, matrix.shape[0], max_rows)
    return _checked(
        request, "npz", matrix.astype(np.float64), arrays[label], arrays[member], (feature_key,)
    )


def _checked(
    request: _Request,
    kind: str,
    matrix: np.ndarray,
    labels: np.ndarray,
    member: np.ndarray,
    feature_names: Sequence[str],
) -> AuditDataset:
    file, label_name, member_name = request.file, request.label, request.member
    n = matrix.shape[0]
    for name, values in ((label_name, labels), (member_name, member)):
        if values.shape != (n,):
            raise DataError(
                f"dataset {file.name!r}: {name!r} must have one value per example, shape "
                f"({n},); got {values.shape}",
                column=name,
            )
    bad = ~np.isfinite(matrix.reshape(n, -1))
    if bad.any():
        row, col = (int(v[0]) for v in np.nonzero(bad))
        where = feature_names[col] if len(feature_names) > 1 else f"{feature_names[0]}[:, {col}]"
        raise DataError(
            f"dataset {file.name!r}: the features have {int(bad.sum())} NaN or infinite values "
            f"(first at row {row}, {where!r}); fill or drop them",
            column=where,
        )
    label_values = _integer_labels(file, labels, label_name)
    member_mask = _member_mask(file, member, member_name)
    if member_mask.all() or not member_mask.any():
        raise DataError(
            f"dataset {file.name!r}: {member_name!r} must mark both members and non-members "
            f"of the target's training set; it marks {int(member_mask.sum())} of {n}",
            column=member_name,
        )
    return AuditDataset(
        features=matrix,
        labels=label_values,
        member=member_mask,
        feature_names=tuple(feature_names),
        format=kind,
    )


def _integer_labels(file: Path, labels: np.ndarray, name: str) -> np.ndarray:
    message = (
        f"dataset {file.name!r}: {name!r} must hold class indices 0, 1, ..., C-1 "
        "(integers; encode string labels first)"
    )
    if labels.dtype == np.bool_ or not np.issubdtype(labels.dtype, np.number):
        raise DataError(f"{message}; got dtype {labels.dtype}", column=name)
    if np.issubdtype(labels.dtype, np.floating) and (
        not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels))
    ):
        raise DataError(f"{message}; got non-integer values", column=name)
    values = labels.astype(np.int64)
    if values.size and values.min() < 0:
        raise DataError(f"{message}; got a negative label {int(values.min())}", column=name)
    return values


def _member_mask(file: Path, member: np.ndarray, name: str) -> np.ndarray:
    if member.dtype == np.bool_:
        return member.astype(bool)
    if np.issubdtype(member.dtype, np.number) and np.isin(member, (0, 1)).all():
        return member.astype(bool)
    raise DataError(
        f"dataset {file.name!r}: {name!r} must be booleans or 0/1 (1 = the example was in "
        f"the target model's training set); got dtype {member.dtype}",
        column=name,
    )
