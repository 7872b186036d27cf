"""funcnet's errors and the trace-time checks that raise them.

Shapes and dtypes are static under ``jax.jit``, so layers check them while tracing and
fail with a message that names the layer path, the layer type, what was expected and
what arrived, e.g.::

    funcnet.errors.ShapeError: model.fc1 (Linear): expected input with last dimension 784,
    got shape (32, 100)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp

__all__ = [
    "CheckpointError",
    "FrozenModuleError",
    "FuncnetError",
    "PyTorchAttributeError",
    "ShapeError",
    "StateDictError",
    "UsageError",
    "check_dtype",
    "check_input_dtype",
    "check_last_dim",
    "check_ndim",
]


class FuncnetError(Exception):
    """Base class of funcnet's own errors."""


class ShapeError(FuncnetError, ValueError):
    """An array has the wrong shape or dtype for the layer or function it was given to."""


class StateDictError(FuncnetError, KeyError):
    """A flat state dict does not match the model it is loaded into."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CheckpointError(FuncnetError, OSError):
    """A checkpoint is missing, truncated, corrupt, or does not match its target."""


class UsageError(FuncnetError, TypeError):
    """funcnet was called in a way it does not support, usually a PyTorch habit (a
    ``forward`` without ``ctx``, ``nn.Parameter(array)``); the message says what to write."""


class PyTorchAttributeError(FuncnetError, AttributeError):
    """A PyTorch ``nn.Module`` attribute that funcnet does not have (``model.train()``,
    ``model.parameters()``, ``model.to(device)``); the message names the funcnet way."""


class FrozenModuleError(FuncnetError, dataclasses.FrozenInstanceError):
    """An attribute of a module was set or deleted after its construction."""


def _where(where: Any) -> str:
    """``where`` is a context (has ``.path`` and ``.module``) or a plain label."""
    path = getattr(where, "path", None)
    if path is None:
        return str(where)
    return f"{path} ({type(where.module).__name__})"


def check_last_dim(
    where: Any, x: Any, size: int, what: str = "input", *, spatial_dims: int | None = None
) -> None:
    """Raise ShapeError unless ``x.shape[-1] == size``.

    Args:
        where: the layer's context (its path is named in the message) or a label.
        x: the array (or a shape-carrying tracer).
        size: the expected size of the last axis.
        what: what the array is, for the message.
        spatial_dims: for a channels-last image, batched ``(N, *spatial, C)`` or unbatched
            ``(*spatial, C)``, the number of spatial axes: a shape that looks channels-first
            (``size`` on the channels-first axis, not last) gets the transpose to write.
    """
    shape = tuple(jnp.shape(x))
    if len(shape) == 0 or shape[-1] != size:
        hint = _channels_first_hint(shape, size, spatial_dims)
        raise ShapeError(
            f"{_where(where)}: expected {what} with last dimension {size}, got shape {shape}{hint}"
        )


_SPATIAL_NAMES = {1: "L", 2: "HW", 3: "DHW"}


def _channels_first_hint(shape: tuple[int, ...], size: int, spatial_dims: int | None) -> str:
    """The NCHW -> NHWC advice when ``shape`` is a channels-first image of ``size`` channels."""
    if spatial_dims not in _SPATIAL_NAMES or len(shape) - spatial_dims not in (1, 2):
        return ""
    spatial = _SPATIAL_NAMES[spatial_dims]
    batch = len(shape) - spatial_dims - 1  # 1 when batched, 0 when unbatched
    if shape[batch] != size:
        return ""
    order = (*range(batch), *range(batch + 1, len(shape)), batch)
    n = "N" * batch
    return (
        f"; funcnet is channels-last ({n}{spatial}C) and this looks like {n}C{spatial}: "
        f"pass x.transpose{order}"
    )


def check_ndim(
    where: Any, x: Any, ndims: int | Sequence[int], what: str = "input", layout: str = ""
) -> None:
    """Raise ShapeError unless ``x.ndim`` is one of ``ndims``.

    Args:
        where: the layer's context or a label.
        x: the array.
        ndims: the accepted number(s) of dimensions.
        what: what the array is, for the message.
        layout: an optional layout hint such as ``"(N, H, W, C)"`` for the message.
    """
    allowed = (ndims,) if isinstance(ndims, int) else tuple(ndims)
    shape = jnp.shape(x)
    if len(shape) not in allowed:
        dims = " or ".join(str(n) for n in allowed)
        hint = f" {layout}" if layout else ""
        raise ShapeError(
            f"{_where(where)}: expected {dims}-D {what}{hint}, got shape {tuple(shape)}"
        )


def check_dtype(where: Any, x: Any, kind: str, what: str = "input") -> None:
    """Raise ShapeError unless ``x``'s dtype is of ``kind`` ("floating" or "integer").

    Args:
        where: the layer's context or a label.
        x: the array.
        kind: ``"floating"`` or ``"integer"``.
        what: what the array is, for the message.
    """
    dtype = jnp.result_type(x)
    ok = jnp.issubdtype(dtype, jnp.floating if kind == "floating" else jnp.integer)
    if not ok:
        raise ShapeError(f"{_where(where)}: expected {kind} {what}, got dtype {dtype}")


_KINDS = {"floating": jnp.floating, "integer": jnp.integer, "complex": jnp.complexfloating}
_TO_FLOAT = (
    "; convert it first: x.astype(jnp.float32) / 255 for uint8 images (or ToFloat() in the "
    "DataLoader's transform), x.astype(jnp.float32) for other integers"
)


def check_input_dtype(
    where: Any, x: Any, kinds: Sequence[str] = ("floating",), what: str = "input"
) -> None:
    """Raise ShapeError unless ``x``'s dtype is of one of ``kinds``.

    Where floats are expected and integers or booleans arrive (uint8 images, most often),
    the message says how to convert them.

    Args:
        where: the layer's context (its path is named in the message) or a label.
        x: the array (or a shape-carrying tracer).
        kinds: the accepted kinds: ``"floating"``, ``"integer"``, ``"complex"``.
        what: what the array is, for the message.
    """
    dtype = jnp.result_type(x)
    if any(jnp.issubdtype(dtype, _KINDS[kind]) for kind in kinds):
        return
    convertible = jnp.issubdtype(dtype, jnp.integer) or dtype == jnp.bool_
    hint = _TO_FLOAT if "floating" in kinds and convertible else ""
    raise ShapeError(
        f"{_where(where)}: expected {' or '.join(kinds)} {what}, got dtype {dtype}{hint}"
    )
