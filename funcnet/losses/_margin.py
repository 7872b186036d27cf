"""Multi-class margin losses on a class axis (the last axis): multi_margin_loss,
multilabel_margin_loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from funcnet.errors import ShapeError, check_dtype
from funcnet.losses._reduction import (
    Reduction,
    _check_reduction,
    _check_shape,
    _float_input,
    _reduce,
)

__all__ = ["multi_margin_loss", "multilabel_margin_loss"]


def _scores(fn: str, input: ArrayLike) -> jax.Array:
    """``input`` as floating ``(N, C)`` or ``(C,)`` scores."""
    x = _float_input(fn, input)
    if x.ndim not in (1, 2) or x.shape[-1] == 0:
        raise ShapeError(f"{fn}: expected input of shape (N, C) or (C,), got {x.shape}")
    return x


def _hinge(z: jax.Array) -> jax.Array:
    """``max(z, 0)`` with a zero gradient at ``z == 0``, as PyTorch's ``if (z > 0)``."""
    return jnp.where(z > 0, z, jnp.zeros((), z.dtype))


def multi_margin_loss(
    input: ArrayLike,
    target: ArrayLike,
    *,
    p: int = 1,
    margin: float = 1.0,
    weight: ArrayLike | None = None,
    reduction: Reduction = "mean",
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Multi-class hinge loss, as ``torch.nn.functional.multi_margin_loss``.

    Per sample with scores ``x`` ``(C,)`` and class ``y``::

        loss = sum_{j != y} w[y] * max(0, margin - x[y] + x[j])**p / C

    Args:
        input: scores ``(N, C)`` or ``(C,)``, floating.
        target: class indices ``(N,)`` (``()`` for unbatched input), integer, in ``[0, C)``.
        p: 1 or 2.
        margin: the gap asked for between the target's score and the others'.
        weight: optional class weights ``(C,)``; the target class's weight scales its
            sample's loss.
        reduction: ``"mean"`` (over the samples), ``"sum"`` or ``"none"``.
        mask: optional bool ``(N,)``: samples where it is False count in neither the sum
            nor the mean's denominator (a padded last batch). Not in PyTorch.

    Returns:
        A scalar, or ``(N,)`` for ``reduction="none"``; float32 (float64 for float64
        input). An index outside ``[0, C)`` gives ``nan`` (PyTorch raises).

    Raises:
        ShapeError: ``input`` not floating or not ``(N, C)`` or ``(C,)``, ``target`` not
            integer or not ``(N,)``, or ``weight`` not ``(C,)``.
        ValueError: unknown ``reduction``, or ``p`` other than 1 and 2.
    """
    fn = "multi_margin_loss"
    _check_reduction(fn, reduction)
    if p not in (1, 2) or isinstance(p, bool):
        raise ValueError(f"{fn}: p must be 1 or 2, got {p!r}")
    x = _scores(fn, input)
    num_classes = x.shape[-1]
    t = jnp.asarray(target)
    check_dtype(fn, t, "integer", "target")
    _check_shape(fn, t, x.shape[:-1], "target", "the input's shape without its last, class axis")
    valid = (t >= 0) & (t < num_classes)
    index = jnp.where(valid, t, 0)
    own = jnp.take_along_axis(x, index[..., None], axis=-1)
    z = _hinge(margin - own + x)
    z = z if p == 1 else jnp.square(z)
    others = jnp.broadcast_to(jnp.arange(num_classes), x.shape) != index[..., None]
    loss = jnp.sum(jnp.where(others, z, jnp.zeros((), z.dtype)), axis=-1) / num_classes
    if weight is not None:
        w = jnp.asarray(weight)
        _check_shape(fn, w, (num_classes,), "weight", "one per class, the input's last axis")
        loss = loss * w.astype(x.dtype)[index]
    loss = jnp.where(valid, loss, jnp.nan)
    return _reduce(loss, reduction, mask)


def multilabel_margin_loss(
    input: ArrayLike,
    target: ArrayLike,
    *,
    reduction: Reduction = "mean",
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Multi-label hinge loss, as ``torch.nn.functional.multilabel_margin_loss``.

    ``target`` lists each sample's classes first and is padded with -1 (PyTorch's
    layout): ``[3, 0, -1, 1]`` means classes 3 and 0; the entries after the first
    negative one are ignored. With ``Y`` those classes, per sample::

        loss = sum_{y in Y} sum_{j not in Y} max(0, 1 - (x[y] - x[j])) / C

    (a class listed twice counts twice, as in PyTorch).

    Args:
        input: scores ``(N, C)`` or ``(C,)``, floating.
        target: class indices of the input's shape, integer, in ``[0, C)``, padded with -1.
        reduction: ``"mean"`` (over the samples), ``"sum"`` or ``"none"``.
        mask: optional bool ``(N,)``: samples where it is False count in neither the sum
            nor the mean's denominator (a padded last batch). Not in PyTorch.

    Returns:
        A scalar, or ``(N,)`` for ``reduction="none"``; float32 (float64 for float64
        input). A listed index ``>= C`` gives ``nan`` (PyTorch raises).

    Raises:
        ShapeError: ``input`` not floating or not ``(N, C)`` or ``(C,)``, or ``target``
            not integer or of another shape.
        ValueError: unknown ``reduction``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet.losses import multilabel_margin_loss
        >>> x = jnp.array([[0.1, 0.2, 0.4, 0.8]])
        >>> round(float(multilabel_margin_loss(x, jnp.array([[3, 0, -1, 1]]))), 4)
        0.85
    """
    fn = "multilabel_margin_loss"
    _check_reduction(fn, reduction)
    x = _scores(fn, input)
    num_classes = x.shape[-1]
    t = jnp.asarray(target)
    check_dtype(fn, t, "integer", "target")
    _check_shape(fn, t, x.shape, "target", "the input's shape, padded with -1")
    listed = jnp.cumprod(t >= 0, axis=-1).astype(bool)  # up to the first negative entry
    valid = t < num_classes
    index = jnp.where(listed & valid, t, 0)
    classes = jnp.broadcast_to(jnp.arange(num_classes), (*t.shape, num_classes))
    is_target = jnp.any(listed[..., :, None] & (index[..., :, None] == classes), axis=-2)
    own = jnp.take_along_axis(x, index, axis=-1)  # x[y_k] for every entry k
    z = _hinge(1.0 - own[..., :, None] + x[..., None, :])  # (..., k, j)
    counted = listed[..., :, None] & ~is_target[..., None, :]
    loss = jnp.sum(jnp.where(counted, z, jnp.zeros((), z.dtype)), axis=(-2, -1)) / num_classes
    loss = jnp.where(jnp.all(valid | ~listed, axis=-1), loss, jnp.nan)
    return _reduce(loss, reduction, mask)
