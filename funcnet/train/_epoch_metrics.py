"""One epoch's metrics: count-weighted means of the steps' scalars, and streaming
accumulators merged on the device."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from funcnet.metrics import Metric

__all__ = ["EpochMetrics"]

HIDDEN = ("count", "finite")
"""Step values that are bookkeeping, not metrics."""


def count_weighted_means(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The mean of each value over ``records``, weighted by each record's ``count``."""
    weights = [float(r.get("count", 1.0)) for r in records]
    total = max(sum(weights), 1.0)
    keys = [k for k in (records[0] if records else {}) if k not in HIDDEN]
    return {k: sum(float(r[k]) * w for r, w in zip(records, weights)) / total for k in keys}


def to_python(value: Any) -> float | list:
    """A metric's value for logs: a float, or a (nested) list for per-class results."""
    value = np.asarray(value)
    return float(value) if value.ndim == 0 else value.tolist()


class EpochMetrics:
    """Accumulates the values of one epoch's steps.

    Scalars (loss, function metrics) are fetched to the host with each step's ``count`` and
    averaged weighted by it: exact for means such as accuracy, loss, MSE. A streaming
    metric's per-batch state (``funcnet.metrics``: F1, precision, R², …) is merged into the
    epoch's state on the device as the steps run, and computed at a fetch: exact for ratios
    over the whole epoch.

    Args:
        streaming: the accumulators, by the name under which the steps report them.
    """

    def __init__(self, streaming: Mapping[str, Metric]) -> None:
        self.streaming: dict[str, Metric] = dict(streaming)
        metrics = self.streaming
        self._merge = jax.jit(lambda run, new: {k: metrics[k].merge(run[k], new[k]) for k in new})
        self._compute = jax.jit(lambda run: {k: metrics[k].compute(run[k]) for k in run})
        self.reset()

    def reset(self) -> None:
        """Starts a new epoch."""
        self.running: dict[str, Any] = {k: m.init() for k, m in self.streaming.items()}
        self.records: list[dict[str, Any]] = []

    def add(self, values: Mapping[str, Any], rows: int | None) -> dict[str, Any]:
        """Merges a step's streaming states; returns its other values (still on the device)
        with ``count`` set to ``rows`` when the step did not count them."""
        stats = {k: values[k] for k in self.streaming if k in values}
        if stats:
            self.running = self._merge(self.running, stats)
        scalars = {k: v for k, v in values.items() if k not in stats}
        if rows is not None and "count" not in scalars:
            scalars["count"] = rows
        return scalars

    def extend(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Adds fetched (host) records of steps whose values count."""
        self.records.extend(dict(r) for r in records)

    def means(self, last: int | None = None) -> dict[str, float]:
        """Count-weighted means over the epoch's records (or its ``last`` ones)."""
        records = self.records if last is None else self.records[-last:] if last else []
        return count_weighted_means(records)

    def results(self) -> dict[str, float | list[Any]]:
        """The means, and the streaming metrics' values over everything merged so far."""
        if not self.streaming:
            return self.means()
        computed = jax.device_get(self._compute(self.running))
        return {**self.means(), **{k: to_python(v) for k, v in computed.items()}}
