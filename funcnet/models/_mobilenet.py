"""MobileNetV2 (Sandler et al. 2018), torchvision's ``mobilenet_v2`` structure and names.

Parameters are named as torchvision's (``features.0.0.weight``, ``features.1.conv.0.0``,
``features.18.1.running_mean``, ``classifier.1.weight``), so a torchvision state dict
loads by name with ``models.from_torch``. Images are channels-last, (N, H, W, 3).
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp

from funcnet import nn
from funcnet.errors import check_ndim
from funcnet.models._weights import Pretrainable

__all__ = ["MobileNetV2", "mobilenet_v2"]

# (expansion t, output channels c, repeats n, first stride s), the paper's Table 2.
_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

# torchvision's init: convolutions He-normal over fan_out, Linear N(0, 0.01), biases 0.
_conv_init = functools.partial(nn.init.kaiming_normal, mode="fan_out")
_linear_init = functools.partial(nn.init.normal, std=0.01)


def _make_divisible(value: float, divisor: int, min_value: int | None = None) -> int:
    """``value`` rounded to a multiple of ``divisor``, never below 90% of it (torchvision's)."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1):
    """A bias-free convolution with "same" padding for odd kernels, as torchvision's."""
    return nn.Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=(kernel_size - 1) // 2,
        groups=groups,
        bias=False,
        weight_init=_conv_init,
    )


def _conv_bn_relu6(
    in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """torchvision's ``Conv2dNormActivation`` with ReLU6: Sequential(Conv2d, BatchNorm2d, ReLU6).

    Input (N, H, W, in_channels) → (N, H / stride, W / stride, out_channels).
    """
    return nn.Sequential(
        _conv(in_channels, out_channels, kernel_size, stride, groups),
        nn.BatchNorm2d(out_channels),
        nn.ReLU6(),
    )


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expansion, 3x3 depthwise, linear 1x1 projection.

    ``conv`` is a Sequential of ``Conv2dNormActivation`` (1x1 expansion, absent when
    ``expand_ratio`` is 1), ``Conv2dNormActivation`` (3x3 depthwise, ``stride``), the
    projection ``Conv2d`` and its ``BatchNorm2d``; the input is added back when
    ``stride == 1`` and ``inp == oup``.

    Args:
        inp: input channels; input (N, H, W, inp), floating.
        oup: output channels; output (N, H / stride, W / stride, oup), input's dtype.
        stride: 1 or 2.
        expand_ratio: hidden channels = round(inp * expand_ratio).

    Raises:
        ValueError: a stride other than 1 or 2.
    """

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual: stride should be 1 or 2, got {stride}")
        hidden = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers = [_conv_bn_relu6(inp, hidden, kernel_size=1)] if expand_ratio != 1 else []
        layers += [
            _conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            _conv(hidden, oup, 1),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, ctx: nn.Context, x: jax.Array) -> jax.Array:
        y = self.conv(ctx, x)
        return x + y if self.use_res_connect else y


class MobileNetV2(Pretrainable):
    """MobileNetV2 (``torchvision.models.MobileNetV2``), channels-last.

    ``features``: a Sequential of a stride-2 3x3 ``Conv2dNormActivation`` (32 channels),
    17 :class:`InvertedResidual` blocks and a 1x1 ``Conv2dNormActivation`` to 1280
    channels; then global average pooling and ``classifier`` = Sequential(Dropout,
    Linear). ReLU6 activations, BatchNorm eps 1e-5 and momentum 0.1, channel counts
    scaled by ``width_mult`` and rounded by torchvision's ``_make_divisible``, and
    torchvision's initialisation. 3,504,872 parameters at 1000 classes and width 1.0.

    Input (N, H, W, 3), floating (224 x 224 for ImageNet; any size works: 32 x 32 is
    pooled from a 1 x 1 map); output (N, num_classes) logits, the input's dtype.

    Args:
        num_classes: outputs of the classifier.
        width_mult: multiplier of every layer's channels (the last one only if above 1).
        round_nearest: channels are rounded to a multiple of this (1: no rounding).
        dropout: probability of the dropout before the classifier (training mode).
        weights: a converted weights file (``.safetensors`` / ``.npz``) ``init`` returns.

    References:
        Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
        CVPR 2018, https://arxiv.org/abs/1801.04381.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        round_nearest: int = 8,
        dropout: float = 0.2,
        *,
        weights: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(weights)
        channels = _make_divisible(32 * width_mult, round_nearest)
        self.last_channel: int = _make_divisible(1280 * max(1.0, width_mult), round_nearest)
        features: list[nn.Module] = [_conv_bn_relu6(3, channels, stride=2)]
        for t, c, n, s in _SETTING:
            out = _make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(InvertedResidual(channels, out, s if i == 0 else 1, t))
                channels = out
        features.append(_conv_bn_relu6(channels, self.last_channel, kernel_size=1))
        self.features: nn.Sequential = nn.Sequential(*features)
        self.classifier: nn.Sequential = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(
                self.last_channel, num_classes, weight_init=_linear_init, bias_init=nn.init.zeros
            ),
        )

    def forward(self, ctx: nn.Context, x: jax.Array) -> jax.Array:
        check_ndim(ctx, x, 4, layout="(N, H, W, 3)")
        x = self.features(ctx, x)
        x = jnp.mean(x, axis=(1, 2))
        return self.classifier(ctx, x)


def mobilenet_v2(
    num_classes: int = 1000,
    width_mult: float = 1.0,
    dropout: float = 0.2,
    *,
    weights: str | os.PathLike[str] | None = None,
) -> MobileNetV2:
    """MobileNetV2 as ``torchvision.models.mobilenet_v2``: 3,504,872 parameters at 1000
    classes. Input (N, H, W, 3) floating, output (N, num_classes). See :class:`MobileNetV2`.

    Args:
        num_classes: outputs of the classifier.
        width_mult: multiplier of every layer's channels.
        dropout: probability of the dropout before the classifier (training mode).
        weights: a converted weights file (``.safetensors`` / ``.npz``) ``init`` returns.
    """
    return MobileNetV2(num_classes, width_mult, dropout=dropout, weights=weights)
