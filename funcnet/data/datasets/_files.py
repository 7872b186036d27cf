"""Finding, reading and downloading dataset files, with errors that name the file."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import tempfile
import urllib.request
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

__all__ = ["CorruptFileError"]

_DOWNLOAD_TIMEOUT_S = 60
_BLOCK = 1 << 20


class CorruptFileError(ValueError):
    """A dataset file is truncated, corrupt, or not in the expected format.

    Attributes:
        path: the offending file.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path: Path = Path(path)
        super().__init__(f"{self.path}: {problem}")


def locate(root: Path, names: Sequence[str], folders: Sequence[str]) -> dict[str, Path | None]:
    """Each name's path under ``root`` or ``root/<folder>``, plain or ``.gz``; None if absent."""
    found: dict[str, Path | None] = {}
    for name in names:
        found[name] = next(
            (
                d / candidate
                for d in [root, *(root / f for f in folders)]
                for candidate in (name, name + ".gz")
                if (d / candidate).is_file()
            ),
            None,
        )
    return found


def missing_files_error(
    what: str, root: Path, missing: Sequence[str], folder: Path, source: str
) -> FileNotFoundError:
    """The error for absent files: which, where they were looked for, where they come from."""
    listed = ", ".join(missing)
    return FileNotFoundError(
        f"{what}: missing {listed} (looked in {root} and {folder}). Put the files in {folder} "
        f"(or directly in {root}). They come from {source}; pass download=True to fetch them "
        "and verify their checksums."
    )


@contextlib.contextmanager
def open_data(path: Path) -> Iterator[IO[bytes]]:
    """``path`` opened for reading, through a gunzipping stream when it starts with the
    gzip magic number: reads decompress only as much as they return."""
    with path.open("rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        if not gzipped:
            yield raw
            return
        with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
            yield stream


def read_at_most(path: Path, stream: IO[bytes], size: int) -> bytes:
    """Up to ``size`` bytes of ``stream``; a damaged gzip stream raises CorruptFileError."""
    try:
        return stream.read(size)
    except (OSError, EOFError, zlib.error) as e:
        raise CorruptFileError(path, f"not a valid gzip file ({e})") from e


def content_bound(path: Path, stream: IO[bytes]) -> int:
    """The most bytes ``stream`` can yield: the file's size, or for a gzip stream that
    times deflate's largest compression ratio (1032:1)."""
    size = path.stat().st_size
    return size * 1032 if isinstance(stream, gzip.GzipFile) else size


def read_bytes(path: Path, limit: int | None = None) -> bytes:
    """The file's bytes (gunzipped when it starts with the gzip magic number); with a
    ``limit``, at most ``limit + 1`` of them, so that a longer file or a gzip bomb is never
    read further (one byte past the limit shows that the file is too long)."""
    with open_data(path) as stream:
        return read_at_most(path, stream, -1 if limit is None else limit + 1)


def check_md5(path: Path, expected: str, what: str) -> None:
    """Raises CorruptFileError unless ``path`` has the published MD5 ``expected``.

    Args:
        path: the file.
        expected: the published checksum.
        what: the dataset's name, for the message (``"MNIST"``).
    """
    got = md5_of(path)
    if got != expected:
        raise CorruptFileError(
            path,
            f"its MD5 is {got}, not the published {expected} of {what}'s {path.name}: the "
            "file was modified or belongs to another dataset. Delete it and download it again "
            "(download=True), or pass verify=False to load a modified copy on purpose",
        )


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)  # the sources publish MD5 checksums
    with path.open("rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(urls: Sequence[str], dest: Path, md5: str) -> Path:
    """Fetches ``dest`` from the first URL that works; verifies its MD5 before keeping it.

    Raises:
        OSError: every URL failed, or the checksum did not match (nothing is kept).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix=".part")
        tmp = Path(tmp_name)
        try:
            with (
                os.fdopen(fd, "wb") as out,
                urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response,
            ):
                for block in iter(lambda: response.read(_BLOCK), b""):
                    out.write(block)
            got = md5_of(tmp)
            if got != md5:
                errors.append(f"{url}: MD5 {got}, expected {md5}")
                continue
            os.replace(tmp, dest)
            return dest
        except OSError as e:
            errors.append(f"{url}: {e}")
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    raise OSError(f"could not download {dest.name}: " + "; ".join(errors))
