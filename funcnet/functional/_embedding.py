"""Embedding lookups with PyTorch's semantics: embedding and embedding_bag."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from funcnet.errors import ShapeError, check_dtype

__all__ = ["embedding", "embedding_bag"]

_BAG_MODES = ("sum", "mean", "max")


def _normalize_padding_idx(owner: str, padding_idx: int | None, num_embeddings: int) -> int | None:
    """PyTorch's rule: negative indices count from the end; out of range is an error."""
    if padding_idx is None:
        return None
    if not -num_embeddings <= padding_idx < num_embeddings:
        raise ValueError(
            f"{owner}: padding_idx must be within num_embeddings ({num_embeddings}), "
            f"got {padding_idx}"
        )
    return padding_idx % num_embeddings


def _check_sparse(owner: str, sparse: bool) -> None:
    """sparse=True asks PyTorch for a sparse gradient tensor, which JAX does not have."""
    if sparse:
        raise ValueError(
            f"{owner}: sparse=True is not supported: it selects PyTorch's sparse gradient "
            "tensors, and JAX has none (jax.grad returns a dense gradient of the weight's "
            "shape, zero in the rows not looked up). Use sparse=False (the default)."
        )


def _check_bag_mode(owner: str, mode: str, scale_grad_by_freq: bool) -> None:
    if mode not in _BAG_MODES:
        raise ValueError(f"{owner}: mode has to be one of sum, mean or max, got {mode!r}")
    if mode == "max" and scale_grad_by_freq:
        raise ValueError(
            f"{owner}: max mode does not support scaling the gradient by the frequency"
        )


def _check_index_range(where: str, ids: jax.typing.ArrayLike, num_embeddings: int) -> None:
    """Raise IndexError for out-of-range concrete ``ids``; traced ids cannot be checked.

    Runs only outside ``jax.jit`` (for example while debugging eagerly), where the values
    are known; the check copies ``ids`` to the host.
    """
    try:
        host = np.asarray(ids)
    except jax.errors.TracerArrayConversionError:
        return
    if host.size and (host.min() < 0 or host.max() >= num_embeddings):
        raise IndexError(
            f"{where}: index out of range: expected indices in [0, {num_embeddings}), got "
            f"min {host.min()}, max {host.max()}"
        )


def _lookup(
    ids: jax.typing.ArrayLike, weight: jax.typing.ArrayLike, padding_idx: int | None
) -> jax.Array:
    ids, weight = jnp.asarray(ids), jnp.asarray(weight)
    # Out-of-range (and negative) ids give NaN rows rather than a silently clamped row;
    # their gradient is dropped.
    out = weight.at[ids].get(mode="fill", wrap_negative_indices=False)
    if padding_idx is not None and padding_idx <= jnp.iinfo(ids.dtype).max:
        # PyTorch never accumulates a gradient into the padding row: block it per position.
        is_pad = (ids == padding_idx)[..., None]
        out = jnp.where(is_pad, lax.stop_gradient(out), out)
    return out


def _renorm(rows: jax.Array, max_norm: float, norm_type: float) -> jax.Array:
    """Rows whose ``norm_type``-norm exceeds ``max_norm`` scaled by
    ``max_norm / (norm + 1e-7)`` (PyTorch's ``embedding_renorm_``).

    PyTorch rescales the stored weight in place without recording it for autograd, so
    its gradient reaches the weight as if the rescaled row were stored: the gradient
    here passes through the rescaling unchanged too.
    """
    rf = rows.astype(jnp.promote_types(rows.dtype, jnp.float32))
    norm = jnp.linalg.norm(rf, ord=norm_type, axis=-1, keepdims=True)
    scale = jnp.where(norm > max_norm, max_norm / (norm + 1e-7), 1.0)
    renormed = lax.stop_gradient((rf * scale).astype(rows.dtype))
    return renormed + (rows - lax.stop_gradient(rows))  # value: renormed; gradient: 1


def _scale_grad_by_freq(rows: jax.Array, ids: jax.Array, num_embeddings: int) -> jax.Array:
    """``rows`` unchanged, with the gradient of each position divided by the number of
    times its id occurs in ``ids`` (PyTorch's ``scale_grad_by_freq``)."""
    counts = jnp.zeros((num_embeddings,), jnp.int32).at[ids.reshape(-1)].add(1, mode="drop")
    per_id = counts.at[ids].get(mode="fill", fill_value=1)[..., None].astype(rows.dtype)
    frozen = lax.stop_gradient(rows)
    return frozen + (rows - frozen) / per_id  # the second term is exactly 0 in value


def _rows(
    ids: jax.Array,
    weight: jax.typing.ArrayLike,
    padding_idx: int | None,
    max_norm: float | None,
    norm_type: float,
    scale_grad_by_freq: bool,
) -> jax.Array:
    """The looked-up rows with PyTorch's padding, max_norm and gradient-scaling rules."""
    rows = _lookup(ids, weight, padding_idx)
    if max_norm is not None:
        rows = _renorm(rows, max_norm, norm_type)
    if scale_grad_by_freq:
        rows = _scale_grad_by_freq(rows, jnp.asarray(ids), jnp.shape(weight)[0])
    return rows


def embedding(
    ids: jax.typing.ArrayLike,
    weight: jax.typing.ArrayLike,
    padding_idx: int | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
    sparse: bool = False,
) -> jax.Array:
    """Rows of ``weight`` picked by integer ``ids`` (``torch.nn.functional.embedding``).

    Args:
        ids: integer indices of any shape (*), each in [0, num_embeddings).
        weight: (num_embeddings, embedding_dim).
        padding_idx: a row (negative counts from the end) that receives no gradient; its
            value is returned as stored.
        max_norm: if given, each returned row whose ``norm_type``-norm exceeds it is
            rescaled to norm ``max_norm`` (PyTorch's factor ``max_norm / (norm + 1e-7)``).
            PyTorch rescales those rows of ``weight`` in place; here ``weight`` is not
            changed, only the returned rows are. The gradient passes through the rescaling
            unchanged, as PyTorch's does.
        norm_type: the p of the p-norm for ``max_norm``.
        scale_grad_by_freq: divide the gradient of each position by the number of times
            its id occurs in ``ids``.
        sparse: must be False: JAX has no sparse gradients (ValueError otherwise).

    Returns:
        (*, embedding_dim) in ``weight``'s dtype.

    Raises:
        ShapeError: for non-integer ``ids``.
        ValueError: for ``sparse=True``.
        IndexError: for out-of-range ``ids`` when their values are known (outside
            ``jax.jit``); under ``jax.jit`` such positions give NaN rows instead
            (PyTorch always raises).
    """
    _check_sparse("embedding", sparse)
    check_dtype("embedding", ids, "integer", "ids")
    num_embeddings = jnp.shape(weight)[0]
    padding_idx = _normalize_padding_idx("embedding", padding_idx, num_embeddings)
    _check_index_range("embedding", ids, num_embeddings)
    return _rows(ids, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq)


def _check_offsets(where: str, offsets: jax.Array, length: int) -> None:
    """ValueError for concrete ``offsets`` that do not start at 0, decrease, or pass the
    end of the ids (PyTorch raises too); traced offsets cannot be checked."""
    try:
        host = np.asarray(offsets)
    except jax.errors.TracerArrayConversionError:
        return
    if host.size and (host[0] != 0 or np.any(np.diff(host) < 0) or host[-1] > length):
        raise ValueError(
            f"{where}: offsets must start at 0, never decrease and not pass the number of "
            f"ids ({length}), got {host.tolist()}"
        )


def _bag_segments(
    where: str, ids: jax.Array, offsets: jax.Array | None, include_last_offset: bool
) -> tuple[jax.Array | None, int]:
    """(the bag of each position of 1-D ``ids``, or None for 2-D ids; the number of bags)."""
    shape = tuple(jnp.shape(ids))
    if len(shape) == 2:
        if offsets is not None:
            raise ValueError(
                f"{where}: 2-D ids (B, N) are B bags of N ids, so offsets has to be None, got "
                f"offsets of shape {tuple(jnp.shape(offsets))}"
            )
        return None, shape[0]
    if len(shape) != 1:
        raise ShapeError(
            f"{where}: expected 1-D ids with offsets or 2-D ids (B, N), got shape {shape}"
        )
    if offsets is None:
        raise ValueError(f"{where}: 1-D ids need offsets (the index in ids where each bag starts)")
    check_dtype(where, offsets, "integer", "offsets")
    min_len = 1 if include_last_offset else 0
    if jnp.ndim(offsets) != 1 or jnp.shape(offsets)[0] < min_len:
        raise ShapeError(
            f"{where}: expected 1-D offsets{' with at least 1 entry' if min_len else ''}, got "
            f"shape {tuple(jnp.shape(offsets))}"
        )
    _check_offsets(where, offsets, shape[0])
    offsets = jnp.asarray(offsets)
    num_bags = offsets.shape[0] - min_len
    # Positions before offsets[0] get bag -1 and (include_last_offset) those from
    # offsets[-1] on get bag num_bags: the segment reductions drop both.
    positions = jnp.arange(shape[0], dtype=offsets.dtype)
    return jnp.searchsorted(offsets, positions, side="right") - 1, num_bags


def _bag_sum(values: jax.Array, segments: jax.Array | None, num_bags: int) -> jax.Array:
    if segments is None:
        return jnp.sum(values, axis=1)
    return jax.ops.segment_sum(values, segments, num_bags)


def _reduce_bags(
    rows: jax.Array,
    keep: jax.Array,
    segments: jax.Array | None,
    num_bags: int,
    mode: str,
    per_sample_weights: jax.Array | None,
) -> jax.Array:
    """Sum, mean or max of the kept ``rows`` of each bag; 0 for a bag with none kept."""
    count = _bag_sum(keep.astype(rows.dtype), segments, num_bags)[:, None]
    kept = keep[..., None]
    if mode == "max":
        masked = jnp.where(kept, rows, -jnp.inf)
        if segments is None:
            best = jnp.max(masked, axis=1, initial=-jnp.inf)
        else:
            best = jax.ops.segment_max(masked, segments, num_bags)
        return jnp.where(count > 0, best, 0)
    if per_sample_weights is not None:
        rows = rows * jnp.asarray(per_sample_weights, rows.dtype)[..., None]
    total = _bag_sum(jnp.where(kept, rows, 0), segments, num_bags)
    return total if mode == "sum" else total / jnp.maximum(count, 1)


def _check_per_sample_weights(
    where: str, per_sample_weights: jax.Array | None, ids: jax.Array, mode: str
) -> None:
    if per_sample_weights is None:
        return
    if mode != "sum":
        raise ValueError(
            f"{where}: per_sample_weights is only supported for mode='sum' (got mode={mode!r})"
        )
    check_dtype(where, per_sample_weights, "floating", "per_sample_weights")
    if jnp.shape(per_sample_weights) != jnp.shape(ids):
        raise ShapeError(
            f"{where}: expected per_sample_weights of the ids' shape {tuple(jnp.shape(ids))}, "
            f"got shape {tuple(jnp.shape(per_sample_weights))}"
        )


def _embedding_bag(
    where: str,
    ids: jax.typing.ArrayLike,
    weight: jax.typing.ArrayLike,
    offsets: jax.Array | None,
    max_norm: float | None,
    norm_type: float,
    scale_grad_by_freq: bool,
    mode: str,
    per_sample_weights: jax.Array | None,
    include_last_offset: bool,
    padding_idx: int | None,
) -> jax.Array:
    """:func:`embedding_bag` with ``where`` naming the caller in messages; ``padding_idx``
    already normalised."""
    check_dtype(where, ids, "integer", "ids")
    segments, num_bags = _bag_segments(where, ids, offsets, include_last_offset)
    _check_per_sample_weights(where, per_sample_weights, ids, mode)
    num_embeddings = jnp.shape(weight)[0]
    _check_index_range(where, ids, num_embeddings)
    ids = jnp.asarray(ids)
    rows = _rows(ids, weight, None, max_norm, norm_type, scale_grad_by_freq)
    keep = jnp.ones(ids.shape, bool) if padding_idx is None else ids != padding_idx
    acc = jnp.promote_types(rows.dtype, jnp.float32)  # 16-bit tables sum in float32
    out = _reduce_bags(rows.astype(acc), keep, segments, num_bags, mode, per_sample_weights)
    return out.astype(jnp.result_type(weight))


def embedding_bag(
    ids: jax.typing.ArrayLike,
    weight: jax.typing.ArrayLike,
    offsets: jax.typing.ArrayLike | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
    mode: str = "mean",
    sparse: bool = False,
    per_sample_weights: jax.Array | None = None,
    include_last_offset: bool = False,
    padding_idx: int | None = None,
) -> jax.Array:
    """Sums, means or maxima of bags of embeddings (``torch.nn.functional.embedding_bag``).

    Bags are the rows of 2-D ``ids`` (B, N), or, for 1-D ``ids``, the runs starting at
    each entry of ``offsets``: bag b is ``ids[offsets[b]:offsets[b + 1]]`` and the last
    bag runs to the end (with ``include_last_offset``, ``offsets`` has B + 1 entries and
    its last one ends bag B − 1). The number of bags is static (the shape of ``offsets``),
    so ``offsets`` may be traced under ``jax.jit``. Ids equal to ``padding_idx`` are left
    out of their bag (not counted by the mean); an empty bag gives zeros in every mode.

    Args:
        ids: integer (B, N), or (L,) with ``offsets``.
        weight: (num_embeddings, embedding_dim).
        offsets: (B,) integer start positions for 1-D ``ids`` ((B + 1,) with
            ``include_last_offset``); None for 2-D ``ids``. Must start at 0 and never
            decrease (checked when its values are known; under ``jax.jit``, positions
            before ``offsets[0]`` are left out).
        max_norm: if given, looked-up rows with a larger ``norm_type``-norm are rescaled
            to it, as :func:`embedding` (``weight`` itself is not changed).
        norm_type: the p of the p-norm for ``max_norm``.
        scale_grad_by_freq: divide each position's gradient by the number of times its
            id occurs in ``ids`` (not with ``mode="max"``, as PyTorch).
        mode: ``"sum"``, ``"mean"`` or ``"max"`` (elementwise over the bag's rows).
        sparse: must be False: JAX has no sparse gradients.
        per_sample_weights: floating, of ``ids``' shape: each row is scaled by its weight
            before the sum (``mode="sum"`` only, as PyTorch).
        include_last_offset: whether ``offsets`` ends with the end of the last bag.
        padding_idx: an id left out of every bag (so its row receives no gradient);
            negative counts from the end.

    Returns:
        (B, embedding_dim) in ``weight``'s dtype (16-bit tables are reduced in float32).

    Raises:
        ShapeError: for non-integer ``ids``/``offsets``, ids that are neither 1-D nor
            2-D, offsets that are not 1-D, or ``per_sample_weights`` of another shape.
        ValueError: offsets with 2-D ids or none with 1-D ids, known offsets that do not
            start at 0 or decrease, ``per_sample_weights`` without ``mode="sum"``, an
            unknown ``mode``, ``scale_grad_by_freq`` with ``mode="max"``, ``sparse=True``.
        IndexError: for out-of-range ``ids`` whose values are known (NaN under jit).
    """
    _check_sparse("embedding_bag", sparse)
    _check_bag_mode("embedding_bag", mode, scale_grad_by_freq)
    num_embeddings = jnp.shape(weight)[0]
    padding_idx = _normalize_padding_idx("embedding_bag", padding_idx, num_embeddings)
    return _embedding_bag(
        "embedding_bag",
        ids,
        weight,
        offsets,
        max_norm,
        norm_type,
        scale_grad_by_freq,
        mode,
        per_sample_weights,
        include_last_offset,
        padding_idx,
    )
