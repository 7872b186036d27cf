"""Opening and reading checkpoint files: regular files only, every read bounded.

NumPy-free and jax-free, like ``_format``. A step directory is untrusted: a FIFO named
``manifest.json`` would block ``open`` forever and a symlink to ``/dev/zero`` would read
until memory runs out, so files are opened without blocking, checked to be regular files
with ``fstat``, and read up to a size the format bounds.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO, Any

from funcnet.checkpoint._errors import CorruptCheckpointError

__all__ = ["MAX_MESSAGE_VALUE", "open_regular", "read_regular", "shorten"]

MAX_MESSAGE_VALUE = 200
"""The most characters of an untrusted value that an error message quotes."""


def shorten(value: Any, limit: int = MAX_MESSAGE_VALUE) -> str:
    """``repr(value)``, cut to about ``limit`` characters with the number cut said."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def open_regular(path: Path, label: str) -> IO[bytes]:
    """``path`` opened for binary reading, if it is a regular file (symlinks followed).

    ``O_NONBLOCK`` makes opening a FIFO return at once instead of waiting for a writer;
    ``fstat`` on the open descriptor then refuses it (and devices, sockets, directories)
    without a race between the check and the read.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CorruptCheckpointError: it is not a regular file, or cannot be opened.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise CorruptCheckpointError(f"cannot open {label} ({exc})") from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise CorruptCheckpointError(
                f"{label} is not a regular file (it is a {_kind(mode)}); a checkpoint holds "
                "regular files only: delete it and save again"
            )
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: Path, label: str, limit: int) -> bytes:
    """The whole regular file ``path``, refused if it holds more than ``limit`` bytes.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CorruptCheckpointError: not a regular file, or larger than ``limit``.
    """
    with open_regular(path, label) as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise CorruptCheckpointError(
            f"{label} is corrupt (larger than the format's limit of {limit} bytes)"
        )
    return data


def _kind(mode: int) -> str:
    kinds = (
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISDIR, "directory"),
    )
    return next((name for test, name in kinds if test(mode)), "special file")
