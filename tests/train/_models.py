"""Small models and data shared by the training tests."""

import jax
import jax.numpy as jnp
import numpy as np

import funcnet.functional as F
from funcnet import nn
from funcnet.data import ArrayDataset, DataLoader


class MLP(nn.Module):
    def __init__(self, features=8, hidden=16, classes=3):
        self.fc1 = nn.Linear(features, hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, ctx, x):
        return self.fc2(ctx, F.relu(self.fc1(ctx, x)))


class CountingMLP(MLP):
    """An MLP with a call counter in its state (a stand-in for BatchNorm statistics)."""

    def __init__(self):
        super().__init__()
        self.calls = nn.Buffer((), init=nn.init.zeros, dtype=jnp.int32)

    def forward(self, ctx, x):
        if ctx.train:
            ctx.set_state("calls", ctx.state["calls"] + 1)
        return super().forward(ctx, x)


def blobs(n=100, features=8, classes=3, seed=0):
    """A separable classification problem: (x float32 (n, features), y int32 (n,))."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(classes, features))
    y = rng.integers(0, classes, n).astype(np.int32)
    x = (centers[y] + rng.normal(size=(n, features))).astype(np.float32)
    return x, y


def loader(n=100, batch_size=32, shuffle=True, seed=0, **kwargs):
    return DataLoader(ArrayDataset(*blobs(n)), batch_size, shuffle=shuffle, seed=seed, **kwargs)


def tree_equal(a, b):
    return all(
        jax.tree_util.tree_leaves(
            jax.tree_util.tree_map(lambda x, y: bool(np.array_equal(x, y)), a, b)
        )
    )
