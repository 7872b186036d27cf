"""Dropout layers: Dropout and Dropout2d (channel-wise, NHWC)."""

from __future__ import annotations

import dataclasses

import jax

from funcnet import functional as F
from funcnet.errors import check_dtype, check_ndim
from funcnet.functional._dropout import _check_probability
from funcnet.nn._module import Context, Module

__all__ = ["Dropout", "Dropout2d"]


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Dropout(Module):
    """Zeroes elements with probability ``p`` in training mode (``torch.nn.Dropout``).

    ``p`` is the probability of *dropping*; kept elements are scaled by 1 / (1 − p), so
    eval mode is the identity. Training with 0 < p needs ``apply(..., key=...)``; each
    Dropout layer, and each call of one, draws its own mask from that key.

    Args:
        p: drop probability in [0, 1] (checked here).

    Input: any shape, floating; output of the same shape and dtype.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from funcnet import nn
        >>> drop = nn.Dropout(0.5)
        >>> x = jnp.ones((2, 4))
        >>> drop.apply({}, {}, x)[0] is x  # eval mode: the identity, no key needed
        True
        >>> y, _ = drop.apply({}, {}, x, train=True, key=jax.random.key(0))
        >>> sorted(set(y.ravel().tolist()))  # dropped, or kept and scaled by 1 / (1 - p)
        [0.0, 2.0]
    """

    p: float = 0.5

    def __post_init__(self) -> None:
        _check_probability(type(self).__name__, self.p)

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        check_dtype(ctx, x, "floating")
        if not ctx.train or self.p == 0.0:
            return x
        return F.dropout(x, self.p, ctx.next_key())


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Dropout2d(Dropout):
    """Zeroes whole channels of (N, H, W, C) images in training mode
    (``torch.nn.Dropout2d``, channels last).

    Each (sample, channel) is dropped with probability ``p`` at every position (mask
    (N, 1, 1, C)); kept channels are scaled by 1 / (1 − p). Eval mode is the identity.

    Args:
        p: drop probability in [0, 1].

    Input (N, H, W, C), floating; output of the same shape and dtype.
    """

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        check_ndim(ctx, x, 4, layout="(N, H, W, C)")
        check_dtype(ctx, x, "floating")
        if not ctx.train or self.p == 0.0:
            return x
        return F.dropout2d(x, self.p, ctx.next_key())
