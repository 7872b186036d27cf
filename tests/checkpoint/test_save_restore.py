"""save / restore / restore_checkpoint / restore_metadata: round trips and targets."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest

from funcnet import checkpoint


class Pair(NamedTuple):
    first: Any
    second: Any


@dataclasses.dataclass
class Box:
    """A pytree node that is neither a dict, a list nor a NamedTuple."""

    weight: Any
    extra: Any


jax.tree_util.register_dataclass(Box, data_fields=["weight", "extra"], meta_fields=[])


def _varied_tree() -> dict[str, Any]:
    """Every kind of leaf and node the checkpoint format supports."""
    params = {
        "fc1": {"weight": jnp.arange(12.0).reshape(3, 4), "bias": jnp.full(4, 0.1, jnp.bfloat16)},
        "fc2": {"weight": jnp.ones((4, 2), jnp.float16), "bias": jnp.zeros(2)},
    }
    return {
        "params": params,
        "opt_state": optax.adamw(1e-3).init(params),
        "ints": {
            "i8": jnp.array([-1, 2], jnp.int8),
            "u32": jnp.array([7], jnp.uint32),
            "i4": np.array([-8, 7], ml_dtypes.int4),
        },
        "floats": {
            "f8": np.array([1.5, -2.0], ml_dtypes.float8_e4m3fn),
            "c64": jnp.array([1 + 2j], jnp.complex64),
            "f64": np.array([math.pi, -0.0], np.float64),
            "special": jnp.array([jnp.nan, jnp.inf, -jnp.inf, -0.0]),
        },
        "mask": jnp.array([True, False]),
        "scalar": jnp.float32(2.5),
        "np_scalar": np.int64(-3),
        "empty_array": jnp.zeros((0, 3)),
        "key": jax.random.key(42),
        "keys": jax.random.split(jax.random.key(1), 3),
        "rbg_key": jax.random.key(5, impl="rbg"),
        "raw_key": jax.random.PRNGKey(7),
        "step": 1000,
        "lr": 3e-4,
        "nan": math.nan,
        "neg_zero": -0.0,
        "flag": False,
        "name": "run-1",
        "none": None,
        "empty": {"dict": {}, "list": [], "tuple": ()},
        "int_keys": {0: jnp.ones(1), 10: jnp.zeros(1)},
        "nested": [Pair(jnp.ones(2), (None, 3)), Box(weight=jnp.eye(2), extra=[1.5])],
    }


def _same_leaf(a: Any, b: Any) -> bool:
    """Bit-exact equality of two leaves, including their dtype and Python type."""
    if isinstance(a, jax.Array) and jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
        return (
            isinstance(b, jax.Array)
            and a.dtype == b.dtype
            and np.array_equal(jax.random.key_data(a), jax.random.key_data(b))
        )
    if hasattr(a, "dtype"):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    return type(a) is type(b) and (a == b or (a != a and b != b))


def _by_path(tree: Any) -> dict[str, Any]:
    pairs = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path, simple=True, separator="."): leaf for path, leaf in pairs}


def _assert_bit_exact(restored: Any, original: Any) -> None:
    got, want = _by_path(restored), _by_path(original)
    assert got.keys() == want.keys()
    different = [name for name in want if not _same_leaf(got[name], want[name])]
    assert not different, different


def test_target_less_restore_rebuilds_the_structure_bit_exactly(tmp_path):
    tree = _varied_tree()
    checkpoint.save(tmp_path, tree, step=3)
    restored = checkpoint.restore(tmp_path)
    _assert_bit_exact(restored, tree)
    assert restored["none"] is None and restored["empty"] == {"dict": {}, "list": [], "tuple": ()}
    assert restored["int_keys"].keys() == {0, 10}
    adam = restored["opt_state"][0]
    assert type(adam).__name__ == "ScaleByAdamState" and adam._fields == ("count", "mu", "nu")
    assert isinstance(restored["opt_state"], tuple) and isinstance(restored["nested"], list)
    assert restored["nested"][0].first.shape == (2,) and restored["nested"][0].second == (None, 3)
    assert restored["nested"][1] == {"weight": restored["nested"][1]["weight"], "extra": [1.5]}
    assert type(restored["step"]) is int and type(restored["name"]) is str
    assert isinstance(restored["params"]["fc1"]["weight"], jax.Array)
    assert isinstance(restored["floats"]["f64"], np.ndarray)  # jax would downcast it


def test_restore_into_a_target_gives_the_targets_exact_structure(tmp_path):
    tree = _varied_tree()
    checkpoint.save(tmp_path, tree, step=3)
    restored = checkpoint.restore(tmp_path, target=tree)
    assert jax.tree_util.tree_structure(restored) == jax.tree_util.tree_structure(tree)
    assert type(restored["opt_state"][0]) is type(tree["opt_state"][0])
    assert isinstance(restored["nested"][1], Box)
    _assert_bit_exact(restored, tree)


def test_restore_into_shape_dtype_structs(tmp_path):
    tree = {"w": jnp.ones((2, 3), jnp.bfloat16), "key": jax.random.key(0), "opt": Pair(1, 2.0)}
    checkpoint.save(tmp_path, tree, step=0)
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype) if hasattr(x, "shape") else x, tree
    )
    restored = checkpoint.restore(tmp_path, target=abstract)
    _assert_bit_exact(restored, tree)


def test_as_numpy_returns_writable_arrays_that_alias_nothing(tmp_path):
    tree = {
        "w": jnp.arange(6.0).reshape(2, 3),
        "b": jnp.ones(3, jnp.bfloat16),
        "key": jax.random.key(0),
    }
    checkpoint.save(tmp_path, tree, step=1)
    restored = checkpoint.restore(tmp_path, as_numpy=True)
    assert type(restored["w"]) is np.ndarray and restored["b"].dtype == jnp.bfloat16
    assert jax.dtypes.issubdtype(restored["key"].dtype, jax.dtypes.prng_key)  # keys stay keys
    restored["w"][0, 0] = 99.0
    checkpoint.save(
        tmp_path, {"w": jnp.zeros((2, 3)), "b": tree["b"], "key": tree["key"]}, 1, overwrite=True
    )
    assert restored["w"][0, 1] == 1.0  # not a view of the overwritten file
    assert checkpoint.restore(tmp_path, as_numpy=True)["w"][0, 0] == 0.0


def test_restored_arrays_follow_the_targets_sharding(tmp_path):
    tree = {"w": jnp.ones(4)}
    checkpoint.save(tmp_path, tree, step=0)
    restored = checkpoint.restore(tmp_path, target=tree)
    assert restored["w"].sharding == tree["w"].sharding


def test_mismatch_reports_every_difference_at_once(tmp_path):
    saved = {
        "params": {
            "fc1": {"weight": jnp.zeros((100, 128)), "bias": jnp.zeros(128)},
            "old": jnp.zeros(3),
        },
        "step": 5,
        "key": jax.random.key(0),
    }
    checkpoint.save(tmp_path, saved, step=10)
    target = {
        "params": {
            "fc1": {"weight": jnp.zeros((784, 128)), "bias": jnp.zeros(128, jnp.bfloat16)},
            "fc2": {"weight": jnp.zeros((128, 10))},
        },
        "step": jnp.int32(0),
        "key": jax.random.key(0, impl="rbg"),
    }
    with pytest.raises(
        checkpoint.CheckpointMismatchError, match="does not match the target"
    ) as info:
        checkpoint.restore(tmp_path, target=target)
    assert info.value.differences == (
        "key: expected dtype key<rbg>, got key<fry>",
        "params.fc1.bias: expected dtype bfloat16, got float32",
        "params.fc1.weight: expected shape (784, 128), got (100, 128)",
        "params.fc2.weight: missing from the checkpoint (target: float32 array of shape (128, 10))",
        "step: expected int32 array of shape (), got Python int",
        "params.old: not in the target (checkpoint: float32 array of shape (3,))",
    )
    message = str(info.value)
    assert "step_000000010" in message and "6 differences" in message and "strict=False" in message
    assert isinstance(info.value, ValueError)


def test_strict_false_restores_what_matches_and_warns_about_the_rest(tmp_path):
    checkpoint.save(
        tmp_path, {"backbone": jnp.full(3, 7.0), "head": jnp.ones((5, 2)), "extra": 1}, 4
    )
    target = {"backbone": jnp.zeros(3), "head": jnp.zeros((5, 10))}
    with pytest.warns(checkpoint.PartialRestoreWarning, match=r"2 difference\(s\)") as record:
        restored = checkpoint.restore(tmp_path, target=target, strict=False)
    assert "head: expected shape (5, 10), got (5, 2)" in str(record[0].message)
    assert "extra: not in the target" in str(record[0].message)
    assert restored["backbone"].tolist() == [7.0, 7.0, 7.0]
    assert restored["head"] is target["head"]


def test_restore_checkpoint_returns_what_was_skipped_without_warning(tmp_path):
    checkpoint.save(tmp_path, {"a": jnp.ones(2)}, 4, metadata={"epoch": 1}, metrics={"loss": 0.5})
    ckpt = checkpoint.restore_checkpoint(
        tmp_path, target={"a": jnp.ones(2), "b": 1.0}, strict=False
    )
    assert ckpt.skipped == ("b: missing from the checkpoint (target: Python float)",)
    assert (ckpt.step, ckpt.metadata, ckpt.metrics) == (4, {"epoch": 1}, {"loss": 0.5})
    assert ckpt.path == tmp_path / "step_000000004"


def test_metadata_round_trips_as_json(tmp_path):
    metadata = {
        "loader": {"epoch": 3, "position": 1280, "order": (4, 1, 2), "seed": np.int64(9)},
        "best": float("nan"),
        "note": None,
        "ok": True,
    }
    checkpoint.save(tmp_path, {"w": jnp.ones(1)}, 2, metadata=metadata)
    restored = checkpoint.restore_metadata(tmp_path)
    assert restored["loader"] == {"epoch": 3, "position": 1280, "order": [4, 1, 2], "seed": 9}
    assert math.isnan(restored["best"]) and restored["note"] is None and restored["ok"] is True
    assert checkpoint.restore_metadata(tmp_path, step=2) == restored


@pytest.mark.parametrize(
    ("metadata", "match"),
    [
        ({"loader": {"ids": {1, 2}}}, r"metadata\['loader'\]\['ids'\] is a set"),
        ({1: "a"}, "key 1 is not a str"),
    ],
)
def test_metadata_that_json_cannot_hold_is_rejected(tmp_path, metadata, match):
    with pytest.raises(TypeError, match=match):
        checkpoint.save(tmp_path, {"w": jnp.ones(1)}, 0, metadata=metadata)
    assert checkpoint.all_steps(tmp_path) == []


@pytest.mark.parametrize(
    ("tree", "error", "match"),
    [
        (
            {"a": {"f": object()}},
            TypeError,
            r"cannot save a\.f: a builtins\.object is not a supported leaf",
        ),
        ({"a": np.array(["x"])}, TypeError, r"cannot save a: dtype <U1 is not supported"),
        ({(1, 2): jnp.ones(1)}, TypeError, r"dict key \(1, 2\) is a tuple"),
    ],
)
def test_unsupported_trees_are_rejected_before_writing(tmp_path, tree, error, match):
    with pytest.raises(error, match=match):
        checkpoint.save(tmp_path, tree, 0)
    assert list(tmp_path.iterdir()) == []


def test_a_donated_array_is_rejected_with_a_hint(tmp_path):
    x = jnp.ones(3)
    x.delete()
    with pytest.raises(ValueError, match="donated"):
        checkpoint.save(tmp_path, {"x": x}, 0)


def test_resumed_training_continues_bit_exactly(tmp_path):
    """The trainer's resume path: TrainState + loader position + PRNG state."""

    class TrainState(NamedTuple):
        params: Any
        opt_state: Any
        step: jax.Array
        key: jax.Array

    optimizer = optax.adamw(1e-2)

    @jax.jit
    def train_step(state: TrainState, x: jax.Array) -> TrainState:
        key, dropout_key = jax.random.split(state.key)
        mask = jax.random.bernoulli(dropout_key, 0.9, x.shape)
        loss = lambda p: jnp.sum((jnp.tanh((x * mask) @ p["w"]) - 1.0) ** 2)
        grads = jax.grad(loss)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        return TrainState(
            optax.apply_updates(state.params, updates), opt_state, state.step + 1, key
        )

    params = {"w": jax.random.normal(jax.random.key(0), (4, 3), jnp.float32)}
    state = TrainState(params, optimizer.init(params), jnp.int32(0), jax.random.key(1))
    batches = jax.random.normal(jax.random.key(2), (4, 8, 4))
    state = train_step(train_step(state, batches[0]), batches[1])
    checkpoint.save(tmp_path, state, int(state.step), metadata={"loader": {"batch": 2}})

    fresh = TrainState(params, optimizer.init(params), jnp.int32(0), jax.random.key(9))
    ckpt = checkpoint.restore_checkpoint(tmp_path, target=fresh)
    resumed, position = ckpt.tree, ckpt.metadata["loader"]["batch"]
    for batch in batches[position:]:
        state, resumed = train_step(state, batch), train_step(resumed, batch)
    _assert_bit_exact(resumed, state)
