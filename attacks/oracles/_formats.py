"""Tell a model file's format from its content (magic bytes), never from its name.

A file called ``model.onnx`` may be a pickle; the extension is the sender's claim, the
bytes are the fact. :func:`detect_format` reads the first bytes (and, for zip
archives, the list of entry names, without extracting anything) and names the format.
:func:`require_format` refuses everything but the formats a loader accepts, with a
message that says what the file is and what to send instead: formats whose loading
runs code (pickle and everything built on it: ``joblib``, ``torch.save``,
TorchScript, Keras, NumPy object arrays) are refused outright, whatever they are
called.

Formats recognised
------------------
``pickle``
    Protocol 2-5 (starts with the PROTO opcode ``0x80``) or a protocol 0/1 stream
    (starts with a pickle opcode and ends with STOP, ``.``).
``torch_archive``
    A ``torch.save`` zip: its ``data.pkl`` is a pickle.
``torchscript``
    A TorchScript zip (``constants.pkl`` or a ``code/`` folder): it runs the code
    stored in it.
``skops``
    A skops zip (``schema.json`` at the top level).
``npz``
    A NumPy ``.npz`` zip (only ``.npy`` entries): data, not a model.
``keras``
    A Keras v3 zip (``config.json`` and ``model.weights.h5``) or an HDF5 file.
``safetensors``
    An 8-byte little-endian header length followed by a JSON header.
``onnx``
    A protobuf ``ModelProto``: field 1 (``ir_version``) first, as every ONNX
    writer emits it.
``npy``, ``gguf``, ``compressed``, ``zip``, ``unknown``
    The rest: a NumPy array, a GGUF file, gzip/bz2/xz/zstd/zlib data (a compressed
    ``joblib`` dump, for one), another zip, or nothing recognised.
"""

from __future__ import annotations

import json
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

from privaudit.errors import DataError, LimitExceededError, UnsupportedFormatError

__all__ = [
    "MODEL_FORMATS",
    "DetectedFormat",
    "check_file_size",
    "detect_format",
    "require_format",
]

MODEL_FORMATS = ("skops", "safetensors", "onnx")
"""The model formats privaudit loads."""

_SNIFF_BYTES = 64
_MAX_ZIP_ENTRIES = 100_000
_MAX_SAFETENSORS_HEADER = 100 * 2**20  # the safetensors library's own limit

# Opcodes that can start a protocol 0/1 pickle: MARK, GLOBAL, EMPTY_DICT/LIST/TUPLE,
# DICT, LIST, INT, LONG, STRING, UNICODE, FLOAT, NONE, NEWTRUE/FALSE-free forms...
_PICKLE_V0_FIRST = frozenset(b"(cd}]l)KIJLSVFNGUX")

_ALTERNATIVES = (
    "Send instead: a scikit-learn model saved with skops "
    "(skops.io.dump(model, 'model.skops')); a PyTorch model's weights as safetensors "
    "(safetensors.torch.save_file(model.state_dict(), 'model.safetensors')) with the name "
    "of a registered architecture and its config; an ONNX export (torch.onnx.export, or "
    "skl2onnx for scikit-learn); or no model at all: the per-example signals (scores "
    "mode), or the URL of a prediction endpoint"
)

_REFUSALS = {
    "pickle": "is a Python pickle{detail}: loading a pickle runs arbitrary code, so privaudit "
    "never loads one (this includes joblib, cloudpickle and dill files)",
    "torch_archive": "is a torch.save archive: its data.pkl is a pickle, and loading it runs "
    "arbitrary code. Export the weights instead with "
    "safetensors.torch.save_file(model.state_dict(), 'model.safetensors')",
    "torchscript": "is a TorchScript archive: loading it runs the code stored in it. Export "
    "the weights as safetensors (safetensors.torch.save_file(model.state_dict(), ...)) or "
    "the model as ONNX (torch.onnx.export)",
    "keras": "is a Keras/HDF5 model: Keras models can carry code (Lambda layers). Export "
    "ONNX (tf2onnx) instead",
    "compressed": "is compressed data ({detail}), as joblib writes compressed pickles; "
    "privaudit does not decompress model files",
    "npz": "is a NumPy .npz archive: data, not a model (load data with load_dataset)",
    "npy": "is a NumPy .npy array: data, not a model",
    "gguf": "is a GGUF file, which privaudit does not load",
    "zip": "is a zip archive that is neither a skops file nor a known model format",
    "unknown": "is not a format privaudit recognises",
}


@dataclass(frozen=True)
class DetectedFormat:
    """What :func:`detect_format` found: the format's name and a detail for messages."""

    name: str
    detail: str = ""


def check_file_size(path: Path, *, max_bytes: int, what: str = "model file") -> int:
    """Return the size of ``path``; LimitExceededError if over ``max_bytes``."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DataError(f"{what} {str(path)!r} does not exist", path=str(path)) from None
    if not path.is_file():
        raise DataError(f"{what} {str(path)!r} is not a regular file", path=str(path))
    if size > max_bytes:
        raise LimitExceededError(
            f"{what} {path.name!r} is {size} bytes, over the limit of {max_bytes} bytes; "
            "send a smaller file or ask the operator to raise max_bytes",
            limit="max_bytes",
            max_bytes=max_bytes,
            size=size,
        )
    return size


def detect_format(path: str | Path) -> DetectedFormat:
    """Name the format of the file at ``path`` from its content.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> (folder / "model.onnx").write_bytes(b"\\x80\\x04\\x95" + b"\\x00" * 8 + b".")
    12
    >>> detect_format(folder / "model.onnx")
    DetectedFormat(name='pickle', detail='protocol 4')
    """
    file = Path(path)
    with file.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
        handle.seek(0, 2)
        size = handle.tell()
        if size and size > len(head):
            handle.seek(size - 1)
            last = handle.read(1)
        else:
            last = head[-1:]
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return _detect_zip(file)
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return DetectedFormat("pickle", f"protocol {head[1]}")
    if head[:8] == b"\x89HDF\r\n\x1a\n":
        return DetectedFormat("keras", "HDF5")
    if head[:6] == b"\x93NUMPY":
        return DetectedFormat("npy")
    if head[:4] == b"GGUF":
        return DetectedFormat("gguf")
    for magic, name in (
        (b"\x1f\x8b", "gzip"),
        (b"BZh", "bzip2"),
        (b"\xfd7zXZ\x00", "xz"),
        (b"\x28\xb5\x2f\xfd", "zstd"),
        (b"\x04\x22\x4d\x18", "lz4"),
    ):
        if head.startswith(magic):
            return DetectedFormat("compressed", name)
    if len(head) >= 2 and head[0] == 0x78 and head[1] in (0x01, 0x5E, 0x9C, 0xDA):
        return DetectedFormat("compressed", "zlib")
    if _is_safetensors(file, head, size):
        return DetectedFormat("safetensors")
    if _is_onnx(head):
        return DetectedFormat("onnx")
    if head and head[0] in _PICKLE_V0_FIRST and last == b".":
        return DetectedFormat("pickle", "protocol 0 or 1")
    return DetectedFormat("unknown")


def require_format(path: str | Path, *allowed: str, max_bytes: int) -> DetectedFormat:
    """Check the file's size, then its format; refuse anything not in ``allowed``.

    Raises
    ------
    LimitExceededError
        If the file is larger than ``max_bytes``.
    UnsupportedFormatError
        If the file is not one of ``allowed``; the message says what it is and what
        to send instead.
    """
    file = Path(path)
    check_file_size(file, max_bytes=max_bytes)
    found = detect_format(file)
    if found.name in allowed:
        return found
    wanted = " or ".join(allowed)
    if found.name in MODEL_FORMATS:
        reason = f"is a {found.name} file"
    else:
        detail = f" ({found.detail})" if found.name == "pickle" and found.detail else ""
        reason = _REFUSALS[found.name].format(detail=detail or found.detail)
    raise UnsupportedFormatError(
        f"{file.name!r} {reason}; this loader reads {wanted}. {_ALTERNATIVES}. The format is "
        "read from the file's content, not its name",
        format=found.name,
        allowed=list(allowed),
    )


def _detect_zip(file: Path) -> DetectedFormat:
    try:
        with zipfile.ZipFile(file) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError) as error:
        return DetectedFormat("zip", f"unreadable: {error}")
    if len(infos) > _MAX_ZIP_ENTRIES:
        return DetectedFormat("zip", f"{len(infos)} entries")
    names = [info.filename for info in infos]
    # torch.save and TorchScript write everything under one top folder ("archive/").
    leaves = {name.split("/", 1)[1] if "/" in name else name for name in names}
    if "constants.pkl" in leaves or any(leaf.startswith("code/") for leaf in leaves):
        return DetectedFormat("torchscript")
    if "data.pkl" in leaves or any(name.endswith(".pkl") for name in names):
        return DetectedFormat("torch_archive")
    if "schema.json" in names:
        return DetectedFormat("skops")
    if "config.json" in names and "model.weights.h5" in names:
        return DetectedFormat("keras", "Keras v3")
    if names and all(name.endswith(".npy") for name in names):
        return DetectedFormat("npz")
    return DetectedFormat("zip")


def _is_safetensors(file: Path, head: bytes, size: int) -> bool:
    if len(head) < 10:
        return False
    (header_length,) = struct.unpack("<Q", head[:8])
    if not 2 <= header_length <= min(_MAX_SAFETENSORS_HEADER, size - 8) or head[8:9] != b"{":
        return False
    with file.open("rb") as handle:
        handle.seek(8)
        header = handle.read(header_length)
    try:
        parsed = json.loads(header)
    except (UnicodeDecodeError, ValueError):
        return False
    return isinstance(parsed, dict)


def _is_onnx(head: bytes) -> bool:
    # ModelProto field 1 (ir_version, varint): tag 0x08 then a small version number.
    # Every ONNX writer (onnx, torch.onnx, skl2onnx, tf2onnx) serialises it first.
    # Fields are written in number order, so the next tag is one of fields 2-8.
    return len(head) >= 4 and head[0] == 0x08 and 1 <= head[1] <= 30 and head[2] in _ONNX_NEXT


_ONNX_NEXT = frozenset((0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42))
