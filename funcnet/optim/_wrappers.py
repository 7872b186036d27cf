"""Wrappers that decide *whether* an optimizer steps: `accumulate`, `skip_nonfinite`.

Both branch with ``jax.lax.cond`` on a traced predicate, so the decision costs no
recompilation and no host round trip, and the wrapped optimizer only runs when it steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._base import GradientTransformation, OptState, Params, Updates, safe_increment


def _zeros_like_updates(fn: Callable[[], tuple[Updates, OptState]]) -> Updates:
    """Zeros shaped like the updates ``fn`` would return (traced, never run)."""
    shapes = jax.eval_shape(fn)[0]
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


class AccumulateState(NamedTuple):
    """State of `accumulate`.

    Attributes:
        micro_step: int32 ``()``, micro-batches accumulated since the last step (0..k-1).
        grad_sum: sum of those gradients, like the gradients (float32 at least).
        inner_state: the wrapped optimizer's state.
    """

    micro_step: jax.Array
    grad_sum: Updates
    inner_state: OptState


def accumulate(k: int, opt: GradientTransformation) -> GradientTransformation:
    """Gradient accumulation: step ``opt`` once every ``k`` calls, on the mean gradient.

    PyTorch's ``loss / k; loss.backward()`` for ``k`` micro-batches, then
    ``optimizer.step(); optimizer.zero_grad()``. Calls 1..k-1 return zero updates and
    only add the gradient to a running sum; call ``k`` gives ``opt`` the mean of the ``k``
    gradients. ``opt``'s step count (and so its schedules) advances once per ``k`` calls.
    optax's ``MultiSteps`` does the same.

    Args:
        k: micro-batches per optimizer step (``k >= 1``).
        opt: the optimizer to step.

    Returns:
        A transform with state `AccumulateState`.

    Raises:
        ValueError: ``k < 1``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import optim
        >>> opt = optim.accumulate(2, optim.sgd(1.0))
        >>> params = {"w": jnp.zeros(1)}
        >>> state = opt.init(params)
        >>> u1, state = opt.update({"w": jnp.array([1.0])}, state, params)
        >>> u2, state = opt.update({"w": jnp.array([3.0])}, state, params)
        >>> u1["w"].tolist(), u2["w"].tolist()
        ([0.0], [-2.0])
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"accumulate: k must be an int >= 1, got {k!r}")

    def init(params: Params) -> AccumulateState:
        acc = jax.tree.map(
            lambda p: jnp.zeros(jnp.shape(p), jnp.promote_types(jnp.result_type(p), jnp.float32)),
            params,
        )
        return AccumulateState(jnp.zeros((), jnp.int32), acc, opt.init(params))

    def update(
        grads: Updates, state: AccumulateState, params: Params | None = None
    ) -> tuple[Updates, AccumulateState]:
        acc = jax.tree.map(lambda s, g: s + g.astype(s.dtype), state.grad_sum, grads)

        def step() -> tuple[Updates, OptState]:
            mean = jax.tree.map(lambda s, g: (s / k).astype(g.dtype), acc, grads)
            return opt.update(mean, state.inner_state, params)

        if k == 1:
            updates, inner_state = step()
            return updates, AccumulateState(state.micro_step, state.grad_sum, inner_state)

        zeros = _zeros_like_updates(step)
        last = state.micro_step == k - 1
        updates, inner_state, acc = jax.lax.cond(
            last,
            lambda: (*step(), jax.tree.map(jnp.zeros_like, acc)),
            lambda: (zeros, state.inner_state, acc),
        )
        micro_step = jnp.where(last, 0, state.micro_step + 1).astype(jnp.int32)
        return updates, AccumulateState(micro_step, acc, inner_state)

    return GradientTransformation(init, update)


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


def all_finite(tree: Updates) -> jax.Array:
    """bool ``()``: whether every element of every leaf is finite."""
    leaves = jax.tree.leaves(tree)
    return (
        jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))
        if leaves
        else jnp.array(True)
    )


def skip_nonfinite(opt: GradientTransformation) -> GradientTransformation:
    """Skip the step when a gradient holds ``inf`` or ``nan``.

    PyTorch's ``GradScaler.step`` skipping rule: with a non-finite gradient the updates
    are zero and ``opt``'s state (moments, step count, schedules) is left as it was; the
    skip is counted in the state. optax's ``apply_if_finite`` without its consecutive-error
    limit.

    Args:
        opt: the optimizer to protect.

    Returns:
        A transform with state `SkipNonfiniteState`.
    """

    def init(params: Params) -> SkipNonfiniteState:
        return SkipNonfiniteState(jnp.zeros((), jnp.int32), jnp.array(True), opt.init(params))

    def update(
        grads: Updates, state: SkipNonfiniteState, params: Params | None = None
    ) -> tuple[Updates, SkipNonfiniteState]:
        finite = all_finite(grads)

        def step() -> tuple[Updates, OptState]:
            return opt.update(grads, state.inner_state, params)

        zeros = _zeros_like_updates(step)
        updates, inner_state = jax.lax.cond(finite, step, lambda: (zeros, state.inner_state))
        skipped = jnp.where(finite, state.num_skipped, safe_increment(state.num_skipped))
        return updates, SkipNonfiniteState(skipped, finite, inner_state)

    return GradientTransformation(init, update)
