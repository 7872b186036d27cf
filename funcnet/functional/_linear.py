"""Linear maps and reshapes."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from funcnet.errors import ShapeError, check_last_dim
from funcnet.functional._conv import _label

__all__ = ["bilinear", "flatten", "linear"]


def linear(x: jax.Array, weight: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """y = x @ weight + bias.

    Args:
        x: (*, in_features).
        weight: (in_features, out_features) — the transpose of PyTorch's layout.
        bias: (out_features,) or None.

    Returns:
        (*, out_features), in the promoted dtype of ``x`` and ``weight``.
    """
    y = matmul_2d(x, weight)
    return y if bias is None else y + bias


def bilinear(
    input1: jax.Array, input2: jax.Array, weight: jax.Array, bias: jax.Array | None = None
) -> jax.Array:
    """y[..., o] = Σ_ij input1[..., i]·weight[i, j, o]·input2[..., j] + bias[o]
    (``torch.nn.functional.bilinear``).

    Args:
        input1: (*, in1_features).
        input2: (*, in2_features), with the same leading axes as ``input1``.
        weight: (in1_features, in2_features, out_features); PyTorch's
            ``(out_features, in1_features, in2_features)`` weight ``w`` converts with
            ``w.permute(1, 2, 0)``.
        bias: (out_features,) or None.

    Returns:
        (*, out_features), in the promoted dtype of the arguments.

    Raises:
        ShapeError: a 3-D weight that does not match the inputs' last axes, or inputs
            whose leading axes differ.
    """
    w_shape = tuple(jnp.shape(weight))
    if len(w_shape) != 3:
        raise ShapeError(
            "bilinear: expected 3-D weight (in1_features, in2_features, out_features), got "
            f"shape {w_shape}"
        )
    _check_bilinear("bilinear", input1, input2, w_shape[0], w_shape[1])
    y = jnp.einsum("...i,ijo,...j->...o", input1, weight, input2)
    return y if bias is None else y + bias


def _check_bilinear(
    where: object, input1: jax.Array, input2: jax.Array, in1_features: int, in2_features: int
) -> None:
    """ShapeError unless ``input1`` is (*, in1_features) and ``input2`` (*, in2_features)."""
    s1, s2 = tuple(jnp.shape(input1)), tuple(jnp.shape(input2))
    check_last_dim(where, input1, in1_features, "input1")
    check_last_dim(where, input2, in2_features, "input2")
    if s1[:-1] != s2[:-1]:
        raise ShapeError(
            f"{_label(where)}: expected input1 and input2 with the same leading dimensions, "
            f"got shapes {s1} and {s2}"
        )


def matmul_2d(x: jax.Array, weight: jax.Array) -> jax.Array:
    """``x @ weight``; on the CPU backend, computed on ``x``'s (N, in) view.

    The same values as ``x @ weight``; the difference is the gradient XLA compiles. For an
    input of three or more axes, JAX's weight gradient contracts two or more axes, and
    XLA:CPU then copies the whole output gradient into a transposed layout before the
    matmul; on the 2-D view it is one matmul with no copy (docs/performance.md). Merging
    axes is a free reshape of a row-major array.

    Other backends keep ``x @ weight``: on a mesh that shards a later axis (the sequence)
    but not the first, merging them would make XLA gather the whole input onto every
    device.

    Args:
        x: (*, in).
        weight: (in, out) (or (in,), as for ``@``).

    Returns:
        (*, out).
    """
    shape = jnp.shape(x)
    if len(shape) <= 2 or jax.default_backend() != "cpu":
        return x @ weight
    rows = math.prod(shape[:-1])
    y = jnp.reshape(x, (rows, shape[-1])) @ weight
    return jnp.reshape(y, (*shape[:-1], *jnp.shape(weight)[1:]))


def flatten(x: jax.Array, start_dim: int = 1, end_dim: int = -1) -> jax.Array:
    """Merges axes ``start_dim..end_dim`` (inclusive) into one, as ``torch.flatten``."""
    shape = jnp.shape(x)
    ndim = len(shape)
    start = start_dim % ndim if ndim else 0
    end = end_dim % ndim if ndim else 0
    if start > end:
        raise ValueError(
            f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for shape {shape}"
        )
    merged = 1
    for size in shape[start : end + 1]:
        merged *= size
    return jnp.reshape(x, (*shape[:start], merged, *shape[end + 1 :]))
