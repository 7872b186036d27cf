"""Non-finite guards: what an update does when a loss or a gradient holds ``inf`` or ``nan``.

Two policies, each written once, for optimizers and train steps alike:

- zero the elements that are not finite (`zero_nonfinite`): one
  elementwise select that XLA fuses into the optimizer's update;
- skip the whole update (`update_if_finite`, `skip_nonfinite`): one ``jax.lax.cond``, so
  the optimizer only runs, and its state only changes, on a finite step.

Both decide on traced values: no recompilation, no host round trip.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ._base import (
    GradientTransformation,
    OptState,
    Params,
    Updates,
    safe_increment,
    stateless,
    zeros_like_updates,
)
from ._checks import checked


def all_finite(tree: Updates) -> jax.Array:
    """Whether every element of every leaf is finite.

    Args:
        tree: a pytree of arrays (gradients, a loss), any shapes and dtypes.

    Returns:
        bool ``()``; True for a tree with no leaves.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import optim
        >>> bool(optim.all_finite({"w": jnp.ones(3), "b": jnp.array([0.0, jnp.inf])}))
        False
    """
    leaves = jax.tree.leaves(tree)
    return (
        jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))
        if leaves
        else jnp.array(True)
    )


def _finite_or_zero(g: jax.Array, finite: ArrayLike) -> jax.Array:
    """``g`` with its non-finite elements zeroed, and all of it when ``finite`` is False.

    An elementwise select with no reduction over ``g``, which XLA fuses into the update
    that reads ``g``: the guard of a train step that zeroes a step whose loss is not finite
    and keeps parameters and optimizer state finite (``make_train_step``'s default).

    Args:
        g: an array of any shape and dtype (a gradient leaf).
        finite: bool ``()``, e.g. ``jnp.isfinite(loss)``; False zeroes all of ``g``.

    Returns:
        An array with ``g``'s shape and dtype.
    """
    return jnp.where(finite & jnp.isfinite(g), g, jnp.zeros((), g.dtype))


def zero_nonfinite() -> GradientTransformation:
    """Zero the gradient elements that are ``inf`` or ``nan`` (no state).

    The finite elements pass through unchanged, and the optimizer after it steps on the
    rest. ``optax.zero_nans`` zeroes ``nan`` only and
    keeps a flag in its state.

    Returns:
        A transform with state `EmptyState`; updates have the gradients' shapes and dtypes.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import optim
        >>> tx = optim.zero_nonfinite()  # e.g. optim.chain(optim.zero_nonfinite(), optim.adam())
        >>> grads = {"w": jnp.array([1.0, jnp.nan, jnp.inf])}
        >>> updates, _ = tx.update(grads, tx.init(grads))
        >>> updates["w"].tolist()
        [1.0, 0.0, 0.0]
    """
    return stateless(
        "zero_nonfinite", lambda grads, _: jax.tree.map(lambda g: _finite_or_zero(g, True), grads)
    )


def update_if_finite(
    finite: ArrayLike,
    tx: GradientTransformation,
    grads: Updates,
    opt_state: OptState,
    params: Params | None = None,
) -> tuple[Updates, OptState]:
    """``tx.update(grads, opt_state, params)`` if ``finite``, else zero updates and the same state.

    PyTorch's ``GradScaler.step`` skipping ``optimizer.step()``: on a skipped step ``tx``
    does not run, so its whole state (moments, step count, schedules, stored
    hyper-parameters) is returned unchanged. One ``jax.lax.cond`` (under ``jax.vmap`` with
    a batched ``finite`` it becomes a select and both branches run).

    Args:
        finite: bool ``()``, traced or not: whether to step; e.g. ``all_finite(grads)``, or
            ``jnp.isfinite(loss) & all_finite(grads)`` in a train step.
        tx: the optimizer (funcnet's or optax's).
        grads: the gradients, a tree like the parameters.
        opt_state: ``tx``'s state.
        params: the parameters, for transforms that read them (weight decay).

    Returns:
        ``(updates, opt_state)``: ``tx``'s when ``finite``; otherwise zeros with the shapes
        and dtypes of ``tx``'s updates, and ``opt_state`` itself.

    Raises:
        TypeError: ``finite`` is not a bool scalar.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import optim
        >>> opt = optim.adam(0.1)
        >>> params = {"w": jnp.zeros(2)}
        >>> grads = {"w": jnp.array([1.0, jnp.inf])}
        >>> state = opt.init(params)
        >>> updates, state = optim.update_if_finite(
        ...     optim.all_finite(grads), opt, grads, state, params
        ... )
        >>> updates["w"].tolist()  # and Adam's state as it was: its step count is still 0
        [0.0, 0.0]
    """
    finite = jnp.asarray(finite)
    if finite.shape != () or finite.dtype != jnp.bool_:
        raise TypeError(
            f"update_if_finite: finite must be a bool scalar of shape (), got "
            f"{finite.dtype} of shape {finite.shape}"
        )

    def step() -> tuple[Updates, OptState]:
        return tx.update(grads, opt_state, params)

    zeros = zeros_like_updates(step)
    return jax.lax.cond(finite, step, lambda: (zeros, opt_state))


class SkipNonfiniteState(NamedTuple):
    """State of `skip_nonfinite`.

    Attributes:
        num_skipped: int32 ``()``, steps skipped so far.
        last_finite: bool ``()``, whether the last gradient was finite (it was applied).
        inner_state: the wrapped optimizer's state.
    """

    num_skipped: jax.Array
    last_finite: jax.Array
    inner_state: OptState


def skip_nonfinite(opt: GradientTransformation) -> GradientTransformation:
    """Skip the step when a gradient holds ``inf`` or ``nan``.

    `update_if_finite` with ``finite = all_finite(grads)``: PyTorch's ``GradScaler.step``
    skipping rule; with a non-finite gradient the updates are zero and ``opt``'s state
    (moments, step count, schedules) is left as it was; the skip is counted in the state.
    optax's ``apply_if_finite`` without its consecutive-error limit.

    Args:
        opt: the optimizer to protect.

    Returns:
        A transform with state `SkipNonfiniteState`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import optim
        >>> opt = optim.skip_nonfinite(optim.sgd(0.1))
        >>> params = {"w": jnp.zeros(2)}
        >>> updates, state = opt.update({"w": jnp.array([jnp.nan, 1.0])}, opt.init(params))
        >>> updates["w"].tolist(), int(state.num_skipped)
        ([0.0, 0.0], 1)
    """

    def init(params: Params) -> SkipNonfiniteState:
        return SkipNonfiniteState(jnp.zeros((), jnp.int32), jnp.array(True), opt.init(params))

    def update(
        updates: Updates, state: SkipNonfiniteState, params: Params | None = None
    ) -> tuple[Updates, SkipNonfiniteState]:
        finite = all_finite(updates)
        out, inner_state = update_if_finite(finite, opt, updates, state.inner_state, params)
        skipped = jnp.where(finite, state.num_skipped, safe_increment(state.num_skipped))
        return out, SkipNonfiniteState(skipped, finite, inner_state)

    return checked("skip_nonfinite", GradientTransformation(init, update))
