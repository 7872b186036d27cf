"""Pooling: max_pool1d/2d/3d, avg_pool1d/2d/3d, adaptive_avg_pool1d/2d/3d and
adaptive_max_pool1d/2d/3d.

Channels-last: inputs are ``(N, *spatial, C)`` or unbatched ``(*spatial, C)``. Output
sizes, ``ceil_mode``, ``count_include_pad`` and adaptive bin boundaries follow PyTorch.

Three code paths give the same values and gradients:

- **non-overlapping windows** (stride == kernel_size, no dilation), the common 2×2/2
  case, with any padding or ceil_mode: pad (with −inf for max, 0 for average), crop the
  tail that floor mode drops, reshape to ``(N, H_out, kh, W_out, kw, C)`` and reduce the
  window axes. Its gradient is elementwise, where the gradient of
  ``lax.reduce_window``'s max is a ``select_and_scatter``, much slower on XLA:CPU.
- **overlapping windows**: ``lax.reduce_window`` (faster on XLA:CPU than stacking the
  strided slices and reducing them).
- **dilated max-pooling windows**: the ``prod(kernel_size)`` strided slices stacked and
  reduced, because ``reduce_window``'s max has no gradient with window dilation in JAX.

Ties in max pooling: the whole gradient goes to the *first* maximal element of the window
in row-major order, as in PyTorch and in ``reduce_window``'s gradient (``jnp.max``'s own
gradient would split it evenly between tied elements). Average pooling of float16 and
bfloat16 inputs accumulates in float32 and returns the input's dtype.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from funcnet.errors import ShapeError, check_input_dtype
from funcnet.functional._conv import IntOrTuple, _batched, _label, _ntuple

__all__ = [
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool3d",
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "adaptive_max_pool3d",
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
]


# ------------------------------------------------------------------------- helpers


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _first_max(x: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """``jnp.max(x, axes)`` whose derivative is that of the first maximal element
    (row-major over ``axes``), like PyTorch's max pooling."""
    return jnp.max(x, axis=axes)


@_first_max.defjvp
def _first_max_jvp(axes, primals, tangents):
    (x,), (t,) = primals, tangents
    y = jnp.max(x, axis=axes)
    # The tangent is that of each window's first maximal element (NaN counts as maximal,
    # so a NaN's gradient goes to it, as in PyTorch). The mask depends on the primal only
    # and the tangent enters through one select and one sum, so the gradient (their
    # transpose) is one elementwise select: no strided slices, no scatter.
    expand = lambda a: jnp.expand_dims(a, axes)
    position = _window_positions(x.shape, axes)
    hit = x == expand(y)
    if jnp.issubdtype(x.dtype, jnp.inexact):
        hit = hit | jnp.isnan(x)
    size = int(np.prod([x.shape[a] for a in axes]))
    first = jnp.min(jnp.where(hit, position, size), axis=axes)
    mask = position == expand(first)
    return y, jnp.sum(jnp.where(mask, t, jnp.zeros((), t.dtype)), axis=axes)


def _window_positions(shape: Sequence[int], axes: tuple[int, ...]) -> np.ndarray:
    """Each element's row-major position within its window (int32, broadcastable to
    ``shape``; size 1 on every axis not in ``axes``)."""
    sizes = [shape[a] for a in axes]
    position = np.arange(int(np.prod(sizes)), dtype=np.int32).reshape(sizes)
    full = [1] * len(shape)
    for a, n in zip(axes, sizes):
        full[a] = n
    return position.reshape(full)


def _accumulator(dtype: Any) -> Any:
    """Averages accumulate in at least float32 (as PyTorch's CPU kernels do)."""
    return jnp.dtype(jnp.float32) if jnp.finfo(dtype).bits < 32 else jnp.dtype(dtype)


def _lowest(dtype: Any) -> np.ndarray:
    """The identity of max for ``dtype`` (−inf, or the integer minimum)."""
    if jnp.issubdtype(dtype, jnp.floating):
        return np.array(-np.inf, dtype)
    if jnp.issubdtype(dtype, jnp.integer):
        return np.array(jnp.iinfo(dtype).min, dtype)
    return np.array(False, dtype)


def _pool_args(
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    padding: IntOrTuple,
    dilation: IntOrTuple,
    nd: int,
) -> tuple[tuple[int, ...], ...]:
    """Normalised (kernel, stride, padding, dilation); stride None means kernel_size."""
    kernel = _ntuple(kernel_size, nd, "kernel_size", 1)
    no_stride = stride is None or (isinstance(stride, Sequence) and len(stride) == 0)
    stride = kernel if no_stride else _ntuple(stride, nd, "stride", 1)
    padding = _ntuple(padding, nd, "padding")
    dilation = _ntuple(dilation, nd, "dilation", 1)
    if any(p > k // 2 for p, k in zip(padding, kernel)):
        raise ValueError(f"padding {padding} must be at most half of kernel_size {kernel}")
    return kernel, stride, padding, dilation


def _pool_geometry(
    where: Any, shape: Sequence[int], kernel, stride, padding, dilation, ceil_mode: bool
) -> tuple[list[int], list[tuple[int, int]]]:
    """Output sizes (PyTorch's formula) and the (low, high) padding that makes the last
    window end exactly at the padded edge (high < 0 crops the tail floor mode drops)."""
    spatial = tuple(shape[-1 - len(kernel) : -1])  # shape: as the caller gave it
    outs, pads = [], []
    for n, k, s, p, d in zip(spatial, kernel, stride, padding, dilation):
        span = d * (k - 1) + 1
        out = (n + 2 * p - span + (s - 1 if ceil_mode else 0)) // s + 1
        if ceil_mode and (out - 1) * s >= n + p:  # the last window must start in the input
            out -= 1
        outs.append(out)
        pads.append((p, (out - 1) * s + span - n - p))
    if min(outs) < 1:
        raise ShapeError(
            f"{_label(where)}: window {tuple(kernel)} (padding {tuple(padding)}, dilation "
            f"{tuple(dilation)}) is larger than the input's spatial size {spatial}; got "
            f"input shape {tuple(shape)}"
        )
    return outs, pads


def _pad(x: jax.Array, pads: Sequence[tuple[int, int]], value: Any) -> jax.Array:
    """Pads (or, for negative amounts, crops) the spatial axes of (N, *spatial, C)."""
    if not any(lo or hi for lo, hi in pads):
        return x
    config = [(0, 0, 0), *((lo, hi, 0) for lo, hi in pads), (0, 0, 0)]
    return lax.pad(x, jnp.asarray(value, x.dtype), config)


def _non_overlapping(kernel, stride, dilation) -> bool:
    return all(s == k and (d == 1 or k == 1) for k, s, d in zip(kernel, stride, dilation))


def _windows(x: jax.Array, kernel: Sequence[int]) -> tuple[jax.Array, tuple[int, ...]]:
    """(N, o1·k1, o2·k2, …, C) → (N, o1, k1, o2, k2, …, C) and the window axes."""
    split = []
    for size, k in zip(x.shape[1:-1], kernel):
        split += [size // k, k]
    axes = tuple(range(2, 2 * len(kernel) + 1, 2))
    return x.reshape(x.shape[0], *split, x.shape[-1]), axes


def _dilated_windows(x: jax.Array, kernel, stride, dilation, outs) -> jax.Array:
    """(N, *padded, C) → (prod(kernel), N, *outs, C): one strided slice per window
    offset, in row-major order."""
    slices = []
    for offset in np.ndindex(*kernel):
        start = [i * d for i, d in zip(offset, dilation)]
        limit = [a + (o - 1) * s + 1 for a, o, s in zip(start, outs, stride)]
        slices.append(
            lax.slice(x, (0, *start, 0), (x.shape[0], *limit, x.shape[-1]), (1, *stride, 1))
        )
    return jnp.stack(slices)


def _window_op(kernel, stride, dilation):
    return {
        "window_dimensions": (1, *kernel, 1),
        "window_strides": (1, *stride, 1),
        "padding": "VALID",
        "window_dilation": (1, *dilation, 1),
    }


def _avg_divisor(outs, spatial, kernel, stride, padding, count_include_pad):
    """PyTorch's per-output divisor as a float64 array (1, *outs, 1), or a Python float.

    With count_include_pad the window is clipped to the padded input (so windows that
    ceil_mode lets run past the padding count only what they cover); without it, only
    input elements count. Windows are boxes, so the count is a product over axes.
    """
    counts = []
    for o, n, k, s, p in zip(outs, spatial, kernel, stride, padding):
        start = np.arange(o) * s - p
        end = np.minimum(start + k, n + p)
        if not count_include_pad:
            start, end = np.maximum(start, 0), np.minimum(end, n)
        counts.append(np.maximum(end - start, 1))
    if all(np.all(c == c[0]) for c in counts):
        return float(np.prod([c[0] for c in counts]))
    total = functools.reduce(np.multiply.outer, counts).astype(np.float64)
    return total.reshape(1, *outs, 1)


# --------------------------------------------------------------------- max pooling


# max pooling selects, so integers keep their dtype (PyTorch's max_pool2d/3d take them too)
_MAX_POOL_KINDS = ("floating", "integer")


def _max_pool(x, kernel_size, stride, padding, dilation, ceil_mode, *, nd: int, where: Any):
    shape = tuple(jnp.shape(x))
    x, unbatched = _batched(where, x, nd)
    check_input_dtype(where, x, _MAX_POOL_KINDS)
    kernel, stride, padding, dilation = _pool_args(kernel_size, stride, padding, dilation, nd)
    outs, pads = _pool_geometry(where, shape, kernel, stride, padding, dilation, ceil_mode)
    lowest = _lowest(x.dtype)
    x = _pad(x, pads, lowest)
    if _non_overlapping(kernel, stride, dilation):
        y = _first_max(*_windows(x, kernel))
    elif any(d > 1 and k > 1 for k, d in zip(kernel, dilation)):
        y = _first_max(_dilated_windows(x, kernel, stride, dilation, outs), (0,))
    else:
        y = lax.reduce_window(x, lowest, lax.max, **_window_op(kernel, stride, dilation))
    return y[0] if unbatched else y


def _no_indices(return_indices: bool, name: str) -> None:
    if return_indices:
        raise NotImplementedError(f"{name}: return_indices=True is not supported")


def max_pool1d(
    x: jax.typing.ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> jax.Array:
    """1-D max pooling, as ``torch.nn.functional.max_pool1d``, channels-last.

    Args:
        x: (N, L, C) or unbatched (L, C); any real dtype.
        kernel_size: window length.
        stride: step between windows (default: kernel_size).
        padding: −inf added on both sides; at most kernel_size // 2.
        dilation: spacing between window elements.
        ceil_mode: round the output length up (a last, partial window that starts
            inside the input or the left padding is kept).
        return_indices: not supported (must be False).

    Returns:
        (N, L_out, C) (or (L_out, C)) in ``x``'s dtype; L_out =
        floor_or_ceil((L + 2·padding − dilation·(kernel_size − 1) − 1) / stride) + 1.

    Raises:
        ShapeError: wrong rank, or a window larger than the input.
        ValueError: invalid kernel_size, stride, padding or dilation.
    """
    _no_indices(return_indices, "max_pool1d")
    return _max_pool(x, kernel_size, stride, padding, dilation, ceil_mode, nd=1, where="max_pool1d")


def max_pool2d(
    x: jax.typing.ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> jax.Array:
    """2-D max pooling, as ``torch.nn.functional.max_pool2d``, channels-last.

    Args:
        x: (N, H, W, C) or unbatched (H, W, C); any real dtype.
        kernel_size: int or (kh, kw).
        stride: int or (sh, sw) (default: kernel_size).
        padding: int or (ph, pw) of −inf on both sides; each at most half the kernel.
        dilation: int or (dh, dw).
        ceil_mode: round output sizes up, as PyTorch.
        return_indices: not supported (must be False).

    Returns:
        (N, H_out, W_out, C) (or unbatched) in ``x``'s dtype, sizes as PyTorch's. The
        gradient of each output goes to the first maximal element of its window.

    Raises:
        ShapeError: wrong rank, or a window larger than the input.
        ValueError: invalid kernel_size, stride, padding or dilation.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import functional as F
        >>> F.max_pool2d(jnp.arange(16.0).reshape(4, 4, 1), 2)[..., 0]
        Array([[ 5.,  7.],
               [13., 15.]], dtype=float32)
    """
    _no_indices(return_indices, "max_pool2d")
    return _max_pool(x, kernel_size, stride, padding, dilation, ceil_mode, nd=2, where="max_pool2d")


def max_pool3d(
    x: jax.typing.ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> jax.Array:
    """3-D max pooling, as ``torch.nn.functional.max_pool3d``, channels-last.

    Args:
        x: (N, D, H, W, C) or unbatched (D, H, W, C); any real dtype.
        kernel_size: int or (kd, kh, kw).
        stride: int or (sd, sh, sw) (default: kernel_size).
        padding: int or (pd, ph, pw) of −inf on both sides; each at most half the kernel.
        dilation: int or (dd, dh, dw).
        ceil_mode: round output sizes up, as PyTorch.
        return_indices: not supported (must be False).

    Returns:
        (N, D_out, H_out, W_out, C) (or unbatched) in ``x``'s dtype, sizes as PyTorch's.
        The gradient of each output goes to the first maximal element of its window in
        (d, h, w) row-major order.

    Raises:
        ShapeError: wrong rank, or a window larger than the input.
        ValueError: invalid kernel_size, stride, padding or dilation.
    """
    _no_indices(return_indices, "max_pool3d")
    return _max_pool(x, kernel_size, stride, padding, dilation, ceil_mode, nd=3, where="max_pool3d")


# ----------------------------------------------------------------- average pooling


def _avg_pool(
    x,
    kernel_size,
    stride,
    padding,
    ceil_mode,
    count_include_pad,
    divisor_override,
    *,
    nd: int,
    where: Any,
):
    shape = tuple(jnp.shape(x))
    x, unbatched = _batched(where, x, nd)
    check_input_dtype(where, x)
    kernel, stride, padding, _ = _pool_args(kernel_size, stride, padding, 1, nd)
    dilation = (1,) * nd
    outs, pads = _pool_geometry(where, shape, kernel, stride, padding, dilation, ceil_mode)
    acc = _accumulator(x.dtype)
    xs = _pad(x.astype(acc), pads, 0)
    if _non_overlapping(kernel, stride, dilation):
        windows, axes = _windows(xs, kernel)
        total = jnp.sum(windows, axis=axes)
    else:
        total = lax.reduce_window(
            xs, np.array(0, acc), lax.add, **_window_op(kernel, stride, dilation)
        )
    if divisor_override is not None:
        divisor = float(divisor_override)
    else:
        spatial = x.shape[1:-1]
        divisor = _avg_divisor(outs, spatial, kernel, stride, padding, count_include_pad)
    y = (total / jnp.asarray(divisor, acc)).astype(x.dtype)
    return y[0] if unbatched else y


def avg_pool1d(
    x: jax.typing.ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> jax.Array:
    """1-D average pooling, as ``torch.nn.functional.avg_pool1d``, channels-last.

    Args:
        x: (N, L, C) or unbatched (L, C), floating.
        kernel_size: window length.
        stride: step between windows (default: kernel_size).
        padding: zeros added on both sides; at most kernel_size // 2.
        ceil_mode: round the output length up, as PyTorch.
        count_include_pad: divide by the window's size including padding (True) or by
            the number of input elements it covers (False).

    Returns:
        (N, L_out, C) (or (L_out, C)) in ``x``'s dtype; L_out as :func:`max_pool1d`.

    Raises:
        ShapeError: wrong rank or dtype, or a window larger than the input.
        ValueError: invalid kernel_size, stride or padding.
    """
    return _avg_pool(
        x,
        kernel_size,
        stride,
        padding,
        ceil_mode,
        count_include_pad,
        None,
        nd=1,
        where="avg_pool1d",
    )


def avg_pool2d(
    x: jax.typing.ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> jax.Array:
    """2-D average pooling, as ``torch.nn.functional.avg_pool2d``, channels-last.

    Args:
        x: (N, H, W, C) or unbatched (H, W, C), floating.
        kernel_size: int or (kh, kw).
        stride: int or (sh, sw) (default: kernel_size).
        padding: int or (ph, pw) zeros on both sides; each at most half the kernel.
        ceil_mode: round output sizes up, as PyTorch.
        count_include_pad: divide by the window's area including padding (True) or by
            the number of input elements it covers (False). Windows that ceil_mode lets
            run past the padding count only the padded input they cover, as PyTorch.
        divisor_override: if given, divide every window sum by this instead.

    Returns:
        (N, H_out, W_out, C) (or unbatched) in ``x``'s dtype (float16/bfloat16 are
        accumulated in float32).

    Raises:
        ShapeError: wrong rank or dtype, or a window larger than the input.
        ValueError: invalid kernel_size, stride, padding or divisor_override.
    """
    if divisor_override is not None and not divisor_override:
        raise ValueError("avg_pool2d: divisor_override must be non-zero")
    return _avg_pool(
        x,
        kernel_size,
        stride,
        padding,
        ceil_mode,
        count_include_pad,
        divisor_override,
        nd=2,
        where="avg_pool2d",
    )


def avg_pool3d(
    x: jax.typing.ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> jax.Array:
    """3-D average pooling, as ``torch.nn.functional.avg_pool3d``, channels-last.

    Args:
        x: (N, D, H, W, C) or unbatched (D, H, W, C), floating.
        kernel_size: int or (kd, kh, kw).
        stride: int or (sd, sh, sw) (default: kernel_size).
        padding: int or (pd, ph, pw) zeros on both sides; each at most half the kernel.
        ceil_mode: round output sizes up, as PyTorch.
        count_include_pad: divide by the window's volume including padding (True) or by
            the number of input elements it covers (False), as :func:`avg_pool2d`.
        divisor_override: if given, divide every window sum by this instead.

    Returns:
        (N, D_out, H_out, W_out, C) (or unbatched) in ``x``'s dtype (float16/bfloat16
        are accumulated in float32).

    Raises:
        ShapeError: wrong rank or dtype, or a window larger than the input.
        ValueError: invalid kernel_size, stride, padding or divisor_override.
    """
    if divisor_override is not None and not divisor_override:
        raise ValueError("avg_pool3d: divisor_override must be non-zero")
    return _avg_pool(
        x,
        kernel_size,
        stride,
        padding,
        ceil_mode,
        count_include_pad,
        divisor_override,
        nd=3,
        where="avg_pool3d",
    )


# ---------------------------------------------------------------- adaptive pooling


def _output_size(output_size: Any, spatial: Sequence[int]) -> tuple[int, ...]:
    """``output_size`` as a tuple; None entries keep the input's size, as PyTorch."""
    nd = len(spatial)
    if isinstance(output_size, Sequence) and len(output_size) == nd:
        output_size = tuple(n if o is None else o for o, n in zip(output_size, spatial))
    try:
        return _ntuple(output_size, nd, "output_size", 1)
    except ValueError:
        raise ValueError(
            f"output_size must be a positive int or a tuple of {nd} positive ints or None, "
            f"got {output_size!r}"
        ) from None


def _bins(n: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's adaptive bins: [floor(i·n/out), ceil((i+1)·n/out))."""
    i = np.arange(out)
    return (i * n) // out, -((-(i + 1) * n) // out)


def _adaptive_axis(x: jax.Array, axis: int, out: int, mode: str) -> jax.Array:
    """Adaptive pooling of one axis of ``x`` whose size is not a multiple of ``out``."""
    start, end = _bins(x.shape[axis], out)
    if mode == "avg":
        weights = np.zeros((out, x.shape[axis]))
        for row, (s, e) in enumerate(zip(start, end)):
            weights[row, s:e] = 1.0 / (e - s)
        y = jnp.tensordot(
            jnp.asarray(weights, x.dtype), x, axes=(1, axis), precision=lax.Precision.HIGHEST
        )
        return jnp.moveaxis(y, 0, axis)
    # Bins have different lengths: pad each to the longest by repeating its last index
    # (a repeat never changes the max and, coming later, never takes the gradient).
    offsets = np.arange(int(np.max(end - start)))
    index = np.minimum(start[:, None] + offsets, end[:, None] - 1)
    gathered = jnp.take(x, index, axis=axis, mode="clip")  # (..., out, longest, ...)
    return _first_max(gathered, (axis + 1,))


def _adaptive_pool(x, output_size, *, nd: int, where: Any, mode: str):
    shape = tuple(jnp.shape(x))
    x, unbatched = _batched(where, x, nd)
    spatial = x.shape[1:-1]
    if min(spatial) < 1:
        raise ShapeError(f"{_label(where)}: empty spatial input, got shape {shape}")
    outs = _output_size(output_size, spatial)
    dtype = x.dtype
    check_input_dtype(where, x, ("floating",) if mode == "avg" else _MAX_POOL_KINDS)
    if mode == "avg":
        x = x.astype(_accumulator(dtype))
    if all(n % o == 0 for n, o in zip(spatial, outs)):
        windows, axes = _windows(x, [n // o for n, o in zip(spatial, outs)])
        y = _first_max(windows, axes) if mode == "max" else jnp.mean(windows, axis=axes)
    else:
        # Boxes are separable. Reducing the last axis first keeps max-pooling ties on
        # the first maximal element in row-major order.
        y = x
        for axis in reversed(range(1, nd + 1)):
            n, o = y.shape[axis], outs[axis - 1]
            if n % o:
                y = _adaptive_axis(y, axis, o, mode)
            elif n != o:
                split = (*y.shape[:axis], o, n // o, *y.shape[axis + 1 :])
                reduce = _first_max if mode == "max" else jnp.mean
                y = reduce(y.reshape(split), (axis + 1,))
    y = y.astype(dtype)
    return y[0] if unbatched else y


def adaptive_avg_pool2d(x: jax.typing.ArrayLike, output_size: Any) -> jax.Array:
    """2-D adaptive average pooling, as ``torch.nn.functional.adaptive_avg_pool2d``.

    Output cell (i, j) averages input rows [floor(i·H/H_out), ceil((i+1)·H/H_out)) and
    the columns likewise (PyTorch's bins; they overlap when sizes do not divide).

    Args:
        x: (N, H, W, C) or unbatched (H, W, C), floating.
        output_size: int or (H_out, W_out); None in the tuple keeps that input size.

    Returns:
        (N, H_out, W_out, C) (or unbatched) in ``x``'s dtype.

    Raises:
        ShapeError: wrong rank or dtype, or an empty input.
        ValueError: invalid output_size.
    """
    return _adaptive_pool(x, output_size, nd=2, where="adaptive_avg_pool2d", mode="avg")


def adaptive_max_pool2d(
    x: jax.typing.ArrayLike, output_size: Any, return_indices: bool = False
) -> jax.Array:
    """2-D adaptive max pooling, as ``torch.nn.functional.adaptive_max_pool2d``.

    Bins as :func:`adaptive_avg_pool2d`; the gradient of each output goes to the first
    maximal element of its bin in row-major order.

    Args:
        x: (N, H, W, C) or unbatched (H, W, C); any real dtype.
        output_size: int or (H_out, W_out); None in the tuple keeps that input size.
        return_indices: not supported (must be False).

    Returns:
        (N, H_out, W_out, C) (or unbatched) in ``x``'s dtype.

    Raises:
        ShapeError: wrong rank, or an empty input.
        ValueError: invalid output_size.
    """
    _no_indices(return_indices, "adaptive_max_pool2d")
    return _adaptive_pool(x, output_size, nd=2, where="adaptive_max_pool2d", mode="max")


def adaptive_avg_pool1d(x: jax.typing.ArrayLike, output_size: Any) -> jax.Array:
    """1-D adaptive average pooling, as ``torch.nn.functional.adaptive_avg_pool1d``.

    Output position i averages the input positions [floor(i·L/L_out),
    ceil((i+1)·L/L_out)) (PyTorch's bins).

    Args:
        x: (N, L, C) or unbatched (L, C), floating.
        output_size: int or (L_out,); ``(None,)`` keeps the input's length.

    Returns:
        (N, L_out, C) (or (L_out, C)) in ``x``'s dtype.

    Raises:
        ShapeError: wrong rank or dtype, or an empty input.
        ValueError: invalid output_size.
    """
    return _adaptive_pool(x, output_size, nd=1, where="adaptive_avg_pool1d", mode="avg")


def adaptive_avg_pool3d(x: jax.typing.ArrayLike, output_size: Any) -> jax.Array:
    """3-D adaptive average pooling, as ``torch.nn.functional.adaptive_avg_pool3d``.

    Bins as :func:`adaptive_avg_pool2d` on each of the three spatial axes.

    Args:
        x: (N, D, H, W, C) or unbatched (D, H, W, C), floating.
        output_size: int or (D_out, H_out, W_out); None in the tuple keeps that input size.

    Returns:
        (N, D_out, H_out, W_out, C) (or unbatched) in ``x``'s dtype.

    Raises:
        ShapeError: wrong rank or dtype, or an empty input.
        ValueError: invalid output_size.
    """
    return _adaptive_pool(x, output_size, nd=3, where="adaptive_avg_pool3d", mode="avg")


def adaptive_max_pool1d(
    x: jax.typing.ArrayLike, output_size: Any, return_indices: bool = False
) -> jax.Array:
    """1-D adaptive max pooling, as ``torch.nn.functional.adaptive_max_pool1d``.

    Bins as :func:`adaptive_avg_pool1d`; the gradient of each output goes to the first
    maximal element of its bin.

    Args:
        x: (N, L, C) or unbatched (L, C); any real dtype.
        output_size: int or (L_out,); ``(None,)`` keeps the input's length.
        return_indices: not supported (must be False).

    Returns:
        (N, L_out, C) (or (L_out, C)) in ``x``'s dtype.

    Raises:
        ShapeError: wrong rank, or an empty input.
        ValueError: invalid output_size.
    """
    _no_indices(return_indices, "adaptive_max_pool1d")
    return _adaptive_pool(x, output_size, nd=1, where="adaptive_max_pool1d", mode="max")


def adaptive_max_pool3d(
    x: jax.typing.ArrayLike, output_size: Any, return_indices: bool = False
) -> jax.Array:
    """3-D adaptive max pooling, as ``torch.nn.functional.adaptive_max_pool3d``.

    Bins as :func:`adaptive_avg_pool3d`; the gradient of each output goes to the first
    maximal element of its bin in (d, h, w) row-major order, as PyTorch.

    Args:
        x: (N, D, H, W, C) or unbatched (D, H, W, C); any real dtype.
        output_size: int or (D_out, H_out, W_out); None in the tuple keeps that input size.
        return_indices: not supported (must be False).

    Returns:
        (N, D_out, H_out, W_out, C) (or unbatched) in ``x``'s dtype.

    Raises:
        ShapeError: wrong rank, or an empty input.
        ValueError: invalid output_size.
    """
    _no_indices(return_indices, "adaptive_max_pool3d")
    return _adaptive_pool(x, output_size, nd=3, where="adaptive_max_pool3d", mode="max")
