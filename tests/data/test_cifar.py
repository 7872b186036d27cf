"""CIFAR10 on small binary-version files written in the real record format."""

import numpy as np
import pytest

from funcnet.data.datasets import CIFAR10, CorruptFileError, _cifar

from .readers_util import cifar_arrays, cifar_bytes, write

RECORDS = 4  # per file in these tests; the real files hold 10,000


@pytest.fixture(autouse=True)
def small_files(monkeypatch):
    monkeypatch.setattr(_cifar, "RECORDS_PER_FILE", RECORDS)


def write_cifar(root, gz=False):
    """The six batch files under root/cifar-10-batches-bin; returns (train, test) arrays."""
    folder = root / "cifar-10-batches-bin"
    parts = []
    for i, name in enumerate([*(f"data_batch_{k}.bin" for k in range(1, 6)), "test_batch.bin"]):
        images, labels = cifar_arrays(RECORDS, seed=i)
        write(folder / name, cifar_bytes(images, labels), gz)
        parts.append((images, labels))
    train = tuple(np.concatenate([p[j] for p in parts[:5]]) for j in range(2))
    return train, parts[5]


@pytest.mark.parametrize("gz", [False, True])
def test_reads_channels_last_images_and_labels(tmp_path, gz):
    (x_train, y_train), (x_test, y_test) = write_cifar(tmp_path, gz)
    train = CIFAR10(tmp_path)
    assert len(train) == 5 * RECORDS
    assert train.images.shape == (20, 32, 32, 3) and train.images.dtype == np.uint8
    assert train.images.flags.c_contiguous and train.labels.dtype == np.int32
    np.testing.assert_array_equal(train.images, x_train)
    np.testing.assert_array_equal(train.labels, y_train)
    test = CIFAR10(tmp_path, train=False)
    np.testing.assert_array_equal(test.images, x_test)
    np.testing.assert_array_equal(test.labels, y_test)
    assert test.classes[0] == "airplane" and "train=False" in repr(test)


def test_channel_planes_land_in_the_last_axis(tmp_path):
    record = np.zeros(3073, np.uint8)
    record[0] = 7
    record[1 : 1 + 1024] = 10  # red plane
    record[1 + 1024 : 1 + 2048] = 20  # green
    record[1 + 2048 :] = 30  # blue
    record[1 + 5] = 99  # red, row 0, column 5
    write(tmp_path / "test_batch.bin", np.tile(record, RECORDS).tobytes())
    x, y = CIFAR10(tmp_path, train=False)[0]
    assert y == 7 and x.shape == (32, 32, 3)
    assert x[0, 5].tolist() == [99, 20, 30] and x[9, 9].tolist() == [10, 20, 30]


def test_missing_files_say_which_where_and_whence(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin").unlink()
    with pytest.raises(FileNotFoundError) as e:
        CIFAR10(tmp_path)
    message = str(e.value)
    assert "data_batch_3.bin" in message and "data_batch_2.bin" not in message
    assert str(tmp_path / "cifar-10-batches-bin") in message
    assert "cifar-10-binary.tar.gz" in message and "download=True" in message
    assert len(CIFAR10(tmp_path, train=False)) == RECORDS


def test_never_reads_the_pickled_python_version(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(b"\x80\x04pickle")
    with pytest.raises(FileNotFoundError, match="binary version"):
        CIFAR10(tmp_path)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b[:-1], "truncated: 12291 bytes, a CIFAR-10 binary batch file has 12292"),
        (lambda b: b + b"\x00" * 3073, "too long"),
        (lambda b: b"", "truncated: 0 bytes"),
        (lambda b: b[:3073] + b"\x0a" + b[3074:], "record 1 has label 10"),
    ],
)
def test_corrupt_files_name_the_file(tmp_path, mutate, message):
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-bin" / "data_batch_2.bin"
    path.write_bytes(mutate(path.read_bytes()))
    with pytest.raises(CorruptFileError, match=message) as e:
        CIFAR10(tmp_path)
    assert e.value.path == path


@pytest.mark.parametrize("gz", [False, True])
def test_fuzzed_truncations_and_extensions_always_give_a_clear_error(tmp_path, gz):
    write_cifar(tmp_path, gz)
    path = tmp_path / "cifar-10-batches-bin" / ("test_batch.bin" + (".gz" if gz else ""))
    original = path.read_bytes()
    plain = _cifar.read_bytes(path)
    rng = np.random.default_rng(0)
    for trial in range(100):
        if trial % 2:
            data = plain[: rng.integers(0, len(plain))]
        else:
            data = plain + bytes(rng.integers(0, 256, rng.integers(1, 5000), dtype=np.uint8))
        write(path.with_suffix("") if gz else path, data, gz)
        with pytest.raises(CorruptFileError) as e:
            CIFAR10(tmp_path, train=False)
        assert e.value.path == path
    path.write_bytes(original)
    assert len(CIFAR10(tmp_path, train=False)) == RECORDS
