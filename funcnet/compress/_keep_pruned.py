"""`keep_pruned`: the optimizer transform that keeps pruned weights at exactly zero."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from funcnet.compress._prune import Masks, Params
from funcnet.compress._select import is_none, mask_leaves
from funcnet.optim import GradientTransformation


class KeepPrunedState(NamedTuple):
    """State of `keep_pruned`: the masks (bool arrays, True: kept; None where not pruned)."""

    masks: Masks


def _masked_update(mask: jax.Array | None, update: Any, param: Any) -> Any:
    if mask is None or update is None:
        return update
    u, p = jnp.asarray(update), jnp.asarray(param)
    # -param, not 0: the parameter ends exactly at 0 even if it was not zero before; in the
    # wider dtype of the two, where -param is exact (float32 params, bfloat16 updates).
    dtype = u.dtype if u.dtype.itemsize >= p.dtype.itemsize else p.dtype
    return jnp.where(mask, u.astype(dtype), -p.astype(dtype))


def keep_pruned(masks: Masks) -> GradientTransformation:
    """Keeps pruned entries at exactly zero through training; chain it last.

    The fine-tuning half of ``torch.nn.utils.prune``, whose forward pre-hook multiplies
    the weight by ``weight_mask``. Here the parameters stay plain arrays: for entries the
    mask prunes, the update becomes ``-param``, so ``apply_updates`` (``param + update``)
    gives exactly ``0`` whatever the gradient, momentum or weight decay would have done
    (``x + (-x)`` is exactly ``+0.0`` in floating point); other entries get the inner
    optimizer's update unchanged. Chain it after the optimizer, with funcnet's or optax's
    ``chain``: ``optim.chain(optim.sgd(0.1, momentum=0.9), compress.keep_pruned(masks))``.

    The masks live in the optimizer state (`KeepPrunedState`, copied at ``init``), so a
    checkpoint of the state holds them and a restored run keeps pruning exactly; the
    closure only builds the initial state. A jitted step takes them as arguments, not as
    constants compiled into the program.

    Args:
        masks: the masks ``prune`` returned: a tree like the parameters with a bool array
            (True: kept) per pruned parameter and None elsewhere.

    Returns:
        A transform with state `KeepPrunedState`; its ``update`` needs ``params``.

    Raises:
        ValueError: at ``init``, the masks do not fit the parameters; at ``update``,
            ``params`` is missing or the state is not a `KeepPrunedState`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import compress, optim
        >>> weight = jnp.array([[1.0, -0.1], [0.2, 3.0]])
        >>> params, masks = compress.prune({"weight": weight}, 0.5)
        >>> opt = optim.chain(optim.sgd(0.25, momentum=0.9, weight_decay=1.0),
        ...                   compress.keep_pruned(masks))
        >>> state = opt.init(params)
        >>> updates, state = opt.update({"weight": jnp.ones((2, 2))}, state, params)
        >>> optim.apply_updates(params, updates)["weight"].tolist()
        [[0.5, 0.0], [0.0, 2.0]]
    """

    def init(params: Params) -> KeepPrunedState:
        leaves = mask_leaves(masks, params, "keep_pruned")
        copies = [None if m is None else jnp.array(m, dtype=bool, copy=True) for m in leaves]
        return KeepPrunedState(jax.tree.structure(params).unflatten(copies))

    def update(
        updates: Any, state: KeepPrunedState, params: Params | None = None
    ) -> tuple[Any, KeepPrunedState]:
        if params is None:
            raise ValueError(
                "keep_pruned reads the parameters: call update(grads, opt_state, params), "
                "not update(grads, opt_state)."
            )
        if not isinstance(state, KeepPrunedState):
            raise ValueError(
                f"keep_pruned got a {type(state).__name__} state; pass the state its init made"
            )
        new = jax.tree.map(_masked_update, state.masks, updates, params, is_leaf=is_none)
        return new, state

    return GradientTransformation(init, update)
