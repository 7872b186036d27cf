"""Hostile files in a checkpoint directory: nothing hangs, every read is bounded, and error
messages stay short."""

import json
import os
import threading

import numpy as np
import pytest

from funcnet import checkpoint
from funcnet.checkpoint import _format
from funcnet.checkpoint._errors import (
    CheckpointError,
    CheckpointMismatchError,
    CorruptCheckpointError,
)

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")

_TIMEOUT_S = 10
_TREE = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}


def _within_timeout(fn, *fifos):
    """``fn()``'s result or exception; fails (instead of hanging) after ``_TIMEOUT_S``.

    A call stuck opening a FIFO is released by opening the FIFO for writing."""
    out = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as exc:  # handed to the test
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(_TIMEOUT_S)
    if thread.is_alive():
        for fifo in fifos:
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        thread.join(1)
        pytest.fail(f"the call did not return within {_TIMEOUT_S} s (blocked on a FIFO?)")
    if "error" in out:
        raise out["error"]
    return out["value"]


def _two_steps(directory):
    for step in (1, 2):
        checkpoint.save(directory, _TREE, step)
    return directory / "step_000000002" / _format.MANIFEST_FILE


def test_a_fifo_manifest_blocks_nothing(tmp_path):
    manifest = _two_steps(tmp_path)
    manifest.unlink()
    os.mkfifo(manifest)
    assert _within_timeout(lambda: checkpoint.all_steps(tmp_path), manifest) == [1]
    assert _within_timeout(lambda: checkpoint.latest_step(tmp_path), manifest) == 1
    with pytest.raises(CorruptCheckpointError, match="not a regular file .*FIFO.*step=1"):
        _within_timeout(lambda: checkpoint.restore(tmp_path, _TREE), manifest)
    restored = _within_timeout(lambda: checkpoint.restore(tmp_path, _TREE, step=1), manifest)
    np.testing.assert_array_equal(restored["w"], _TREE["w"])
    manager = checkpoint.CheckpointManager(tmp_path, max_to_keep=5)
    _within_timeout(lambda: manager.save(3, _TREE), manifest)
    assert _within_timeout(manager.all_steps, manifest) == [1, 3]


def test_fifos_in_place_of_array_and_params_files_block_nothing(tmp_path):
    _two_steps(tmp_path)
    arrays = tmp_path / "step_000000002" / _format.ARRAYS_FILE
    arrays.unlink()
    os.mkfifo(arrays)
    assert _within_timeout(lambda: checkpoint.all_steps(tmp_path), arrays) == [1]
    for name, load in [
        ("params.npz", checkpoint.load_params),
        ("model.safetensors", checkpoint.load_safetensors),
    ]:
        fifo = tmp_path / name
        os.mkfifo(fifo)
        with pytest.raises(CorruptCheckpointError, match="not a regular file"):
            _within_timeout(lambda: load(fifo), fifo)  # noqa: B023 (called at once)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_a_manifest_linked_to_dev_zero_is_refused_not_read_forever(tmp_path):
    manifest = _two_steps(tmp_path)
    manifest.unlink()
    manifest.symlink_to("/dev/zero")
    with pytest.raises(CorruptCheckpointError, match="not a regular file .*character device"):
        _within_timeout(lambda: checkpoint.restore(tmp_path, _TREE))
    assert _within_timeout(lambda: checkpoint.all_steps(tmp_path)) == [1]
    link = tmp_path / "zero.safetensors"
    link.symlink_to("/dev/zero")
    with pytest.raises(CorruptCheckpointError, match="not a regular file"):
        _within_timeout(lambda: checkpoint.load_safetensors(link))


def test_a_manifest_over_the_format_limit_is_not_read(tmp_path, monkeypatch):
    manifest = _two_steps(tmp_path)
    monkeypatch.setattr(_format, "MAX_MANIFEST_BYTES", 4096)  # 64 MiB: slow to write
    manifest.write_bytes(manifest.read_bytes() + b" " * 4096)
    with pytest.raises(CorruptCheckpointError, match="larger than the format's limit"):
        checkpoint.restore(tmp_path, _TREE)


def test_save_refuses_a_manifest_over_the_format_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(_format, "MAX_MANIFEST_BYTES", 4096)
    huge = {"notes": "x" * 4096}
    with pytest.raises(CheckpointError, match="over the format's limit"):
        checkpoint.save(tmp_path, _TREE, 1, metadata=huge)
    assert checkpoint.all_steps(tmp_path) == []
    assert [p.name for p in tmp_path.iterdir()] == []  # nothing left behind


def _rewrite(manifest, edit, checksum):
    obj = json.loads(manifest.read_bytes())
    obj.pop("checksum")
    edit(obj)
    if checksum:
        manifest.write_bytes(_format.dump_manifest(obj))
    else:
        manifest.write_text(json.dumps({**obj, "checksum": "sha256:0"}))


@pytest.mark.parametrize(
    ("edit", "checksum"),
    [
        (lambda m: m.update(format="f" * 5_000_000), False),  # read before the checksum
        (lambda m: m["leaves"][0].update(dtype="d" * 5_000_000), True),
    ],
    ids=["format", "dtype"],
)  # 5 MB rather than the 50 MB: the same code path, ten times faster
def test_a_5_mb_field_gives_a_short_message(tmp_path, edit, checksum):
    manifest = _two_steps(tmp_path)
    _rewrite(manifest, edit, checksum)
    with pytest.raises(CorruptCheckpointError) as info:
        checkpoint.restore(tmp_path, _TREE)
    message = str(info.value)
    assert len(message) < 5_000
    assert "step_000000002" in message and "step=1" in message  # the advice survives


def test_a_5_mb_dict_key_gives_a_short_mismatch_message(tmp_path):
    manifest = _two_steps(tmp_path)

    def rename(obj):
        obj["tree"]["keys"][0] = obj["leaves"][0]["path"][0] = "k" * 5_000_000

    _rewrite(manifest, rename, checksum=True)
    with pytest.raises(CheckpointMismatchError) as info:
        checkpoint.restore(tmp_path, _TREE)
    assert len(str(info.value)) < 5_000 and "characters cut" in str(info.value)
