"""Regression losses: mse_loss, l1_loss, smooth_l1_loss, huber_loss, poisson_nll_loss,
gaussian_nll_loss."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from funcnet.errors import ShapeError
from funcnet.losses._reduction import (
    Reduction,
    _check_reduction,
    _check_shape,
    _elementwise_args,
    _float_input,
    _is_concrete_number,
    _real_target,
    _reduce,
)

__all__ = [
    "gaussian_nll_loss",
    "huber_loss",
    "l1_loss",
    "mse_loss",
    "poisson_nll_loss",
    "smooth_l1_loss",
]


def mse_loss(
    input: ArrayLike,
    target: ArrayLike,
    *,
    reduction: Reduction = "mean",
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Mean squared error, ``(input - target) ** 2``, as ``torch.nn.functional.mse_loss``.

    Args:
        input: predictions, any shape ``(*)``, floating dtype.
        target: ``(*)``, the input's shape exactly (PyTorch broadcasts with a warning);
            float, integer or bool, cast to the compute dtype.
        reduction: ``"mean"`` (over all elements), ``"sum"`` or ``"none"``.
        mask: optional bool ``(N,)`` (or any leading part of the loss's shape): elements
            of rows where it is False count in neither the sum nor the mean's
            denominator, as if absent (a padded last batch). Not in PyTorch.

    Returns:
        A scalar, or ``(*)`` for ``reduction="none"``; float32 for 16- and 32-bit float
        input (float64 for float64).

    Raises:
        ShapeError: ``input`` is not floating or ``target`` has another shape.
        ValueError: unknown ``reduction``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet.losses import mse_loss
        >>> float(mse_loss(jnp.array([1.0, 2.0]), jnp.array([1.0, 4.0])))
        2.0
    """
    x, t = _elementwise_args("mse_loss", input, target, reduction)
    return _reduce(jnp.square(x - t), reduction, mask)


def l1_loss(
    input: ArrayLike,
    target: ArrayLike,
    *,
    reduction: Reduction = "mean",
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Mean absolute error, ``|input - target|``, as ``torch.nn.functional.l1_loss``.

    The gradient at ``input == target`` is 0, as PyTorch's ``sign(0) = 0``.

    Args:
        input: predictions ``(*)``, floating dtype.
        target: ``(*)``, the input's shape; float, integer or bool.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        mask: optional bool ``(N,)`` (or any leading part of the loss's shape): elements
            of rows where it is False count in neither the sum nor the mean's
            denominator, as if absent (a padded last batch). Not in PyTorch.

    Returns:
        A scalar, or ``(*)`` for ``reduction="none"``; float32 (float64 for float64 input).

    Raises:
        ShapeError: ``input`` is not floating or ``target`` has another shape.
        ValueError: unknown ``reduction``.
    """
    x, t = _elementwise_args("l1_loss", input, target, reduction)
    return _reduce(jnp.abs(x - t), reduction, mask)


def smooth_l1_loss(
    input: ArrayLike,
    target: ArrayLike,
    *,
    reduction: Reduction = "mean",
    beta: float = 1.0,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Smooth L1 loss, as ``torch.nn.functional.smooth_l1_loss``.

    With ``d = |input - target|``::

        loss = 0.5 * d**2 / beta   if d < beta
               d - 0.5 * beta      otherwise

    ``beta = 0`` is exactly ``l1_loss``. ``smooth_l1_loss(beta=b)`` equals
    ``huber_loss(delta=b) / b``.

    Args:
        input: predictions ``(*)``, floating dtype.
        target: ``(*)``, the input's shape; float, integer or bool.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        beta: the threshold between the quadratic and linear parts, ``>= 0``. A traced
            value is accepted (it is then not validated).
        mask: optional bool ``(N,)`` (or any leading part of the loss's shape): elements
            of rows where it is False count in neither the sum nor the mean's
            denominator, as if absent (a padded last batch). Not in PyTorch.

    Returns:
        A scalar, or ``(*)`` for ``reduction="none"``; float32 (float64 for float64 input).

    Raises:
        ShapeError: ``input`` is not floating or ``target`` has another shape.
        ValueError: unknown ``reduction`` or negative ``beta``.
    """
    fn = "smooth_l1_loss"
    if _is_concrete_number(beta) and beta < 0:
        raise ValueError(f"{fn}: beta must be >= 0, got {beta}")
    x, t = _elementwise_args(fn, input, target, reduction)
    d = jnp.abs(x - t)
    quadratic = d < beta
    # A safe divisor keeps the unselected branch (and its gradient) finite when beta = 0.
    safe_beta = jnp.where(quadratic, beta, 1.0)
    loss = jnp.where(quadratic, 0.5 * jnp.square(d) / safe_beta, d - 0.5 * beta)
    return _reduce(loss, reduction, mask)


def huber_loss(
    input: ArrayLike,
    target: ArrayLike,
    *,
    reduction: Reduction = "mean",
    delta: float = 1.0,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Huber loss, as ``torch.nn.functional.huber_loss``.

    With ``d = |input - target|``::

        loss = 0.5 * d**2                 if d < delta
               delta * (d - 0.5 * delta)  otherwise

    Args:
        input: predictions ``(*)``, floating dtype.
        target: ``(*)``, the input's shape; float, integer or bool.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (keyword-only here; PyTorch also
            takes it positionally).
        delta: the threshold between the quadratic and linear parts, ``> 0``. A traced
            value is accepted (it is then not validated).
        mask: optional bool ``(N,)`` (or any leading part of the loss's shape): elements
            of rows where it is False count in neither the sum nor the mean's
            denominator, as if absent (a padded last batch). Not in PyTorch.

    Returns:
        A scalar, or ``(*)`` for ``reduction="none"``; float32 (float64 for float64 input).

    Raises:
        ShapeError: ``input`` is not floating or ``target`` has another shape.
        ValueError: unknown ``reduction`` or ``delta <= 0``.
    """
    fn = "huber_loss"
    if _is_concrete_number(delta) and delta <= 0:
        raise ValueError(f"{fn}: delta must be > 0, got {delta}")
    x, t = _elementwise_args(fn, input, target, reduction)
    d = jnp.abs(x - t)
    loss = jnp.where(d < delta, 0.5 * jnp.square(d), delta * (d - 0.5 * delta))
    return _reduce(loss, reduction, mask)


def poisson_nll_loss(
    input: ArrayLike,
    target: ArrayLike,
    *,
    log_input: bool = True,
    full: bool = False,
    eps: float = 1e-8,
    reduction: Reduction = "mean",
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Negative log-likelihood of a Poisson target, as ``torch.nn.functional.poisson_nll_loss``.

    Per element, with ``x = input`` and ``t = target``::

        loss = exp(x) - t * x              with log_input=True (x is the log-rate)
        loss = x - t * log(x + eps)        with log_input=False (x is the rate)

    and with ``full=True`` the Stirling approximation of ``log(t!)``,
    ``t * log(t) - t + 0.5 * log(2 * pi * t)``, is added where ``t > 1`` (0 elsewhere), as
    PyTorch does.

    Args:
        input: the log-rate (``log_input=True``) or the rate, any shape ``(*)``, floating.
        target: counts ``(*)``, the input's shape; float, integer or bool.
        log_input: whether ``input`` is the logarithm of the rate.
        full: whether to add the Stirling term.
        eps: keeps ``log`` finite at a zero rate when ``log_input=False``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        mask: optional bool ``(N,)`` (or any leading part of the loss's shape): elements
            of rows where it is False count in neither the sum nor the mean's
            denominator, as if absent (a padded last batch). Not in PyTorch.

    Returns:
        A scalar, or ``(*)`` for ``reduction="none"``; float32 (float64 for float64 input).

    Raises:
        ShapeError: ``input`` is not floating or ``target`` has another shape.
        ValueError: unknown ``reduction``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet.losses import poisson_nll_loss
        >>> round(float(poisson_nll_loss(jnp.array([0.0, 1.0]), jnp.array([1.0, 2.0]))), 4)
        0.8591
    """
    x, t = _elementwise_args("poisson_nll_loss", input, target, reduction)
    loss = jnp.exp(x) - t * x if log_input else x - t * jnp.log(x + eps)
    if full:
        big = t > 1
        safe = jnp.where(big, t, 2.0)  # the unselected branch stays finite (and its gradient)
        stirling = safe * jnp.log(safe) - safe + 0.5 * jnp.log(2 * math.pi * safe)
        loss = loss + jnp.where(big, stirling, jnp.zeros((), x.dtype))
    return _reduce(loss, reduction, mask)


def _variance(fn: str, var: ArrayLike | float, shape: tuple[int, ...], dtype) -> jax.Array:
    """``var`` broadcast to ``shape`` by PyTorch's rules; raises ShapeError (or ValueError
    for a negative Python number) otherwise."""
    if _is_concrete_number(var):
        if var < 0:
            raise ValueError(f"{fn}: var must be >= 0, got {var}")
        return jnp.full(shape, var, dtype)
    v = jnp.asarray(var).astype(dtype)
    if v.shape != shape:
        if v.shape == shape[:-1]:
            v = v[..., None]  # one variance per row of the last axis (homoscedastic)
        elif v.ndim != len(shape) or sum(b for a, b in zip(shape, v.shape) if a != b) != 1:
            raise ShapeError(
                f"{fn}: expected var of the input's shape {shape}, of {shape[:-1]}, or of "
                f"{shape} with one axis of size 1, got {v.shape}"
            )
    return jnp.broadcast_to(v, shape)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _clamp_min_straight_through(v: jax.Array, low: float) -> jax.Array:
    return jnp.maximum(v, low)


@_clamp_min_straight_through.defjvp
def _clamp_min_straight_through_jvp(low, primals, tangents):
    # PyTorch clamps var in place under no_grad: the gradient passes as through the identity.
    return _clamp_min_straight_through(primals[0], low), tangents[0]


def gaussian_nll_loss(
    input: ArrayLike,
    target: ArrayLike,
    var: ArrayLike | float,
    *,
    full: bool = False,
    eps: float = 1e-6,
    reduction: Reduction = "mean",
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Negative log-likelihood of a Gaussian target, as ``torch.nn.functional.gaussian_nll_loss``.

    Per element, with ``v = max(var, eps)``::

        loss = 0.5 * (log(v) + (input - target)**2 / v)   (+ 0.5 * log(2 * pi) if full)

    The clamp is PyTorch's: values are clamped but the gradient with respect to ``var``
    is taken as if they were not (PyTorch clamps in place under ``no_grad``).

    Args:
        input: the Gaussian's means ``(*)``, floating.
        target: samples ``(*)``, the input's shape; float, integer or bool.
        var: variances: a Python number for all elements, or an array of the input's
            shape, of ``input.shape[:-1]`` (one per row of the last axis), or of the
            input's shape with exactly one axis of size 1 (broadcast along it), as PyTorch.
        full: whether to add the constant ``0.5 * log(2 * pi)``.
        eps: the smallest variance used.
        reduction: ``"mean"`` (over all elements), ``"sum"`` or ``"none"``.
        mask: optional bool ``(N,)`` (or any leading part of the loss's shape): elements
            of rows where it is False count in neither the sum nor the mean's
            denominator, as if absent (a padded last batch). Not in PyTorch.

    Returns:
        A scalar, or ``(*)`` for ``reduction="none"``; float32 (float64 for float64 input).

    Raises:
        ShapeError: ``input`` is not floating, ``target`` has another shape, or ``var``
            has none of the shapes above.
        ValueError: unknown ``reduction``, or a negative ``var`` (a Python number, or an
            array whose values are known: outside ``jax.jit``).

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet.losses import gaussian_nll_loss
        >>> float(gaussian_nll_loss(jnp.array([0.0, 1.0]), jnp.array([1.0, 1.0]), 1.0))
        0.25
    """
    fn = "gaussian_nll_loss"
    _check_reduction(fn, reduction)
    x = _float_input(fn, input)
    t = _real_target(fn, target, x.dtype)
    _check_shape(fn, t, x.shape, "target", "the input's shape")
    _check_nonnegative(fn, var)
    v = _variance(fn, var, x.shape, x.dtype)
    v = _clamp_min_straight_through(v, eps)
    loss = 0.5 * (jnp.log(v) + jnp.square(x - t) / v)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, reduction, mask)


def _check_nonnegative(fn: str, var: ArrayLike | float) -> None:
    """PyTorch's check that no variance is negative, where the values are known."""
    if _is_concrete_number(var):
        return  # _variance names the number
    try:
        host = np.asarray(var)
    except jax.errors.TracerArrayConversionError:
        return
    if host.size and np.any(host < 0):
        raise ValueError(f"{fn}: var has negative entries (min {host.min()})")
