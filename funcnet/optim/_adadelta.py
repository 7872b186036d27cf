"""Adadelta, PyTorch's rule: the primitive `scale_by_adadelta` and the recipe `adadelta`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ._base import GradientTransformation, Params, Updates
from ._hyperparams import with_hyperparams
from ._masking import Selector
from ._recipe import LR, decay, recipe, resolve_lr, steps
from ._transforms import _zeros_like, scale_by_lr
from ._validate import check_args


class ScaleByAdadeltaState(NamedTuple):
    """State of `scale_by_adadelta`, PyTorch's names.

    Attributes:
        square_avg: running mean of squared gradients, like the parameters.
        acc_delta: running mean of squared steps, like the parameters.
    """

    square_avg: Updates
    acc_delta: Updates


def scale_by_adadelta(rho: ArrayLike = 0.9, eps: ArrayLike = 1e-6) -> GradientTransformation:
    """Adadelta's direction, PyTorch's rule (multiply by ``-lr`` afterwards).

    .. math::
        v_t = \\rho v_{t-1} + (1-\\rho) g_t^2, \\quad
        d_t = \\frac{\\sqrt{u_{t-1} + \\epsilon}}{\\sqrt{v_t + \\epsilon}} g_t, \\quad
        u_t = \\rho u_{t-1} + (1-\\rho) d_t^2

    Same rule as ``optax.scale_by_adadelta``.

    Args:
        rho: coefficient of the running averages.
        eps: :math:`\\epsilon`, inside both square roots.
    """

    def init(params: Params) -> ScaleByAdadeltaState:
        return ScaleByAdadeltaState(_zeros_like(params), _zeros_like(params))

    def update(
        updates: Updates, state: ScaleByAdadeltaState, params: Params | None = None
    ) -> tuple[Updates, ScaleByAdadeltaState]:
        del params
        sq = jax.tree.map(
            lambda g, v: (rho * v + (1 - rho) * (g * g)).astype(v.dtype), updates, state.square_avg
        )
        delta = jax.tree.map(
            lambda g, v, u: (jnp.sqrt(u + eps) / jnp.sqrt(v + eps) * g).astype(g.dtype),
            updates,
            sq,
            state.acc_delta,
        )
        acc = jax.tree.map(
            lambda d, u: (rho * u + (1 - rho) * (d * d)).astype(u.dtype), delta, state.acc_delta
        )
        return delta, ScaleByAdadeltaState(sq, acc)

    return GradientTransformation(init, update)


@recipe
def adadelta(
    lr: LR | None = None,
    rho: ArrayLike = 0.9,
    eps: ArrayLike = 1e-6,
    weight_decay: ArrayLike = 0.0,
    *,
    maximize: bool = False,
    learning_rate: LR | None = None,
    weight_decay_mask: Selector | None = None,
    in_state: Sequence[str] | None = None,
) -> GradientTransformation:
    """Adadelta, PyTorch's ``torch.optim.Adadelta``.

    .. math::
        g_t \\leftarrow g_t + \\lambda \\theta_{t-1}, \\quad
        \\theta_t = \\theta_{t-1} - \\mathrm{lr}\\, d_t

    with :math:`d_t` of `scale_by_adadelta`. PyTorch's default ``lr=1.0`` is Zeiler's
    original rule; optax's ``adadelta`` takes the lr as a required argument.

    Args:
        lr: learning rate, a float or a schedule; ``None``: PyTorch's default, 1.0.
        rho: coefficient of the running averages, in [0, 1].
        eps: :math:`\\epsilon`.
        weight_decay: :math:`\\lambda`, L2 penalty added to the gradient.
        maximize: maximise the objective instead (the gradients are negated first).
        learning_rate: optax's name for ``lr``; giving both is a ``TypeError``.
        weight_decay_mask: which leaves to decay (a selector).
        in_state: hyper-parameters kept in the optimizer state: any of ``"lr"``, ``"rho"``,
            ``"eps"``, ``"weight_decay"``; ``None``: the lr (see `sgd`).

    Returns:
        The optimizer: ``chain(add_weight_decay, scale_by_adadelta, scale_by_lr)``.
    """
    lr, in_state = resolve_lr("adadelta", lr, learning_rate, 1.0, in_state)
    check_args("adadelta", in_state, lr=lr, rho=rho, eps=eps, weight_decay=weight_decay)

    def build(lr, rho, eps, weight_decay, maximize, mask):
        wd = decay(weight_decay, mask)
        return steps(maximize, wd, scale_by_adadelta(rho, eps), scale_by_lr(lr))

    values = dict(
        lr=lr,
        rho=rho,
        eps=eps,
        weight_decay=weight_decay,
        maximize=maximize,
        mask=weight_decay_mask,
    )
    return with_hyperparams(build, values, in_state, "adadelta")
