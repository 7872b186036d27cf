"""Flat PyTorch-style views of parameter trees: state_dict and load_state_dict."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from funcnet.errors import StateDictError

if TYPE_CHECKING:
    from funcnet.nn._module import Module

__all__ = ["flatten_dict", "load_state_dict", "num_parameters", "state_dict", "unflatten_dict"]


def flatten_dict(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"fc1": {"weight": w}}`` → ``{"fc1.weight": w}`` (empty sub-dicts vanish)."""
    flat: dict[str, Any] = {}
    for name, value in tree.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping):
            flat.update(flatten_dict(value, key + "."))
        else:
            flat[key] = value
    return flat


def unflatten_dict(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"fc1.weight": w}`` → ``{"fc1": {"weight": w}}``."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = tree
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    return tree


def state_dict(params: Mapping[str, Any], state: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One flat dict of parameters and state, keyed like PyTorch (``"fc1.weight"``,
    ``"bn.running_mean"``). Arrays are not copied."""
    flat = flatten_dict(params)
    for key, value in flatten_dict(state or {}).items():
        if key in flat:
            raise StateDictError(f"state_dict: {key!r} is both a parameter and a state entry")
        flat[key] = value
    return flat


def num_parameters(params: Mapping[str, Any]) -> int:
    """The total number of elements in a parameter tree."""
    return sum(int(np.prod(jnp.shape(leaf))) for leaf in jax.tree_util.tree_leaves(params))


def load_state_dict(
    model: Module,
    flat: Mapping[str, Any],
    *,
    strict: bool = True,
    into: tuple[Mapping[str, Any], Mapping[str, Any]] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Builds ``(params, state)`` for ``model`` from a flat dict such as ``state_dict``'s.

    Values are copied into new arrays of the dtype ``model.init`` would give (as PyTorch's
    ``copy_`` converts), so changing a source array in place later (a NumPy array, a
    torch tensor's ``.numpy()`` view) leaves the result unchanged. Shapes must match
    exactly.

    Args:
        model: the module whose structure the result must have.
        flat: ``{"fc1.weight": array, ...}`` (NumPy or JAX arrays).
        strict: if True, missing and unexpected keys are errors; if False, unexpected keys
            are ignored and missing ones are taken from ``into``.
        into: ``(params, state)`` supplying the entries that ``flat`` lacks when
            ``strict=False``.

    Returns:
        ``(params, state)`` as nested dicts.

    Raises:
        StateDictError: listing every missing, unexpected and mis-shaped key at once.
    """
    want_params, want_state = jax.eval_shape(model.init, jax.random.key(0))
    expected = {**flatten_dict(want_params), **flatten_dict(want_state)}
    is_state = set(flatten_dict(want_state))
    fallback = state_dict(*into) if into is not None else {}
    missing = [k for k in expected if k not in flat and not (not strict and k in fallback)]
    unexpected = [k for k in flat if k not in expected] if strict else []
    problems = []
    if missing:
        problems.append("missing keys: " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected keys: " + ", ".join(unexpected))
    for key, spec in expected.items():
        if key in flat and tuple(np.shape(flat[key])) != tuple(spec.shape):
            problems.append(
                f"{key}: expected shape {tuple(spec.shape)}, got {tuple(np.shape(flat[key]))}"
            )
    if problems:
        raise StateDictError(
            f"Error(s) in loading state_dict for {type(model).__name__}:\n  "
            + "\n  ".join(problems)
        )
    params: dict[str, Any] = {}
    state: dict[str, Any] = {}
    for key, spec in expected.items():
        value = flat[key] if key in flat else fallback[key]
        (state if key in is_state else params)[key] = _owned(value, spec.dtype)
    return unflatten_dict(params), unflatten_dict(state)


def _owned(value: Any, dtype: Any) -> jax.Array:
    """``value`` as a JAX array of ``dtype`` that shares no memory with a mutable source.

    ``jnp.asarray`` may wrap a suitably aligned NumPy buffer without copying it; JAX
    arrays are immutable, so they alone may be shared.
    """
    if isinstance(value, jax.Array):
        return jnp.asarray(value, dtype=dtype)
    return jnp.array(value, dtype=dtype, copy=True)
