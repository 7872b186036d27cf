"""Adam's relatives: Adamax, NAdam, RAdam (PyTorch's rules), primitives and recipes.

Each primitive gives a direction to be multiplied by ``-lr`` (`scale_by_lr`), with the
bias corrections and other per-step factors computed once per step as scalars.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ._base import GradientTransformation, Params, Updates
from ._base import safe_increment as _inc
from ._hyperparams import with_hyperparams
from ._masking import Selector
from ._recipe import LR, decay, recipe, resolve_lr, steps
from ._transforms import ScaleByAdamState, _one_minus_pow, _zeros_like, scale_by_lr
from ._validate import check_args, check_pair


class ScaleByAdamaxState(NamedTuple):
    """State of `scale_by_adamax`, PyTorch's names.

    Attributes:
        count: int32 ``()``, updates so far (PyTorch's ``step``).
        exp_avg: first moment, like the parameters.
        exp_inf: exponentially weighted infinity norm, like the parameters.
    """

    count: jax.Array
    exp_avg: Updates
    exp_inf: Updates


def _moment(beta: ArrayLike, old: Updates, new: Updates) -> Updates:
    """``beta * old + (1 - beta) * new`` leaf by leaf, in ``old``'s dtype."""
    return jax.tree.map(lambda n, o: (beta * o + (1 - beta) * n).astype(o.dtype), new, old)


def _second_moment(beta: ArrayLike, old: Updates, grads: Updates) -> Updates:
    return jax.tree.map(lambda g, v: (beta * v + (1 - beta) * (g * g)).astype(v.dtype), grads, old)


def scale_by_adamax(
    betas: tuple[ArrayLike, ArrayLike] = (0.9, 0.999), eps: ArrayLike = 1e-8
) -> GradientTransformation:
    """Adamax's direction, PyTorch's rule (multiply by ``-lr`` afterwards).

    .. math::
        m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t, \\quad
        u_t = \\max(\\beta_2 u_{t-1}, |g_t| + \\epsilon), \\quad
        d_t = \\frac{m_t}{(1-\\beta_1^t)\\, u_t}

    Same rule as ``optax.scale_by_adamax``.

    Args:
        betas: :math:`(\\beta_1, \\beta_2)`.
        eps: :math:`\\epsilon`, added to :math:`|g_t|` inside the maximum.
    """
    b1, b2 = betas

    def init(params: Params) -> ScaleByAdamaxState:
        return ScaleByAdamaxState(
            jnp.zeros((), jnp.int32), _zeros_like(params), _zeros_like(params)
        )

    def update(
        updates: Updates, state: ScaleByAdamaxState, params: Params | None = None
    ) -> tuple[Updates, ScaleByAdamaxState]:
        del params
        count = _inc(state.count)
        mu = _moment(b1, state.exp_avg, updates)
        inf = jax.tree.map(
            lambda g, u: jnp.maximum(b2 * u, jnp.abs(g) + eps).astype(u.dtype),
            updates,
            state.exp_inf,
        )
        c1 = 1 / _one_minus_pow(b1, count)
        out = jax.tree.map(lambda g, m, u: (c1 * m / u).astype(g.dtype), updates, mu, inf)
        return out, ScaleByAdamaxState(count, mu, inf)

    return GradientTransformation(init, update)


class ScaleByNadamState(NamedTuple):
    """State of `scale_by_nadam`, PyTorch's names.

    Attributes:
        count: int32 ``()``, updates so far (PyTorch's ``step``).
        mu_product: float ``()`` (the default float dtype), the product of the momentum
            coefficients :math:`\\mu_1 \\cdots \\mu_t` so far.
        exp_avg: first moment, like the parameters.
        exp_avg_sq: second moment, like the parameters.
    """

    count: jax.Array
    mu_product: jax.Array
    exp_avg: Updates
    exp_avg_sq: Updates


def scale_by_nadam(
    betas: tuple[ArrayLike, ArrayLike] = (0.9, 0.999),
    eps: ArrayLike = 1e-8,
    momentum_decay: ArrayLike = 4e-3,
) -> GradientTransformation:
    """NAdam's direction, PyTorch's rule (Dozat's momentum schedule).

    .. math::
        \\mu_t = \\beta_1 (1 - \\tfrac12 \\cdot 0.96^{t \\psi}), \\quad
        m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t, \\quad
        v_t = \\beta_2 v_{t-1} + (1-\\beta_2) g_t^2,

    .. math::
        d_t = \\frac{1}{\\sqrt{v_t / (1-\\beta_2^t)} + \\epsilon} \\left(
        \\frac{1-\\mu_t}{1-\\prod_{i\\le t}\\mu_i} g_t
        + \\frac{\\mu_{t+1}}{1-\\prod_{i\\le t+1}\\mu_i} m_t \\right)

    with :math:`\\psi` = ``momentum_decay``.

    Args:
        betas: :math:`(\\beta_1, \\beta_2)`.
        eps: :math:`\\epsilon`.
        momentum_decay: :math:`\\psi`.
    """
    b1, b2 = betas

    def init(params: Params) -> ScaleByNadamState:
        one = jnp.ones((), jnp.result_type(float))
        return ScaleByNadamState(
            jnp.zeros((), jnp.int32), one, _zeros_like(params), _zeros_like(params)
        )

    def update(
        updates: Updates, state: ScaleByNadamState, params: Params | None = None
    ) -> tuple[Updates, ScaleByNadamState]:
        del params
        count = _inc(state.count)
        step = count.astype(state.mu_product.dtype)
        mu = b1 * (1.0 - 0.5 * 0.96 ** (step * momentum_decay))
        mu_next = b1 * (1.0 - 0.5 * 0.96 ** ((step + 1) * momentum_decay))
        mu_product = (state.mu_product * mu).astype(state.mu_product.dtype)
        c_grad = (1.0 - mu) / (1.0 - mu_product)
        c_avg = mu_next / (1.0 - mu_product * mu_next)
        c2 = _one_minus_pow(b2, count)
        m = _moment(b1, state.exp_avg, updates)
        v = _second_moment(b2, state.exp_avg_sq, updates)

        def direction(g: jax.Array, m: jax.Array, v: jax.Array) -> jax.Array:
            denom = jnp.sqrt(v / c2) + eps
            return (c_grad * g / denom + c_avg * m / denom).astype(g.dtype)

        out = jax.tree.map(direction, updates, m, v)
        return out, ScaleByNadamState(count, mu_product, m, v)

    return GradientTransformation(init, update)


def scale_by_radam(
    betas: tuple[ArrayLike, ArrayLike] = (0.9, 0.999), eps: ArrayLike = 1e-8
) -> GradientTransformation:
    """RAdam's direction, PyTorch's rule (rectified Adam).

    .. math::
        \\rho_\\infty = \\frac{2}{1-\\beta_2} - 1, \\quad
        \\rho_t = \\rho_\\infty - \\frac{2 t \\beta_2^t}{1-\\beta_2^t}, \\quad
        \\hat m_t = \\frac{m_t}{1-\\beta_1^t},

    .. math::
        d_t = \\begin{cases}
        \\hat m_t\\, r_t \\frac{\\sqrt{1-\\beta_2^t}}{\\sqrt{v_t} + \\epsilon} & \\rho_t > 5 \\\\
        \\hat m_t & \\text{else} \\end{cases}, \\quad
        r_t = \\sqrt{\\frac{(\\rho_t-4)(\\rho_t-2)\\rho_\\infty}
        {(\\rho_\\infty-4)(\\rho_\\infty-2)\\rho_t}}

    with the moments of `scale_by_adam`; the state is a `ScaleByAdamState` (no AMSGrad).

    Args:
        betas: :math:`(\\beta_1, \\beta_2)`.
        eps: :math:`\\epsilon`.
    """
    b1, b2 = betas

    def init(params: Params) -> ScaleByAdamState:
        return ScaleByAdamState(
            jnp.zeros((), jnp.int32), _zeros_like(params), _zeros_like(params), None
        )

    def update(
        updates: Updates, state: ScaleByAdamState, params: Params | None = None
    ) -> tuple[Updates, ScaleByAdamState]:
        del params
        count = _inc(state.count)
        step = count.astype(jnp.result_type(float))
        c1, c2 = _one_minus_pow(b1, count), _one_minus_pow(b2, count)
        rho_inf = 2 / (1 - b2) - 1
        rho_t = rho_inf - 2 * step * b2**step / c2
        rectify = rho_t > 5.0
        ratio = (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
        rect = jnp.sqrt(jnp.where(rectify, ratio, 1.0)) * jnp.sqrt(c2)
        m = _moment(b1, state.exp_avg, updates)
        v = _second_moment(b2, state.exp_avg_sq, updates)

        def direction(g: jax.Array, m: jax.Array, v: jax.Array) -> jax.Array:
            m_hat = m / c1
            return jnp.where(rectify, m_hat * rect / (jnp.sqrt(v) + eps), m_hat).astype(g.dtype)

        out = jax.tree.map(direction, updates, m, v)
        return out, ScaleByAdamState(count, m, v, None)

    return GradientTransformation(init, update)


def _adam_variant(
    direction: GradientTransformation,
    lr: LR,
    weight_decay: ArrayLike,
    decoupled: bool,
    maximize: bool,
    mask: Selector | None,
) -> GradientTransformation:
    """``direction`` with L2 (before it) or decoupled (after it) weight decay, then ``-lr``."""
    wd = decay(weight_decay, mask)
    if decoupled:
        return steps(maximize, direction, wd, scale_by_lr(lr))
    return steps(maximize, wd, direction, scale_by_lr(lr))


@recipe
def adamax(
    lr: LR | None = None,
    betas: tuple[ArrayLike, ArrayLike] = (0.9, 0.999),
    eps: ArrayLike = 1e-8,
    weight_decay: ArrayLike = 0.0,
    *,
    maximize: bool = False,
    learning_rate: LR | None = None,
    weight_decay_mask: Selector | None = None,
    in_state: Sequence[str] | None = None,
) -> GradientTransformation:
    """Adamax, PyTorch's ``torch.optim.Adamax`` (Adam with the infinity norm).

    .. math::
        g_t \\leftarrow g_t + \\lambda \\theta_{t-1}, \\quad
        \\theta_t = \\theta_{t-1} - \\frac{\\mathrm{lr}}{1-\\beta_1^t} \\frac{m_t}{u_t}

    with :math:`m_t, u_t` of `scale_by_adamax`. Same rule as ``optax.adamax`` (without
    weight decay).

    Args:
        lr: learning rate, a float or a schedule; ``None``: PyTorch's default, 2e-3.
        betas: :math:`(\\beta_1, \\beta_2)`.
        eps: :math:`\\epsilon`.
        weight_decay: :math:`\\lambda`, L2 penalty added to the gradient.
        maximize: maximise the objective instead (the gradients are negated first).
        learning_rate: optax's name for ``lr``; giving both is a ``TypeError``.
        weight_decay_mask: which leaves to decay (a selector).
        in_state: hyper-parameters kept in the optimizer state: any of ``"lr"``,
            ``"betas"``, ``"eps"``, ``"weight_decay"``; ``None``: the lr (see `sgd`).

    Returns:
        The optimizer: ``chain(add_weight_decay, scale_by_adamax, scale_by_lr)``.
    """
    lr, in_state = resolve_lr("adamax", lr, learning_rate, 2e-3, in_state)
    betas = check_pair("adamax", "betas", betas)
    check_args("adamax", in_state, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def build(lr, betas, eps, weight_decay, maximize, mask):
        direction = scale_by_adamax(betas, eps)
        return _adam_variant(direction, lr, weight_decay, False, maximize, mask)

    values = dict(
        lr=lr,
        betas=betas,
        eps=eps,
        weight_decay=weight_decay,
        maximize=maximize,
        mask=weight_decay_mask,
    )
    return with_hyperparams(build, values, in_state, "adamax")


@recipe
def nadam(
    lr: LR | None = None,
    betas: tuple[ArrayLike, ArrayLike] = (0.9, 0.999),
    eps: ArrayLike = 1e-8,
    weight_decay: ArrayLike = 0.0,
    momentum_decay: ArrayLike = 4e-3,
    decoupled_weight_decay: bool = False,
    *,
    maximize: bool = False,
    learning_rate: LR | None = None,
    weight_decay_mask: Selector | None = None,
    in_state: Sequence[str] | None = None,
) -> GradientTransformation:
    """NAdam, PyTorch's ``torch.optim.NAdam`` (Adam with Nesterov momentum).

    :math:`\\theta_t = \\theta_{t-1} - \\mathrm{lr}\\, d_t` with :math:`d_t` of
    `scale_by_nadam`, on the gradient plus :math:`\\lambda \\theta_{t-1}` (L2), or with
    :math:`\\mathrm{lr}\\, \\lambda \\theta_{t-1}` subtracted as well when
    ``decoupled_weight_decay`` (NAdamW). optax's ``nadam`` has no momentum schedule.

    Args:
        lr: learning rate, a float or a schedule; ``None``: PyTorch's default, 2e-3.
        betas: :math:`(\\beta_1, \\beta_2)`.
        eps: :math:`\\epsilon`.
        weight_decay: :math:`\\lambda`.
        momentum_decay: :math:`\\psi` of the momentum schedule.
        decoupled_weight_decay: decay the weights directly (AdamW's way) instead of L2.
        maximize: maximise the objective instead (the gradients are negated first).
        learning_rate: optax's name for ``lr``; giving both is a ``TypeError``.
        weight_decay_mask: which leaves to decay (a selector).
        in_state: hyper-parameters kept in the optimizer state: any of ``"lr"``,
            ``"betas"``, ``"eps"``, ``"weight_decay"``, ``"momentum_decay"``; ``None``:
            the lr (see `sgd`).

    Returns:
        The optimizer: ``chain(add_weight_decay, scale_by_nadam, scale_by_lr)`` (the decay
        after `scale_by_nadam` when decoupled).
    """
    lr, in_state = resolve_lr("nadam", lr, learning_rate, 2e-3, in_state)
    betas = check_pair("nadam", "betas", betas)
    check_args(
        "nadam",
        in_state,
        lr=lr,
        betas=betas,
        eps=eps,
        weight_decay=weight_decay,
        momentum_decay=momentum_decay,
    )

    def build(lr, betas, eps, weight_decay, momentum_decay, decoupled, maximize, mask):
        direction = scale_by_nadam(betas, eps, momentum_decay)
        return _adam_variant(direction, lr, weight_decay, decoupled, maximize, mask)

    values = dict(
        lr=lr,
        betas=betas,
        eps=eps,
        weight_decay=weight_decay,
        momentum_decay=momentum_decay,
        decoupled=decoupled_weight_decay,
        maximize=maximize,
        mask=weight_decay_mask,
    )
    return with_hyperparams(build, values, in_state, "nadam")


@recipe
def radam(
    lr: LR | None = None,
    betas: tuple[ArrayLike, ArrayLike] = (0.9, 0.999),
    eps: ArrayLike = 1e-8,
    weight_decay: ArrayLike = 0.0,
    decoupled_weight_decay: bool = False,
    *,
    maximize: bool = False,
    learning_rate: LR | None = None,
    weight_decay_mask: Selector | None = None,
    in_state: Sequence[str] | None = None,
) -> GradientTransformation:
    """RAdam, PyTorch's ``torch.optim.RAdam`` (variance-rectified Adam).

    :math:`\\theta_t = \\theta_{t-1} - \\mathrm{lr}\\, d_t` with :math:`d_t` of
    `scale_by_radam` (plain momentum SGD for the first steps, while :math:`\\rho_t \\le 5`),
    on the gradient plus :math:`\\lambda \\theta_{t-1}` (L2), or with
    :math:`\\mathrm{lr}\\, \\lambda \\theta_{t-1}` subtracted as well when
    ``decoupled_weight_decay``. ``optax.radam`` adds :math:`\\epsilon` to the
    bias-corrected :math:`\\sqrt{\\hat v_t}` (the same rule when :math:`\\epsilon = 0`).

    Args:
        lr: learning rate, a float or a schedule; ``None``: PyTorch's default, 1e-3.
        betas: :math:`(\\beta_1, \\beta_2)`.
        eps: :math:`\\epsilon`.
        weight_decay: :math:`\\lambda`.
        decoupled_weight_decay: decay the weights directly (AdamW's way) instead of L2.
        maximize: maximise the objective instead (the gradients are negated first).
        learning_rate: optax's name for ``lr``; giving both is a ``TypeError``.
        weight_decay_mask: which leaves to decay (a selector).
        in_state: hyper-parameters kept in the optimizer state: any of ``"lr"``,
            ``"betas"``, ``"eps"``, ``"weight_decay"``; ``None``: the lr (see `sgd`).

    Returns:
        The optimizer: ``chain(add_weight_decay, scale_by_radam, scale_by_lr)`` (the decay
        after `scale_by_radam` when decoupled).
    """
    lr, in_state = resolve_lr("radam", lr, learning_rate, 1e-3, in_state)
    betas = check_pair("radam", "betas", betas)
    check_args("radam", in_state, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def build(lr, betas, eps, weight_decay, decoupled, maximize, mask):
        direction = scale_by_radam(betas, eps)
        return _adam_variant(direction, lr, weight_decay, decoupled, maximize, mask)

    values = dict(
        lr=lr,
        betas=betas,
        eps=eps,
        weight_decay=weight_decay,
        decoupled=decoupled_weight_decay,
        maximize=maximize,
        mask=weight_decay_mask,
    )
    return with_hyperparams(build, values, in_state, "radam")
