"""One-shot regression metrics with scikit-learn's definitions, and the sufficient
statistics the streaming accumulators share with them."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from funcnet.errors import ShapeError
from funcnet.metrics._common import element_weights, float_dtype, safe_div
from funcnet.metrics._metric import Metric, State

__all__ = [
    "MeanAbsoluteError",
    "MeanSquaredError",
    "R2Score",
    "mean_absolute_error",
    "mean_squared_error",
    "r2_score",
]

Multioutput = Literal["uniform_average", "raw_values", "variance_weighted"]
MULTIOUTPUT = ("uniform_average", "raw_values")
R2_MULTIOUTPUT = (*MULTIOUTPUT, "variance_weighted")


def check_multioutput(fn: str, multioutput: str, allowed: tuple[str, ...]) -> None:
    if multioutput not in allowed:
        names = ", ".join(repr(m) for m in allowed)
        raise ValueError(f"{fn}: multioutput must be one of {names}; got {multioutput!r}")


def regression_inputs(fn: str, preds: ArrayLike, targets: ArrayLike, dtype=None):
    """``(preds, targets)`` as ``dtype`` (default: float32, or float64 for float64 preds)."""
    p = jnp.asarray(preds)
    t = jnp.asarray(targets)
    if not jnp.issubdtype(p.dtype, jnp.floating):
        raise ShapeError(f"{fn}: expected floating preds, got dtype {p.dtype}")
    if jnp.issubdtype(t.dtype, jnp.complexfloating):
        raise ShapeError(f"{fn}: expected real targets, got dtype {t.dtype}")
    if p.ndim == 0 or tuple(t.shape) != tuple(p.shape):
        raise ShapeError(
            f"{fn}: expected preds and targets of the same shape (N, *outputs), "
            f"got preds {tuple(p.shape)} and targets {tuple(t.shape)}"
        )
    dtype = float_dtype(p.dtype) if dtype is None else dtype
    return p.astype(dtype), t.astype(dtype)


def _drop_uncounted(p: jax.Array, t: jax.Array, w: jax.Array) -> tuple[jax.Array, jax.Array]:
    # A masked-out (padded) row may hold inf or nan; 0 * inf would still poison the sums.
    keep = w != 0
    return jnp.where(keep, p, 0), jnp.where(keep, t, 0)


def error_sums(kind: str, p: jax.Array, t: jax.Array, w: jax.Array) -> dict[str, jax.Array]:
    """Per-output ``sum(w * error)`` and ``sum(w)`` over the sample axis 0."""
    p, t = _drop_uncounted(p, t, w)
    err = jnp.square(p - t) if kind == "squared" else jnp.abs(p - t)
    return {"sum": jnp.sum(w * err, axis=0), "weight": jnp.sum(w, axis=0)}


def error_compute(state: dict[str, jax.Array], multioutput: str) -> jax.Array:
    per_output = state["sum"] / state["weight"]  # 0 / 0 = nan: nothing was counted
    return per_output if multioutput == "raw_values" else jnp.mean(per_output)


def r2_stats(p: jax.Array, t: jax.Array, w: jax.Array, count: jax.Array) -> dict[str, jax.Array]:
    """Per-output weighted count, mean and squared deviations of the targets, and the
    squared residuals; ``count`` is the number of counted samples (mask, not weights)."""
    p, t = _drop_uncounted(p, t, w)
    weight = jnp.sum(w, axis=0, keepdims=True)
    mean = safe_div(jnp.sum(w * t, axis=0, keepdims=True), weight)
    return {
        "count": jnp.sum(count, axis=0, dtype=jnp.int32),
        "weight": weight[0],
        "mean": mean[0],
        "m2": jnp.sum(w * jnp.square(t - jnp.broadcast_to(mean, t.shape)), axis=0),
        "sse": jnp.sum(w * jnp.square(t - p), axis=0),
    }


def r2_merge(a: dict[str, jax.Array], b: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Combine two R2 statistics (Chan et al.'s parallel variance update).

    Summing raw moments (sum y, sum y**2) would lose the variance to cancellation in
    float32 whenever the targets' mean is large against their spread.
    """
    weight = a["weight"] + b["weight"]
    delta = b["mean"] - a["mean"]
    frac = safe_div(b["weight"], weight)
    return {
        "count": a["count"] + b["count"],
        "weight": weight,
        "mean": a["mean"] + delta * frac,
        "m2": a["m2"] + b["m2"] + jnp.square(delta) * a["weight"] * frac,
        "sse": a["sse"] + b["sse"],
    }


def r2_compute(state: dict[str, jax.Array], multioutput: str) -> jax.Array:
    """scikit-learn's ``r2_score`` (``force_finite=True``) from R2 statistics."""
    ss_res, ss_tot = state["sse"], state["m2"]
    nonzero = ss_tot != 0
    r2 = jnp.where(
        nonzero, 1 - ss_res / jnp.where(nonzero, ss_tot, 1), jnp.where(ss_res != 0, 0.0, 1.0)
    )
    r2 = jnp.where(state["count"] < 2, jnp.nan, r2)
    if multioutput == "raw_values":
        return r2
    if multioutput == "variance_weighted":
        weighted = safe_div(jnp.sum(ss_tot * r2), jnp.sum(ss_tot))
        return jnp.where(jnp.any(nonzero), weighted, jnp.mean(r2))
    return jnp.mean(r2)


def _weights(fn, shape, mask, sample_weight, dtype):
    return element_weights(fn, shape, mask, sample_weight).astype(dtype)


def mean_squared_error(
    preds: ArrayLike,
    targets: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    multioutput: Multioutput = "uniform_average",
) -> jax.Array:
    """Mean squared error per output, ``sum_i w_i (p_i - t_i)**2 / sum_i w_i``.

    As scikit-learn's ``mean_squared_error``: each output (the axes after the first) is
    averaged over the samples (axis 0), then ``"uniform_average"`` averages the outputs.

    Args:
        preds: ``(N, *outputs)``, floating dtype.
        targets: ``(N, *outputs)``; float, integer or bool.
        mask: optional boolean ``(N,)`` (or ``(N, *outputs)``, or any leading part of it,
            broadcast over the rest); False is not counted.
        sample_weight: optional real weights, shaped like ``mask``.
        multioutput: ``"uniform_average"`` (a scalar) or ``"raw_values"`` (``outputs``).

    Returns:
        float32 (float64 for float64 preds); ``nan`` when nothing is counted.

    Raises:
        ShapeError: wrong shapes or dtypes.
        ValueError: unknown ``multioutput``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet.metrics import mean_squared_error
        >>> preds, targets = jnp.array([1.0, 2.0, 3.0]), jnp.array([1.0, 2.0, 5.0])
        >>> round(float(mean_squared_error(preds, targets)), 4)
        1.3333
    """
    fn = "mean_squared_error"
    check_multioutput(fn, multioutput, MULTIOUTPUT)
    p, t = regression_inputs(fn, preds, targets)
    w = _weights(fn, p.shape, mask, sample_weight, p.dtype)
    return error_compute(error_sums("squared", p, t, w), multioutput)


def mean_absolute_error(
    preds: ArrayLike,
    targets: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    multioutput: Multioutput = "uniform_average",
) -> jax.Array:
    """Mean absolute error per output, ``sum_i w_i |p_i - t_i| / sum_i w_i``.

    As scikit-learn's ``mean_absolute_error``: each output is averaged over the samples
    (axis 0), then ``"uniform_average"`` averages the outputs.

    Args:
        preds: ``(N, *outputs)``, floating dtype.
        targets: ``(N, *outputs)``; float, integer or bool.
        mask: optional boolean ``(N,)`` (or a longer leading part of ``preds.shape``);
            False is not counted.
        sample_weight: optional real weights, shaped like ``mask``.
        multioutput: ``"uniform_average"`` (a scalar) or ``"raw_values"`` (``outputs``).

    Returns:
        float32 (float64 for float64 preds); ``nan`` when nothing is counted.

    Raises:
        ShapeError: wrong shapes or dtypes.
        ValueError: unknown ``multioutput``.
    """
    fn = "mean_absolute_error"
    check_multioutput(fn, multioutput, MULTIOUTPUT)
    p, t = regression_inputs(fn, preds, targets)
    w = _weights(fn, p.shape, mask, sample_weight, p.dtype)
    return error_compute(error_sums("absolute", p, t, w), multioutput)


def r2_score(
    preds: ArrayLike,
    targets: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    multioutput: Multioutput = "uniform_average",
) -> jax.Array:
    """Coefficient of determination ``1 - SS_res / SS_tot`` per output, as scikit-learn.

    ``SS_res = sum_i w_i (t_i - p_i)**2`` and ``SS_tot = sum_i w_i (t_i - mean_w(t))**2``
    over the samples (axis 0). As scikit-learn's ``r2_score`` (``force_finite=True``):
    constant targets (``SS_tot = 0``) score 1 for perfect predictions and 0 otherwise, and
    fewer than two counted samples give ``nan``. Note the argument order: predictions
    first (PyTorch/torchmetrics); scikit-learn takes ``(y_true, y_pred)``.

    Args:
        preds: ``(N, *outputs)``, floating dtype.
        targets: ``(N, *outputs)``; float, integer or bool.
        mask: optional boolean ``(N,)`` (or a longer leading part of ``preds.shape``);
            False is not counted.
        sample_weight: optional real weights, shaped like ``mask``.
        multioutput: ``"uniform_average"``, ``"raw_values"`` (``outputs``) or
            ``"variance_weighted"`` (outputs weighted by their ``SS_tot``).

    Returns:
        float32 (float64 for float64 preds).

    Raises:
        ShapeError: wrong shapes or dtypes.
        ValueError: unknown ``multioutput``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet.metrics import r2_score
        >>> preds, targets = jnp.array([2.5, 0.0, 2.0, 8.0]), jnp.array([3.0, -0.5, 2.0, 7.0])
        >>> round(float(r2_score(preds, targets)), 4)
        0.9486
    """
    fn = "r2_score"
    check_multioutput(fn, multioutput, R2_MULTIOUTPUT)
    p, t = regression_inputs(fn, preds, targets)
    w = _weights(fn, p.shape, mask, sample_weight, p.dtype)
    count = element_weights(fn, p.shape, mask)
    return r2_compute(r2_stats(p, t, w, count), multioutput)


# ---------------------------------------------------------------------------------------
# Streaming accumulators
# ---------------------------------------------------------------------------------------


def _output_shape(name: str, output_shape: Any) -> tuple[int, ...]:
    shape = tuple(output_shape) if isinstance(output_shape, (tuple, list)) else None
    if shape is None or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ValueError(f"{name}: output_shape must be a tuple of ints, got {output_shape!r}")
    return shape


def _regression_batch(name: str, output_shape, preds, targets, mask, sample_weight):
    fn = f"{name}.update"
    p, t = regression_inputs(fn, preds, targets, dtype=jnp.float32)
    if tuple(p.shape[1:]) != output_shape:
        raise ShapeError(
            f"{fn}: expected preds of shape (N, *output_shape) = (N, "
            f"{', '.join(map(str, output_shape))}{',' if len(output_shape) == 1 else ''}), got "
            f"{tuple(p.shape)}; construct {name}(output_shape={tuple(p.shape[1:])}) for these"
        )
    w = element_weights(fn, p.shape, mask, sample_weight).astype(jnp.float32)
    return p, t, w


@dataclasses.dataclass(frozen=True)
class _ErrorMetric(Metric):
    output_shape: tuple[int, ...] = ()
    multioutput: Multioutput = "uniform_average"

    _kind: ClassVar[str]

    def __post_init__(self) -> None:
        name = type(self).__name__
        object.__setattr__(self, "output_shape", _output_shape(name, self.output_shape))
        check_multioutput(name, self.multioutput, MULTIOUTPUT)

    def init(self) -> State:
        # One buffer per field: a state whose fields alias one array cannot be donated.
        return {key: jnp.zeros(self.output_shape, jnp.float32) for key in ("sum", "weight")}

    def update(
        self,
        state: State,
        preds: ArrayLike,
        targets: ArrayLike,
        *,
        mask: ArrayLike | None = None,
        sample_weight: ArrayLike | None = None,
    ) -> State:
        """Add a batch of regression results.

        Args:
            state: the current state.
            preds: ``(N, *output_shape)``, floating dtype.
            targets: ``(N, *output_shape)``; float, integer or bool.
            mask: optional boolean ``(N,)`` or a longer leading part of ``preds.shape``;
                False rows (padding) are not counted.
            sample_weight: optional real weights, shaped like ``mask``.

        Returns:
            The new state.
        """
        name = type(self).__name__
        p, t, w = _regression_batch(name, self.output_shape, preds, targets, mask, sample_weight)
        return self.merge(state, error_sums(self._kind, p, t, w))

    def compute(self, state: State) -> jax.Array:
        return error_compute(state, self.multioutput)


@dataclasses.dataclass(frozen=True)
class MeanSquaredError(_ErrorMetric):
    """Streaming :func:`~funcnet.metrics.mean_squared_error`.

    Args:
        output_shape: the shape of one sample's outputs; ``preds`` are
            ``(N, *output_shape)``, ``()`` for ``(N,)``.
        multioutput: ``"uniform_average"`` or ``"raw_values"``.

    State: ``{"sum": float32 output_shape, "weight": float32 output_shape}``.
    ``update(state, preds, targets, *, mask=None, sample_weight=None)`` takes the
    one-shot function's inputs; ``compute`` gives ``nan`` before any sample.
    """

    _kind: ClassVar[str] = "squared"


@dataclasses.dataclass(frozen=True)
class MeanAbsoluteError(_ErrorMetric):
    """Streaming :func:`~funcnet.metrics.mean_absolute_error`.

    Args:
        output_shape: the shape of one sample's outputs; ``preds`` are
            ``(N, *output_shape)``, ``()`` for ``(N,)``.
        multioutput: ``"uniform_average"`` or ``"raw_values"``.

    State: ``{"sum": float32 output_shape, "weight": float32 output_shape}``.
    ``update(state, preds, targets, *, mask=None, sample_weight=None)`` takes the
    one-shot function's inputs; ``compute`` gives ``nan`` before any sample.
    """

    _kind: ClassVar[str] = "absolute"


@dataclasses.dataclass(frozen=True)
class R2Score(Metric):
    """Streaming :func:`~funcnet.metrics.r2_score`.

    Args:
        output_shape: the shape of one sample's outputs; ``preds`` are
            ``(N, *output_shape)``, ``()`` for ``(N,)``.
        multioutput: ``"uniform_average"``, ``"raw_values"`` or ``"variance_weighted"``.

    State (each ``output_shape``): ``count`` int32 (counted samples), and float32
    ``weight`` (summed sample weights), ``mean`` (weighted target mean), ``m2`` (weighted
    squared deviations from it) and ``sse`` (weighted squared residuals). ``merge`` is
    Chan et al.'s parallel update, accurate in float32 even when the targets' mean is
    large against their spread; it is not a plain sum, so combine shards with ``merge``
    rather than ``psum``.
    ``update(state, preds, targets, *, mask=None, sample_weight=None)`` takes the
    one-shot function's inputs.
    """

    output_shape: tuple[int, ...] = ()
    multioutput: Multioutput = "uniform_average"

    def __post_init__(self) -> None:
        name = type(self).__name__
        object.__setattr__(self, "output_shape", _output_shape(name, self.output_shape))
        check_multioutput(name, self.multioutput, R2_MULTIOUTPUT)

    def init(self) -> State:
        state = {
            key: jnp.zeros(self.output_shape, jnp.float32)
            for key in ("weight", "mean", "m2", "sse")
        }
        return {"count": jnp.zeros(self.output_shape, jnp.int32), **state}

    def update(
        self,
        state: State,
        preds: ArrayLike,
        targets: ArrayLike,
        *,
        mask: ArrayLike | None = None,
        sample_weight: ArrayLike | None = None,
    ) -> State:
        """Add a batch of regression results.

        Args:
            state: the current state.
            preds: ``(N, *output_shape)``, floating dtype.
            targets: ``(N, *output_shape)``; float, integer or bool.
            mask: optional boolean ``(N,)`` or a longer leading part of ``preds.shape``;
                False rows (padding) are not counted.
            sample_weight: optional real weights, shaped like ``mask``.

        Returns:
            The new state.
        """
        p, t, w = _regression_batch(
            "R2Score", self.output_shape, preds, targets, mask, sample_weight
        )
        count = element_weights("R2Score.update", p.shape, mask)
        return self.merge(state, r2_stats(p, t, w, count))

    def merge(self, state: State, other: State) -> State:
        return r2_merge(state, other)

    def compute(self, state: State) -> jax.Array:
        return r2_compute(state, self.multioutput)
