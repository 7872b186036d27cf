"""Primitive transforms: each does one thing; the optimizers are chains of them.

Every primitive is one pass over the tree (one ``jax.tree.map`` per quantity, scalars such
as bias corrections computed once), so that XLA fuses a whole optimizer into a few
elementwise loops. Updates keep the gradients' dtype and states keep the parameters'
dtype, so a donated, jitted train step never changes its signature.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ._base import GradientTransformation, Params, Schedule, Updates, stateless
from ._base import safe_increment as _inc
from ._hyperparams import _is_number, hyperparameters_only
from ._masking import Selector, resolve_mask


def is_static_zero(value: Any) -> bool:
    """True for a Python number equal to 0: the only value a recipe may drop a term for."""
    return _is_number(value) and value == 0


def _zeros_like(params: Params, fill: ArrayLike = 0.0) -> Updates:
    """Fresh strongly-typed buffers like ``params``: the state's avals never change."""
    return jax.tree.map(lambda p: jnp.full(jnp.shape(p), fill, jnp.result_type(p)), params)


def _one_minus_pow(beta: ArrayLike, count: jax.Array) -> jax.Array:
    """``1 - beta**count``, accurate for beta near 1 (Adam's bias correction, a scalar)."""
    if _is_number(beta):
        if beta == 0:
            return jnp.ones((), jnp.result_type(float))
        return -jnp.expm1(count * math.log(beta))
    return -jnp.expm1(count * jnp.log(beta))


def _scaled(grads: Updates, factor: ArrayLike) -> Updates:
    return jax.tree.map(lambda g: (factor * g).astype(g.dtype), grads)


def scale(factor: ArrayLike) -> GradientTransformation:
    """``updates = factor * grads`` (no state)."""
    return stateless("scale", lambda g, _: _scaled(g, factor))


class ScaleByScheduleState(NamedTuple):
    """State of `scale_by_lr` with a schedule: ``count`` int32 ``()``, updates so far."""

    count: jax.Array


@hyperparameters_only
def scale_by_lr(lr: float | ArrayLike | Schedule) -> GradientTransformation:
    """``updates = -lr * grads``: the last step of every optimizer.

    The lr is applied last, to the preconditioned direction, as in PyTorch: changing it
    between steps (`set_hyperparams`) rescales the step without touching the moments.

    Args:
        lr: a float, a JAX scalar, or a schedule ``count -> lr`` (then the state is
            `ScaleByScheduleState` with its own step count).
    """
    if not callable(lr):
        return stateless("scale_by_lr", lambda g, _: _scaled(g, -lr))

    def init(params: Params) -> ScaleByScheduleState:
        del params
        return ScaleByScheduleState(jnp.zeros((), jnp.int32))

    def update(
        updates: Updates, state: ScaleByScheduleState, params: Params | None = None
    ) -> tuple[Updates, ScaleByScheduleState]:
        del params
        return _scaled(updates, -lr(state.count)), ScaleByScheduleState(_inc(state.count))

    return GradientTransformation(init, update)


def add_weight_decay(
    weight_decay: ArrayLike, mask: Selector | None = None
) -> GradientTransformation:
    """``updates = grads + weight_decay * params`` on the selected leaves (no state).

    Before the preconditioner (``scale_by_adam``) it is L2 regularisation, PyTorch's
    ``weight_decay`` of SGD/Adam/RMSprop/Adagrad; after it, decoupled decay (AdamW).

    Args:
        weight_decay: the coefficient, a float or a JAX scalar.
        mask: which leaves to decay (a selector, see `param_groups`), e.g.
            `exclude_bias_and_norm`; ``None`` decays every leaf.

    Raises:
        ValueError: ``update`` was called without ``params``.
    """

    def fn(grads: Updates, params: Params) -> Updates:
        flags = [True] * len(jax.tree.leaves(grads)) if mask is None else resolve_mask(mask, params)
        g_leaves, treedef = jax.tree.flatten(grads)
        p_leaves = treedef.flatten_up_to(params)
        return treedef.unflatten(
            [
                (g + weight_decay * p).astype(g.dtype) if decay else g
                for g, p, decay in zip(g_leaves, p_leaves, flags)
            ]
        )

    return stateless("add_weight_decay", fn, needs_params=True)


add_decayed_weights = add_weight_decay
"""optax's name for `add_weight_decay`."""


class TraceState(NamedTuple):
    """State of `trace`.

    Attributes:
        momentum_buffer: like the parameters, PyTorch's ``momentum_buffer``.
        count: int32 ``()``, updates so far; only kept with dampening (else ``None``).
    """

    momentum_buffer: Updates
    count: jax.Array | None


def trace(
    momentum: ArrayLike, dampening: ArrayLike = 0.0, nesterov: bool = False
) -> GradientTransformation:
    """Heavy-ball momentum, PyTorch's SGD buffer.

    .. math::
        b_t = \\mu b_{t-1} + (1 - \\tau) g_t \\ (b_1 = g_1), \\quad
        u_t = g_t + \\mu b_t \\text{ (nesterov) or } b_t

    optax's ``trace`` is the same rule without dampening.

    Args:
        momentum: the momentum factor :math:`\\mu`.
        dampening: :math:`\\tau`; as in PyTorch it does not apply to the first step.
        nesterov: Nesterov momentum.
    """
    with_count = not is_static_zero(dampening)

    def init(params: Params) -> TraceState:
        count = jnp.zeros((), jnp.int32) if with_count else None
        return TraceState(_zeros_like(params), count)

    def update(
        updates: Updates, state: TraceState, params: Params | None = None
    ) -> tuple[Updates, TraceState]:
        del params
        if with_count:
            # The buffer is zero before the first step, so a scalar coefficient of 1 there
            # gives PyTorch's b_1 = g_1 without a per-element select.
            coef = jnp.where(state.count == 0, 1.0, 1.0 - dampening)
            count = _inc(state.count)
        else:
            coef, count = 1.0, None
        buf = jax.tree.map(
            lambda g, b: (momentum * b + coef * g).astype(b.dtype), updates, state.momentum_buffer
        )
        if nesterov:
            out = jax.tree.map(lambda g, b: (g + momentum * b).astype(g.dtype), updates, buf)
        else:
            out = jax.tree.map(lambda g, b: b.astype(g.dtype), updates, buf)
        return out, TraceState(buf, count)

    return GradientTransformation(init, update)


class ScaleByAdamState(NamedTuple):
    """State of `scale_by_adam`, PyTorch's names.

    Attributes:
        count: int32 ``()``, updates so far (PyTorch's ``step``).
        exp_avg: first moment, like the parameters.
        exp_avg_sq: second moment, like the parameters.
        max_exp_avg_sq: running maximum of ``exp_avg_sq`` (AMSGrad), else ``None``.
    """

    count: jax.Array
    exp_avg: Updates
    exp_avg_sq: Updates
    max_exp_avg_sq: Updates | None


def scale_by_adam(
    betas: tuple[ArrayLike, ArrayLike] = (0.9, 0.999), eps: ArrayLike = 1e-8, amsgrad: bool = False
) -> GradientTransformation:
    """Adam's direction, PyTorch's rule (multiply by ``-lr`` afterwards).

    .. math::
        m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t, \\quad
        v_t = \\beta_2 v_{t-1} + (1-\\beta_2) g_t^2, \\quad
        u_t = \\frac{m_t / (1-\\beta_1^t)}{\\sqrt{\\hat v_t / (1-\\beta_2^t)} + \\epsilon}

    with :math:`\\hat v_t = v_t`, or :math:`\\max(\\hat v_{t-1}, v_t)` with AMSGrad. The
    bias corrections are scalars computed once per step. Same as ``optax.scale_by_adam``
    except AMSGrad: optax takes the maximum of the bias-corrected :math:`v_t`, PyTorch (and
    funcnet) of the raw one.

    Args:
        betas: :math:`(\\beta_1, \\beta_2)`.
        eps: :math:`\\epsilon`, added outside the square root.
        amsgrad: keep the running maximum of :math:`v_t`.
    """
    b1, b2 = betas

    def init(params: Params) -> ScaleByAdamState:
        # Separate buffers per moment: aliased ones could not be donated to a jitted step.
        return ScaleByAdamState(
            jnp.zeros((), jnp.int32),
            _zeros_like(params),
            _zeros_like(params),
            _zeros_like(params) if amsgrad else None,
        )

    def update(
        updates: Updates, state: ScaleByAdamState, params: Params | None = None
    ) -> tuple[Updates, ScaleByAdamState]:
        del params
        count = _inc(state.count)
        mu = jax.tree.map(
            lambda g, m: (b1 * m + (1 - b1) * g).astype(m.dtype), updates, state.exp_avg
        )
        nu = jax.tree.map(
            lambda g, v: (b2 * v + (1 - b2) * (g * g)).astype(v.dtype), updates, state.exp_avg_sq
        )
        nu_max = jax.tree.map(jnp.maximum, state.max_exp_avg_sq, nu) if amsgrad else None
        c1 = 1 / _one_minus_pow(b1, count)
        c2 = jax.lax.rsqrt(_one_minus_pow(b2, count))
        out = jax.tree.map(
            lambda g, m, v: (m * c1 / (jnp.sqrt(v) * c2 + eps)).astype(g.dtype),
            updates,
            mu,
            nu_max if amsgrad else nu,
        )
        return out, ScaleByAdamState(count, mu, nu, nu_max)

    return GradientTransformation(init, update)


class ScaleByRmsState(NamedTuple):
    """State of `scale_by_rms`, PyTorch's names.

    Attributes:
        square_avg: running mean of squared gradients, like the parameters.
        grad_avg: running mean of gradients (``centered``), else ``None``.
    """

    square_avg: Updates
    grad_avg: Updates | None


def scale_by_rms(
    alpha: ArrayLike = 0.99,
    eps: ArrayLike = 1e-8,
    centered: bool = False,
    eps_in_sqrt: bool = False,
) -> GradientTransformation:
    """RMSprop's direction, PyTorch's rule.

    .. math::
        v_t = \\alpha v_{t-1} + (1-\\alpha) g_t^2, \\quad
        \\bar g_t = \\alpha \\bar g_{t-1} + (1-\\alpha) g_t \\text{ (centered)}, \\quad
        u_t = \\frac{g_t}{\\sqrt{v_t - \\bar g_t^2} + \\epsilon}

    (:math:`\\bar g_t = 0` when not centered). ``eps_in_sqrt=True`` gives optax's default
    :math:`g_t / \\sqrt{v_t - \\bar g_t^2 + \\epsilon}`.

    Args:
        alpha: smoothing constant.
        eps: :math:`\\epsilon`.
        centered: divide by the estimated standard deviation instead of the RMS.
        eps_in_sqrt: put :math:`\\epsilon` inside the square root (optax) instead of
            outside (PyTorch).
    """

    def init(params: Params) -> ScaleByRmsState:
        return ScaleByRmsState(_zeros_like(params), _zeros_like(params) if centered else None)

    def update(
        updates: Updates, state: ScaleByRmsState, params: Params | None = None
    ) -> tuple[Updates, ScaleByRmsState]:
        del params
        sq = jax.tree.map(
            lambda g, v: (alpha * v + (1 - alpha) * (g * g)).astype(v.dtype),
            updates,
            state.square_avg,
        )
        if centered:
            avg = jax.tree.map(
                lambda g, m: (alpha * m + (1 - alpha) * g).astype(m.dtype), updates, state.grad_avg
            )
            var = jax.tree.map(lambda v, m: v - m * m, sq, avg)
        else:
            avg, var = None, sq
        if eps_in_sqrt:
            out = jax.tree.map(lambda g, v: (g / jnp.sqrt(v + eps)).astype(g.dtype), updates, var)
        else:
            out = jax.tree.map(lambda g, v: (g / (jnp.sqrt(v) + eps)).astype(g.dtype), updates, var)
        return out, ScaleByRmsState(sq, avg)

    return GradientTransformation(init, update)


class ScaleByAdagradState(NamedTuple):
    """State of `scale_by_adagrad`, PyTorch's names.

    Attributes:
        count: int32 ``()``, updates so far (PyTorch's ``step``).
        sum: running sum of squared gradients, like the parameters.
    """

    count: jax.Array
    sum: Updates


def scale_by_adagrad(
    lr_decay: ArrayLike = 0.0,
    initial_accumulator_value: ArrayLike = 0.0,
    eps: ArrayLike = 1e-10,
    eps_in_sqrt: bool = False,
) -> GradientTransformation:
    """Adagrad's direction, PyTorch's rule.

    .. math::
        s_t = s_{t-1} + g_t^2, \\quad
        u_t = \\frac{1}{1 + (t-1)\\,\\mathrm{lr\\_decay}} \\cdot \\frac{g_t}{\\sqrt{s_t} + \\epsilon}

    with :math:`s_0` = ``initial_accumulator_value``. ``eps_in_sqrt=True`` gives optax's
    :math:`g_t / \\sqrt{s_t + \\epsilon}` (0 where :math:`s_t = 0`).

    Args:
        lr_decay: decay of the step size with the step count (a scalar factor).
        initial_accumulator_value: :math:`s_0` (PyTorch 0, optax 0.1).
        eps: :math:`\\epsilon` (PyTorch 1e-10, optax 1e-7).
        eps_in_sqrt: put :math:`\\epsilon` inside the square root (optax).
    """

    def init(params: Params) -> ScaleByAdagradState:
        return ScaleByAdagradState(
            jnp.zeros((), jnp.int32), _zeros_like(params, initial_accumulator_value)
        )

    def update(
        updates: Updates, state: ScaleByAdagradState, params: Params | None = None
    ) -> tuple[Updates, ScaleByAdagradState]:
        del params
        count = _inc(state.count)
        acc = jax.tree.map(lambda g, s: (s + g * g).astype(s.dtype), updates, state.sum)
        decay = 1.0 if is_static_zero(lr_decay) else 1 / (1 + (count - 1) * lr_decay)
        if eps_in_sqrt:
            out = jax.tree.map(
                lambda g, s: (jnp.where(s > 0, decay * g / jnp.sqrt(s + eps), 0)).astype(g.dtype),
                updates,
                acc,
            )
        else:
            out = jax.tree.map(
                lambda g, s: (decay * g / (jnp.sqrt(s) + eps)).astype(g.dtype), updates, acc
            )
        return out, ScaleByAdagradState(count, acc)

    return GradientTransformation(init, update)


def global_norm(tree: Updates, norm_type: float = 2.0) -> jax.Array:
    """The norm of all leaves taken as one vector (float32 at least).

    Args:
        tree: a pytree of arrays (gradients).
        norm_type: ``p`` of the p-norm; ``float("inf")`` for the largest absolute value.

    Returns:
        A scalar ``()``.
    """
    leaves = jax.tree.leaves(tree)
    dtype = jnp.promote_types(jnp.result_type(*leaves) if leaves else jnp.float32, jnp.float32)
    if not leaves:
        return jnp.zeros((), dtype)
    xs = [jnp.abs(x.astype(dtype)) for x in leaves]
    if norm_type == math.inf:
        return jnp.max(jnp.stack([jnp.max(x, initial=0.0) for x in xs]))
    if norm_type == 2:
        return jnp.sqrt(sum(jnp.sum(x * x) for x in xs))
    return sum(jnp.sum(x**norm_type) for x in xs) ** (1.0 / norm_type)


def clip_grad_norm(max_norm: ArrayLike, norm_type: float = 2.0) -> GradientTransformation:
    """Rescale the gradients when their global norm exceeds ``max_norm`` (no state).

    PyTorch's ``torch.nn.utils.clip_grad_norm_``:

    .. math::
        g \\leftarrow g \\cdot \\min\\left(1, \\frac{\\mathrm{max\\_norm}}{\\|g\\|_p + 10^{-6}}\\right)

    ``optax.clip_by_global_norm`` has no :math:`10^{-6}` (the clipped norm is exactly
    ``max_norm`` there, ``max_norm`` minus a hair here).

    Args:
        max_norm: the largest norm let through.
        norm_type: ``p`` of the norm over all leaves as one vector; ``float("inf")`` allowed.
    """

    def fn(grads: Updates, _: Any) -> Updates:
        norm = global_norm(grads, norm_type)
        coef = jnp.minimum(max_norm / (norm + 1e-6), 1.0)
        return jax.tree.map(lambda g: (g * coef).astype(g.dtype), grads)

    return stateless("clip_grad_norm", fn)


def clip_grad_value(clip_value: ArrayLike) -> GradientTransformation:
    """Clamp every gradient element to ``[-clip_value, clip_value]`` (no state).

    PyTorch's ``torch.nn.utils.clip_grad_value_``; optax's ``clip``.
    """

    def fn(grads: Updates, _: Any) -> Updates:
        return jax.tree.map(lambda g: jnp.clip(g, -clip_value, clip_value).astype(g.dtype), grads)

    return stateless("clip_grad_value", fn)
