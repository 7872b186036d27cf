"""The UCI handwritten digits, shipped inside the package: no download, no network."""

from __future__ import annotations

import importlib.resources
from typing import Literal

import numpy as np

from .._dataset import ArrayDataset

__all__ = ["load_digits"]

_FILE = "_embedded/digits.npz"


def load_digits(split: Literal["train", "test", "all"] = "all") -> ArrayDataset:
    """The UCI ML handwritten digits: 1,797 real 8x8 grey images of the digits 0-9.

    "Optical Recognition of Handwritten Digits" (E. Alpaydin, C. Kaynak, 1998; UCI Machine
    Learning Repository, CC BY 4.0), the copy scikit-learn ships as ``load_digits``, which
    is the UCI set's 1,797-image test part from 13 writers. Each image is a 32x32 bitmap
    summed over 4x4 blocks, so pixels count "on" pixels: 0..16. The file ships in
    ``funcnet/data/_embedded`` (46 kB) with a README recording its origin and licence.

    The split is fixed and stratified: 20% of each class (359 images) is ``"test"``, the
    other 1,438 ``"train"``, the same on every machine and version.

    Args:
        split: ``"train"``, ``"test"``, or ``"all"`` (in the original order).

    Returns:
        An :class:`~funcnet.data.ArrayDataset` of ``(image, label)``: images
        ``(N, 8, 8, 1)`` uint8 in 0..16 (channels-last; use ``ToFloat(scale=1/16)``),
        labels ``(N,)`` int32 in 0..9.

    Raises:
        ValueError: an unknown ``split``.

    Examples:
        >>> from funcnet.data.datasets import load_digits
        >>> train, test = load_digits("train"), load_digits("test")
        >>> len(train), len(test)
        (1438, 359)
        >>> x, y = test.arrays
        >>> x.shape, x.dtype, y.dtype
        ((359, 8, 8, 1), dtype('uint8'), dtype('int32'))
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"load_digits split must be 'train', 'test' or 'all', got {split!r}")
    resource = importlib.resources.files("funcnet.data").joinpath(_FILE)
    with importlib.resources.as_file(resource) as path, np.load(path, allow_pickle=False) as f:
        images, labels, is_test = f["images"], f["labels"], f["is_test"]
    keep = slice(None) if split == "all" else (is_test if split == "test" else ~is_test)
    return ArrayDataset(
        np.ascontiguousarray(images[keep][..., None]), labels[keep].astype(np.int32)
    )
