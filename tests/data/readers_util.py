"""Writers of small dataset files in the real formats, for the reader tests."""

import gzip
import struct
from pathlib import Path

import numpy as np

IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D}


def idx_bytes(a: np.ndarray) -> bytes:
    """An array in the IDX format: magic (0, 0, type, ndim), big-endian dims and data."""
    header = bytes([0, 0, IDX_CODES[a.dtype.type], a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    return header + a.astype(a.dtype.newbyteorder(">")).tobytes()


def write(path: Path, data: bytes, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path


def mnist_arrays(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    return images, rng.integers(0, 10, n).astype(np.uint8)


def write_mnist(folder: Path, train: bool, n: int, gz: bool = False, seed: int = 0):
    """Writes an images/labels IDX pair; returns (images, labels, image path, label path)."""
    images, labels = mnist_arrays(n, seed)
    prefix = "train" if train else "t10k"
    p_img = write(folder / f"{prefix}-images-idx3-ubyte", idx_bytes(images), gz)
    p_lab = write(folder / f"{prefix}-labels-idx1-ubyte", idx_bytes(labels), gz)
    return images, labels, p_img, p_lab


def cifar_bytes(images_nhwc: np.ndarray, labels: np.ndarray) -> bytes:
    """CIFAR-10 binary records: a label byte, then the R, G and B planes (32x32 each)."""
    planes = images_nhwc.transpose(0, 3, 1, 2).reshape(len(labels), -1)
    return np.concatenate([labels.astype(np.uint8)[:, None], planes], axis=1).tobytes()


def cifar_arrays(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n)
