"""History: what fit recorded, per epoch and per step."""

from __future__ import annotations

import collections
import dataclasses
import functools
import io
import math
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_NOT_PLOTTED = ("epoch", "time", "samples_per_s", "lr")


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


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

    def plot(
        self, path: str | os.PathLike[str] | None = None, keys: list[str] | None = None
    ) -> Figure:
        """Draws the loss (per epoch, and per step behind it) and the metrics per epoch.

        Builds a ``matplotlib.figure.Figure`` without pyplot, so the matplotlib backend and
        pyplot's figures are left alone: in Jupyter the returned figure shows once, as the
        cell's value. Needs matplotlib (``pip install "funcnet[plot]"``).

        Args:
            path: also save the figure there (the format follows the suffix, e.g. ``.png``).
            keys: the epoch series to draw (default: every numeric one but ``epoch``,
                ``time``, ``samples_per_s`` and ``lr``). Keys holding ``"loss"`` go on the
                left axes, the others on the right.

        Returns:
            The ``matplotlib.figure.Figure``.

        Raises:
            ImportError: matplotlib is not installed.
            ValueError: nothing was recorded.
            KeyError: a key that no epoch record holds.
        """
        try:
            from matplotlib.figure import Figure
        except ImportError as err:
            raise ImportError('History.plot needs matplotlib: pip install "funcnet[plot]"') from err
        if not self.epochs:
            raise ValueError("History.plot: no epoch was recorded")
        keys = self._plot_keys(keys)
        losses = [k for k in keys if "loss" in k]
        others = [k for k in keys if k not in losses]
        fig = Figure(figsize=(11 if others else 6, 4), layout="constrained")
        loss_axes, *metric_axes = fig.subplots(1, 2 if others else 1, squeeze=False)[0]
        self._draw_steps(loss_axes)
        self._draw_epochs(loss_axes, losses, "loss")
        if others:
            self._draw_epochs(metric_axes[0], others, "metrics")
        if path is not None:
            fig.savefig(path, dpi=100)
        # Jupyter draws a Figure only once pyplot has loaded its backend; this draws it anyway.
        fig._repr_png_ = functools.partial(_png, fig)
        return fig

    def _plot_keys(self, keys: list[str] | None) -> list[str]:
        series = self.history
        if keys is not None:
            missing = [k for k in keys if k not in series]
            if missing:
                raise KeyError(f"History.plot: {missing} not in the epoch records {sorted(series)}")
            return list(keys)
        return [
            k
            for k, values in series.items()
            if k not in _NOT_PLOTTED and all(_is_number(v) for v in values if v is not None)
        ]

    def _draw_steps(self, axes: Axes) -> None:
        """The per-step loss, at x = epoch + (i + 1) / steps in that epoch."""
        per_epoch = collections.Counter(s["epoch"] for s in self.steps if "loss" in s)
        seen: collections.Counter[int] = collections.Counter()
        xs, ys = [], []
        for record in self.steps:
            if "loss" not in record:
                continue
            seen[record["epoch"]] += 1
            xs.append(record["epoch"] + seen[record["epoch"]] / per_epoch[record["epoch"]])
            ys.append(record["loss"])
        if xs:
            axes.plot(xs, ys, alpha=0.3, label="loss (steps)")

    def _draw_epochs(self, axes: Axes, keys: list[str], title: str) -> None:
        """One curve per key, at x = epoch + 1 (the end of the epoch)."""
        epochs = [r["epoch"] + 1 for r in self.epochs]
        for k in keys:
            values = [math.nan if r.get(k) is None else r[k] for r in self.epochs]
            axes.plot(epochs, values, marker="o", label=k)
        axes.set_xlabel("epoch")
        axes.set_title(title)
        if axes.get_lines():
            axes.legend()
