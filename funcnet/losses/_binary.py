"""Binary and distribution losses: binary_cross_entropy, binary_cross_entropy_with_logits,
kl_div, soft_margin_loss, multilabel_soft_margin_loss."""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from jax.scipy.special import xlogy
from jax.typing import ArrayLike

from funcnet.errors import ShapeError
from funcnet.losses._reduction import (
    Reduction,
    _broadcastable,
    _check_reduction,
    _check_shape,
    _elementwise_args,
    _float_input,
    _real_target,
    _reduce,
)

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "kl_div",
    "multilabel_soft_margin_loss",
    "soft_margin_loss",
]


def _clamped_logs(p: jax.Array) -> tuple[jax.Array, jax.Array]:
    # PyTorch clamps both logs at -100 so that p = 0 or 1 gives a finite loss.
    return jnp.maximum(jnp.log(p), -100.0), jnp.maximum(jnp.log1p(-p), -100.0)


@jax.custom_jvp
def _bce(p: jax.Array, t: jax.Array) -> jax.Array:
    log_p, log_1mp = _clamped_logs(p)
    return -(t * log_p + (1.0 - t) * log_1mp)


@_bce.defjvp
def _bce_jvp(primals, tangents):
    # PyTorch's own derivative: d/dp = (p - t) / max(p (1 - p), 1e-12), finite at p = 0 and
    # 1 where differentiating the clamped logs would give 0 * inf = nan.
    p, t = primals
    dp, dt = tangents
    log_p, log_1mp = _clamped_logs(p)
    out = -(t * log_p + (1.0 - t) * log_1mp)
    grad_p = (p - t) / jnp.maximum(p * (1.0 - p), 1e-12)
    return out, grad_p * dp + (log_1mp - log_p) * dt


def binary_cross_entropy(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    *,
    reduction: Reduction = "mean",
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Binary cross-entropy of probabilities, as ``torch.nn.functional.binary_cross_entropy``.

    Per element ``loss = -w * (t * log(p) + (1 - t) * log(1 - p))`` with both logs clamped
    at ``-100`` (as PyTorch), so ``p = 0`` or ``1`` gives a finite loss; the gradient is
    PyTorch's ``w * (p - t) / max(p * (1 - p), 1e-12)``. ``"mean"`` is over all elements.
    Prefer :func:`binary_cross_entropy_with_logits`: it is stable where ``sigmoid``
    saturates.

    Args:
        input: probabilities ``p`` in ``[0, 1]``, shape ``(*)``, floating dtype. Values
            outside give ``nan`` (PyTorch raises; values are not checked under jit).
        target: ``(*)``, the input's shape; floats in ``[0, 1]``, integers or bools.
        weight: optional rescaling ``w`` broadcastable to ``(*)``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        mask: optional bool ``(N,)`` (or any leading part of the loss's shape): elements
            of rows where it is False count in neither the sum nor the mean's
            denominator, as if absent (a padded last batch). Not in PyTorch.

    Returns:
        A scalar, or ``(*)`` for ``reduction="none"``; float32 (float64 for float64 input).

    Raises:
        ShapeError: ``input`` is not floating, ``target`` has another shape, or ``weight``
            does not broadcast to it.
        ValueError: unknown ``reduction``.
    """
    fn = "binary_cross_entropy"
    x, t = _elementwise_args(fn, input, target, reduction)
    w = _broadcastable(fn, weight, x.shape, "weight", x.dtype)
    loss = _bce(x, t)
    if w is not None:
        loss = loss * w
    return _reduce(loss, reduction, mask)


def binary_cross_entropy_with_logits(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    *,
    reduction: Reduction = "mean",
    pos_weight: ArrayLike | None = None,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Sigmoid + binary cross-entropy in one stable step.

    As ``torch.nn.functional.binary_cross_entropy_with_logits``. Per element, with
    ``softplus(z) = log(1 + exp(z))`` computed stably::

        loss = w * ((1 - t) * softplus(x) + pos_weight * t * softplus(-x))

    which equals ``-w * (pos_weight * t * log(sigmoid(x)) + (1 - t) * log(1 - sigmoid(x)))``
    without overflow for large ``|x|``. ``"mean"`` is over all elements.

    Args:
        input: logits ``x``, shape ``(*)``, floating dtype.
        target: ``(*)``, the input's shape; floats in ``[0, 1]``, integers or bools.
        weight: optional rescaling ``w`` broadcastable to ``(*)``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        pos_weight: optional weight of positive examples, broadcastable to ``(*)``; for
            multi-label ``(..., C)`` input, a ``(C,)`` vector (channels last, so PyTorch's
            ``(C, 1, 1)`` for images becomes ``(C,)``).
        mask: optional bool ``(N,)`` (or any leading part of the loss's shape): elements
            of rows where it is False count in neither the sum nor the mean's
            denominator, as if absent (a padded last batch). Not in PyTorch.

    Returns:
        A scalar, or ``(*)`` for ``reduction="none"``; float32 (float64 for float64 input).

    Raises:
        ShapeError: ``input`` is not floating, ``target`` has another shape, or ``weight``
            or ``pos_weight`` does not broadcast to it.
        ValueError: unknown ``reduction``.
    """
    fn = "binary_cross_entropy_with_logits"
    x, t = _elementwise_args(fn, input, target, reduction)
    w = _broadcastable(fn, weight, x.shape, "weight", x.dtype)
    pw = _broadcastable(fn, pos_weight, x.shape, "pos_weight", x.dtype)
    positive = t * jax.nn.softplus(-x)
    if pw is not None:
        positive = positive * pw
    loss = (1.0 - t) * jax.nn.softplus(x) + positive
    if w is not None:
        loss = loss * w
    return _reduce(loss, reduction, mask)


def kl_div(
    input: ArrayLike,
    target: ArrayLike,
    *,
    reduction: Literal["mean", "batchmean", "sum", "none"] = "mean",
    log_target: bool = False,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Kullback-Leibler divergence ``KL(target || exp(input))``, as ``torch.nn.functional.kl_div``.

    ``input`` holds log-probabilities. Per element::

        loss = target * (log(target) - input)       (0 where target == 0)
        loss = exp(target) * (target - input)       with log_target=True

    ``"batchmean"`` is ``sum(loss) / input.shape[0]``, the mathematical KL divergence per
    sample when the distributions lie along the other axes; ``"mean"`` (the default, as in
    PyTorch) divides by the number of elements instead. PyTorch warns about ``"mean"``;
    funcnet does not.

    Args:
        input: log-probabilities ``(N, *)``, floating dtype.
        target: probabilities, or log-probabilities with ``log_target=True``; the input's
            shape (PyTorch broadcasts).
        reduction: ``"mean"``, ``"batchmean"``, ``"sum"`` or ``"none"``.
        log_target: whether ``target`` holds log-probabilities.
        mask: optional bool ``(N,)`` (or any leading part of the loss's shape): elements
            of rows where it is False count in neither the sum nor the mean's
            denominator, as if absent (a padded last batch). Not in PyTorch.

    Returns:
        A scalar, or ``(N, *)`` for ``reduction="none"``; float32 (float64 for float64
        input).

    Raises:
        ShapeError: ``input`` is not floating or ``target`` has another shape.
        ValueError: unknown ``reduction``.
    """
    fn = "kl_div"
    _check_reduction(fn, reduction, ("mean", "batchmean", "sum", "none"))
    x = _float_input(fn, input)
    t = _real_target(fn, target, x.dtype)
    _check_shape(fn, t, x.shape, "target", "the input's shape")
    loss = jnp.exp(t) * (t - x) if log_target else xlogy(t, t) - t * x
    if reduction == "batchmean":
        if mask is not None:
            return _reduce(loss, "sum", mask) / jnp.sum(jnp.asarray(mask), dtype=loss.dtype)
        return jnp.sum(loss) / x.shape[0] if x.ndim > 0 else jnp.sum(loss)
    return _reduce(loss, reduction, mask)


def soft_margin_loss(
    input: ArrayLike,
    target: ArrayLike,
    *,
    reduction: Reduction = "mean",
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Two-class logistic loss on targets of ±1, as ``torch.nn.functional.soft_margin_loss``.

    Per element ``loss = log(1 + exp(-target * input))``, computed as
    ``softplus(-target * input)``: finite where PyTorch's ``log1p(exp(.))`` overflows to
    ``inf`` (``target * input`` below about -88 in float32).

    Args:
        input: scores ``(*)``, floating.
        target: ``(*)`` of 1 and -1, the input's shape; float or integer.
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
    x, t = _elementwise_args("soft_margin_loss", input, target, reduction)
    return _reduce(jax.nn.softplus(-t * x), reduction, mask)


def multilabel_soft_margin_loss(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    *,
    reduction: Reduction = "mean",
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Multi-label one-versus-all logistic loss, as ``torch.nn.functional.multilabel_soft_margin_loss``.

    Per sample, the mean over the ``C`` classes of the last axis::

        loss = -1/C * sum_c w[c] * (t[c] * log(sigmoid(x[c])) + (1 - t[c]) * log(sigmoid(-x[c])))

    which is ``binary_cross_entropy_with_logits(x, t, w, reduction="none").mean(-1)``.

    Args:
        input: logits ``(..., C)``, usually ``(N, C)``, floating.
        target: ``(..., C)`` of 0 and 1, the input's shape; float, integer or bool.
        weight: optional rescaling ``w`` broadcastable to the input's shape, e.g. ``(C,)``.
        reduction: ``"mean"`` (over the samples), ``"sum"`` or ``"none"``.
        mask: optional bool ``(N,)``: samples where it is False count in neither the sum
            nor the mean's denominator (a padded last batch). Not in PyTorch.

    Returns:
        A scalar, or ``input.shape[:-1]`` for ``reduction="none"``; float32 (float64 for
        float64 input).

    Raises:
        ShapeError: ``input`` is not floating or has no class axis, ``target`` has another
            shape, or ``weight`` does not broadcast to it.
        ValueError: unknown ``reduction``.
    """
    fn = "multilabel_soft_margin_loss"
    x, t = _elementwise_args(fn, input, target, reduction)
    if x.ndim == 0:
        raise ShapeError(f"{fn}: expected input of shape (..., C) with a class axis, got ()")
    w = _broadcastable(fn, weight, x.shape, "weight", x.dtype)
    loss = -(t * jax.nn.log_sigmoid(x) + (1.0 - t) * jax.nn.log_sigmoid(-x))
    if w is not None:
        loss = loss * w
    return _reduce(jnp.mean(loss, axis=-1), reduction, mask)
