"""Conformance entries for normalisation, dropout and embedding layers."""

import numpy as np

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
        "InstanceNorm1d",
        lambda: nn.InstanceNorm1d(3),
        (((2, 5, 3), F32),),
        (((2, 5, 4), F32),),
        r"model \(InstanceNorm1d\): expected input with last dimension 3, got shape \(2, 5, 4\)",
        train=True,
    ),
    Entry(
        "InstanceNorm2d-affine-tracked",
        lambda: nn.InstanceNorm2d(3, affine=True, track_running_stats=True),
        (((2, 4, 4, 3), F32),),
        (((4, 3), F32),),
        r"model \(InstanceNorm2d\): expected 3 or 4-D input \(N, H, W, C\) or \(H, W, C\), "
        r"got shape \(4, 3\)",
        train=True,
    ),
    Entry(
        "InstanceNorm3d-unbatched-nobias",
        lambda: nn.InstanceNorm3d(3, affine=True, bias=False),
        (((2, 4, 4, 3), F32),),
        (((2, 4, 4, 3), I32),),
        r"model \(InstanceNorm3d\): expected floating input, got dtype int32",
        train=True,
    ),
    Entry(
        "LocalResponseNorm",
        lambda: nn.LocalResponseNorm(2, alpha=0.1),
        (((2, 4, 4, 3), F32),),
        (((4, 3), F32),),
        r"model \(LocalResponseNorm\): expected input \(N, \*, C\) with at least 3 dimensions, "
        r"got shape \(4, 3\)",
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
        "Dropout1d",
        lambda: nn.Dropout1d(0.5),
        (((2, 5, 3), F32),),
        (((2, 5, 3, 3), F32),),
        r"model \(Dropout1d\): expected 2 or 3-D input \(N, L, C\) or \(L, C\), got shape",
        train=True,
    ),
    Entry(
        "Dropout3d-unbatched",
        lambda: nn.Dropout3d(0.5),
        (((2, 4, 4, 3), F32),),
        (((2, 3), F32),),
        r"model \(Dropout3d\): expected 4 or 5-D input \(N, D, H, W, C\) or \(D, H, W, C\)",
        train=True,
    ),
    Entry(
        "AlphaDropout",
        lambda: nn.AlphaDropout(0.2),
        (((3, 6), F32),),
        (((3, 6), I32),),
        r"model \(AlphaDropout\): expected floating input, got dtype int32",
        train=True,
    ),
    Entry(
        "FeatureAlphaDropout",
        lambda: nn.FeatureAlphaDropout(0.2),
        (((2, 5, 3), F32),),
        (((3,), F32),),
        r"model \(FeatureAlphaDropout\): expected input \(N, \*, C\) with at least 2 "
        r"dimensions, got shape \(3,\)",
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
    Entry(
        "EmbeddingBag-offsets-max-padding",
        lambda: nn.EmbeddingBag(10, 8, mode="max", padding_idx=0),
        (((7,), I32),),
        (((2, 2, 2), I32),),
        r"model \(EmbeddingBag\): expected 1-D ids with offsets or 2-D ids \(B, N\), got shape "
        r"\(2, 2, 2\)",
        bf16_dtype=None,
        kwargs={"offsets": np.array([0, 3, 3])},
    ),
    Entry(
        "EmbeddingBag-sum-weights-last-offset",
        lambda: nn.EmbeddingBag(10, 8, mode="sum", include_last_offset=True),
        (((7,), I32),),
        (((7,), "bool"),),
        r"model \(EmbeddingBag\): expected integer ids, got dtype bool",
        bf16_dtype=None,
        kwargs={
            "offsets": np.array([0, 2, 6]),
            "per_sample_weights": np.linspace(0.5, 2.0, 7, dtype=np.float32),
        },
    ),
]
