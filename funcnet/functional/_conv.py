"""Convolutions: conv1d/2d/3d and conv_transpose1d/2d/3d, channels-last.

Inputs are ``(N, *spatial, C)`` (NLC, NHWC, NDHWC) or unbatched ``(*spatial, C)``;
kernels are ``(*kernel, in_channels // groups, out_channels)`` (WIO, HWIO, DHWIO). Each
function is one ``lax.conv_general_dilated`` (faster on XLA:CPU than im2col).
Shapes are checked while tracing, and errors name the function, or the layer's path when
a layer calls them. Every broadcast is explicit (rank-promotion-safe).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from funcnet.errors import ShapeError, check_last_dim, check_ndim

__all__ = [
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
]

IntOrTuple = int | Sequence[int]

_DIMENSION_NUMBERS = {
    1: ("NWC", "WIO", "NWC"),
    2: ("NHWC", "HWIO", "NHWC"),
    3: ("NDHWC", "DHWIO", "NDHWC"),
}
_SPATIAL = {1: "L", 2: "H, W", 3: "D, H, W"}
_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


# --------------------------------------------------------------------------- helpers
# (shared with funcnet.functional._pooling and the layers in funcnet.nn)


def _label(where: Any) -> str:
    """``where`` is a layer's context (named by path and type) or a function's name."""
    path = getattr(where, "path", None)
    return str(where) if path is None else f"{path} ({type(where.module).__name__})"


def _ntuple(value: Any, n: int, name: str, minimum: int = 0) -> tuple[int, ...]:
    """An int or a sequence of ``n`` ints (each >= ``minimum``) as an ``n``-tuple."""
    try:
        items = (operator.index(value),) * n if not isinstance(value, Sequence) else value
        out = tuple(operator.index(v) for v in items)
    except TypeError:
        out = ()
    if len(out) != n or isinstance(value, str) or any(v < minimum for v in out):
        raise ValueError(
            f"{name} must be an int >= {minimum} or a tuple of {n} such ints, got {value!r}"
        )
    return out


def _layouts(nd: int) -> str:
    return f"(N, {_SPATIAL[nd]}, C) or unbatched ({_SPATIAL[nd]}, C)"


def _batched(where: Any, x: jax.typing.ArrayLike, nd: int) -> tuple[jax.Array, bool]:
    """``x`` with a batch axis (added when it had none), and whether it was added."""
    check_ndim(where, x, (nd + 2, nd + 1), layout=_layouts(nd))
    x = jnp.asarray(x)
    unbatched = x.ndim == nd + 1
    return (x[None] if unbatched else x), unbatched


def _channels_last(v: jax.Array, ndim: int) -> jax.Array:
    """A per-channel vector ``(C,)`` shaped to broadcast against ``(N, *spatial, C)``."""
    return v.reshape((1,) * (ndim - 1) + (-1,))


def _conv_padding(
    padding: str | IntOrTuple, kernel: Sequence[int], dilation: Sequence[int], stride: Sequence[int]
) -> list[tuple[int, int]]:
    """(low, high) zero padding per spatial axis, as PyTorch interprets ``padding``.

    ``"same"`` pads ``dilation·(kernel−1)`` in total, the odd element on the high side
    (PyTorch's choice, and XLA's "SAME"); like PyTorch it needs stride 1.
    """
    nd = len(kernel)
    if isinstance(padding, str):
        if padding == "valid":
            return [(0, 0)] * nd
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError("padding='same' is not supported for strided convolutions")
            totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
            return [(t // 2, t - t // 2) for t in totals]
        raise ValueError(f"padding must be 'same', 'valid', an int or a tuple, got {padding!r}")
    return [(p, p) for p in _ntuple(padding, nd, "padding")]


def _check_window(
    where: Any,
    shape: Sequence[int],
    kernel: Sequence[int],
    dilation: Sequence[int],
    pads: Sequence[tuple[int, int]],
) -> None:
    """ShapeError unless the dilated window fits in the padded input on every axis.

    ``shape`` is the input's shape as the caller gave it (batched or not).
    """
    nd = len(kernel)
    spatial = tuple(shape[-1 - nd : -1])
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(spatial, pads))
    span = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    if any(s > n for s, n in zip(span, padded)):
        raise ShapeError(
            f"{_label(where)}: kernel {tuple(kernel)} with dilation {tuple(dilation)} spans "
            f"{span}, larger than the padded input {padded}; got input shape {tuple(shape)}"
        )


def _check_weight(where: Any, weight: jax.typing.ArrayLike, nd: int, layout: str) -> tuple:
    shape = tuple(jnp.shape(weight))
    if len(shape) != nd + 2:
        raise ShapeError(f"{_label(where)}: expected {nd + 2}-D weight {layout}, got {shape}")
    return shape


def _check_bias(where: Any, bias: jax.typing.ArrayLike, channels: int) -> None:
    if tuple(jnp.shape(bias)) != (channels,):
        raise ShapeError(
            f"{_label(where)}: expected bias of shape ({channels},), got {tuple(jnp.shape(bias))}"
        )


def _pad_input(
    where: Any, x: jax.Array, pads: Sequence[tuple[int, int]], mode: str, shape: Sequence[int]
) -> jax.Array:
    """Pads the spatial axes of ``x`` (N, *spatial, C) with a PyTorch ``padding_mode``;
    ``shape`` is the input's shape as the caller gave it, for the message."""
    spatial = x.shape[1:-1]
    widest = [max(lo, hi) for lo, hi in pads]
    if mode == "reflect" and any(w >= n for w, n in zip(widest, spatial)):
        limit = "smaller than"
    elif mode == "circular" and any(w > n for w, n in zip(widest, spatial)):
        limit = "at most"
    else:
        limit = None
    if limit is not None:
        raise ShapeError(
            f"{_label(where)}: {mode} padding {tuple(pads)} must be {limit} the spatial "
            f"size {tuple(spatial)}; got input shape {tuple(shape)}"
        )
    return jnp.pad(x, [(0, 0), *pads, (0, 0)], mode=_PAD_MODES[mode])


# ------------------------------------------------------------------------ convolution


def _conv(
    x: jax.typing.ArrayLike,
    weight: jax.typing.ArrayLike,
    bias: jax.typing.ArrayLike | None,
    stride: IntOrTuple,
    padding: str | IntOrTuple,
    dilation: IntOrTuple,
    groups: int,
    *,
    nd: int,
    where: Any,
    padding_mode: str = "zeros",
) -> jax.Array:
    """The N-d convolution behind conv1d/2d/3d and the Conv layers."""
    given, shape = x, tuple(jnp.shape(x))  # errors show the caller's shape
    x, unbatched = _batched(where, x, nd)
    w_shape = _check_weight(where, weight, nd, "(*kernel, in_channels // groups, out_channels)")
    kernel, in_per_group, out_channels = w_shape[:nd], w_shape[nd], w_shape[nd + 1]
    if groups < 1 or out_channels % groups:
        raise ShapeError(
            f"{_label(where)}: groups={groups} must be >= 1 and divide the weight's "
            f"out_channels {out_channels} (weight shape {w_shape})"
        )
    check_last_dim(where, given, in_per_group * groups)
    stride = _ntuple(stride, nd, "stride", 1)
    dilation = _ntuple(dilation, nd, "dilation", 1)
    pads = _conv_padding(padding, kernel, dilation, stride)
    _check_window(where, shape, kernel, dilation, pads)
    if bias is not None:
        _check_bias(where, bias, out_channels)
    if padding_mode != "zeros" and any(lo or hi for lo, hi in pads):
        x = _pad_input(where, x, pads, padding_mode, shape)
        pads = [(0, 0)] * nd
    dtype = jnp.result_type(x, weight) if bias is None else jnp.result_type(x, weight, bias)
    y = lax.conv_general_dilated(
        x.astype(dtype),
        jnp.asarray(weight, dtype),
        window_strides=stride,
        padding=pads,
        rhs_dilation=dilation,
        dimension_numbers=_DIMENSION_NUMBERS[nd],
        feature_group_count=groups,
    )
    if bias is not None:
        y = y + _channels_last(jnp.asarray(bias, dtype), y.ndim)
    return y[0] if unbatched else y


def conv1d(
    x: jax.typing.ArrayLike,
    weight: jax.typing.ArrayLike,
    bias: jax.typing.ArrayLike | None = None,
    stride: IntOrTuple = 1,
    padding: str | IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
) -> jax.Array:
    """1-D convolution (cross-correlation), as ``torch.nn.functional.conv1d``, channels-last.

    Args:
        x: (N, L, C_in) or unbatched (L, C_in).
        weight: (k, C_in // groups, C_out) (WIO) — PyTorch's ``(C_out, C_in // groups, k)``
            weight ``w`` converts with ``w.permute(2, 1, 0)``.
        bias: (C_out,) or None.
        stride: step between windows.
        padding: zeros added on both sides (int or 1-tuple), or ``"same"`` / ``"valid"``.
        dilation: spacing between kernel elements.
        groups: split the channels into this many independent groups.

    Returns:
        (N, L_out, C_out) (or (L_out, C_out)), in the promoted dtype of the arguments;
        L_out = floor((L + 2·padding − dilation·(kernel − 1) − 1) / stride) + 1.

    Raises:
        ShapeError: wrong rank, channel count or weight shape; kernel larger than the
            padded input.
    """
    return _conv(x, weight, bias, stride, padding, dilation, groups, nd=1, where="conv1d")


def conv2d(
    x: jax.typing.ArrayLike,
    weight: jax.typing.ArrayLike,
    bias: jax.typing.ArrayLike | None = None,
    stride: IntOrTuple = 1,
    padding: str | IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
) -> jax.Array:
    """2-D convolution (cross-correlation), as ``torch.nn.functional.conv2d``, channels-last.

    Args:
        x: (N, H, W, C_in) or unbatched (H, W, C_in).
        weight: (kh, kw, C_in // groups, C_out) (HWIO) — PyTorch's OIHW weight
            ``w`` converts with ``w.permute(2, 3, 1, 0)``.
        bias: (C_out,) or None.
        stride: int or (sh, sw).
        padding: int or (ph, pw) zeros on both sides, or ``"same"`` (stride 1 only; the
            odd element of an even total goes on the high side, as PyTorch) or ``"valid"``.
        dilation: int or (dh, dw).
        groups: C_in and C_out are split into ``groups`` independent groups.

    Returns:
        (N, H_out, W_out, C_out) (or unbatched), in the promoted dtype of the arguments;
        H_out = floor((H + 2·ph − dh·(kh − 1) − 1) / sh) + 1, likewise W_out.

    Raises:
        ShapeError: wrong rank, channel count or weight shape; kernel larger than the
            padded input.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import functional as F
        >>> F.conv2d(jnp.ones((1, 5, 5, 3)), jnp.ones((3, 3, 3, 8)), padding=1).shape
        (1, 5, 5, 8)
    """
    return _conv(x, weight, bias, stride, padding, dilation, groups, nd=2, where="conv2d")


def conv3d(
    x: jax.typing.ArrayLike,
    weight: jax.typing.ArrayLike,
    bias: jax.typing.ArrayLike | None = None,
    stride: IntOrTuple = 1,
    padding: str | IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
) -> jax.Array:
    """3-D convolution, as ``torch.nn.functional.conv3d``, channels-last.

    Args:
        x: (N, D, H, W, C_in) or unbatched (D, H, W, C_in).
        weight: (kd, kh, kw, C_in // groups, C_out) (DHWIO) — from PyTorch's
            ``(C_out, C_in // groups, kd, kh, kw)`` by ``w.permute(2, 3, 4, 1, 0)``.
        bias: (C_out,) or None.
        stride: int or (sd, sh, sw).
        padding: int or (pd, ph, pw) zeros on both sides, or ``"same"`` / ``"valid"``, as
            in :func:`conv2d`.
        dilation: int or (dd, dh, dw).
        groups: C_in and C_out are split into ``groups`` independent groups.

    Returns:
        (N, D_out, H_out, W_out, C_out) (or unbatched), in the arguments' promoted dtype.

    Raises:
        ShapeError: as :func:`conv2d`.
    """
    return _conv(x, weight, bias, stride, padding, dilation, groups, nd=3, where="conv3d")


# -------------------------------------------------------------- transposed convolution


def _transpose_kernel(weight: jax.Array, groups: int) -> jax.Array:
    """``(*k, out/groups, in)`` → the flipped ``(*k, in/groups, out)`` kernel of the
    equivalent forward convolution (with ``feature_group_count=groups``)."""
    *kernel, out_per_group, in_channels = weight.shape
    nd = len(kernel)
    w = weight.reshape(*kernel, out_per_group, groups, in_channels // groups)
    w = jnp.moveaxis(w, nd, nd + 2)  # (*k, groups, in/groups, out/groups)
    w = jnp.swapaxes(w, nd, nd + 1).reshape(*kernel, in_channels // groups, -1)
    return jnp.flip(w, axis=tuple(range(nd)))


def _transpose_geometry(
    where: Any,
    shape: Sequence[int],
    spatial: Sequence[int],
    kernel: Sequence[int],
    *args: IntOrTuple,
) -> tuple[tuple[int, ...], ...]:
    """Normalised (stride, padding, output_padding, dilation) of a transposed convolution;
    ValueError for an output_padding PyTorch refuses, ShapeError for an empty output."""
    nd = len(kernel)
    stride, padding, output_padding, dilation = (
        _ntuple(value, nd, name, minimum)
        for value, name, minimum in zip(
            args, ("stride", "padding", "output_padding", "dilation"), (1, 0, 0, 1)
        )
    )
    if any(op >= max(s, d) for op, s, d in zip(output_padding, stride, dilation)):
        raise ValueError(
            f"{_label(where)}: output_padding {output_padding} must be smaller than either "
            f"stride {stride} or dilation {dilation} on every axis"
        )
    out = [
        (n - 1) * s - 2 * p + d * (k - 1) + op + 1
        for n, k, s, p, d, op in zip(spatial, kernel, stride, padding, dilation, output_padding)
    ]
    if min(out) < 1:
        raise ShapeError(
            f"{_label(where)}: padding {padding} leaves an empty output {tuple(out)} for input "
            f"shape {tuple(shape)}"
        )
    return stride, padding, output_padding, dilation


def _conv_transpose(
    x: jax.typing.ArrayLike,
    weight: jax.typing.ArrayLike,
    bias: jax.typing.ArrayLike | None,
    stride: IntOrTuple,
    padding: IntOrTuple,
    output_padding: IntOrTuple,
    groups: int,
    dilation: IntOrTuple,
    *,
    nd: int,
    where: Any,
) -> jax.Array:
    """conv_transpose1d/2d/3d and the ConvTranspose layers: one forward convolution of the
    stride-dilated input with the flipped, regrouped kernel, padded ``dilation·(k−1) −
    padding`` on each side (plus ``output_padding`` high); negative amounts crop."""
    given, shape = x, tuple(jnp.shape(x))  # errors show the caller's shape
    x, unbatched = _batched(where, x, nd)
    w_shape = _check_weight(where, weight, nd, "(*kernel, out_channels // groups, in_channels)")
    kernel, out_per_group, in_channels = w_shape[:nd], w_shape[nd], w_shape[nd + 1]
    if groups < 1 or in_channels % groups:
        raise ShapeError(
            f"{_label(where)}: groups={groups} must be >= 1 and divide the weight's "
            f"in_channels {in_channels} (weight shape {w_shape})"
        )
    check_last_dim(where, given, in_channels)
    stride, padding, output_padding, dilation = _transpose_geometry(
        where, shape, x.shape[1:-1], kernel, stride, padding, output_padding, dilation
    )
    if bias is not None:
        _check_bias(where, bias, out_per_group * groups)
    pads = [
        (d * (k - 1) - p, d * (k - 1) - p + op)
        for k, p, d, op in zip(kernel, padding, dilation, output_padding)
    ]
    dtype = jnp.result_type(x, weight) if bias is None else jnp.result_type(x, weight, bias)
    y = lax.conv_general_dilated(
        x.astype(dtype),
        _transpose_kernel(jnp.asarray(weight, dtype), groups),
        window_strides=(1,) * nd,
        padding=pads,
        lhs_dilation=stride,
        rhs_dilation=dilation,
        dimension_numbers=_DIMENSION_NUMBERS[nd],
        feature_group_count=groups,
    )
    if bias is not None:
        y = y + _channels_last(jnp.asarray(bias, dtype), y.ndim)
    return y[0] if unbatched else y


def conv_transpose2d(
    x: jax.typing.ArrayLike,
    weight: jax.typing.ArrayLike,
    bias: jax.typing.ArrayLike | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
) -> jax.Array:
    """2-D transposed convolution, as ``torch.nn.functional.conv_transpose2d``, channels-last.

    The adjoint of :func:`conv2d` with the same stride, padding, dilation and groups.

    Args:
        x: (N, H, W, C_in) or unbatched (H, W, C_in).
        weight: (kh, kw, C_out // groups, C_in): the HWIO kernel of the convolution this
            one transposes (the layout of TensorFlow's ``conv2d_transpose`` and of
            ``lax.conv_transpose(..., transpose_kernel=True)``). PyTorch's
            ``(C_in, C_out // groups, kh, kw)`` weight converts with
            ``w.permute(2, 3, 1, 0)``: a transpose, no flip.
        bias: (C_out,) or None.
        stride: int or (sh, sw).
        padding: int or (ph, pw): ``dilation·(k − 1) − padding`` zeros are added to
            each side of the stride-dilated input (so padding removes output rows).
        output_padding: int or (oh, ow) extra rows/columns on the high side; each must
            be smaller than the stride or the dilation on its axis.
        groups: independent groups, as in :func:`conv2d`.
        dilation: int or (dh, dw).

    Returns:
        (N, H_out, W_out, C_out) (or unbatched), in the arguments' promoted dtype;
        H_out = (H − 1)·sh − 2·ph + dh·(kh − 1) + oh + 1, likewise W_out (PyTorch's).

    Raises:
        ShapeError: wrong rank, channel count or weight shape; empty output.
        ValueError: output_padding too large.
    """
    return _conv_transpose(
        x,
        weight,
        bias,
        stride,
        padding,
        output_padding,
        groups,
        dilation,
        nd=2,
        where="conv_transpose2d",
    )


def conv_transpose1d(
    x: jax.typing.ArrayLike,
    weight: jax.typing.ArrayLike,
    bias: jax.typing.ArrayLike | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
) -> jax.Array:
    """1-D transposed convolution, as ``torch.nn.functional.conv_transpose1d``, channels-last.

    The adjoint of :func:`conv1d` with the same stride, padding, dilation and groups.

    Args:
        x: (N, L, C_in) or unbatched (L, C_in).
        weight: (k, C_out // groups, C_in): the WIO kernel of the convolution this one
            transposes. PyTorch's ``(C_in, C_out // groups, k)`` weight converts with
            ``w.permute(2, 1, 0)``: a transpose, no flip.
        bias: (C_out,) or None.
        stride: int or 1-tuple.
        padding: int or 1-tuple: ``dilation·(k − 1) − padding`` zeros are added to each
            side of the stride-dilated input, as in :func:`conv_transpose2d`.
        output_padding: int or 1-tuple, extra positions on the high side; smaller than
            the stride or the dilation.
        groups: independent groups, as in :func:`conv1d`.
        dilation: int or 1-tuple.

    Returns:
        (N, L_out, C_out) (or (L_out, C_out)), in the arguments' promoted dtype;
        L_out = (L − 1)·stride − 2·padding + dilation·(k − 1) + output_padding + 1.

    Raises:
        ShapeError: wrong rank, channel count or weight shape; empty output.
        ValueError: output_padding too large.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import functional as F
        >>> F.conv_transpose1d(jnp.ones((1, 5, 4)), jnp.ones((3, 2, 4)), stride=2).shape
        (1, 11, 2)
    """
    return _conv_transpose(
        x,
        weight,
        bias,
        stride,
        padding,
        output_padding,
        groups,
        dilation,
        nd=1,
        where="conv_transpose1d",
    )


def conv_transpose3d(
    x: jax.typing.ArrayLike,
    weight: jax.typing.ArrayLike,
    bias: jax.typing.ArrayLike | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
) -> jax.Array:
    """3-D transposed convolution, as ``torch.nn.functional.conv_transpose3d``, channels-last.

    The adjoint of :func:`conv3d` with the same stride, padding, dilation and groups;
    arguments as :func:`conv_transpose2d`, with ints or 3-tuples.

    Args:
        x: (N, D, H, W, C_in) or unbatched (D, H, W, C_in).
        weight: (kd, kh, kw, C_out // groups, C_in): the DHWIO kernel of the convolution
            this one transposes. PyTorch's ``(C_in, C_out // groups, kd, kh, kw)`` weight
            converts with ``w.permute(2, 3, 4, 1, 0)``: a transpose, no flip.
        bias: (C_out,) or None.
        stride: int or (sd, sh, sw).
        padding: int or (pd, ph, pw): ``dilation·(k − 1) − padding`` zeros are added to
            each side of the stride-dilated input, as in :func:`conv_transpose2d`.
        output_padding: int or (od, oh, ow) extra positions on the high side; each
            smaller than the stride or the dilation on its axis.
        groups: independent groups, as in :func:`conv3d`.
        dilation: int or (dd, dh, dw).

    Returns:
        (N, D_out, H_out, W_out, C_out) (or unbatched), in the arguments' promoted dtype;
        D_out = (D − 1)·sd − 2·pd + dd·(kd − 1) + od + 1, likewise H_out and W_out.

    Raises:
        ShapeError: wrong rank, channel count or weight shape; empty output.
        ValueError: output_padding too large.
    """
    return _conv_transpose(
        x,
        weight,
        bias,
        stride,
        padding,
        output_padding,
        groups,
        dilation,
        nd=3,
        where="conv_transpose3d",
    )
