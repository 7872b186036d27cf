"""Pytrees to manifest records and back: the only part of the format that needs jax."""

from __future__ import annotations

import collections
import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from funcnet.checkpoint import _format
from funcnet.checkpoint._errors import CorruptCheckpointError
from funcnet.checkpoint._format import Encoded, Leaf, PathEntry, path_name

_SUPPORTED = "arrays, PRNG keys, Python bool/int/float/str and None"


def _entry(key: Any, where: tuple[PathEntry, ...]) -> PathEntry:
    """A jax key-path entry as a manifest path entry (str or int)."""
    if isinstance(key, jax.tree_util.DictKey):
        value = key.key
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        raise TypeError(
            f"cannot save {path_name(where)}: dict key {value!r} is a {type(value).__name__}; "
            "checkpoints support str and int dict keys"
        )
    if isinstance(key, jax.tree_util.SequenceKey):
        return key.idx
    if isinstance(key, jax.tree_util.GetAttrKey):
        return key.name
    if isinstance(key, jax.tree_util.FlattenedIndexKey):
        return key.key
    raise TypeError(f"cannot save {path_name(where)}: unknown pytree key {key!r}")


def _target_entry(key: Any) -> Any:
    """Like :func:`_entry`, but never fails: an odd key simply matches nothing."""
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return getattr(key, attr)
    return str(key)


def encode(tree: Any) -> Encoded:
    """Describes ``tree``; raises TypeError/ValueError for what cannot be saved.

    Nothing is copied off the device here: ``values`` holds the original arrays.
    """
    paths: list[tuple[PathEntry, ...]] = []
    raw: list[Any] = []

    def walk(node: Any, path: tuple[PathEntry, ...]) -> dict[str, Any]:
        if node is None:
            return {"type": "none"}
        pairs, _ = jax.tree_util.tree_flatten_with_path(node, is_leaf=lambda x: x is not node)
        if len(pairs) == 1 and pairs[0][0] == ():  # not a pytree node: a leaf
            paths.append(path)
            raw.append(node)
            return {"type": "leaf"}
        keys = [_entry(key_path[0], path) for key_path, _ in pairs]
        children = [walk(child, (*path, key)) for key, (_, child) in zip(keys, pairs)]
        if isinstance(node, dict):
            return {"type": "dict", "keys": keys, "children": children}
        fields = getattr(type(node), "_fields", None)
        if isinstance(node, tuple) and fields is not None:
            if _format.namedtuple_ok(type(node).__name__, fields):
                name = type(node).__name__
                return {"type": "namedtuple", "name": name, "fields": keys, "children": children}
        elif type(node) in (list, tuple):
            return {"type": type(node).__name__, "children": children}
        cls = f"{type(node).__module__}.{type(node).__qualname__}"
        return {"type": "node", "class": cls, "keys": keys, "children": children}

    structure = walk(tree, ())
    keys = _format.member_keys(paths)
    leaves, values = [], []
    for path, value, key in zip(paths, raw, keys):
        leaf, stored = _leaf(path, value)
        if leaf.stored:
            leaf = dataclasses.replace(leaf, key=key)
        leaves.append(leaf)
        values.append(stored)
    return Encoded(structure, tuple(leaves), tuple(values))


def _leaf(path: tuple[PathEntry, ...], value: Any) -> tuple[Leaf, Any]:
    name = path_name(path)
    if isinstance(value, (np.ndarray, np.generic)):
        dtype = _format.dtype_name(value.dtype, name)
        return Leaf(path=path, kind="array", dtype=dtype, shape=tuple(value.shape)), value
    if isinstance(value, jax.Array):
        if value.is_deleted():
            raise ValueError(
                f"cannot save {name}: the array was deleted (donated to a jitted function?); "
                "save the state that the step returned instead"
            )
        if jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
            return _key_leaf(path, value)
        dtype = _format.dtype_name(value.dtype, name)
        return Leaf(path=path, kind="array", dtype=dtype, shape=tuple(value.shape)), value
    if isinstance(value, (bool, int, float, str)):
        return _format.scalar_leaf(path, value), None
    raise TypeError(
        f"cannot save {name}: a {type(value).__module__}.{type(value).__qualname__} is not a "
        f"supported leaf (supported: {_SUPPORTED})"
    )


def _key_leaf(path: tuple[PathEntry, ...], key: jax.Array) -> tuple[Leaf, Any]:
    impl = jax.random.key_impl(key)
    if not isinstance(impl, str):
        raise TypeError(
            f"cannot save {path_name(path)}: PRNG keys of a custom implementation ({impl!r}) "
            "cannot be saved; use a built-in one such as 'threefry2x32'"
        )
    data = jax.random.key_data(key)
    leaf = Leaf(
        path=path,
        kind="prng_key",
        dtype=_format.dtype_name(data.dtype, path_name(path)),
        shape=tuple(data.shape),
        impl=impl,
        key_shape=tuple(data.shape[key.ndim :]),
    )
    return leaf, data


# ---------------------------------------------------------------------------- restoring


@functools.cache
def _namedtuple(name: str, fields: tuple[str, ...]) -> type:
    """A look-alike of a saved NamedTuple class: same name and fields, one class per pair."""
    return collections.namedtuple(name, fields)


def build(structure: Any, values: Sequence[Any]) -> Any:
    """Rebuilds a tree from the manifest's (validated) structure and the leaves' values.

    Dicts, lists and tuples come back as such; NamedTuples as look-alike
    ``collections.namedtuple`` classes; other pytree nodes (dataclasses, ...) as dicts keyed
    by field name, or lists when their children are only numbered.
    """
    leaves = iter(values)

    def walk(node: dict[str, Any]) -> Any:
        kind = node["type"]
        if kind == "leaf":
            return next(leaves)
        if kind == "none":
            return None
        children = [walk(child) for child in node["children"]]
        if kind == "list":
            return children
        if kind == "tuple":
            return tuple(children)
        if kind == "namedtuple":
            return _namedtuple(node["name"], tuple(node["fields"]))(*children)
        keys = node["keys"]
        if kind == "node" and keys and keys == list(range(len(keys))):
            return children
        return dict(zip(keys, children))

    return walk(structure)


def flatten_target(target: Any) -> tuple[list[tuple[Any, ...]], list[Any], Any]:
    """``(paths, leaves, treedef)`` of a target tree, paths as in the manifest."""
    pairs, treedef = jax.tree_util.tree_flatten_with_path(target)
    paths = [tuple(_target_entry(key) for key in key_path) for key_path, _ in pairs]
    return paths, [leaf for _, leaf in pairs], treedef


def jax_can_hold(dtype: np.dtype) -> bool:
    """Whether a jax array can hold ``dtype`` exactly (64-bit types need jax_enable_x64)."""
    try:
        return jax.dtypes.canonicalize_dtype(dtype) == dtype
    except (TypeError, ValueError):
        return False


def to_output(leaf: Leaf, value: Any, target_leaf: Any, as_numpy: bool) -> Any:
    """A restored leaf in the form the caller gets (see ``restore``'s docstring).

    Args:
        leaf: the leaf's record.
        value: the stored NumPy array, or the Python scalar.
        target_leaf: the target's leaf, whose sharding the array is placed with, or None.
        as_numpy: return NumPy arrays rather than jax arrays.
    """
    if leaf.kind == "prng_key":
        try:
            key = jax.random.wrap_key_data(value, impl=leaf.impl)
        except Exception as exc:  # unknown implementation or a wrong key shape
            raise CorruptCheckpointError(
                f"cannot rebuild the PRNG key {leaf.name} (implementation {leaf.impl!r}, "
                f"data shape {leaf.shape}): {exc}"
            ) from exc
        return _place(key, target_leaf)
    if leaf.kind == "array" and not as_numpy and jax_can_hold(value.dtype):
        return _place(value, target_leaf)
    return value


def _place(value: Any, target_leaf: Any) -> jax.Array:
    """``value`` on the device: with the target leaf's sharding when it has one (also one
    that spans several processes), else on the default device. A target array that jax
    may still move (not committed, e.g. fresh from ``model.init``) gives one that jax may
    move too, so it follows the other arguments of a jitted step."""
    sharding = getattr(target_leaf, "sharding", None)
    if sharding is None or not getattr(target_leaf, "committed", True):
        return jax.device_put(value)
    if not sharding.is_fully_addressable:
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])
    return jax.device_put(value, sharding)
