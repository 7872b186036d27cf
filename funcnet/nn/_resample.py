"""Upsampling, padding, pixel-shuffle and fold/unfold layers, channels-last.

Channels-last and parameter-free; arguments, defaults and numerics are PyTorch's. The
padding layers take PyTorch's tuple, ``(left, right, top, bottom, front, back)``, and pad
the spatial axes of ``(N, *spatial, C)`` (W, H, D in that order), never C. The maths is
in ``funcnet.functional._resample``.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Sequence
from typing import Any, ClassVar

import jax

from funcnet.errors import check_ndim
from funcnet.functional._conv import IntOrTuple, _layouts, _ntuple
from funcnet.functional._resample import (
    _block_args,
    _check_resize_args,
    _factor,
    _fold,
    _interpolate,
    _pad,
    _pixel_shuffle,
    _pixel_unshuffle,
    _unfold,
)
from funcnet.nn._conv import _lists_to_tuples
from funcnet.nn._module import Context, Module

__all__ = [
    "CircularPad1d",
    "CircularPad2d",
    "CircularPad3d",
    "ConstantPad1d",
    "ConstantPad2d",
    "ConstantPad3d",
    "Fold",
    "PixelShuffle",
    "PixelUnshuffle",
    "ReflectionPad1d",
    "ReflectionPad2d",
    "ReflectionPad3d",
    "ReplicationPad1d",
    "ReplicationPad2d",
    "ReplicationPad3d",
    "Unfold",
    "Upsample",
    "UpsamplingBilinear2d",
    "UpsamplingNearest2d",
    "ZeroPad1d",
    "ZeroPad2d",
    "ZeroPad3d",
]


def _validated(module: Module, check: Any) -> None:
    """Runs ``check()``, naming the layer in its ValueError."""
    _lists_to_tuples(module)
    try:
        check()
    except ValueError as e:
        raise ValueError(f"{type(module).__name__}: {e}") from None


def _floats(scale_factor: Any) -> Any:
    """scale_factor stored as PyTorch stores it: a float or a tuple of floats."""
    if isinstance(scale_factor, Sequence):
        return tuple(float(f) for f in scale_factor)
    return None if scale_factor is None else float(scale_factor)


# ------------------------------------------------------------------------ upsampling


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Upsample(Module):
    """Resizes the spatial axes (``torch.nn.Upsample``): :func:`funcnet.functional.interpolate`.

    (N, L, C), (N, H, W, C) or (N, D, H, W, C) → the same with the output's spatial size;
    the input's rank sets the number of spatial axes, as in PyTorch.

    Args:
        size: output spatial size, an int or one per axis.
        scale_factor: multiplier of the spatial size, a number or one per axis (stored as
            floats, as PyTorch); exactly one of size and scale_factor.
        mode: ``"nearest"``, ``"nearest-exact"``, ``"linear"`` (3-D input), ``"bilinear"``,
            ``"bicubic"`` (4-D), ``"trilinear"`` (5-D) or ``"area"``.
        align_corners: for the interpolating modes only: align the centres of the
            corner pixels (default False).
        recompute_scale_factor: sample at input/output size instead of 1/scale_factor.

    Raises:
        ValueError: at construction, for invalid arguments (PyTorch's checks).
        ShapeError: when traced with an input rank the mode does not take, a non-floating
            input to an interpolating mode, or an empty output.
    """

    size: int | tuple[int, ...] | None = None
    scale_factor: float | tuple[float, ...] | None = None
    mode: str = "nearest"
    align_corners: bool | None = None
    recompute_scale_factor: bool | None = None

    def __post_init__(self) -> None:
        _validated(self, self._check)
        self.scale_factor = _floats(self.scale_factor)

    def _check(self) -> None:
        _check_resize_args(
            self.size,
            self.scale_factor,
            self.mode,
            self.align_corners,
            self.recompute_scale_factor,
            False,
        )

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        return _interpolate(
            x,
            self.size,
            self.scale_factor,
            self.mode,
            self.align_corners,
            self.recompute_scale_factor,
            False,
            where=ctx,
        )


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class _Upsampling2d(Module):
    size: int | tuple[int, int] | None = None
    scale_factor: float | tuple[float, float] | None = None

    _mode: ClassVar[str] = ""
    _align_corners: ClassVar[bool | None] = None

    def __post_init__(self) -> None:
        mode, align = self._mode, self._align_corners
        _validated(
            self, lambda: _check_resize_args(self.size, self.scale_factor, mode, align, None, False)
        )
        self.scale_factor = _floats(self.scale_factor)

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        check_ndim(ctx, x, 4, layout="(N, H, W, C)")
        return _interpolate(
            x, self.size, self.scale_factor, self._mode, self._align_corners, None, False, where=ctx
        )


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class UpsamplingNearest2d(_Upsampling2d):
    """2-D nearest-neighbour upsampling (``torch.nn.UpsamplingNearest2d``):
    :class:`Upsample` with ``mode="nearest"`` on (N, H, W, C) inputs only.

    Args:
        size: output (H_out, W_out), or an int for both.
        scale_factor: multiplier of H and W; exactly one of size and scale_factor.
    """

    _mode: ClassVar[str] = "nearest"


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class UpsamplingBilinear2d(_Upsampling2d):
    """2-D bilinear upsampling with ``align_corners=True`` (``torch.nn.UpsamplingBilinear2d``):
    :class:`Upsample` with ``mode="bilinear", align_corners=True`` on (N, H, W, C) inputs.

    Args:
        size: output (H_out, W_out), or an int for both.
        scale_factor: multiplier of H and W; exactly one of size and scale_factor.
    """

    _mode: ClassVar[str] = "bilinear"
    _align_corners: ClassVar[bool | None] = True


# --------------------------------------------------------------------------- padding


def _padding(padding: Any, nd: int) -> tuple[int, ...]:
    """PyTorch's padding argument: an int for every side, or 2·nd ints, W's pair first."""
    sides = ("left", "right", "top", "bottom", "front", "back")[: 2 * nd]
    try:
        items = (
            (operator.index(padding),) * (2 * nd) if not isinstance(padding, Sequence) else padding
        )
        out = tuple(operator.index(p) for p in items)
    except TypeError:
        out = ()
    if len(out) != 2 * nd or isinstance(padding, str):
        raise ValueError(
            f"padding must be an int or a tuple of {2 * nd} ints ({', '.join(sides)}), "
            f"got {padding!r}"
        )
    return out


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class _PadNd(Module):
    """Shared parts: padding normalised to PyTorch's tuple; the spatial axes are padded."""

    padding: IntOrTuple

    _nd: ClassVar[int] = 0
    _mode: ClassVar[str] = "constant"

    def __post_init__(self) -> None:
        _validated(self, lambda: _padding(self.padding, self._nd))
        self.padding = _padding(self.padding, self._nd)

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        check_ndim(ctx, x, (self._nd + 2, self._nd + 1), layout=_layouts(self._nd))
        # F.pad starts at the last axis, C, which is not padded
        return _pad(x, (0, 0, *self.padding), self._mode, getattr(self, "value", None), where=ctx)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class CircularPad1d(_PadNd):
    """Pads L with a wrap-around, as if periodic (``torch.nn.CircularPad1d``).

    (N, L, C) → (N, L + left + right, C), or unbatched (L, C).

    Args:
        padding: an int for every side, or (left, right); each at most its axis' size.
    """

    _nd: ClassVar[int] = 1
    _mode: ClassVar[str] = "circular"


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class CircularPad2d(_PadNd):
    """Pads H and W with a wrap-around, as if periodic (``torch.nn.CircularPad2d``).

    (N, H, W, C) → (N, H + top + bottom, W + left + right, C), or unbatched
    (H, W, C).

    Args:
        padding: an int for every side, or (left, right, top, bottom); each at most its
            axis' size.
    """

    _nd: ClassVar[int] = 2
    _mode: ClassVar[str] = "circular"


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class CircularPad3d(_PadNd):
    """Pads D, H and W with a wrap-around, as if periodic (``torch.nn.CircularPad3d``).

    (N, D, H, W, C) → (N, D + front + back, H + top + bottom,
    W + left + right, C), or unbatched (D, H, W, C).

    Args:
        padding: an int for every side, or (left, right, top, bottom,
            front, back); each at most its axis' size.
    """

    _nd: ClassVar[int] = 3
    _mode: ClassVar[str] = "circular"


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class ConstantPad1d(_PadNd):
    """Pads L with the constant ``value`` (``torch.nn.ConstantPad1d``).

    (N, L, C) → (N, L + left + right, C), or unbatched (L, C).

    Args:
        padding: an int for every side, or (left, right).
        value: the fill value.
    """

    value: float

    _nd: ClassVar[int] = 1
    _mode: ClassVar[str] = "constant"


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class ConstantPad2d(_PadNd):
    """Pads H and W with the constant ``value`` (``torch.nn.ConstantPad2d``).

    (N, H, W, C) → (N, H + top + bottom, W + left + right, C), or unbatched
    (H, W, C).

    Args:
        padding: an int for every side, or (left, right, top, bottom).
        value: the fill value.
    """

    value: float

    _nd: ClassVar[int] = 2
    _mode: ClassVar[str] = "constant"


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class ConstantPad3d(_PadNd):
    """Pads D, H and W with the constant ``value`` (``torch.nn.ConstantPad3d``).

    (N, D, H, W, C) → (N, D + front + back, H + top + bottom,
    W + left + right, C), or unbatched (D, H, W, C).

    Args:
        padding: an int for every side, or (left, right, top, bottom,
            front, back).
        value: the fill value.
    """

    value: float

    _nd: ClassVar[int] = 3
    _mode: ClassVar[str] = "constant"


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class ReflectionPad1d(_PadNd):
    """Pads L with their reflection, the edge not repeated (``torch.nn.ReflectionPad1d``).

    (N, L, C) → (N, L + left + right, C), or unbatched (L, C).

    Args:
        padding: an int for every side, or (left, right); each smaller than its axis' size.
    """

    _nd: ClassVar[int] = 1
    _mode: ClassVar[str] = "reflect"


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class ReflectionPad2d(_PadNd):
    """Pads H and W with their reflection, the edge not repeated (``torch.nn.ReflectionPad2d``).

    (N, H, W, C) → (N, H + top + bottom, W + left + right, C), or unbatched
    (H, W, C).

    Args:
        padding: an int for every side, or (left, right, top, bottom); each smaller than
            its axis' size.
    """

    _nd: ClassVar[int] = 2
    _mode: ClassVar[str] = "reflect"


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class ReflectionPad3d(_PadNd):
    """Pads D, H and W with their reflection, the edge not repeated (``torch.nn.ReflectionPad3d``).

    (N, D, H, W, C) → (N, D + front + back, H + top + bottom,
    W + left + right, C), or unbatched (D, H, W, C).

    Args:
        padding: an int for every side, or (left, right, top, bottom,
            front, back); each smaller than its axis' size.
    """

    _nd: ClassVar[int] = 3
    _mode: ClassVar[str] = "reflect"


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class ReplicationPad1d(_PadNd):
    """Pads L with copies of their edge (``torch.nn.ReplicationPad1d``).

    (N, L, C) → (N, L + left + right, C), or unbatched (L, C).

    Args:
        padding: an int for every side, or (left, right).
    """

    _nd: ClassVar[int] = 1
    _mode: ClassVar[str] = "replicate"


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class ReplicationPad2d(_PadNd):
    """Pads H and W with copies of their edge (``torch.nn.ReplicationPad2d``).

    (N, H, W, C) → (N, H + top + bottom, W + left + right, C), or unbatched
    (H, W, C).

    Args:
        padding: an int for every side, or (left, right, top, bottom).
    """

    _nd: ClassVar[int] = 2
    _mode: ClassVar[str] = "replicate"


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class ReplicationPad3d(_PadNd):
    """Pads D, H and W with copies of their edge (``torch.nn.ReplicationPad3d``).

    (N, D, H, W, C) → (N, D + front + back, H + top + bottom,
    W + left + right, C), or unbatched (D, H, W, C).

    Args:
        padding: an int for every side, or (left, right, top, bottom,
            front, back).
    """

    _nd: ClassVar[int] = 3
    _mode: ClassVar[str] = "replicate"


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class ZeroPad1d(_PadNd):
    """Pads L with zeros (``torch.nn.ZeroPad1d``).

    (N, L, C) → (N, L + left + right, C), or unbatched (L, C).

    Args:
        padding: an int for every side, or (left, right).
    """

    _nd: ClassVar[int] = 1
    _mode: ClassVar[str] = "constant"


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class ZeroPad2d(_PadNd):
    """Pads H and W with zeros (``torch.nn.ZeroPad2d``).

    (N, H, W, C) → (N, H + top + bottom, W + left + right, C), or unbatched
    (H, W, C).

    Args:
        padding: an int for every side, or (left, right, top, bottom).
    """

    _nd: ClassVar[int] = 2
    _mode: ClassVar[str] = "constant"


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class ZeroPad3d(_PadNd):
    """Pads D, H and W with zeros (``torch.nn.ZeroPad3d``).

    (N, D, H, W, C) → (N, D + front + back, H + top + bottom,
    W + left + right, C), or unbatched (D, H, W, C).

    Args:
        padding: an int for every side, or (left, right, top, bottom,
            front, back).
    """

    _nd: ClassVar[int] = 3
    _mode: ClassVar[str] = "constant"


# --------------------------------------------------------------------- pixel shuffle


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class PixelShuffle(Module):
    """Moves channels into space (``torch.nn.PixelShuffle``): (*, H, W, C·r²) →
    (*, H·r, W·r, C), with PyTorch's channel order (see
    :func:`funcnet.functional.pixel_shuffle`), for sub-pixel convolution.

    Args:
        upscale_factor: r, a positive int.

    Raises:
        ValueError: at construction, for r not a positive int.
        ShapeError: when traced with fewer than 3 dimensions or channels not divisible
            by r².
    """

    upscale_factor: int

    def __post_init__(self) -> None:
        _validated(self, lambda: _factor(self.upscale_factor, "upscale_factor"))

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        return _pixel_shuffle(x, self.upscale_factor, where=ctx)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class PixelUnshuffle(Module):
    """The inverse of :class:`PixelShuffle` (``torch.nn.PixelUnshuffle``): (*, H·r, W·r, C)
    → (*, H, W, C·r²).

    Args:
        downscale_factor: r, a positive int.

    Raises:
        ValueError: at construction, for r not a positive int.
        ShapeError: when traced with fewer than 3 dimensions or H, W not divisible by r.
    """

    downscale_factor: int

    def __post_init__(self) -> None:
        _validated(self, lambda: _factor(self.downscale_factor, "downscale_factor"))

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        return _pixel_unshuffle(x, self.downscale_factor, where=ctx)


# ----------------------------------------------------------------------- fold/unfold


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Unfold(Module):
    """Extracts sliding blocks (``torch.nn.Unfold``): (N, H, W, C) → (N, L, C·kh·kw).

    PyTorch's (N, C·kh·kw, L) with its last two axes swapped; the last axis is in
    PyTorch's order (``c·kh·kw + i·kw + j``). Unbatched (H, W, C) → (L, C·kh·kw). See
    :func:`funcnet.functional.unfold`.

    Args:
        kernel_size: int or (kh, kw).
        dilation: int or (dh, dw).
        padding: int or (ph, pw) zeros on both sides.
        stride: int or (sh, sw).

    Raises:
        ValueError: at construction, for invalid sizes.
        ShapeError: when traced with the wrong rank or a block larger than the input.
    """

    kernel_size: IntOrTuple
    dilation: IntOrTuple = 1
    padding: IntOrTuple = 0
    stride: IntOrTuple = 1

    def __post_init__(self) -> None:
        _validated(
            self, lambda: _block_args(self.kernel_size, self.dilation, self.padding, self.stride)
        )

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        return _unfold(x, self.kernel_size, self.dilation, self.padding, self.stride, where=ctx)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Fold(Module):
    """Sums sliding blocks into an image (``torch.nn.Fold``): (N, L, C·kh·kw) →
    (N, H, W, C), the adjoint of :class:`Unfold` (overlaps are summed, as PyTorch).
    Unbatched (L, C·kh·kw) → (H, W, C). See :func:`funcnet.functional.fold`.

    Args:
        output_size: int or (H, W).
        kernel_size: int or (kh, kw).
        dilation: int or (dh, dw).
        padding: int or (ph, pw), cut from both sides of the summed image.
        stride: int or (sh, sw).

    Raises:
        ValueError: at construction, for invalid sizes.
        ShapeError: when traced with the wrong rank, L not the number of blocks, or a
            last dimension not divisible by kh·kw.
    """

    output_size: IntOrTuple
    kernel_size: IntOrTuple
    dilation: IntOrTuple = 1
    padding: IntOrTuple = 0
    stride: IntOrTuple = 1

    def __post_init__(self) -> None:
        _validated(self, self._check)

    def _check(self) -> None:
        _ntuple(self.output_size, 2, "output_size", 1)
        _block_args(self.kernel_size, self.dilation, self.padding, self.stride)

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        args = (self.kernel_size, self.dilation, self.padding, self.stride)
        return _fold(x, self.output_size, *args, where=ctx)
