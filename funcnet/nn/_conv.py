"""Convolution layers: Conv1d/2d/3d and ConvTranspose1d/2d/3d (channels-last).

Images are ``(N, *spatial, C)``: NLC, NHWC, NDHWC (or unbatched, without N). Kernels stay
in JAX's layouts; importing PyTorch weights is a transpose (see each class). Arguments,
defaults, output sizes and the default initialisation are PyTorch's.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from funcnet.errors import check_input_dtype, check_last_dim, check_ndim
from funcnet.functional._conv import (
    _PAD_MODES,
    IntOrTuple,
    _conv,
    _conv_padding,
    _conv_transpose,
    _layouts,
    _ntuple,
)
from funcnet.nn import init as init_lib
from funcnet.nn._linear import compute_dtype
from funcnet.nn._module import Context, Initializer, Module

__all__ = [
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
]


def _lists_to_tuples(module: Any) -> None:
    """Stores list-valued fields as tuples, so modules stay hashable and comparable."""
    for field in dataclasses.fields(module):
        value = getattr(module, field.name)
        if isinstance(value, list):
            setattr(module, field.name, tuple(value))


def _check_channels(name: str, in_channels: int, out_channels: int, groups: int) -> None:
    for what, value in (("in_channels", in_channels), ("out_channels", out_channels)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: {what} must be a positive int, got {value!r}")
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"{name}: groups must be a positive int, got {groups!r}")
    for what, value in (("in_channels", in_channels), ("out_channels", out_channels)):
        if value % groups:
            raise ValueError(f"{name}: {what}={value} must be divisible by groups={groups}")


def _default_init(
    key: jax.Array,
    weight_shape: tuple[int, ...],
    bias_shape: tuple[int, ...] | None,
    fan_in: int,
    weight_init: Initializer | None,
    bias_init: Initializer | None,
    dtype: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Weight and bias with PyTorch's defaults, U(±1/sqrt(fan_in)), unless overridden."""
    kw, kb = jax.random.split(key)
    default = functools.partial(init_lib.default_uniform, fan_in=fan_in)
    params = {"weight": (weight_init or default)(kw, weight_shape, dtype)}
    if bias_shape is not None:
        params["bias"] = (bias_init or default)(kb, bias_shape, dtype)
    return params, {}


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class _ConvNd(Module):
    """Shared implementation of Conv1d/2d/3d; subclasses fix ``_nd``."""

    in_channels: int
    out_channels: int
    kernel_size: IntOrTuple
    stride: IntOrTuple = 1
    padding: str | IntOrTuple = 0
    dilation: IntOrTuple = 1
    groups: int = 1
    bias: bool = True
    padding_mode: str = "zeros"
    weight_init: Initializer | None = None
    bias_init: Initializer | None = None
    dtype: Any = jnp.float32

    _nd: ClassVar[int] = 0

    def __post_init__(self) -> None:
        _lists_to_tuples(self)
        name, nd = type(self).__name__, self._nd
        _check_channels(name, self.in_channels, self.out_channels, self.groups)
        try:
            kernel = _ntuple(self.kernel_size, nd, "kernel_size", 1)
            stride = _ntuple(self.stride, nd, "stride", 1)
            dilation = _ntuple(self.dilation, nd, "dilation", 1)
            _conv_padding(self.padding, kernel, dilation, stride)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
        if self.padding_mode not in _PAD_MODES:
            raise ValueError(
                f"{name}: padding_mode must be one of {sorted(_PAD_MODES)}, "
                f"got {self.padding_mode!r}"
            )

    def init(self, key: jax.Array) -> tuple[dict[str, Any], dict[str, Any]]:
        kernel = _ntuple(self.kernel_size, self._nd, "kernel_size", 1)
        in_per_group = self.in_channels // self.groups
        return _default_init(
            key,
            (*kernel, in_per_group, self.out_channels),
            (self.out_channels,) if self.bias else None,
            in_per_group * math.prod(kernel),
            self.weight_init,
            self.bias_init,
            self.dtype,
        )

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        check_ndim(ctx, x, (self._nd + 2, self._nd + 1), layout=_layouts(self._nd))
        check_last_dim(ctx, x, self.in_channels, spatial_dims=self._nd)
        check_input_dtype(ctx, x)
        dtype = compute_dtype(x)
        bias = ctx.param("bias", dtype) if self.bias else None
        return _conv(
            x,
            ctx.param("weight", dtype),
            bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            nd=self._nd,
            where=ctx,
            padding_mode=self.padding_mode,
        )


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Conv1d(_ConvNd):
    """1-D convolution over (N, L, C_in) → (N, L_out, C_out) (``torch.nn.Conv1d``).

    Arguments, errors and dtype behaviour as :class:`Conv2d`, with ints or 1-tuples.
    Unbatched (L, C_in) → (L_out, C_out) is accepted too. Parameters: ``weight``
    (k, C_in // groups, C_out) — PyTorch's ``(C_out, C_in // groups, k)`` weight
    imports as ``w.permute(2, 1, 0)`` — and ``bias`` (C_out,). Default init as PyTorch:
    U(±1/sqrt(fan_in)), fan_in = C_in // groups · k.
    L_out = floor((L + 2·padding − dilation·(k − 1) − 1) / stride) + 1.
    """

    _nd: ClassVar[int] = 1


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Conv2d(_ConvNd):
    """2-D convolution over (N, H, W, C_in) → (N, H_out, W_out, C_out) (``torch.nn.Conv2d``).

    Unbatched (H, W, C_in) → (H_out, W_out, C_out) is accepted too, so the layer works
    under ``jax.vmap`` over single images. H_out = floor((H + 2·ph − dh·(kh − 1) − 1) /
    sh) + 1, likewise W_out.

    Parameters: ``weight`` (kh, kw, C_in // groups, C_out) (HWIO; PyTorch's OIHW weight
    ``w`` imports as ``w.permute(2, 3, 1, 0)``) and ``bias`` (C_out,). Default init as
    PyTorch (kaiming_uniform with a=sqrt(5)): weight and bias U(±1/sqrt(fan_in)),
    fan_in = C_in // groups · kh · kw.

    Args:
        in_channels: channels of the input (its last axis).
        out_channels: channels of the output.
        kernel_size: int or (kh, kw).
        stride: int or (sh, sw).
        padding: int or (ph, pw) added on both sides, or ``"same"`` (stride 1 only; an
            odd total puts the extra element on the high side, as PyTorch) or ``"valid"``.
        dilation: int or (dh, dw): spacing between kernel elements.
        groups: in_channels and out_channels are split into this many independent
            groups; both must be divisible by it.
        bias: whether to learn an additive bias.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``, as
            PyTorch.
        weight_init: optional initialiser ``(key, shape, dtype) -> array`` for the
            weight (``funcnet.nn.init``'s fans read this layout as PyTorch reads its own).
        bias_init: optional initialiser for the bias.
        dtype: dtype of the parameters. The layer computes in its input's floating
            dtype (parameters are cast at use): bfloat16 in, bfloat16 out.

    Raises:
        ValueError: at construction, for channels not divisible by groups, or invalid
            kernel_size, stride, padding, dilation or padding_mode.
        ShapeError: when traced with the wrong rank or channel count, or an input
            smaller than the (dilated) kernel; the message names the layer's path.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from funcnet import nn
        >>> conv = nn.Conv2d(3, 16, kernel_size=3, padding=1)
        >>> params, state = conv.init(jax.random.key(0))
        >>> params["weight"].shape
        (3, 3, 3, 16)
        >>> y, _ = conv.apply(params, state, jnp.ones((8, 32, 32, 3)))
        >>> y.shape
        (8, 32, 32, 16)
    """

    _nd: ClassVar[int] = 2


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Conv3d(_ConvNd):
    """3-D convolution over (N, D, H, W, C_in) → (N, D_out, H_out, W_out, C_out)
    (``torch.nn.Conv3d``).

    Arguments, errors and dtype behaviour as :class:`Conv2d`, with ints or 3-tuples.
    Unbatched (D, H, W, C_in) is accepted too. Parameters: ``weight``
    (kd, kh, kw, C_in // groups, C_out) (DHWIO; PyTorch's weight imports as
    ``w.permute(2, 3, 4, 1, 0)``) and ``bias`` (C_out,). Default init as PyTorch, with
    fan_in = C_in // groups · kd · kh · kw.
    """

    _nd: ClassVar[int] = 3


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class _ConvTransposeNd(Module):
    """Shared implementation of ConvTranspose1d/2d/3d; subclasses fix ``_nd``."""

    in_channels: int
    out_channels: int
    kernel_size: IntOrTuple
    stride: IntOrTuple = 1
    padding: IntOrTuple = 0
    output_padding: IntOrTuple = 0
    groups: int = 1
    bias: bool = True
    dilation: IntOrTuple = 1
    padding_mode: str = "zeros"
    weight_init: Initializer | None = None
    bias_init: Initializer | None = None
    dtype: Any = jnp.float32

    _nd: ClassVar[int] = 0

    def __post_init__(self) -> None:
        _lists_to_tuples(self)
        name, nd = type(self).__name__, self._nd
        _check_channels(name, self.in_channels, self.out_channels, self.groups)
        try:
            _ntuple(self.kernel_size, nd, "kernel_size", 1)
            stride = _ntuple(self.stride, nd, "stride", 1)
            _ntuple(self.padding, nd, "padding")
            output_padding = _ntuple(self.output_padding, nd, "output_padding")
            dilation = _ntuple(self.dilation, nd, "dilation", 1)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
        if any(op >= max(s, d) for op, s, d in zip(output_padding, stride, dilation)):
            raise ValueError(
                f"{name}: output_padding {output_padding} must be smaller than either "
                f"stride {stride} or dilation {dilation} on every axis"
            )
        if self.padding_mode != "zeros":
            raise ValueError(f'{name}: only "zeros" padding_mode is supported')

    def init(self, key: jax.Array) -> tuple[dict[str, Any], dict[str, Any]]:
        kernel = _ntuple(self.kernel_size, self._nd, "kernel_size", 1)
        out_per_group = self.out_channels // self.groups
        return _default_init(
            key,
            (*kernel, out_per_group, self.in_channels),
            (self.out_channels,) if self.bias else None,
            out_per_group * math.prod(kernel),
            self.weight_init,
            self.bias_init,
            self.dtype,
        )

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        check_ndim(ctx, x, (self._nd + 2, self._nd + 1), layout=_layouts(self._nd))
        check_last_dim(ctx, x, self.in_channels, spatial_dims=self._nd)
        check_input_dtype(ctx, x)
        dtype = compute_dtype(x)
        bias = ctx.param("bias", dtype) if self.bias else None
        return _conv_transpose(
            x,
            ctx.param("weight", dtype),
            bias,
            self.stride,
            self.padding,
            self.output_padding,
            self.groups,
            self.dilation,
            nd=self._nd,
            where=ctx,
        )


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class ConvTranspose1d(_ConvTransposeNd):
    """1-D transposed convolution (``torch.nn.ConvTranspose1d``), channels-last.

    (N, L, C_in) → (N, L_out, C_out), or unbatched (L, C_in). Arguments, errors and dtype
    behaviour as :class:`ConvTranspose2d`, with ints or 1-tuples;
    L_out = (L − 1)·stride − 2·padding + dilation·(k − 1) + output_padding + 1.

    Parameters: ``weight`` (k, C_out // groups, C_in) — PyTorch's
    ``(C_in, C_out // groups, k)`` weight imports as ``w.permute(2, 1, 0)``, no flip — and
    ``bias`` (C_out,). Default init as PyTorch: U(±1/sqrt(fan_in)),
    fan_in = C_out // groups · k.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from funcnet import nn
        >>> up = nn.ConvTranspose1d(8, 4, kernel_size=4, stride=2, padding=1)
        >>> params, state = up.init(jax.random.key(0))
        >>> params["weight"].shape
        (4, 4, 8)
        >>> y, _ = up.apply(params, state, jnp.ones((2, 16, 8)))
        >>> y.shape
        (2, 32, 4)
    """

    _nd: ClassVar[int] = 1


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class ConvTranspose2d(_ConvTransposeNd):
    """2-D transposed convolution (``torch.nn.ConvTranspose2d``), channels-last.

    (N, H, W, C_in) → (N, H_out, W_out, C_out), or unbatched (H, W, C_in). The adjoint of
    a Conv2d with the same stride, padding, dilation and groups, with PyTorch's size:
    H_out = (H − 1)·sh − 2·ph + dh·(kh − 1) + oh + 1, likewise W_out.

    Parameters: ``weight`` (kh, kw, C_out // groups, C_in) and ``bias`` (C_out,). The
    weight is the HWIO kernel of the convolution being transposed (which maps C_out to
    C_in): the layout of TensorFlow's ``conv2d_transpose`` and of
    ``lax.conv_transpose(..., transpose_kernel=True)``. PyTorch's
    ``(C_in, C_out // groups, kh, kw)`` weight imports as ``w.permute(2, 3, 1, 0)``: a
    transpose, no flip. In this layout ``funcnet.nn.init``'s fans equal PyTorch's, so
    the default init is PyTorch's too: weight and bias U(±1/sqrt(fan_in)) with
    fan_in = C_out // groups · kh · kw (PyTorch's choice for transposed convolutions).

    Args:
        in_channels: channels of the input (its last axis).
        out_channels: channels of the output.
        kernel_size: int or (kh, kw).
        stride: int or (sh, sw).
        padding: int or (ph, pw): ``dilation·(k − 1) − padding`` zeros are added to both
            sides of the stride-dilated input, so padding shrinks the output.
        output_padding: int or (oh, ow) extra rows/columns on the high side, to pick
            one of the input sizes a strided Conv2d maps to the same size; each must be
            smaller than the stride or the dilation on its axis.
        groups: independent channel groups; in_channels and out_channels must be
            divisible by it.
        bias: whether to learn an additive bias (out_channels,).
        dilation: int or (dh, dw).
        padding_mode: only ``"zeros"``, as PyTorch.
        weight_init: optional initialiser ``(key, shape, dtype) -> array``.
        bias_init: optional initialiser for the bias.
        dtype: dtype of the parameters; the layer computes in its input's floating dtype.

    Raises:
        ValueError: at construction, for channels not divisible by groups, output_padding
            too large, or invalid sizes.
        ShapeError: when traced with the wrong rank or channel count, or an empty output.

    Not supported: PyTorch's ``forward(input, output_size)``; pick ``output_padding``.
    """

    _nd: ClassVar[int] = 2


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class ConvTranspose3d(_ConvTransposeNd):
    """3-D transposed convolution (``torch.nn.ConvTranspose3d``), channels-last.

    (N, D, H, W, C_in) → (N, D_out, H_out, W_out, C_out), or unbatched (D, H, W, C_in).
    Arguments, errors and dtype behaviour as :class:`ConvTranspose2d`, with ints or
    3-tuples; D_out = (D − 1)·sd − 2·pd + dd·(kd − 1) + od + 1, likewise H_out and W_out.

    Parameters: ``weight`` (kd, kh, kw, C_out // groups, C_in) — PyTorch's
    ``(C_in, C_out // groups, kd, kh, kw)`` weight imports as
    ``w.permute(2, 3, 4, 1, 0)``, no flip — and ``bias`` (C_out,). Default init as
    PyTorch, with fan_in = C_out // groups · kd · kh · kw.
    """

    _nd: ClassVar[int] = 3
