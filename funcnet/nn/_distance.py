"""Distance layers: CosineSimilarity, PairwiseDistance."""

from __future__ import annotations

import dataclasses

import jax

from funcnet.functional._distance import _cosine_similarity, _pairwise_distance
from funcnet.nn._module import Context, Module

__all__ = ["CosineSimilarity", "PairwiseDistance"]


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class CosineSimilarity(Module):
    """Cosine similarity of ``x1`` and ``x2`` along ``dim`` (``torch.nn.CosineSimilarity``).

    Σ (x1 / max(‖x1‖, eps))·(x2 / max(‖x2‖, eps)), as PyTorch computes it (see
    ``funcnet.functional.cosine_similarity``).

    Args:
        dim: the axis holding the vectors. Default −1, the feature axis of channels-last
            inputs; PyTorch's default is 1, its channel axis (for (N, D) inputs, the same
            axis).
        eps: smallest norm divided by.

    Inputs x1, x2: shapes that broadcast together. Output: the broadcast shape without
    axis ``dim``, in the inputs' floating dtype (16-bit computed in float32).
    """

    dim: int = -1
    eps: float = 1e-8

    def forward(self, ctx: Context, x1: jax.Array, x2: jax.Array) -> jax.Array:
        return _cosine_similarity(ctx, x1, x2, self.dim, self.eps)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class PairwiseDistance(Module):
    """‖x1 − x2 + eps‖_p over the last axis (``torch.nn.PairwiseDistance``).

    Args:
        p: the norm's order (any float; ``inf``, ``-inf`` and 0 as ``torch.norm``).
        eps: added to every difference, as PyTorch.
        keepdim: keep the reduced axis with size 1.

    Inputs x1, x2: (N, D) or (D,), or any shapes that broadcast together. Output: (N,)
    or () (the broadcast shape without its last axis), in the inputs' floating dtype
    (16-bit computed in float32).
    """

    p: float = 2.0
    eps: float = 1e-6
    keepdim: bool = False

    def forward(self, ctx: Context, x1: jax.Array, x2: jax.Array) -> jax.Array:
        return _pairwise_distance(ctx, x1, x2, self.p, self.eps, self.keepdim)
