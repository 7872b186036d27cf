"""safetensors files, read and written with NumPy alone: no pickle, nothing executed.

The format (https://github.com/huggingface/safetensors): an 8-byte little-endian unsigned
header length N; N bytes of UTF-8 JSON, ``{name: {"dtype": "F32", "shape": [2, 3],
"data_offsets": [begin, end]}, ..., "__metadata__": {str: str}}``, padded with spaces;
then the tensors' raw little-endian bytes in C order, ``data_offsets`` counted from the
end of the header. Everything read is untrusted: the header length, the JSON, every dtype,
shape and offset are checked (offsets in range, contiguous, non-overlapping, covering the
data exactly; shape × itemsize equal to the span) and a problem raises
:class:`CorruptCheckpointError` saying what is wrong.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import ml_dtypes
import numpy as np

from funcnet.checkpoint import _layout, _multihost
from funcnet.checkpoint._errors import (
    CheckpointError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
)
from funcnet.checkpoint._files import open_regular, shorten

__all__ = ["load_safetensors", "load_safetensors_metadata", "save_safetensors"]

DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U64": np.dtype(np.uint64),
    "U32": np.dtype(np.uint32),
    "U16": np.dtype(np.uint16),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
_NAMES = {dtype: name for name, dtype in DTYPES.items()}
# The safetensors package's dtype order (its Rust enum); it writes the data by decreasing
# rank, then name, which keeps every tensor aligned to its item size.
_RANK = {
    name: rank
    for rank, name in enumerate(
        "BOOL U8 I8 F8_E5M2 F8_E4M3 I16 U16 F16 BF16 I32 U32 F32 F64 I64 U64".split()
    )
}
MAX_HEADER = 100_000_000  # the safetensors package's own limit
_METADATA = "__metadata__"
_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")
_CONVERT = (
    "funcnet never unpickles (loading a pickle can run arbitrary code). Convert it once, "
    "in PyTorch, from the model that holds the weights: `from safetensors.torch import "
    'save_file; save_file(model.state_dict(), "model.safetensors")`, or '
    '`numpy.savez("model.npz", **{k: v.numpy() for k, v in state_dict.items()})`'
)


@dataclasses.dataclass(frozen=True)
class _Entry:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    begin: int
    end: int


def save_safetensors(
    path: str | os.PathLike[str],
    tensors: Mapping[str, Any],
    *,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Writes a flat dict of arrays as a ``.safetensors`` file, atomically.

    The file is byte for byte what ``safetensors.numpy.save_file`` /
    ``safetensors.torch.save_file`` write (the data ordered by dtype, widest first, then
    name; the header padded with spaces to a multiple of 8 bytes), readable by Hugging
    Face's libraries and PyTorch. An existing
    file is replaced atomically. With several processes, every process calls it and
    process 0 writes, as for ``save_params``.

    Args:
        path: the file to write (conventionally ``*.safetensors``; no suffix is added).
        tensors: ``{"fc1.weight": array, ...}``: JAX or NumPy arrays (or anything
            ``numpy.asarray`` takes) of dtype float64/32/16, bfloat16, float8_e4m3fn,
            float8_e5m2, (u)int8–64 or bool. Use ``nn.state_dict(params, state)`` for
            funcnet's layouts, ``nn.torch_state_dict(model, params, state)`` for
            PyTorch's.
        metadata: optional ``{str: str}`` stored as the header's ``__metadata__``.

    Returns:
        ``path`` as a Path.

    Raises:
        TypeError: a key or metadata entry that is not a str, a nested dict, or a dtype
            the format has no name for (complex, int4, ...).
        CheckpointError: writing failed; an existing file is left as it was.

    Examples:
        >>> import tempfile, pathlib, numpy as np
        >>> from funcnet import checkpoint
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "model.safetensors"
        >>> _ = checkpoint.save_safetensors(path, {"fc.weight": np.ones((2, 3), np.float32)})
        >>> checkpoint.load_safetensors(path)["fc.weight"].shape
        (2, 3)
    """
    path = Path(path)
    names = list(tensors)
    arrays = [_storable(name, value) for name, value in zip(names, _values(tensors, names))]
    header, order = _header(names, arrays, _check_metadata(metadata))

    def write() -> None:
        try:
            _layout.write_file(path, lambda f: _write(f, header, [arrays[i] for i in order]))
        except OSError as exc:
            if isinstance(exc, CheckpointError):
                raise
            raise CheckpointError(f"could not save {path} ({exc})") from exc

    _multihost.write_once(write, f"funcnet.checkpoint.save_safetensors:{path}")
    return path


def _values(tensors: Mapping[str, Any], names: list[str]) -> tuple[Any, ...]:
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"save_safetensors: keys must be str, got {name!r}")
        if isinstance(tensors[name], Mapping):
            raise TypeError(
                f"save_safetensors: {name!r} is a dict; pass a flat dict of arrays, e.g. "
                f"nn.state_dict(params, state) or nn.torch_state_dict(model, params, state)"
            )
    return _multihost.gather([tensors[name] for name in names])


def _storable(name: str, value: Any) -> np.ndarray:
    """``value`` as a C-contiguous little-endian NumPy array of a safetensors dtype."""
    array = np.asarray(value)
    dtype = array.dtype.newbyteorder("=")
    if dtype not in _NAMES:
        raise TypeError(
            f"save_safetensors: {name!r} has dtype {array.dtype}, which safetensors cannot "
            f"store (supported: {', '.join(sorted(str(d) for d in _NAMES))})"
        )
    return np.asarray(array, dtype=dtype.newbyteorder("<"), order="C")


def _check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str] | None:
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise TypeError(
            f"save_safetensors: metadata must be a dict of str to str, got {metadata!r}"
        )
    return dict(metadata)


def _header(
    names: list[str], arrays: list[np.ndarray], metadata: dict[str, str] | None
) -> tuple[bytes, list[int]]:
    """The padded JSON header and the order of the data, laid out as the safetensors
    package lays them out (see ``_RANK``)."""
    if _METADATA in names:
        raise TypeError(f"save_safetensors: {_METADATA!r} is reserved by the format")
    dtypes = [_NAMES[a.dtype.newbyteorder("=")] for a in arrays]
    order = sorted(range(len(names)), key=lambda i: (-_RANK[dtypes[i]], names[i]))
    fields: dict[str, Any] = {} if metadata is None else {_METADATA: metadata}
    offset = 0
    for i in order:
        end = offset + arrays[i].nbytes
        fields[names[i]] = {
            "dtype": dtypes[i],
            "shape": list(arrays[i].shape),
            "data_offsets": [offset, end],
        }
        offset = end
    text = json.dumps(fields, separators=(",", ":")).encode()
    return text + b" " * (-len(text) % 8), order


def _write(file: IO[bytes], header: bytes, arrays: list[np.ndarray]) -> None:
    file.write(struct.pack("<Q", len(header)))
    file.write(header)
    for array in arrays:
        file.write(array.reshape(-1).view(np.uint8).data)


def load_safetensors(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Reads every tensor of a ``.safetensors`` file, checking the file first.

    Nothing is unpickled or executed: the header is JSON and the data raw bytes. The
    header is validated before any data is read (its length, every dtype, shape and
    offset), and each tensor is read into memory of its own (nothing aliases the file).
    Pass the result to ``nn.load_state_dict(model, tensors, from_torch=True)`` for a file
    PyTorch or Hugging Face wrote, or without ``from_torch`` for one written from
    ``nn.state_dict``.

    Args:
        path: the ``.safetensors`` file.

    Returns:
        ``{name: array}`` in the order of the file's data: NumPy arrays of the stored
        dtypes (BF16 and F8 as ``ml_dtypes`` types; 64-bit integers stay int64).

    Raises:
        CheckpointNotFoundError: the file does not exist.
        CheckpointError: the file is a pickle (``.pt``, ``.pth``, ``.bin``, ...); the
            message says how to convert it with PyTorch.
        CorruptCheckpointError: the file is truncated or not a valid safetensors file;
            the message says what is wrong.
    """
    path = _existing(path)
    with open_regular(path, str(path)) as file:
        entries, start = _read_header(file, path)
        return {entry.name: _read_tensor(file, start, entry, path) for entry in entries}


def load_safetensors_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``__metadata__`` of a ``.safetensors`` file (``{}`` when it has none).

    The header is validated as by ``load_safetensors``; no tensor data is read.

    Raises:
        CheckpointNotFoundError, CheckpointError, CorruptCheckpointError: as
            ``load_safetensors``.
    """
    path = _existing(path)
    with open_regular(path, str(path)) as file:
        fields = _header_fields(file, path)
    return dict(fields.get(_METADATA, {}))


def _existing(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if not path.exists():
        raise CheckpointNotFoundError(f"safetensors file {path} does not exist")
    if path.is_dir():
        raise CheckpointNotFoundError(f"{path} is a directory, not a .safetensors file")
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise CheckpointError(f"{path} looks like a PyTorch pickle file: {_CONVERT}")
    return path


def _bad(path: Path, problem: str) -> CorruptCheckpointError:
    return CorruptCheckpointError(f"{path} is not a valid safetensors file: {problem}")


def _header_fields(file: IO[bytes], path: Path) -> dict[str, Any]:
    """The parsed, type-checked JSON header (entries not yet checked against the data)."""
    size = os.fstat(file.fileno()).st_size
    prefix = file.read(9)
    file.seek(8)
    if _is_pickle(prefix):
        raise CheckpointError(
            f"{path} is a PyTorch pickle file (torch.save's zip or pickle format), not "
            f"safetensors: {_CONVERT}"
        )
    prefix = prefix[:8]
    if len(prefix) < 8:
        raise _bad(path, f"{size} bytes is too short for the 8-byte header length")
    (length,) = struct.unpack("<Q", prefix)
    if length > min(MAX_HEADER, size - 8):
        raise _bad(
            path,
            f"the header length {length} exceeds the {size - 8} bytes after it"
            if length <= MAX_HEADER
            else f"the header length {length} exceeds the format's limit of {MAX_HEADER}",
        )
    try:
        fields = json.loads(file.read(length).decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise _bad(path, f"the header is not UTF-8 JSON ({exc})") from None
    if not isinstance(fields, dict):
        raise _bad(path, f"the header is JSON {type(fields).__name__}, not an object")
    metadata = fields.get(_METADATA, {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _bad(path, f"{_METADATA} must map str to str, got {shorten(metadata)}")
    return fields


def _is_pickle(prefix: bytes) -> bool:
    """Whether a file starts as torch.save's zip archive or a pickle (protocol 2 to 5)
    does, rather than with a header length followed by the JSON's ``{``."""
    if prefix[8:9] == b"{":
        return False
    protocols = (b"\x02", b"\x03", b"\x04", b"\x05")
    return prefix[:4] == b"PK\x03\x04" or (prefix[:1] == b"\x80" and prefix[1:2] in protocols)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {shorten(key)}")
        out[key] = value
    return out


def _read_header(file: IO[bytes], path: Path) -> tuple[list[_Entry], int]:
    """The validated entries, in data order, and the offset where the data starts."""
    fields = _header_fields(file, path)
    start = file.tell()
    data_size = os.fstat(file.fileno()).st_size - start
    entries = sorted(
        (_entry(path, name, spec) for name, spec in fields.items() if name != _METADATA),
        key=lambda e: (e.begin, e.end),
    )
    position = 0
    for entry in entries:
        if entry.begin < position:
            raise _bad(path, f"the data of {shorten(entry.name)} overlaps the tensor before it")
        if entry.begin > position:
            raise _bad(
                path, f"{entry.begin - position} unclaimed bytes before {shorten(entry.name)}"
            )
        position = entry.end
    if position != data_size:
        raise _bad(
            path,
            f"the header describes {position} bytes of data but the file holds {data_size}"
            + (" (truncated)" if position > data_size else ""),
        )
    return entries, start


def _entry(path: Path, name: str, spec: Any) -> _Entry:
    """One header entry, type- and size-checked."""
    if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "data_offsets"}:
        raise _bad(
            path,
            f"entry {shorten(name)} must have exactly dtype, shape and data_offsets, "
            f"got {shorten(spec)}",
        )
    dtype = DTYPES.get(spec["dtype"]) if isinstance(spec["dtype"], str) else None
    if dtype is None:
        raise _bad(
            path,
            f"entry {shorten(name)} has unknown dtype {shorten(spec['dtype'])} "
            f"(known: {', '.join(DTYPES)})",
        )
    shape, offsets = spec["shape"], spec["data_offsets"]
    if not isinstance(shape, list) or not all(_natural(d) for d in shape):
        raise _bad(
            path, f"entry {shorten(name)} has shape {shorten(shape)}, not a list of integers >= 0"
        )
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_natural, offsets))):
        raise _bad(
            path, f"entry {shorten(name)} has data_offsets {shorten(offsets)}, not [begin, end]"
        )
    begin, end = offsets
    nbytes = math.prod(shape) * dtype.itemsize
    if end - begin != nbytes:
        raise _bad(
            path,
            f"entry {shorten(name)} ({spec['dtype']} {tuple(shape)}) needs {nbytes} bytes but its "
            f"data_offsets [{begin}, {end}] span {end - begin}",
        )
    return _Entry(name, dtype, tuple(shape), begin, end)


def _natural(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _read_tensor(file: IO[bytes], start: int, entry: _Entry, path: Path) -> np.ndarray:
    file.seek(start + entry.begin)
    buffer = bytearray(entry.end - entry.begin)
    if file.readinto(buffer) != len(buffer):
        raise _bad(path, f"the data of {shorten(entry.name)} is cut short")
    raw = np.frombuffer(buffer, np.uint8)
    if entry.dtype == np.bool_ and raw.size and raw.max() > 1:
        raise _bad(path, f"BOOL tensor {shorten(entry.name)} holds bytes other than 0 and 1")
    array = raw.view(entry.dtype.newbyteorder("<")).reshape(entry.shape)
    return array.astype(entry.dtype, copy=False)
