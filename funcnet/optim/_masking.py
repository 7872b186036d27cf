"""Choosing parameters: masks, `masked`, `param_groups`, `freeze`.

Parameters are plain nested dicts, and a leaf's name is PyTorch's dotted name
(``{"fc1": {"weight": ...}}`` -> ``"fc1.weight"``; list entries give ``"layers.0.weight"``).
Wherever a transform takes a selection of parameters (a *selector*), it accepts:

- a glob pattern on those names, or a list of them: ``"trunk"`` (the ``trunk`` sub-tree),
  ``"*.bias"``, ``"encoder.layers.0.*"``;
- a pytree of booleans with the structure of the parameters, or a prefix of it
  (``{"trunk": True, "head": False}``);
- a function ``params -> pytree of booleans``, optax's convention, so optax masks work
  unchanged (for example `exclude_bias_and_norm`).

A selection may look at names, structure and shapes, never at values: it is computed again,
at trace time, from the gradients in every update.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeAlias

import jax
import jax.numpy as jnp
import numpy as np

from ._base import GradientTransformation, OptState, Params, Updates
from ._checks import checked

Selector: TypeAlias = str | Sequence[str] | Callable[[Params], Any] | Any
"""A glob pattern (or several), a pytree of booleans, or ``params -> pytree of booleans``."""


class MaskedNode(NamedTuple):
    """Stands in for a parameter that an inner transform does not see (no leaves)."""


def _key_name(key: Any) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def leaf_names(tree: Params) -> list[str]:
    """PyTorch-style dotted names of the leaves, in ``jax.tree.leaves`` order.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import optim
        >>> optim.leaf_names({"fc1": {"weight": jnp.zeros((2, 3)), "bias": jnp.zeros(3)}})
        ['fc1.bias', 'fc1.weight']
    """
    paths = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [".".join(_key_name(k) for k in path) for path, _ in paths]


def name_matches(name: str, pattern: str) -> bool:
    """Whether the dotted parameter name ``name`` is selected by the glob ``pattern``.

    The rule every selector of dotted names follows (`param_groups`, `masked`, `freeze`,
    and ``funcnet.parallel``'s sharding rules): ``pattern`` matches the whole name with
    ``fnmatch`` (case-sensitive; ``*`` also crosses dots), or names a sub-tree
    (``"trunk"`` selects ``"trunk.0.weight"``).

    Examples:
        >>> from funcnet.optim._masking import name_matches
        >>> name_matches("trunk.0.weight", "trunk"), name_matches("fc.bias", "*.weight")
        (True, False)
    """
    return fnmatch.fnmatchcase(name, pattern) or name.startswith(pattern + ".")


def _is_patterns(selector: Any) -> bool:
    if isinstance(selector, str):
        return True
    return (
        isinstance(selector, list | tuple)
        and len(selector) > 0
        and all(isinstance(s, str) for s in selector)
    )


def resolve_mask(selector: Selector, tree: Params) -> list[bool]:
    """The selection as one Python bool per leaf of ``tree`` (``jax.tree.leaves`` order)."""
    if _is_patterns(selector):
        patterns = [selector] if isinstance(selector, str) else list(selector)
        return [any(name_matches(n, p) for p in patterns) for n in leaf_names(tree)]
    mask = selector(tree) if callable(selector) else selector
    try:
        full = jax.tree.map(lambda m, sub: jax.tree.map(lambda _: m, sub), mask, tree)
    except ValueError as err:
        raise ValueError(
            f"a parameter mask must have the parameters' structure or a prefix of it: {err}"
        ) from None
    try:
        return [bool(np.asarray(m)) for m in jax.tree.leaves(full)]
    except jax.errors.TracerArrayConversionError:
        raise ValueError(
            "a parameter mask must be made of Python booleans; it was computed from traced "
            "values (a mask may read names, structure and shapes, not values)"
        ) from None


def exclude_bias_and_norm(params: Params) -> Any:
    """Weight-decay mask: True for weight matrices and kernels, False for the rest.

    The usual "no decay on biases and norm weights" in one argument:
    ``adamw(1e-3, weight_decay_mask=exclude_bias_and_norm)``. A leaf is decayed when it has
    at least two dimensions and is not named ``bias``; biases, LayerNorm/BatchNorm weights
    (1-D) and scalars are not. Embedding tables (2-D) are decayed, as in nanoGPT and timm.
    Works with optax's masks too (``optax.adamw(..., mask=exclude_bias_and_norm)``).

    Args:
        params: the parameter tree (or gradients: only names and shapes are read).

    Returns:
        A pytree of Python booleans with the structure of ``params``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import optim
        >>> optim.exclude_bias_and_norm(
        ...     {"fc": {"weight": jnp.zeros((4, 3)), "bias": jnp.zeros(3)},
        ...      "norm": {"weight": jnp.ones(3)}})
        {'fc': {'bias': False, 'weight': True}, 'norm': {'weight': False}}
    """
    paths, treedef = jax.tree_util.tree_flatten_with_path(params)
    flags = [
        np.ndim(leaf) >= 2 and not (path and _key_name(path[-1]) == "bias") for path, leaf in paths
    ]
    return jax.tree.unflatten(treedef, flags)


def _split(tree: Any, labels: list[int], group: int) -> Any:
    """``tree`` with the leaves of other groups replaced by `MaskedNode`."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef.unflatten(
        [leaf if lab == group else MaskedNode() for leaf, lab in zip(leaves, labels)]
    )


def _leaves_with_masked(tree: Any) -> list[Any]:
    return jax.tree.leaves(tree, is_leaf=lambda x: isinstance(x, MaskedNode))


class ParamGroupsState(NamedTuple):
    """State of `param_groups`: one inner state per group, default group last."""

    inner_states: tuple[OptState, ...]


def param_groups(
    groups: Sequence[tuple[Selector, GradientTransformation]],
    default: GradientTransformation | None = None,
) -> GradientTransformation:
    """Different optimizers (or learning rates) for different parameters.

    PyTorch's ``param_groups``: ``Adam([{"params": trunk, "lr": 1e-4}, {"params": head}],
    lr=1e-3)`` is ``param_groups([("trunk", adam(1e-4))], default=adam(1e-3))``. Each leaf
    belongs to the first group whose selector picks it, else to ``default``; each optimizer
    only sees, and only keeps state for, its own leaves. The stored hyper-parameters of the
    groups come in this order in `get_hyperparams`, `current_lr` reads group 0's lr, and
    `ReduceLROnPlateau` lowers every group's lr, as in PyTorch.

    Args:
        groups: ``(selector, optimizer)`` pairs; a selector is a glob pattern on dotted names
            (or a list of them), a pytree of booleans, or ``params -> pytree of booleans``.
        default: the optimizer for leaves no group picks; ``None`` requires every leaf to be
            picked.

    Returns:
        A transform with state `ParamGroupsState`.

    Raises:
        ValueError: at ``init``, a group picks no leaf, or a leaf is in no group and there
            is no ``default``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import optim
        >>> params = {"trunk": {"weight": jnp.ones((2, 2))}, "head": {"weight": jnp.ones((2, 1))}}
        >>> opt = optim.param_groups([("trunk", optim.adam(1e-4))], default=optim.adam(1e-3))
        >>> state = opt.init(params)
        >>> [round(float(g["lr"]), 6) for g in optim.get_hyperparams(state)]
        [0.0001, 0.001]
    """
    groups = list(groups)
    transforms = [tx for _, tx in groups] + ([default] if default is not None else [])

    def labels_of(tree: Any, check: bool) -> list[int]:
        names = leaf_names(tree)
        labels = [len(groups)] * len(names)
        for i, (selector, _) in enumerate(reversed(groups)):
            index = len(groups) - 1 - i
            for j, picked in enumerate(resolve_mask(selector, tree)):
                if picked:
                    labels[j] = index
        if check:
            for i, (selector, _) in enumerate(groups):
                if i not in labels:
                    raise ValueError(
                        f"parameter group {i} ({selector!r}) picks no parameter; "
                        f"names look like {names[:3]}"
                    )
            if default is None and len(groups) in labels:
                lost = [n for n, lab in zip(names, labels) if lab == len(groups)]
                raise ValueError(f"parameters in no group and no default optimizer: {lost[:5]}")
        return labels

    def init(params: Params) -> ParamGroupsState:
        labels = labels_of(params, check=True)
        return ParamGroupsState(
            tuple(tx.init(_split(params, labels, i)) for i, tx in enumerate(transforms))
        )

    def update(
        updates: Updates, state: ParamGroupsState, params: Params | None = None
    ) -> tuple[Updates, ParamGroupsState]:
        if not isinstance(state, ParamGroupsState) or len(state.inner_states) != len(transforms):
            raise ValueError(
                f"param_groups of {len(transforms)} optimizers got a state that does not come "
                "from its init."
            )
        labels = labels_of(updates, check=False)
        leaves, treedef = jax.tree.flatten(updates)
        merged = list(leaves)
        new_states = []
        for i, (tx, s) in enumerate(zip(transforms, state.inner_states)):
            sub_params = None if params is None else _split(params, labels, i)
            out, s = tx.update(_split(updates, labels, i), s, sub_params)
            for j, u in enumerate(_leaves_with_masked(out)):
                if labels[j] == i:
                    merged[j] = u
            new_states.append(s)
        return treedef.unflatten(merged), ParamGroupsState(tuple(new_states))

    return checked("param_groups", GradientTransformation(init, update))


class MaskedState(NamedTuple):
    """State of `masked`: the inner transform's state over the selected leaves."""

    inner_state: OptState


def masked(inner: GradientTransformation, mask: Selector) -> GradientTransformation:
    """Apply ``inner`` to the selected leaves only; the others pass through unchanged.

    optax's ``masked``: ``inner`` sees, and keeps state for, the selected leaves only. The
    other leaves' gradients are returned as they came in, so a later transform in a chain
    handles them (use `freeze` to leave parameters untouched instead).

    Args:
        inner: the transform to apply.
        mask: a selector (see `param_groups`).

    Returns:
        A transform with state `MaskedState`.
    """

    def init(params: Params) -> MaskedState:
        labels = [0 if m else 1 for m in resolve_mask(mask, params)]
        return MaskedState(inner.init(_split(params, labels, 0)))

    def update(
        updates: Updates, state: MaskedState, params: Params | None = None
    ) -> tuple[Updates, MaskedState]:
        labels = [0 if m else 1 for m in resolve_mask(mask, updates)]
        sub_params = None if params is None else _split(params, labels, 0)
        out, inner_state = inner.update(_split(updates, labels, 0), state.inner_state, sub_params)
        leaves, treedef = jax.tree.flatten(updates)
        new = _leaves_with_masked(out)
        merged = [u if lab == 0 else g for u, g, lab in zip(new, leaves, labels)]
        return treedef.unflatten(merged), MaskedState(inner_state)

    return checked("masked", GradientTransformation(init, update))


class FrozenState(NamedTuple):
    """State of the frozen group that `freeze` makes: no leaves, only a marker.

    Frozen parameters are not one of PyTorch's parameter groups, so `current_lr` passes
    over this group to the first trainable one.
    """


def _frozen() -> GradientTransformation:
    """``set_to_zero()`` whose state says the group is frozen."""

    def init(params: Params) -> FrozenState:
        del params
        return FrozenState()

    def update(
        updates: Updates, state: FrozenState, params: Params | None = None
    ) -> tuple[Updates, FrozenState]:
        del params
        return jax.tree.map(jnp.zeros_like, updates), state

    return GradientTransformation(init, update)


def freeze(opt: GradientTransformation, frozen: Selector) -> GradientTransformation:
    """Fine-tuning: zero updates for the ``frozen`` parameters, ``opt`` for the others.

    PyTorch's ``requires_grad_(False)`` on the frozen part (or handing the optimizer only
    the trainable parameters): ``opt`` keeps no state for the frozen leaves, and neither
    its weight decay nor its momentum moves them.

    Args:
        opt: the optimizer of the trainable parameters.
        frozen: a selector (see `param_groups`), e.g. ``"backbone"``.

    Returns:
        ``param_groups([(frozen, set_to_zero())], default=opt)``, whose frozen group keeps
        a `FrozenState` (so `current_lr` reads ``opt``'s lr, as in PyTorch).

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import optim
        >>> params = {"backbone": {"weight": jnp.ones(2)}, "head": {"weight": jnp.ones(2)}}
        >>> opt = optim.freeze(optim.adamw(1e-2), "backbone")
        >>> updates, _ = opt.update(params, opt.init(params), params)
        >>> updates["backbone"]["weight"].tolist()
        [0.0, 0.0]
    """
    return param_groups([(frozen, _frozen())], default=opt)
