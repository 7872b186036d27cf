"""Array storage: the ``.npz`` archive of a checkpoint or params file, written and verified.

NumPy only, like ``_format``. Arrays are written uncompressed with ``allow_pickle=False``.
When reading, each member's ``.npy`` header is compared with the manifest before any data
is read (so memory use is bounded by the file's size), the data are read in chunks into a
fresh buffer (nothing aliases the file) and checked against the manifest's SHA-256.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.lib import format as npy

from funcnet.checkpoint._errors import CheckpointError, CorruptCheckpointError
from funcnet.checkpoint._files import open_regular, shorten
from funcnet.checkpoint._format import EXTENDED_DTYPES, NATIVE_DTYPES, Leaf, storage_dtype

_MAX_NPY_HEADER = 10_000
_CHUNK = 1 << 24


def _bad(problem: str) -> CorruptCheckpointError:
    return CorruptCheckpointError(problem)


def to_storage(value: Any, name: str) -> np.ndarray:
    """A C-contiguous little-endian array of ``value``'s bytes in ``storage_dtype(name)``."""
    array = np.asarray(value, order="C")
    if name in NATIVE_DTYPES:
        return np.asarray(array, dtype=storage_dtype(name), order="C")
    return array.view(storage_dtype(name))


def from_storage(array: np.ndarray, name: str) -> np.ndarray:
    """Inverse of :func:`to_storage`: the array with its true, native-endian dtype."""
    if name in NATIVE_DTYPES:
        return array.astype(NATIVE_DTYPES[name], copy=False)
    return array.view(EXTENDED_DTYPES[name])


def sha256_of(storage: np.ndarray) -> str:
    """SHA-256 of an array's bytes in C order."""
    return hashlib.sha256(storage.reshape(-1).view(np.uint8)).hexdigest()


def write_arrays(
    file: IO[bytes],
    leaves: Sequence[Leaf],
    values: Sequence[Any],
    trailer: Callable[[tuple[Leaf, ...]], Mapping[str, bytes]] | None = None,
) -> tuple[Leaf, ...]:
    """Writes the array-backed leaves' values as an uncompressed ``.npz``.

    Each value is converted to NumPy one at a time (so host memory holds one array at a
    time), hashed, and written with ``allow_pickle=False``.

    Args:
        file: a binary file opened for writing.
        leaves: the leaf records, without checksums.
        values: the leaves' array values (jax or NumPy arrays; ignored for scalar leaves).
        trailer: called with the checksummed leaves; returns extra members (name to bytes)
            to append, e.g. the params file's header.

    Returns:
        ``leaves`` with their ``sha256`` filled in.
    """
    done = []
    with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for leaf, value in zip(leaves, values, strict=True):
            if leaf.stored:
                storage = to_storage(value, leaf.dtype)
                if storage.shape != leaf.shape:
                    raise ValueError(f"{leaf.name}: shape changed while saving")
                leaf = dataclasses.replace(leaf, sha256=sha256_of(storage))
                with archive.open(leaf.key + ".npy", "w", force_zip64=True) as member:
                    npy.write_array(member, storage, allow_pickle=False)
            done.append(leaf)
        for name, data in (trailer(tuple(done)) if trailer else {}).items():
            archive.writestr(name, data)
    return tuple(done)


class ArrayReader:
    """Reads arrays back from an ``.npz`` written by :func:`write_arrays`, verifying each.

    Args:
        path: the ``.npz`` file.
        label: the file's name in messages (``"arrays.npz"``).
    """

    def __init__(self, path: Path, label: str) -> None:
        self._label = label
        try:
            self._file = open_regular(path, label)
        except FileNotFoundError:
            raise _bad(f"{label} is missing") from None
        except CheckpointError:
            raise
        except OSError as exc:
            raise _bad(f"cannot open {label} ({exc})") from exc
        try:
            self._size = os.fstat(self._file.fileno()).st_size
            self._zip = zipfile.ZipFile(self._file)
            self._names = self._zip.namelist()
        except Exception as exc:  # zipfile raises many types on damaged input
            self._file.close()
            raise _bad(
                f"{label} is truncated or corrupt (not a readable zip archive: {exc})"
            ) from exc

    def __enter__(self) -> ArrayReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()
        self._file.close()

    def check_members(self, leaves: Sequence[Leaf], extra: Iterable[str] = ()) -> None:
        """Checks that the archive holds exactly the stored leaves' members and ``extra``."""
        names = set(self._names)
        if len(names) != len(self._names):
            raise _bad(f"{self._label} is corrupt (duplicate entries)")
        missing = [leaf.name for leaf in leaves if leaf.stored and leaf.key + ".npy" not in names]
        if missing:
            shown = ", ".join(missing[:5]) + (
                f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            )
            raise _bad(f"{self._label} is missing the arrays of {shown}")
        unexpected = names - {leaf.key + ".npy" for leaf in leaves if leaf.stored} - set(extra)
        if unexpected:
            raise _bad(
                f"{self._label} holds entries the manifest does not list: "
                f"{shorten(sorted(unexpected)[:5])}"
            )

    def read_bytes(self, name: str, limit: int) -> bytes:
        """A whole non-array member of at most ``limit`` bytes (the params header)."""
        try:
            info = self._zip.getinfo(name)
        except KeyError:
            raise _bad(f"{self._label} has no {name} (not a funcnet params file)") from None
        if info.file_size > min(limit, self._size):
            raise _bad(f"{self._label} is corrupt ({name} claims {info.file_size} bytes)")
        try:
            with self._zip.open(info) as member:
                data = member.read(info.file_size + 1)
        except Exception as exc:
            raise _bad(
                f"{self._label} is truncated or corrupt (cannot read {name}: {exc})"
            ) from exc
        if len(data) != info.file_size:
            raise _bad(f"{self._label} is truncated or corrupt ({name} has the wrong size)")
        return data

    def read(self, leaf: Leaf) -> np.ndarray:
        """The stored array of ``leaf``, checked against the manifest, in its true dtype."""
        try:
            storage = self._read_verified(leaf)
        except CheckpointError:
            raise
        except Exception as exc:  # zipfile and the .npy reader raise many types on damage
            raise _bad(
                f"{self._label} is truncated or corrupt (cannot read the array of {leaf.name}: "
                f"{type(exc).__name__}: {exc})"
            ) from exc
        return from_storage(storage, leaf.dtype)

    def _read_verified(self, leaf: Leaf) -> np.ndarray:
        info = self._zip.getinfo(leaf.key + ".npy")
        nbytes = leaf.nbytes
        if not nbytes <= info.file_size <= self._size:
            raise _bad(
                f"{self._label} is truncated or corrupt (the array of {leaf.name} is too short)"
            )
        expected = storage_dtype(leaf.dtype)
        with self._zip.open(info) as member:
            version = npy.read_magic(member)
            if version == (1, 0):
                header = npy.read_array_header_1_0(member, max_header_size=_MAX_NPY_HEADER)
            elif version == (2, 0):
                header = npy.read_array_header_2_0(member, max_header_size=_MAX_NPY_HEADER)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            shape, fortran_order, dtype = header
            if shape != leaf.shape or fortran_order or dtype != expected:
                raise _bad(
                    f"{self._label} does not match the manifest: the array of {leaf.name} is "
                    f"{dtype} {shape} in the file, but the manifest says {leaf.dtype} {leaf.shape}"
                )
            buffer = np.empty(nbytes, np.uint8)
            digest = hashlib.sha256()
            view = memoryview(buffer)
            done = 0
            while done < nbytes:
                chunk = member.read(min(_CHUNK, nbytes - done))
                if not chunk:
                    raise _bad(
                        f"{self._label} is truncated (the array of {leaf.name} is cut short)"
                    )
                view[done : done + len(chunk)] = chunk
                digest.update(chunk)
                done += len(chunk)
            if member.read(1):
                raise _bad(f"{self._label} is corrupt (the array of {leaf.name} is too long)")
        if digest.hexdigest() != leaf.sha256:
            raise _bad(f"{self._label} is corrupt (checksum mismatch for {leaf.name})")
        return buffer.view(expected).reshape(shape)
