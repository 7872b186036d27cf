"""Activation layers: thin wrappers of funcnet.functional (PReLU has a weight).

Each has PyTorch's name, arguments and defaults, except ``inplace``, which no funcnet
layer takes (JAX arrays are immutable). Input and output: any shape, the input's dtype,
unless a docstring says otherwise. Inputs are floating, except that ReLU also takes
integers and Tanh, Sigmoid, SiLU, Softsign and Tanhshrink also take complex numbers.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from funcnet import functional as F
from funcnet.errors import check_input_dtype, check_last_dim, check_ndim
from funcnet.functional._activation import _check_alpha, _check_bounds, _check_glu, _check_lambd
from funcnet.nn._linear import compute_dtype
from funcnet.nn._module import Context, Module

__all__ = [
    "CELU",
    "ELU",
    "GELU",
    "GLU",
    "Hardshrink",
    "Hardsigmoid",
    "Hardswish",
    "Hardtanh",
    "LeakyReLU",
    "LogSigmoid",
    "LogSoftmax",
    "Mish",
    "PReLU",
    "RReLU",
    "ReLU",
    "ReLU6",
    "SELU",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "Softmax2d",
    "Softmin",
    "Softplus",
    "Softshrink",
    "Softsign",
    "Tanh",
    "Tanhshrink",
    "Threshold",
]


class _Activation(Module):
    """Shared parts: no parameters, output of the input's shape and dtype.

    Inputs must be floating, unless ``_kinds`` also names "integer" (ReLU keeps integers,
    as PyTorch) or "complex" (the functions PyTorch computes on complex numbers).
    """

    _kinds: ClassVar[tuple[str, ...]] = ("floating",)

    def _check_dtype(self, ctx: Context, x: jax.Array) -> None:
        check_input_dtype(ctx, x, self._kinds)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class ReLU(_Activation):
    """max(x, 0) (``torch.nn.ReLU``). Input and output: any shape."""

    _kinds: ClassVar[tuple[str, ...]] = ("floating", "integer")

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        self._check_dtype(ctx, x)
        return F.relu(x)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class LeakyReLU(_Activation):
    """x if x >= 0 else negative_slope·x (``torch.nn.LeakyReLU``)."""

    negative_slope: float = 0.01

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        self._check_dtype(ctx, x)
        return F.leaky_relu(x, self.negative_slope)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class ELU(_Activation):
    """x if x > 0 else alpha·(exp(x) − 1) (``torch.nn.ELU``)."""

    alpha: float = 1.0

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        self._check_dtype(ctx, x)
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
        self._check_dtype(ctx, x)
        return F.gelu(x, self.approximate)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class SiLU(_Activation):
    """x·sigmoid(x) (``torch.nn.SiLU``)."""

    _kinds: ClassVar[tuple[str, ...]] = ("floating", "complex")

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        self._check_dtype(ctx, x)
        return F.silu(x)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Tanh(_Activation):
    """Hyperbolic tangent (``torch.nn.Tanh``)."""

    _kinds: ClassVar[tuple[str, ...]] = ("floating", "complex")

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        self._check_dtype(ctx, x)
        return F.tanh(x)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Sigmoid(_Activation):
    """Logistic sigmoid (``torch.nn.Sigmoid``)."""

    _kinds: ClassVar[tuple[str, ...]] = ("floating", "complex")

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        self._check_dtype(ctx, x)
        return F.sigmoid(x)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Softplus(_Activation):
    """log(1 + exp(beta·x)) / beta, linear above ``threshold`` (``torch.nn.Softplus``)."""

    beta: float = 1.0
    threshold: float = 20.0

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        self._check_dtype(ctx, x)
        return F.softplus(x, self.beta, self.threshold)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Softmax(_Activation):
    """Softmax along ``dim`` (default −1, the channels-last class axis; PyTorch has no default)."""

    dim: int = -1

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        self._check_dtype(ctx, x)
        return F.softmax(x, self.dim)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class LogSoftmax(_Activation):
    """log(softmax(x)) along ``dim``, computed stably (``torch.nn.LogSoftmax``)."""

    dim: int = -1

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        self._check_dtype(ctx, x)
        return F.log_softmax(x, self.dim)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Softmin(_Activation):
    """softmax(−x) along ``dim`` (``torch.nn.Softmin``; default −1, as ``Softmax``).

    16-bit floats are computed in float32 and rounded once, as ``Softmax``.
    """

    dim: int = -1

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        self._check_dtype(ctx, x)
        return F.softmin(x, self.dim)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Softmax2d(_Activation):
    """Softmax over the channels of each pixel (``torch.nn.Softmax2d``, channels last).

    Input (N, H, W, C) or (H, W, C); output of the same shape and dtype, summing to 1
    over the last axis (PyTorch's (N, C, H, W) input sums over axis −3).
    """

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        self._check_dtype(ctx, x)
        check_ndim(ctx, x, (4, 3), layout="(N, H, W, C) or (H, W, C)")
        return F.softmax(x, -1)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class LogSigmoid(_Activation):
    """log(sigmoid(x)), computed stably (``torch.nn.LogSigmoid``)."""

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        self._check_dtype(ctx, x)
        return F.logsigmoid(x)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Softsign(_Activation):
    """x / (1 + |x|) (``torch.nn.Softsign``)."""

    _kinds: ClassVar[tuple[str, ...]] = ("floating", "complex")

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        self._check_dtype(ctx, x)
        return F.softsign(x)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Tanhshrink(_Activation):
    """x − tanh(x) (``torch.nn.Tanhshrink``)."""

    _kinds: ClassVar[tuple[str, ...]] = ("floating", "complex")

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        self._check_dtype(ctx, x)
        return F.tanhshrink(x)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Mish(_Activation):
    """x·tanh(softplus(x)) (``torch.nn.Mish``)."""

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        self._check_dtype(ctx, x)
        return F.mish(x)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class SELU(_Activation):
    """scale·elu(x, alpha), alpha ≈ 1.6733, scale ≈ 1.0507 (``torch.nn.SELU``)."""

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        self._check_dtype(ctx, x)
        return F.selu(x)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class CELU(_Activation):
    """x if x > 0 else alpha·(exp(x / alpha) − 1) (``torch.nn.CELU``).

    Args:
        alpha: the negative side's scale; not 0 (``ValueError``).
    """

    alpha: float = 1.0

    def __post_init__(self) -> None:
        _check_alpha(type(self).__name__, self.alpha)

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        self._check_dtype(ctx, x)
        return F.celu(x, self.alpha)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class GLU(_Activation):
    """Gated linear unit a·sigmoid(b), a and b the halves of the input along ``dim``
    (``torch.nn.GLU``).

    Args:
        dim: the axis to halve (default −1, the features); its size must be even.

    Input (*, 2·M, *) along ``dim``; output (*, M, *), the input's dtype.
    """

    dim: int = -1

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        self._check_dtype(ctx, x)
        _check_glu(ctx, x, self.dim)
        return F.glu(x, self.dim)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Hardtanh(_Activation):
    """x clamped to [min_val, max_val] (``torch.nn.Hardtanh``); gradient 0 at the ends.

    Args:
        min_val: lower end.
        max_val: upper end; must exceed ``min_val`` (``ValueError``, as PyTorch asserts).
    """

    min_val: float = -1.0
    max_val: float = 1.0

    def __post_init__(self) -> None:
        if not self.max_val > self.min_val:
            raise ValueError(
                f"{type(self).__name__}: max_val ({self.max_val}) must be greater than "
                f"min_val ({self.min_val})"
            )

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        self._check_dtype(ctx, x)
        return F.hardtanh(x, self.min_val, self.max_val)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class ReLU6(_Activation):
    """min(max(x, 0), 6) (``torch.nn.ReLU6``); gradient 0 at 0 and 6."""

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        self._check_dtype(ctx, x)
        return F.relu6(x)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Hardsigmoid(_Activation):
    """relu6(x + 3) / 6 (``torch.nn.Hardsigmoid``)."""

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        self._check_dtype(ctx, x)
        return F.hardsigmoid(x)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Hardswish(_Activation):
    """x·relu6(x + 3) / 6 (``torch.nn.Hardswish``)."""

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        self._check_dtype(ctx, x)
        return F.hardswish(x)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Threshold(_Activation):
    """x if x > threshold else ``value`` (``torch.nn.Threshold``; both required)."""

    threshold: float
    value: float

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        self._check_dtype(ctx, x)
        return F.threshold(x, self.threshold, self.value)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Hardshrink(_Activation):
    """0 if |x| ≤ lambd else x (``torch.nn.Hardshrink``)."""

    lambd: float = 0.5

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        self._check_dtype(ctx, x)
        return F.hardshrink(x, self.lambd)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Softshrink(_Activation):
    """x − lambd above lambd, x + lambd below −lambd, else 0 (``torch.nn.Softshrink``).

    Args:
        lambd: the half-width of the zeroed band; at least 0 (``ValueError``).
    """

    lambd: float = 0.5

    def __post_init__(self) -> None:
        _check_lambd(type(self).__name__, self.lambd)

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        self._check_dtype(ctx, x)
        return F.softshrink(x, self.lambd)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class RReLU(_Activation):
    """Randomized leaky ReLU (``torch.nn.RReLU``): x if x > 0 else a·x.

    In training, every element draws its slope a ~ U(lower, upper) (``apply`` needs a
    ``key``; each RReLU layer, and each call of one, draws its own); in evaluation
    a = (lower + upper) / 2.

    Args:
        lower: smallest slope.
        upper: largest slope; at least ``lower`` (``ValueError``).

    Input: any shape, floating; output of the same shape and dtype.
    """

    lower: float = 1.0 / 8
    upper: float = 1.0 / 3

    def __post_init__(self) -> None:
        _check_bounds(type(self).__name__, self.lower, self.upper)

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        self._check_dtype(ctx, x)
        if not ctx.train:
            return F.rrelu(x, self.lower, self.upper)
        return F.rrelu(x, self.lower, self.upper, training=True, key=ctx.next_key())


@dataclasses.dataclass(unsafe_hash=True, repr=False, init=False)
class PReLU(Module):
    """x if x > 0 else weight·x, with learned slopes (``torch.nn.PReLU``).

    The slopes are ``params["weight"]``, shape (num_parameters,), each starting at the
    initial slope; PyTorch's state-dict key and layout. With ``num_parameters > 1``
    there is one slope per channel, on the last axis (channels-last; PyTorch: axis 1).

    ``PReLU(num_parameters=1, init=0.25)`` as in PyTorch: the initial slope is kept in
    the field ``init_value``, because ``init`` is every module's initialising method,
    so ``PReLU(8, init=0.1)``, ``PReLU(8, 0.1)`` and ``PReLU(8, init_value=0.1)`` are
    the same layer.

    Args:
        num_parameters: 1 (one slope shared by all elements) or the number of channels C.
        init_value: the initial slope (PyTorch's ``init``).
        dtype: dtype of the weight.
        init: PyTorch's keyword for ``init_value``; give one or the other.

    Input: any shape, (*, C) when num_parameters = C > 1; output of the same shape in
    the input's floating dtype (the weight is cast to it).

    Raises:
        ValueError: ``num_parameters`` is not a positive int, or both ``init`` and a
            different ``init_value`` are given.
    """

    num_parameters: int = 1
    init_value: float = 0.25
    dtype: Any = jnp.float32

    def __init__(
        self,
        num_parameters: int = 1,
        init_value: float = 0.25,
        dtype: Any = jnp.float32,
        *,
        init: float | None = None,
    ) -> None:
        if not (isinstance(num_parameters, int) and num_parameters >= 1):
            raise ValueError(
                f"PReLU: num_parameters must be a positive int, got {num_parameters!r}"
            )
        if init is not None and init_value not in (0.25, init):
            raise ValueError(f"PReLU: got init={init} and init_value={init_value}; give one")
        self.num_parameters = num_parameters
        self.init_value = init_value if init is None else init
        self.dtype = dtype

    def init(self, key: jax.Array) -> tuple[dict[str, Any], dict[str, Any]]:
        del key  # PyTorch's deterministic init: every slope equals init_value
        return {"weight": jnp.full((self.num_parameters,), self.init_value, self.dtype)}, {}

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        if self.num_parameters > 1:
            spatial = jnp.ndim(x) - 2 if jnp.ndim(x) > 2 else None
            check_last_dim(ctx, x, self.num_parameters, spatial_dims=spatial)
        check_input_dtype(ctx, x)
        return F.prelu(x, ctx.param("weight", compute_dtype(x)))
