"""The contract between a step and the user's functions: how a batch splits into inputs
and targets, how the loss and the metrics are called, and whether they see a mask.

``Objective`` checks the functions once, when a step is built; inside the step it only
calls them. It is the one place that decides whether a batch may be padded: only when the
loss and every metric take ``mask=``, since only then can they leave padding rows out.
:func:`combine_across` is how a step that runs on every device of a named axis turns the
devices' values into the global batch's.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from funcnet.metrics import Metric

__all__ = ["Objective", "combine_across", "split_batch"]

LossFn = Callable[..., Any]
MetricFns = Mapping[str, Callable[..., Any] | Metric]


def split_batch(batch: Any) -> tuple[Any, Any]:
    """``(inputs, targets)`` of a batch: a pair ``(x, y)`` (tuple or list), or a dict with
    ``"x"``/``"y"`` (or ``"inputs"``/``"targets"``). ``x`` may be a tuple of inputs.

    Raises:
        TypeError: any other batch, naming ``batch_fn`` as the way to split it.
    """
    if isinstance(batch, tuple | list) and len(batch) == 2:
        return batch[0], batch[1]
    if isinstance(batch, Mapping):
        for xk, yk in (("x", "y"), ("inputs", "targets")):
            if xk in batch and yk in batch:
                return batch[xk], batch[yk]
    raise TypeError(
        f"a batch must be a pair (inputs, targets) or a dict with 'x' and 'y'; got "
        f"{_describe(batch)}. Pass batch_fn=... returning (inputs, targets), e.g. "
        "batch_fn=lambda b: (b[0], b[0]) for unlabeled (x,) batches (an autoencoder), "
        "lambda b: (b[0], b[1:]) for (x, y1, y2), lambda b: (b['image'], b['label']) for a dict"
    )


def _describe(batch: Any) -> str:
    if isinstance(batch, Mapping):
        return f"a dict with keys {list(batch)}"
    if isinstance(batch, tuple | list):
        return f"a {type(batch).__name__} of {len(batch)}"
    return f"a {type(batch).__name__} of shape {getattr(batch, 'shape', '?')}"


def _takes_mask(fn: Callable[..., Any]) -> bool:
    if isinstance(fn, Metric):
        return True
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "mask" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _name(fn: Any) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def _check_callable(loss_fn: LossFn | None, metrics: MetricFns, batch_fn: Any) -> None:
    for name, fn in metrics.items():
        if not (callable(fn) or isinstance(fn, Metric)):
            raise TypeError(
                f"metric {name!r} is {fn!r}: expected a function fn(outputs, targets) or a "
                "funcnet.metrics accumulator such as metrics.F1Score(num_classes=10)"
            )
    for what, fn in (("loss_fn", loss_fn), ("batch_fn", batch_fn)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{what} is not callable: {fn!r}")


class Objective:
    """A loss, metrics and a batch split, checked once and called inside a step.

    Args:
        loss_fn: ``loss_fn(outputs, targets) -> scalar``; with ``has_aux``, returns
            ``(loss, {name: scalar})``. It may take ``mask=`` (every ``funcnet.losses``
            function does), a ``(batch,)`` bool array of the rows that count; or None.
        metrics: ``{name: fn(outputs, targets[, mask=]) -> scalar}``, or ``{name: metric}``
            with a streaming accumulator of ``funcnet.metrics`` (exact over a whole epoch).
        has_aux: whether ``loss_fn`` returns auxiliary values.
        batch_fn: ``batch_fn(batch) -> (inputs, targets)``; default :func:`split_batch`.

    Attributes:
        takes_mask: the loss and every metric take ``mask=``, so a short batch may be
            padded to the full size and masked (one compiled program for every batch).
        streaming: the accumulators among ``metrics``, by name.
    """

    def __init__(
        self,
        loss_fn: LossFn | None,
        metrics: MetricFns | None = None,
        has_aux: bool = False,
        batch_fn: Callable[[Any], tuple[Any, Any]] | None = None,
    ) -> None:
        metrics = dict(metrics or {})
        _check_callable(loss_fn, metrics, batch_fn)
        self.loss_fn: LossFn | None = loss_fn
        self.has_aux: bool = has_aux
        self.split: Callable[[Any], tuple[Any, Any]] = batch_fn or split_batch
        self.functions: dict[str, Callable[..., Any]] = {
            k: f for k, f in metrics.items() if not isinstance(f, Metric)
        }
        self.streaming: dict[str, Metric] = {
            k: m for k, m in metrics.items() if isinstance(m, Metric)
        }
        fns = [*metrics.values(), *([loss_fn] if loss_fn is not None else [])]
        self.takes_mask: bool = all(_takes_mask(fn) for fn in fns)

    def loss(
        self, outputs: Any, targets: Any, mask: jax.Array | None
    ) -> tuple[jax.Array, dict[str, Any]]:
        """``(loss, aux)`` of a batch, over its valid rows when ``mask`` is given."""
        assert self.loss_fn is not None
        result = self._call(self.loss_fn, "loss_fn", outputs, targets, mask)
        loss, aux = result if self.has_aux else (result, {})
        return loss, dict(aux)

    def values(self, outputs: Any, targets: Any, mask: jax.Array | None) -> dict[str, Any]:
        """The metrics of a batch: a scalar per function, the batch's accumulator state per
        streaming metric (to be merged into the epoch's with ``metric.merge``)."""
        outputs = jax.lax.stop_gradient(outputs)
        values: dict[str, Any] = {
            k: self._call(fn, f"metric {k!r}", outputs, targets, mask)
            for k, fn in self.functions.items()
        }
        for k, m in self.streaming.items():
            values[k] = m.update(m.init(), outputs, targets, mask=mask)
        return values

    def _call(self, fn: Callable[..., Any], what: str, out: Any, y: Any, mask: Any) -> Any:
        if mask is None:
            return fn(out, y)
        if not _takes_mask(fn):
            raise TypeError(
                f"{what} ({_name(fn)}) takes no mask=, so it cannot leave out the padding rows "
                "of this batch: give it a `mask=None` parameter (every funcnet.losses and "
                "funcnet.metrics function has one), or pass batches without a mask (fit does "
                "so for such functions; a DataLoader with pad_last=True always gives masks)"
            )
        return fn(out, y, mask=mask)


def count_rows(inputs: Any, mask: jax.Array | None) -> jax.Array:
    """float32 ``()``: the valid rows of a batch (the mask's count, else the leading size)."""
    if mask is not None:
        return jnp.sum(mask.astype(jnp.float32))
    return jnp.asarray(jax.tree_util.tree_leaves(inputs)[0].shape[0], jnp.float32)


def combine_across(
    axis_name: str,
    count: jax.Array,
    means: Any,
    states: Mapping[str, Any],
    streaming: Mapping[str, Metric],
    first: Any,
) -> tuple[jax.Array, Any, dict[str, Any], Any]:
    """The global batch's values from each device's, in one ``psum`` over ``axis_name``.

    Call it on every member of the axis (inside ``pmap``, ``shard_map`` or ``vmap``); the
    results are the same on all of them. XLA emits one all-reduce per dtype of the inputs.

    Args:
        axis_name: the named axis the devices make up.
        count: float32 ``()``, this device's valid rows ``n_d``.
        means: a pytree of this device's means over its ``n_d`` rows (the loss, the
            gradients, metric values); a device with ``n_d = 0`` sends zeros, so the
            ``nan`` of its empty mean does not spread.
        states: ``{name: state}``, this device's streaming metric states.
        streaming: ``{name: metric}`` for every name in ``states``.
        first: a pytree whose values should be device 0's (the model state, as PyTorch's
            DistributedDataParallel broadcasts rank 0's buffers).

    Returns:
        ``(total, means, states, first)``: ``total = sum_d n_d`` (float32 ``()``);
        ``means`` as the count-weighted means ``sum_d n_d * mean_d / total`` (each leaf
        in its dtype; floating dtypes, else float32), which for means over rows are the
        means over the global batch; ``states`` merged with ``metric.merge`` in device
        order (any accumulator, not only those whose states are sums); ``first`` as on
        device 0.
    """
    index, size = lax.axis_index(axis_name), lax.axis_size(axis_name)
    weighted = jax.tree_util.tree_map(lambda v: _weighted(v, count), means)
    gathered = {
        k: jax.tree_util.tree_map(lambda v: _slot(v, index, size), s) for k, s in states.items()
    }
    on_first = jax.tree_util.tree_map(lambda v: _if_first(v, index), first)
    total, sums, gathered, on_first = lax.psum((count, weighted, gathered, on_first), axis_name)
    means = jax.tree_util.tree_map(lambda s: s / total.astype(s.dtype), sums)
    states = {k: _fold(streaming[k], gathered[k], s, size) for k, s in states.items()}
    first = jax.tree_util.tree_map(lambda v, f: f.astype(jnp.asarray(v).dtype), first, on_first)
    return total, means, states, first


def _weighted(value: Any, count: jax.Array) -> jax.Array:
    v = jnp.asarray(value)
    v = v if jnp.issubdtype(v.dtype, jnp.inexact) else v.astype(jnp.float32)
    return jnp.where(count > 0, v * count.astype(v.dtype), jnp.zeros((), v.dtype))


def _slot(value: Any, index: jax.Array, size: int) -> jax.Array:
    """``(size, *shape)`` zeros holding ``value`` at ``index``: summed over the devices, it
    is every device's value (an all-gather that XLA folds into the one all-reduce)."""
    v = _summable(value)
    return jnp.zeros((size, *v.shape), v.dtype).at[index].set(v)


def _if_first(value: Any, index: jax.Array) -> jax.Array:
    v = _summable(value)
    return jnp.where(index == 0, v, jnp.zeros((), v.dtype))


def _summable(value: Any) -> jax.Array:
    v = jnp.asarray(value)
    return v.astype(jnp.int32) if v.dtype == jnp.bool_ else v


def _fold(metric: Metric, gathered: Any, like: Any, size: int) -> Any:
    """``merge`` of the ``size`` states stacked along the leading axis of ``gathered``, in
    the dtypes of ``like``."""
    states = [
        jax.tree_util.tree_map(lambda g, v, i=i: g[i].astype(jnp.asarray(v).dtype), gathered, like)
        for i in range(size)
    ]
    merged = states[0]
    for other in states[1:]:
        merged = metric.merge(merged, other)
    return merged
