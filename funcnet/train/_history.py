"""History: what fit recorded, per epoch and per step."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class History:
    """The records of a ``fit`` run.

    Attributes:
        epochs: one dict per epoch: ``epoch``, the training means (``loss``, metrics),
            ``val_*`` evaluation results, ``lr`` when the optimizer stores one, ``time``
            (seconds) and ``samples_per_s``.
        steps: one dict per optimizer step: ``step``, ``epoch``, ``loss`` and the step's
            metrics (fetched from the device in groups, every ``log_every`` steps).
    """

    epochs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    steps: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def history(self) -> dict[str, list[Any]]:
        """Keras' view: ``{"loss": [per epoch], "val_loss": [...], ...}``."""
        keys: list[str] = []
        for record in self.epochs:
            keys.extend(k for k in record if k not in keys)
        return {k: [record.get(k) for record in self.epochs] for k in keys}

    def plot(self, path: str, keys: list[str] | None = None) -> str:
        """Draws loss and metric curves per epoch (and the per-step loss) to a PNG.

        Needs matplotlib (``pip install "funcnet[plot]"``).

        Args:
            path: the PNG file to write.
            keys: the epoch series to draw (default: every numeric one but ``epoch``,
                ``time``, ``samples_per_s`` and ``lr``).

        Returns:
            ``path``.

        Raises:
            ImportError: matplotlib is not installed.
        """
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as err:
            raise ImportError('History.plot needs matplotlib: pip install "funcnet[plot]"') from err
        series = self.history
        skip = {"epoch", "time", "samples_per_s", "lr"}
        keys = keys or [
            k
            for k, v in series.items()
            if k not in skip and all(isinstance(x, int | float) for x in v if x is not None)
        ]
        losses = [k for k in keys if "loss" in k]
        others = [k for k in keys if k not in losses]
        fig, axes = plt.subplots(
            1, 2 if others else 1, figsize=(11 if others else 6, 4), squeeze=False
        )
        epochs = [r["epoch"] + 1 for r in self.epochs]
        if self.steps and self.epochs:
            per_epoch = max(1, len(self.steps) // len(self.epochs))
            xs = [1 + i / per_epoch for i in range(len(self.steps))]
            axes[0][0].plot(xs, [s["loss"] for s in self.steps], alpha=0.3, label="loss (steps)")
        for k in losses:
            axes[0][0].plot(epochs, series[k], marker="o", label=k)
        axes[0][0].set_xlabel("epoch")
        axes[0][0].set_title("loss")
        axes[0][0].legend()
        if others:
            for k in others:
                axes[0][1].plot(epochs, series[k], marker="o", label=k)
            axes[0][1].set_xlabel("epoch")
            axes[0][1].set_title("metrics")
            axes[0][1].legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path
