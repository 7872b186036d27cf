"""Embedding: a lookup table of learned vectors."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from funcnet.errors import check_dtype
from funcnet.functional._embedding import (
    _check_index_range,
    _lookup,
    _normalize_padding_idx,
)
from funcnet.nn import init as init_lib
from funcnet.nn._module import Context, Initializer, Module

__all__ = ["Embedding"]


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Embedding(Module):
    """A table of ``num_embeddings`` vectors looked up by integer id (``torch.nn.Embedding``).

    The weight is (num_embeddings, embedding_dim), PyTorch's layout, initialised N(0, 1)
    with the ``padding_idx`` row zeroed, as PyTorch. The padding row never receives a
    gradient (its stored value is still returned). Out-of-range ids raise IndexError when
    their values are known (eager ``apply``); under ``jax.jit`` they give NaN rows.

    Args:
        num_embeddings: the number of rows.
        embedding_dim: the size of each vector.
        padding_idx: a row that receives no gradient; negative counts from the end (it is
            stored normalised, as in PyTorch).
        weight_init: optional initialiser ``(key, shape, dtype) -> array``.
        dtype: dtype of the weight (and of the output).

    Input: integer ids of any shape (*); output (*, embedding_dim) in ``dtype``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from funcnet import nn
        >>> emb = nn.Embedding(100, 16, padding_idx=0)
        >>> params, _ = emb.init(jax.random.key(0))
        >>> y, _ = emb.apply(params, {}, jnp.array([[5, 7, 0, 0]]))
        >>> y.shape, float(abs(y[0, 2]).sum())  # the padding row starts at zero
        ((1, 4, 16), 0.0)
    """

    num_embeddings: int
    embedding_dim: int
    padding_idx: int | None = None
    weight_init: Initializer | None = None
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        self.padding_idx = _normalize_padding_idx(
            "Embedding", self.padding_idx, self.num_embeddings
        )

    def init(self, key: jax.Array) -> tuple[dict, dict]:
        shape = (self.num_embeddings, self.embedding_dim)
        weight = (self.weight_init or init_lib.normal)(key, shape, self.dtype)
        if self.padding_idx is not None:
            weight = weight.at[self.padding_idx].set(0)
        return {"weight": weight}, {}

    def forward(self, ctx: Context, ids: jax.Array) -> jax.Array:
        check_dtype(ctx, ids, "integer", "ids")
        _check_index_range(f"{ctx.path} (Embedding)", ids, self.num_embeddings)
        return _lookup(ids, ctx.param("weight"), self.padding_idx)
