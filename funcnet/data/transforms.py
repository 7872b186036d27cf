"""Batch transforms for images, on the host (NumPy) or inside ``jax.jit`` (JAX).

Every transform takes a whole batch, channels-last: ``(N, H, W, C)`` (or ``(N, H, W)``).
Called on a NumPy array it computes with NumPy, as the :class:`~funcnet.data.DataLoader`
does in its threads; called on a ``jax.Array`` (or a tracer, inside ``jax.jit``) it
computes with ``jax.numpy``, so the same object can augment on the device in a jitted
step. Random transforms need ``key=``: a ``numpy.random.Generator`` for NumPy input (the
loader passes one), a JAX PRNG key for JAX input. Each sample gets its own random draw.

This differs from torchvision, whose transforms act on one sample (``(C, H, W)``) at a
time inside the dataset. Here::

    augment = Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(), ToFloat(),
                       Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))])
    loader = DataLoader(train, batch_size=128, shuffle=True, transform=augment)   # host
    # or deliver uint8 and augment on the device, inside the compiled step:
    @jax.jit
    def step(params, x_uint8, y, key):
        x = augment(x_uint8, key=key)
        ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._collate import takes_key

__all__ = [
    "Compose",
    "Normalize",
    "RandomCrop",
    "RandomHorizontalFlip",
    "ToFloat",
    "Transform",
]


def _is_numpy(x: Any) -> bool:
    return isinstance(x, np.ndarray)


def _check_images(name: str, x: Any) -> None:
    if np.ndim(x) not in (3, 4):
        raise ValueError(
            f"{name} expects a batch of images (N, H, W, C) or (N, H, W), got shape {np.shape(x)}"
        )


def _check_key(name: str, x: Any, key: Any) -> None:
    if key is None:
        raise ValueError(
            f"{name} is random: pass key= (a numpy.random.Generator for NumPy input, a "
            "jax.random key for JAX input); the DataLoader passes one by itself"
        )
    if _is_numpy(x) and not isinstance(key, np.random.Generator):
        raise TypeError(
            f"{name} on a NumPy batch needs key=numpy.random.Generator, got "
            f"{type(key).__name__}; call it on a jax.Array to use a JAX key"
        )
    if not _is_numpy(x) and isinstance(key, np.random.Generator):
        raise TypeError(f"{name} on a JAX batch needs a jax.random key, not a NumPy Generator")


class Transform:
    """Base class: ``t(x, key=None)`` maps a batch to a batch.

    Subclasses set ``random = True`` when they need ``key``. Any callable
    ``f(x)`` or ``f(x, key=...)`` can stand in for a transform.
    """

    random: bool = False

    def __call__(self, x: Any, *, key: Any = None) -> Any:
        raise NotImplementedError


class _Affine(Transform):
    """``x * scale + offset`` in float; consecutive ones fuse inside :class:`Compose`."""

    dtype: Any = np.float32

    def _affine(self, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        """(scale, offset) in float64 for input of ``dtype``."""
        raise NotImplementedError

    def __call__(self, x: Any, *, key: Any = None) -> Any:
        run = self.__dict__.get("_run")
        if run is None:
            run = self.__dict__["_run"] = _AffineRun([self])
        return run(x)


class _AffineRun:
    """Consecutive affine transforms as one multiply-add, its parameters cached per input
    dtype and shape (working them out costs more than applying them to a small batch)."""

    random = False

    def __init__(self, steps: Sequence[_Affine]) -> None:
        self.steps = list(steps)
        self._cache: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray, np.dtype]] = {}

    def __call__(self, x: Any) -> Any:
        signature = (np.dtype(x.dtype), np.ndim(x), np.shape(x)[-1:])
        params = self._cache.get(signature)
        if params is None:
            params = self._cache[signature] = self._params(*signature)
        scale, offset, dtype = params
        if _is_numpy(x):
            out = np.multiply(x, scale, dtype=dtype)  # one pass, no float copy of x first
            return np.add(out, offset, out=out)
        return x.astype(dtype) * scale + offset

    def _params(self, dtype: np.dtype, ndim: int, channels: tuple[int, ...]) -> tuple:
        scale, offset = np.float64(1.0), np.float64(0.0)
        for step in self.steps:
            s, o = step._affine(dtype)
            scale, offset, dtype = scale * s, offset * s + o, step.dtype
        scale, offset = np.broadcast_arrays(np.asarray(scale, dtype), np.asarray(offset, dtype))
        if scale.size == 1:
            return scale.reshape(()), offset.reshape(()), dtype
        if scale.ndim != 1 or channels != scale.shape:
            raise ValueError(
                f"per-channel statistics of length {scale.size} do not match the last axis "
                f"of a {ndim}-d batch with {channels[0] if channels else 0} channels "
                "(images are channels-last)"
            )
        shape = (1,) * (ndim - 1) + (-1,)  # full rank: nothing for rank promotion to object to
        return scale.reshape(shape), offset.reshape(shape), dtype


class ToFloat(_Affine):
    """Converts to float, scaling integer images into [0, 1].

    The batch analogue of torchvision's ``ToTensor()`` / ``ToDtype(torch.float32,
    scale=True)`` (which also move channels first; funcnet stays channels-last).

    Args:
        scale: multiplier; default ``1 / max`` of an integer input dtype (``1/255`` for
            uint8) and 1 for float input. E.g. ``1/16`` for :func:`load_digits` (0..16).
        dtype: output dtype.

    Calling it, ``t(x)``, returns ``x * scale`` of the input's shape, dtype ``dtype``.
    """

    def __init__(self, scale: float | None = None, dtype: Any = np.float32) -> None:
        self.scale: float | None = scale
        self.dtype: np.dtype[Any] = np.dtype(dtype)

    def _affine(self, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        scale = self.scale
        if scale is None:
            scale = 1.0 / np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0
        return np.float64(scale), np.float64(0.0)

    def __repr__(self) -> str:
        return f"ToFloat(scale={self.scale}, dtype={self.dtype.name})"


class Normalize(_Affine):
    """``(x - mean) / std`` per channel (the last axis), as torchvision's ``Normalize``.

    Computed as ``x * (1 / std) + (-mean / std)`` in ``dtype``: equal to torchvision's
    ``(x - mean) / std`` up to float rounding, and one pass over the batch on the host.

    Args:
        mean: a scalar, or one value per channel ``(C,)``.
        std: the same; non-zero.
        dtype: output dtype (integer input is converted).

    Raises:
        ValueError: ``std`` has a zero; or, when called, per-channel statistics whose
            length differs from the input's last axis.
    """

    def __init__(
        self, mean: float | Sequence[float], std: float | Sequence[float], dtype: Any = np.float32
    ) -> None:
        self.mean: np.ndarray = np.asarray(mean, np.float64)
        self.std: np.ndarray = np.asarray(std, np.float64)
        if np.any(self.std == 0):
            raise ValueError(f"Normalize std must be non-zero, got {self.std.tolist()}")
        self.dtype: np.dtype[Any] = np.dtype(dtype)

    def _affine(self, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        return 1.0 / self.std, -self.mean / self.std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


class RandomCrop(Transform):
    """A random ``size`` crop of each image, after zero-padding its borders.

    torchvision's ``RandomCrop(size, padding, fill)`` (constant padding) for a batch: every
    image gets its own offset.

    Args:
        size: output ``(h, w)``, or an int for a square.
        padding: pixels added on each side: an int, or ``(pad_h, pad_w)``.
        fill: the padding value.

    Calling it, ``t(x, key=key)``, returns ``(N, h, w, C)`` (or ``(N, h, w)``) in
    ``x``'s dtype.

    Raises:
        ValueError: when called, a crop larger than the padded image.
    """

    random = True

    def __init__(
        self, size: int | Sequence[int], padding: int | Sequence[int] = 0, fill: float = 0
    ):
        self.size: tuple[int, ...] = (size, size) if isinstance(size, int) else tuple(size)
        self.padding: tuple[int, ...] = (
            (padding, padding) if isinstance(padding, int) else tuple(padding)
        )
        if len(self.size) != 2 or len(self.padding) != 2 or min(*self.padding) < 0:
            raise ValueError(
                f"RandomCrop size and padding must be (h, w) pairs, got {size}, {padding}"
            )
        self.fill: float = fill

    def __call__(self, x: Any, *, key: Any = None) -> Any:
        _check_images("RandomCrop", x)
        _check_key("RandomCrop", x, key)
        n, height, width = np.shape(x)[:3]
        (ph, pw), (h, w) = self.padding, self.size
        room_h, room_w = height + 2 * ph - h, width + 2 * pw - w
        if room_h < 0 or room_w < 0:
            raise ValueError(
                f"RandomCrop {self.size} is larger than the padded images "
                f"({height + 2 * ph}, {width + 2 * pw})"
            )
        xp = np if _is_numpy(x) else jnp
        if xp is np:
            top = key.integers(0, room_h + 1, n)
            left = key.integers(0, room_w + 1, n)
        else:
            k_top, k_left = jax.random.split(key)
            top = jax.random.randint(k_top, (n,), 0, room_h + 1)
            left = jax.random.randint(k_left, (n,), 0, room_w + 1)
        pad = [(0, 0), (ph, ph), (pw, pw)] + [(0, 0)] * (np.ndim(x) - 3)
        padded = xp.pad(x, pad, constant_values=self.fill) if ph or pw else x
        rows = top[:, None, None] + xp.arange(h)[None, :, None]
        cols = left[:, None, None] + xp.arange(w)[None, None, :]
        return padded[xp.arange(n)[:, None, None], rows, cols]

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding}, fill={self.fill})"


class RandomHorizontalFlip(Transform):
    """Mirrors each image left-right with probability ``p`` (torchvision's, batched).

    Args:
        p: probability that an image is flipped.

    Calling it, ``t(x, key=key)``, returns an array of ``x``'s shape and dtype.
    """

    random = True

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip p must be in [0, 1], got {p}")
        self.p = p

    def __call__(self, x: Any, *, key: Any = None) -> Any:
        _check_images("RandomHorizontalFlip", x)
        _check_key("RandomHorizontalFlip", x, key)
        n = np.shape(x)[0]
        if _is_numpy(x):
            flip = key.random(n) < self.p
            out = x.copy()
            out[flip] = x[flip, :, ::-1]
            return out
        flip = jax.random.bernoulli(key, self.p, (n,))
        return jnp.where(flip.reshape((n,) + (1,) * (x.ndim - 1)), x[:, :, ::-1], x)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Compose(Transform):
    """Applies transforms in order (torchvision's ``Compose``), splitting the key.

    With a JAX key each random transform gets its own ``jax.random.split`` of it; with a
    NumPy Generator they draw from it in turn. Consecutive :class:`ToFloat` /
    :class:`Normalize` steps are fused into one multiply-add (equal up to float rounding).

    Args:
        transforms: transforms or callables ``f(x)`` / ``f(x, key=...)``.
    """

    def __init__(self, transforms: Sequence[Callable[..., Any]]) -> None:
        self.transforms: list[Callable[..., Any]] = list(transforms)
        self.random: bool = any(takes_key(t) for t in self.transforms)
        self._steps: list[Any] = []
        for t in self.transforms:
            if isinstance(t, _Affine) and self._steps and isinstance(self._steps[-1], _AffineRun):
                self._steps[-1].steps.append(t)
            else:
                self._steps.append(_AffineRun([t]) if isinstance(t, _Affine) else t)
        self._wants_key = [takes_key(step) for step in self._steps]

    def __call__(self, x: Any, *, key: Any = None) -> Any:
        keys: Iterator[Any] = iter(())
        if self.random:
            if key is None:
                raise ValueError("Compose holds a random transform: pass key=")
            count = sum(self._wants_key)
            keys = iter(
                [key] * count
                if isinstance(key, np.random.Generator)
                else jax.random.split(key, count)
            )
        for step, wants_key in zip(self._steps, self._wants_key):
            x = step(x, key=next(keys)) if wants_key else step(x)
        return x

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"
