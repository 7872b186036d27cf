"""interpolate, pad, pixel_shuffle, fold/unfold: resampling and padding of channels-last arrays.

Images are ``(N, *spatial, C)``: NLC, NHWC, NDHWC. Every function follows PyTorch's
definition on the equivalent channels-first tensor, so moving the channel axis of
PyTorch's result last gives funcnet's result on the channels-last input, except
:func:`pad`, which is PyTorch's ``F.pad`` on the array's own axes (see its docstring).

Interpolation is separable: each spatial axis, the last first (PyTorch's order), is one
gather of the taps of every output position and a weighted sum of them. The source
positions and weights are computed with NumPy while tracing (shapes are static), in
PyTorch's arithmetic: float32 for float32 and narrower inputs, float64 for float64, with
its special cases (nearest indices rounded through float32, bicubic's clamped taps,
linear's copy when an axis keeps its size), so indices agree exactly and values to
rounding.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from funcnet.errors import ShapeError, check_dtype, check_ndim
from funcnet.functional._conv import IntOrTuple, _batched, _label, _ntuple
from funcnet.functional._pooling import _accumulator, _adaptive_pool

__all__ = ["fold", "interpolate", "pad", "pixel_shuffle", "pixel_unshuffle", "unfold"]

# mode -> the number of spatial axes it needs (None: 1, 2 or 3, from the input's rank)
_MODES = {
    "nearest": None,
    "nearest-exact": None,
    "area": None,
    "linear": 1,
    "bilinear": 2,
    "bicubic": 2,
    "trilinear": 3,
}
_NOT_ALIGNING = ("nearest", "nearest-exact", "area")
_ANTIALIAS_MODES = ("bilinear", "bicubic")
_PAD_MODES = ("constant", "reflect", "replicate", "circular")

# ------------------------------------------------------------------------- arguments


def _per_axis(value: Any, nd: int, name: str, kind: Callable) -> tuple:
    """``value`` (a number or a sequence of ``nd``) as an ``nd``-tuple of ``kind``."""
    items = tuple(value) if isinstance(value, Sequence) else (value,) * nd
    if len(items) != nd:
        raise ValueError(f"{name} {value!r} must have {nd} entries, one per spatial axis")
    return tuple(kind(v) for v in items)


def _check_resize_args(
    size: Any,
    scale_factor: Any,
    mode: str,
    align_corners: bool | None,
    recompute_scale_factor: bool | None,
    antialias: bool,
) -> None:
    """PyTorch's argument checks of ``interpolate`` that do not need the input."""
    if mode == "lanczos":
        raise NotImplementedError("mode='lanczos' is not supported")
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {sorted(_MODES)}, got {mode!r}")
    if mode in _NOT_ALIGNING and align_corners is not None:
        raise ValueError(
            "align_corners can only be set with the interpolating modes: "
            "linear | bilinear | bicubic | trilinear"
        )
    if size is not None and scale_factor is not None:
        raise ValueError("only one of size or scale_factor should be defined")
    if size is None and scale_factor is None:
        raise ValueError("either size or scale_factor should be defined")
    if recompute_scale_factor and size is not None:
        raise ValueError("recompute_scale_factor is not meaningful with an explicit size")
    if antialias and mode not in _ANTIALIAS_MODES:
        raise ValueError(f"antialias=True needs mode 'bilinear' or 'bicubic', got {mode!r}")
    what, values = ("size", size) if size is not None else ("scale_factor", scale_factor)
    kinds = (int, np.integer) if size is not None else (int, float, np.integer, np.floating)
    for v in values if isinstance(values, Sequence) else (values,):
        if isinstance(v, bool) or not isinstance(v, kinds) or v <= 0:
            kind = "ints" if size is not None else "numbers"
            raise ValueError(f"{what} must be positive {kind}, got {values!r}")


def _output_sizes(
    where: Any, shape: tuple, size: Any, scale_factor: Any, mode: str, recompute: bool | None
) -> tuple[tuple[int, ...], tuple[float | None, ...]]:
    """Output sizes, and the scale factors the coordinates use (None: input/output)."""
    spatial, nd = shape[1:-1], len(shape) - 2
    try:
        if size is not None:
            outs, scales = _per_axis(size, nd, "size", operator.index), (None,) * nd
        else:
            factors = _per_axis(scale_factor, nd, "scale_factor", float)
            # as PyTorch: floor(n * factor) in float64
            outs = tuple(int(n * f) for n, f in zip(spatial, factors))
            scales = (None,) * nd if recompute or mode == "area" else factors
    except ValueError as e:
        raise ShapeError(f"{_label(where)}: {e}; got input shape {shape}") from None
    if min(outs) < 1 or min(spatial) < 1:
        raise ShapeError(
            f"{_label(where)}: input and output sizes must be positive, got output size "
            f"{outs} for input shape {shape}"
        )
    return outs, scales


# ------------------------------------------------------------- source positions


def _opmath(dtype: Any) -> type:
    """The float type PyTorch computes source positions in for ``dtype``."""
    return np.float64 if jnp.dtype(dtype) == jnp.float64 else np.float32


def _coordinate_scale(n: int, o: int, align_corners: bool, scale: float | None, ft: type):
    """PyTorch's ``area_pixel_compute_scale``: input step per output step."""
    if align_corners:
        return ft(n - 1) / ft(o - 1) if o > 1 else ft(0)
    if scale is not None:
        return ft(1.0 / scale)
    return ft(n) / ft(o)


def _source_index(s: Any, o: int, align_corners: bool, cubic: bool, ft: type) -> np.ndarray:
    """PyTorch's ``area_pixel_compute_source_index`` for output positions 0..o-1."""
    i = np.arange(o).astype(ft)
    if align_corners:
        return s * i
    real = s * (i + ft(0.5)) - ft(0.5)
    return real if cubic else np.maximum(real, ft(0))


def _floor32(real: np.ndarray) -> np.ndarray:
    """``floorf`` as PyTorch applies it: through float32, whatever the precision."""
    return np.floor(real.astype(np.float32)).astype(np.int64)


def _nearest_table(n, o, scale, exact, ft, nd):
    if not exact and nd == 2:
        # PyTorch's CPU kernel for 2-D nearest (its ``nearest_idx``) copies an axis that
        # keeps its size, halves the index when it doubles, and otherwise uses float32
        # (its 1-D and 3-D kernels take floor(i·scale) in every case)
        if o in (n, 2 * n):
            return (np.arange(o) // (o // n))[:, None], None
        ft = np.float32
    s = _coordinate_scale(n, o, False, scale, ft)
    if exact:
        index = _floor32(_source_index(s, o, False, False, ft) + ft(0.5))
    else:
        index = _floor32(s * np.arange(o).astype(ft))
    return np.minimum(index, n - 1)[:, None], None


def _linear_table(n, o, scale, align_corners, ft):
    if n == o:  # PyTorch copies an axis that keeps its size, whatever scale_factor says
        return np.arange(o)[:, None], None
    s = _coordinate_scale(n, o, align_corners, scale, ft)
    real = _source_index(s, o, align_corners, False, ft)
    i0 = np.minimum(_floor32(real), n - 1)
    l1 = np.clip(real - i0.astype(ft), ft(0), ft(1))
    index = np.stack([i0, i0 + (i0 < n - 1)], axis=1)
    return index, np.stack([ft(1) - l1, l1], axis=1)


def _cubic_near(x: np.ndarray, a: Any, ft: type) -> np.ndarray:
    """Keys' cubic kernel with coefficient ``a`` for |x| <= 1 (``cubic_convolution1``)."""
    return ((a + ft(2)) * x - (a + ft(3))) * x * x + ft(1)


def _cubic_far(x: np.ndarray, a: Any, ft: type) -> np.ndarray:
    """Keys' cubic kernel for 1 <= |x| <= 2 (``cubic_convolution2``)."""
    return ((a * x - ft(5) * a) * x + ft(8) * a) * x - ft(4) * a


def _cubic_table(n, o, scale, align_corners, ft):
    s = _coordinate_scale(n, o, align_corners, scale, ft)
    real = _source_index(s, o, align_corners, True, ft)
    i0 = np.minimum(_floor32(real), n - 1)
    t = np.clip(real - i0.astype(ft), ft(0), ft(1))
    a = ft(-0.75)  # PyTorch's coefficient (Keys' is -0.5)
    w = [_cubic_far(t + ft(1), a, ft), _cubic_near(t, a, ft)]
    w += [_cubic_near(ft(1) - t, a, ft), _cubic_far(ft(2) - t, a, ft)]
    # taps past the border read the border pixel (PyTorch's upsample_get_value_bounded)
    index = np.clip(i0[:, None] + np.arange(-1, 3), 0, n - 1)
    return index, np.stack(w, axis=1)


def _antialias_table(n, o, scale, align_corners, cubic):
    """PyTorch's (and Pillow's) antialiasing filters, in float64: the triangle, or Keys'
    cubic with a = -0.5, stretched by the downsampling factor and normalised to sum 1."""
    s = float(_coordinate_scale(n, o, align_corners, scale, np.float64))
    stretch = max(s, 1.0)
    support = (2.0 if cubic else 1.0) * stretch
    taps = math.ceil(support) * 2 + 1
    center = s * (np.arange(o) + 0.5)
    start = np.maximum((center - support + 0.5).astype(np.int64), 0)
    count = np.clip(np.minimum((center + support + 0.5).astype(np.int64), n) - start, 0, taps)
    j = np.arange(taps)
    x = np.abs(j + start[:, None] - center[:, None] + 0.5) / stretch
    if cubic:
        a = -0.5
        w = np.where(x < 1, _cubic_near(x, a, float), np.where(x < 2, _cubic_far(x, a, float), 0))
    else:
        w = np.maximum(1.0 - x, 0.0)
    w = np.where(j < count[:, None], w, 0.0)
    total = w.sum(axis=1, keepdims=True)
    w = np.divide(w, total, out=np.zeros_like(w), where=total != 0)
    return np.minimum(start[:, None] + j, n - 1), w


def _axis_table(n, o, scale, mode, align_corners, antialias, ft, nd):
    """(indices (o, taps), weights (o, taps) or None) of one axis: output position i is
    ``sum_t weights[i, t] * input[indices[i, t]]`` (a plain gather when weights is None)."""
    if antialias:
        return _antialias_table(n, o, scale, align_corners, mode == "bicubic")
    if mode in ("nearest", "nearest-exact"):
        return _nearest_table(n, o, scale, mode == "nearest-exact", ft, nd)
    table = _cubic_table if mode == "bicubic" else _linear_table
    return table(n, o, scale, align_corners, ft)


def _resample_axis(x: jax.Array, axis: int, index: np.ndarray, weights: np.ndarray | None):
    """One gather of every tap along ``axis``, then the weighted sum of the taps."""
    out, taps = index.shape
    if weights is None:
        if out == x.shape[axis] and np.array_equal(index[:, 0], np.arange(out)):
            return x  # an axis PyTorch copies
        return jnp.take(x, index[:, 0], axis=axis, mode="clip")
    gathered = jnp.take(x, index.reshape(-1), axis=axis, mode="clip")
    gathered = gathered.reshape(*x.shape[:axis], out, taps, *x.shape[axis + 1 :])
    w = jnp.asarray(weights.reshape(out, taps, *(1,) * (x.ndim - axis - 1)), x.dtype)
    return jnp.sum(gathered * w, axis=axis + 1)


def _interpolate(
    x, size, scale_factor, mode, align_corners, recompute_scale_factor, antialias, *, where
):
    """The implementation of interpolate and the Upsample layers."""
    _check_resize_args(size, scale_factor, mode, align_corners, recompute_scale_factor, antialias)
    nd = _MODES[mode]
    layout = "(N, *spatial, C)" if nd is None else f"(N, {('L', 'H, W', 'D, H, W')[nd - 1]}, C)"
    check_ndim(where, x, (3, 4, 5) if nd is None else nd + 2, layout=f"{layout} for mode {mode!r}")
    x = jnp.asarray(x)
    shape = tuple(x.shape)
    outs, scales = _output_sizes(where, shape, size, scale_factor, mode, recompute_scale_factor)
    if mode == "area":
        return _adaptive_pool(x, outs, nd=x.ndim - 2, where=where, mode="avg")
    nearest = mode in ("nearest", "nearest-exact")
    if not nearest:
        check_dtype(where, x, "floating")
    y = x if nearest else x.astype(_accumulator(x.dtype))
    ft = _opmath(x.dtype)
    for axis in reversed(range(1, x.ndim - 1)):  # the last spatial axis first, as PyTorch
        n, o, scale = shape[axis], outs[axis - 1], scales[axis - 1]
        if antialias and n == o:  # PyTorch's separable kernel skips such axes
            continue
        args = (scale, mode, bool(align_corners), antialias, ft, x.ndim - 2)
        index, weights = _axis_table(n, o, *args)
        y = _resample_axis(y, axis, index, weights)
    return y.astype(x.dtype)


def interpolate(
    x: jax.typing.ArrayLike,
    size: int | Sequence[int] | None = None,
    scale_factor: float | Sequence[float] | None = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
    recompute_scale_factor: bool | None = None,
    antialias: bool = False,
) -> jax.Array:
    """Resizes the spatial axes, as ``torch.nn.functional.interpolate``, channels-last.

    The input's rank sets the number of spatial axes, as in PyTorch: (N, L, C), (N, H, W, C)
    or (N, D, H, W, C); there is no unbatched form. Output position i of an axis of size
    n → o samples the input at ``scale·(i + 0.5) − 0.5`` (``align_corners=False``) or
    ``scale·i`` (``True``), with ``scale = (n − 1)/(o − 1)`` for align_corners, else
    ``1/scale_factor`` when scale_factor is given (and not recomputed), else ``n/o``.

    Modes: ``"nearest"`` (index ``floor(i·scale)``, PyTorch's legacy rule, OpenCV's),
    ``"nearest-exact"`` (``floor((i + 0.5)·scale)``, Pillow's and scikit-image's),
    ``"linear"`` (3-D), ``"bilinear"`` (4-D), ``"trilinear"`` (5-D) (an axis that keeps its
    size is copied, as PyTorch does), ``"bicubic"`` (4-D; Keys' kernel with PyTorch's
    A = −0.75, taps beyond the border read the border pixel) and ``"area"`` (adaptive
    average pooling to the output size). ``antialias=True`` (bilinear and bicubic) widens
    the filter by the downsampling factor, as PyTorch and Pillow (the cubic then uses
    a = −0.5, as theirs); ``"lanczos"`` is not supported.

    Args:
        x: (N, *spatial, C); floating for every mode but the nearest ones (any dtype).
        size: output spatial size: an int for every axis or one per axis.
        scale_factor: a multiplier for every axis or one per axis; output size
            ``floor(n·scale_factor)``. Exactly one of size and scale_factor.
        mode: see above.
        align_corners: align the centres of the corner pixels (True) or the corners of
            the corner pixels (False, the default of the interpolating modes); must be
            None for the nearest modes and area.
        recompute_scale_factor: with scale_factor, sample at ``n/o`` instead of
            ``1/scale_factor`` (they differ when n·scale_factor is not an integer).
        antialias: see above.

    Returns:
        (N, *output_size, C) in ``x``'s dtype (float16/bfloat16 computed in float32).

    Raises:
        ValueError: invalid mode or arguments (PyTorch's checks).
        ShapeError: an input rank the mode does not take, a size or scale_factor of
            another length than the spatial axes, a non-floating input to an
            interpolating mode, or an empty output.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import functional as F
        >>> x = jnp.array([0.0, 1.0, 2.0]).reshape(1, 3, 1)
        >>> F.interpolate(x, scale_factor=2, mode="linear")[0, :, 0]
        Array([0.  , 0.25, 0.75, 1.25, 1.75, 2.  ], dtype=float32)
        >>> F.interpolate(x, size=5, mode="linear", align_corners=True)[0, :, 0]
        Array([0. , 0.5, 1. , 1.5, 2. ], dtype=float32)
    """
    return _interpolate(
        x,
        size,
        scale_factor,
        mode,
        align_corners,
        recompute_scale_factor,
        antialias,
        where="interpolate",
    )


# --------------------------------------------------------------------------- padding


def _pad_widths(where: Any, pad: Any, shape: tuple) -> list[tuple[int, int]]:
    """PyTorch's ``pad`` (last axis first) as (low, high) for every axis, first to last."""
    try:
        flat = tuple(operator.index(p) for p in pad)
    except TypeError:
        raise ValueError(f"pad must be a sequence of ints, got {pad!r}") from None
    if len(flat) % 2:
        raise ValueError(f"pad must have an even length (low, high pairs), got {pad!r}")
    if len(flat) // 2 > len(shape):
        raise ShapeError(
            f"{_label(where)}: pad {flat} pads {len(flat) // 2} axes, more than the "
            f"input has; got input shape {shape}"
        )
    widths = [(0, 0)] * len(shape)
    for k in range(len(flat) // 2):
        widths[len(shape) - 1 - k] = (flat[2 * k], flat[2 * k + 1])
    return widths


def _pad_problem(n: int, lo: int, hi: int, mode: str) -> str | None:
    """Why padding an axis of size n by (lo, hi) in ``mode`` is impossible, or None."""
    if n + lo + hi < 0:
        return "crops more than the axis holds"
    if mode == "constant" or not (lo or hi):
        return None
    if n + min(lo, 0) + min(hi, 0) < 1:  # nothing left to reflect, repeat or wrap
        return "needs a non-empty axis" if n == 0 else "crops the whole axis"
    if mode == "reflect" and max(lo, hi) >= n:
        return f"must be smaller than its size {n}"
    if mode == "circular" and max(lo, hi) > n:
        return f"must be at most its size {n} (it may wrap around once)"
    return None


def _check_pad_sizes(where: Any, widths: list, shape: tuple, mode: str) -> None:
    for axis, ((lo, hi), n) in enumerate(zip(widths, shape)):
        problem = _pad_problem(n, lo, hi, mode)
        if problem:
            raise ShapeError(
                f"{_label(where)}: {mode} padding {(lo, hi)} of axis {axis} {problem}; got "
                f"input shape {shape}"
            )


def _pad(x, pad, mode, value, *, where):
    """The implementation of F.pad; ``pad`` is PyTorch's (last axis first)."""
    if mode not in _PAD_MODES:
        raise ValueError(f"mode must be one of {list(_PAD_MODES)}, got {mode!r}")
    if mode != "constant" and value is not None and value != 0:
        raise ValueError(f"padding mode {mode!r} does not take a value, got value={value!r}")
    x = jnp.asarray(x)
    shape = tuple(x.shape)
    widths = _pad_widths(where, pad, shape)
    _check_pad_sizes(where, widths, shape, mode)
    if mode == "constant":
        fill = jnp.asarray(0 if value is None else value, x.dtype)
        return lax.pad(x, fill, [(lo, hi, 0) for lo, hi in widths])
    crop = lambda a: lax.pad(
        a, jnp.zeros((), a.dtype), [(min(lo, 0), min(hi, 0), 0) for lo, hi in widths]
    )
    grow = [(max(lo, 0), max(hi, 0)) for lo, hi in widths]
    if mode == "circular":  # PyTorch crops first, then wraps what is left
        return jnp.pad(crop(x), grow, mode="wrap")
    # reflect/replicate: the reflection of the whole axis, then the crop (PyTorch's indices)
    return crop(jnp.pad(x, grow, mode="reflect" if mode == "reflect" else "edge"))


def pad(
    x: jax.typing.ArrayLike,
    pad: Sequence[int],
    mode: str = "constant",
    value: float | None = None,
) -> jax.Array:
    """Pads an array, as ``torch.nn.functional.pad`` on the same array.

    ``pad`` lists (low, high) pairs starting from the array's LAST axis, exactly as
    PyTorch: ``(left, right)`` pads the last axis, ``(left, right, top, bottom)`` the last
    two. funcnet images are channels-last, so their last axis is C: to pad H and W of an
    (N, H, W, C) image pass ``(0, 0, left, right, top, bottom)``, or use the padding
    layers (``nn.ReflectionPad2d((left, right, top, bottom))``, …), which take PyTorch's
    tuple and pad the spatial axes. Negative amounts crop, as in PyTorch.

    Args:
        x: any shape and dtype.
        pad: ints, an even number of them, at most two per axis.
        mode: ``"constant"``, ``"reflect"`` (mirror without repeating the edge; each amount
            smaller than the axis), ``"replicate"`` (repeat the edge) or ``"circular"``
            (wrap around; each amount at most the axis' size).
        value: the fill of constant padding (default 0); other modes take none (or 0).

    Returns:
        ``x`` padded, in its dtype.

    Raises:
        ValueError: an invalid mode, an odd-length pad, or a value with a mode other
            than constant.
        ShapeError: more pairs than axes, reflect padding not smaller than the axis,
            circular padding larger than it, or cropping more than an axis holds
            (non-constant modes: all of it).

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import functional as F
        >>> F.pad(jnp.array([[1, 2, 3]]), (2, 1), mode="reflect")
        Array([[3, 2, 1, 2, 3, 2]], dtype=int32)
        >>> F.pad(jnp.zeros((1, 4, 4, 3)), (0, 0, 1, 1, 2, 2)).shape  # W by 1, H by 2
        (1, 8, 6, 3)
    """
    return _pad(x, pad, mode, value, where="pad")


# --------------------------------------------------------------------- pixel shuffle


def _factor(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _pixel_shuffle(x, r: int, *, where) -> jax.Array:
    r = _factor(r, "upscale_factor")
    x = jnp.asarray(x)
    shape = tuple(x.shape)
    if x.ndim < 3 or shape[-1] % (r * r):
        raise ShapeError(
            f"{_label(where)}: expected input (*, H, W, C·r²) with a last dimension "
            f"divisible by upscale_factor² = {r * r}, got shape {shape}"
        )
    *batch, h, w, c = shape
    nb = len(batch)
    y = x.reshape(*batch, h, w, c // (r * r), r, r)  # channel c·r² + i·r + j, as PyTorch
    y = y.transpose(*range(nb), nb, nb + 3, nb + 1, nb + 4, nb + 2)  # (*, h, i, w, j, c)
    return y.reshape(*batch, h * r, w * r, c // (r * r))


def _pixel_unshuffle(x, r: int, *, where) -> jax.Array:
    r = _factor(r, "downscale_factor")
    x = jnp.asarray(x)
    shape = tuple(x.shape)
    if x.ndim < 3 or shape[-3] % r or shape[-2] % r:
        raise ShapeError(
            f"{_label(where)}: expected input (*, H, W, C) with H and W divisible by "
            f"downscale_factor {r}, got shape {shape}"
        )
    *batch, h, w, c = shape
    nb = len(batch)
    y = x.reshape(*batch, h // r, r, w // r, r, c)
    y = y.transpose(*range(nb), nb, nb + 2, nb + 4, nb + 1, nb + 3)  # (*, h, w, c, i, j)
    return y.reshape(*batch, h // r, w // r, c * r * r)


def pixel_shuffle(x: jax.typing.ArrayLike, upscale_factor: int) -> jax.Array:
    """Moves channels into space, as ``torch.nn.functional.pixel_shuffle``, channels-last.

    (*, H, W, C·r²) → (*, H·r, W·r, C) with
    ``y[h·r + i, w·r + j, c] = x[h, w, c·r² + i·r + j]``: PyTorch's channel order, so
    that on ``x`` in NHWC the result is PyTorch's result on the NCHW tensor, moved to NHWC.

    Args:
        x: (*, H, W, C·r²), at least 3-D, any dtype.
        upscale_factor: r, a positive int.

    Returns:
        (*, H·r, W·r, C) in ``x``'s dtype.

    Raises:
        ValueError: r not a positive int.
        ShapeError: fewer than 3 dimensions, or a last dimension not divisible by r².

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import functional as F
        >>> F.pixel_shuffle(jnp.arange(4).reshape(1, 1, 4), 2)[..., 0]
        Array([[0, 1],
               [2, 3]], dtype=int32)
    """
    return _pixel_shuffle(x, upscale_factor, where="pixel_shuffle")


def pixel_unshuffle(x: jax.typing.ArrayLike, downscale_factor: int) -> jax.Array:
    """The inverse of :func:`pixel_shuffle`, as ``torch.nn.functional.pixel_unshuffle``.

    (*, H·r, W·r, C) → (*, H, W, C·r²) with
    ``y[h, w, c·r² + i·r + j] = x[h·r + i, w·r + j, c]``.

    Args:
        x: (*, H·r, W·r, C), at least 3-D, any dtype.
        downscale_factor: r, a positive int.

    Returns:
        (*, H, W, C·r²) in ``x``'s dtype.

    Raises:
        ValueError: r not a positive int.
        ShapeError: fewer than 3 dimensions, or H or W not divisible by r.
    """
    return _pixel_unshuffle(x, downscale_factor, where="pixel_unshuffle")


# ----------------------------------------------------------------------- fold/unfold


def _block_args(kernel_size, dilation, padding, stride) -> tuple[tuple[int, ...], ...]:
    return (
        _ntuple(kernel_size, 2, "kernel_size", 1),
        _ntuple(dilation, 2, "dilation", 1),
        _ntuple(padding, 2, "padding"),
        _ntuple(stride, 2, "stride", 1),
    )


def _blocks(where, shape, spatial, kernel, dilation, padding, stride) -> tuple[int, int]:
    """The number of sliding blocks along H and W (PyTorch's formula); at least one."""
    blocks = tuple(
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, k, d, p, s in zip(spatial, kernel, dilation, padding, stride)
    )
    if min(blocks) < 1:
        raise ShapeError(
            f"{_label(where)}: kernel_size {kernel} with dilation {dilation} and padding "
            f"{padding} does not fit in the spatial size {tuple(spatial)}; got shape {shape}"
        )
    return blocks


def _is_tiling(kernel, dilation, stride) -> bool:
    """Blocks that tile the input: a reshape and a transpose, no gather or scatter."""
    return stride == kernel and all(d == 1 or k == 1 for k, d in zip(kernel, dilation))


def _unfold(x, kernel_size, dilation, padding, stride, *, where) -> jax.Array:
    shape = tuple(jnp.shape(x))
    x, unbatched = _batched(where, x, 2)
    kernel, dilation, padding, stride = _block_args(kernel_size, dilation, padding, stride)
    (bh, bw) = _blocks(where, shape, x.shape[1:3], kernel, dilation, padding, stride)
    (kh, kw), (n, c) = kernel, (x.shape[0], x.shape[-1])
    x = jnp.pad(x, [(0, 0), (padding[0],) * 2, (padding[1],) * 2, (0, 0)])
    if _is_tiling(kernel, dilation, stride):
        y = x[:, : bh * kh, : bw * kw].reshape(n, bh, kh, bw, kw, c)
        y = y.transpose(0, 1, 3, 5, 2, 4)  # (N, bh, bw, C, kh, kw)
    else:
        (dh, dw), (sh, sw) = dilation, stride
        cols = [
            lax.slice(
                x,
                (0, i * dh, j * dw, 0),
                (n, i * dh + (bh - 1) * sh + 1, j * dw + (bw - 1) * sw + 1, c),
                (1, sh, sw, 1),
            )
            for i in range(kh)
            for j in range(kw)
        ]
        y = jnp.stack(cols, axis=-1)  # (N, bh, bw, C, kh·kw)
    y = y.reshape(n, bh * bw, c * kh * kw)
    return y[0] if unbatched else y


def _fold(x, output_size, kernel_size, dilation, padding, stride, *, where) -> jax.Array:
    shape = tuple(jnp.shape(x))
    check_ndim(where, x, (3, 2), layout="(N, L, C·kh·kw) or unbatched (L, C·kh·kw)")
    x = jnp.asarray(x)
    x, unbatched = (x[None], True) if x.ndim == 2 else (x, False)
    size = _ntuple(output_size, 2, "output_size", 1)
    kernel, dilation, padding, stride = _block_args(kernel_size, dilation, padding, stride)
    (bh, bw) = _blocks(where, shape, size, kernel, dilation, padding, stride)
    (kh, kw), n = kernel, x.shape[0]
    if x.shape[-1] % (kh * kw) or x.shape[1] != bh * bw:
        raise ShapeError(
            f"{_label(where)}: expected input (N, L, C·kh·kw) with L = {bh}·{bw} = {bh * bw} "
            f"blocks and a last dimension divisible by kh·kw = {kh * kw}, got shape {shape}"
        )
    c = x.shape[-1] // (kh * kw)
    cols = x.reshape(n, bh, bw, c, kh, kw)
    padded = [s + 2 * p for s, p in zip(size, padding)]
    if _is_tiling(kernel, dilation, stride):
        y = cols.transpose(0, 1, 4, 2, 5, 3).reshape(n, bh * kh, bw * kw, c)
        y = jnp.pad(y, [(0, 0), (0, padded[0] - bh * kh), (0, padded[1] - bw * kw), (0, 0)])
    else:
        (dh, dw), (sh, sw) = dilation, stride
        zero, y = jnp.zeros((), x.dtype), None
        for i in range(kh):
            for j in range(kw):
                hi_h = padded[0] - i * dh - (bh - 1) * sh - 1
                hi_w = padded[1] - j * dw - (bw - 1) * sw - 1
                config = [(0, 0, 0), (i * dh, hi_h, sh - 1), (j * dw, hi_w, sw - 1), (0, 0, 0)]
                term = lax.pad(cols[..., i, j], zero, config)  # overlaps are summed
                y = term if y is None else y + term
    y = y[:, padding[0] : padding[0] + size[0], padding[1] : padding[1] + size[1]]
    return y[0] if unbatched else y


def unfold(
    x: jax.typing.ArrayLike,
    kernel_size: IntOrTuple,
    dilation: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    stride: IntOrTuple = 1,
) -> jax.Array:
    """Extracts sliding blocks (im2col), as ``torch.nn.functional.unfold``, channels-last.

    (N, H, W, C) → (N, L, C·kh·kw): PyTorch's (N, C·kh·kw, L) with its last two axes
    swapped. L counts the blocks in row-major order; the last axis is in PyTorch's order,
    ``c·kh·kw + i·kw + j``, so ``unfold(x).transpose(0, 2, 1)`` is PyTorch's result
    and a PyTorch weight ``w.reshape(out_channels, -1)`` multiplies it unchanged.

    Args:
        x: (N, H, W, C) or unbatched (H, W, C); any dtype.
        kernel_size: int or (kh, kw).
        dilation: int or (dh, dw), spacing between a block's elements.
        padding: int or (ph, pw) zeros added to both sides of H and W.
        stride: int or (sh, sw) between blocks.

    Returns:
        (N, L, C·kh·kw) (or (L, C·kh·kw)) in ``x``'s dtype, L = L_h·L_w with
        L_h = floor((H + 2·ph − dh·(kh − 1) − 1) / sh) + 1.

    Raises:
        ValueError: invalid kernel_size, dilation, padding or stride.
        ShapeError: wrong rank, or a block larger than the padded input.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import functional as F
        >>> F.unfold(jnp.arange(9.0).reshape(1, 3, 3, 1), 2)[0]
        Array([[0., 1., 3., 4.],
               [1., 2., 4., 5.],
               [3., 4., 6., 7.],
               [4., 5., 7., 8.]], dtype=float32)
    """
    return _unfold(x, kernel_size, dilation, padding, stride, where="unfold")


def fold(
    x: jax.typing.ArrayLike,
    output_size: IntOrTuple,
    kernel_size: IntOrTuple,
    dilation: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    stride: IntOrTuple = 1,
) -> jax.Array:
    """Sums sliding blocks into an image (col2im), as ``torch.nn.functional.fold``.

    The adjoint of :func:`unfold`: (N, L, C·kh·kw) → (N, H, W, C), where overlapping
    blocks are summed and padding is cut off, so ``fold(unfold(x))`` is ``x`` times the
    number of blocks covering each pixel, as in PyTorch.

    Args:
        x: (N, L, C·kh·kw) or unbatched (L, C·kh·kw), blocks as :func:`unfold` gives them.
        output_size: int or (H, W) of the output.
        kernel_size: int or (kh, kw), as in :func:`unfold`.
        dilation: int or (dh, dw), spacing between a block's elements.
        padding: int or (ph, pw) zeros added to both sides of H and W (cut off here).
        stride: int or (sh, sw) between blocks. L must be the number of blocks that
            these four give for output_size.

    Returns:
        (N, H, W, C) (or (H, W, C)) in ``x``'s dtype.

    Raises:
        ValueError: invalid sizes.
        ShapeError: wrong rank, L not the number of blocks, or a last dimension not
            divisible by kh·kw.
    """
    return _fold(x, output_size, kernel_size, dilation, padding, stride, where="fold")
