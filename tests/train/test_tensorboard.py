"""TensorBoard callback: event files read back by a TFRecord and protobuf reader written
here (and by TensorBoard's own reader when the tensorboard package is installed)."""

import os
import pathlib
import struct
from types import SimpleNamespace

import numpy as np
import pytest

from funcnet import losses, metrics, optim, train
from funcnet.train._history import History
from funcnet.train._tensorboard import TensorBoard, crc32c
from tests.train._models import MLP, loader


def reference_crc32c(data: bytes) -> int:
    """CRC-32C bit by bit (RFC 3720), independent of the library's table."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 * (crc & 1))
    return crc ^ 0xFFFFFFFF


def masked(data: bytes) -> int:
    crc = reference_crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def records(path):
    """The payloads of a TFRecord file, checking both CRCs of every record."""
    data, at, out = pathlib.Path(path).read_bytes(), 0, []
    while at < len(data):
        header = data[at : at + 8]
        (length,) = struct.unpack("<Q", header)
        assert struct.unpack("<I", data[at + 8 : at + 12])[0] == masked(header)
        payload = data[at + 12 : at + 12 + length]
        assert struct.unpack("<I", data[at + 12 + length : at + 16 + length])[0] == masked(payload)
        out.append(payload)
        at += 16 + length
    return out


def varint(data, at):
    value, shift = 0, 0
    while True:
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if byte < 0x80:
            return value, at


def fields(message):
    """A protocol buffer as {field number: [raw values]} (varints as ints, others as bytes)."""
    out, at = {}, 0
    while at < len(message):
        key, at = varint(message, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = varint(message, at)
        elif wire == 2:
            length, at = varint(message, at)
            value, at = message[at : at + length], at + length
        else:
            size = {1: 8, 5: 4}[wire]
            value, at = message[at : at + size], at + size
        out.setdefault(number, []).append(value)
    return out


def events(directory):
    """Every Event of the event files in ``directory``, in file order."""
    out = []
    for name in sorted(os.listdir(directory)):
        assert "tfevents" in name  # how TensorBoard finds event files
        for payload in records(os.path.join(directory, name)):
            event = fields(payload)
            values = [fields(v) for s in event.get(5, []) for v in fields(s).get(1, [])]
            out.append(
                {
                    "wall_time": struct.unpack("<d", event[1][0])[0],
                    "step": event.get(2, [0])[0],
                    "file_version": event.get(3, [b""])[0].decode(),
                    "scalars": {v[1][0].decode(): struct.unpack("<f", v[2][0])[0] for v in values},
                }
            )
    return out


def scalars(directory):
    """{tag: [(step, value), ...]} over the event files in ``directory``."""
    out = {}
    for event in events(directory):
        for tag, value in event["scalars"].items():
            out.setdefault(tag, []).append((event["step"], value))
    return out


def epoch_record(epoch):
    return {
        "epoch": epoch,
        "loss": 1.0 / (epoch + 1),
        "accuracy": 0.5 + epoch / 10,
        "val_loss": 2.0 / (epoch + 1),
        "val_accuracy": 0.4 + epoch / 10,
        "lr": 0.01,
        "time": 1.5,
        "samples_per_s": 100.0,
        "note": "not a number",
        "finite": True,
    }


def run(callback, epochs, steps_per_epoch=3, first_epoch=0):
    """Drives ``callback`` as fit does: fetch after every step, an epoch record per epoch."""
    loop = SimpleNamespace(history=History(), epoch=first_epoch, step=0)
    callback.on_fit_begin(loop)
    for epoch in range(first_epoch, first_epoch + epochs):
        loop.epoch = epoch
        callback.on_epoch_begin(loop)
        for i in range(steps_per_epoch):
            loop.step = epoch * steps_per_epoch + i + 1
            loop.history.steps.append(
                {"step": loop.step, "epoch": epoch, "loss": 1.0 / loop.step, "accuracy": 0.5}
            )
            callback.on_fetch(loop, {"loss": 1.0 / loop.step, "samples/s": 10})
        callback.on_epoch_end(loop, epoch_record(epoch))
    callback.on_fit_end(loop)


def test_crc32c_matches_the_check_value():
    assert crc32c(b"123456789") == reference_crc32c(b"123456789") == 0xE3069283
    data = bytes(range(256)) * 3
    assert crc32c(data) == reference_crc32c(data)


def test_epoch_values_are_written_as_scalars_at_step_epoch(tmp_path):
    run(TensorBoard(tmp_path), epochs=2)
    train_events = events(tmp_path / "train")
    assert train_events[0]["file_version"] == "brain.Event:2"
    got = scalars(tmp_path / "train")
    assert sorted(got) == [
        "epoch_accuracy",
        "epoch_loss",
        "epoch_lr",
        "epoch_samples_per_s",
        "epoch_time",
    ]
    assert got["epoch_loss"] == [(0, 1.0), (1, 0.5)]
    assert got["epoch_accuracy"] == [(0, 0.5), (1, pytest.approx(0.6))]
    assert got["epoch_lr"] == [(0, pytest.approx(0.01)), (1, pytest.approx(0.01))]
    assert scalars(tmp_path / "validation") == {
        "epoch_loss": [(0, 2.0), (1, 1.0)],
        "epoch_accuracy": [(0, pytest.approx(0.4)), (1, pytest.approx(0.5))],
    }


@pytest.mark.parametrize("update_freq, steps", [("batch", [1, 2, 3, 4, 5, 6]), (2, [2, 4, 6])])
def test_update_freq_writes_the_fetched_step_records(tmp_path, update_freq, steps):
    run(TensorBoard(tmp_path, update_freq=update_freq), epochs=2)
    got = scalars(tmp_path / "train")
    assert got["batch_loss"] == [(s, pytest.approx(1.0 / s)) for s in steps]
    assert got["batch_accuracy"] == [(s, 0.5) for s in steps]
    assert "batch_step" not in got and "batch_epoch" not in got


def test_update_freq_epoch_writes_no_step_records(tmp_path):
    run(TensorBoard(tmp_path), epochs=1)
    assert not any(tag.startswith("batch_") for tag in scalars(tmp_path / "train"))


def test_a_second_fit_appends(tmp_path):
    callback = TensorBoard(tmp_path, update_freq="batch")
    run(callback, epochs=2)
    run(callback, epochs=1, first_epoch=2)  # fit again: the loader goes on at epoch 2
    run(TensorBoard(tmp_path), epochs=1, first_epoch=3)  # a new callback, the same log_dir
    got = scalars(tmp_path / "train")
    assert [step for step, _ in got["epoch_loss"]] == [0, 1, 2, 3]
    assert [step for step, _ in got["batch_loss"]] == list(range(1, 10))
    versions = [e for e in events(tmp_path / "train") if e["file_version"]]
    assert len(versions) == len(os.listdir(tmp_path / "train"))  # one per file, at its start


@pytest.mark.parametrize("update_freq", ["steps", 0, -1, True, 1.5])
def test_bad_update_freq_is_refused(tmp_path, update_freq):
    with pytest.raises(ValueError, match="update_freq"):
        TensorBoard(tmp_path, update_freq=update_freq)


def test_fit_writes_what_history_records(tmp_path, key):
    state = train.TrainState.create(MLP(), optim.sgd(0.05), key)
    _, history = train.fit(
        state,
        loader(),
        2,
        loss_fn=losses.cross_entropy,
        metrics={"accuracy": metrics.accuracy},
        eval_loader=loader(40, 20, shuffle=False),
        callbacks=[TensorBoard(tmp_path, update_freq="batch")],
        log_every=3,
        progress="quiet",
    )
    got = scalars(tmp_path / "train")
    steps = [(s["step"], np.float32(s["loss"])) for s in history.steps]
    assert got["batch_loss"] == steps and len(steps) == 8
    assert got["epoch_loss"] == [(r["epoch"], np.float32(r["loss"])) for r in history.epochs]
    val = scalars(tmp_path / "validation")["epoch_accuracy"]
    assert val == [(r["epoch"], np.float32(r["val_accuracy"])) for r in history.epochs]


def test_tensorboard_reads_the_files(tmp_path):
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.plugin_event_accumulator"
    )
    from tensorboard.util.tensor_util import make_ndarray

    run(TensorBoard(tmp_path, update_freq="batch"), epochs=2)
    accumulator = event_accumulator.EventAccumulator(str(tmp_path / "train"))
    accumulator.Reload()
    loss = [
        (e.step, float(make_ndarray(e.tensor_proto))) for e in accumulator.Tensors("epoch_loss")
    ]
    assert loss == [(0, 1.0), (1, 0.5)]
    assert accumulator.SummaryMetadata("epoch_loss").plugin_data.plugin_name == "scalars"
    assert len(accumulator.Tensors("batch_loss")) == 6
