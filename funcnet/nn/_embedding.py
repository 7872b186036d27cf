"""Embedding and EmbeddingBag: lookup tables of learned vectors."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from funcnet.errors import check_dtype
from funcnet.functional._embedding import (
    _check_bag_mode,
    _check_index_range,
    _check_sparse,
    _embedding_bag,
    _normalize_padding_idx,
    _rows,
)
from funcnet.nn import init as init_lib
from funcnet.nn._module import Context, Initializer, Module

__all__ = ["Embedding", "EmbeddingBag"]


def _init_table(
    key: jax.Array,
    num_embeddings: int,
    embedding_dim: int,
    padding_idx: int | None,
    weight_init: Initializer | None,
    dtype: Any,
) -> dict:
    """PyTorch's initialisation: N(0, 1), with the padding row zeroed."""
    shape = (num_embeddings, embedding_dim)
    weight = (weight_init or init_lib.normal)(key, shape, dtype)
    if padding_idx is not None:
        weight = weight.at[padding_idx].set(0)
    return {"weight": weight}


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
        max_norm: if given, each looked-up row whose ``norm_type``-norm exceeds it is
            returned rescaled to norm ``max_norm`` (PyTorch's factor
            ``max_norm / (norm + 1e-7)``). PyTorch also rescales those rows of its weight
            in place; funcnet is pure, so ``params["weight"]`` is not changed. The
            gradient passes through the rescaling unchanged, as PyTorch's.
        norm_type: the p of the p-norm for ``max_norm``.
        scale_grad_by_freq: divide the gradient of each position by the number of times
            its id occurs in the input, as PyTorch.
        sparse: must be False: sparse gradients are a PyTorch tensor format and JAX's
            gradients are dense (ValueError for True).
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
        >>> capped = nn.Embedding(100, 16, max_norm=1.0)
        >>> y, _ = capped.apply(params, {}, jnp.array([5, 7]))
        >>> jnp.linalg.norm(y, axis=-1).round(4).tolist()  # N(0, 1) rows of 16: norms ~4
        [1.0, 1.0]
    """

    num_embeddings: int
    embedding_dim: int
    padding_idx: int | None = None
    max_norm: float | None = None
    norm_type: float = 2.0
    scale_grad_by_freq: bool = False
    sparse: bool = False
    weight_init: Initializer | None = None
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        _check_sparse("Embedding", self.sparse)
        self.padding_idx = _normalize_padding_idx(
            "Embedding", self.padding_idx, self.num_embeddings
        )

    def init(self, key: jax.Array) -> tuple[dict[str, Any], dict[str, Any]]:
        params = _init_table(
            key,
            self.num_embeddings,
            self.embedding_dim,
            self.padding_idx,
            self.weight_init,
            self.dtype,
        )
        return params, {}

    def forward(self, ctx: Context, ids: jax.Array) -> jax.Array:
        check_dtype(ctx, ids, "integer", "ids")
        _check_index_range(f"{ctx.path} (Embedding)", ids, self.num_embeddings)
        weight = ctx.param("weight")
        return _rows(
            ids, weight, self.padding_idx, self.max_norm, self.norm_type, self.scale_grad_by_freq
        )


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class EmbeddingBag(Module):
    """Sums, means or maxima of bags of embeddings (``torch.nn.EmbeddingBag``).

    ``forward(ids, offsets=None, per_sample_weights=None)``: the bags are the rows of 2-D
    ``ids`` (B, N), or for 1-D ``ids`` the runs that start at each entry of ``offsets``
    (B,) (bag b is ``ids[offsets[b]:offsets[b + 1]]``, the last one runs to the end;
    with ``include_last_offset``, ``offsets`` is (B + 1,) and its last entry ends the last
    bag). The number of bags comes from ``offsets``' shape, so ``offsets`` may be traced
    under ``jax.jit``. Ids equal to ``padding_idx`` are left out of their bag (and of the
    mean's count); an empty bag gives zeros. ``per_sample_weights`` (ids' shape) scale
    each row before the sum (``mode="sum"`` only).

    The weight is (num_embeddings, embedding_dim), initialised N(0, 1) with the
    ``padding_idx`` row zeroed, as PyTorch.

    Args:
        num_embeddings: the number of rows.
        embedding_dim: the size of each vector.
        max_norm: if given, looked-up rows with a larger ``norm_type``-norm are rescaled
            to it, as :class:`Embedding` (the stored weight is not changed).
        norm_type: the p of the p-norm for ``max_norm``.
        scale_grad_by_freq: divide each position's gradient by the number of times its id
            occurs in the input (not with ``mode="max"``).
        mode: ``"sum"``, ``"mean"`` (default) or ``"max"``.
        sparse: must be False: JAX has no sparse gradients.
        include_last_offset: whether ``offsets`` ends with the end of the last bag.
        padding_idx: an id left out of every bag, whose row receives no gradient;
            negative counts from the end.
        weight_init: optional initialiser ``(key, shape, dtype) -> array``.
        dtype: dtype of the weight (and of the output).

    Input: integer ids (B, N), or (L,) with offsets (B,); output (B, embedding_dim) in
    ``dtype`` (16-bit tables are reduced in float32).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from funcnet import nn
        >>> bag = nn.EmbeddingBag(10, 3, mode="sum")
        >>> params, _ = bag.init(jax.random.key(0))
        >>> ids, offsets = jnp.array([1, 2, 4, 5, 4, 3, 2, 9]), jnp.array([0, 4])
        >>> y, _ = bag.apply(params, {}, ids, offsets)
        >>> y.shape
        (2, 3)
        >>> y2, _ = bag.apply(params, {}, ids.reshape(2, 4))  # the same two bags
        >>> bool(jnp.allclose(y, y2))
        True
    """

    num_embeddings: int
    embedding_dim: int
    max_norm: float | None = None
    norm_type: float = 2.0
    scale_grad_by_freq: bool = False
    mode: str = "mean"
    sparse: bool = False
    include_last_offset: bool = False
    padding_idx: int | None = None
    weight_init: Initializer | None = None
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        _check_sparse("EmbeddingBag", self.sparse)
        _check_bag_mode("EmbeddingBag", self.mode, self.scale_grad_by_freq)
        self.padding_idx = _normalize_padding_idx(
            "EmbeddingBag", self.padding_idx, self.num_embeddings
        )

    def init(self, key: jax.Array) -> tuple[dict[str, Any], dict[str, Any]]:
        params = _init_table(
            key,
            self.num_embeddings,
            self.embedding_dim,
            self.padding_idx,
            self.weight_init,
            self.dtype,
        )
        return params, {}

    def forward(
        self,
        ctx: Context,
        ids: jax.Array,
        offsets: jax.Array | None = None,
        per_sample_weights: jax.Array | None = None,
    ) -> jax.Array:
        return _embedding_bag(
            f"{ctx.path} (EmbeddingBag)",
            ids,
            ctx.param("weight"),
            offsets,
            self.max_norm,
            self.norm_type,
            self.scale_grad_by_freq,
            self.mode,
            per_sample_weights,
            self.include_last_offset,
            self.padding_idx,
        )
