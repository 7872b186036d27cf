"""Dropout layers: Dropout, Dropout1d/2d/3d (channel-wise, channels-last), AlphaDropout
and FeatureAlphaDropout (SELU-preserving)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from funcnet import functional as F
from funcnet.errors import ShapeError, check_input_dtype, check_ndim
from funcnet.functional._dropout import _check_probability
from funcnet.nn._module import Context, Module

__all__ = [
    "AlphaDropout",
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
    "FeatureAlphaDropout",
]


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
        check_input_dtype(ctx, x)
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
        check_input_dtype(ctx, x)
        if not ctx.train or self.p == 0.0:
            return x
        return F.dropout2d(x, self.p, ctx.next_key())


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Dropout1d(Dropout):
    """Zeroes whole channels of (N, L, C) sequences in training mode
    (``torch.nn.Dropout1d``, channels last).

    Each (sample, channel) is dropped with probability ``p`` at every position (mask
    (N, 1, C); (1, C) for unbatched (L, C) input); kept channels are scaled by
    1 / (1 − p). Eval mode is the identity. PyTorch's (N, C, L) / (C, L) are
    (N, L, C) / (L, C) here.

    Args:
        p: drop probability in [0, 1].

    Input (N, L, C) or (L, C), floating; output of the same shape and dtype.
    """

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        check_ndim(ctx, x, (2, 3), layout="(N, L, C) or (L, C)")
        check_input_dtype(ctx, x)
        if not ctx.train or self.p == 0.0:
            return x
        return F.dropout1d(x, self.p, ctx.next_key())


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Dropout3d(Dropout):
    """Zeroes whole channels of (N, D, H, W, C) volumes in training mode
    (``torch.nn.Dropout3d``, channels last).

    Each (sample, channel) is dropped with probability ``p`` at every position (mask
    (N, 1, 1, 1, C); (1, 1, 1, C) for unbatched (D, H, W, C) input); kept channels are
    scaled by 1 / (1 − p). Eval mode is the identity.

    Args:
        p: drop probability in [0, 1].

    Input (N, D, H, W, C) or (D, H, W, C), floating; output of the same shape and dtype.
    """

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        check_ndim(ctx, x, (4, 5), layout="(N, D, H, W, C) or (D, H, W, C)")
        check_input_dtype(ctx, x)
        if not ctx.train or self.p == 0.0:
            return x
        return F.dropout3d(x, self.p, ctx.next_key())


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class AlphaDropout(Dropout):
    """Dropout for self-normalising (SELU) networks (``torch.nn.AlphaDropout``).

    In training mode each element is dropped with probability ``p`` to SELU's negative
    saturation value and the result is scaled and shifted so that an input of zero mean and
    unit variance keeps them (PyTorch's formula: see ``funcnet.functional.alpha_dropout``).
    Eval mode is the identity.

    Args:
        p: drop probability in [0, 1].

    Input: any shape, floating; output of the same shape and dtype.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from funcnet import nn
        >>> drop = nn.AlphaDropout(0.2)
        >>> x = jax.random.normal(jax.random.key(0), (100_000,))
        >>> y, _ = drop.apply({}, {}, x, train=True, key=jax.random.key(1))
        >>> round(float(y.mean()), 1), round(float(y.std()), 1)  # still about (0, 1)
        (0.0, 1.0)
    """

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        check_input_dtype(ctx, x)
        if not ctx.train or self.p == 0.0:
            return x
        return F.alpha_dropout(x, self.p, ctx.next_key(), training=True)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class FeatureAlphaDropout(Dropout):
    """Alpha dropout of whole channels (``torch.nn.FeatureAlphaDropout``, channels last).

    :class:`AlphaDropout`'s values with one draw per (sample, channel): the mask is
    (N, 1, …, 1, C) for (N, *, C) input (PyTorch's (N, C, *)). As in PyTorch, the first
    axis is always taken as the batch. Eval mode is the identity.

    Args:
        p: drop probability in [0, 1].

    Input (N, *, C) with at least 2 dimensions, floating; output of the same shape and
    dtype.
    """

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        if jnp.ndim(x) < 2:
            raise ShapeError(
                f"{ctx.path} ({type(self).__name__}): expected input (N, *, C) with at least 2 "
                f"dimensions, got shape {jnp.shape(x)}"
            )
        check_input_dtype(ctx, x)
        if not ctx.train or self.p == 0.0:
            return x
        return F.feature_alpha_dropout(x, self.p, ctx.next_key(), training=True)
