"""Linear maps and reshapes."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["flatten", "linear"]


def linear(x: jax.Array, weight: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """y = x @ weight + bias.

    Args:
        x: (*, in_features).
        weight: (in_features, out_features) — the transpose of PyTorch's layout.
        bias: (out_features,) or None.

    Returns:
        (*, out_features), in the promoted dtype of ``x`` and ``weight``.
    """
    y = x @ weight
    return y if bias is None else y + bias


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
