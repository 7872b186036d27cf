"""save_params / load_params: a single-file, PyTorch-style export of weights."""

from __future__ import annotations

import io
import os
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnet import checkpoint


def _params():
    return {
        "fc1": {"weight": jnp.arange(6.0).reshape(2, 3), "bias": jnp.ones(3, jnp.bfloat16)},
        "blocks": [{"scale": jnp.full(2, 0.5)}, {"scale": jnp.full(2, 2.0)}],
    }


def test_round_trip_without_and_with_a_target(tmp_path):
    params = _params()
    path = checkpoint.save_params(tmp_path / "model.npz", params)
    assert path == tmp_path / "model.npz"
    for restored in (checkpoint.load_params(path), checkpoint.load_params(path, target=params)):
        assert jax.tree_util.tree_structure(restored) == jax.tree_util.tree_structure(params)
        for got, want in zip(
            jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(params)
        ):
            assert (
                got.dtype == want.dtype and np.asarray(got).tobytes() == np.asarray(want).tobytes()
            )


def test_the_file_is_a_plain_npz_with_pytorch_style_keys(tmp_path):
    path = checkpoint.save_params(tmp_path / "model.npz", _params())
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == [
            "__funcnet__.json",
            "blocks.0.scale",
            "blocks.1.scale",
            "fc1.bias",
            "fc1.weight",
        ]
        assert npz["fc1.weight"].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
        assert npz["fc1.bias"].view(jnp.bfloat16).tolist() == [1.0, 1.0, 1.0]


def test_an_existing_file_is_replaced_atomically_and_stale_temporaries_removed(tmp_path):
    path = tmp_path / "model.npz"
    checkpoint.save_params(path, {"w": jnp.zeros(2)})
    (tmp_path / ".model.npz.tmp-dead").write_bytes(b"left by a killed process")
    checkpoint.save_params(path, {"w": jnp.ones(2)})
    assert checkpoint.load_params(path)["w"].tolist() == [1.0, 1.0]
    assert os.listdir(tmp_path) == ["model.npz"]


def test_strict_false_warns_and_keeps_the_targets_values(tmp_path):
    path = checkpoint.save_params(
        tmp_path / "backbone.npz", {"body": jnp.ones(3), "head": jnp.ones(2)}
    )
    target = {"body": jnp.zeros(3), "head": jnp.zeros(10)}
    with pytest.raises(checkpoint.CheckpointMismatchError, match="head: expected shape"):
        checkpoint.load_params(path, target=target)
    with pytest.warns(
        checkpoint.PartialRestoreWarning, match=r"head: expected shape \(10,\), got \(2,\)"
    ):
        restored = checkpoint.load_params(path, target=target, strict=False)
    assert restored["body"].tolist() == [1.0, 1.0, 1.0] and restored["head"] is target["head"]


def test_errors_name_the_file_and_the_problem(tmp_path):
    with pytest.raises(checkpoint.CheckpointNotFoundError, match="does not exist"):
        checkpoint.load_params(tmp_path / "missing.npz")
    np.savez(tmp_path / "plain.npz", w=np.ones(2), allow_pickle=False)
    with pytest.raises(checkpoint.CorruptCheckpointError, match="not a funcnet params file"):
        checkpoint.load_params(tmp_path / "plain.npz")
    checkpoint.save(tmp_path / "run", {"w": jnp.ones(2)}, 1)
    with pytest.raises(checkpoint.CheckpointNotFoundError, match="read with restore"):
        checkpoint.load_params(tmp_path / "run")
    path = checkpoint.save_params(tmp_path / "model.npz", {"w": jnp.ones(2)})
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(
        checkpoint.CorruptCheckpointError, match=f"params file {path}: .*save_params"
    ):
        checkpoint.load_params(path)


def test_a_checkpoint_manifest_in_a_params_file_is_recognised(tmp_path):
    step_dir = checkpoint.save(tmp_path / "run", {"w": jnp.ones(2)}, 1)
    buffer = io.BytesIO()
    with zipfile.ZipFile(step_dir / "arrays.npz") as source, zipfile.ZipFile(buffer, "w") as target:
        for name in source.namelist():
            target.writestr(name, source.read(name))
        target.writestr("__funcnet__.json", (step_dir / "manifest.json").read_bytes())
    (tmp_path / "odd.npz").write_bytes(buffer.getvalue())
    with pytest.raises(checkpoint.CorruptCheckpointError, match=r"read it with restore\(\)"):
        checkpoint.load_params(tmp_path / "odd.npz")
