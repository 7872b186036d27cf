"""Activation layers: thin, parameter-free wrappers of funcnet.functional."""

from __future__ import annotations

import dataclasses

import jax

from funcnet import functional as F
from funcnet.nn._module import Context, Module

__all__ = [
    "ELU",
    "GELU",
    "LeakyReLU",
    "LogSoftmax",
    "ReLU",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Tanh",
]


class _Activation(Module):
    """Shared parts: no parameters, output of the input's shape and dtype."""


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class ReLU(_Activation):
    """max(x, 0) (``torch.nn.ReLU``). Input and output: any shape."""

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        return F.relu(x)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class LeakyReLU(_Activation):
    """x if x >= 0 else negative_slope·x (``torch.nn.LeakyReLU``)."""

    negative_slope: float = 0.01

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        return F.leaky_relu(x, self.negative_slope)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class ELU(_Activation):
    """x if x > 0 else alpha·(exp(x) − 1) (``torch.nn.ELU``)."""

    alpha: float = 1.0

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        return F.elu(x, self.alpha)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class GELU(_Activation):
    """x·Φ(x), exact by default or ``approximate="tanh"`` (``torch.nn.GELU``)."""

    approximate: str = "none"

    def __post_init__(self) -> None:
        if self.approximate not in ("none", "tanh"):
            raise ValueError(
                f"GELU: approximate must be 'none' or 'tanh', got {self.approximate!r}"
            )

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        return F.gelu(x, self.approximate)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class SiLU(_Activation):
    """x·sigmoid(x) (``torch.nn.SiLU``)."""

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        return F.silu(x)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Tanh(_Activation):
    """Hyperbolic tangent (``torch.nn.Tanh``)."""

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        return F.tanh(x)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Sigmoid(_Activation):
    """Logistic sigmoid (``torch.nn.Sigmoid``)."""

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        return F.sigmoid(x)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Softplus(_Activation):
    """log(1 + exp(beta·x)) / beta, linear above ``threshold`` (``torch.nn.Softplus``)."""

    beta: float = 1.0
    threshold: float = 20.0

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        return F.softplus(x, self.beta, self.threshold)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Softmax(_Activation):
    """Softmax along ``dim`` (default −1, the channels-last class axis; PyTorch has no default)."""

    dim: int = -1

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        return F.softmax(x, self.dim)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class LogSoftmax(_Activation):
    """log(softmax(x)) along ``dim``, computed stably (``torch.nn.LogSoftmax``)."""

    dim: int = -1

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        return F.log_softmax(x, self.dim)
