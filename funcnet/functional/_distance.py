"""cosine_similarity and pairwise_distance, as torch.nn.functional's."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from funcnet.errors import ShapeError, check_input_dtype
from funcnet.functional._conv import _label

__all__ = ["cosine_similarity", "pairwise_distance"]


# integers give float32 results; complex inputs would lose their imaginary parts
_REAL = ("floating", "integer")


def _broadcast(where: object, x1: jax.Array, x2: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``x1`` and ``x2`` broadcast to their common shape, in a floating compute dtype.

    Raises ShapeError naming ``where`` when the shapes do not broadcast.
    """
    s1, s2 = tuple(jnp.shape(x1)), tuple(jnp.shape(x2))
    try:
        shape = jnp.broadcast_shapes(s1, s2)
    except ValueError:
        raise ShapeError(
            f"{_label(where)}: expected x1 and x2 of broadcastable shapes, got {s1} and {s2}"
        ) from None
    dtype = _compute_dtype(jnp.result_type(x1, x2))
    a = jnp.broadcast_to(jnp.asarray(x1, dtype), shape)
    b = jnp.broadcast_to(jnp.asarray(x2, dtype), shape)
    return a, b


def _compute_dtype(dtype: jnp.dtype) -> jnp.dtype:
    """float32 for 16-bit floats and non-floating inputs (PyTorch's opmath / default
    float), the input's dtype otherwise."""
    if jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits >= 32:
        return dtype
    return jnp.dtype(jnp.float32)


def _output_dtype(dtype: jnp.dtype) -> jnp.dtype:
    """The inputs' dtype if floating, else float32."""
    return dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.dtype(jnp.float32)


def _check_axis(where: object, shape: tuple[int, ...], dim: int) -> None:
    """ShapeError naming ``where`` unless ``dim`` is an axis of ``shape``."""
    if not -len(shape) <= dim < len(shape):
        raise ShapeError(
            f"{_label(where)}: axis {dim} does not exist in the inputs' broadcast shape {shape}"
        )


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _clamp_min_keep_gradient(norm: jax.Array, eps: float) -> jax.Array:
    """max(norm, eps), differentiated as ``norm``: PyTorch clamps the norms in place
    under ``no_grad``, so its gradient ignores the clamp."""
    return jnp.maximum(norm, eps)


@_clamp_min_keep_gradient.defjvp
def _clamp_min_keep_gradient_jvp(eps: float, primals: tuple, tangents: tuple) -> tuple:
    (norm,), (tangent,) = primals, tangents
    return jnp.maximum(norm, eps), tangent


def _safe_root(total: jax.Array, order: float) -> jax.Array:
    """``total ** (1 / order)``, with gradient 0 (not NaN) where ``total`` is 0, as
    PyTorch's norm backward."""
    positive = total > 0
    safe = jnp.where(positive, total, 1)
    root = jnp.sqrt(safe) if order == 2 else safe ** (1 / order)
    return jnp.where(positive, root, 0)


def cosine_similarity(x1: jax.Array, x2: jax.Array, dim: int = -1, eps: float = 1e-8) -> jax.Array:
    """Σ (x1 / max(‖x1‖, eps))·(x2 / max(‖x2‖, eps)) along ``dim``
    (``torch.nn.functional.cosine_similarity``).

    As PyTorch's implementation: each input is divided by its own norm clamped to
    ``eps`` (its documentation writes max(‖x1‖·‖x2‖, eps)), and the gradient does not
    see the clamp. ``dim`` defaults to −1, the feature axis of channels-last inputs
    (PyTorch: 1, the channel axis of NCHW); for (N, D) inputs the two agree.

    Args:
        x1: any shape broadcastable with ``x2``.
        x2: any shape broadcastable with ``x1``.
        dim: the axis of the broadcast shape holding the vectors.
        eps: smallest norm divided by.

    Returns:
        The broadcast shape without axis ``dim``, in the inputs' floating dtype (float32
        for integers); 16-bit floats are computed in float32 and rounded once.

    Raises:
        ShapeError: the shapes do not broadcast, or ``dim`` is not an axis.
    """
    return _cosine_similarity("cosine_similarity", x1, x2, dim, eps)


def _cosine_similarity(
    where: object, x1: jax.Array, x2: jax.Array, dim: int, eps: float
) -> jax.Array:
    """``cosine_similarity``; errors name ``where`` (a layer's context or a label).

    Integers are accepted and give float32; complex inputs are refused.
    """
    check_input_dtype(where, x1, _REAL, "x1")
    check_input_dtype(where, x2, _REAL, "x2")
    out_dtype = _output_dtype(jnp.result_type(x1, x2))
    a, b = _broadcast(where, x1, x2)
    _check_axis(where, a.shape, dim)

    def normalized(x: jax.Array) -> jax.Array:
        norm = _safe_root(jnp.sum(x * x, axis=dim, keepdims=True), 2)
        return x / _clamp_min_keep_gradient(norm, eps)

    return jnp.sum(normalized(a) * normalized(b), axis=dim).astype(out_dtype)


def pairwise_distance(
    x1: jax.Array, x2: jax.Array, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False
) -> jax.Array:
    """‖x1 − x2 + eps‖_p over the last axis (``torch.nn.functional.pairwise_distance``).

    As PyTorch, ``eps`` is added to every difference (it keeps the norm of equal
    vectors differentiable). ``p`` may be any float: ``inf`` (largest |difference|),
    ``-inf`` (smallest), 0 (number of non-zero differences) or a power.

    Args:
        x1: (*, D) or any shape broadcastable with ``x2``.
        x2: (*, D) or any shape broadcastable with ``x1``.
        p: the norm's order.
        eps: added to the differences.
        keepdim: keep the reduced last axis with size 1.

    Returns:
        The broadcast shape without its last axis (with it, size 1, if ``keepdim``), in
        the inputs' floating dtype (float32 for integers); 16-bit floats are computed in
        float32 and rounded once.

    Raises:
        ShapeError: the shapes do not broadcast, or both inputs are scalars.
    """
    return _pairwise_distance("pairwise_distance", x1, x2, p, eps, keepdim)


def _pairwise_distance(
    where: object, x1: jax.Array, x2: jax.Array, p: float, eps: float, keepdim: bool
) -> jax.Array:
    """``pairwise_distance``; errors name ``where`` (a layer's context or a label).

    Integers are accepted and give float32, as PyTorch; complex inputs are refused.
    """
    check_input_dtype(where, x1, _REAL, "x1")
    check_input_dtype(where, x2, _REAL, "x2")
    out_dtype = _output_dtype(jnp.result_type(x1, x2))
    a, b = _broadcast(where, x1, x2)
    if a.ndim == 0:
        raise ShapeError(f"{_label(where)}: expected inputs with at least 1 dimension, got scalars")
    return _vector_norm(a - b + eps, p, keepdim).astype(out_dtype)


def _vector_norm(d: jax.Array, p: float, keepdim: bool) -> jax.Array:
    """The p-norm of ``d`` over its last axis, with PyTorch's special orders."""
    magnitude = jnp.abs(d)
    if p == math.inf:
        return jnp.max(magnitude, axis=-1, keepdims=keepdim)
    if p == -math.inf:
        return jnp.min(magnitude, axis=-1, keepdims=keepdim)
    if p == 0:
        return jnp.sum(d != 0, axis=-1, keepdims=keepdim).astype(d.dtype)
    if p == 1:
        return jnp.sum(magnitude, axis=-1, keepdims=keepdim)
    powers = d * d if p == 2 else magnitude**p
    return _safe_root(jnp.sum(powers, axis=-1, keepdims=keepdim), p)
