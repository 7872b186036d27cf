"""funcnet: PyTorch-familiar neural networks as pure JAX functions.

Layers are immutable descriptions with pure ``init``/``apply``; parameters and state are
plain nested dicts of ``jax.Array``; optimizers follow optax's protocol.
"""

from funcnet import (
    checkpoint,
    compress,
    data,
    errors,
    export,
    functional,
    losses,
    metrics,
    mixed_precision,
    nn,
    optim,
    parallel,
    train,
)
from funcnet._version import __version__
from funcnet.errors import ShapeError

__all__ = [
    "ShapeError",
    "__version__",
    "checkpoint",
    "compress",
    "data",
    "errors",
    "export",
    "functional",
    "losses",
    "metrics",
    "mixed_precision",
    "nn",
    "optim",
    "parallel",
    "train",
]
