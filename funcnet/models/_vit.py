"""Vision Transformer (Dosovitskiy et al. 2021), torchvision's ``VisionTransformer`` names.

Parameters are named as torchvision's (``conv_proj``, ``class_token``,
``encoder.pos_embedding``, ``encoder.layers.encoder_layer_{i}.ln_1``, ``.self_attention``,
``.ln_2``, ``.mlp.0``, ``.mlp.3``, ``encoder.ln``, ``heads.head``) with torchvision's
shapes (``class_token`` (1, 1, D), ``pos_embedding`` (1, S, D)), so a torchvision state
dict loads with ``models.from_torch``. Images are channels-last, (N, H, W, 3).
"""

from __future__ import annotations

import functools
import math
import os

import jax
import jax.numpy as jnp

from funcnet import nn
from funcnet.errors import ShapeError, check_ndim
from funcnet.models._weights import Pretrainable

__all__ = ["VisionTransformer", "vit_tiny"]

_LayerNorm = functools.partial(nn.LayerNorm, eps=1e-6)


def _mlp_linear(in_features: int, out_features: int) -> nn.Linear:
    """torchvision's MLPBlock init: Xavier-uniform weight, bias N(0, 1e-12)."""
    return nn.Linear(
        in_features,
        out_features,
        weight_init=nn.init.xavier_uniform,
        bias_init=functools.partial(nn.init.normal, std=1e-6),
    )


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``.

    ``mlp`` is Sequential(Linear, GELU, Dropout, Linear, Dropout) (keys ``mlp.0``,
    ``mlp.3``), as torchvision's ``MLPBlock``.

    Input and output (N, S, hidden_dim), floating.
    """

    def __init__(
        self,
        num_heads: int,
        hidden_dim: int,
        mlp_dim: int,
        dropout: float,
        attention_dropout: float,
    ) -> None:
        super().__init__()
        self.ln_1 = _LayerNorm(hidden_dim)
        self.self_attention = nn.MultiheadAttention(
            hidden_dim, num_heads, dropout=attention_dropout, batch_first=True
        )
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = _LayerNorm(hidden_dim)
        self.mlp = nn.Sequential(
            _mlp_linear(hidden_dim, mlp_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            _mlp_linear(mlp_dim, hidden_dim),
            nn.Dropout(dropout),
        )

    def forward(self, ctx: nn.Context, x: jax.Array) -> jax.Array:
        y = self.ln_1(ctx, x)
        y, _ = self.self_attention(ctx, y, y, y, need_weights=False)
        x = x + self.dropout(ctx, y)
        return x + self.mlp(ctx, self.ln_2(ctx, x))


class Encoder(nn.Module):
    """Learned position embedding, dropout, ``num_layers`` :class:`EncoderBlock`, LayerNorm.

    ``pos_embedding`` (1, seq_length, hidden_dim) is drawn N(0, 0.02²) as torchvision's;
    ``layers`` is a Sequential named ``encoder_layer_{i}``.

    Input and output (N, seq_length, hidden_dim), floating.
    """

    def __init__(
        self,
        seq_length: int,
        num_layers: int,
        num_heads: int,
        hidden_dim: int,
        mlp_dim: int,
        dropout: float,
        attention_dropout: float,
    ) -> None:
        super().__init__()
        self.pos_embedding: nn.Parameter = nn.Parameter(
            (1, seq_length, hidden_dim), init=functools.partial(nn.init.normal, std=0.02)
        )
        self.dropout: nn.Dropout = nn.Dropout(dropout)
        blocks = {
            f"encoder_layer_{i}": EncoderBlock(
                num_heads, hidden_dim, mlp_dim, dropout, attention_dropout
            )
            for i in range(num_layers)
        }
        self.layers: nn.Sequential = nn.Sequential(blocks)
        self.ln: nn.LayerNorm = _LayerNorm(hidden_dim)

    def forward(self, ctx: nn.Context, x: jax.Array) -> jax.Array:
        x = x + ctx.param("pos_embedding", x.dtype)
        return self.ln(ctx, self.layers(ctx, self.dropout(ctx, x)))


class VisionTransformer(Pretrainable):
    """Vision Transformer (``torchvision.models.VisionTransformer``), channels-last.

    ``conv_proj`` cuts the image into ``patch_size`` x ``patch_size`` patches and embeds
    each (a strided Conv2d); ``class_token`` (1, 1, hidden_dim) is prepended; the
    :class:`Encoder` adds ``pos_embedding`` and runs ``num_layers`` pre-norm blocks
    (LayerNorm eps 1e-6, multi-head self-attention, GELU MLP); ``heads.head`` (a Linear)
    reads the class token. Initialised as torchvision: truncated-normal patch embedding
    (std sqrt(1 / fan_in)), zero class token, N(0, 0.02²) positions, Xavier-uniform MLP,
    PyTorch's MultiheadAttention init, zero head.

    Input (N, image_size, image_size, 3), floating; output (N, num_classes) logits, the
    input's dtype. :func:`vit_tiny` (ViT-Ti/16) has 5,717,416 parameters at 1000 classes.

    Args:
        image_size: height and width of the input; a multiple of ``patch_size``.
        patch_size: side of the square patches.
        num_layers: encoder blocks.
        num_heads: attention heads; must divide ``hidden_dim``.
        hidden_dim: D, the width of the tokens.
        mlp_dim: hidden width of each block's MLP.
        dropout: dropout probability after the position embedding, attention and MLP.
        attention_dropout: dropout probability on the attention weights.
        num_classes: outputs of the head.
        weights: a converted weights file (``.safetensors`` / ``.npz``) ``init`` returns.

    Raises:
        ValueError: ``image_size`` not a multiple of ``patch_size``.

    References:
        Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image
        Recognition at Scale", ICLR 2021, https://arxiv.org/abs/2010.11929.
    """

    def __init__(
        self,
        image_size: int,
        patch_size: int,
        num_layers: int,
        num_heads: int,
        hidden_dim: int,
        mlp_dim: int,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        num_classes: int = 1000,
        *,
        weights: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(weights)
        if image_size % patch_size:
            raise ValueError(
                f"VisionTransformer: image_size {image_size} is not a multiple of "
                f"patch_size {patch_size}"
            )
        self.image_size = image_size
        self.patch_size = patch_size
        self.hidden_dim = hidden_dim
        fan_in = 3 * patch_size * patch_size
        self.conv_proj: nn.Conv2d = nn.Conv2d(
            3,
            hidden_dim,
            patch_size,
            stride=patch_size,
            weight_init=functools.partial(nn.init.trunc_normal, std=math.sqrt(1 / fan_in)),
            bias_init=nn.init.zeros,
        )
        self.class_token: nn.Parameter = nn.Parameter((1, 1, hidden_dim), init=nn.init.zeros)
        seq_length = (image_size // patch_size) ** 2 + 1
        self.encoder: Encoder = Encoder(
            seq_length, num_layers, num_heads, hidden_dim, mlp_dim, dropout, attention_dropout
        )
        head = nn.Linear(
            hidden_dim, num_classes, weight_init=nn.init.zeros, bias_init=nn.init.zeros
        )
        self.heads: nn.Sequential = nn.Sequential({"head": head})

    def forward(self, ctx: nn.Context, x: jax.Array) -> jax.Array:
        check_ndim(ctx, x, 4, layout="(N, H, W, 3)")
        size = self.image_size
        if x.shape[1:3] != (size, size):
            raise ShapeError(
                f"{ctx.path} (VisionTransformer): expected {size}x{size} images "
                f"(N, {size}, {size}, 3), got shape {tuple(x.shape)}"
            )
        x = self.conv_proj(ctx, x)  # (N, H/p, W/p, D): patches in row-major order
        n = x.shape[0]
        x = jnp.reshape(x, (n, -1, self.hidden_dim))
        token = jnp.broadcast_to(ctx.param("class_token", x.dtype), (n, 1, self.hidden_dim))
        x = self.encoder(ctx, jnp.concatenate([token, x], axis=1))
        return self.heads(ctx, x[:, 0])


def vit_tiny(
    image_size: int = 224,
    patch_size: int = 16,
    num_classes: int = 1000,
    *,
    weights: str | os.PathLike[str] | None = None,
) -> VisionTransformer:
    """ViT-Ti/16 (DeiT-Tiny's architecture): hidden 192, 12 layers, 3 heads, MLP 768;
    5,717,416 parameters at 1000 classes and 224x224 images. Input
    (N, image_size, image_size, 3) floating, output (N, num_classes). See
    :class:`VisionTransformer`; torchvision has no ViT-Ti factory, this is its
    ``VisionTransformer`` with that configuration.

    Args:
        image_size: height and width of the input; a multiple of ``patch_size``.
        patch_size: side of the square patches.
        num_classes: outputs of the head.
        weights: a converted weights file (``.safetensors`` / ``.npz``) ``init`` returns.
    """
    return VisionTransformer(
        image_size, patch_size, 12, 3, 192, 768, num_classes=num_classes, weights=weights
    )
