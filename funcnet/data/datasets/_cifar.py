"""CIFAR-10 from its binary version (never the pickled "python version")."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import ClassVar

import numpy as np

from .._dataset import ArrayDataset
from ._files import CorruptFileError, download, locate, missing_files_error, read_bytes

__all__ = ["CIFAR10", "read_cifar_bin"]

_FOLDER = "cifar-10-batches-bin"
_RECORD = 1 + 32 * 32 * 3  # label byte, then red, green, blue planes of 32x32
RECORDS_PER_FILE = 10_000
_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
_TEST = ("test_batch.bin",)
_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"


def read_cifar_bin(
    path: str | os.PathLike[str], num_classes: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Reads one CIFAR-10 binary batch file (``RECORDS_PER_FILE`` records of 3,073 bytes).

    Args:
        path: e.g. ``cifar-10-batches-bin/data_batch_1.bin`` (gzipped is accepted).
        num_classes: labels must be below this.

    Returns:
        ``(images, labels)``: ``(N, 32, 32, 3)`` uint8 channels-last, ``(N,)`` int32.

    Raises:
        CorruptFileError: a size other than ``RECORDS_PER_FILE`` whole records, or a label
            out of range; the message names the file.
    """
    path = Path(path)
    raw = read_bytes(path, RECORDS_PER_FILE * _RECORD)  # a gzip bomb stops one byte past
    expected = RECORDS_PER_FILE * _RECORD
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "too long"
        size = f"{len(raw)} bytes" if len(raw) < expected else "more bytes"
        raise CorruptFileError(
            path,
            f"{problem}: {size}, a CIFAR-10 binary batch file has {expected} "
            f"({RECORDS_PER_FILE} records of {_RECORD} bytes)",
        )
    records = np.frombuffer(raw, np.uint8).reshape(RECORDS_PER_FILE, _RECORD)
    labels = records[:, 0].astype(np.int32)
    if labels.size and labels.max() >= num_classes:
        first = int(np.argmax(labels >= num_classes))
        raise CorruptFileError(
            path, f"record {first} has label {labels[first]}, expected 0..{num_classes - 1}"
        )
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


class CIFAR10(ArrayDataset):
    """CIFAR-10 (32x32 colour images, 10 classes) from the binary version's files.

    An :class:`~funcnet.data.ArrayDataset` of ``(image, label)``: images
    ``(N, 32, 32, 3)`` uint8 channels-last (torchvision gives ``(3, 32, 32)`` after
    ``ToTensor``), labels ``(N,)`` int32; N is 50,000 for ``train=True``, 10,000 for the
    test split. Only the binary version is read: torchvision reads the "python version",
    whose pickles execute code when loaded.

    Files: ``data_batch_1.bin`` .. ``data_batch_5.bin`` and ``test_batch.bin`` in
    ``root/cifar-10-batches-bin`` (where ``cifar-10-binary.tar.gz`` unpacks) or in ``root``.

    Args:
        root: the data folder.
        train: the training split, else the test split.
        download: fetch ``cifar-10-binary.tar.gz`` from https://www.cs.toronto.edu/~kriz/cifar.html,
            verify its MD5, and unpack the batch files into ``root/cifar-10-batches-bin``.

    Raises:
        FileNotFoundError: files missing; the message lists them, where to put them, and
            where they come from.
        CorruptFileError: a truncated or corrupt file (named in the message).
    """

    classes: ClassVar[tuple[str, ...]] = (
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    )

    def __init__(self, root: str | os.PathLike[str], train: bool = True, download: bool = False):
        self.root: Path = Path(root)
        self.train = train
        names = _TRAIN if train else _TEST
        found = locate(self.root, names, [_FOLDER])
        if any(p is None for p in found.values()) and download:
            _download_and_extract(self.root)
            found = locate(self.root, names, [_FOLDER])
        missing = [n for n, p in found.items() if p is None]
        if missing:
            raise missing_files_error(
                f"CIFAR10(train={train})",
                self.root,
                missing,
                self.root / _FOLDER,
                f"the binary version, {_URL} (unpack it in {self.root})",
            )
        parts = [read_cifar_bin(found[n], len(self.classes)) for n in names]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        super().__init__(images, labels)

    @property
    def images(self) -> np.ndarray:
        """``(N, 32, 32, 3)`` uint8 channels-last (torchvision's ``.data``)."""
        return self.arrays[0]

    @property
    def labels(self) -> np.ndarray:
        """``(N,)`` int32 class indices into ``classes`` (torchvision's ``.targets``)."""
        return self.arrays[1]

    def __repr__(self) -> str:
        return f"CIFAR10(train={self.train}, {len(self)} images, root={self.root})"


def _download_and_extract(root: Path) -> None:
    """Fetches the archive and unpacks only the expected regular files, by name."""
    archive = root / "cifar-10-binary.tar.gz"
    if not archive.is_file():
        download([_URL], archive, _MD5)
    out = root / _FOLDER
    out.mkdir(parents=True, exist_ok=True)
    wanted = {f"{_FOLDER}/{n}" for n in (*_TRAIN, *_TEST, "batches.meta.txt")}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    source = tar.extractfile(member)
                    assert source is not None
                    (out / Path(member.name).name).write_bytes(source.read())
    except (tarfile.TarError, EOFError, OSError) as e:
        raise CorruptFileError(archive, f"cannot unpack ({e})") from e
