"""Initialisers with PyTorch's definitions, for JAX-native weight layouts.

Every initialiser is a pure function ``init(key, shape, dtype=float32, **hyper) -> Array``.
Pass one to a layer with its hyper-parameters bound, e.g.
``nn.Linear(784, 128, weight_init=functools.partial(init.normal, std=0.02))``.

Fans follow PyTorch's ``_calculate_fan_in_and_fan_out`` translated to JAX layouts:
a Linear weight is ``(in, out)``, a convolution kernel is ``(*spatial, in/groups, out)``
(HWIO), so ``fan_in = shape[-2] * prod(shape[:-2])`` and
``fan_out = shape[-1] * prod(shape[:-2])``. PyTorch's layouts are the transposes, with the
same fans, so the distributions match PyTorch's exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "calculate_gain",
    "constant",
    "fans",
    "kaiming_normal",
    "kaiming_uniform",
    "normal",
    "ones",
    "orthogonal",
    "trunc_normal",
    "uniform",
    "xavier_normal",
    "xavier_uniform",
    "zeros",
]

Shape = Sequence[int]
DType = Any


def fans(shape: Shape) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight in JAX layout (see the module docstring).

    Raises:
        ValueError: for shapes with fewer than two dimensions (as PyTorch does).
    """
    if len(shape) < 2:
        raise ValueError(f"fan in and fan out need at least 2 dimensions, got shape {tuple(shape)}")
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """PyTorch's recommended gain for a nonlinearity (``torch.nn.init.calculate_gain``)."""
    linear = (
        "linear",
        "conv1d",
        "conv2d",
        "conv3d",
        "conv_transpose1d",
        "conv_transpose2d",
        "sigmoid",
    )
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def zeros(key: jax.Array, shape: Shape, dtype: DType = jnp.float32) -> jax.Array:
    """All zeros (the key is unused; kept for a uniform signature)."""
    del key
    return jnp.zeros(shape, dtype)


def ones(key: jax.Array, shape: Shape, dtype: DType = jnp.float32) -> jax.Array:
    """All ones."""
    del key
    return jnp.ones(shape, dtype)


def constant(
    key: jax.Array, shape: Shape, dtype: DType = jnp.float32, *, value: float
) -> jax.Array:
    """Every element equal to ``value``."""
    del key
    return jnp.full(shape, value, dtype)


def uniform(
    key: jax.Array, shape: Shape, dtype: DType = jnp.float32, *, a: float = 0.0, b: float = 1.0
) -> jax.Array:
    """U(a, b), as ``torch.nn.init.uniform_``."""
    return jax.random.uniform(key, shape, dtype, minval=a, maxval=b)


def normal(
    key: jax.Array, shape: Shape, dtype: DType = jnp.float32, *, mean: float = 0.0, std: float = 1.0
) -> jax.Array:
    """N(mean, std²), as ``torch.nn.init.normal_``."""
    return mean + std * jax.random.normal(key, shape, dtype)


def trunc_normal(
    key: jax.Array,
    shape: Shape,
    dtype: DType = jnp.float32,
    *,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
) -> jax.Array:
    """N(mean, std²) truncated to [a, b] (absolute bounds, as ``torch.nn.init.trunc_normal_``)."""
    lower, upper = (a - mean) / std, (b - mean) / std
    return mean + std * jax.random.truncated_normal(key, lower, upper, shape, dtype)


def xavier_uniform(
    key: jax.Array, shape: Shape, dtype: DType = jnp.float32, *, gain: float = 1.0
) -> jax.Array:
    """Glorot uniform: U(-a, a), a = gain·sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def xavier_normal(
    key: jax.Array, shape: Shape, dtype: DType = jnp.float32, *, gain: float = 1.0
) -> jax.Array:
    """Glorot normal: N(0, std²), std = gain·sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(shape)
    return gain * math.sqrt(2.0 / (fan_in + fan_out)) * jax.random.normal(key, shape, dtype)


def _kaiming_std(shape: Shape, a: float, mode: str, nonlinearity: str) -> float:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = fans(shape)
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform(
    key: jax.Array,
    shape: Shape,
    dtype: DType = jnp.float32,
    *,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
) -> jax.Array:
    """He uniform: U(-b, b), b = gain·sqrt(3 / fan), as ``torch.nn.init.kaiming_uniform_``.

    PyTorch's default Linear and Conv weight init is this with ``a=sqrt(5)``, which
    gives b = 1 / sqrt(fan_in).
    """
    bound = math.sqrt(3.0) * _kaiming_std(shape, a, mode, nonlinearity)
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def kaiming_normal(
    key: jax.Array,
    shape: Shape,
    dtype: DType = jnp.float32,
    *,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
) -> jax.Array:
    """He normal: N(0, std²), std = gain / sqrt(fan), as ``torch.nn.init.kaiming_normal_``."""
    return _kaiming_std(shape, a, mode, nonlinearity) * jax.random.normal(key, shape, dtype)


def orthogonal(
    key: jax.Array, shape: Shape, dtype: DType = jnp.float32, *, gain: float = 1.0
) -> jax.Array:
    """A (semi-)orthogonal matrix, as ``torch.nn.init.orthogonal_``.

    The last axis is the output axis (JAX layout); all others are flattened into rows, so
    for a 2-D ``(in, out)`` weight the columns (or rows, whichever are fewer) are orthonormal.
    """
    if len(shape) < 2:
        raise ValueError(f"orthogonal init needs at least 2 dimensions, got shape {tuple(shape)}")
    rows, cols = int(np.prod(shape[:-1])), shape[-1]
    flat = jax.random.normal(key, (max(rows, cols), min(rows, cols)), jnp.float32)
    q, r = jnp.linalg.qr(flat)
    q = q * jnp.sign(jnp.diagonal(r))  # makes the distribution uniform (Mezzadri 2007)
    if rows < cols:
        q = q.T
    return (gain * q).reshape(shape).astype(dtype)


def default_bound(fan_in: int) -> float:
    """PyTorch's default bound 1/sqrt(fan_in) for Linear/Conv weights and biases."""
    return 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0


def default_uniform(
    key: jax.Array, shape: Shape, dtype: DType = jnp.float32, *, fan_in: int
) -> jax.Array:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's Linear/Conv default for weight and bias."""
    bound = default_bound(fan_in)
    return jax.random.uniform(key, shape, dtype, -bound, bound)
