"""Activation functions with PyTorch's definitions and defaults.

Piecewise functions have PyTorch's gradient at their kinks: 0 on a clamped boundary
(``hardtanh`` and ``relu6`` at their limits, ``hardsigmoid`` and ``hardswish`` at ±3,
``threshold``, ``hardshrink`` and ``softshrink`` at theirs) and the negative side's
slope at 0 (``leaky_relu``, ``prelu``, ``rrelu``). None of them takes ``inplace``: JAX
arrays are immutable.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from funcnet.errors import ShapeError, check_input_dtype
from funcnet.functional._conv import _label

_FLOAT_OR_COMPLEX = ("floating", "complex")

__all__ = [
    "celu",
    "elu",
    "gelu",
    "glu",
    "hardshrink",
    "hardsigmoid",
    "hardswish",
    "hardtanh",
    "leaky_relu",
    "log_softmax",
    "logsigmoid",
    "mish",
    "prelu",
    "relu",
    "relu6",
    "rrelu",
    "selu",
    "sigmoid",
    "silu",
    "softmax",
    "softmin",
    "softplus",
    "softshrink",
    "softsign",
    "tanh",
    "tanhshrink",
    "threshold",
]

# SELU's constants (Klambauer et al. 2017), to PyTorch's precision.
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def relu(x: jax.Array) -> jax.Array:
    """max(x, 0), elementwise; any shape, dtype kept."""
    return jax.nn.relu(x)


def relu6(x: jax.Array) -> jax.Array:
    """min(max(x, 0), 6) (``torch.nn.functional.relu6``): ``hardtanh(x, 0, 6)``; gradient 0
    at 0 and 6."""
    return hardtanh(x, 0.0, 6.0)


def leaky_relu(x: jax.Array, negative_slope: float = 0.01) -> jax.Array:
    """x if x > 0 else negative_slope·x (PyTorch's default slope 0.01; gradient
    ``negative_slope`` at 0, as PyTorch)."""
    return jnp.where(x > 0, x, negative_slope * x)


def prelu(x: jax.Array, weight: jax.Array) -> jax.Array:
    """x if x > 0 else weight·x, with a learned slope per channel (``F.prelu``).

    Args:
        x: any shape; channels-last, so the channel axis is the last (PyTorch: axis 1).
        weight: one slope, shape () or (1,), for every element; or (C,) with C the size
            of ``x``'s last axis.

    Returns:
        x's shape, in the promoted dtype of ``x`` and ``weight``.

    Raises:
        ShapeError: ``weight`` is not a scalar or a 1-D array of 1 or C slopes.
    """
    shape, w_shape = tuple(jnp.shape(x)), tuple(jnp.shape(weight))
    if len(w_shape) > 1 or (jnp.size(weight) != 1 and (not shape or w_shape[0] != shape[-1])):
        raise ShapeError(
            f"prelu: expected weight of shape (), (1,) or ({shape[-1] if shape else 1},) "
            f"for input of shape {shape} (channels last), got {w_shape}"
        )
    if jnp.size(weight) == 1:
        weight = jnp.reshape(weight, ())  # a scalar input stays a scalar
    return jnp.where(x > 0, x, weight * x)


def rrelu(
    x: jax.Array,
    lower: float = 1.0 / 8,
    upper: float = 1.0 / 3,
    training: bool = False,
    key: jax.Array | None = None,
) -> jax.Array:
    """Randomized leaky ReLU (``F.rrelu``): x if x > 0 else a·x.

    In training, each element draws its slope a ~ U(lower, upper) from ``key``; otherwise
    a = (lower + upper) / 2 (``leaky_relu``). The gradient at x ≤ 0 is a, as PyTorch's.

    Args:
        x: any shape; floating.
        lower: smallest slope.
        upper: largest slope (≥ ``lower``).
        training: draw random slopes (needs ``key``).
        key: a PRNG key; needed only when ``training``.

    Returns:
        x's shape and dtype; 16-bit inputs are multiplied by the float32 slopes in
        float32 and rounded once.

    Raises:
        ValueError: ``lower > upper``, or training without a key.
    """
    _check_bounds("rrelu", lower, upper)
    if not training:
        return leaky_relu(x, (lower + upper) / 2)
    if key is None:
        raise ValueError("rrelu: training draws random slopes and needs a PRNG key (pass key=...)")
    dtype = jnp.result_type(x)
    compute = jnp.promote_types(dtype, jnp.float32)
    slope = jax.random.uniform(key, jnp.shape(x), compute, lower, upper)
    return jnp.where(x > 0, x, (jnp.asarray(x, compute) * slope).astype(dtype))


def _check_bounds(owner: str, lower: float, upper: float) -> None:
    """ValueError unless lower ≤ upper (PyTorch's message)."""
    if lower > upper:
        raise ValueError(
            f"{owner}: lower bound should be less than or equal to the upper bound, got "
            f"lower={lower}, upper={upper}"
        )


def threshold(x: jax.Array, threshold: float, value: float) -> jax.Array:
    """x if x > threshold else ``value`` (``F.threshold``); NaN stays NaN, gradient 0 at
    ``threshold``."""
    return jnp.where(x <= threshold, value, x)


def hardtanh(x: jax.Array, min_val: float = -1.0, max_val: float = 1.0) -> jax.Array:
    """x clamped to [min_val, max_val] (``F.hardtanh``); gradient 1 strictly inside the
    interval and 0 on and beyond its ends, as PyTorch's (``jnp.clip``'s is 1/2 or 1 at
    the ends)."""
    return jnp.where(x <= min_val, min_val, jnp.where(x >= max_val, max_val, x))


def hardsigmoid(x: jax.Array) -> jax.Array:
    """relu6(x + 3) / 6 (``F.hardsigmoid``); gradient 1/6 on (−3, 3), else 0."""
    return jnp.where(x <= -3, 0, jnp.where(x >= 3, 1, (x + 3) / 6))


def hardswish(x: jax.Array) -> jax.Array:
    """x·relu6(x + 3) / 6 (``F.hardswish``); gradient 0 at −3 and 1 at 3, as PyTorch's."""
    return x * jnp.where(x <= -3, 0, jnp.where(x >= 3, 6, x + 3)) / 6


def hardshrink(x: jax.Array, lambd: float = 0.5) -> jax.Array:
    """0 if −lambd ≤ x ≤ lambd else x (``F.hardshrink``)."""
    return jnp.where((x >= -lambd) & (x <= lambd), 0, x)


def softshrink(x: jax.Array, lambd: float = 0.5) -> jax.Array:
    """x − lambd above lambd, x + lambd below −lambd, 0 between (``F.softshrink``).

    Raises:
        ValueError: ``lambd < 0`` (PyTorch raises too).
    """
    _check_lambd("softshrink", lambd)
    return jnp.where(x > lambd, x - lambd, jnp.where(x < -lambd, x + lambd, x * 0))


def _check_lambd(owner: str, lambd: float) -> None:
    if lambd < 0:
        raise ValueError(f"{owner}: lambd must be >= 0, got {lambd}")


def elu(x: jax.Array, alpha: float = 1.0) -> jax.Array:
    """x if x > 0 else alpha·(exp(x) − 1)."""
    return jax.nn.elu(x, alpha)


def celu(x: jax.Array, alpha: float = 1.0) -> jax.Array:
    """x if x > 0 else alpha·(exp(x / alpha) − 1) (``F.celu``).

    Raises:
        ValueError: ``alpha == 0`` (PyTorch raises too).
    """
    _check_alpha("celu", alpha)
    negative = jnp.where(x > 0, 0, x)  # exp of the positive side never overflows
    return jnp.where(x > 0, x, alpha * jnp.expm1(negative / alpha))


def _check_alpha(owner: str, alpha: float) -> None:
    if alpha == 0:
        raise ValueError(f"{owner}: alpha cannot be 0")


def selu(x: jax.Array) -> jax.Array:
    """scale·elu(x, alpha) with SELU's alpha ≈ 1.6733 and scale ≈ 1.0507 (``F.selu``)."""
    return _SELU_SCALE * elu(x, _SELU_ALPHA)


def gelu(x: jax.Array, approximate: str = "none") -> jax.Array:
    """Gaussian error linear unit: x·Φ(x) (``"none"``, exact, PyTorch's default) or its
    tanh approximation (``"tanh"``). Note ``jax.nn.gelu`` defaults to the approximation."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    check_input_dtype("gelu", x)
    return jax.nn.gelu(x, approximate=approximate == "tanh")


def silu(x: jax.Array) -> jax.Array:
    """x·sigmoid(x) (also called swish); floating or complex x, as PyTorch."""
    check_input_dtype("silu", x, _FLOAT_OR_COMPLEX)
    return jax.nn.silu(x)


def mish(x: jax.Array) -> jax.Array:
    """x·tanh(softplus(x)) (``F.mish``)."""
    return x * jnp.tanh(jnp.logaddexp(x, 0.0))


def tanh(x: jax.Array) -> jax.Array:
    """Hyperbolic tangent."""
    return jnp.tanh(x)


def tanhshrink(x: jax.Array) -> jax.Array:
    """x − tanh(x) (``F.tanhshrink``)."""
    return x - jnp.tanh(x)


def softsign(x: jax.Array) -> jax.Array:
    """x / (1 + |x|) (``F.softsign``)."""
    return x / (1 + jnp.abs(x))


def sigmoid(x: jax.Array) -> jax.Array:
    """1 / (1 + exp(−x)); floating or complex x (PyTorch also promotes integers to
    float32; funcnet refuses them, as they are usually unscaled images)."""
    check_input_dtype("sigmoid", x, _FLOAT_OR_COMPLEX)
    return jax.nn.sigmoid(x)


def logsigmoid(x: jax.Array) -> jax.Array:
    """log(sigmoid(x)) = −softplus(−x), computed stably (``F.logsigmoid``)."""
    return jax.nn.log_sigmoid(x)


def softplus(x: jax.Array, beta: float = 1.0, threshold: float = 20.0) -> jax.Array:
    """log(1 + exp(beta·x)) / beta, linear where beta·x > threshold (as PyTorch)."""
    bx = beta * x
    return jnp.where(bx > threshold, x, jnp.logaddexp(bx, 0.0) / beta)


def glu(x: jax.Array, dim: int = -1) -> jax.Array:
    """Gated linear unit (``F.glu``): a·sigmoid(b), a and b the two halves of ``x`` along
    ``dim``.

    Args:
        x: any shape whose axis ``dim`` has an even size.
        dim: the axis to halve (default the last: channels-last features).

    Returns:
        x's shape with axis ``dim`` halved, x's dtype.

    Raises:
        ShapeError: ``dim`` is not an axis of ``x``, or its size is odd.
    """
    _check_glu("glu", x, dim)
    check_input_dtype("glu", x)
    a, b = jnp.split(x, 2, axis=dim)
    return a * jax.nn.sigmoid(b)


def _check_glu(where: object, x: jax.Array, dim: int) -> None:
    """ShapeError unless axis ``dim`` of ``x`` exists and has an even size."""
    shape = tuple(jnp.shape(x))
    if not -len(shape) <= dim < len(shape):
        raise ShapeError(f"{_label(where)}: axis {dim} does not exist in input of shape {shape}")
    if shape[dim] % 2:
        raise ShapeError(
            f"{_label(where)}: expected input with an even size on axis {dim} (halved into "
            f"value and gate), got shape {shape}"
        )


def _in_float32(fn: Callable[..., jax.Array], x: jax.Array, dim: int) -> jax.Array:
    """``fn(x, axis=dim)``; a 16-bit float ``x`` computed in float32 (PyTorch's "opmath"
    type) and the result rounded once to its dtype."""
    dtype = jnp.result_type(x)
    if jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits < 32:
        return fn(jnp.asarray(x, jnp.float32), axis=dim).astype(dtype)
    return fn(x, axis=dim)


def softmax(x: jax.Array, dim: int = -1) -> jax.Array:
    """exp(x) / sum(exp(x)) along ``dim`` (default the last axis: channels-last).

    bfloat16 and float16 inputs are computed in float32 and rounded once to the input's
    dtype, as PyTorch does: in bfloat16, ``x − max`` and ``exp`` would each round (up
    to 14 % error at logits of size 16).
    """
    return _in_float32(jax.nn.softmax, x, dim)


def _negated_softmax(x: jax.Array, axis: int) -> jax.Array:
    return jax.nn.softmax(-x, axis=axis)


def softmin(x: jax.Array, dim: int = -1) -> jax.Array:
    """softmax(−x) along ``dim`` (``F.softmin``; default the last axis, as ``softmax``);
    16-bit floats in float32, the result in the input's dtype (as ``softmax``)."""
    return _in_float32(_negated_softmax, x, dim)


def log_softmax(x: jax.Array, dim: int = -1) -> jax.Array:
    """x − logsumexp(x) along ``dim``, computed stably; 16-bit floats in float32, the
    result in the input's dtype (as ``softmax``)."""
    return _in_float32(jax.nn.log_softmax, x, dim)
