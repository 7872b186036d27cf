"""The accumulator protocol (:class:`Metric`), :class:`Mean` and :class:`MetricCollection`.

Each accumulator is a frozen (hashable) dataclass of options; its state is a plain dict of
arrays with shapes and dtypes fixed by ``init``, so a state can be carried through
``jax.jit``, ``lax.scan`` and ``lax.fori_loop``, donated, ``vmap``-ed and checkpointed.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from funcnet.errors import ShapeError
from funcnet.metrics._common import element_weights

__all__ = ["Mean", "Metric", "MetricCollection"]

State = dict[str, Any]


class Metric(abc.ABC):
    """The accumulator protocol: four pure functions on a plain dict of arrays.

    ::

        state = metric.init()                          # zeros; fixed shapes and dtypes
        state = metric.update(state, *batch, mask=m)   # same structure, shapes, dtypes
        state = metric.merge(state_a, state_b)         # two partial states -> one
        value = metric.compute(state)                  # the metric so far

    ``update`` is ``merge(state, <statistics of the batch>)``, so streaming over batches
    equals the one-shot function on their concatenation (up to float rounding), and
    partial states from several devices or shards combine with ``merge``. ``init`` is the
    reset. None of the methods has side effects; all can run inside ``jax.jit``.
    """

    @abc.abstractmethod
    def init(self) -> State:
        """A fresh (empty) state: a dict of zero arrays."""

    @abc.abstractmethod
    def update(self, state: State, *args: Any, **kwargs: Any) -> State:
        """The state after one more batch."""

    def merge(self, state: State, other: State) -> State:
        """Combine two states (the default adds them, for states of sums)."""
        return jax.tree.map(jnp.add, state, other)

    @abc.abstractmethod
    def compute(self, state: State) -> Any:
        """The metric's value for everything accumulated into ``state``."""


def _wsum(w: jax.Array, x: jax.Array) -> jax.Array:
    # where, not w * x: a masked-out row holding inf or nan must not leak into the sum.
    w = w.astype(jnp.float32)
    return jnp.sum(jnp.where(w != 0, w * x, 0))


@dataclasses.dataclass(frozen=True)
class Mean(Metric):
    """Weighted running mean ``sum(w * values) / sum(w)``, e.g. of per-batch losses.

    State: ``{"total": float32 (), "weight": float32 ()}``; ``compute`` gives float32
    ``nan`` before anything is counted. Sums are float32: expect about 1e-7 relative
    rounding per update.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet.metrics import Mean
        >>> m = Mean()
        >>> s = m.update(m.init(), jnp.array(2.0), weights=3)    # batch mean 2.0 of 3 rows
        >>> s = m.update(s, jnp.array([4.0, 9.0]), mask=jnp.array([True, False]))
        >>> float(m.compute(s))
        2.5
    """

    def init(self) -> State:
        return {"total": jnp.zeros((), jnp.float32), "weight": jnp.zeros((), jnp.float32)}

    def update(
        self,
        state: State,
        values: ArrayLike,
        *,
        weights: ArrayLike | None = None,
        mask: ArrayLike | None = None,
    ) -> State:
        """Add ``values``.

        Args:
            state: the current state.
            values: real values of any shape ``(*)``, e.g. a scalar batch loss or
                per-example losses ``(N,)``.
            weights: optional real weights ``(*)`` or a leading part of that shape (a
                scalar weighs every value alike, e.g. the batch size).
            mask: optional boolean, shaped like ``weights``; False values are not counted
                (even if they are inf or nan).

        Returns:
            The new state.
        """
        v = jnp.asarray(values)
        if not (jnp.issubdtype(v.dtype, jnp.number) or v.dtype == jnp.bool_):
            raise ShapeError(f"Mean.update: expected real values, got dtype {v.dtype}")
        w = element_weights("Mean.update", v.shape, mask, weights)
        return {
            "total": state["total"] + _wsum(w, v.astype(jnp.float32)),
            "weight": state["weight"] + jnp.sum(w, dtype=jnp.float32),
        }

    def compute(self, state: State) -> jax.Array:
        return state["total"] / state["weight"]


class MetricCollection(Metric, Mapping[str, Metric]):
    """Several accumulators under names, with the same protocol; states are dicts of states.

    Every member's ``update`` receives the same arguments, so group metrics that take the
    same inputs (e.g. classification metrics of ``(logits, targets, mask=...)``) and keep a
    loss :class:`Mean` beside the collection.

    Args:
        metrics: a mapping from names to accumulators.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet.metrics import Accuracy, F1Score, MetricCollection
        >>> metrics = MetricCollection({"acc": Accuracy(), "f1": F1Score(num_classes=3, average="macro")})
        >>> s = metrics.update(metrics.init(), jnp.array([0, 1, 1, 2]), jnp.array([0, 1, 2, 2]))
        >>> {k: round(float(v), 4) for k, v in metrics.compute(s).items()}
        {'acc': 0.75, 'f1': 0.7778}
    """

    def __init__(self, metrics: Mapping[str, Metric]) -> None:
        for name, metric in metrics.items():
            if not isinstance(name, str) or not isinstance(metric, Metric):
                raise TypeError(
                    f"MetricCollection: expected a mapping of str to Metric, got {name!r}: "
                    f"{type(metric).__name__}"
                )
        self._metrics = dict(metrics)

    def __getitem__(self, name: str) -> Metric:
        return self._metrics[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._metrics)

    def __len__(self) -> int:
        return len(self._metrics)

    def __hash__(self) -> int:
        return hash(tuple(self._metrics.items()))

    def __repr__(self) -> str:
        return f"MetricCollection({self._metrics!r})"

    def init(self) -> State:
        return {name: m.init() for name, m in self._metrics.items()}

    def update(self, state: State, *args: Any, **kwargs: Any) -> State:
        """Update every member with the same arguments."""
        return {name: m.update(state[name], *args, **kwargs) for name, m in self._metrics.items()}

    def merge(self, state: State, other: State) -> State:
        return {name: m.merge(state[name], other[name]) for name, m in self._metrics.items()}

    def compute(self, state: State) -> dict[str, Any]:
        return {name: m.compute(state[name]) for name, m in self._metrics.items()}
