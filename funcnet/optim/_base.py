"""The optimizer protocol: `GradientTransformation`, `chain`, `apply_updates`.

A transform is a pair of pure functions, field for field optax's protocol, so funcnet and
optax transforms mix in either direction (`optax.chain` only reads `.init` and `.update`):

    opt_state = tx.init(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = apply_updates(params, updates)

`GradientTransformation` is optax's own class, re-exported: ``GradientTransformation(init,
update)`` holds ``init(params) -> opt_state`` and ``update(updates, opt_state, params=None)
-> (updates, opt_state)``. The first argument of ``update`` is the gradient tree (named
``updates`` as in optax's `TransformUpdateFn`, so type checkers accept funcnet transforms
in ``optax.chain`` and optax transforms in `chain`); what comes out are parameter deltas,
already multiplied by ``-lr``, to be added with `apply_updates`. ``params`` is needed by
transforms that read the parameters (weight decay); those raise ``ValueError`` when it is
missing.

States are NamedTuples and tuples of arrays: pytrees that `jax.jit`, donation, checkpoints
and `jax.tree.map` handle with no help.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, TypeAlias

import jax
import jax.numpy as jnp
from optax import GradientTransformation, TransformInitFn, TransformUpdateFn

from ._checks import checked

__all__ = [
    "EmptyState",
    "GradientTransformation",
    "OptState",
    "Params",
    "Schedule",
    "TransformInitFn",
    "TransformUpdateFn",
    "Updates",
    "apply_updates",
    "chain",
    "identity",
    "require_params",
    "safe_increment",
    "set_to_zero",
    "stateless",
    "zeros_like_updates",
]

Params: TypeAlias = Any
"""A pytree of arrays, e.g. ``{"fc1": {"weight": (784, 128), "bias": (128,)}}``."""
Updates: TypeAlias = Any
"""A pytree with the structure of the parameters: gradients in, parameter deltas out."""
OptState: TypeAlias = Any
"""An optimizer state: a pytree of arrays (NamedTuples, tuples, dicts)."""
Schedule: TypeAlias = Callable[[Any], jax.Array]
"""A function of the step count (an int32 scalar, traced or not) returning a float scalar."""


class EmptyState(NamedTuple):
    """The state of a stateless transform: a pytree with no leaves."""


def require_params(params: Params | None, name: str) -> Params:
    """Return ``params``, or raise the error every params-reading transform shares."""
    if params is None:
        raise ValueError(
            f"{name} reads the parameters: call update(grads, opt_state, params), "
            "not update(grads, opt_state)."
        )
    return params


def stateless(
    name: str, fn: Callable[[Updates, Params | None], Updates], needs_params: bool = False
) -> GradientTransformation:
    """A transform with no state: ``updates = fn(grads, params)``."""

    def init(params: Params) -> EmptyState:
        del params
        return EmptyState()

    def update(
        updates: Updates, state: EmptyState, params: Params | None = None
    ) -> tuple[Updates, EmptyState]:
        if needs_params:
            require_params(params, name)
        return fn(updates, params), state

    return GradientTransformation(init, update)


def identity() -> GradientTransformation:
    """The transform that returns the gradients unchanged (no state)."""
    return stateless("identity", lambda grads, _: grads)


def set_to_zero() -> GradientTransformation:
    """The transform whose updates are all zero (no state): parameters stay where they are."""
    return stateless("set_to_zero", lambda grads, _: jax.tree.map(jnp.zeros_like, grads))


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Compose transforms: each one's updates are the next one's gradients.

    The order is the semantics: ``chain(add_weight_decay(wd), scale_by_adam(), scale_by_lr(lr))``
    is Adam with L2 regularisation (PyTorch's ``Adam(weight_decay=wd)``), while putting the
    decay after ``scale_by_adam`` is AdamW's decoupled decay.

    Args:
        *transforms: funcnet or optax transforms (anything with ``init`` and ``update``).

    Returns:
        A transform whose state is a tuple with one entry per transform.

    Raises:
        TypeError: an argument has no ``init``/``update``.
        ValueError: at update time, the state does not come from this chain's ``init``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import optim
        >>> tx = optim.chain(optim.clip_grad_norm(1.0), optim.sgd(0.1))
        >>> params = {"w": jnp.array([3.0, 4.0])}
        >>> state = tx.init(params)
        >>> updates, state = tx.update({"w": jnp.array([3.0, 4.0])}, state, params)
        >>> [round(float(u), 3) for u in updates["w"]]
        [-0.06, -0.08]
    """
    for i, tx in enumerate(transforms):
        if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))):
            raise TypeError(
                f"chain argument {i} is {type(tx).__name__}, not a transform with init and update"
            )
    inits = tuple(tx.init for tx in transforms)
    updates_fns = tuple(tx.update for tx in transforms)

    def check_state(state: Any) -> None:
        if not isinstance(state, tuple) or len(state) != len(updates_fns):
            got = f"a {len(state)}-tuple" if isinstance(state, tuple) else type(state).__name__
            raise ValueError(
                f"chain of {len(updates_fns)} transforms got a state that is {got}: "
                "pass the state made by this optimizer's init."
            )

    def init(params: Params) -> tuple[OptState, ...]:
        return tuple(fn(params) for fn in inits)

    def update(
        updates: Updates, state: tuple[OptState, ...], params: Params | None = None
    ) -> tuple[Updates, tuple[OptState, ...]]:
        check_state(state)
        new_state = []
        for fn, s in zip(updates_fns, state):
            updates, s = fn(updates, s, params)
            new_state.append(s)
        return updates, tuple(new_state)

    return checked("chain", GradientTransformation(init, update), check_state=check_state)


def apply_updates(params: Params, updates: Updates) -> Params:
    """Add updates to parameters, keeping each parameter's dtype.

    Args:
        params: the parameter tree.
        updates: a tree with the same structure (``None`` leaves leave a parameter as is).

    Returns:
        ``params + updates``, leaf by leaf, each cast back to its parameter's dtype (bf16
        parameters stay bf16 even when the updates were computed in float32).
    """
    return jax.tree.map(
        lambda p, u: p if u is None else jnp.asarray(p + u).astype(jnp.result_type(p)),
        params,
        updates,
        is_leaf=lambda x: x is None,
    )


def safe_increment(count: jax.Array) -> jax.Array:
    """``count + 1`` for an int32 step counter, saturating instead of wrapping around."""
    return jnp.where(count < jnp.iinfo(jnp.int32).max, count + 1, count)


def zeros_like_updates(fn: Callable[[], tuple[Updates, OptState]]) -> Updates:
    """Zeros shaped like the updates ``fn`` would return (traced, never run)."""
    shapes = jax.eval_shape(fn)[0]
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
