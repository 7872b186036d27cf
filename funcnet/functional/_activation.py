"""Activation functions with PyTorch's definitions and defaults."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

__all__ = [
    "elu",
    "gelu",
    "leaky_relu",
    "log_softmax",
    "relu",
    "sigmoid",
    "silu",
    "softmax",
    "softplus",
    "tanh",
]


def relu(x: jax.Array) -> jax.Array:
    """max(x, 0), elementwise; any shape, dtype kept."""
    return jax.nn.relu(x)


def leaky_relu(x: jax.Array, negative_slope: float = 0.01) -> jax.Array:
    """x if x >= 0 else negative_slope·x (PyTorch's default slope 0.01)."""
    return jnp.where(x >= 0, x, negative_slope * x)


def elu(x: jax.Array, alpha: float = 1.0) -> jax.Array:
    """x if x > 0 else alpha·(exp(x) − 1)."""
    return jax.nn.elu(x, alpha)


def gelu(x: jax.Array, approximate: str = "none") -> jax.Array:
    """Gaussian error linear unit: x·Φ(x) (``"none"``, exact, PyTorch's default) or its
    tanh approximation (``"tanh"``). Note ``jax.nn.gelu`` defaults to the approximation."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return jax.nn.gelu(x, approximate=approximate == "tanh")


def silu(x: jax.Array) -> jax.Array:
    """x·sigmoid(x) (also called swish)."""
    return jax.nn.silu(x)


def tanh(x: jax.Array) -> jax.Array:
    """Hyperbolic tangent."""
    return jnp.tanh(x)


def sigmoid(x: jax.Array) -> jax.Array:
    """1 / (1 + exp(−x))."""
    return jax.nn.sigmoid(x)


def softplus(x: jax.Array, beta: float = 1.0, threshold: float = 20.0) -> jax.Array:
    """log(1 + exp(beta·x)) / beta, linear where beta·x > threshold (as PyTorch)."""
    bx = beta * x
    return jnp.where(bx > threshold, x, jnp.logaddexp(bx, 0.0) / beta)


def _in_float32(fn: Callable[..., jax.Array], x: jax.Array, dim: int) -> jax.Array:
    """``fn(x, axis=dim)``; a 16-bit float ``x`` computed in float32 (PyTorch's "opmath"
    type) and the result rounded once to its dtype."""
    dtype = jnp.result_type(x)
    if jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits < 32:
        return fn(jnp.asarray(x, jnp.float32), axis=dim).astype(dtype)
    return fn(x, axis=dim)


def softmax(x: jax.Array, dim: int = -1) -> jax.Array:
    """exp(x) / sum(exp(x)) along ``dim`` (default the last axis: channels-last).

    bfloat16 and float16 inputs are computed in float32 and rounded once to the input's
    dtype, as PyTorch does: in bfloat16, ``x − max`` and ``exp`` would each round (up
    to 14 % error at logits of size 16).
    """
    return _in_float32(jax.nn.softmax, x, dim)


def log_softmax(x: jax.Array, dim: int = -1) -> jax.Array:
    """x − logsumexp(x) along ``dim``, computed stably; 16-bit floats in float32, the
    result in the input's dtype (as ``softmax``)."""
    return _in_float32(jax.nn.log_softmax, x, dim)
