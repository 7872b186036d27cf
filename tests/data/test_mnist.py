"""IDX reader, MNIST and FashionMNIST on small files written in the real format."""

import gzip

import numpy as np
import pytest

from funcnet.data import DataLoader
from funcnet.data.datasets import MNIST, CorruptFileError, FashionMNIST, read_idx

from .readers_util import idx_bytes, write, write_mnist


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    "a",
    [
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
        np.array([-3, 5], np.int8),
        np.arange(6, dtype=np.int16).reshape(3, 2) * -300,
        np.array([1 << 30, -7], np.int32),
        np.array([[1.5, -2.25]], np.float32),
    ],
)
def test_read_idx_round_trip(tmp_path, a, gz):
    path = write(tmp_path / "a.idx", idx_bytes(a), gz)
    got = read_idx(path)
    assert got.dtype == a.dtype and got.dtype.isnative and got.shape == a.shape
    np.testing.assert_array_equal(got, a)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("cls, folder", [(MNIST, "MNIST/raw"), (FashionMNIST, "FashionMNIST/raw")])
def test_reads_both_splits(tmp_path, cls, folder, gz):
    images, labels, *_ = write_mnist(tmp_path / folder, train=True, n=12, gz=gz)
    _, test_labels, *_ = write_mnist(tmp_path / folder, train=False, n=5, gz=gz, seed=1)
    ds = cls(tmp_path)
    assert len(ds) == 12 and ds.images.shape == (12, 28, 28, 1) and ds.images.dtype == np.uint8
    assert ds.labels.dtype == np.int32
    np.testing.assert_array_equal(ds.images[..., 0], images)
    np.testing.assert_array_equal(ds.labels, labels)
    x, y = ds[3]
    assert x.shape == (28, 28, 1) and y == labels[3]
    test = cls(tmp_path, train=False)
    np.testing.assert_array_equal(test.labels, test_labels)
    assert len(cls.classes) == 10 and "train=False" in repr(test)
    xb, _ = next(iter(DataLoader(ds, batch_size=4, shuffle=True)))
    assert xb.shape == (4, 28, 28, 1)


def test_files_directly_in_root(tmp_path):
    write_mnist(tmp_path, train=False, n=3)
    assert len(MNIST(tmp_path, train=False)) == 3


def test_missing_files_say_which_where_and_whence(tmp_path):
    write_mnist(tmp_path / "MNIST/raw", train=True, n=2)
    (tmp_path / "MNIST/raw/train-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError) as e:
        MNIST(tmp_path)
    message = str(e.value)
    assert "train-labels-idx1-ubyte[.gz]" in message
    assert "train-images" not in message  # only the missing one
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "ossci-datasets.s3.amazonaws.com/mnist" in message and "download=True" in message
    with pytest.raises(FileNotFoundError, match="fashion-mnist.s3"):
        FashionMNIST(tmp_path, train=False)


def _corrupt(tmp_path, which, data):
    _, _, p_img, p_lab = write_mnist(tmp_path, train=True, n=4)
    path = p_img if which == "images" else p_lab
    path.write_bytes(data(path.read_bytes()))
    return path


@pytest.mark.parametrize(
    "which, mutate, message",
    [
        ("images", lambda b: b"\x08\x03" + b[2:], "not an IDX file"),
        ("images", lambda b: b[:2] + b"\x0a" + b[3:], "unknown IDX data type"),
        ("images", lambda b: b[:-1], "truncated: header declares uint8 data of shape"),
        ("images", lambda b: b + b"\x00", "has trailing bytes"),
        ("images", lambda b: b[:10], "truncated IDX header"),
        ("images", lambda b: b[:3] + b"\x00" + b[4:], "0 dimensions"),
        ("images", lambda b: b"", "truncated IDX header"),
        ("labels", lambda b: idx_bytes(np.zeros(4, np.int32)), "expected uint8 of shape \\(N,\\)"),
        ("labels", lambda b: idx_bytes(np.zeros(3, np.uint8)), "holds 3 labels but"),
        ("labels", lambda b: b[:-1] + b"\x0a", "label 10 is out of range"),
        ("images", lambda b: b"\x1f\x8b" + b[2:], "not a valid gzip file"),
    ],
)
def test_corrupt_files_name_the_file(tmp_path, which, mutate, message):
    path = _corrupt(tmp_path, which, mutate)
    with pytest.raises(CorruptFileError, match=message) as e:
        MNIST(tmp_path)
    assert e.value.path == path and str(path) in str(e.value)


def test_wrong_image_size_is_rejected(tmp_path):
    write(tmp_path / "train-images-idx3-ubyte", idx_bytes(np.zeros((2, 32, 32), np.uint8)))
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.zeros(2, np.uint8)))
    with pytest.raises(CorruptFileError, match="expected uint8 of shape \\(N, 28, 28\\)"):
        MNIST(tmp_path)


@pytest.mark.parametrize("gz", [False, True])
def test_fuzzed_headers_and_truncations_always_give_a_clear_error(tmp_path, gz):
    """Every single-byte change of a header, and every truncation, must be caught."""
    _, _, p_img, p_lab = write_mnist(tmp_path, train=True, n=3, gz=gz)
    originals = {p: p.read_bytes() for p in (p_img, p_lab)}
    rng = np.random.default_rng(0)
    for trial in range(150):
        path = (p_img, p_lab)[trial % 2]
        raw = originals[path]
        header = 16 if path is p_img else 8
        data = bytearray(gzip.decompress(raw) if gz else raw)
        if trial % 3 == 0:
            data = data[: rng.integers(0, len(data))]
        else:
            pos = rng.integers(0, header)
            data[pos] ^= int(rng.integers(1, 256))
        write(path.with_suffix("") if gz else path, bytes(data), gz)
        with pytest.raises(CorruptFileError) as e:
            MNIST(tmp_path)
        assert e.value.path == path, (trial, str(e.value))
        path.write_bytes(raw)
    assert len(MNIST(tmp_path)) == 3  # the originals still read


def test_raw_gzip_damage_is_caught(tmp_path):
    _, _, p_img, _ = write_mnist(tmp_path, train=True, n=3, gz=True)
    raw = p_img.read_bytes()
    rng = np.random.default_rng(1)
    for _ in range(60):
        data = bytearray(raw)
        if rng.random() < 0.5:
            data = data[: rng.integers(2, len(data))]
        else:
            data[rng.integers(10, len(data))] ^= int(rng.integers(1, 256))
        p_img.write_bytes(bytes(data))
        with pytest.raises(CorruptFileError) as e:
            MNIST(tmp_path)
        assert e.value.path == p_img
