"""Conformance entries for the convolution and pooling layers.

Each public layer appears at least once; configurations cover both max-pooling paths
(reshape and ``reduce_window``), dilated windows, ceil_mode, groups, padding modes and
unbatched inputs.
"""

from funcnet import nn
from tests.conformance._entry import Entry


def _channels(layer, c):
    return rf"model \({layer}\): expected input with last dimension {c}"


def _rank(layer, n):
    return rf"model \({layer}\): expected {n} or {n - 1}-D input"


def _window(layer):
    return rf"model \({layer}\): (window|kernel) .* larger than the"


F32 = "float32"

ENTRIES = [
    # ------------------------------------------------------------- convolutions
    Entry(
        id="Conv1d-padded",
        make=lambda: nn.Conv1d(3, 4, 3, padding=1),
        inputs=(((2, 8, 3), F32),),
        bad_inputs=(((2, 8, 5), F32),),
        bad_match=_channels("Conv1d", 3),
    ),
    Entry(
        id="Conv1d-strided-dilated-groups",
        make=lambda: nn.Conv1d(4, 6, 3, stride=2, dilation=2, groups=2, bias=False),
        inputs=(((2, 11, 4), F32),),
        bad_inputs=(((2, 4, 4), F32),),
        bad_match=_window("Conv1d"),
    ),
    Entry(
        id="Conv2d-padded",
        make=lambda: nn.Conv2d(3, 8, 3, padding=1),
        inputs=(((2, 8, 8, 3), F32),),
        bad_inputs=(((2, 8, 8, 4), F32),),
        bad_match=_channels("Conv2d", 3),
    ),
    Entry(
        id="Conv2d-strided-dilated-groups",
        make=lambda: nn.Conv2d(4, 6, (3, 2), stride=2, padding=(1, 0), dilation=(1, 2), groups=2),
        inputs=(((2, 7, 8, 4), F32),),
        bad_inputs=(((7, 8), F32),),
        bad_match=_rank("Conv2d", 4),
    ),
    Entry(
        id="Conv2d-same-reflect",
        make=lambda: nn.Conv2d(3, 4, 4, padding="same", padding_mode="reflect"),
        inputs=(((1, 6, 6, 3), F32),),
        bad_inputs=(((1, 2, 6, 3), F32),),
        bad_match=r"model \(Conv2d\): reflect padding",
    ),
    Entry(
        id="Conv2d-unbatched",
        make=lambda: nn.Conv2d(3, 4, 3, stride=2, padding_mode="circular", padding=1),
        inputs=(((7, 7, 3), F32),),
        bad_inputs=(((7, 7, 2), F32),),
        bad_match=_channels("Conv2d", 3),
    ),
    Entry(
        id="Conv3d-strided",
        make=lambda: nn.Conv3d(2, 4, 3, stride=2, padding=1),
        inputs=(((1, 5, 6, 5, 2), F32),),
        bad_inputs=(((5, 6, 2), F32),),
        bad_match=_rank("Conv3d", 5),
    ),
    Entry(
        id="ConvTranspose2d-strided-groups",
        make=lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
        inputs=(((2, 4, 5, 4), F32),),
        bad_inputs=(((2, 4, 5, 6), F32),),
        bad_match=_channels("ConvTranspose2d", 4),
    ),
    Entry(
        id="ConvTranspose2d-dilated-unbatched",
        make=lambda: nn.ConvTranspose2d(3, 2, (2, 3), stride=(1, 2), dilation=2, padding=(0, 1)),
        inputs=(((4, 3, 3), F32),),
        bad_inputs=(((4, 3), F32),),
        bad_match=_rank("ConvTranspose2d", 4),
    ),
    Entry(
        id="ConvTranspose1d-strided-groups",
        make=lambda: nn.ConvTranspose1d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
        inputs=(((2, 5, 4), F32),),
        bad_inputs=(((2, 5, 6), F32),),
        bad_match=_channels("ConvTranspose1d", 4),
    ),
    Entry(
        id="ConvTranspose3d-strided-dilated",
        make=lambda: nn.ConvTranspose3d(2, 3, (2, 3, 2), stride=(2, 1, 2), dilation=(1, 2, 1)),
        inputs=(((1, 3, 2, 3, 2), F32),),
        bad_inputs=(((3, 2, 2), F32),),
        bad_match=_rank("ConvTranspose3d", 5),
    ),
    # ------------------------------------------------------------------ pooling
    Entry(
        id="MaxPool1d-reshape",
        make=lambda: nn.MaxPool1d(2),
        inputs=(((2, 9, 3), F32),),
        bad_inputs=(((2, 1, 3), F32),),
        bad_match=_window("MaxPool1d"),
    ),
    Entry(
        id="MaxPool1d-overlapping-ceil",
        make=lambda: nn.MaxPool1d(3, stride=2, padding=1, ceil_mode=True),
        inputs=(((2, 8, 3), F32),),
        bad_inputs=(((8, 3, 2, 1), F32),),
        bad_match=_rank("MaxPool1d", 3),
    ),
    Entry(
        id="MaxPool2d-reshape",
        make=lambda: nn.MaxPool2d(2),
        inputs=(((2, 8, 8, 3), F32),),
        bad_inputs=(((2, 1, 8, 3), F32),),
        bad_match=_window("MaxPool2d"),
    ),
    Entry(
        id="MaxPool2d-reshape-padded-ceil",
        make=lambda: nn.MaxPool2d(2, padding=1, ceil_mode=True),
        inputs=(((7, 6, 3), F32),),
        bad_inputs=(((6, 3), F32),),
        bad_match=_rank("MaxPool2d", 4),
    ),
    Entry(
        id="MaxPool2d-overlapping",
        make=lambda: nn.MaxPool2d(3, stride=2, padding=1),
        inputs=(((2, 7, 7, 3), F32),),
        bad_inputs=(((2, 7), F32),),
        bad_match=_rank("MaxPool2d", 4),
    ),
    Entry(
        id="MaxPool2d-dilated",
        make=lambda: nn.MaxPool2d(2, stride=1, dilation=2),
        inputs=(((2, 6, 5, 3), F32),),
        bad_inputs=(((2, 2, 5, 3), F32),),
        bad_match=_window("MaxPool2d"),
    ),
    Entry(
        id="MaxPool3d-overlapping-ceil",
        make=lambda: nn.MaxPool3d((3, 2, 2), stride=2, padding=1, ceil_mode=True),
        inputs=(((2, 5, 4, 5, 2), F32),),
        bad_inputs=(((2, 5, 4, 5, 2, 1), F32),),
        bad_match=_rank("MaxPool3d", 5),
    ),
    Entry(
        id="AvgPool1d-count-exclude-pad",
        make=lambda: nn.AvgPool1d(3, stride=2, padding=1, count_include_pad=False),
        inputs=(((2, 9, 3), F32),),
        bad_inputs=(((2, 9, 3), "int32"),),
        bad_match=r"model \(AvgPool1d\): expected floating input",
    ),
    Entry(
        id="AvgPool2d-reshape",
        make=lambda: nn.AvgPool2d(2),
        inputs=(((2, 8, 8, 3), F32),),
        bad_inputs=(((2, 1, 1, 3), F32),),
        bad_match=_window("AvgPool2d"),
    ),
    Entry(
        id="AvgPool2d-overlapping-ceil-divisor",
        make=lambda: nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, divisor_override=4),
        inputs=(((6, 7, 3), F32),),
        bad_inputs=(((6, 7, 3), "int32"),),
        bad_match=r"model \(AvgPool2d\): expected floating input",
    ),
    Entry(
        id="AvgPool3d-reshape-unbatched",
        make=lambda: nn.AvgPool3d(2, padding=1, count_include_pad=False),
        inputs=(((4, 5, 3, 2), F32),),
        bad_inputs=(((4, 5, 3, 2), "int32"),),
        bad_match=r"model \(AvgPool3d\): expected floating input",
    ),
    Entry(
        id="AdaptiveAvgPool1d-uneven",
        make=lambda: nn.AdaptiveAvgPool1d(3),
        inputs=(((2, 7, 3), F32),),
        bad_inputs=(((2, 7, 3, 1), F32),),
        bad_match=_rank("AdaptiveAvgPool1d", 3),
    ),
    Entry(
        id="AdaptiveAvgPool3d-uneven",
        make=lambda: nn.AdaptiveAvgPool3d((2, None, 3)),
        inputs=(((2, 5, 3, 4, 2), F32),),
        bad_inputs=(((5, 3, 2), F32),),
        bad_match=_rank("AdaptiveAvgPool3d", 5),
    ),
    Entry(
        id="AdaptiveMaxPool1d-uneven",
        make=lambda: nn.AdaptiveMaxPool1d(4),
        inputs=(((7, 3), F32),),
        bad_inputs=(((0, 3), F32),),
        bad_match=r"model \(AdaptiveMaxPool1d\): empty spatial input",
    ),
    Entry(
        id="AdaptiveMaxPool3d-uneven",
        make=lambda: nn.AdaptiveMaxPool3d((3, 2, None)),
        inputs=(((2, 5, 4, 3, 2), F32),),
        bad_inputs=(((5, 4, 3), F32),),
        bad_match=_rank("AdaptiveMaxPool3d", 5),
    ),
    Entry(
        id="AdaptiveAvgPool2d-uneven",
        make=lambda: nn.AdaptiveAvgPool2d((3, 4)),
        inputs=(((2, 7, 6, 3), F32),),
        bad_inputs=(((2, 7), F32),),
        bad_match=_rank("AdaptiveAvgPool2d", 4),
    ),
    Entry(
        id="AdaptiveAvgPool2d-global",
        make=lambda: nn.AdaptiveAvgPool2d(1),
        inputs=(((2, 4, 4, 3), F32),),
        bad_inputs=(((2, 4, 4, 3), "int32"),),
        bad_match=r"model \(AdaptiveAvgPool2d\): expected floating input",
    ),
    Entry(
        id="AdaptiveMaxPool2d-uneven",
        make=lambda: nn.AdaptiveMaxPool2d((3, None)),
        inputs=(((2, 7, 6, 3), F32),),
        bad_inputs=(((2, 0, 6, 3), F32),),
        bad_match=r"model \(AdaptiveMaxPool2d\): empty spatial input",
    ),
    Entry(
        id="AdaptiveMaxPool2d-divisible",
        make=lambda: nn.AdaptiveMaxPool2d(2),
        inputs=(((6, 4, 3), F32),),
        bad_inputs=(((6, 4, 3, 2, 1), F32),),
        bad_match=_rank("AdaptiveMaxPool2d", 4),
    ),
]
