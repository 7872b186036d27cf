"""Dropout: dropout (elementwise), dropout1d/2d/3d (whole channels of channels-last
inputs), alpha_dropout and feature_alpha_dropout (SELU-preserving)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from funcnet.errors import ShapeError

__all__ = [
    "alpha_dropout",
    "dropout",
    "dropout1d",
    "dropout2d",
    "dropout3d",
    "feature_alpha_dropout",
]

# SELU's scale · alpha: the value SELU saturates to, -_SELU_SATURATION, for very negative
# inputs (PyTorch's constant in ATen's Dropout.cpp).
_SELU_SATURATION = 1.7580993408473766


def _check_probability(owner: str, p: float) -> None:
    """Raise ValueError unless 0 ≤ p ≤ 1 (PyTorch's message)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{owner}: dropout probability has to be between 0 and 1, but got {p}")


def _in_float32(x: jax.Array) -> bool:
    """Whether ``x`` is a 16-bit float, to be scaled in float32 as PyTorch's fused kernels
    do: bfloat16(1/(1-p)) is off by up to 0.2%, a bias every kept activation would share."""
    dtype = jnp.result_type(x)
    return bool(jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits < 32)


def _keep_mask(p: float, key: jax.Array | None, mask_shape: Sequence[int], owner: str) -> jax.Array:
    if key is None:
        raise ValueError(f"{owner}: training with p={p} needs a PRNG key (pass key=...)")
    return jax.random.bernoulli(key, 1.0 - p, tuple(mask_shape))


def _drop(
    x: jax.Array, p: float, key: jax.Array | None, mask_shape: Sequence[int], owner: str
) -> jax.Array:
    if p == 1.0:
        return jnp.zeros_like(x)
    keep = _keep_mask(p, key, mask_shape, owner)
    scale = 1.0 / (1.0 - p)
    if _in_float32(x):
        kept = (jnp.asarray(x, jnp.float32) * scale).astype(jnp.result_type(x))
    else:
        kept = x * scale
    return jnp.where(keep, kept, 0)


def _alpha_drop(
    x: jax.Array, p: float, key: jax.Array | None, mask_shape: Sequence[int], owner: str
) -> jax.Array:
    """PyTorch's alpha dropout: dropped values become SELU's saturation, then everything
    is moved by ``a·(x + alpha·p)`` so that zero mean and unit variance are kept."""
    if p == 1.0:
        return jnp.zeros_like(x)  # PyTorch: input * 0
    keep = _keep_mask(p, key, mask_shape, owner)
    a = 1.0 / ((_SELU_SATURATION**2 * p + 1.0) * (1.0 - p)) ** 0.5
    dtype = jnp.result_type(x)
    xf = jnp.asarray(x, jnp.float32) if _in_float32(x) else x
    kept = xf * a + _SELU_SATURATION * a * p
    y = jnp.where(keep, kept, -_SELU_SATURATION * a * (1.0 - p))
    return y.astype(dtype)


def _feature_mask_shape(
    x: jax.Array, spatial: int, owner: str, layout: str, unbatched: bool = True
) -> tuple[int, ...]:
    """(N, 1, …, 1, C) for batched ``(N, *spatial, C)``, (1, …, 1, C) for unbatched."""
    shape = tuple(jnp.shape(x))
    ranks = (spatial + 1, spatial + 2) if unbatched else (spatial + 2,)
    if len(shape) not in ranks:
        dims = " or ".join(str(r) for r in ranks)
        raise ShapeError(f"{owner}: expected {dims}-D input {layout}, got shape {shape}")
    lead = shape[:1] if len(shape) == spatial + 2 else ()
    return (*lead, *(1,) * spatial, shape[-1])


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


def dropout1d(
    x: jax.Array, p: float = 0.5, key: jax.Array | None = None, training: bool = True
) -> jax.Array:
    """Zeroes whole channels of (N, L, C) sequences (``torch.nn.functional.dropout1d``).

    Each (sample, channel) pair is dropped with probability ``p`` at all L positions
    (mask shape (N, 1, C); (1, C) for unbatched (L, C) input); kept channels are scaled by
    1 / (1 − p). PyTorch's (N, C, L) is (N, L, C) here.

    Args:
        x: (N, L, C) or (L, C); floating.
        p: drop probability, a Python float in [0, 1].
        key: a PRNG key; needed only when ``training`` and 0 < p < 1.
        training: if False, return ``x`` unchanged.

    Returns:
        x's shape and dtype.
    """
    _check_probability("dropout1d", p)
    mask_shape = _feature_mask_shape(x, 1, "dropout1d", "(N, L, C) or (L, C)")
    if not training or p == 0.0:
        return x
    return _drop(x, p, key, mask_shape, "dropout1d")


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
    mask_shape = _feature_mask_shape(x, 2, "dropout2d", "(N, H, W, C)", unbatched=False)
    if not training or p == 0.0:
        return x
    return _drop(x, p, key, mask_shape, "dropout2d")


def dropout3d(
    x: jax.Array, p: float = 0.5, key: jax.Array | None = None, training: bool = True
) -> jax.Array:
    """Zeroes whole channels of (N, D, H, W, C) volumes (``torch.nn.functional.dropout3d``).

    Each (sample, channel) pair is dropped with probability ``p`` at all D × H × W
    positions (mask shape (N, 1, 1, 1, C); (1, 1, 1, C) for unbatched (D, H, W, C) input);
    kept channels are scaled by 1 / (1 − p). PyTorch's (N, C, D, H, W) is (N, D, H, W, C)
    here.

    Args:
        x: (N, D, H, W, C) or (D, H, W, C); floating.
        p: drop probability, a Python float in [0, 1].
        key: a PRNG key; needed only when ``training`` and 0 < p < 1.
        training: if False, return ``x`` unchanged.

    Returns:
        x's shape and dtype.
    """
    _check_probability("dropout3d", p)
    layout = "(N, D, H, W, C) or (D, H, W, C)"
    mask_shape = _feature_mask_shape(x, 3, "dropout3d", layout)
    if not training or p == 0.0:
        return x
    return _drop(x, p, key, mask_shape, "dropout3d")


def alpha_dropout(
    x: jax.Array, p: float = 0.5, key: jax.Array | None = None, training: bool = False
) -> jax.Array:
    """Dropout that keeps SELU's zero mean and unit variance (``F.alpha_dropout``).

    PyTorch's formula: with ``alpha' = 1.7580993…`` (SELU's scale × alpha) and
    ``a = ((alpha'²·p + 1)(1 − p))^(-1/2)``, each element is dropped with probability ``p``
    to ``−a·alpha'·(1 − p)`` and otherwise becomes ``a·x + a·alpha'·p``; an input of zero
    mean and unit variance keeps them. ``training`` defaults to False, as in PyTorch.

    Args:
        x: any shape; floating (16-bit inputs are transformed in float32).
        p: drop probability, a Python float in [0, 1]; p = 1 gives zeros (as PyTorch).
        key: a PRNG key; needed only when ``training`` and 0 < p < 1.
        training: if False (the default), return ``x`` unchanged.

    Returns:
        x's shape and dtype.
    """
    _check_probability("alpha_dropout", p)
    if not training or p == 0.0:
        return x
    return _alpha_drop(x, p, key, jnp.shape(x), "alpha_dropout")


def feature_alpha_dropout(
    x: jax.Array, p: float = 0.5, key: jax.Array | None = None, training: bool = False
) -> jax.Array:
    """Alpha dropout of whole channels (``torch.nn.functional.feature_alpha_dropout``).

    :func:`alpha_dropout`'s values, with one draw per (sample, channel): the mask is
    (N, 1, …, 1, C) for channels-last (N, *, C) input (PyTorch's (N, C, *)).
    ``training`` defaults to False, as in PyTorch.

    Args:
        x: (N, *, C) with at least 2 dimensions; floating.
        p: drop probability, a Python float in [0, 1]; p = 1 gives zeros.
        key: a PRNG key; needed only when ``training`` and 0 < p < 1.
        training: if False (the default), return ``x`` unchanged.

    Returns:
        x's shape and dtype.
    """
    _check_probability("feature_alpha_dropout", p)
    shape = tuple(jnp.shape(x))
    if len(shape) < 2:
        raise ShapeError(
            f"feature_alpha_dropout: expected input (N, *, C) with at least 2 dimensions, "
            f"got shape {shape}"
        )
    if not training or p == 0.0:
        return x
    mask_shape = (shape[0], *(1,) * (len(shape) - 2), shape[-1])
    return _alpha_drop(x, p, key, mask_shape, "feature_alpha_dropout")
