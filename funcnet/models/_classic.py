"""Classic small networks: a multilayer perceptron, LeNet-5 and the CIFAR-10 tutorial CNN.

Attribute names are those of the PyTorch models they reproduce (``conv1``, ``fc1``, …),
so their ``state_dict`` loads with ``models.from_torch``. Images are channels-last
(N, H, W, C).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence

import jax

import funcnet.functional as F
from funcnet import nn
from funcnet.models._weights import Pretrainable

__all__ = ["MLP", "LeNet5", "TutorialCNN"]

Weights = str | os.PathLike[str] | None


class MLP(Pretrainable):
    """A multilayer perceptron: Flatten, then Linear and ReLU layers, then a Linear.

    The PyTorch tutorials' MLP, written with one attribute per layer: ``fc1``, ``fc2``,
    …, ``fc{len(hidden_sizes) + 1}`` (the last one gives the logits), so a PyTorch model
    with ``self.fc1 = nn.Linear(784, 128)``, ``self.fc2 = nn.Linear(128, 10)`` loads by
    name. 101,770 parameters at the default configuration.

    The input is flattened as given, in funcnet's order: a PyTorch MLP trained on
    flattened channels-first images of several channels needs its inputs in that order
    (for single-channel images, such as MNIST's, both orders agree).

    Args:
        in_features: number of input features after flattening.
        hidden_sizes: width of each hidden layer, in order.
        num_classes: number of output logits.
        weights: a weights file (``.safetensors`` or ``.npz``) for ``init`` to return.

    Input: (N, *) float, the trailing axes multiplying to ``in_features`` (e.g.
    (N, 28, 28) or (N, 28, 28, 1) for 784). Output: (N, num_classes) logits, same dtype.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from funcnet import models
        >>> model = models.MLP()
        >>> params, state = model.init(jax.random.key(0))
        >>> logits, state = model.apply(params, state, jnp.zeros((8, 28, 28, 1)))
        >>> logits.shape
        (8, 10)
    """

    def __init__(
        self,
        in_features: int = 784,
        hidden_sizes: Sequence[int] = (128,),
        num_classes: int = 10,
        *,
        weights: Weights = None,
    ) -> None:
        super().__init__(weights)
        self.in_features = in_features
        self.hidden_sizes: tuple[int, ...] = tuple(hidden_sizes)
        self.num_classes = num_classes
        self.flatten: nn.Flatten = nn.Flatten()
        sizes = (in_features, *self.hidden_sizes, num_classes)
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes), start=1):
            setattr(self, f"fc{i}", nn.Linear(fan_in, fan_out))

    def forward(self, ctx: nn.Context, x: jax.Array) -> jax.Array:
        x = self.flatten(ctx, x)
        for i in range(1, len(self.hidden_sizes) + 1):
            x = F.relu(getattr(self, f"fc{i}")(ctx, x))
        return getattr(self, f"fc{len(self.hidden_sizes) + 1}")(ctx, x)


class LeNet5(Pretrainable):
    """LeNet-5 (LeCun et al. 1998) as commonly written in PyTorch for 28x28 MNIST.

    conv1 (6@5x5, padding 2) → tanh → 2x2 average pool → conv2 (16@5x5) → tanh → 2x2
    average pool → flatten (16·5·5) → fc1 (120) → tanh → fc2 (84) → tanh → fc3
    (num_classes). The padding on 28x28 inputs gives the paper's 32x32 geometry; tanh
    and average pooling stand for the paper's scaled tanh and trainable subsampling.
    61,706 parameters at 10 classes and one input channel.

    Args:
        num_classes: number of output logits.
        in_channels: channels of the input images.
        weights: a weights file (``.safetensors`` or ``.npz``) for ``init`` to return.

    Input: (N, 28, 28, in_channels) float32. Output: (N, num_classes) logits.
    """

    def __init__(
        self, num_classes: int = 10, in_channels: int = 1, *, weights: Weights = None
    ) -> None:
        super().__init__(weights)
        self.conv1: nn.Conv2d = nn.Conv2d(in_channels, 6, 5, padding=2)
        self.conv2: nn.Conv2d = nn.Conv2d(6, 16, 5)
        self.pool: nn.AvgPool2d = nn.AvgPool2d(2)
        self.flatten: nn.Flatten = nn.Flatten()
        self.fc1: nn.Linear = nn.Linear(16 * 5 * 5, 120)
        self.fc2: nn.Linear = nn.Linear(120, 84)
        self.fc3: nn.Linear = nn.Linear(84, num_classes)

    def torch_flatten_inputs(self) -> dict[str, tuple[int, ...]]:
        """``fc1`` reads PyTorch's (16, 5, 5) flatten (see ``Pretrainable``)."""
        return {"fc1": (16, 5, 5)}

    def forward(self, ctx: nn.Context, x: jax.Array) -> jax.Array:
        x = self.pool(ctx, F.tanh(self.conv1(ctx, x)))  # (N, 14, 14, 6)
        x = self.pool(ctx, F.tanh(self.conv2(ctx, x)))  # (N, 5, 5, 16)
        x = F.tanh(self.fc1(ctx, self.flatten(ctx, x)))
        x = F.tanh(self.fc2(ctx, x))
        return self.fc3(ctx, x)


class TutorialCNN(Pretrainable):
    """The CIFAR-10 CNN of the PyTorch-style tutorial in examples/cifar_cnn.py.

    conv1 (32@3x3, padding 1) → ReLU → 2x2 max pool → conv2 (64@3x3, padding 1) → ReLU
    → 2x2 max pool → flatten (64·8·8) → fc1 (128) → ReLU → fc2 (num_classes).
    545,098 parameters at 10 classes.

    Args:
        num_classes: number of output logits.
        weights: a weights file (``.safetensors`` or ``.npz``) for ``init`` to return.

    Input: (N, 32, 32, 3) float32. Output: (N, num_classes) logits.
    """

    def __init__(self, num_classes: int = 10, *, weights: Weights = None) -> None:
        super().__init__(weights)
        self.conv1: nn.Conv2d = nn.Conv2d(3, 32, 3, padding=1)
        self.conv2: nn.Conv2d = nn.Conv2d(32, 64, 3, padding=1)
        self.pool: nn.MaxPool2d = nn.MaxPool2d(2)
        self.flatten: nn.Flatten = nn.Flatten()
        self.fc1: nn.Linear = nn.Linear(64 * 8 * 8, 128)
        self.fc2: nn.Linear = nn.Linear(128, num_classes)

    def torch_flatten_inputs(self) -> dict[str, tuple[int, ...]]:
        """``fc1`` reads PyTorch's (64, 8, 8) flatten (see ``Pretrainable``)."""
        return {"fc1": (64, 8, 8)}

    def forward(self, ctx: nn.Context, x: jax.Array) -> jax.Array:
        x = self.pool(ctx, F.relu(self.conv1(ctx, x)))  # (N, 16, 16, 32)
        x = self.pool(ctx, F.relu(self.conv2(ctx, x)))  # (N, 8, 8, 64)
        x = F.relu(self.fc1(ctx, self.flatten(ctx, x)))
        return self.fc2(ctx, x)
