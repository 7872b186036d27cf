"""The IDX file format of MNIST and Fashion-MNIST (LeCun et al.), read with validation.

Layout, all big-endian: two zero bytes; a type code (0x08 uint8, 0x09 int8, 0x0B int16,
0x0C int32, 0x0D float32, 0x0E float64); the number of dimensions; one uint32 per
dimension; then the data, row-major. Files may be gzipped.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ._files import CorruptFileError, read_bytes

__all__ = ["read_idx"]

_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file (gzipped or not) into a native-endian array.

    Args:
        path: the file.

    Returns:
        An array of the shape and dtype its header declares (e.g. ``(60000, 28, 28)``
        uint8 for MNIST training images).

    Raises:
        CorruptFileError: a bad magic number or type code, a header cut short, or a data
            size other than the header declares; the message names the file.
        FileNotFoundError: no such file.
    """
    path = Path(path)
    raw = read_bytes(path)
    if len(raw) < 4:
        raise CorruptFileError(path, f"truncated IDX header ({len(raw)} bytes)")
    if raw[0] != 0 or raw[1] != 0:
        raise CorruptFileError(
            path,
            f"not an IDX file (magic number starts {raw[0]:#04x} {raw[1]:#04x}, "
            "expected 0x00 0x00)",
        )
    if raw[2] not in _TYPES:
        raise CorruptFileError(path, f"unknown IDX data type code {raw[2]:#04x}")
    dtype, ndim = np.dtype(_TYPES[raw[2]]), raw[3]
    if ndim == 0:
        raise CorruptFileError(path, "IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise CorruptFileError(
            path,
            f"truncated IDX header: {ndim} dimensions need {header} bytes, file has {len(raw)}",
        )
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = math.prod(shape) * dtype.itemsize
    got = len(raw) - header
    if got != expected:
        problem = "truncated" if got < expected else "has trailing bytes"
        raise CorruptFileError(
            path,
            f"{problem}: header declares {dtype.name} data of shape {shape} "
            f"({expected} bytes), file holds {got} data bytes",
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))
