"""Conformance entries: upsampling, padding, pixel shuffle, fold/unfold.

One entry per public layer: every padding mode in 1-D, 2-D and 3-D (batched, unbatched,
negative amounts), interpolating and nearest upsampling, and the sliding-block layers on
both of their paths (overlapping blocks, and blocks that tile the input). The inputs
share three shapes, so the harness compiles its random inputs and most operations once.
"""

from funcnet import nn
from tests.conformance._entry import Entry

F32 = "float32"
S1 = ((4, 6, 4), F32)  # 1-D (N, L, C); unbatched 2-D (H, W, C); Fold's (N, L, C·kh·kw)
S2 = ((2, 4, 6, 4), F32)  # 2-D (N, H, W, C); unbatched 3-D (D, H, W, C)
S3 = ((1, 2, 4, 6, 4), F32)  # 3-D (N, D, H, W, C)


def _rank(layer, n):
    return rf"model \({layer}\): expected {n} or {n - 1}-D input"


def _entry(id, make, inputs, bad_inputs, bad_match):
    return Entry(id=id, make=make, inputs=(inputs,), bad_inputs=(bad_inputs,), bad_match=bad_match)


ENTRIES = [
    # ----------------------------------------------------------------- upsampling
    _entry(
        "Upsample-bicubic",
        lambda: nn.Upsample(scale_factor=1.5, mode="bicubic", align_corners=True),
        S2,
        S1,
        r"model \(Upsample\): expected 4-D input \(N, H, W, C\) for mode 'bicubic'",
    ),
    _entry(
        "Upsample-nearest-1d",
        lambda: nn.Upsample(size=7),
        S1,
        ((6, 4), F32),
        r"model \(Upsample\): expected 3 or 4 or 5-D input \(N, \*spatial, C\)",
    ),
    _entry(
        "UpsamplingNearest2d",
        lambda: nn.UpsamplingNearest2d(size=(5, 7)),
        S2,
        S1,
        r"model \(UpsamplingNearest2d\): expected 4-D input \(N, H, W, C\)",
    ),
    _entry(
        "UpsamplingBilinear2d",
        lambda: nn.UpsamplingBilinear2d(scale_factor=2),
        S2,
        S3,
        r"model \(UpsamplingBilinear2d\): expected 4-D input",
    ),
    # -------------------------------------------------------------------- padding
    _entry(
        "ConstantPad1d", lambda: nn.ConstantPad1d((1, 2), 0.5), S1, S2, _rank("ConstantPad1d", 3)
    ),
    _entry(
        "ConstantPad2d",  # unbatched, cropping W
        lambda: nn.ConstantPad2d((1, -1, 0, 2), -1.0),
        S1,
        ((6, 4), F32),
        _rank("ConstantPad2d", 4),
    ),
    _entry("ConstantPad3d", lambda: nn.ConstantPad3d(1, 2.0), S3, S1, _rank("ConstantPad3d", 5)),
    _entry("ZeroPad1d", lambda: nn.ZeroPad1d(2), S1, S2, _rank("ZeroPad1d", 3)),
    _entry("ZeroPad2d", lambda: nn.ZeroPad2d((1, 2, 3, 0)), S2, S3, _rank("ZeroPad2d", 4)),
    _entry(
        "ZeroPad3d",  # unbatched
        lambda: nn.ZeroPad3d((0, 1, 1, 0, 2, 1)),
        S2,
        S1,
        _rank("ZeroPad3d", 5),
    ),
    _entry(
        "ReflectionPad1d",
        lambda: nn.ReflectionPad1d((5, 1)),
        S1,
        ((4, 5, 4), F32),
        r"model \(ReflectionPad1d\): reflect padding \(5, 1\) of axis 1 must be smaller",
    ),
    _entry(
        "ReflectionPad2d",
        lambda: nn.ReflectionPad2d((1, 2, 3, 0)),
        S2,
        ((2, 3, 6, 4), F32),
        r"model \(ReflectionPad2d\): reflect padding \(3, 0\) of axis 1 must be smaller",
    ),
    _entry("ReflectionPad3d", lambda: nn.ReflectionPad3d(1), S3, S1, _rank("ReflectionPad3d", 5)),
    _entry(
        "ReplicationPad1d",
        lambda: nn.ReplicationPad1d((0, 3)),
        S1,
        S3,
        _rank("ReplicationPad1d", 3),
    ),
    _entry(
        "ReplicationPad2d",  # cropping H
        lambda: nn.ReplicationPad2d((2, 1, -1, 3)),
        S2,
        ((2, 1, 6, 4), F32),
        r"model \(ReplicationPad2d\): replicate padding \(-1, 3\) of axis 1 crops the whole axis",
    ),
    _entry(
        "ReplicationPad3d",  # unbatched
        lambda: nn.ReplicationPad3d((1, 0, 2, 1, 0, 2)),
        S2,
        ((4, 6, 4), F32),
        _rank("ReplicationPad3d", 5),
    ),
    _entry(
        "CircularPad1d",
        lambda: nn.CircularPad1d((2, 6)),
        S1,
        ((4, 5, 4), F32),
        r"model \(CircularPad1d\): circular padding \(2, 6\) of axis 1 must be at most its size 5",
    ),
    _entry(
        "CircularPad2d", lambda: nn.CircularPad2d((1, 2, 3, -1)), S2, S3, _rank("CircularPad2d", 4)
    ),
    _entry("CircularPad3d", lambda: nn.CircularPad3d(1), S3, S1, _rank("CircularPad3d", 5)),
    # ------------------------------------------------ pixel shuffle, fold/unfold
    _entry(
        "PixelShuffle",
        lambda: nn.PixelShuffle(2),
        S2,
        ((2, 4, 6, 6), F32),
        r"model \(PixelShuffle\): .* divisible by upscale_factor² = 4, got shape",
    ),
    _entry(
        "PixelUnshuffle",
        lambda: nn.PixelUnshuffle(2),
        S2,
        ((2, 5, 6, 4), F32),
        r"model \(PixelUnshuffle\): .* divisible by downscale_factor 2",
    ),
    _entry(
        "Unfold-overlapping",
        lambda: nn.Unfold((2, 3), dilation=(2, 1), padding=1, stride=(1, 2)),
        S2,
        ((6, 4), F32),
        r"model \(Unfold\): expected 4 or 3-D input \(N, H, W, C\)",
    ),
    _entry(
        "Fold-tiling",  # (N, L, C·kh·kw) = (4, 6, 4): 2 x 3 blocks of 2 x 2 pixels, C = 1
        lambda: nn.Fold((4, 4), 2, stride=2, padding=(0, 1)),
        S1,
        ((4, 5, 4), F32),
        r"model \(Fold\): expected input \(N, L, C·kh·kw\) with L = 2·3 = 6 blocks",
    ),
]
