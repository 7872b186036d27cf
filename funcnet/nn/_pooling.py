"""Pooling layers: MaxPool1d/2d/3d, AvgPool1d/2d/3d, AdaptiveAvgPool1d/2d/3d and
AdaptiveMaxPool1d/2d/3d.

Channels-last, no parameters; arguments, defaults and output sizes are PyTorch's. The
maths (and the reshape fast path for non-overlapping windows) is in
``funcnet.functional._pooling``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax

from funcnet.functional._conv import IntOrTuple
from funcnet.functional._pooling import (
    _adaptive_pool,
    _avg_pool,
    _max_pool,
    _no_indices,
    _output_size,
    _pool_args,
)
from funcnet.nn._conv import _lists_to_tuples
from funcnet.nn._module import Context, Module

__all__ = [
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveAvgPool3d",
    "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d",
    "AdaptiveMaxPool3d",
    "AvgPool1d",
    "AvgPool2d",
    "AvgPool3d",
    "MaxPool1d",
    "MaxPool2d",
    "MaxPool3d",
]


class _Pool(Module):
    """Shared parts: no parameters or state; arguments checked at construction."""

    _nd: ClassVar[int] = 0

    def _validate(self, check: Any) -> None:
        _lists_to_tuples(self)
        try:
            check()
        except ValueError as e:
            raise ValueError(f"{type(self).__name__}: {e}") from None


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class _MaxPoolNd(_Pool):
    kernel_size: IntOrTuple
    stride: IntOrTuple | None = None
    padding: IntOrTuple = 0
    dilation: IntOrTuple = 1
    return_indices: bool = False
    ceil_mode: bool = False

    def __post_init__(self) -> None:
        _no_indices(self.return_indices, type(self).__name__)
        self._validate(
            lambda: _pool_args(self.kernel_size, self.stride, self.padding, self.dilation, self._nd)
        )

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        return _max_pool(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.ceil_mode,
            nd=self._nd,
            where=ctx,
        )


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class MaxPool1d(_MaxPoolNd):
    """1-D max pooling, (N, L, C) → (N, L_out, C) (``torch.nn.MaxPool1d``).

    Arguments as :class:`MaxPool2d`, with ints or 1-tuples; unbatched (L, C) accepted.
    """

    _nd: ClassVar[int] = 1


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class MaxPool2d(_MaxPoolNd):
    """2-D max pooling, (N, H, W, C) → (N, H_out, W_out, C) (``torch.nn.MaxPool2d``).

    Unbatched (H, W, C) is accepted too. Output sizes as PyTorch's, in the input's dtype.
    When stride == kernel_size and dilation is 1 (the usual 2×2 pooling), with any
    padding or ceil_mode, this is a reshape and a max, whose gradient is elementwise
    (faster on CPU than ``lax.reduce_window``'s, which is used otherwise). Either way the
    gradient of each output goes to the first maximal element of its window in
    row-major order, as in PyTorch.

    Args:
        kernel_size: int or (kh, kw).
        stride: int or (sh, sw); default kernel_size.
        padding: int or (ph, pw) of −inf on both sides; at most half the kernel size.
        dilation: int or (dh, dw).
        return_indices: not supported (must be False).
        ceil_mode: round output sizes up; a last partial window is kept when it starts
            inside the input or its left padding (PyTorch's rule).

    Raises:
        ValueError: at construction, for invalid sizes; NotImplementedError for
            return_indices=True.
        ShapeError: when traced with the wrong rank or an input smaller than the window.
    """

    _nd: ClassVar[int] = 2


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class MaxPool3d(_MaxPoolNd):
    """3-D max pooling, (N, D, H, W, C) → (N, D_out, H_out, W_out, C) (``torch.nn.MaxPool3d``).

    Arguments, errors, code paths and gradients as :class:`MaxPool2d`, with ints or
    3-tuples (kernel_size, stride, padding, dilation, ceil_mode; return_indices must be
    False); unbatched (D, H, W, C) accepted. Ties send the gradient to the first maximal
    element of the window in (d, h, w) row-major order, as PyTorch.
    """

    _nd: ClassVar[int] = 3


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class _AvgPoolNd(_Pool):
    kernel_size: IntOrTuple
    stride: IntOrTuple | None = None
    padding: IntOrTuple = 0
    ceil_mode: bool = False
    count_include_pad: bool = True

    def __post_init__(self) -> None:
        self._validate(lambda: _pool_args(self.kernel_size, self.stride, self.padding, 1, self._nd))

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        return _avg_pool(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            getattr(self, "divisor_override", None),  # AvgPool1d has none, as PyTorch
            nd=self._nd,
            where=ctx,
        )


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class AvgPool1d(_AvgPoolNd):
    """1-D average pooling, (N, L, C) → (N, L_out, C) (``torch.nn.AvgPool1d``).

    Arguments as :class:`AvgPool2d` (without divisor_override), with ints or 1-tuples;
    unbatched (L, C) accepted.
    """

    _nd: ClassVar[int] = 1


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class _AvgPoolDivisorNd(_AvgPoolNd):
    """AvgPool2d/3d: AvgPool1d's arguments and PyTorch's divisor_override."""

    divisor_override: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.divisor_override is not None and not self.divisor_override:
            raise ValueError(f"{type(self).__name__}: divisor_override must be non-zero")


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class AvgPool2d(_AvgPoolDivisorNd):
    """2-D average pooling, (N, H, W, C) → (N, H_out, W_out, C) (``torch.nn.AvgPool2d``).

    Unbatched (H, W, C) is accepted too. Output in the input's (floating) dtype;
    float16/bfloat16 sums accumulate in float32. Non-overlapping windows use a reshape
    and a sum, others ``lax.reduce_window``.

    Args:
        kernel_size: int or (kh, kw).
        stride: int or (sh, sw); default kernel_size.
        padding: int or (ph, pw) zeros on both sides; at most half the kernel size.
        ceil_mode: round output sizes up, as PyTorch.
        count_include_pad: divide by the window's area including padding (True) or by
            the number of input elements it covers (False).
        divisor_override: if given, divide every window's sum by this instead.

    Raises:
        ValueError: at construction, for invalid sizes or a zero divisor_override.
        ShapeError: when traced with the wrong rank or dtype, or an input smaller than
            the window.
    """

    _nd: ClassVar[int] = 2


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class AvgPool3d(_AvgPoolDivisorNd):
    """3-D average pooling, (N, D, H, W, C) → (N, D_out, H_out, W_out, C)
    (``torch.nn.AvgPool3d``).

    Arguments (kernel_size, stride, padding, ceil_mode, count_include_pad,
    divisor_override), errors and dtypes as :class:`AvgPool2d`, with ints or 3-tuples;
    unbatched (D, H, W, C) accepted. With count_include_pad the divisor is the window's
    volume clipped to the padded input, as PyTorch.
    """

    _nd: ClassVar[int] = 3


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class _AdaptivePool(_Pool):
    output_size: Any

    _mode: ClassVar[str] = ""

    def __post_init__(self) -> None:
        self._validate(lambda: _output_size(self.output_size, (1,) * self._nd))

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        return _adaptive_pool(x, self.output_size, nd=self._nd, where=ctx, mode=self._mode)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class AdaptiveAvgPool1d(_AdaptivePool):
    """Average pooling to a fixed length (``torch.nn.AdaptiveAvgPool1d``).

    (N, L, C) → (N, L_out, C), or unbatched (L, C). Output position i averages the input
    positions [floor(i·L/L_out), ceil((i+1)·L/L_out)) (PyTorch's bins); errors and dtypes
    as :class:`AdaptiveAvgPool2d`.

    Args:
        output_size: int or (L_out,); ``(None,)`` keeps the input's length (PyTorch's
            1-D layer rejects None).
    """

    _nd: ClassVar[int] = 1
    _mode: ClassVar[str] = "avg"


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class AdaptiveAvgPool2d(_AdaptivePool):
    """Average pooling to a fixed output size (``torch.nn.AdaptiveAvgPool2d``).

    (N, H, W, C) → (N, H_out, W_out, C), or unbatched (H, W, C). Output cell (i, j)
    averages rows [floor(i·H/H_out), ceil((i+1)·H/H_out)) and the columns likewise
    (PyTorch's bins). When the sizes divide this is a reshape and a mean
    (``AdaptiveAvgPool2d(1)`` is global average pooling).

    Args:
        output_size: int or (H_out, W_out); None in the tuple keeps that input size.

    Raises:
        ValueError: at construction, for an invalid output_size.
        ShapeError: when traced with the wrong rank or dtype, or an empty input.
    """

    _nd: ClassVar[int] = 2
    _mode: ClassVar[str] = "avg"


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class AdaptiveAvgPool3d(_AdaptivePool):
    """Average pooling to a fixed output size (``torch.nn.AdaptiveAvgPool3d``).

    (N, D, H, W, C) → (N, D_out, H_out, W_out, C), or unbatched (D, H, W, C). Bins as
    :class:`AdaptiveAvgPool2d` on each spatial axis; errors and dtypes likewise.

    Args:
        output_size: int or (D_out, H_out, W_out); None in the tuple keeps that input size.
    """

    _nd: ClassVar[int] = 3
    _mode: ClassVar[str] = "avg"


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class _AdaptiveMaxPoolNd(_AdaptivePool):
    """AdaptiveMaxPool1d/2d/3d: output_size and return_indices (which must be False)."""

    return_indices: bool = False

    _mode: ClassVar[str] = "max"

    def __post_init__(self) -> None:
        _no_indices(self.return_indices, type(self).__name__)
        super().__post_init__()


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class AdaptiveMaxPool1d(_AdaptiveMaxPoolNd):
    """Max pooling to a fixed length (``torch.nn.AdaptiveMaxPool1d``).

    (N, L, C) → (N, L_out, C), or unbatched (L, C). Bins as :class:`AdaptiveAvgPool1d`;
    gradients and errors as :class:`AdaptiveMaxPool2d`.

    Args:
        output_size: int or (L_out,); ``(None,)`` keeps the input's length.
        return_indices: not supported (must be False).
    """

    _nd: ClassVar[int] = 1


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class AdaptiveMaxPool2d(_AdaptiveMaxPoolNd):
    """Max pooling to a fixed output size (``torch.nn.AdaptiveMaxPool2d``).

    Bins as :class:`AdaptiveAvgPool2d`; the gradient of each output goes to the first
    maximal element of its bin in row-major order, as PyTorch.

    Args:
        output_size: int or (H_out, W_out); None in the tuple keeps that input size.
        return_indices: not supported (must be False).

    Raises:
        ValueError: at construction, for an invalid output_size; NotImplementedError
            for return_indices=True.
        ShapeError: when traced with the wrong rank, or an empty input.
    """

    _nd: ClassVar[int] = 2


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class AdaptiveMaxPool3d(_AdaptiveMaxPoolNd):
    """Max pooling to a fixed output size (``torch.nn.AdaptiveMaxPool3d``).

    (N, D, H, W, C) → (N, D_out, H_out, W_out, C), or unbatched (D, H, W, C). Bins as
    :class:`AdaptiveAvgPool3d`; the gradient of each output goes to the first maximal
    element of its bin in (d, h, w) row-major order, as PyTorch.

    Args:
        output_size: int or (D_out, H_out, W_out); None in the tuple keeps that input size.
        return_indices: not supported (must be False).
    """

    _nd: ClassVar[int] = 3
