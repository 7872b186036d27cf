"""ResNet-18/34/50 (He et al. 2016) with torchvision's structure, names and initialisation.

Every key of torchvision's ``resnet18().state_dict()`` (``conv1.weight``,
``layer1.0.bn1.running_mean``, ``layer2.0.downsample.0.weight``, ``fc.bias``, …) names
the same parameter here, so ``models.from_torch`` loads torchvision's weights by name.
The Bottleneck block strides in its 3x3 convolution (torchvision's "ResNet v1.5").
Images are channels-last (N, H, W, 3).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import ClassVar

import jax

import funcnet.functional as F
from funcnet import nn
from funcnet.models._weights import Pretrainable

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet34", "resnet50"]

Weights = str | os.PathLike[str] | None

#: torchvision's convolution initialisation: kaiming_normal_(mode="fan_out", "relu").
_CONV_INIT = functools.partial(nn.init.kaiming_normal, mode="fan_out", nonlinearity="relu")

STEMS = ("imagenet", "cifar")


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (torchvision's ``conv3x3``)."""
    return nn.Conv2d(
        in_planes, out_planes, 3, stride=stride, padding=1, bias=False, weight_init=_CONV_INIT
    )


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution with no bias (torchvision's ``conv1x1``)."""
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False, weight_init=_CONV_INIT)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (torchvision's ``BasicBlock``).

    relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), where the shortcut is
    ``downsample`` (a 1x1 convolution and BatchNorm) or the identity.

    Args:
        inplanes: input channels.
        planes: output channels (``expansion`` = 1).
        stride: stride of ``conv1`` (and of ``downsample``).
        downsample: the shortcut's layers when the shape changes, else None.

    Input: (N, H, W, inplanes). Output: (N, H / stride, W / stride, planes).
    """

    expansion: ClassVar[int] = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1: nn.Conv2d = _conv3x3(inplanes, planes, stride)
        self.bn1: nn.BatchNorm2d = nn.BatchNorm2d(planes)
        self.conv2: nn.Conv2d = _conv3x3(planes, planes)
        self.bn2: nn.BatchNorm2d = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, ctx: nn.Context, x: jax.Array) -> jax.Array:
        out = F.relu(self.bn1(ctx, self.conv1(ctx, x)))
        out = self.bn2(ctx, self.conv2(ctx, out))
        identity = x if self.downsample is None else self.downsample(ctx, x)
        return F.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1, 3x3, 1x1 convolutions with a residual connection (torchvision's ``Bottleneck``).

    The stride is on the 3x3 convolution ``conv2`` (ResNet v1.5, as torchvision); the
    output has ``planes * expansion`` channels.

    Args:
        inplanes: input channels.
        planes: channels of the inner convolutions; the output has ``4 * planes``.
        stride: stride of ``conv2`` (and of ``downsample``).
        downsample: the shortcut's layers when the shape changes, else None.

    Input: (N, H, W, inplanes). Output: (N, H / stride, W / stride, 4 * planes).
    """

    expansion: ClassVar[int] = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1: nn.Conv2d = _conv1x1(inplanes, planes)
        self.bn1: nn.BatchNorm2d = nn.BatchNorm2d(planes)
        self.conv2: nn.Conv2d = _conv3x3(planes, planes, stride)
        self.bn2: nn.BatchNorm2d = nn.BatchNorm2d(planes)
        self.conv3: nn.Conv2d = _conv1x1(planes, planes * self.expansion)
        self.bn3: nn.BatchNorm2d = nn.BatchNorm2d(planes * self.expansion)
        self.downsample = downsample
        self.stride = stride

    def forward(self, ctx: nn.Context, x: jax.Array) -> jax.Array:
        out = F.relu(self.bn1(ctx, self.conv1(ctx, x)))
        out = F.relu(self.bn2(ctx, self.conv2(ctx, out)))
        out = self.bn3(ctx, self.conv3(ctx, out))
        identity = x if self.downsample is None else self.downsample(ctx, x)
        return F.relu(out + identity)


Block = type[BasicBlock] | type[Bottleneck]


def _make_layer(
    block: Block, inplanes: int, planes: int, blocks: int, stride: int
) -> tuple[nn.Sequential, int]:
    """One stage (torchvision's ``_make_layer``): the Sequential and its output channels."""
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            _conv1x1(inplanes, planes * block.expansion, stride),
            nn.BatchNorm2d(planes * block.expansion),
        )
    layers = [block(inplanes, planes, stride, downsample)]
    inplanes = planes * block.expansion
    layers += [block(inplanes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers), inplanes


class ResNet(Pretrainable):
    """A residual network (He et al. 2016, "Deep Residual Learning for Image Recognition").

    torchvision's ``ResNet``: stem (``conv1``, ``bn1``, ReLU, ``maxpool``), four stages
    ``layer1``..``layer4`` of 64, 128, 256, 512 planes (stride 2 from ``layer2`` on),
    global average pooling ``avgpool`` and ``fc``. Initialisation is torchvision's:
    convolutions kaiming-normal (fan_out, ReLU gain), BatchNorm weight 1 and bias 0,
    ``fc`` PyTorch's Linear default (torchvision's ``zero_init_residual`` is off).

    ``stem="cifar"`` replaces the stem by a 3x3 convolution, stride 1, padding 1, and no
    max-pool (``maxpool`` is an Identity), as the common CIFAR variants do: for 32x32
    inputs. Its state-dict keys are those of a torchvision ResNet with ``conv1`` and
    ``maxpool`` so replaced.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: number of blocks in each of the four stages.
        num_classes: number of output logits.
        stem: ``"imagenet"`` (7x7 stride-2 convolution and 3x3 stride-2 max-pool) or
            ``"cifar"``.
        weights: a weights file (``.safetensors`` or ``.npz``) for ``init`` to return.

    Input: (N, H, W, 3) float32. Output: (N, num_classes) float32 logits.

    torchvision's weights load with ``models.from_torch(model, tv_model.state_dict())``
    (``models.from_torch``), or from a file converted once by ``funcnet-convert``.

    Raises:
        ValueError: an unknown ``stem``, or ``layers`` not of length 4.
    """

    def __init__(
        self,
        block: Block,
        layers: Sequence[int],
        *,
        num_classes: int = 1000,
        stem: str = "imagenet",
        weights: Weights = None,
    ) -> None:
        super().__init__(weights)
        if stem not in STEMS:
            raise ValueError(f"ResNet: stem must be one of {STEMS}, got {stem!r}")
        if len(layers) != 4:
            raise ValueError(f"ResNet: layers must give 4 stage depths, got {tuple(layers)}")
        self.stem = stem
        self.num_classes = num_classes
        self.conv1: nn.Conv2d = (
            nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False, weight_init=_CONV_INIT)
            if stem == "imagenet"
            else _conv3x3(3, 64)
        )
        self.bn1: nn.BatchNorm2d = nn.BatchNorm2d(64)
        self.maxpool: nn.Module = (
            nn.MaxPool2d(3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()
        )
        inplanes = 64
        for i, (planes, depth) in enumerate(zip((64, 128, 256, 512), layers), start=1):
            stage, inplanes = _make_layer(block, inplanes, planes, depth, 1 if i == 1 else 2)
            setattr(self, f"layer{i}", stage)
        self.avgpool: nn.AdaptiveAvgPool2d = nn.AdaptiveAvgPool2d((1, 1))
        self.fc: nn.Linear = nn.Linear(512 * block.expansion, num_classes)

    def forward(self, ctx: nn.Context, x: jax.Array) -> jax.Array:
        x = F.relu(self.bn1(ctx, self.conv1(ctx, x)))
        x = self.maxpool(ctx, x)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(ctx, x)
        x = self.avgpool(ctx, x)  # (N, 1, 1, C): both flatten orders agree
        return self.fc(ctx, x.reshape(x.shape[0], -1))


def resnet18(*, num_classes: int = 1000, stem: str = "imagenet", weights: Weights = None) -> ResNet:
    """ResNet-18: BasicBlock, stages (2, 2, 2, 2) (torchvision's ``resnet18``).

    11,689,512 parameters at 1000 classes (11,681,832 with ``stem="cifar"``).
    Input (N, H, W, 3) float32, output (N, num_classes); see :class:`ResNet`.

    Examples:
        >>> import jax
        >>> from funcnet import models, nn
        >>> model = models.resnet18(num_classes=10, stem="cifar")
        >>> params, state = jax.eval_shape(model.init, jax.random.key(0))  # shapes only
        >>> nn.num_parameters(params)
        11173962
        >>> params["layer2"]["0"]["downsample"]["0"]["weight"].shape  # (kh, kw, in, out)
        (1, 1, 64, 128)
    """
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes=num_classes, stem=stem, weights=weights)


def resnet34(*, num_classes: int = 1000, stem: str = "imagenet", weights: Weights = None) -> ResNet:
    """ResNet-34: BasicBlock, stages (3, 4, 6, 3) (torchvision's ``resnet34``).

    21,797,672 parameters at 1000 classes.
    Input (N, H, W, 3) float32, output (N, num_classes); see :class:`ResNet`.
    """
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes=num_classes, stem=stem, weights=weights)


def resnet50(*, num_classes: int = 1000, stem: str = "imagenet", weights: Weights = None) -> ResNet:
    """ResNet-50: Bottleneck (v1.5), stages (3, 4, 6, 3) (torchvision's ``resnet50``).

    25,557,032 parameters at 1000 classes.
    Input (N, H, W, 3) float32, output (N, num_classes); see :class:`ResNet`.
    """
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes=num_classes, stem=stem, weights=weights)
