"""Dropout: dropout (elementwise) and dropout2d (whole channels of NHWC images)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from funcnet.errors import ShapeError

__all__ = ["dropout", "dropout2d"]


def _check_probability(owner: str, p: float) -> None:
    """Raise ValueError unless 0 ≤ p ≤ 1 (PyTorch's message)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{owner}: dropout probability has to be between 0 and 1, but got {p}")


def _drop(
    x: jax.Array, p: float, key: jax.Array | None, mask_shape: Sequence[int], owner: str
) -> jax.Array:
    if p == 1.0:
        return jnp.zeros_like(x)
    if key is None:
        raise ValueError(f"{owner}: training with p={p} needs a PRNG key (pass key=...)")
    keep = jax.random.bernoulli(key, 1.0 - p, tuple(mask_shape))
    scale = 1.0 / (1.0 - p)
    dtype = jnp.result_type(x)
    if jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits < 32:
        # Scale in float32, as PyTorch's fused kernels do: bfloat16(1/(1-p)) is off by up
        # to 0.2%, a bias every kept activation would share.
        kept = (jnp.asarray(x, jnp.float32) * scale).astype(dtype)
    else:
        kept = x * scale
    return jnp.where(keep, kept, 0)


def dropout(
    x: jax.Array, p: float = 0.5, key: jax.Array | None = None, training: bool = True
) -> jax.Array:
    """Zeroes each element with probability ``p`` and scales the rest by 1 / (1 − p).

    As ``torch.nn.functional.dropout``: ``p`` is the probability of *dropping* (not
    keeping, as in ``stax.Dropout``), and the scaling ("inverted dropout") keeps the
    expectation unchanged, so evaluation is the identity.

    Args:
        x: any shape; floating.
        p: drop probability, a Python float in [0, 1]; p = 1 gives zeros.
        key: a PRNG key; needed only when ``training`` and 0 < p < 1.
        training: if False, return ``x`` unchanged.

    Returns:
        x's shape and dtype; the same key gives the same mask.
    """
    _check_probability("dropout", p)
    if not training or p == 0.0:
        return x
    return _drop(x, p, key, jnp.shape(x), "dropout")


def dropout2d(
    x: jax.Array, p: float = 0.5, key: jax.Array | None = None, training: bool = True
) -> jax.Array:
    """Zeroes whole channels of (N, H, W, C) images (``torch.nn.functional.dropout2d``).

    Each (sample, channel) pair is dropped with probability ``p`` across all H × W
    positions (mask shape (N, 1, 1, C)); kept channels are scaled by 1 / (1 − p).

    Args:
        x: (N, H, W, C); floating.
        p: drop probability, a Python float in [0, 1].
        key: a PRNG key; needed only when ``training`` and 0 < p < 1.
        training: if False, return ``x`` unchanged.

    Returns:
        x's shape and dtype.
    """
    _check_probability("dropout2d", p)
    shape = jnp.shape(x)
    if len(shape) != 4:
        raise ShapeError(f"dropout2d: expected 4-D input (N, H, W, C), got shape {tuple(shape)}")
    if not training or p == 0.0:
        return x
    return _drop(x, p, key, (shape[0], 1, 1, shape[3]), "dropout2d")
