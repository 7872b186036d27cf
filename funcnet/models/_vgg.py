"""VGG-11 and VGG-16, with and without BatchNorm, with torchvision's structure and names.

``features`` (a Sequential of 3x3 convolutions, BatchNorm, ReLU and 2x2 max-pools),
``avgpool`` (adaptive average pooling to 7x7) and ``classifier`` (three Linear layers
with ReLU and Dropout) give torchvision's state-dict keys (``features.0.weight``,
``classifier.6.bias``, …). Images are channels-last (N, H, W, 3).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

import jax

from funcnet import nn
from funcnet.models._weights import Pretrainable

__all__ = ["VGG", "vgg11", "vgg11_bn", "vgg16", "vgg16_bn"]

Weights = str | os.PathLike[str] | None

#: torchvision's VGG initialisation: convolutions kaiming_normal_(fan_out, relu) with zero
#: bias; Linear N(0, 0.01²) with zero bias; BatchNorm weight 1, bias 0 (the default).
_CONV_INIT = functools.partial(nn.init.kaiming_normal, mode="fan_out", nonlinearity="relu")
_LINEAR_INIT = functools.partial(nn.init.normal, std=0.01)

#: torchvision's configurations: output channels of each 3x3 convolution, "M" a max-pool.
CFGS: dict[str, tuple[int | str, ...]] = {
    "A": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "D": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
}


def _make_features(cfg: Sequence[int | str], batch_norm: bool) -> nn.Sequential:
    """torchvision's ``make_layers``: the ``features`` Sequential for a configuration."""
    layers: list[Any] = []
    in_channels = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, stride=2))
            continue
        conv = nn.Conv2d(
            in_channels, v, 3, padding=1, weight_init=_CONV_INIT, bias_init=nn.init.zeros
        )
        layers += [conv, nn.BatchNorm2d(v), nn.ReLU()] if batch_norm else [conv, nn.ReLU()]
        in_channels = v
    return nn.Sequential(*layers)


def _linear(in_features: int, out_features: int) -> nn.Linear:
    return nn.Linear(in_features, out_features, weight_init=_LINEAR_INIT, bias_init=nn.init.zeros)


class VGG(Pretrainable):
    """VGG (Simonyan and Zisserman 2015, "Very Deep Convolutional Networks for
    Large-Scale Image Recognition"), as torchvision's ``VGG``.

    ``features``, then ``avgpool`` (``AdaptiveAvgPool2d((7, 7))``: PyTorch's bins, so any
    input of at least 32x32 works), a flatten, and ``classifier``: Linear(512·7·7, 4096),
    ReLU, Dropout, Linear(4096, 4096), ReLU, Dropout, Linear(4096, num_classes). The
    classifier is initialised as torchvision's (N(0, 0.01²) weights, zero biases); the
    factories' ``features`` likewise (kaiming-normal fan_out convolutions, zero biases).

    The flatten is channels-last, (7, 7, 512); PyTorch's is (512, 7, 7):
    ``models.from_torch`` reorders ``classifier.0``'s rows.

    Args:
        features: the convolutional part, a Sequential ending with 512 channels.
        num_classes: number of output logits.
        dropout: drop probability of the classifier's two Dropout layers.
        weights: a weights file (``.safetensors`` or ``.npz``) for ``init`` to return.

    Input: (N, H, W, 3) float32 with H, W ≥ 32. Output: (N, num_classes) float32 logits.
    """

    def __init__(
        self,
        features: nn.Module,
        *,
        num_classes: int = 1000,
        dropout: float = 0.5,
        weights: Weights = None,
    ) -> None:
        super().__init__(weights)
        self.num_classes = num_classes
        self.features = features
        self.avgpool: nn.AdaptiveAvgPool2d = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier: nn.Sequential = nn.Sequential(
            _linear(512 * 7 * 7, 4096),
            nn.ReLU(),
            nn.Dropout(dropout),
            _linear(4096, 4096),
            nn.ReLU(),
            nn.Dropout(dropout),
            _linear(4096, num_classes),
        )

    def torch_flatten_inputs(self) -> dict[str, tuple[int, ...]]:
        """``classifier.0`` reads PyTorch's (512, 7, 7) flatten (see ``Pretrainable``)."""
        return {"classifier.0": (512, 7, 7)}

    def forward(self, ctx: nn.Context, x: jax.Array) -> jax.Array:
        x = self.avgpool(ctx, self.features(ctx, x))  # (N, 7, 7, 512)
        return self.classifier(ctx, x.reshape(x.shape[0], -1))


def _vgg(cfg: str, batch_norm: bool, num_classes: int, dropout: float, weights: Weights) -> VGG:
    features = _make_features(CFGS[cfg], batch_norm)
    return VGG(features, num_classes=num_classes, dropout=dropout, weights=weights)


def vgg11(*, num_classes: int = 1000, dropout: float = 0.5, weights: Weights = None) -> VGG:
    """VGG-11 (configuration "A"), torchvision's ``vgg11``.

    132,863,336 parameters at 1000 classes.
    Input (N, H, W, 3) float32, H, W ≥ 32; output (N, num_classes); see :class:`VGG`.
    """
    return _vgg("A", False, num_classes, dropout, weights)


def vgg11_bn(*, num_classes: int = 1000, dropout: float = 0.5, weights: Weights = None) -> VGG:
    """VGG-11 (configuration "A") with BatchNorm after each convolution (``vgg11_bn``).

    132,868,840 parameters at 1000 classes.
    Input (N, H, W, 3) float32, H, W ≥ 32; output (N, num_classes); see :class:`VGG`.
    """
    return _vgg("A", True, num_classes, dropout, weights)


def vgg16(*, num_classes: int = 1000, dropout: float = 0.5, weights: Weights = None) -> VGG:
    """VGG-16 (configuration "D"), torchvision's ``vgg16``.

    138,357,544 parameters at 1000 classes.
    Input (N, H, W, 3) float32, H, W ≥ 32; output (N, num_classes); see :class:`VGG`.

    Examples:
        >>> import jax
        >>> from funcnet import models, nn
        >>> model = models.vgg16()
        >>> params, state = jax.eval_shape(model.init, jax.random.key(0))  # shapes only
        >>> nn.num_parameters(params)
        138357544
        >>> list(nn.state_dict(params))[:2]
        ['classifier.0.bias', 'classifier.0.weight']
    """
    return _vgg("D", False, num_classes, dropout, weights)


def vgg16_bn(*, num_classes: int = 1000, dropout: float = 0.5, weights: Weights = None) -> VGG:
    """VGG-16 (configuration "D") with BatchNorm after each convolution (``vgg16_bn``).

    138,365,992 parameters at 1000 classes.
    Input (N, H, W, 3) float32, H, W ≥ 32; output (N, num_classes); see :class:`VGG`.
    """
    return _vgg("D", True, num_classes, dropout, weights)
