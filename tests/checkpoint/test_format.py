"""The on-disk format: readable with NumPy and json alone, as docs/checkpoints.md describes."""

from __future__ import annotations

import hashlib
import json
import math

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from funcnet import checkpoint
from funcnet.checkpoint import _format


def test_a_checkpoint_is_readable_with_numpy_and_json_alone(tmp_path):
    tree = {
        "params": {
            "fc1": {"weight": jnp.arange(6.0).reshape(2, 3), "bias": jnp.ones(3, jnp.bfloat16)}
        },
        "key": jax.random.key(7),
        "step": 12,
        "lr": math.inf,
    }
    path = checkpoint.save(tmp_path, tree, 12, metadata={"epoch": 3}, metrics={"loss": 0.25})
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format"] == "funcnet.checkpoint" and manifest["format_version"] == 1
    assert manifest["funcnet_version"] and manifest["step"] == 12
    assert manifest["metadata"] == {"epoch": 3} and manifest["metrics"] == {"loss": 0.25}
    assert manifest["arrays_size"] == (path / "arrays.npz").stat().st_size
    leaves = {".".join(map(str, leaf["path"])): leaf for leaf in manifest["leaves"]}
    assert leaves["step"] == {"path": ["step"], "kind": "int", "value": 12}
    assert leaves["lr"]["value"] == "inf"
    assert leaves["key"]["impl"] == "threefry2x32" and leaves["key"]["key_shape"] == [2]
    with np.load(path / "arrays.npz", allow_pickle=False) as npz:
        for name in ("params.fc1.weight", "params.fc1.bias", "key"):
            leaf = leaves[name]
            stored = npz[leaf["key"]]
            assert list(stored.shape) == leaf["shape"]
            assert hashlib.sha256(stored.tobytes()).hexdigest() == leaf["sha256"]
        assert npz["params.fc1.weight"].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
        assert npz["params.fc1.bias"].dtype == np.uint16
        assert npz["params.fc1.bias"].view(ml_dtypes.bfloat16).tolist() == [1.0, 1.0, 1.0]
        assert npz["key"].tolist() == np.asarray(jax.random.key_data(tree["key"])).tolist()


def test_the_manifest_checksum_covers_every_field():
    fields = {
        "format": "funcnet.params",
        "format_version": 1,
        "funcnet_version": "0",
        "created": "",
    }
    fields |= {"tree": {"type": "none"}, "leaves": []}
    data = _format.dump_manifest(fields)
    assert _format.parse_manifest(data, _format.PARAMS_FORMAT, "h").tree == {"type": "none"}
    edited = data.replace(b'"funcnet_version": "0"', b'"funcnet_version": "1"')
    with pytest.raises(checkpoint.CorruptCheckpointError, match="checksum does not match"):
        _format.parse_manifest(edited, _format.PARAMS_FORMAT, "h")


def test_odd_dict_keys_get_safe_unique_array_names_and_round_trip(tmp_path):
    tree = {"a/b": jnp.ones(1), "a.b": jnp.ones(2), "a": {"b": jnp.ones(3)}, "": jnp.ones(4)}
    tree |= {"../x": jnp.ones(5), "é": 5}
    path = checkpoint.save(tmp_path, tree, 0)
    with np.load(path / "arrays.npz", allow_pickle=False) as npz:
        assert sorted(npz.files) == ["_", "___x", "a.b", "a_b", "a_b~1"]
    restored = checkpoint.restore(tmp_path, as_numpy=True)
    assert restored["a/b"].shape == (1,) and restored["a.b"].shape == (2,)
    assert restored["a"]["b"].shape == (3,) and restored[""].shape == (4,)
    assert restored["../x"].shape == (5,) and restored["é"] == 5


def _leaf_index(manifest: dict, name: str) -> int:
    return next(i for i, leaf in enumerate(manifest["leaves"]) if leaf["path"][-1] == name)


def _set_leaf(name: str, field: str, value: object):
    def edit(manifest: dict) -> None:
        manifest["leaves"][_leaf_index(manifest, name)][field] = value

    return edit


def _swap_keys(manifest: dict) -> None:
    a, b = _leaf_index(manifest, "a"), _leaf_index(manifest, "b")
    leaves = manifest["leaves"]
    leaves[a]["key"], leaves[b]["key"] = leaves[b]["key"], leaves[a]["key"]


def _rename_tree_key(manifest: dict) -> None:
    manifest["tree"]["keys"][0] = "renamed"


def _set(field: str, value: object):
    return lambda manifest: manifest.__setitem__(field, value)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_rename_tree_key, "the tree and the leaf table disagree"),
        (_set_leaf("a", "path", ["z"]), "the tree and the leaf table disagree"),
        (_set_leaf("a", "dtype", "int32"), r"a is float32 \(2, 3\) in the file, but the manifest"),
        (_set_leaf("a", "shape", [3, 2]), r"a is float32 \(2, 3\) in the file, but the manifest"),
        (_set_leaf("a", "sha256", "0" * 64), "checksum mismatch for a"),
        (_swap_keys, "checksum mismatch for a"),
        (_set_leaf("a", "key", "missing"), "arrays.npz is missing the arrays of a"),
        (_set_leaf("key", "impl", "rbg"), "cannot rebuild the PRNG key key"),
        (_set_leaf("key", "key_shape", [3]), "key data must be uint32 with trailing axes"),
        (_set_leaf("a", "kind", "prng_key"), "wrong fields"),
        (_set("step", 8), "manifest.json is for step 8, not the directory's step 4"),
        (_set("arrays_size", 1), "arrays_size is invalid"),
        (_set("format", "funcnet.params"), r"read it with load_params\(\)"),
    ],
)
def test_a_resealed_but_inconsistent_manifest_is_rejected(tmp_path, edit, match):
    """Edits that keep the manifest's checksum valid: the cross-checks must still catch them."""
    tree = {"a": jnp.ones((2, 3)), "b": jnp.zeros((2, 3)), "key": jax.random.key(0)}
    path = checkpoint.save(tmp_path, tree, 4)
    manifest = json.loads((path / "manifest.json").read_bytes())
    del manifest["checksum"]
    edit(manifest)
    (path / "manifest.json").write_bytes(_format.dump_manifest(manifest))
    with pytest.raises(checkpoint.CorruptCheckpointError, match=match):
        checkpoint.restore(tmp_path, step=4)
