"""Matching a checkpoint's leaves against a target tree, and the report of differences."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from funcnet.checkpoint._format import SCALAR_KINDS, Leaf, path_name


@dataclasses.dataclass(frozen=True)
class Spec:
    """What a leaf is, for comparison: its kind, and dtype and shape for arrays and keys.

    For ``unsupported`` target leaves, ``dtype`` holds the leaf's type name.
    """

    kind: str
    dtype: str = ""
    shape: tuple[int, ...] = ()

    def __str__(self) -> str:
        if self.kind == "array":
            return f"{self.dtype} array of shape {self.shape}"
        if self.kind == "prng_key":
            return f"{self.dtype} PRNG key array of shape {self.shape}"
        if self.kind == "unsupported":
            return f"{self.dtype} object"
        return f"Python {self.kind}"


def key_dtype_name(impl: str) -> str:
    """JAX's name for the key dtype of a PRNG implementation (``key<fry>``)."""
    try:  # jax.random.key_dtype is newer than jax 0.10.0; a key's abstract value works in all
        return str(jax.eval_shape(lambda: jax.random.key(0, impl=impl)).dtype)
    except Exception:  # an implementation this jax does not know: show its name
        return f"key<{impl}>"


def record_spec(leaf: Leaf) -> Spec:
    """The spec of a checkpoint leaf (a key's shape is that of the key array, not its data)."""
    if leaf.kind == "array":
        return Spec("array", leaf.dtype, leaf.shape)
    if leaf.kind == "prng_key":
        shape = leaf.shape[: len(leaf.shape) - len(leaf.key_shape)]
        return Spec("prng_key", key_dtype_name(leaf.impl), shape)
    return Spec(leaf.kind)


def target_spec(value: Any) -> Spec:
    """The spec of a target leaf: an array, a ``jax.ShapeDtypeStruct``, or a Python scalar."""
    if not isinstance(value, np.generic):
        for kind, cls in SCALAR_KINDS.items():
            if isinstance(value, cls):
                return Spec(kind)
    dtype, shape = getattr(value, "dtype", None), getattr(value, "shape", None)
    if isinstance(value, (np.ndarray, np.generic, jax.Array, jax.ShapeDtypeStruct)):
        if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
            return Spec("prng_key", str(dtype), tuple(shape))
        return Spec("array", np.dtype(dtype).name, tuple(shape))
    return Spec("unsupported", f"{type(value).__module__}.{type(value).__qualname__}")


def _problems(expected: Spec, got: Spec) -> list[str]:
    if expected.kind == "unsupported":
        return [f"cannot restore into a {expected} (not an array or a Python scalar)"]
    if expected.kind != got.kind:
        return [f"expected {expected}, got {got}"]
    problems = []
    if expected.shape != got.shape:
        problems.append(f"expected shape {expected.shape}, got {got.shape}")
    if expected.dtype != got.dtype:
        problems.append(f"expected dtype {expected.dtype}, got {got.dtype}")
    return problems


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The result of :func:`compare`.

    Attributes:
        matches: per target leaf, the index of the checkpoint leaf to restore into it, or
            None where the target's value is kept.
        differences: one line per difference, target leaves first, then checkpoint leaves
            that the target lacks.
    """

    matches: tuple[int | None, ...]
    differences: tuple[str, ...]


def compare(
    leaves: Sequence[Leaf], target_paths: Sequence[tuple[Any, ...]], target_leaves: Sequence[Any]
) -> Comparison:
    """Matches checkpoint leaves to target leaves by path and checks kinds, shapes, dtypes."""
    by_path = {leaf.path: i for i, leaf in enumerate(leaves)}
    matches: list[int | None] = []
    differences = []
    for path, value in zip(target_paths, target_leaves):
        expected = target_spec(value)
        index = by_path.pop(path, None)
        if index is None:
            differences.append(
                f"{path_name(path)}: missing from the checkpoint (target: {expected})"
            )
            matches.append(None)
            continue
        problems = _problems(expected, record_spec(leaves[index]))
        if problems:
            differences.append(f"{path_name(path)}: {'; '.join(problems)}")
        matches.append(None if problems else index)
    for index in by_path.values():
        leaf = leaves[index]
        differences.append(f"{leaf.name}: not in the target (checkpoint: {record_spec(leaf)})")
    return Comparison(tuple(matches), tuple(differences))


def report(where: str, differences: Sequence[str]) -> str:
    """The message of a CheckpointMismatchError."""
    count = f"{len(differences)} difference{'s' if len(differences) != 1 else ''}"
    lines = "\n  ".join(differences)
    return (
        f"{where} does not match the target ({count}):\n  {lines}\n"
        "Make the target match (the same model configuration and optimizer as when saving), "
        "or pass strict=False to restore the leaves that match and keep the target's values "
        "for the rest."
    )
