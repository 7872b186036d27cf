"""MNIST and Fashion-MNIST, read from their IDX files in a local folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import numpy as np

from .._dataset import ArrayDataset
from ._files import CorruptFileError, check_md5, download, locate, missing_files_error
from ._idx import read_idx

__all__ = ["MNIST", "FashionMNIST"]

_COUNTS = {True: 60_000, False: 10_000}
"""Images in each split of the published files: they bound what a file may declare."""


class _IDXImages(ArrayDataset):
    """28x28 grey images and their labels, from a pair of IDX files."""

    name: ClassVar[str]
    urls: ClassVar[tuple[str, ...]]
    md5: ClassVar[dict[str, str]]
    classes: ClassVar[tuple[str, ...]]
    _files: ClassVar[dict[bool, tuple[str, str]]] = {
        True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }

    def __init__(
        self,
        root: str | os.PathLike[str],
        train: bool = True,
        download: bool = False,
        verify: bool = True,
    ):
        self.root: Path = Path(root)
        self.train = train
        folder = self.root / self.name / "raw"  # torchvision's layout, so its downloads work
        names = self._files[train]
        found = locate(self.root, names, [f"{self.name}/raw"])
        missing = [n for n, p in found.items() if p is None]
        if missing and download:
            for n in missing:
                found[n] = _fetch(self.urls, folder / f"{n}.gz", self.md5[f"{n}.gz"])
            missing = []
        if missing:
            raise missing_files_error(
                f"{self.name}(train={train})",
                self.root,
                [f"{n}[.gz]" for n in missing],
                folder,
                " or ".join(self.urls),
            )
        images_path, labels_path = (found[n] for n in names)
        count = _COUNTS[train]
        images = read_idx(images_path, max_bytes=count * 28 * 28)
        labels = read_idx(labels_path, max_bytes=count)
        if verify:
            for path, array in ((images_path, images), (labels_path, labels)):
                self._verify(path, array, count)
        _expect(images_path, images, 3, (28, 28))
        _expect(labels_path, labels, 1, ())
        if len(images) != len(labels):
            raise CorruptFileError(
                labels_path,
                f"holds {len(labels)} labels but {images_path.name} holds {len(images)} images",
            )
        if labels.size and labels.max() >= len(self.classes):
            raise CorruptFileError(
                labels_path,
                f"label {int(labels.max())} is out of range for {len(self.classes)} classes",
            )
        super().__init__(images[..., None], labels.astype(np.int32))

    def _verify(self, path: Path, array: np.ndarray, count: int) -> None:
        """Checks the published MD5 of a gzipped file that claims to be the published one
        (it holds the published number of items); plain files have no published MD5."""
        expected = self.md5.get(path.name)
        if expected is not None and len(array) == count:
            check_md5(path, expected, self.name)

    @property
    def images(self) -> np.ndarray:
        """``(N, 28, 28, 1)`` uint8, 0 (background) to 255 (torchvision's ``.data``)."""
        return self.arrays[0]

    @property
    def labels(self) -> np.ndarray:
        """``(N,)`` int32 class indices into ``classes`` (torchvision's ``.targets``)."""
        return self.arrays[1]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(train={self.train}, {len(self)} images, root={self.root})"


def _expect(path: Path, a: np.ndarray, ndim: int, trailing: tuple[int, ...]) -> None:
    if a.dtype != np.uint8 or a.ndim != ndim or a.shape[1:] != trailing:
        want = "(N, " + ", ".join(map(str, trailing)) + ")" if trailing else "(N,)"
        raise CorruptFileError(
            path, f"holds {a.dtype}{list(a.shape)}, expected uint8 of shape {want}"
        )


def _fetch(urls: tuple[str, ...], dest: Path, md5: str) -> Path:
    return download([u + dest.name for u in urls], dest, md5)


class MNIST(_IDXImages):
    """The MNIST handwritten digits, read from the four standard IDX files.

    ``MNIST(root, train)`` is an :class:`~funcnet.data.ArrayDataset` of ``(image, label)``:
    images ``(N, 28, 28, 1)`` uint8 (0..255, channels-last; torchvision gives
    ``(1, 28, 28)`` float tensors after ``ToTensor``), labels ``(N,)`` int32. N is 60,000
    for ``train=True``, 10,000 for the test split. Everything is read into memory (47 MB).

    Files: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally ``.gz``, in
    ``root/MNIST/raw`` (torchvision's layout, so a folder torchvision downloaded works) or
    in ``root`` itself.

    Args:
        root: the data folder.
        train: the training split, else the test split.
        download: fetch missing files (from a mirror of http://yann.lecun.com/exdb/mnist/,
            as torchvision does) into ``root/MNIST/raw``, verifying their MD5 checksums.
        verify: check the published MD5 of each gzipped file that holds the published
            number of images (about 15 ms for the training split); a mismatch raises
            CorruptFileError naming the file. Uncompressed files have no published
            checksum and are not verified.

    Raises:
        FileNotFoundError: files missing; the message lists them, where to put them, and
            where they come from.
        CorruptFileError: a truncated or corrupt file, one larger than the published
            file, or (with ``verify``) a published file whose MD5 differs (named in the
            message).
    """

    name = "MNIST"
    urls: ClassVar[tuple[str, ...]] = (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    )
    md5: ClassVar[dict[str, str]] = {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }
    classes: ClassVar[tuple[str, ...]] = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9")


class FashionMNIST(_IDXImages):
    """Zalando's Fashion-MNIST (clothing, 10 classes): MNIST's formats and file names.

    The same as :class:`MNIST` in every respect but the pictures: images ``(N, 28, 28, 1)``
    uint8, labels ``(N,)`` int32 (60,000 train, 10,000 test), files in
    ``root/FashionMNIST/raw`` or ``root``.

    Args:
        root: the data folder.
        train: the training split, else the test split.
        download: fetch missing files from
            http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ into
            ``root/FashionMNIST/raw``, verifying their MD5 checksums.
        verify: check the published MD5 of each gzipped file that holds the published
            number of images, as for :class:`MNIST`.

    Raises:
        FileNotFoundError: files missing; the message lists them, where to put them, and
            where they come from.
        CorruptFileError: a truncated or corrupt file, one larger than the published
            file, or (with ``verify``) a published file whose MD5 differs (named in the
            message).
    """

    name = "FashionMNIST"
    urls: ClassVar[tuple[str, ...]] = (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    )
    md5: ClassVar[dict[str, str]] = {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    }
    classes: ClassVar[tuple[str, ...]] = (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )
