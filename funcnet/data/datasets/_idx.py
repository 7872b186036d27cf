"""The IDX file format of MNIST and Fashion-MNIST (LeCun et al.), read with validation.

Layout, all big-endian: two zero bytes; a type code (0x08 uint8, 0x09 int8, 0x0B int16,
0x0C int32, 0x0D float32, 0x0E float64); the number of dimensions; one uint32 per
dimension; then the data, row-major. Files may be gzipped.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import IO

import numpy as np

from ._files import CorruptFileError, content_bound, open_data, read_at_most

__all__ = ["read_idx"]

_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike[str], max_bytes: int | None = None) -> np.ndarray:
    """Reads an IDX file (gzipped or not) into a native-endian array.

    The header is read first and the data only up to the size it declares (plus one byte
    to detect trailing data), so a gzip bomb is never decompressed past that size.

    Args:
        path: the file.
        max_bytes: refuse a header declaring more data bytes than this (the size of the
            known file), before reading any data; None: no limit but the header's.

    Returns:
        An array of the shape and dtype its header declares (e.g. ``(60000, 28, 28)``
        uint8 for MNIST training images).

    Raises:
        CorruptFileError: a bad magic number or type code, a header cut short, or a data
            size other than the header declares, or more than ``max_bytes``; the message
            names the file.
        FileNotFoundError: no such file.
    """
    path = Path(path)
    with open_data(path) as stream:
        dtype, shape = _header(path, stream)
        expected = math.prod(shape) * dtype.itemsize
        bound = content_bound(path, stream)
        if expected > min(bound, max_bytes if max_bytes is not None else bound):
            raise CorruptFileError(
                path,
                f"{_problem(bound, max_bytes)}: header declares {dtype.name} data of shape "
                f"{shape} ({expected} bytes), {_limit(bound, max_bytes)}",
            )
        # One byte more than the header declares: enough to see trailing bytes, and a gzip
        # bomb is never decompressed further.
        raw = read_at_most(path, stream, expected + 1)
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "has trailing bytes"
        raise CorruptFileError(
            path,
            f"{problem}: header declares {dtype.name} data of shape {shape} "
            f"({expected} bytes), file holds {'more' if len(raw) > expected else len(raw)} "
            "data bytes",
        )
    data = np.frombuffer(raw, dtype=dtype).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _header(path: Path, stream: IO[bytes]) -> tuple[np.dtype, tuple[int, ...]]:
    """The dtype and shape an IDX header declares, read from the start of ``stream``."""
    magic = read_at_most(path, stream, 4)
    if len(magic) < 4:
        raise CorruptFileError(path, f"truncated IDX header ({len(magic)} bytes)")
    if magic[0] != 0 or magic[1] != 0:
        raise CorruptFileError(
            path,
            f"not an IDX file (magic number starts {magic[0]:#04x} {magic[1]:#04x}, "
            "expected 0x00 0x00)",
        )
    if magic[2] not in _TYPES:
        raise CorruptFileError(path, f"unknown IDX data type code {magic[2]:#04x}")
    dtype, ndim = np.dtype(_TYPES[magic[2]]), magic[3]
    if ndim == 0:
        raise CorruptFileError(path, "IDX header declares 0 dimensions")
    dims = read_at_most(path, stream, 4 * ndim)
    if len(dims) < 4 * ndim:
        raise CorruptFileError(
            path,
            f"truncated IDX header: {ndim} dimensions need {4 + 4 * ndim} bytes, file has "
            f"{4 + len(dims)}",
        )
    shape = tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(ndim))
    return dtype, shape


def _problem(bound: int, max_bytes: int | None) -> str:
    return "too large" if max_bytes is not None and max_bytes < bound else "truncated"


def _limit(bound: int, max_bytes: int | None) -> str:
    if max_bytes is not None and max_bytes < bound:
        return f"more than the {max_bytes} bytes of the known file"
    return f"more than a file of this size can hold (at most {bound} bytes)"
