"""Embedding lookup with PyTorch's padding_idx semantics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from funcnet.errors import check_dtype

__all__ = ["embedding"]


def _normalize_padding_idx(owner: str, padding_idx: int | None, num_embeddings: int) -> int | None:
    """PyTorch's rule: negative indices count from the end; out of range is an error."""
    if padding_idx is None:
        return None
    if not -num_embeddings <= padding_idx < num_embeddings:
        raise ValueError(
            f"{owner}: padding_idx must be within num_embeddings ({num_embeddings}), "
            f"got {padding_idx}"
        )
    return padding_idx % num_embeddings


def _check_index_range(where: str, ids: jax.typing.ArrayLike, num_embeddings: int) -> None:
    """Raise IndexError for out-of-range concrete ``ids``; traced ids cannot be checked.

    Runs only outside ``jax.jit`` (for example while debugging eagerly), where the values
    are known; the check copies ``ids`` to the host.
    """
    try:
        host = np.asarray(ids)
    except jax.errors.TracerArrayConversionError:
        return
    if host.size and (host.min() < 0 or host.max() >= num_embeddings):
        raise IndexError(
            f"{where}: index out of range: expected indices in [0, {num_embeddings}), got "
            f"min {host.min()}, max {host.max()}"
        )


def _lookup(ids: jax.typing.ArrayLike, weight: jax.Array, padding_idx: int | None) -> jax.Array:
    ids = jnp.asarray(ids)
    # Out-of-range (and negative) ids give NaN rows rather than a silently clamped row;
    # their gradient is dropped.
    out = weight.at[ids].get(mode="fill", wrap_negative_indices=False)
    if padding_idx is not None and padding_idx <= jnp.iinfo(ids.dtype).max:
        # PyTorch never accumulates a gradient into the padding row: block it per position.
        is_pad = (ids == padding_idx)[..., None]
        out = jnp.where(is_pad, lax.stop_gradient(out), out)
    return out


def embedding(
    ids: jax.typing.ArrayLike, weight: jax.Array, padding_idx: int | None = None
) -> jax.Array:
    """Rows of ``weight`` picked by integer ``ids`` (``torch.nn.functional.embedding``).

    Args:
        ids: integer indices of any shape (*), each in [0, num_embeddings).
        weight: (num_embeddings, embedding_dim).
        padding_idx: a row (negative counts from the end) that receives no gradient; its
            value is returned as stored.

    Returns:
        (*, embedding_dim) in ``weight``'s dtype.

    Raises:
        ShapeError: for non-integer ``ids``.
        IndexError: for out-of-range ``ids`` when their values are known (outside
            ``jax.jit``); under ``jax.jit`` such positions give NaN rows instead
            (PyTorch always raises).
    """
    check_dtype("embedding", ids, "integer", "ids")
    num_embeddings = jnp.shape(weight)[0]
    padding_idx = _normalize_padding_idx("embedding", padding_idx, num_embeddings)
    _check_index_range("embedding", ids, num_embeddings)
    return _lookup(ids, weight, padding_idx)
