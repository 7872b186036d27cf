"""Hostile dataset files: gzip bombs stop at the size the header implies, and files of the
published size whose content differs fail their published MD5."""

import gzip
import tracemalloc

import numpy as np
import pytest

from funcnet.data.datasets import CIFAR10, MNIST, CorruptFileError
from tests.data.readers_util import idx_bytes, write

_MIB = 1 << 20


def _bomb(prefix: bytes, mib: int) -> bytes:
    """A gzip file of ``prefix`` then ``mib`` MiB of zeros, ~1000 times smaller: one
    member compressing 16 MiB of zeros, repeated (gzip readers join members)."""
    block = gzip.compress(bytes(16 * _MIB), compresslevel=9, mtime=0)
    return gzip.compress(prefix, mtime=0) + block * (mib // 16)


def _peak_mib(fn):
    tracemalloc.start()
    try:
        with pytest.raises(CorruptFileError) as info:
            fn()
        return tracemalloc.get_traced_memory()[1] / _MIB, str(info.value)
    finally:
        tracemalloc.stop()


def _t10k_labels(folder, n=10_000):
    write(folder / "t10k-labels-idx1-ubyte", idx_bytes(np.zeros(n, np.uint8)), gz=True)


def test_a_gzip_bomb_for_mnist_is_refused_at_its_header(tmp_path):
    _t10k_labels(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(_bomb(b"", 256))
    peak, message = _peak_mib(lambda: MNIST(tmp_path, train=False))
    assert "t10k-images-idx3-ubyte.gz" in message and "unknown IDX data type" in message
    assert peak < 16, f"decompressed {peak:.0f} MiB before the header check"


def test_a_gzip_bomb_behind_a_valid_header_stops_one_byte_past_it(tmp_path):
    _t10k_labels(tmp_path)
    header = bytes([0, 0, 0x08, 3]) + (10_000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(_bomb(header, 256))
    peak, message = _peak_mib(lambda: MNIST(tmp_path, train=False))
    assert "has trailing bytes" in message
    assert peak < 64, f"decompressed {peak:.0f} MiB for a 7.5 MiB file"


def test_a_header_larger_than_the_published_file_is_refused_before_reading(tmp_path):
    n = 10_001  # one image more than the published test split
    write(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(np.zeros((n, 28, 28), np.uint8)))
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(np.zeros(n, np.uint8)))
    with pytest.raises(CorruptFileError, match="too large: .*more than the 7840000 bytes"):
        MNIST(tmp_path, train=False)


def test_a_gzip_bomb_for_cifar_stops_one_byte_past_the_batch_size(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    (folder / "test_batch.bin.gz").write_bytes(_bomb(b"", 256))
    peak, message = _peak_mib(lambda: CIFAR10(tmp_path, train=False))
    assert "too long" in message
    assert peak < 64, f"decompressed {peak:.0f} MiB for a 29 MiB file"


def test_a_published_size_file_with_other_content_fails_its_md5(tmp_path):
    # What FashionMNIST's (or an edited) t10k file in MNIST's folder looks like: the
    # published format and size, other bytes.
    images = np.zeros((10_000, 28, 28), np.uint8)
    write(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(images), gz=True)
    _t10k_labels(tmp_path)
    with pytest.raises(CorruptFileError, match="MD5") as info:
        MNIST(tmp_path, train=False)
    message = str(info.value)
    assert "t10k-images-idx3-ubyte.gz" in message
    assert "9fb629c4189551a2d022fa330f9573f3" in message  # the published checksum
    assert "download=True" in message and "verify=False" in message
    assert len(MNIST(tmp_path, train=False, verify=False)) == 10_000


def test_a_damaged_gzip_stream_still_names_the_file(tmp_path):
    _t10k_labels(tmp_path)
    data = bytearray(gzip.compress(idx_bytes(np.zeros((10, 28, 28), np.uint8)), mtime=0))
    data[20:30] = b"\xff" * 10
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="t10k-images-idx3-ubyte.gz"):
        MNIST(tmp_path, train=False)
