"""Rprop, PyTorch's rule: the primitive `scale_by_rprop` and the recipe `rprop`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ._base import GradientTransformation, Params, Updates
from ._hyperparams import hyperparameters_only, with_hyperparams
from ._recipe import LR, recipe, resolve_lr, steps
from ._transforms import _zeros_like, scale
from ._validate import check_args, check_pair


class ScaleByRpropState(NamedTuple):
    """State of `scale_by_rprop`, PyTorch's names.

    Attributes:
        prev: the previous step's gradient (zeroed where its sign flipped), like the
            parameters.
        step_size: the per-element step sizes, like the parameters.
    """

    prev: Updates
    step_size: Updates


@hyperparameters_only
def scale_by_rprop(
    lr: ArrayLike = 1e-2,
    etas: tuple[ArrayLike, ArrayLike] = (0.5, 1.2),
    step_sizes: tuple[ArrayLike, ArrayLike] = (1e-6, 50.0),
) -> GradientTransformation:
    """Rprop's step, PyTorch's rule: ``sign(g) * step_size`` (negate it afterwards).

    Each element's step size starts at ``lr``; it is multiplied by :math:`\\eta_+` when the
    gradient keeps its sign, by :math:`\\eta_-` when it flips (and that element does not
    move this step, its gradient counting as 0 for the next), and clipped to
    ``step_sizes``.

    Args:
        lr: the initial step size (only read at ``init``, as in PyTorch).
        etas: :math:`(\\eta_-, \\eta_+)`, with :math:`0 < \\eta_- < 1 < \\eta_+`.
        step_sizes: (smallest, largest) step size.
    """
    eta_minus, eta_plus = etas
    smallest, largest = step_sizes

    def init(params: Params) -> ScaleByRpropState:
        return ScaleByRpropState(_zeros_like(params), _zeros_like(params, lr))

    def update(
        updates: Updates, state: ScaleByRpropState, params: Params | None = None
    ) -> tuple[Updates, ScaleByRpropState]:
        del params

        product = jax.tree.map(lambda g, p: g * p, updates, state.prev)

        def new_size(product: jax.Array, size: jax.Array) -> jax.Array:
            factor = jnp.where(product > 0, eta_plus, jnp.where(product < 0, eta_minus, 1.0))
            return jnp.clip(size * factor, smallest, largest).astype(size.dtype)

        size = jax.tree.map(new_size, product, state.step_size)
        prev = jax.tree.map(
            lambda g, pr, p: jnp.where(pr < 0, 0, g).astype(p.dtype), updates, product, state.prev
        )
        out = jax.tree.map(lambda g, p, s: (jnp.sign(p) * s).astype(g.dtype), updates, prev, size)
        return out, ScaleByRpropState(prev, size)

    return GradientTransformation(init, update)


@recipe
def rprop(
    lr: LR | None = None,
    etas: tuple[ArrayLike, ArrayLike] = (0.5, 1.2),
    step_sizes: tuple[ArrayLike, ArrayLike] = (1e-6, 50.0),
    *,
    maximize: bool = False,
    learning_rate: LR | None = None,
    in_state: Sequence[str] | None = None,
) -> GradientTransformation:
    """Rprop, PyTorch's ``torch.optim.Rprop`` (resilient backpropagation).

    Moves each element by its own step size against the sign of its gradient (see
    `scale_by_rprop`); meant for full-batch training. As in PyTorch, the lr only sets the
    initial step sizes: it is stored in the state (so `current_lr` reads it), but changing
    it afterwards (`set_hyperparams`) does not change the steps, and a schedule is refused.

    Args:
        lr: initial step size, a number (not a schedule); ``None``: PyTorch's default, 1e-2.
        etas: :math:`(\\eta_-, \\eta_+)`, the factors of a step size when the gradient's
            sign flips or stays; :math:`0 < \\eta_- < 1 < \\eta_+`.
        step_sizes: (smallest, largest) step size.
        maximize: maximise the objective instead (the gradients are negated first).
        learning_rate: optax's name for ``lr``; giving both is a ``TypeError``.
        in_state: hyper-parameters kept in the optimizer state: any of ``"lr"``,
            ``"etas"``, ``"step_sizes"``; ``None``: the lr (see `sgd`).

    Returns:
        The optimizer: ``chain(scale_by_rprop, scale(-1))``.

    Raises:
        ValueError: ``etas`` are not :math:`0 < \\eta_- < 1 < \\eta_+`, or ``lr`` is a
            schedule.
    """
    lr, in_state = resolve_lr("rprop", lr, learning_rate, 1e-2, in_state)
    etas, step_sizes = (
        check_pair("rprop", "etas", etas),
        check_pair("rprop", "step_sizes", step_sizes),
    )
    check_args("rprop", in_state, lr=lr, etas=etas, step_sizes=step_sizes)
    if callable(lr):
        raise ValueError(
            "rprop: the lr only sets the initial step sizes (as in PyTorch), so a schedule "
            "would have no effect; give a number"
        )

    def build(lr, etas, step_sizes, maximize):
        return steps(maximize, scale_by_rprop(lr, etas, step_sizes), scale(-1.0))

    values = dict(lr=lr, etas=etas, step_sizes=step_sizes, maximize=maximize)
    return with_hyperparams(build, values, in_state, "rprop")
