"""`accumulate`: step an optimizer once every ``k`` calls, on the mean gradient.

It branches with ``jax.lax.cond`` on a traced predicate, so the decision costs no
recompilation and no host round trip, and the wrapped optimizer only runs when it steps.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._base import GradientTransformation, OptState, Params, Updates, zeros_like_updates
from ._checks import checked


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
        updates: Updates, state: AccumulateState, params: Params | None = None
    ) -> tuple[Updates, AccumulateState]:
        acc = jax.tree.map(lambda s, g: s + g.astype(s.dtype), state.grad_sum, updates)

        def step() -> tuple[Updates, OptState]:
            mean = jax.tree.map(lambda s, g: (s / k).astype(g.dtype), acc, updates)
            return opt.update(mean, state.inner_state, params)

        if k == 1:
            out, inner_state = step()
            return out, AccumulateState(state.micro_step, state.grad_sum, inner_state)

        zeros = zeros_like_updates(step)
        last = state.micro_step == k - 1
        out, inner_state, acc = jax.lax.cond(
            last,
            lambda: (*step(), jax.tree.map(jnp.zeros_like, acc)),
            lambda: (zeros, state.inner_state, acc),
        )
        micro_step = jnp.where(last, 0, state.micro_step + 1).astype(jnp.int32)
        return out, AccumulateState(micro_step, acc, inner_state)

    return checked("accumulate", GradientTransformation(init, update))
