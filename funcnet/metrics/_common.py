"""Trace-time checks and small helpers shared by the metric functions and accumulators."""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from funcnet.errors import ShapeError

Average = Literal["binary", "micro", "macro", "weighted"] | None
AVERAGES = ("binary", "micro", "macro", "weighted", None)


def safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
    """``num / den`` with 0 where ``den == 0`` (scikit-learn's ``zero_division`` result)."""
    nonzero = den != 0
    return jnp.where(nonzero, num / jnp.where(nonzero, den, 1), 0)


def leading(fn: str, x: ArrayLike, shape: tuple[int, ...], what: str) -> jax.Array:
    """``x`` broadcast to ``shape``, where ``x.shape`` must be a leading part of ``shape``.

    A per-sample mask ``(N,)`` thus covers every element of its sample in ``(N, T)``:
    broadcasting is aligned on the left, unlike NumPy's right-aligned rule.
    """
    x = jnp.asarray(x)
    shape = tuple(shape)
    if tuple(x.shape) != shape[: x.ndim]:
        hint = f" or a leading part of it such as {shape[:1]}" if len(shape) > 1 else ""
        raise ShapeError(f"{fn}: expected {what} of shape {shape}{hint}, got {tuple(x.shape)}")
    return jnp.broadcast_to(x.reshape(x.shape + (1,) * (len(shape) - x.ndim)), shape)


def check_mask(fn: str, mask: ArrayLike) -> jax.Array:
    mask = jnp.asarray(mask)
    if mask.dtype != jnp.bool_:
        raise ShapeError(
            f"{fn}: expected a boolean mask (True = counted), got dtype {mask.dtype}; "
            "pass fractional weights as sample_weight"
        )
    return mask


def element_weights(
    fn: str,
    shape: tuple[int, ...],
    mask: ArrayLike | None,
    sample_weight: ArrayLike | None = None,
) -> jax.Array:
    """Per-element weights of ``shape`` from an optional mask and sample weights.

    Without ``sample_weight`` the result is int32 0/1 (so counts stay exact integers);
    with it, float32 ``sample_weight * mask``.
    """
    if sample_weight is None:
        if mask is None:
            return jnp.ones(shape, jnp.int32)
        return leading(fn, check_mask(fn, mask), shape, "mask").astype(jnp.int32)
    w = jnp.asarray(sample_weight)
    if not (jnp.issubdtype(w.dtype, jnp.number) or w.dtype == jnp.bool_) or jnp.issubdtype(
        w.dtype, jnp.complexfloating
    ):
        raise ShapeError(f"{fn}: expected real sample_weight, got dtype {w.dtype}")
    w = leading(fn, w, shape, "sample_weight").astype(jnp.float32)
    if mask is not None:
        w = jnp.where(leading(fn, check_mask(fn, mask), shape, "mask"), w, 0.0)
    return w


def class_targets(fn: str, targets: ArrayLike) -> jax.Array:
    """Integer (or bool) class labels as int32."""
    t = jnp.asarray(targets)
    if not (jnp.issubdtype(t.dtype, jnp.integer) or t.dtype == jnp.bool_):
        raise ShapeError(f"{fn}: expected integer class-label targets, got dtype {t.dtype}")
    return t.astype(jnp.int32)


def class_inputs(
    fn: str, preds: ArrayLike, targets: ArrayLike
) -> tuple[jax.Array, jax.Array | None, jax.Array]:
    """Split classification inputs into ``(labels, scores_or_None, targets)``.

    ``preds`` is either floating scores ``targets.shape + (C,)`` (logits or probabilities;
    labels are their argmax) or integer/bool labels of ``targets.shape``.
    """
    t = class_targets(fn, targets)
    p = jnp.asarray(preds)
    if jnp.issubdtype(p.dtype, jnp.floating):
        if p.ndim != t.ndim + 1 or tuple(p.shape[:-1]) != tuple(t.shape):
            raise ShapeError(
                f"{fn}: expected floating scores of shape targets.shape + (C,) = "
                f"{(*t.shape, 'C')} or integer labels of shape {tuple(t.shape)}, got floating "
                f"preds of shape {tuple(p.shape)} (threshold binary probabilities first, "
                "e.g. preds = probs > 0.5)"
            )
        return jnp.argmax(p, axis=-1).astype(jnp.int32), p, t
    if not (jnp.issubdtype(p.dtype, jnp.integer) or p.dtype == jnp.bool_):
        raise ShapeError(f"{fn}: expected floating scores or integer labels, got dtype {p.dtype}")
    if tuple(p.shape) != tuple(t.shape):
        raise ShapeError(
            f"{fn}: expected integer label preds of the targets' shape {tuple(t.shape)}, "
            f"got {tuple(p.shape)}"
        )
    return p.astype(jnp.int32), None, t


def resolve_num_classes(fn: str, average: Average, num_classes: int | None, pos_label: int) -> int:
    """Validate ``average``/``num_classes``/``pos_label``; return the number of classes."""
    if average not in AVERAGES:
        raise ValueError(
            f"{fn}: average must be one of 'binary', 'micro', 'macro', 'weighted' or None; "
            f"got {average!r}"
        )
    if average == "binary":
        if num_classes not in (None, 2):
            raise ValueError(
                f"{fn}: average='binary' is for two classes, got num_classes={num_classes}; "
                "pass average='micro', 'macro', 'weighted' or None for more"
            )
        if pos_label not in (0, 1):
            raise ValueError(
                f"{fn}: pos_label must be 0 or 1 for average='binary', got {pos_label}"
            )
        return 2
    if num_classes is None:
        raise ValueError(f"{fn}: num_classes is required for average={average!r}")
    check_num_classes(fn, num_classes)
    return num_classes


def check_num_classes(fn: str, num_classes: object) -> None:
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"{fn}: num_classes must be a positive int, got {num_classes!r}")


def check_num_scores(fn: str, scores: jax.Array | None, num_classes: int) -> None:
    if scores is not None and scores.shape[-1] != num_classes:
        raise ShapeError(
            f"{fn}: expected scores with last (class) dimension {num_classes}, "
            f"got shape {tuple(scores.shape)}"
        )


def float_dtype(dtype: jnp.dtype) -> jnp.dtype:
    """float32 for 16-bit floats and non-floats, else the dtype (float32 or float64)."""
    if not jnp.issubdtype(dtype, jnp.floating) or jnp.finfo(dtype).bits < 32:
        return jnp.dtype(jnp.float32)
    return jnp.dtype(dtype)
