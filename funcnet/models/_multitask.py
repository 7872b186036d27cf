"""Multi-task models: one shared trunk, one head per task, a dict of outputs.

``MultiTask(trunk, heads)`` puts any trunk (an MLP, a ResNet without its classifier)
under any heads; ``MultiTaskNet`` is the tutorials' MLP version, Linear heads on an MLP
trunk. Train them with a loss that sums the heads' losses: see examples/multi_task.py.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from funcnet import nn
from funcnet.models._weights import Pretrainable

__all__ = ["MultiTask", "MultiTaskNet"]


class MultiTask(Pretrainable):
    """A shared ``trunk`` followed by ``heads``, one per task, as a PyTorch user writes it.

    ``forward`` runs the trunk once and every head on its features, and returns
    ``{name: heads[name](features)}`` in the order of ``heads``. State-dict keys are
    ``trunk.*`` and ``heads.<name>.*`` (PyTorch's ``nn.ModuleDict``).

    Input: whatever ``trunk`` takes. Output: a dict of each head's output.

    Args:
        trunk: the shared feature extractor.
        heads: ``{task name: module}``; each takes the trunk's output.
        weights: optional weights file for ``init`` (see ``Pretrainable``).

    Raises:
        ValueError: no heads.
    """

    def __init__(
        self,
        trunk: nn.Module,
        heads: Mapping[str, nn.Module],
        *,
        weights: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(weights)
        if not heads:
            raise ValueError(f"{type(self).__name__}: give at least one head")
        self.trunk = trunk
        self.heads: nn.ModuleDict = nn.ModuleDict(dict(heads))

    def forward(self, ctx: nn.Context, x: Any) -> dict[str, Any]:
        features = self.trunk(ctx, x)
        return {name: head(ctx, features) for name, head in self.heads.items()}


class MultiTaskNet(MultiTask):
    """An MLP trunk with one Linear head per task: the tutorials' multi-task network.

    ``trunk`` is Flatten, then Linear and ReLU for each of ``hidden_sizes`` (and
    Dropout(dropout) after each ReLU when dropout > 0); ``heads[name]`` is
    Linear(hidden_sizes[-1], num_outputs). Images are flattened in (H, W, C) order
    (PyTorch's when C = 1).

    Input: (N, H, W, C) or (N, in_features), floating. Output: ``{name: logits}``,
    each (N, num_outputs) in the input's dtype. Parameters with
    ``MultiTaskNet(64, (128, 64), {"digit": 10, "parity": 2})``: 17,356.

    Args:
        in_features: H·W·C of the input.
        hidden_sizes: widths of the trunk's hidden layers (at least one).
        heads: ``{task name: number of outputs}``, e.g. ``{"digit": 10, "parity": 2}``.
        dropout: dropout probability after each trunk layer (0: none).
        weights: optional weights file for ``init`` (see ``Pretrainable``).

    Raises:
        ValueError: no hidden sizes or no heads.
    """

    def __init__(
        self,
        in_features: int,
        hidden_sizes: Sequence[int],
        heads: Mapping[str, int],
        *,
        dropout: float = 0.0,
        weights: str | os.PathLike[str] | None = None,
    ) -> None:
        if not hidden_sizes:
            raise ValueError("MultiTaskNet: give at least one hidden size")
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip((in_features, *hidden_sizes), hidden_sizes):
            layers += [nn.Linear(a, b), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
        width = hidden_sizes[-1]
        super().__init__(
            nn.Sequential(*layers),
            {name: nn.Linear(width, n) for name, n in heads.items()},
            weights=weights,
        )
        self.in_features = in_features
