"""Embedding and ranking losses: cosine_embedding_loss, margin_ranking_loss,
hinge_embedding_loss, triplet_margin_loss, triplet_margin_with_distance_loss."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from funcnet import functional as F
from funcnet.errors import ShapeError
from funcnet.losses._reduction import (
    Reduction,
    _check_reduction,
    _check_shape,
    _compute_dtype,
    _elementwise_args,
    _float_input,
    _is_concrete_number,
    _real_target,
    _reduce,
)

__all__ = [
    "cosine_embedding_loss",
    "hinge_embedding_loss",
    "margin_ranking_loss",
    "triplet_margin_loss",
    "triplet_margin_with_distance_loss",
]

# PyTorch's cosine_embedding_loss adds it to both squared norms.
_COSINE_EPS = 1e-12


def _clamp_min0(z: jax.Array) -> jax.Array:
    """``max(z, 0)`` with PyTorch's ``clamp_min`` gradient: 1 at ``z == 0``, not 0.5."""
    return jnp.where(z >= 0, z, jnp.zeros((), z.dtype))


def _same_shape_inputs(
    fn: str, arrays: tuple[ArrayLike, ...], names: tuple[str, ...], ndims: tuple[int, ...]
) -> list[jax.Array]:
    """The arrays, floating, of one shape with ``ndim`` in ``ndims``, in the first one's
    compute dtype."""
    first = _float_input(fn, arrays[0], names[0])
    if first.ndim not in ndims:
        layouts = " or ".join({1: "(D,)", 2: "(N, D)"}[n] for n in ndims)
        raise ShapeError(f"{fn}: expected {names[0]} of shape {layouts}, got {first.shape}")
    out = [first]
    for a, name in zip(arrays[1:], names[1:]):
        x = _float_input(fn, a, name)
        _check_shape(fn, x, first.shape, name, f"the {names[0]}'s shape")
        out.append(x.astype(first.dtype))
    return out


def cosine_embedding_loss(
    input1: ArrayLike,
    input2: ArrayLike,
    target: ArrayLike,
    *,
    margin: float = 0.0,
    reduction: Reduction = "mean",
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Whether pairs are alike, by cosine similarity, as ``torch.nn.functional.cosine_embedding_loss``.

    With ``cos = <x1, x2> / sqrt((|x1|² + 1e-12) (|x2|² + 1e-12))`` over the last axis::

        loss = 1 - cos                 where target == 1
               max(0, cos - margin)    where target == -1
               0                       for any other target value (as PyTorch)

    Args:
        input1: ``(N, D)`` or ``(D,)``, floating.
        input2: the shape of ``input1``, floating (cast to ``input1``'s compute dtype).
        target: ``(N,)`` (``()`` for unbatched input) of 1 and -1; float or integer.
        margin: subtracted from the cosine of dissimilar pairs; PyTorch suggests
            ``[0, 0.5]``.
        reduction: ``"mean"`` (over the pairs), ``"sum"`` or ``"none"``.
        mask: optional bool ``(N,)``: pairs where it is False count in neither the sum nor
            the mean's denominator (a padded last batch). Not in PyTorch.

    Returns:
        A scalar, or ``(N,)`` for ``reduction="none"``; float32 (float64 for float64 input).

    Raises:
        ShapeError: inputs not floating, of another shape than ``(N, D)`` or ``(D,)`` or
            than each other, or a ``target`` that is not ``(N,)``.
        ValueError: unknown ``reduction``.
    """
    fn = "cosine_embedding_loss"
    _check_reduction(fn, reduction)
    x1, x2 = _same_shape_inputs(fn, (input1, input2), ("input1", "input2"), (1, 2))
    y = _real_target(fn, target, x1.dtype)
    _check_shape(fn, y, x1.shape[:-1], "target", "the inputs' shape without the last axis")
    dot = jnp.sum(x1 * x2, axis=-1)
    norms = (jnp.sum(x1 * x1, axis=-1) + _COSINE_EPS) * (jnp.sum(x2 * x2, axis=-1) + _COSINE_EPS)
    cos = dot / jnp.sqrt(norms)
    zero = jnp.zeros((), cos.dtype)
    loss = jnp.where(y == 1, 1.0 - cos, zero) + jnp.where(y == -1, _clamp_min0(cos - margin), zero)
    return _reduce(loss, reduction, mask)


def margin_ranking_loss(
    input1: ArrayLike,
    input2: ArrayLike,
    target: ArrayLike,
    *,
    margin: float = 0.0,
    reduction: Reduction = "mean",
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Whether ``input1`` should rank above ``input2``, as ``torch.nn.functional.margin_ranking_loss``.

    Per element ``loss = max(0, -target * (input1 - input2) + margin)``: ``target = 1``
    asks for ``input1 > input2 + margin``, ``-1`` for the opposite.

    Args:
        input1: scores ``(*)``, floating.
        input2: scores of ``input1``'s shape, floating (cast to ``input1``'s compute dtype).
        target: ``(*)`` of 1 and -1, the inputs' shape; float or integer.
        margin: the gap asked for.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        mask: optional bool ``(N,)`` (or any leading part of the loss's shape): elements
            of rows where it is False count in neither the sum nor the mean's
            denominator, as if absent (a padded last batch). Not in PyTorch.

    Returns:
        A scalar, or ``(*)`` for ``reduction="none"``; float32 (float64 for float64 input).

    Raises:
        ShapeError: inputs not floating, or shapes that differ (PyTorch broadcasts).
        ValueError: unknown ``reduction``.
    """
    fn = "margin_ranking_loss"
    x1, y = _elementwise_args(fn, input1, target, reduction)
    x2 = _float_input(fn, input2, "input2")
    _check_shape(fn, x2, x1.shape, "input2", "the shape of input1")
    return _reduce(_clamp_min0(-y * (x1 - x2.astype(x1.dtype)) + margin), reduction, mask)


def hinge_embedding_loss(
    input: ArrayLike,
    target: ArrayLike,
    *,
    margin: float = 1.0,
    reduction: Reduction = "mean",
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Hinge loss of distances, as ``torch.nn.functional.hinge_embedding_loss``.

    Per element, with ``x = input`` (typically a distance, e.g. an L1 distance of a pair)::

        loss = x                     where target == 1
               max(0, margin - x)    where target == -1

    (both terms for any other target value, as PyTorch).

    Args:
        input: ``(*)``, floating.
        target: ``(*)`` of 1 and -1, the input's shape; float or integer.
        margin: the distance that dissimilar pairs should exceed.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        mask: optional bool ``(N,)`` (or any leading part of the loss's shape): elements
            of rows where it is False count in neither the sum nor the mean's
            denominator, as if absent (a padded last batch). Not in PyTorch.

    Returns:
        A scalar, or ``(*)`` for ``reduction="none"``; float32 (float64 for float64 input).

    Raises:
        ShapeError: ``input`` is not floating or ``target`` has another shape.
        ValueError: unknown ``reduction``.
    """
    x, y = _elementwise_args("hinge_embedding_loss", input, target, reduction)
    zero = jnp.zeros((), x.dtype)
    loss = jnp.where(y != 1, _clamp_min0(margin - x), zero) + jnp.where(y != -1, x, zero)
    return _reduce(loss, reduction, mask)


def _check_margin(fn: str, margin: float) -> None:
    if _is_concrete_number(margin) and margin <= 0:
        raise ValueError(f"{fn}: margin must be > 0, got {margin}")


def _triplet(
    fn: str,
    distance: Callable[[jax.Array, jax.Array], jax.Array],
    arrays: tuple[jax.Array, jax.Array, jax.Array],
    margin: float,
    swap: bool,
    reduction: str,
    mask: ArrayLike | None,
) -> jax.Array:
    """``max(0, margin + d(anchor, positive) - d(anchor, negative))``, reduced."""
    anchor, positive, negative = arrays
    d_pos = jnp.asarray(distance(anchor, positive))
    d_neg = jnp.asarray(distance(anchor, negative))
    if swap:  # Balntas et al.: the harder of the two negatives' distances
        d_neg = jnp.minimum(d_neg, jnp.asarray(distance(positive, negative)))
    if d_pos.shape != d_neg.shape:
        raise ShapeError(
            f"{fn}: expected the distances of both pairs to have one shape, got "
            f"{d_pos.shape} and {d_neg.shape}"
        )
    dtype = jnp.result_type(d_pos, d_neg)
    dtype = _compute_dtype(dtype) if jnp.issubdtype(dtype, jnp.floating) else jnp.float32
    loss = _clamp_min0(margin + d_pos.astype(dtype) - d_neg.astype(dtype))
    return _reduce(loss, reduction, mask)


def triplet_margin_loss(
    anchor: ArrayLike,
    positive: ArrayLike,
    negative: ArrayLike,
    *,
    margin: float = 1.0,
    p: float = 2.0,
    eps: float = 1e-6,
    swap: bool = False,
    reduction: Reduction = "mean",
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Triplet loss with p-norm distances, as ``torch.nn.functional.triplet_margin_loss``.

    With ``d(a, b) = ||a - b + eps||_p`` over the last axis
    (:func:`funcnet.functional.pairwise_distance`, as PyTorch's)::

        loss = max(0, margin + d(anchor, positive) - d(anchor, negative))

    With ``swap=True`` the negative's distance is ``min(d(anchor, negative),
    d(positive, negative))`` (Balntas et al., 2016).

    Args:
        anchor: ``(N, D)`` or ``(D,)``, floating.
        positive: the anchor's shape, floating.
        negative: the anchor's shape, floating (both cast to the anchor's compute dtype).
        margin: the gap asked for, ``> 0``.
        p: the norm's degree: any number (``math.inf`` for the largest absolute
            difference, 0 for the count of non-zero differences).
        eps: added to the differences, keeping the norm's gradient finite.
        swap: use the distance swap.
        reduction: ``"mean"`` (over the triplets), ``"sum"`` or ``"none"``.
        mask: optional bool ``(N,)``: triplets where it is False count in neither the sum
            nor the mean's denominator (a padded last batch). Not in PyTorch.

    Returns:
        A scalar, or ``(N,)`` for ``reduction="none"``; float32 (float64 for float64 input).

    Raises:
        ShapeError: inputs not floating, not ``(N, D)`` or ``(D,)``, or of different
            shapes (PyTorch broadcasts).
        ValueError: unknown ``reduction`` or ``margin <= 0``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet.losses import triplet_margin_loss
        >>> a, pos, neg = jnp.zeros((1, 2)), jnp.array([[0.0, 1.0]]), jnp.array([[3.0, 0.0]])
        >>> round(float(triplet_margin_loss(a, pos, neg, margin=3.0)), 4)
        1.0
    """
    fn = "triplet_margin_loss"
    _check_reduction(fn, reduction)
    _check_margin(fn, margin)
    names = ("anchor", "positive", "negative")
    arrays = _same_shape_inputs(fn, (anchor, positive, negative), names, (1, 2))
    distance = functools.partial(F.pairwise_distance, p=p, eps=eps)
    return _triplet(fn, distance, tuple(arrays), margin, swap, reduction, mask)


def triplet_margin_with_distance_loss(
    anchor: ArrayLike,
    positive: ArrayLike,
    negative: ArrayLike,
    *,
    distance_function: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    margin: float = 1.0,
    swap: bool = False,
    reduction: Reduction = "mean",
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Triplet loss with any distance, as ``torch.nn.functional.triplet_margin_with_distance_loss``.

    ``loss = max(0, margin + d(anchor, positive) - d(anchor, negative))`` with
    ``d = distance_function`` (default: :func:`funcnet.functional.pairwise_distance`,
    Euclidean with ``eps=1e-6``); ``swap`` as in :func:`triplet_margin_loss`.

    Args:
        anchor: ``(N, D)`` or ``(D,)`` for the default distance; any arrays of one rank
            that ``distance_function`` takes otherwise.
        positive: like ``anchor``.
        negative: like ``anchor``.
        distance_function: ``d(x1, x2) -> (N,)`` distances (``()`` unbatched), e.g.
            ``lambda a, b: 1 - F.cosine_similarity(a, b)``; it must be a JAX function.
        margin: the gap asked for, ``> 0``.
        swap: use the distance swap.
        reduction: ``"mean"`` (over the triplets), ``"sum"`` or ``"none"``.
        mask: optional bool ``(N,)``: triplets where it is False count in neither the sum
            nor the mean's denominator (a padded last batch). Not in PyTorch.

    Returns:
        A scalar, or the distances' shape ``(N,)`` for ``reduction="none"``; float32
        (float64 for float64 distances).

    Raises:
        ShapeError: inputs of different ranks, or (default distance) not floating or of
            different shapes, or distances of different shapes.
        ValueError: unknown ``reduction`` or ``margin <= 0``.
    """
    fn = "triplet_margin_with_distance_loss"
    _check_reduction(fn, reduction)
    _check_margin(fn, margin)
    names = ("anchor", "positive", "negative")
    if distance_function is None:
        arrays = _same_shape_inputs(fn, (anchor, positive, negative), names, (1, 2))
        distance_function = F.pairwise_distance
    else:
        arrays = [jnp.asarray(a) for a in (anchor, positive, negative)]
        if len({a.ndim for a in arrays}) != 1:
            shapes = ", ".join(f"{n} {a.shape}" for n, a in zip(names, arrays))
            raise ShapeError(
                f"{fn}: expected anchor, positive and negative of one rank, got {shapes}"
            )
    return _triplet(fn, distance_function, tuple(arrays), margin, swap, reduction, mask)
