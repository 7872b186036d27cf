"""Conformance entries for normalisation, dropout and embedding layers."""

from funcnet import nn
from tests.conformance._entry import Entry

F32, I32 = "float32", "int32"

ENTRIES = [
    Entry(
        "BatchNorm1d",
        lambda: nn.BatchNorm1d(3),
        (((4, 3), F32),),
        (((4, 5), F32),),
        r"model \(BatchNorm1d\): expected input with last dimension 3, got shape \(4, 5\)",
        train=True,
    ),
    Entry(
        "BatchNorm1d-NLC-cumulative",
        lambda: nn.BatchNorm1d(3, momentum=None),
        (((2, 5, 3), F32),),
        (((2, 2, 2, 3), F32),),
        r"model \(BatchNorm1d\): expected 2 or 3-D input \(N, C\) or \(N, L, C\)",
        train=True,
    ),
    Entry(
        "BatchNorm1d-noaffine-nostats",
        lambda: nn.BatchNorm1d(3, affine=False, track_running_stats=False),
        (((4, 3), F32),),
        (((4, 3), I32),),
        r"model \(BatchNorm1d\): expected floating input, got dtype int32",
        train=True,
    ),
    Entry(
        "BatchNorm2d",
        lambda: nn.BatchNorm2d(3),
        (((2, 4, 4, 3), F32),),
        (((2, 4, 3), F32),),
        r"model \(BatchNorm2d\): expected 4-D input \(N, H, W, C\), got shape \(2, 4, 3\)",
        train=True,
    ),
    Entry(
        "SyncBatchNorm",
        lambda: nn.SyncBatchNorm(3),
        (((4, 3), F32),),
        (((3,), F32),),
        r"model \(SyncBatchNorm\): expected input \(N, \*, C\) with at least 2 dimensions, "
        r"got shape \(3,\)",
    ),
    Entry(
        "SyncBatchNorm-5d-unsynced",
        lambda: nn.SyncBatchNorm(3, momentum=None, axis_name=None),
        (((2, 3, 2, 2, 3), F32),),
        (((2, 3, 2, 2, 4), F32),),
        r"model \(SyncBatchNorm\): expected input with last dimension 3, got shape "
        r"\(2, 3, 2, 2, 4\)",
        train=True,
    ),
    Entry(
        "LayerNorm",
        lambda: nn.LayerNorm(6),
        (((3, 6), F32),),
        (((3, 5), F32),),
        r"model \(LayerNorm\): expected input with trailing dimensions \(6,\), got shape \(3, 5\)",
    ),
    Entry(
        "LayerNorm-2d-nobias",
        lambda: nn.LayerNorm((3, 4), bias=False),
        (((2, 3, 4), F32),),
        (((2, 4, 3), F32),),
        r"model \(LayerNorm\): expected input with trailing dimensions \(3, 4\)",
    ),
    Entry(
        "GroupNorm",
        lambda: nn.GroupNorm(3, 6),
        (((2, 4, 4, 6), F32),),
        (((2, 4, 4, 5), F32),),
        r"model \(GroupNorm\): expected input with last dimension 6, got shape \(2, 4, 4, 5\)",
    ),
    Entry(
        "RMSNorm",
        lambda: nn.RMSNorm(6),
        (((3, 6), F32),),
        (((3, 5), F32),),
        r"model \(RMSNorm\): expected input with trailing dimensions \(6,\), got shape \(3, 5\)",
    ),
    Entry(
        "RMSNorm-2d-noaffine",
        lambda: nn.RMSNorm((3, 4), eps=1e-6, elementwise_affine=False),
        (((2, 3, 4), F32),),
        (((2, 3, 4), I32),),
        r"model \(RMSNorm\): expected floating input, got dtype int32",
    ),
    Entry(
        "Dropout",
        lambda: nn.Dropout(0.3),
        (((3, 6), F32),),
        (((3, 6), I32),),
        r"model \(Dropout\): expected floating input, got dtype int32",
        train=True,
    ),
    Entry(
        "Dropout2d",
        lambda: nn.Dropout2d(0.5),
        (((2, 4, 4, 3), F32),),
        (((2, 4, 3), F32),),
        r"model \(Dropout2d\): expected 4-D input \(N, H, W, C\), got shape \(2, 4, 3\)",
        train=True,
    ),
    Entry(
        "Embedding",
        lambda: nn.Embedding(10, 8),
        (((2, 5), I32),),
        (((2, 5), F32),),
        r"model \(Embedding\): expected integer ids, got dtype float32",
        bf16_dtype=None,
    ),
    Entry(
        "Embedding-padding",
        lambda: nn.Embedding(10, 8, padding_idx=0),
        (((7,), I32),),
        (((7,), "bool"),),
        r"model \(Embedding\): expected integer ids, got dtype bool",
        bf16_dtype=None,
    ),
]
