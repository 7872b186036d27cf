"""Linear, Bilinear, Identity, Flatten, Unflatten."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

from funcnet import functional as F
from funcnet.errors import ShapeError, check_input_dtype, check_last_dim
from funcnet.functional._linear import _check_bilinear
from funcnet.nn import init as init_lib
from funcnet.nn._module import Context, Initializer, Module

__all__ = ["Bilinear", "Flatten", "Identity", "Linear", "Unflatten"]


def compute_dtype(x: Any) -> Any:
    """The dtype a layer computes in for input ``x``: its own if floating, else None.

    Floating layers compute in their input's dtype (parameters are cast at use), so
    bfloat16 activations run bfloat16 matmuls over float32 master weights.
    """
    dtype = jnp.result_type(x)
    return dtype if jnp.issubdtype(dtype, jnp.floating) else None


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Linear(Module):
    """y = x @ weight + bias over the last axis (``torch.nn.Linear``).

    The weight is stored ``(in_features, out_features)``, the transpose of PyTorch's
    ``(out, in)``; weight import transposes it. Default initialisation as PyTorch:
    weight and bias U(-1/sqrt(in_features), 1/sqrt(in_features)).

    Args:
        in_features: size of the input's last axis. Input (*, in_features).
        out_features: size of the output's last axis. Output (*, out_features) in the
            input's floating dtype.
        bias: whether to learn an additive bias.
        weight_init: optional initialiser ``(key, shape, dtype) -> array``.
        bias_init: optional initialiser for the bias.
        dtype: dtype of the parameters.
    """

    in_features: int
    out_features: int
    bias: bool = True
    weight_init: Initializer | None = None
    bias_init: Initializer | None = None
    dtype: Any = jnp.float32

    def init(self, key: jax.Array) -> tuple[dict[str, Any], dict[str, Any]]:
        kw, kb = jax.random.split(key)
        default = functools.partial(init_lib.default_uniform, fan_in=self.in_features)
        params = {
            "weight": (self.weight_init or default)(
                kw, (self.in_features, self.out_features), self.dtype
            )
        }
        if self.bias:
            params["bias"] = (self.bias_init or default)(kb, (self.out_features,), self.dtype)
        return params, {}

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        check_last_dim(ctx, x, self.in_features)
        check_input_dtype(ctx, x)
        dtype = compute_dtype(x)
        bias = ctx.param("bias", dtype) if self.bias else None
        return F.linear(x, ctx.param("weight", dtype), bias)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Bilinear(Module):
    """y = x1ᵀ·A·x2 + b for each output feature (``torch.nn.Bilinear``).

    ``y[..., o] = Σ_ij input1[..., i]·weight[i, j, o]·input2[..., j] + bias[o]``. The
    weight is stored ``(in1_features, in2_features, out_features)``: PyTorch's
    ``(out, in1, in2)`` with the output axis moved last, as Linear's; weight import is
    ``w.permute(1, 2, 0)``. Default initialisation as PyTorch: weight and bias
    U(-1/sqrt(in1_features), 1/sqrt(in1_features)).

    Args:
        in1_features: size of ``input1``'s last axis. input1 (*, in1_features).
        in2_features: size of ``input2``'s last axis. input2 (*, in2_features), with
            input1's leading axes.
        out_features: size of the output's last axis. Output (*, out_features) in the
            inputs' floating dtype.
        bias: whether to learn an additive bias.
        weight_init: optional initialiser ``(key, shape, dtype) -> array``.
        bias_init: optional initialiser for the bias.
        dtype: dtype of the parameters.
    """

    in1_features: int
    in2_features: int
    out_features: int
    bias: bool = True
    weight_init: Initializer | None = None
    bias_init: Initializer | None = None
    dtype: Any = jnp.float32

    def init(self, key: jax.Array) -> tuple[dict[str, Any], dict[str, Any]]:
        kw, kb = jax.random.split(key)
        default = functools.partial(init_lib.default_uniform, fan_in=self.in1_features)
        shape = (self.in1_features, self.in2_features, self.out_features)
        params = {"weight": (self.weight_init or default)(kw, shape, self.dtype)}
        if self.bias:
            params["bias"] = (self.bias_init or default)(kb, (self.out_features,), self.dtype)
        return params, {}

    def forward(self, ctx: Context, input1: jax.Array, input2: jax.Array) -> jax.Array:
        _check_bilinear(ctx, input1, input2, self.in1_features, self.in2_features)
        check_input_dtype(ctx, input1, what="input1")
        check_input_dtype(ctx, input2, what="input2")
        dtype = compute_dtype(jnp.result_type(input1, input2))
        bias = ctx.param("bias", dtype) if self.bias else None
        return F.bilinear(input1, input2, ctx.param("weight", dtype), bias)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Identity(Module):
    """Returns its input unchanged (``torch.nn.Identity``)."""

    def forward(self, ctx: Context, x: Any) -> Any:
        return x


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Flatten(Module):
    """Merges axes ``start_dim..end_dim`` into one (``torch.nn.Flatten``).

    Args:
        start_dim: first axis to merge (default 1: keep the batch axis).
        end_dim: last axis to merge, inclusive.

    Note: on NHWC images the flattened order is H, W, C, not PyTorch's C, H, W; weights of
    a following Linear imported from PyTorch need their rows permuted accordingly.
    """

    start_dim: int = 1
    end_dim: int = -1

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        ndim = jnp.ndim(x)
        if ndim == 0 or not (-ndim <= self.start_dim < ndim and -ndim <= self.end_dim < ndim):
            raise ShapeError(
                f"{ctx.path} (Flatten): axes {self.start_dim}..{self.end_dim} do not exist in "
                f"input of shape {jnp.shape(x)}"
            )
        return F.flatten(x, self.start_dim, self.end_dim)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Unflatten(Module):
    """Splits axis ``dim`` into ``unflattened_size`` (``torch.nn.Unflatten``).

    Args:
        dim: the axis to split.
        unflattened_size: the new sizes; their product must equal the axis' size.
    """

    dim: int
    unflattened_size: tuple[int, ...]

    def __post_init__(self) -> None:
        self.unflattened_size = tuple(self.unflattened_size)

    def forward(self, ctx: Context, x: jax.Array) -> jax.Array:
        shape = jnp.shape(x)
        ndim = len(shape)
        if not -ndim <= self.dim < ndim:
            raise ShapeError(
                f"{ctx.path} (Unflatten): axis {self.dim} does not exist in shape {shape}"
            )
        dim = self.dim % ndim
        total = 1
        for size in self.unflattened_size:
            total *= size
        if total != shape[dim]:
            raise ShapeError(
                f"{ctx.path} (Unflatten): expected axis {self.dim} of size {total} "
                f"(= prod {self.unflattened_size}), got shape {shape}"
            )
        return jnp.reshape(x, (*shape[:dim], *self.unflattened_size, *shape[dim + 1 :]))
