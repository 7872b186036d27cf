"""Which parameters pruning and quantisation touch: glob patterns on dotted names.

Names are PyTorch's (``optim.leaf_names``: ``"fc1.weight"``, ``"0.weight"``) and patterns
match as in ``optim.param_groups`` (``name_matches``). Only floating arrays with at least
two dimensions are ever selected: Linear and Conv weights (and Embedding tables), never
biases, norm weights or scalars.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import jax
import jax.numpy as jnp
import numpy as np

from funcnet.optim import leaf_names
from funcnet.optim._masking import name_matches

Patterns: TypeAlias = str | Sequence[str]
"""A glob pattern on dotted parameter names, or several."""

WEIGHTS: tuple[str, ...] = ("weight", "*.weight")
"""The default selection: every leaf named ``weight`` (a bare layer's, or a sub-module's)."""


def _patterns(value: Patterns, what: str) -> tuple[str, ...]:
    patterns = (value,) if isinstance(value, str) else tuple(value)
    if not all(isinstance(p, str) for p in patterns):
        raise TypeError(f"{what} must be glob patterns (a str or a sequence of str), got {value!r}")
    return patterns


def is_weight(leaf: Any) -> bool:
    """Whether ``leaf`` can be selected: a floating array of at least two dimensions."""
    dtype = getattr(leaf, "dtype", None)
    return dtype is not None and np.ndim(leaf) >= 2 and jnp.issubdtype(dtype, jnp.floating)


def select(params: Any, include: Patterns, exclude: Patterns, caller: str) -> list[bool]:
    """One bool per leaf of ``params`` (``jax.tree.leaves`` order): selected or not.

    A leaf is selected when its dotted name matches a pattern of ``include``, none of
    ``exclude``, and it is a floating array with at least two dimensions.

    Raises:
        TypeError: a pattern is not a str.
        ValueError: nothing is selected; the message shows the names there are.
    """
    include, exclude = _patterns(include, "include"), _patterns(exclude, "exclude")
    names = leaf_names(params)
    picked = [
        is_weight(leaf)
        and any(name_matches(name, p) for p in include)
        and not any(name_matches(name, p) for p in exclude)
        for name, leaf in zip(names, jax.tree.leaves(params))
    ]
    if not any(picked):
        raise ValueError(
            f"{caller}: include={include!r}, exclude={exclude!r} select no floating parameter "
            f"with two or more dimensions; the parameters are {names[:8]}"
        )
    return picked


def is_none(x: Any) -> bool:
    """``is_leaf`` for mask trees, whose unpruned parameters are None."""
    return x is None


def mask_leaves(masks: Any, params: Any, caller: str) -> list[Any]:
    """The leaves of a masks tree, aligned with ``jax.tree.leaves(params)``.

    Args:
        masks: a tree like ``params`` holding a bool array of the parameter's shape
            (True: kept) or ``None`` (not pruned) for each parameter.
        params: the parameter tree.
        caller: the function's name, for errors.

    Returns:
        One entry per parameter: a bool array, or None.

    Raises:
        ValueError: the structure, a shape or a dtype does not match.
    """
    leaves, treedef = jax.tree.flatten(masks, is_leaf=is_none)
    if treedef != jax.tree.structure(params):
        raise ValueError(
            f"{caller}: the masks do not have the parameters' structure (a bool array or None "
            "per parameter, as prune returns them)"
        )
    for name, mask, leaf in zip(leaf_names(params), leaves, jax.tree.leaves(params)):
        if mask is None:
            continue
        if np.shape(mask) != np.shape(leaf) or getattr(mask, "dtype", None) != np.bool_:
            raise ValueError(
                f"{caller}: the mask of {name} must be a bool array of shape {np.shape(leaf)}, "
                f"got {getattr(mask, 'dtype', type(mask).__name__)} {np.shape(mask)}"
            )
    return leaves
