"""Magnitude pruning: ``torch.nn.utils.prune.l1_unstructured`` and ``global_unstructured``."""

from __future__ import annotations

import numbers
from typing import Any, TypeAlias

import jax
import jax.numpy as jnp
import numpy as np

from funcnet.compress._select import WEIGHTS, Patterns, mask_leaves, select

Params: TypeAlias = Any
"""A pytree of arrays, e.g. ``{"fc1": {"weight": (64, 128), "bias": (128,)}}``."""
Masks: TypeAlias = Any
"""A tree like the parameters: a bool array (True: kept) per pruned parameter, else None."""

_SCOPES = ("layer", "global")


def _check_sparsity(sparsity: Any) -> float:
    if isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real):
        raise TypeError(f"prune: sparsity must be a float in [0, 1], got {sparsity!r}")
    if not 0.0 <= float(sparsity) <= 1.0:
        raise ValueError(f"prune: sparsity must be in [0, 1], got {sparsity!r}")
    return float(sparsity)


@jax.jit
def _prune_scope(arrays: list, previous: list, k: jax.Array) -> tuple[list, list, jax.Array]:
    """Prunes the ``k`` smallest magnitudes of one scope; one program per set of shapes.

    Entries already pruned by ``previous`` go first; ties go in order (array by array,
    row-major within each). Returns the pruned arrays, their masks (True: kept) and how
    many entries ``previous`` had pruned.
    """
    scores = jnp.concatenate(
        [
            jnp.abs(a).ravel() if m is None else jnp.where(m, jnp.abs(a), -jnp.inf).ravel()
            for a, m in zip(arrays, previous)
        ]
    )
    order = jnp.argsort(scores, stable=True)
    rank = jnp.zeros(scores.size, jnp.int32).at[order].set(jnp.arange(scores.size))
    offsets = np.cumsum([np.size(a) for a in arrays])[:-1]
    masks = [r.reshape(np.shape(a)) >= k for r, a in zip(jnp.split(rank, offsets), arrays)]
    already = sum((jnp.sum(~m) for m in previous if m is not None), jnp.zeros((), jnp.int32))
    return [jnp.where(m, a, 0) for a, m in zip(arrays, masks)], masks, already


def _prune_exactly(arrays: list, previous: list, sparsity: float) -> tuple[list, list]:
    """``_prune_scope`` with ``k = round(sparsity * n)`` (Python's round, half to even)."""
    n = sum(int(np.size(a)) for a in arrays)
    k = round(sparsity * n)  # as PyTorch's prune
    pruned, masks, already = _prune_scope(arrays, previous, jnp.asarray(k, jnp.int32))
    if int(already) > k:
        raise ValueError(
            f"prune: {int(already)} of these {n} entries are already pruned, more than "
            f"sparsity={sparsity} prunes ({k}); sparsity is the total, not an increment"
        )
    return pruned, masks


def prune(
    params: Params,
    sparsity: float,
    *,
    scope: str = "layer",
    include: Patterns = WEIGHTS,
    exclude: Patterns = (),
    masks: Masks | None = None,
) -> tuple[Params, Masks]:
    """Magnitude (L1) pruning to an exact sparsity, per parameter or over all of them.

    ``scope="layer"`` is ``torch.nn.utils.prune.l1_unstructured`` on each selected
    parameter; ``scope="global"`` is ``prune.global_unstructured(...,
    pruning_method=prune.L1Unstructured)`` over all of them at once. In each scope of ``n``
    entries exactly ``k = round(sparsity * n)`` are pruned (Python's ``round``, half to
    even, as PyTorch): the ``k`` smallest magnitudes, ties at the threshold broken by
    position (parameters in ``optim.leaf_names`` order, entries in row-major order, lower
    first), so the result is deterministic. Pruned entries become exactly ``+0.0``.

    Pruning is cumulative as PyTorch's: pass the previous ``masks`` and their pruned
    entries stay pruned and count toward ``sparsity`` (the total, e.g. 0.3 then 0.6).

    Args:
        params: the parameter tree (nested dicts of arrays).
        sparsity: the fraction of each scope's entries to prune, in [0, 1].
        scope: ``"layer"`` (each parameter to ``sparsity``) or ``"global"`` (one threshold
            for all selected parameters; some end sparser than others).
        include: glob pattern(s) on dotted names, as in ``optim.param_groups``. Only
            floating arrays with two or more dimensions are selected: by default the
            weights of Linear, Conv (and Embedding) layers, never biases or norm weights.
        exclude: glob pattern(s) to leave out, e.g. ``"fc2.*"`` or ``"*embed*"``.
        masks: masks from an earlier ``prune`` of these parameters, or None.

    Returns:
        ``(pruned_params, masks)``: the parameters with pruned entries set to 0 (same
        structure, shapes and dtypes), and a tree like ``params`` holding a bool mask of the
        parameter's shape (True: kept, PyTorch's ``weight_mask``) for each selected
        parameter and ``None`` for the others (for `keep_pruned`).

    Raises:
        TypeError: ``sparsity`` is not a real number, or a pattern is not a str.
        ValueError: ``sparsity`` is outside [0, 1], ``scope`` is unknown, the selection is
            empty, ``masks`` does not fit ``params``, or ``masks`` already prune more.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import compress
        >>> params = {"fc": {"weight": jnp.array([[0.1, -2.0], [0.5, -0.1]]), "bias": jnp.ones(2)}}
        >>> pruned, masks = compress.prune(params, 0.5)
        >>> pruned["fc"]["weight"].tolist(), masks["fc"]["bias"] is None
        ([[0.0, -2.0], [0.5, 0.0]], True)
    """
    sparsity = _check_sparsity(sparsity)
    if scope not in _SCOPES:
        raise ValueError(f"prune: scope must be one of {_SCOPES}, got {scope!r}")
    leaves, treedef = jax.tree.flatten(params)
    picked = select(params, include, exclude, "prune")
    previous = [None] * len(leaves) if masks is None else mask_leaves(masks, params, "prune")
    chosen = [i for i, p in enumerate(picked) if p]
    groups = [chosen] if scope == "global" else [[i] for i in chosen]
    new_leaves, new_masks = list(leaves), list(previous)
    for group in groups:
        pruned, kept = _prune_exactly(
            [leaves[i] for i in group], [previous[i] for i in group], sparsity
        )
        for i, leaf, mask in zip(group, pruned, kept):
            new_leaves[i], new_masks[i] = leaf, mask
    for i, mask in enumerate(previous):  # earlier masks on parameters no longer selected
        if mask is not None and not picked[i]:
            new_leaves[i] = jnp.where(mask, leaves[i], 0)
    return treedef.unflatten(new_leaves), treedef.unflatten(new_masks)
