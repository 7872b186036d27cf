"""Post-training int8 weight quantisation, symmetric per output channel."""

from __future__ import annotations

from typing import Any, TypedDict

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from funcnet.compress._prune import Params
from funcnet.compress._select import WEIGHTS, Patterns, select
from funcnet.optim import leaf_names

QMAX = 127
"""int8 values lie in [-QMAX, QMAX]: -128 is never used (a symmetric range)."""


class QuantizedWeight(TypedDict):
    """A quantised parameter: a plain dict, so checkpoints and ``jax.jit`` need no help.

    Attributes:
        qweight: int8, the parameter's shape, values in [-127, 127].
        scale: float32, the parameter's shape with every axis but the last set to 1:
            ``(1, out_features)`` for a Linear weight, ``(1, 1, 1, out_channels)`` for a
            Conv2d weight (HWIO). ``weight ≈ qweight * scale``.
    """

    qweight: jax.Array
    scale: jax.Array


def is_quantized(node: Any) -> bool:
    """Whether ``node`` is a quantised parameter (``{"qweight": int8, "scale": float}``).

    Use it as ``is_leaf`` to map over a quantised tree one parameter at a time:
    ``jax.tree.map(fn, qparams, is_leaf=compress.is_quantized)``.
    """
    return (
        isinstance(node, dict)
        and set(node) == {"qweight", "scale"}
        and getattr(node["qweight"], "dtype", None) == jnp.int8
    )


def quantize_array(weight: jax.Array) -> QuantizedWeight:
    """Symmetric int8 quantisation with one scale per channel of the last axis.

    ``scale = max|w| / 127`` over all axes but the last (1 for an all-zero channel, which
    then quantises to zeros exactly), ``qweight = round(w / scale)`` rounding half to even,
    so ``|w - qweight * scale| <= scale / 2`` for every element and each channel's largest
    magnitude maps to ±127.

    Args:
        weight: a floating array ``(*, C)`` with at least two dimensions; computed in
            float32.

    Returns:
        A `QuantizedWeight`: int8 ``qweight`` of ``weight``'s shape, float32 ``scale`` of
        shape ``(1, ..., 1, C)``.
    """
    w = jnp.asarray(weight, jnp.float32)
    amax = jnp.max(jnp.abs(w), axis=tuple(range(w.ndim - 1)), keepdims=True)
    scale = amax / QMAX
    scale = jnp.where(scale > 0, scale, 1.0)
    qweight = jnp.clip(jnp.round(w / scale), -QMAX, QMAX).astype(jnp.int8)
    return {"qweight": qweight, "scale": scale}


@jax.jit
def _quantize_checked(weight: jax.Array) -> tuple[QuantizedWeight, jax.Array]:
    """`quantize_array` and whether ``weight`` is all finite, as one compiled program."""
    return quantize_array(weight), jnp.all(jnp.isfinite(weight))


def quantize(params: Params, *, include: Patterns = WEIGHTS, exclude: Patterns = ()) -> Any:
    """Post-training int8 quantisation of the weights, symmetric per output channel.

    PyTorch's per-channel symmetric ``qint8`` weight observer
    (``torch.ao.quantization.default_per_channel_weight_observer``): one scale per output
    channel, zero point 0. The channel axis is the last one: ``out_features`` of a Linear
    weight ``(in, out)``, the output channels of a Conv kernel (HWIO). The values use
    [-127, 127] with ``scale = max|w| / 127``; PyTorch's observer also uses -128, with
    ``scale = max|w| / 127.5``. The symmetric range keeps ``-q`` representable and
    ``|q * scale| <= max|w|``, as TFLite's int8 weight specification requires.

    Only weights are quantised (biases and norm parameters stay float, as in PyTorch) and
    only the stored values change: `dequantize` turns them back into float32 for the
    computation, which stays in floating point.

    Args:
        params: the parameter tree.
        include: glob pattern(s) on dotted names (default: every ``weight`` with two or
            more dimensions); only floating arrays with two or more dimensions qualify.
        exclude: glob pattern(s) to keep in float, e.g. ``"fc2.*"``.

    Returns:
        ``params`` with each selected array replaced by a `QuantizedWeight` dict
        ``{"qweight": int8, "scale": float32}`` (dotted names ``fc1.weight.qweight``,
        ``fc1.weight.scale``); the other leaves are unchanged.

    Raises:
        TypeError: a pattern is not a str.
        ValueError: the selection is empty, or a selected weight holds inf or nan.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import compress
        >>> q = compress.quantize({"fc": {"weight": jnp.array([[0.5, -2.0], [-1.0, 1.0]])}})
        >>> q["fc"]["weight"]["qweight"].tolist(), q["fc"]["weight"]["scale"].shape
        ([[64, -127], [-127, 64]], (1, 2))
    """
    leaves, treedef = jax.tree.flatten(params)
    picked = select(params, include, exclude, "quantize")
    out = list(leaves)
    for i, (name, leaf) in enumerate(zip(leaf_names(params), leaves)):
        if picked[i]:
            out[i], finite = _quantize_checked(leaf)
            if not bool(finite):
                raise ValueError(f"quantize: {name} holds inf or nan values")
    return treedef.unflatten(out)


def dequantize(qparams: Any, dtype: DTypeLike | None = None) -> Params:
    """The float parameters of a quantised tree: ``qweight * scale`` for each quantised one.

    Call it inside the jitted function that applies the model, so that the arrays stored,
    transferred and passed in are the int8 ones and the float weights exist only inside
    the computation: ``jax.jit(lambda q, x: model.apply(compress.dequantize(q), state, x))``.

    Args:
        qparams: a tree from `quantize` (or read back by ``checkpoint.load_params``).
        dtype: the dtype of the dequantised weights; default the scale's (float32).

    Returns:
        The parameter tree with every `QuantizedWeight` replaced by a float array of the
        weight's shape; other leaves unchanged.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import compress
        >>> weight = jnp.array([[1.984375, -1.0], [0.5, 3.96875]])  # scales 1/64 and 1/32
        >>> q = compress.quantize({"fc": {"weight": weight, "bias": jnp.zeros(2)}})
        >>> back = compress.dequantize(q)
        >>> back["fc"]["weight"].tolist(), back["fc"]["bias"].dtype
        ([[1.984375, -1.0], [0.5, 3.96875]], dtype('float32'))
    """

    def one(node: Any) -> Any:
        if not is_quantized(node):
            return node
        scale = node["scale"]
        weight = node["qweight"].astype(scale.dtype) * scale
        return weight if dtype is None else weight.astype(dtype)

    return jax.tree.map(one, qparams, is_leaf=is_quantized)
