"""download=True, against local file:// URLs (no network): checksums, safe unpacking."""

import gzip
import hashlib
import io
import tarfile

import numpy as np
import pytest

from funcnet.data.datasets import CIFAR10, MNIST, _cifar

from .readers_util import cifar_arrays, cifar_bytes, write_mnist


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A folder of gzipped MNIST files served as file:// URLs, with their checksums."""
    served = tmp_path / "served"
    images, labels, *_ = write_mnist(served, train=False, n=6, gz=True)
    md5 = {p.name: _md5(p) for p in served.iterdir()}
    monkeypatch.setattr(MNIST, "urls", ("file:///nonexistent/", served.as_uri() + "/"))
    monkeypatch.setattr(MNIST, "md5", md5)
    return images, labels


def test_mnist_download_fetches_verifies_and_reads(tmp_path, mirror):
    images, labels = mirror
    root = tmp_path / "data"
    with pytest.raises(FileNotFoundError):
        MNIST(root, train=False)
    ds = MNIST(root, train=False, download=True)  # the first URL fails, the second works
    np.testing.assert_array_equal(ds.labels, labels)
    assert sorted(p.name for p in (root / "MNIST" / "raw").iterdir()) == [
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    np.testing.assert_array_equal(MNIST(root, train=False).images[..., 0], images)


def test_mnist_download_rejects_a_bad_checksum(tmp_path, mirror, monkeypatch):
    monkeypatch.setitem(MNIST.md5, "t10k-labels-idx1-ubyte.gz", "0" * 32)
    root = tmp_path / "data"
    with pytest.raises(OSError, match="MD5 .*expected 0000"):
        MNIST(root, train=False, download=True)
    assert not (root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").exists()
    assert not list((root / "MNIST" / "raw").glob("*.part"))


def _tar_gz(members):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_cifar_download_unpacks_only_the_batch_files(tmp_path, monkeypatch):
    monkeypatch.setattr(_cifar, "RECORDS_PER_FILE", 2)
    images, labels = cifar_arrays(2)
    batch = cifar_bytes(images, labels)
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    archive = tmp_path / "served.tar.gz"
    archive.write_bytes(
        _tar_gz(
            [(f"cifar-10-batches-bin/{n}", batch) for n in names]
            + [("../escaped.bin", b"x"), ("cifar-10-batches-bin/readme.html", b"<html>")]
        )
    )
    monkeypatch.setattr(_cifar, "_URL", archive.as_uri())
    monkeypatch.setattr(_cifar, "_MD5", _md5(archive))
    root = tmp_path / "data"
    ds = CIFAR10(root, train=False, download=True)
    np.testing.assert_array_equal(ds.images, images)
    assert len(CIFAR10(root, train=True)) == 10
    assert not (tmp_path / "escaped.bin").exists()
    assert not (root / "cifar-10-batches-bin" / "readme.html").exists()


def test_cifar_download_rejects_a_bad_checksum(tmp_path, monkeypatch):
    archive = tmp_path / "served.tar.gz"
    archive.write_bytes(gzip.compress(b"not the archive"))
    monkeypatch.setattr(_cifar, "_URL", archive.as_uri())
    with pytest.raises(OSError, match="could not download cifar-10-binary.tar.gz"):
        CIFAR10(tmp_path / "data", download=True)
