"""The checkpoint directory: steps, overwrites, leftovers of killed saves, and the errors for
missing or damaged checkpoints."""

from __future__ import annotations

import json
import os

import jax.numpy as jnp
import pytest

from funcnet import checkpoint
from funcnet.checkpoint import _format, _layout


def _save(directory, step, value=0.0, **kwargs):
    return checkpoint.save(directory, {"w": jnp.full(2, value)}, step, **kwargs)


def _value(directory, step=None):
    return float(checkpoint.restore(directory, step=step, as_numpy=True)["w"][0])


def test_steps_are_listed_in_order_and_the_newest_is_restored(tmp_path):
    for step in (20, 3, 100):
        _save(tmp_path, step, value=step)
    assert checkpoint.all_steps(tmp_path) == [3, 20, 100]
    assert checkpoint.latest_step(tmp_path) == 100
    assert _value(tmp_path) == 100.0 and _value(tmp_path, step=3) == 3.0
    assert sorted(os.listdir(tmp_path)) == ["step_000000003", "step_000000020", "step_000000100"]


def test_no_checkpoints_gives_none_and_empty_lists(tmp_path):
    assert checkpoint.latest_step(tmp_path / "missing") is None
    assert checkpoint.all_steps(tmp_path) == []


def test_missing_directory_empty_directory_and_missing_step_are_clear_errors(tmp_path):
    with pytest.raises(checkpoint.CheckpointNotFoundError, match="does not exist"):
        checkpoint.restore(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        checkpoint.restore(tmp_path)
    _save(tmp_path, 5)
    with pytest.raises(
        checkpoint.CheckpointNotFoundError, match=r"no checkpoint for step 6 .* \[5\]"
    ):
        checkpoint.restore(tmp_path, step=6)
    with pytest.raises(checkpoint.CheckpointNotFoundError, match="pass its parent"):
        checkpoint.restore(tmp_path / "step_000000005")
    (tmp_path / "file").write_text("x")
    with pytest.raises(checkpoint.CheckpointNotFoundError, match="is a file"):
        checkpoint.restore(tmp_path / "file")


def test_invalid_steps_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="non-negative"):
        _save(tmp_path, -1)
    with pytest.raises(TypeError, match=r"got dict \(pass the target as target=...\)"):
        checkpoint.restore(tmp_path, {"w": jnp.ones(2)}, {"w": jnp.ones(2)})
    _save(tmp_path, jnp.int32(7))  # integer scalars are accepted
    assert checkpoint.all_steps(tmp_path) == [7]


def test_an_existing_step_is_kept_unless_overwrite(tmp_path):
    _save(tmp_path, 1, value=1.0)
    with pytest.raises(checkpoint.CheckpointError, match="already exists; pass overwrite=True"):
        _save(tmp_path, 1, value=2.0)
    assert _value(tmp_path) == 1.0
    _save(tmp_path, 1, value=2.0, overwrite=True)
    assert _value(tmp_path) == 2.0
    assert os.listdir(tmp_path) == ["step_000000001"]


def test_leftovers_of_killed_saves_are_ignored_then_cleared(tmp_path):
    _save(tmp_path, 1)
    (tmp_path / ".tmp-step_000000002-abcd").mkdir()
    (tmp_path / ".tmp-step_000000002-abcd" / "arrays.npz").write_bytes(b"PK")
    (tmp_path / ".del-0123456789ab").mkdir()
    (tmp_path / "step_12").mkdir()  # not a name funcnet writes
    assert checkpoint.all_steps(tmp_path) == [1] and _value(tmp_path) == 0.0
    _save(tmp_path, 3)
    assert sorted(os.listdir(tmp_path)) == ["step_000000001", "step_000000003", "step_12"]


def test_an_overwrite_killed_between_its_renames_keeps_the_old_copy(tmp_path):
    _save(tmp_path, 4, value=4.0)
    os.rename(tmp_path / "step_000000004", tmp_path / ".old-step_000000004-beef")
    assert checkpoint.all_steps(tmp_path) == [4] and _value(tmp_path, step=4) == 4.0
    _save(tmp_path, 5)  # the next save puts the old copy back in place
    assert sorted(os.listdir(tmp_path)) == ["step_000000004", "step_000000005"]
    with pytest.raises(checkpoint.CheckpointError, match="already exists"):
        _save(tmp_path, 4)


def test_a_damaged_newest_step_is_an_error_naming_the_steps_to_use_instead(tmp_path):
    _save(tmp_path, 1)
    _save(tmp_path, 2)
    (tmp_path / "step_000000002" / "arrays.npz").write_bytes(b"garbage")
    assert checkpoint.all_steps(tmp_path) == [1]  # listing skips it...
    with pytest.raises(checkpoint.CorruptCheckpointError) as info:
        checkpoint.restore(tmp_path)  # ...but restore does not silently fall back
    message = str(info.value)
    assert "step_000000002: arrays.npz is truncated or was replaced (7 bytes" in message
    assert "restore another step with step=1" in message
    assert _value(tmp_path, step=1) == 0.0


def test_a_corrupt_array_names_the_leaf_and_what_to_do(tmp_path):
    path = checkpoint.save(tmp_path, {"params": {"fc1": {"weight": jnp.ones((8, 8))}}}, 10)
    data = bytearray((path / "arrays.npz").read_bytes())
    data[data.index(b"\x00\x00\x80\x3f") + 1] ^= 0x40  # a byte of the first 1.0
    (path / "arrays.npz").write_bytes(bytes(data))
    with pytest.raises(checkpoint.CorruptCheckpointError) as info:
        checkpoint.restore(tmp_path, step=10)
    message = str(info.value)
    assert message.startswith(f"checkpoint {path}: arrays.npz is truncated or corrupt")
    assert "params.fc1.weight" in message
    assert f"no other complete checkpoint is in {tmp_path}: delete {path}" in message


def test_a_checkpoint_from_a_newer_funcnet_asks_for_an_upgrade(tmp_path):
    path = _save(tmp_path, 1)
    fields = json.loads((path / "manifest.json").read_bytes())
    del fields["checksum"]
    fields["format_version"] = 2
    (path / "manifest.json").write_bytes(_format.dump_manifest(fields))
    with pytest.raises(checkpoint.CheckpointError, match="newer funcnet.*upgrade funcnet"):
        checkpoint.restore(tmp_path, step=1)


def test_saving_into_a_file_is_a_checkpoint_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(checkpoint.CheckpointError, match="cannot create the checkpoint directory"):
        _save(tmp_path / "file", 0)


def test_a_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_layout, "_write_file", fail)
    with pytest.raises(checkpoint.CheckpointError, match="could not save .* No space left"):
        _save(tmp_path, 0)
    assert os.listdir(tmp_path) == []
