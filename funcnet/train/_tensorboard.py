"""TensorBoard callback: fit's scalars as TensorBoard event files, with no dependency.

An event file is a sequence of TFRecords (a little-endian uint64 length, its masked
CRC-32C, the payload, the payload's masked CRC-32C), each holding one ``tensorflow.Event``
protocol buffer. Only scalars are written, so the few fields needed are encoded here:

    Event   { double wall_time = 1; int64 step = 2; string file_version = 3;
              Summary summary = 5; }
    Summary { repeated Value value = 1; }
    Value   { string tag = 1; float simple_value = 2; }
"""

from __future__ import annotations

import numbers
import os
import socket
import struct
import time
from collections.abc import Mapping
from typing import Any

from funcnet.train._callbacks import Callback, writes_files

__all__ = ["TensorBoard"]

_FILE_VERSION = "brain.Event:2"


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)  # Castagnoli, reflected
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``, as TFRecord framing uses it."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> bytes:
    crc = crc32c(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def _record(payload: bytes) -> bytes:
    """One TFRecord: length, masked CRC of the length, payload, masked CRC of the payload."""
    length = struct.pack("<Q", len(payload))
    return length + _masked_crc(length) + payload + _masked_crc(payload)


def _varint(value: int) -> bytes:
    value &= 0xFFFFFFFFFFFFFFFF  # int64 as protobuf encodes it: two's complement
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _tag(field, 2) + _varint(len(payload)) + payload


def _event(step: int, scalars: Mapping[str, float], file_version: str = "") -> bytes:
    """An ``Event`` protocol buffer, stamped with the current wall time."""
    out = _tag(1, 1) + struct.pack("<d", time.time()) + _tag(2, 0) + _varint(step)
    if file_version:
        out += _length_delimited(3, file_version.encode())
    values = b"".join(
        _length_delimited(
            1, _length_delimited(1, name.encode()) + _tag(2, 5) + struct.pack("<f", x)
        )
        for name, x in scalars.items()
    )
    return out + (_length_delimited(5, values) if values else b"")


class _EventFile:
    """Appends events to one event file, opening it only for each write: nothing stays
    open between hooks, and a second writer never truncates what a first one wrote."""

    def __init__(self, directory: str) -> None:
        stamp = f"{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
        self.path = os.path.join(directory, f"events.out.tfevents.{stamp}.funcnet")

    def write(self, events: list[tuple[int, Mapping[str, float]]]) -> None:
        """Appends one ``Event`` per ``(step, {tag: value})``, after a file-version event
        when the file is new."""
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with open(self.path, "ab") as f:
            if f.tell() == 0:
                f.write(_record(_event(0, {}, file_version=_FILE_VERSION)))
            f.write(b"".join(_record(_event(step, values)) for step, values in events))


def _scalars(record: Mapping[str, Any], skip: tuple[str, ...]) -> dict[str, float]:
    """The real numbers of ``record`` (booleans excluded) as floats, but those in ``skip``."""
    return {
        k: float(v)
        for k, v in record.items()
        if k not in skip and isinstance(v, numbers.Real) and not isinstance(v, bool)
    }


def _steps_between(update_freq: str | int) -> int:
    """Steps between two written step records (0: none written)."""
    if update_freq in ("epoch", "batch"):
        return 0 if update_freq == "epoch" else 1
    if isinstance(update_freq, int) and not isinstance(update_freq, bool) and update_freq > 0:
        return update_freq
    raise ValueError(f'update_freq must be "epoch", "batch" or a positive int, got {update_freq!r}')


class TensorBoard(Callback):
    """Writes fit's scalars where TensorBoard reads them (Keras' ``callbacks.TensorBoard``).

    Needs no TensorBoard or TensorFlow install: the event files are written directly. View
    them with ``tensorboard --logdir <log_dir>``. As Keras does, training values go to
    ``<log_dir>/train`` and evaluation values to ``<log_dir>/validation``, so TensorBoard
    draws ``loss`` and ``val_loss`` in one chart:

    - every epoch, at step = epoch (0-based): ``epoch_<name>`` for each number of the
      epoch's record (``loss``, metrics, ``lr``, ``time``, ``samples_per_s``) in ``train``,
      and ``epoch_<name>`` for each ``val_<name>`` in ``validation``;
    - with ``update_freq="batch"`` or an int ``n``, at every metrics fetch:
      ``batch_<name>`` for the step records (``loss``, metrics, and ``lr`` from
      :class:`LearningRateLogger` placed before this callback) of every step (or every
      step divisible by ``n``), at step = the optimizer step.

    Each write appends to the callback's event files and closes them, so the data is on disk
    as soon as a hook returns, nothing stays open if fit fails, and a second fit (or a
    resumed run) adds to the same curves. In a run of several processes, process 0 writes
    them.

    Args:
        log_dir: the run's directory.
        update_freq: ``"epoch"``, ``"batch"``, or an int ``n`` (steps divisible by ``n``).

    Raises:
        ValueError: an ``update_freq`` that is none of these.
    """

    def __init__(
        self, log_dir: str | os.PathLike[str] = "logs", update_freq: str | int = "epoch"
    ) -> None:
        self.log_dir: str = os.fspath(log_dir)
        self.update_freq = update_freq
        self._every = _steps_between(update_freq)
        self._train = _EventFile(os.path.join(self.log_dir, "train"))
        self._validation = _EventFile(os.path.join(self.log_dir, "validation"))
        self._written = 0

    def on_fit_begin(self, loop: Any) -> None:
        self._written = len(loop.history.steps)

    def on_fetch(self, loop: Any, logs: dict[str, Any]) -> None:
        if not self._every or not writes_files():
            return
        records = loop.history.steps[self._written :]
        self._written = len(loop.history.steps)
        events = [
            (r["step"], {f"batch_{k}": v for k, v in _scalars(r, ("step", "epoch")).items()})
            for r in records
            if r["step"] % self._every == 0
        ]
        if events:
            self._train.write(events)

    def on_epoch_end(self, loop: Any, logs: dict[str, Any]) -> None:
        if not writes_files():
            return
        epoch = int(logs.get("epoch", loop.epoch))
        values = _scalars(logs, ("epoch",))
        train = {f"epoch_{k}": v for k, v in values.items() if not k.startswith("val_")}
        validation = {f"epoch_{k[4:]}": v for k, v in values.items() if k.startswith("val_")}
        if train:
            self._train.write([(epoch, train)])
        if validation:
            self._validation.write([(epoch, validation)])
