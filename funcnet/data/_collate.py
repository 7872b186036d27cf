"""Batches: collating samples, converting other frameworks' tensors, applying a batch
transform, padding the last batch."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

__all__ = ["default_collate", "pad_batch", "to_numpy"]

# Python scalars become JAX's default dtypes, so a per-item batch and a jit-compiled step
# agree without x64 mode (NumPy would give int64 / float64).
_SCALAR_DTYPES = ((bool, np.bool_), (int, np.int32), (float, np.float32), (complex, np.complex64))


def default_collate(samples: Sequence[Any]) -> Any:
    """Stacks a list of samples into a batch (PyTorch's ``default_collate``, for NumPy).

    Samples are arrays, scalars, or tuples / lists / dicts / named tuples of them (nested
    as deep as needed); every sample must have the same structure. Each leaf position is
    stacked along a new leading axis:

    - NumPy arrays and scalars keep their dtype: ``k`` samples of shape ``S`` give ``(k, *S)``.
    - ``jax.Array`` leaves, and tensors of other frameworks (PyTorch, TensorFlow: anything
      :func:`to_numpy` converts), are copied to host and stacked the same way.
    - Python ``bool``/``int``/``float``/``complex`` give ``bool``/``int32``/``float32``/
      ``complex64`` arrays of shape ``(k,)`` (JAX's defaults; PyTorch gives int64/float64).
      An ``int`` outside the int32 range raises ``OverflowError``.
    - ``str`` gives a NumPy unicode array ``(k,)``.

    Tuples stay tuples (PyTorch turns them into lists), lists stay lists, dicts stay dicts.

    Args:
        samples: a non-empty sequence of samples.

    Returns:
        The batch, with the samples' structure.

    Raises:
        ValueError: no samples, or samples whose structure or shapes differ.
        TypeError: a leaf of an unsupported type.

    Examples:
        >>> import numpy as np
        >>> from funcnet.data import default_collate
        >>> x, y = default_collate([(np.zeros(3), 1), (np.ones(3), 2)])
        >>> x.shape, y.dtype, y.tolist()
        ((2, 3), dtype('int32'), [1, 2])
    """
    if len(samples) == 0:
        raise ValueError("default_collate needs at least one sample")
    return _collate(list(samples), "sample")


def _collate(samples: list[Any], where: str) -> Any:
    first = samples[0]
    if isinstance(first, Mapping):
        keys = list(first)
        for s in samples:
            if not isinstance(s, Mapping) or list(s) != keys:
                raise ValueError(f"default_collate: {where}s differ: keys {keys} vs {_describe(s)}")
        return {k: _collate([s[k] for s in samples], f"{where}[{k!r}]") for k in keys}
    if isinstance(first, tuple | list):
        for s in samples:
            if type(s) is not type(first) or len(s) != len(first):
                raise ValueError(
                    f"default_collate: {where}s differ: {_describe(first)} vs {_describe(s)}"
                )
        fields = [_collate([s[i] for s in samples], f"{where}[{i}]") for i in range(len(first))]
        if hasattr(first, "_fields"):
            return type(first)(*fields)
        return type(first)(fields)
    for python_type, dtype in _SCALAR_DTYPES:
        if type(first) is python_type:
            return np.array(samples, dtype=dtype)
    if isinstance(first, str):
        return np.array(samples, dtype=str)
    if isinstance(first, np.ndarray | np.generic | jax.Array) or _is_foreign_array(first):
        # one conversion decided by the first sample (a per-sample check costs ~1 µs)
        convert = np.asarray if not _is_foreign_array(first) else _leaf_to_numpy
        arrays = [np.asarray(convert(s)) for s in samples]
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise ValueError(
                f"default_collate: {where}s have different shapes {sorted(shapes)}; "
                "pad them in the dataset or pass a collate_fn"
            )
        return np.stack(arrays)
    raise TypeError(
        f"default_collate: {where} of type {type(first).__name__} is not an array, a scalar, "
        "or a tuple/list/dict of those; pass a collate_fn"
    )


def _is_foreign_array(leaf: Any) -> bool:
    """An array of another framework: a torch or TensorFlow tensor (``__array__``, ``shape``)."""
    return (
        not isinstance(leaf, np.ndarray | np.generic | jax.Array | str | bytes)
        and hasattr(leaf, "__array__")
        and hasattr(leaf, "shape")
    )


def _leaf_to_numpy(leaf: Any) -> Any:
    if not _is_foreign_array(leaf):
        return leaf
    if callable(getattr(leaf, "detach", None)):  # torch: drop autograd, move to host
        leaf = leaf.detach().cpu()
        if str(leaf.dtype) == "torch.bfloat16":  # NumPy has no bfloat16: go through int16
            import torch  # a torch tensor is in hand, so torch is installed

            return leaf.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return np.asarray(leaf)


def to_numpy(batch: Any) -> Any:
    """A batch with every tensor of another framework converted to a NumPy array.

    Batches from a ``torch.utils.data.DataLoader`` (torch tensors, also ones that require
    grad, on any device, bfloat16 included), TensorFlow or any object with ``__array__``
    and ``shape`` become NumPy arrays with the same dtype; NumPy and ``jax.Array`` leaves
    and other values are returned as they are. Tuples, lists, dicts and named tuples keep
    their structure (dicts their key order).

    Args:
        batch: a batch: an array or a (nested) tuple / list / dict of arrays.

    Returns:
        The batch with NumPy arrays in place of foreign tensors.

    Examples:
        >>> import numpy as np
        >>> from funcnet.data import to_numpy
        >>> to_numpy({"x": [1.0, 2.0], "y": np.arange(2)})["y"].tolist()
        [0, 1]
    """
    return map_batch(_leaf_to_numpy, batch)


def _describe(sample: Any) -> str:
    if isinstance(sample, Mapping):
        return f"keys {list(sample)}"
    if isinstance(sample, tuple | list):
        return f"{type(sample).__name__} of {len(sample)}"
    return type(sample).__name__


def map_batch(fn: Callable[..., Any], *batches: Any) -> Any:
    """``fn`` over the arrays of batches of one structure, keeping dicts' key order.

    (``jax.tree.map`` would sort dict keys; a batch should come out as the dataset made it.)
    """
    first = batches[0]
    if isinstance(first, Mapping):
        return {k: map_batch(fn, *(b[k] for b in batches)) for k in first}
    if isinstance(first, tuple) and hasattr(first, "_fields"):
        return type(first)(*(map_batch(fn, *fields) for fields in zip(*batches)))
    if isinstance(first, tuple | list):
        return type(first)(map_batch(fn, *fields) for fields in zip(*batches))
    return fn(*batches)


def takes_key(fn: Callable[..., Any] | None) -> bool:
    """Whether a transform wants a random ``key=`` (funcnet's say so; others by signature)."""
    if fn is None:
        return False
    declared = getattr(fn, "random", None)
    if isinstance(declared, bool):
        return declared
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "key" or p.kind is p.VAR_KEYWORD for p in params)


def apply_transform(batch: Any, transform: Callable[..., Any], key: Any) -> Any:
    """Applies a batch transform to the inputs: a tuple's or list's first field, else all."""
    call = (lambda x: transform(x, key=key)) if key is not None else transform
    if isinstance(batch, tuple) and hasattr(batch, "_fields") and batch:
        return batch._replace(**{batch._fields[0]: call(batch[0])})
    if isinstance(batch, tuple | list) and batch:
        return type(batch)([call(batch[0]), *batch[1:]])
    return call(batch)


def pad_batch(batch: Any, batch_size: int) -> tuple[Any, np.ndarray]:
    """Zero-pads every array's leading axis to ``batch_size`` and says which rows are real.

    A short last batch padded this way has the shape of every other batch, so a
    ``jax.jit``-compiled step runs it without compiling again; the mask tells the loss and
    the metrics which rows count. NumPy leaves are padded on the host, ``jax.Array`` leaves
    where they are.

    Args:
        batch: an array or a (nested) tuple / list / dict of arrays, all with the same
            leading size ``n <= batch_size``.
        batch_size: the leading size to pad to.

    Returns:
        ``(padded, mask)``: the batch with leading size ``batch_size`` (the batch itself
        when ``n == batch_size``) and a ``(batch_size,)`` bool NumPy array, True for the
        ``n`` real rows.

    Raises:
        ValueError: the batch has more than ``batch_size`` rows.

    Examples:
        >>> import numpy as np
        >>> from funcnet.data import pad_batch
        >>> (x, y), mask = pad_batch((np.ones((2, 3)), np.arange(2)), 4)
        >>> x.shape, y.tolist(), mask.tolist()
        ((4, 3), [0, 1, 0, 0], [True, True, False, False])
    """
    counts: list[int] = []
    map_batch(lambda leaf: counts.append(len(leaf)), batch)
    count = counts[0] if counts else 0
    if count > batch_size:
        raise ValueError(f"pad_batch: the batch has {count} rows, more than {batch_size}")
    mask = np.arange(batch_size) < count
    if count == batch_size:
        return batch, mask
    return map_batch(lambda leaf: _pad_rows(leaf, batch_size), batch), mask


def _pad_rows(leaf: Any, size: int) -> Any:
    widths = [(0, size - len(leaf))] + [(0, 0)] * (np.ndim(leaf) - 1)
    if isinstance(leaf, jax.Array):
        return jnp.pad(leaf, widths)
    leaf = np.asarray(leaf)
    out = np.zeros((size, *leaf.shape[1:]), dtype=leaf.dtype)
    out[: len(leaf)] = leaf
    return out
