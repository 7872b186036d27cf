"""The checks and reductions every loss shares: reduction names, compute dtypes, target
shapes, row masks."""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from funcnet.errors import ShapeError, check_dtype

__all__ = ["Reduction"]

Reduction = Literal["mean", "sum", "none"]
_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(fn: str, reduction: str, allowed: tuple[str, ...] = _REDUCTIONS) -> None:
    if not isinstance(reduction, str) or reduction not in allowed:
        names = ", ".join(repr(r) for r in allowed)
        raise ValueError(f"{fn}: reduction must be one of {names}; got {reduction!r}")


def _compute_dtype(dtype: jnp.dtype) -> jnp.dtype:
    """float32 for 16-bit floats, otherwise the dtype itself (float32 or float64)."""
    return jnp.dtype(jnp.float32) if jnp.finfo(dtype).bits < 32 else jnp.dtype(dtype)


def _float_input(fn: str, input: ArrayLike, what: str = "input") -> jax.Array:
    """``input`` as an array of its compute dtype; raises unless it is floating."""
    x = jnp.asarray(input)
    check_dtype(fn, x, "floating", what)
    return x.astype(_compute_dtype(x.dtype))


def _check_shape(fn: str, x: jax.Array, expected: tuple[int, ...], what: str, note: str) -> None:
    if tuple(x.shape) != tuple(expected):
        raise ShapeError(
            f"{fn}: expected {what} of shape {tuple(expected)} ({note}), got {tuple(x.shape)}"
        )


def _real_target(fn: str, target: ArrayLike, dtype: jnp.dtype) -> jax.Array:
    """A numeric target (float, integer or bool) cast to the compute dtype."""
    t = jnp.asarray(target)
    if jnp.issubdtype(t.dtype, jnp.complexfloating):
        raise ShapeError(f"{fn}: expected a real-valued target, got dtype {t.dtype}")
    return t.astype(dtype)


def _broadcastable(fn: str, w: ArrayLike | None, shape: tuple[int, ...], what: str, dtype):
    """``w`` cast to ``dtype``; raises unless it broadcasts to ``shape`` without growing it."""
    if w is None:
        return None
    w = jnp.asarray(w)
    try:
        ok = jnp.broadcast_shapes(w.shape, shape) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise ShapeError(
            f"{fn}: expected {what} broadcastable to the input's shape {tuple(shape)}, "
            f"got shape {tuple(w.shape)}"
        )
    return jnp.broadcast_to(w.astype(dtype), shape)


def _elementwise_args(
    fn: str, input: ArrayLike, target: ArrayLike, reduction: str
) -> tuple[jax.Array, jax.Array]:
    _check_reduction(fn, reduction)
    x = _float_input(fn, input)
    t = _real_target(fn, target, x.dtype)
    _check_shape(fn, t, x.shape, "target", "the input's shape")
    return x, t


def _row_mask(mask: ArrayLike | None, shape: tuple[int, ...]) -> jax.Array | None:
    """``mask`` (bool, a leading part of ``shape``, e.g. ``(N,)``) broadcast to ``shape``."""
    if mask is None:
        return None
    m = jnp.asarray(mask)
    if m.dtype != jnp.bool_ or m.shape != tuple(shape[: m.ndim]):
        raise ShapeError(
            f"mask: expected a bool array shaped like a leading part of the loss's shape "
            f"{tuple(shape)}, e.g. ({shape[0] if shape else ''},), got {m.dtype} {m.shape}"
        )
    return jnp.broadcast_to(m.reshape(m.shape + (1,) * (len(shape) - m.ndim)), shape)


def _reduce(loss: jax.Array, reduction: str, mask: ArrayLike | None = None) -> jax.Array:
    m = _row_mask(mask, loss.shape)
    if m is not None:
        # where, not multiply: padded rows may hold inf or nan and must not reach the sum
        loss = jnp.where(m, loss, jnp.zeros((), loss.dtype))
        if reduction == "mean":
            return jnp.sum(loss) / jnp.sum(m, dtype=loss.dtype)
    if reduction == "mean":
        return jnp.mean(loss)
    if reduction == "sum":
        return jnp.sum(loss)
    return loss


def _is_concrete_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)
