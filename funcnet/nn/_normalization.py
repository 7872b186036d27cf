"""Normalisation layers: BatchNorm1d, BatchNorm2d, SyncBatchNorm, InstanceNorm1d/2d/3d,
LayerNorm, GroupNorm, RMSNorm, LocalResponseNorm.

Channels-last throughout. Statistics are computed in at least float32 and the output
has the input's dtype (see ``funcnet.functional.batch_norm``). Names of parameters and
state follow PyTorch (``weight``, ``bias``, ``running_mean``, ``running_var``,
``num_batches_tracked``), so flat state-dict keys match ``torch.nn``'s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from jax import lax

from funcnet import functional as F
from funcnet.errors import ShapeError, check_input_dtype, check_last_dim, check_ndim
from funcnet.functional._normalization import (
    _batch_count,
    _check_lrn_size,
    _normalized_axes,
    _spatial_count,
)
from funcnet.nn._module import Context, Module

__all__ = [
    "BatchNorm1d",
    "BatchNorm2d",
    "GroupNorm",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
    "LayerNorm",
    "LocalResponseNorm",
    "RMSNorm",
    "SyncBatchNorm",
]

_BN_STATE = ("running_mean", "running_var", "num_batches_tracked")


def _label(ctx: Context) -> str:
    return f"{ctx.path} ({type(ctx.module).__name__})"


def _image_spatial_dims(x: jax.Array) -> int | None:
    """Spatial axes of a batched channels-last input ``(N, *spatial, C)``; None for ``(N, C)``."""
    return jnp.ndim(x) - 2 if jnp.ndim(x) > 2 else None


def _check_batched(ctx: Context, x: jax.Array) -> None:
    """ShapeError unless ``x`` is ``(N, *, C)``: at least 2 dimensions."""
    if jnp.ndim(x) < 2:
        raise ShapeError(
            f"{_label(ctx)}: expected input (N, *, C) with at least 2 dimensions, got "
            f"shape {jnp.shape(x)}"
        )


def _as_shape(owner: str, value: int | Sequence[int]) -> tuple[int, ...]:
    shape = (value,) if isinstance(value, int) else tuple(value)
    if not shape or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ValueError(
            f"{owner}: normalized_shape must be a positive int or a non-empty sequence of "
            f"them, got {value!r}"
        )
    return shape


def _affine_params(shape: tuple[int, ...], weight: bool, bias: bool, dtype: Any) -> dict:
    params = {"weight": jnp.ones(shape, dtype)} if weight else {}
    if bias:
        params["bias"] = jnp.zeros(shape, dtype)
    return params


def _running_state(shape: tuple[int, ...], dtype: Any) -> dict:
    """PyTorch's initial running statistics (0, 1) and its batch counter, as int32."""
    return {
        "running_mean": jnp.zeros(shape, dtype),
        "running_var": jnp.ones(shape, dtype),
        "num_batches_tracked": jnp.zeros((), jnp.int32),
    }


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class _BatchNorm(Module):
    """Shared implementation; the subclasses fix the accepted input ranks."""

    num_features: int
    eps: float = 1e-5
    momentum: float | None = 0.1
    affine: bool = True
    track_running_stats: bool = True
    axis_name: str | None = None
    dtype: Any = jnp.float32

    _ndims: ClassVar[tuple[int, ...]] = ()
    _layout: ClassVar[str] = ""

    def init(self, key: jax.Array) -> tuple[dict[str, Any], dict[str, Any]]:
        del key  # PyTorch's deterministic init: weight 1, bias 0, running stats (0, 1)
        c = (self.num_features,)
        params = _affine_params(c, self.affine, self.affine, self.dtype)
        return params, _running_state(c, self.dtype) if self.track_running_stats else {}

    def _check_rank(self, ctx: Context, x: jax.Array) -> None:
        check_ndim(ctx, x, self._ndims, layout=self._layout)

    def _empty_batch(self, ctx: Context, x: jax.Array) -> jax.Array:
        """PyTorch's answer to a batch of 0 rows: an empty output; in training the running
        statistics stay as they are and only ``num_batches_tracked`` counts the step."""
        if ctx.train and self.track_running_stats:
            count = _require_state(ctx, _BN_STATE)["num_batches_tracked"]
            ctx.set_state("num_batches_tracked", count + 1)
        return x

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        self._check_rank(ctx, x)
        check_last_dim(ctx, x, self.num_features, spatial_dims=_image_spatial_dims(x))
        check_input_dtype(ctx, x)
        if jnp.size(x) == 0:
            return self._empty_batch(ctx, x)
        batch_stats = ctx.train or not self.track_running_stats
        if batch_stats and _batch_count(x, self.axis_name) <= 1:
            raise ShapeError(
                f"{_label(ctx)}: expected more than 1 value per channel when training, got "
                f"input shape {jnp.shape(x)}"
            )
        weight = ctx.param("weight") if self.affine else None
        bias = ctx.param("bias") if self.affine else None
        if not self.track_running_stats:
            y, _, _ = F.batch_norm(
                x, None, None, weight, bias, eps=self.eps, axis_name=self.axis_name
            )
            return y
        state = _require_state(ctx, _BN_STATE)
        if not ctx.train:
            y, _, _ = F.batch_norm(
                x, state["running_mean"], state["running_var"], weight, bias, eps=self.eps
            )
            return y
        count = state["num_batches_tracked"] + 1
        momentum = 1.0 / count.astype(jnp.float32) if self.momentum is None else self.momentum
        y, mean, var = F.batch_norm(
            x,
            state["running_mean"],
            state["running_var"],
            weight,
            bias,
            training=True,
            momentum=momentum,
            eps=self.eps,
            axis_name=self.axis_name,
        )
        ctx.set_state("running_mean", mean)
        ctx.set_state("running_var", var)
        ctx.set_state("num_batches_tracked", count)
        return y


def _require_state(ctx: Context, names: tuple[str, ...]) -> Mapping[str, Any]:
    state = ctx.state
    missing = [n for n in names if n not in state]
    if missing:
        raise ShapeError(
            f"{_label(ctx)}: no state entry {missing[0]!r} (found {sorted(state)}); pass the "
            f"state returned by init to apply"
        )
    return state


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, L, C) input (``torch.nn.BatchNorm1d``).

    Channels last: PyTorch's (N, C, L) is (N, L, C) here. In training mode each channel is
    normalised with the batch's mean and biased variance, and the running statistics move
    towards the batch's mean and *unbiased* variance:
    ``running = (1 − momentum)·running + momentum·batch``. In eval mode the running
    statistics normalise. ``y = (x − mean) / sqrt(var + eps) · weight + bias``.

    Parameters ``weight`` (ones) and ``bias`` (zeros), shape (C,); state
    ``running_mean`` (zeros), ``running_var`` (ones), both (C,), and
    ``num_batches_tracked``, an int32 scalar (int64 in PyTorch).

    Args:
        num_features: C, the size of the input's last axis.
        eps: added to the variance before the square root.
        momentum: the running-average factor; None for a cumulative moving average
            (factor ``1 / num_batches_tracked``).
        affine: whether to learn ``weight`` and ``bias``.
        track_running_stats: whether to keep running statistics; if False there is no
            state and batch statistics are used in eval mode too.
        axis_name: optional named axis (``pmap``/``shard_map``/``vmap``) over which batch
            statistics are averaged, making this a synchronised batch norm.
        dtype: dtype of the parameters and running statistics.

    Input (N, C) or (N, L, C), floating; output of the same shape and dtype.
    """

    _ndims: ClassVar[tuple[int, ...]] = (2, 3)
    _layout: ClassVar[str] = "(N, C) or (N, L, C)"


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, H, W, C) images (``torch.nn.BatchNorm2d``).

    Channels last: PyTorch's (N, C, H, W) is (N, H, W, C) here. Statistics per channel over
    N, H and W; otherwise exactly as :class:`BatchNorm1d` (training normalises with the
    biased batch variance and updates the running variance with the unbiased one;
    ``momentum=None`` gives a cumulative average; ``num_batches_tracked`` is int32).

    Args:
        num_features: C, the size of the input's last axis.
        eps: added to the variance before the square root.
        momentum: the running-average factor; None for a cumulative moving average.
        affine: whether to learn ``weight`` and ``bias`` (C,).
        track_running_stats: whether to keep running statistics (state); if False,
            batch statistics are used in both modes.
        axis_name: optional named axis over which batch statistics are averaged.
        dtype: dtype of the parameters and running statistics.

    Input (N, H, W, C), floating; output of the same shape and dtype.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from funcnet import nn
        >>> bn = nn.BatchNorm2d(3)
        >>> params, state = bn.init(jax.random.key(0))
        >>> sorted(state)
        ['num_batches_tracked', 'running_mean', 'running_var']
        >>> x = jax.random.normal(jax.random.key(1), (8, 4, 4, 3))
        >>> y, state = bn.apply(params, state, x, train=True)  # batch stats; state updated
        >>> y.shape, int(state["num_batches_tracked"])
        ((8, 4, 4, 3), 1)
        >>> y, _ = bn.apply(params, state, x)  # eval: running statistics, state unchanged
    """

    _ndims: ClassVar[tuple[int, ...]] = (4,)
    _layout: ClassVar[str] = "(N, H, W, C)"


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class SyncBatchNorm(_BatchNorm):
    """Batch normalisation with statistics over every device's batch (``torch.nn.SyncBatchNorm``).

    :class:`BatchNorm1d`/:class:`BatchNorm2d` for any input (N, *, C), whose batch mean and
    variance in training mode are averaged over the named axis ``axis_name`` of
    ``jax.shard_map`` or ``jax.pmap`` (``funcnet.parallel.DataParallel``): every device
    normalises with the statistics of the global batch, and the running statistics (the
    same on every device) move towards them, exactly as BatchNorm on the whole batch would.
    Each device must hold the same number of rows. In eval mode the running statistics
    normalise and no communication happens.

    Under plain ``jax.jit`` with a batch-sharded input (``funcnet.parallel``'s
    recommended path) no axis is named: there use :class:`BatchNorm1d` or
    :class:`BatchNorm2d` (their mean over the sharded batch axis is already the mean of
    the global batch) or ``axis_name=None``.

    Args:
        num_features: C, the size of the input's last axis.
        eps: added to the variance before the square root.
        momentum: the running-average factor; None for a cumulative moving average.
        affine: whether to learn ``weight`` and ``bias`` (C,).
        track_running_stats: whether to keep running statistics (state); if False,
            batch statistics (synchronised) are used in both modes.
        axis_name: the named axis the batch is split over; None makes this a plain,
            per-device BatchNorm.
        dtype: dtype of the parameters and running statistics.

    Input (N, *, C) (PyTorch's (N, C, *)), floating; output of the same shape and dtype.

    Raises:
        ValueError: at trace time, when batch statistics are needed and ``axis_name`` is
            not an axis of an enclosing ``shard_map``/``pmap``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jax.sharding import PartitionSpec as P
        >>> from funcnet import nn, parallel
        >>> bn = nn.SyncBatchNorm(3)
        >>> params, state = bn.init(jax.random.key(0))
        >>> x = jax.random.normal(jax.random.key(1), (8, 5, 3))
        >>> step = jax.shard_map(
        ...     lambda x: bn.apply(params, state, x, train=True),
        ...     mesh=parallel.make_mesh(), in_specs=P("data"), out_specs=(P("data"), P()))
        >>> y, state = step(x)
        >>> y.shape, int(state["num_batches_tracked"])
        ((8, 5, 3), 1)
    """

    axis_name: str | None = "data"

    _layout: ClassVar[str] = "(N, *, C)"

    def _check_rank(self, ctx: Context, x: jax.Array) -> None:
        _check_batched(ctx, x)

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        if self.axis_name is not None and (ctx.train or not self.track_running_stats):
            _require_axis(ctx, self.axis_name)
        return super().forward(ctx, x)


def _require_axis(ctx: Context, axis_name: str) -> None:
    try:
        lax.axis_size(axis_name)
    except NameError:
        raise ValueError(
            f"{_label(ctx)}: axis_name {axis_name!r} is not a named axis here; SyncBatchNorm "
            "averages its statistics over an axis of jax.shard_map or jax.pmap. Under plain "
            "jax.jit with a batch-sharded input use BatchNorm (its statistics are already "
            "over the whole batch) or SyncBatchNorm(axis_name=None)."
        ) from None


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class _InstanceNorm(Module):
    """Shared implementation; the subclasses fix the number of spatial axes."""

    num_features: int
    eps: float = 1e-5
    momentum: float | None = 0.1
    affine: bool = False
    track_running_stats: bool = False
    bias: bool = True
    dtype: Any = jnp.float32

    _spatial: ClassVar[int] = 0
    _layout: ClassVar[str] = ""

    def init(self, key: jax.Array) -> tuple[dict[str, Any], dict[str, Any]]:
        del key  # PyTorch's deterministic init: weight 1, bias 0, running stats (0, 1)
        c = (self.num_features,)
        params = _affine_params(c, self.affine, self.affine and self.bias, self.dtype)
        return params, _running_state(c, self.dtype) if self.track_running_stats else {}

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        check_ndim(ctx, x, (self._spatial + 1, self._spatial + 2), layout=self._layout)
        check_last_dim(ctx, x, self.num_features, spatial_dims=self._spatial)
        check_input_dtype(ctx, x)
        batched = jnp.ndim(x) == self._spatial + 2
        xb = x if batched else x[None]
        use_input_stats = ctx.train or not self.track_running_stats
        if use_input_stats and _spatial_count(xb) <= 1:
            raise ShapeError(
                f"{_label(ctx)}: expected more than 1 spatial element when training, got "
                f"input shape {jnp.shape(x)}"
            )
        weight = ctx.param("weight") if self.affine else None
        bias = ctx.param("bias") if self.affine and self.bias else None
        if not self.track_running_stats:
            y, _, _ = F.instance_norm(xb, None, None, weight, bias, eps=self.eps)
            return y if batched else y[0]
        state = _require_state(ctx, _BN_STATE)
        y, mean, var = F.instance_norm(
            xb,
            state["running_mean"],
            state["running_var"],
            weight,
            bias,
            use_input_stats=ctx.train,
            momentum=0.0 if self.momentum is None else self.momentum,  # PyTorch's None
            eps=self.eps,
        )
        if ctx.train:
            ctx.set_state("running_mean", mean)
            ctx.set_state("running_var", var)
        return y if batched else y[0]


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class InstanceNorm1d(_InstanceNorm):
    """Instance normalisation of (N, L, C) sequences (``torch.nn.InstanceNorm1d``).

    Channels last: PyTorch's (N, C, L) is (N, L, C) here, and its unbatched (C, L) is
    (L, C). Each (sample, channel) is normalised with the mean and biased variance of its
    own L positions: ``y = (x − mean) / sqrt(var + eps) · weight + bias``, computed in at
    least float32 and returned in the input's dtype.

    With ``track_running_stats``, training mode also moves the running statistics towards
    the batch average of the per-instance means and *unbiased* variances
    (``running = (1 − momentum)·running + momentum·batch``) and eval mode normalises with
    them, as PyTorch. ``momentum=None`` means 0 there (the statistics never move), and
    ``num_batches_tracked`` is kept for checkpoint compatibility but, as in PyTorch, never
    counts.

    Parameters, with ``affine``: ``weight`` (ones) and ``bias`` (zeros), shape (C,).
    State, with ``track_running_stats``: ``running_mean`` (zeros), ``running_var`` (ones),
    both (C,), and ``num_batches_tracked``, an int32 scalar (int64 in PyTorch).

    Args:
        num_features: C, the size of the input's last axis (checked even without
            ``affine``, where PyTorch only warns, so a channels-first input fails here).
        eps: added to the variance before the square root.
        momentum: the running-average factor (None: 0, as PyTorch).
        affine: whether to learn ``weight`` and ``bias`` (default False, as PyTorch).
        track_running_stats: whether to keep running statistics and normalise with them
            in eval mode (default False: instance statistics in both modes).
        bias: whether to learn ``bias`` too, with ``affine`` (PyTorch's keyword ``bias``).
        dtype: dtype of the parameters and running statistics.

    Input (N, L, C) or (L, C), floating; output of the same shape and dtype.
    """

    _spatial: ClassVar[int] = 1
    _layout: ClassVar[str] = "(N, L, C) or (L, C)"


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class InstanceNorm2d(_InstanceNorm):
    """Instance normalisation of (N, H, W, C) images (``torch.nn.InstanceNorm2d``).

    Channels last: PyTorch's (N, C, H, W) is (N, H, W, C) here, and its unbatched
    (C, H, W) is (H, W, C). Each (sample, channel) is normalised over its H × W positions;
    otherwise exactly as :class:`InstanceNorm1d` (running statistics only with
    ``track_running_stats``, updated with the unbiased variance and used in eval mode).

    Args:
        num_features: C, the size of the input's last axis (always checked).
        eps: added to the variance before the square root.
        momentum: the running-average factor (None: 0, as PyTorch).
        affine: whether to learn ``weight`` (ones) and ``bias`` (zeros), (C,).
        track_running_stats: whether to keep running statistics (state) for eval mode.
        bias: whether to learn ``bias`` too, with ``affine``.
        dtype: dtype of the parameters and running statistics.

    Input (N, H, W, C) or (H, W, C), floating; output of the same shape and dtype.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from funcnet import nn
        >>> norm = nn.InstanceNorm2d(3, affine=True)
        >>> params, state = norm.init(jax.random.key(0))
        >>> sorted(params), state
        (['bias', 'weight'], {})
        >>> x = jax.random.normal(jax.random.key(1), (2, 5, 5, 3))
        >>> y, _ = norm.apply(params, state, x)
        >>> float(jnp.abs(y.mean(axis=(1, 2))).max()) < 1e-5  # each (sample, channel)
        True
    """

    _spatial: ClassVar[int] = 2
    _layout: ClassVar[str] = "(N, H, W, C) or (H, W, C)"


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class InstanceNorm3d(_InstanceNorm):
    """Instance normalisation of (N, D, H, W, C) volumes (``torch.nn.InstanceNorm3d``).

    Channels last: PyTorch's (N, C, D, H, W) is (N, D, H, W, C) here, and its unbatched
    (C, D, H, W) is (D, H, W, C). Each (sample, channel) is normalised over its D × H × W
    positions; otherwise exactly as :class:`InstanceNorm1d`.

    Args:
        num_features: C, the size of the input's last axis (always checked).
        eps: added to the variance before the square root.
        momentum: the running-average factor (None: 0, as PyTorch).
        affine: whether to learn ``weight`` (ones) and ``bias`` (zeros), (C,).
        track_running_stats: whether to keep running statistics (state) for eval mode.
        bias: whether to learn ``bias`` too, with ``affine``.
        dtype: dtype of the parameters and running statistics.

    Input (N, D, H, W, C) or (D, H, W, C), floating; output of the same shape and dtype.
    """

    _spatial: ClassVar[int] = 3
    _layout: ClassVar[str] = "(N, D, H, W, C) or (D, H, W, C)"


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class LayerNorm(Module):
    """Normalises over the trailing ``normalized_shape`` axes (``torch.nn.LayerNorm``).

    ``y = (x − mean) / sqrt(var + eps) · weight + bias`` with the biased variance, computed
    in at least float32.

    Args:
        normalized_shape: the trailing shape (an int for the last axis only).
        eps: added to the variance.
        elementwise_affine: whether to learn ``weight`` (ones) of ``normalized_shape``.
        bias: whether to learn ``bias`` (zeros) too (needs ``elementwise_affine``).
        dtype: dtype of the parameters.

    Input (*, *normalized_shape), floating; output of the same shape and dtype.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from funcnet import nn
        >>> ln = nn.LayerNorm(8)
        >>> params, _ = ln.init(jax.random.key(0))
        >>> y, _ = ln.apply(params, {}, jnp.ones((2, 5, 8), jnp.bfloat16))
        >>> y.shape, y.dtype
        ((2, 5, 8), dtype(bfloat16))
    """

    normalized_shape: int | tuple[int, ...]
    eps: float = 1e-5
    elementwise_affine: bool = True
    bias: bool = True
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        self.normalized_shape = _as_shape("LayerNorm", self.normalized_shape)

    def init(self, key: jax.Array) -> tuple[dict[str, Any], dict[str, Any]]:
        affine = self.elementwise_affine
        return _affine_params(self.normalized_shape, affine, affine and self.bias, self.dtype), {}

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        _normalized_axes(jnp.shape(x), self.normalized_shape, _label(ctx))
        check_input_dtype(ctx, x)
        weight = ctx.param("weight") if self.elementwise_affine else None
        bias = ctx.param("bias") if self.elementwise_affine and self.bias else None
        return F.layer_norm(x, self.normalized_shape, weight, bias, self.eps)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class GroupNorm(Module):
    """Group normalisation of channels-last input (``torch.nn.GroupNorm``).

    The channels are split into ``num_groups`` groups of consecutive channels; each
    sample's group is normalised over its channels and all positions, then ``weight`` and
    ``bias`` apply per channel. Group membership is PyTorch's, so weights import unchanged.

    Args:
        num_groups: the number of groups; must divide ``num_channels``.
        num_channels: C, the size of the input's last axis.
        eps: added to the variance.
        affine: whether to learn per-channel ``weight`` (ones) and ``bias`` (zeros), (C,).
        dtype: dtype of the parameters.

    Input (N, *, C) (PyTorch's (N, C, *)), floating; output of the same shape and dtype.
    """

    num_groups: int
    num_channels: int
    eps: float = 1e-5
    affine: bool = True
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        if self.num_groups <= 0 or self.num_channels % self.num_groups:
            raise ValueError(
                f"GroupNorm: num_channels ({self.num_channels}) must be divisible by "
                f"num_groups ({self.num_groups})"
            )

    def init(self, key: jax.Array) -> tuple[dict[str, Any], dict[str, Any]]:
        return _affine_params((self.num_channels,), self.affine, self.affine, self.dtype), {}

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        _check_batched(ctx, x)
        check_last_dim(ctx, x, self.num_channels, spatial_dims=_image_spatial_dims(x))
        check_input_dtype(ctx, x)
        weight = ctx.param("weight") if self.affine else None
        bias = ctx.param("bias") if self.affine else None
        return F.group_norm(x, self.num_groups, weight, bias, self.eps)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class RMSNorm(Module):
    """Root-mean-square normalisation over the trailing axes (``torch.nn.RMSNorm``).

    ``y = x / sqrt(mean(x²) + eps) · weight``, computed in at least float32.

    Args:
        normalized_shape: the trailing shape (an int for the last axis only).
        eps: added to the mean square; None (default) gives ``finfo(dtype).eps`` of the
            computation dtype (float32's for bfloat16 input), as PyTorch.
        elementwise_affine: whether to learn ``weight`` (ones) of ``normalized_shape``.
        dtype: dtype of the parameters.

    Input (*, *normalized_shape), floating; output of the same shape and dtype.
    """

    normalized_shape: int | tuple[int, ...]
    eps: float | None = None
    elementwise_affine: bool = True
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        self.normalized_shape = _as_shape("RMSNorm", self.normalized_shape)

    def init(self, key: jax.Array) -> tuple[dict[str, Any], dict[str, Any]]:
        return _affine_params(self.normalized_shape, self.elementwise_affine, False, self.dtype), {}

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        _normalized_axes(jnp.shape(x), self.normalized_shape, _label(ctx))
        check_input_dtype(ctx, x)
        weight = ctx.param("weight") if self.elementwise_affine else None
        return F.rms_norm(x, self.normalized_shape, weight, self.eps)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class LocalResponseNorm(Module):
    """Local response normalisation across channels (``torch.nn.LocalResponseNorm``).

    ``y = x / (k + alpha · mean(x²))^beta``, the mean over a window of ``size`` channels
    (the last axis here; PyTorch's axis 1) zero-padded with ``size // 2`` channels before
    and ``(size − 1) // 2`` after, always divided by ``size``: PyTorch's numerics. Computed
    in at least float32; the output has the input's dtype. No parameters.

    Args:
        size: the number of neighbouring channels in the window.
        alpha: multiplicative factor.
        beta: exponent.
        k: additive factor.

    Input (N, *, C) with at least 3 dimensions (PyTorch's (N, C, *)), floating; output of
    the same shape and dtype.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from funcnet import nn
        >>> lrn = nn.LocalResponseNorm(2)
        >>> y, _ = lrn.apply({}, {}, jnp.ones((1, 4, 4, 3)))
        >>> y.shape
        (1, 4, 4, 3)
    """

    size: int
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 1.0

    def __post_init__(self) -> None:
        _check_lrn_size("LocalResponseNorm", self.size)

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        if jnp.ndim(x) < 3:
            raise ShapeError(
                f"{_label(ctx)}: expected input (N, *, C) with at least 3 dimensions, got "
                f"shape {jnp.shape(x)}"
            )
        check_input_dtype(ctx, x)
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)
