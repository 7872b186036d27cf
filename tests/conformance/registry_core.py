"""Conformance entries for the core layers: Linear, shape layers, activations, containers."""

import funcnet.functional as F
from funcnet import nn
from tests.conformance._entry import Entry

F32 = "float32"

ENTRIES = [
    Entry(
        "Linear",
        lambda: nn.Linear(6, 4),
        (((3, 6), F32),),
        (((3, 5), F32),),
        r"model \(Linear\): expected input with last dimension 6, got shape \(3, 5\)",
    ),
    Entry(
        "Linear-nobias-3d",
        lambda: nn.Linear(6, 4, bias=False),
        (((2, 3, 6), F32),),
        (((2, 3, 7), F32),),
        r"model \(Linear\)",
    ),
    Entry("Identity", lambda: nn.Identity(), (((3, 6), F32),)),
    Entry(
        "Flatten", lambda: nn.Flatten(), (((2, 3, 4, 5), F32),), (((), F32),), r"model \(Flatten\)"
    ),
    Entry(
        "Unflatten",
        lambda: nn.Unflatten(1, (3, 4)),
        (((2, 12), F32),),
        (((2, 10), F32),),
        r"model \(Unflatten\): expected axis 1 of size 12",
    ),
    Entry("ReLU", lambda: nn.ReLU(), (((3, 6), F32),)),
    Entry("LeakyReLU", lambda: nn.LeakyReLU(0.2), (((3, 6), F32),)),
    Entry("ELU", lambda: nn.ELU(), (((3, 6), F32),)),
    Entry("GELU", lambda: nn.GELU(), (((3, 6), F32),)),
    Entry("GELU-tanh", lambda: nn.GELU("tanh"), (((3, 6), F32),)),
    Entry("SiLU", lambda: nn.SiLU(), (((3, 6), F32),)),
    Entry("Tanh", lambda: nn.Tanh(), (((3, 6), F32),)),
    Entry("Sigmoid", lambda: nn.Sigmoid(), (((3, 6), F32),)),
    Entry("Softplus", lambda: nn.Softplus(beta=2.0), (((3, 6), F32),)),
    Entry("Softmax", lambda: nn.Softmax(), (((3, 6), F32),)),
    Entry("LogSoftmax", lambda: nn.LogSoftmax(), (((3, 6), F32),)),
    Entry(
        "Sequential",
        lambda: nn.Sequential(nn.Linear(6, 8), F.relu, nn.Linear(8, 2)),
        (((3, 6), F32),),
        (((3, 4), F32),),
        r"model\.0 \(Linear\): expected input with last dimension 6",
    ),
    Entry(
        "Sequential-remat",
        lambda: nn.Sequential(
            nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), F.relu, nn.Dropout(0.1)),
            nn.Linear(8, 2),
            remat="dots_saveable",
        ),
        (((3, 6), F32),),
        (((3, 4), F32),),
        r"model\.0\.0 \(Linear\): expected input with last dimension 6",
        train=True,
    ),
    Entry(
        "Remat",
        lambda: nn.Remat(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)),
        (((2, 5, 8), F32),),
        (((2, 5, 6), F32),),
        r"model \(TransformerEncoderLayer\): expected src with last dimension 8",
        train=True,
        kwargs={"is_causal": True},
    ),
    Entry(
        "Remat-batchnorm-policy",
        lambda: nn.Remat(nn.BatchNorm1d(6), policy="dots_with_no_batch_dims_saveable"),
        (((4, 6), F32),),
        (((4, 5), F32),),
        r"model \(BatchNorm1d\)",
        train=True,
    ),
    Entry(
        "LayerStack",
        lambda: nn.LayerStack(nn.Sequential(nn.Linear(6, 6), F.relu, nn.Dropout(0.1)), 3),
        (((3, 6), F32),),
        (((3, 4), F32),),
        r"model\.0 \(Linear\): expected input with last dimension 6",
        train=True,
    ),
]
