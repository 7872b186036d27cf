"""Normalisation: batch_norm, instance_norm, layer_norm, group_norm, rms_norm,
local_response_norm (channels-last).

Statistics and the normalisation itself are computed in at least float32 (bfloat16 and
float16 inputs are upcast, float64 stays float64), as PyTorch does with its "opmath"
type; the result is cast back to the input's dtype. Variances are two-pass (the mean of
squared deviations from the mean), which is more accurate than E[x²] − E[x]² and
faster on XLA:CPU. Every broadcast is explicit, so these functions run under
``jax.numpy_dtype_promotion("strict")`` and ``jax.numpy_rank_promotion("raise")``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from funcnet.errors import ShapeError

__all__ = [
    "batch_norm",
    "group_norm",
    "instance_norm",
    "layer_norm",
    "local_response_norm",
    "rms_norm",
]


def _stats_dtype(x: jax.typing.ArrayLike) -> jnp.dtype:
    """The dtype normalisation computes in: the input's, but at least float32."""
    dtype = jnp.result_type(x)
    if jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits >= 32:
        return dtype
    return jnp.dtype(jnp.float32)


def _normalized_axes(shape: Sequence[int], normalized_shape: Sequence[int], where: str) -> tuple:
    """The trailing axes matching ``normalized_shape``, or ShapeError naming ``where``."""
    shape, normalized_shape = tuple(shape), tuple(normalized_shape)
    k = len(normalized_shape)
    if k == 0 or len(shape) < k or shape[len(shape) - k :] != normalized_shape:
        raise ShapeError(
            f"{where}: expected input with trailing dimensions {normalized_shape}, "
            f"got shape {shape}"
        )
    return tuple(range(len(shape) - k, len(shape)))


def _batch_count(x: jax.typing.ArrayLike, axis_name: str | None = None) -> int:
    """Values per channel that batch statistics average over (all axes but the last,
    times the size of the named axis when given)."""
    count = math.prod(jnp.shape(x)[:-1])
    return count * lax.axis_size(axis_name) if axis_name is not None else count


def _affine(y: jax.Array, weight: jax.Array | None, bias: jax.Array | None, ndim: int) -> jax.Array:
    """y·weight + bias, with weight and bias (of y's trailing shape) cast to y's dtype."""
    if weight is not None:
        w = jnp.asarray(weight, y.dtype)
        y = y * w.reshape((1,) * (ndim - w.ndim) + w.shape)
    if bias is not None:
        b = jnp.asarray(bias, y.dtype)
        y = y + b.reshape((1,) * (ndim - b.ndim) + b.shape)
    return y


def batch_norm(
    x: jax.Array,
    running_mean: jax.Array | None,
    running_var: jax.Array | None,
    weight: jax.Array | None = None,
    bias: jax.Array | None = None,
    training: bool = False,
    momentum: float | jax.Array = 0.1,
    eps: float = 1e-5,
    *,
    axis_name: str | None = None,
) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
    """Batch normalisation over every axis but the last (channels-last).

    In training mode (or without running statistics) the batch is normalised with its own
    mean and *biased* variance; the running statistics are then moved towards the batch's
    mean and *unbiased* variance: ``running = (1 − momentum)·running + momentum·batch``.
    In eval mode the running statistics normalise. Unlike ``torch.nn.functional.batch_norm``,
    which updates the running buffers in place, this returns the updated ones.

    Args:
        x: (N, C), (N, L, C), (N, H, W, C) or any (*, C); floating.
        running_mean: (C,) or None (then batch statistics are used in both modes).
        running_var: (C,) or None, together with ``running_mean``.
        weight: (C,) scale, or None.
        bias: (C,) shift, or None.
        training: use (and update from) batch statistics; a Python bool.
        momentum: the update factor (a float, or a traced scalar such as the layer's
            ``1 / num_batches_tracked`` for a cumulative average).
        eps: added to the variance before the square root.
        axis_name: a named axis (of ``pmap``, ``shard_map`` or ``vmap``) over which the
            batch statistics are averaged, as SyncBatchNorm does; every member of the
            axis must hold the same number of values per channel.

    Returns:
        ``(y, running_mean, running_var)``: y of x's shape and dtype; the running
        statistics updated in training mode (unchanged in eval mode, None when None).

    Raises:
        ShapeError: when batch statistics would average over a single value per channel
            (PyTorch's "Expected more than 1 value per channel when training").
    """
    if (running_mean is None) != (running_var is None):
        raise ValueError("batch_norm: pass both running_mean and running_var, or neither")
    ndim = jnp.ndim(x)
    dtype = _stats_dtype(x)
    xf = jnp.asarray(x, dtype)
    if training or running_mean is None:
        count = _batch_count(x, axis_name)
        if count <= 1:
            raise ShapeError(
                "batch_norm: expected more than 1 value per channel when training, got "
                f"input shape {jnp.shape(x)}"
            )
        axes = tuple(range(ndim - 1))
        mean = jnp.mean(xf, axis=axes, keepdims=True)
        if axis_name is not None:
            mean = lax.pmean(mean, axis_name)
        centered = xf - mean
        var = jnp.mean(jnp.square(centered), axis=axes, keepdims=True)
        if axis_name is not None:
            var = lax.pmean(var, axis_name)
        if running_mean is not None and training:
            new_mean = lax.stop_gradient(mean.reshape(-1))
            new_var = lax.stop_gradient(var.reshape(-1) * (count / (count - 1)))
            running_mean = _moving_average(running_mean, new_mean, momentum)
            running_var = _moving_average(running_var, new_var, momentum)
    else:
        mean = jnp.asarray(running_mean, dtype).reshape((1,) * (ndim - 1) + (-1,))
        var = jnp.asarray(running_var, dtype).reshape((1,) * (ndim - 1) + (-1,))
        centered = xf - mean
    y = _affine(centered * lax.rsqrt(var + eps), weight, bias, ndim)
    return y.astype(jnp.result_type(x)), running_mean, running_var


def _moving_average(running: jax.Array, value: jax.Array, momentum: float | jax.Array):
    old = jnp.asarray(running)
    m = jnp.asarray(momentum, value.dtype)
    return ((1 - m) * old.astype(value.dtype) + m * value).astype(old.dtype)


def _spatial_count(x: jax.typing.ArrayLike) -> int:
    """Values per (sample, channel) of a batched channels-last ``(N, *spatial, C)`` input."""
    return math.prod(jnp.shape(x)[1:-1])


def instance_norm(
    x: jax.Array,
    running_mean: jax.Array | None = None,
    running_var: jax.Array | None = None,
    weight: jax.Array | None = None,
    bias: jax.Array | None = None,
    use_input_stats: bool = True,
    momentum: float | jax.Array = 0.1,
    eps: float = 1e-5,
) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
    """Instance normalisation of channels-last input (``torch.nn.functional.instance_norm``).

    With ``use_input_stats`` each (sample, channel) is normalised with the mean and
    *biased* variance of its own spatial positions; running statistics, when given, move
    towards the batch average of the per-instance means and *unbiased* variances:
    ``running = (1 − momentum)·running + momentum·mean_over_N(instance)``, as PyTorch's.
    Without ``use_input_stats`` the running statistics normalise. Unlike PyTorch's, which
    updates the running buffers in place, this returns the updated ones.

    Args:
        x: (N, L, C), (N, H, W, C) or (N, D, H, W, C): any (N, *spatial, C) with at least
            one spatial axis; floating.
        running_mean: (C,) or None.
        running_var: (C,) or None, together with ``running_mean``.
        weight: (C,) scale, or None.
        bias: (C,) shift, or None.
        use_input_stats: normalise with (and update from) the instance statistics; a
            Python bool. False needs the running statistics.
        momentum: the update factor (a float or a traced scalar).
        eps: added to the variance before the square root.

    Returns:
        ``(y, running_mean, running_var)``: y of x's shape and dtype; the running
        statistics updated when ``use_input_stats`` (unchanged otherwise, None when None).

    Raises:
        ShapeError: for fewer than 3 dimensions, or a single spatial element when
            ``use_input_stats`` (PyTorch's "Expected more than 1 spatial element").
        ValueError: when only one running statistic is given, or none and
            ``use_input_stats`` is False.
    """
    if (running_mean is None) != (running_var is None):
        raise ValueError("instance_norm: pass both running_mean and running_var, or neither")
    if not use_input_stats and running_mean is None:
        raise ValueError("instance_norm: use_input_stats=False needs running_mean and running_var")
    shape = jnp.shape(x)
    if len(shape) < 3:
        raise ShapeError(
            f"instance_norm: expected input (N, *spatial, C) with at least 3 dimensions, "
            f"got shape {tuple(shape)}"
        )
    count = _spatial_count(x)
    if use_input_stats and count <= 1:
        raise ShapeError(
            "instance_norm: expected more than 1 spatial element when training, got input "
            f"shape {tuple(shape)}"
        )
    xf = jnp.asarray(x, _stats_dtype(x))
    if use_input_stats:
        axes = tuple(range(1, len(shape) - 1))
        mean = jnp.mean(xf, axis=axes, keepdims=True)
        centered = xf - mean
        var = jnp.mean(jnp.square(centered), axis=axes, keepdims=True)
        if running_mean is not None:
            batch_mean = lax.stop_gradient(jnp.mean(mean, axis=axes).mean(axis=0))
            unbiased = jnp.mean(var, axis=axes).mean(axis=0) * (count / (count - 1))
            running_mean = _moving_average(running_mean, batch_mean, momentum)
            running_var = _moving_average(running_var, lax.stop_gradient(unbiased), momentum)
    else:
        c = (1,) * (len(shape) - 1) + (-1,)
        centered = xf - jnp.asarray(running_mean, xf.dtype).reshape(c)
        var = jnp.asarray(running_var, xf.dtype).reshape(c)
    y = _affine(centered * lax.rsqrt(var + eps), weight, bias, len(shape))
    return y.astype(jnp.result_type(x)), running_mean, running_var


def layer_norm(
    x: jax.Array,
    normalized_shape: int | Sequence[int],
    weight: jax.Array | None = None,
    bias: jax.Array | None = None,
    eps: float = 1e-5,
) -> jax.Array:
    """Normalises over the trailing ``normalized_shape`` axes (``F.layer_norm``).

    y = (x − mean) / sqrt(var + eps) · weight + bias, with the biased variance.

    Args:
        x: (*, *normalized_shape); floating.
        normalized_shape: the trailing shape to normalise over (an int for one axis).
        weight: (*normalized_shape) or None.
        bias: (*normalized_shape) or None.
        eps: added to the variance.

    Returns:
        x's shape and dtype.
    """
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    axes = _normalized_axes(jnp.shape(x), normalized_shape, "layer_norm")
    xf = jnp.asarray(x, _stats_dtype(x))
    centered = xf - jnp.mean(xf, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(centered), axis=axes, keepdims=True)
    y = _affine(centered * lax.rsqrt(var + eps), weight, bias, xf.ndim)
    return y.astype(jnp.result_type(x))


def group_norm(
    x: jax.Array,
    num_groups: int,
    weight: jax.Array | None = None,
    bias: jax.Array | None = None,
    eps: float = 1e-5,
) -> jax.Array:
    """Group normalisation on channels-last input (``F.group_norm`` for (N, *, C)).

    The C channels are split into ``num_groups`` groups of consecutive channels (as in
    PyTorch, so per-channel weights import unchanged); each sample's group is normalised
    over its channels and all spatial positions, then scaled per channel.

    Args:
        x: (N, *, C) with C divisible by ``num_groups``; floating.
        num_groups: the number of groups.
        weight: (C,) or None.
        bias: (C,) or None.
        eps: added to the variance.

    Returns:
        x's shape and dtype.
    """
    shape = jnp.shape(x)
    if len(shape) < 2 or shape[-1] % num_groups:
        raise ShapeError(
            f"group_norm: expected input (N, *, C) with C divisible by num_groups="
            f"{num_groups}, got shape {tuple(shape)}"
        )
    xf = jnp.asarray(x, _stats_dtype(x))
    grouped = xf.reshape((*shape[:-1], num_groups, shape[-1] // num_groups))
    axes = (*range(1, len(shape) - 1), len(shape))  # spatial axes and within-group
    centered = grouped - jnp.mean(grouped, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(centered), axis=axes, keepdims=True)
    y = (centered * lax.rsqrt(var + eps)).reshape(shape)
    return _affine(y, weight, bias, len(shape)).astype(jnp.result_type(x))


def rms_norm(
    x: jax.Array,
    normalized_shape: int | Sequence[int],
    weight: jax.Array | None = None,
    eps: float | None = None,
) -> jax.Array:
    """Root-mean-square normalisation over the trailing axes (``F.rms_norm``).

    y = x / sqrt(mean(x²) + eps) · weight.

    Args:
        x: (*, *normalized_shape); floating.
        normalized_shape: the trailing shape to normalise over (an int for one axis).
        weight: (*normalized_shape) or None.
        eps: added to the mean square; None gives ``finfo(dtype).eps`` of the dtype the
            computation runs in (float32 for bfloat16/float16 input), as PyTorch does.

    Returns:
        x's shape and dtype.
    """
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    axes = _normalized_axes(jnp.shape(x), normalized_shape, "rms_norm")
    dtype = _stats_dtype(x)
    if eps is None:
        eps = float(jnp.finfo(dtype).eps)
    xf = jnp.asarray(x, dtype)
    ms = jnp.mean(jnp.square(xf), axis=axes, keepdims=True)
    y = _affine(xf * lax.rsqrt(ms + eps), weight, None, xf.ndim)
    return y.astype(jnp.result_type(x))


def _check_lrn_size(owner: str, size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"{owner}: size must be a positive int, got {size!r}")


def local_response_norm(
    x: jax.Array, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0
) -> jax.Array:
    """Local response normalisation across channels (``F.local_response_norm``).

    ``y = x / (k + alpha · mean(x²))^beta``, the mean taken over a window of ``size``
    channels around each channel (the last axis), zero-padded with ``size // 2`` channels
    before and ``(size − 1) // 2`` after and always divided by ``size``: PyTorch's
    definition (its ``alpha`` is divided by ``size``, as in the formula of its docs).

    Args:
        x: (N, *, C) with at least 3 dimensions (PyTorch's (N, C, *)); floating.
        size: the number of neighbouring channels in the window.
        alpha: multiplicative factor.
        beta: exponent.
        k: additive factor.

    Returns:
        x's shape and dtype (computed in at least float32).

    Raises:
        ShapeError: for input with fewer than 3 dimensions.
        ValueError: unless ``size`` is a positive int.
    """
    _check_lrn_size("local_response_norm", size)
    shape = jnp.shape(x)
    if len(shape) < 3:
        raise ShapeError(
            f"local_response_norm: expected input (N, *, C) with at least 3 dimensions, got "
            f"shape {tuple(shape)}"
        )
    xf = jnp.asarray(x, _stats_dtype(x))
    window_sum = lax.reduce_window(
        jnp.square(xf),
        np.zeros((), xf.dtype),
        lax.add,
        window_dimensions=(1,) * (len(shape) - 1) + (size,),
        window_strides=(1,) * len(shape),
        padding=((0, 0),) * (len(shape) - 1) + ((size // 2, (size - 1) // 2),),
    )
    div = (window_sum / size * alpha + k) ** beta
    return (xf / div).astype(jnp.result_type(x))
