"""Classification losses over a class axis (the last axis): cross_entropy, nll_loss,
linear_cross_entropy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from funcnet.errors import ShapeError, check_dtype
from funcnet.losses._reduction import (
    Reduction,
    _check_reduction,
    _check_shape,
    _float_input,
    _is_concrete_number,
    _reduce,
    _row_mask,
)

__all__ = ["cross_entropy", "linear_cross_entropy", "nll_loss"]


def _class_weight(fn: str, weight: ArrayLike | None, num_classes: int, dtype) -> jax.Array | None:
    if weight is None:
        return None
    w = jnp.asarray(weight)
    _check_shape(fn, w, (num_classes,), "weight", "one per class, the input's last axis")
    return w.astype(dtype)


def _along_last(weight: jax.Array, like: jax.Array) -> jax.Array:
    """Class weights ``(C,)`` broadcast explicitly to ``like``'s ``(..., C)``."""
    return jnp.broadcast_to(weight, like.shape)


def _check_ignore_index(fn: str, ignore_index: int) -> None:
    if not isinstance(ignore_index, int) or isinstance(ignore_index, bool):
        raise TypeError(f"{fn}: ignore_index must be a Python int, got {ignore_index!r}")


def _weighted_nll(
    log_probs: jax.Array,
    target: jax.Array,
    weight: jax.Array | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float | jax.Array = 0.0,
    mask: ArrayLike | None = None,
    lse: jax.Array | None = None,
) -> jax.Array:
    """PyTorch's weighted NLL (and label-smoothed cross-entropy) on class indices.

    ``log_probs`` is ``(..., C)``, ``target`` integer ``(...)``. The mean divides by the
    summed weights of the non-ignored targets, so it is ``nan`` when every target is
    ignored, as in PyTorch. With ``lse`` (``logsumexp`` of the logits, ``(...)``),
    ``log_probs`` holds the logits themselves and only the target's log-probability
    ``logit[y] - lse`` is formed (no smoothing then).
    """
    num_classes = log_probs.shape[-1]
    keep = target != ignore_index
    m = _row_mask(mask, target.shape)
    if m is not None:  # masked rows count like ignored targets
        keep = keep & m
    in_range = (target >= 0) & (target < num_classes)
    index = jnp.where(keep & in_range, target, 0).astype(jnp.int32)
    picked = jnp.take_along_axis(log_probs, index[..., None], axis=-1)[..., 0]
    if lse is not None:
        picked = picked - lse
    w = jnp.ones_like(picked) if weight is None else weight[index]
    w = jnp.where(keep, w, 0.0)
    loss = -w * picked
    if not (_is_concrete_number(label_smoothing) and label_smoothing == 0):
        # PyTorch: (1 - eps) * nll + eps / C * sum_c(-w_c * log p_c), ignored targets 0.
        per_class = log_probs if weight is None else log_probs * _along_last(weight, log_probs)
        smooth = jnp.where(keep, -jnp.sum(per_class, axis=-1), 0.0)
        loss = (1.0 - label_smoothing) * loss + (label_smoothing / num_classes) * smooth
    loss = jnp.where(keep, loss, jnp.zeros((), loss.dtype))  # masked rows may hold nan
    # Class indices cannot be checked under jit; make a bad one visible instead of silent.
    loss = jnp.where(keep & ~in_range, jnp.nan, loss)
    if reduction == "mean":
        return jnp.sum(loss) / jnp.sum(w)
    return _reduce(loss, reduction, mask)


def _index_terms(
    logits: jax.Array, target: jax.Array, ignore_index: int, rows: jax.Array | None
) -> tuple[jax.Array, jax.Array]:
    """Per-element unweighted cross-entropy on class indices, and which elements count.

    ``logsumexp(logits) - logits[y]``: the memory-lean form (no ``(..., C)``
    log-probabilities are kept for the backward pass; a large vocabulary's logits are the
    biggest activation of a language model) in the fewest operations. Ignored targets and
    rows where ``rows`` is False give 0 and do not count; an index outside ``[0, C)``
    gives ``nan`` (PyTorch raises).
    """
    keep = target != ignore_index
    if rows is not None:
        keep = keep & rows
    valid = keep & (target >= 0) & (target < logits.shape[-1])
    index = jnp.where(valid, target, 0)[..., None]
    picked = jnp.take_along_axis(logits, index, axis=-1, mode="promise_in_bounds")[..., 0]
    nll = jax.nn.logsumexp(logits, axis=-1) - picked
    loss = jnp.where(valid, nll, jnp.where(keep, jnp.nan, 0.0).astype(nll.dtype))
    return loss, keep


def _reduce_counted(loss: jax.Array, keep: jax.Array, reduction: str) -> jax.Array:
    """PyTorch's reduction of index losses: the mean divides by the counted elements."""
    if reduction == "mean":
        return jnp.sum(loss) / jnp.sum(keep, dtype=loss.dtype)
    return jnp.sum(loss) if reduction == "sum" else loss


def cross_entropy(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    *,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Cross-entropy between logits and class indices or class probabilities.

    As ``torch.nn.functional.cross_entropy``, but the class axis is the **last** axis of
    ``input`` (PyTorch: axis 1). With ``log_p = log_softmax(input, axis=-1)`` (computed
    stably by log-sum-exp), ``eps = label_smoothing`` and ``w`` the class weights (all 1
    when ``weight`` is None):

    Class indices (integer ``target``), per element::

        loss = (1 - eps) * w[y] * -log_p[y] + eps / C * sum_c(w[c] * -log_p[c])

    and ``0`` where ``target == ignore_index``. ``"mean"`` is
    ``sum(loss) / sum(w[y] over non-ignored targets)``: ``nan`` when every target is
    ignored, as in PyTorch.

    Class probabilities (floating ``target``), with ``q = (1 - eps) * target + eps / C``::

        loss = -sum_c(w[c] * q[c] * log_p[c])

    and ``"mean"`` divides by the number of elements of ``input.shape[:-1]`` (not by the
    weights), as PyTorch does.

    Args:
        input: logits ``(..., C)``, floating dtype (bfloat16 is computed in float32).
        target: class indices, an integer array of shape ``input.shape[:-1]`` with values
            in ``[0, C)`` or ``ignore_index``; or class probabilities, a floating array of
            shape ``input.shape``. The dtype decides which.
        weight: optional class weights ``(C,)``.
        ignore_index: a class-index target with this value contributes nothing, neither to
            the loss nor to the mean's denominator. Not supported (must be negative) with
            probability targets, as in PyTorch.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        label_smoothing: ``eps`` in ``[0, 1]``. A traced value is accepted (not validated).
        mask: optional bool ``(N,)`` (or any leading part of the loss's shape): elements
            of rows where it is False count in neither the sum nor the mean's
            denominator, as if absent (a padded last batch). Not in PyTorch.

    Returns:
        A scalar, or the per-element loss of shape ``input.shape[:-1]`` for
        ``reduction="none"``; float32 (float64 for float64 input). An index target outside
        ``[0, C)`` that is not ``ignore_index`` gives ``nan`` (PyTorch raises).

    Raises:
        ShapeError: ``input`` is not floating, or ``target`` or ``weight`` has the wrong
            shape or dtype.
        ValueError: unknown ``reduction``, ``label_smoothing`` outside ``[0, 1]``, or a
            non-negative ``ignore_index`` with probability targets.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet.losses import cross_entropy
        >>> logits = jnp.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
        >>> round(float(cross_entropy(logits, jnp.array([0, 2]))), 4)
        0.6691
        >>> round(float(cross_entropy(logits, jnp.array([0, -100]))), 4)  # ignored
        0.2395
    """
    fn = "cross_entropy"
    _check_reduction(fn, reduction)
    _check_ignore_index(fn, ignore_index)
    if _is_concrete_number(label_smoothing) and not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{fn}: label_smoothing must be in [0, 1], got {label_smoothing}")
    x = _float_input(fn, input)
    if x.ndim == 0:
        raise ShapeError(f"{fn}: expected input of shape (..., C) with a class axis, got ()")
    num_classes = x.shape[-1]
    w = _class_weight(fn, weight, num_classes, x.dtype)
    t = jnp.asarray(target)
    no_smoothing = _is_concrete_number(label_smoothing) and label_smoothing == 0

    if jnp.issubdtype(t.dtype, jnp.floating):
        _check_shape(fn, t, x.shape, "probability target", "the input's shape")
        if ignore_index >= 0:
            raise ValueError(f"{fn}: ignore_index is not supported for probability targets")
        q = t.astype(x.dtype)
        if not no_smoothing:
            q = q * (1.0 - label_smoothing) + label_smoothing / num_classes
        log_probs = jax.nn.log_softmax(x, axis=-1)
        per_class = log_probs * q if w is None else log_probs * q * _along_last(w, q)
        return _reduce(-jnp.sum(per_class, axis=-1), reduction, mask)

    if not jnp.issubdtype(t.dtype, jnp.integer):
        raise ShapeError(
            f"{fn}: expected an integer (class index) or floating (probability) target, "
            f"got dtype {t.dtype}"
        )
    no_class_axis = "the input's shape without its last, class axis"
    _check_shape(fn, t, x.shape[:-1], "class-index target", no_class_axis)
    if no_smoothing and w is None:
        loss, keep = _index_terms(x, t, ignore_index, _row_mask(mask, t.shape))
        return _reduce_counted(loss, keep, reduction)
    if no_smoothing:
        lse = jax.nn.logsumexp(x, axis=-1)
        return _weighted_nll(x, t, w, ignore_index, reduction, 0.0, mask, lse=lse)
    log_probs = jax.nn.log_softmax(x, axis=-1)
    return _weighted_nll(log_probs, t, w, ignore_index, reduction, label_smoothing, mask)


def linear_cross_entropy(
    input: ArrayLike,
    weight: ArrayLike,
    target: ArrayLike,
    bias: ArrayLike | None = None,
    *,
    chunks: int = 1,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    mask: ArrayLike | None = None,
    logits_dtype: jnp.dtype | None = None,
) -> jax.Array:
    """``cross_entropy(input @ weight + bias, target)`` without all the logits at once.

    The output projection of a language model fused with its loss: the rows of ``input``
    are cut into ``chunks`` slices, and each slice's logits are computed, reduced to its
    losses and dropped inside a ``lax.scan``; the backward pass recomputes them slice by
    slice (``jax.checkpoint``). With a 50k vocabulary the ``(tokens, vocab)`` logits are
    the largest activation of a GPT by far; here only ``tokens / chunks`` rows of them
    exist at a time. Values and gradients equal the unfused form's (to rounding).
    PyTorch has no such function; this is the "chunked" or "fused linear" cross-entropy
    of large-model trainers.

    Args:
        input: hidden states ``(..., D)``, floating (bfloat16 stays bfloat16 in the matmul).
        weight: ``(D, C)``, the layout of a funcnet ``Linear``'s weight. A tied embedding
            table ``(C, D)`` is passed as ``table.T`` (XLA folds the transpose into the
            matmul).
        target: class indices, integer, of shape ``input.shape[:-1]``.
        bias: optional ``(C,)``.
        chunks: how many slices the ``N = prod(input.shape[:-1])`` rows are cut into, each
            of ``ceil(N / chunks)`` rows (the last one padded with rows that do not count
            when ``chunks`` does not divide ``N``). ``1`` computes all logits at once (no
            recomputation).
        ignore_index: a target with this value counts in neither the sum nor the mean.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``, as :func:`cross_entropy`.
        mask: optional bool ``(N,)`` (a leading part of ``target``'s shape): rows where it
            is False count as absent.
        logits_dtype: dtype of the matmul's result (default: float32, accumulated in
            float32 whatever the inputs' dtype); ``jnp.bfloat16`` halves each slice's
            logits. The loss itself is computed in float32.

    Returns:
        A float32 scalar, or the per-element loss of shape ``target.shape`` for
        ``reduction="none"``.

    Raises:
        ShapeError: ``input`` not floating, ``target`` not integer, or a shape that does
            not fit (named with both shapes).
        ValueError: ``chunks`` is not a positive int, or an unknown ``reduction``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from funcnet.losses import cross_entropy, linear_cross_entropy
        >>> x = jax.random.normal(jax.random.key(0), (8, 16))
        >>> w = jax.random.normal(jax.random.key(1), (16, 100))
        >>> y = jnp.arange(8)
        >>> bool(jnp.allclose(linear_cross_entropy(x, w, y, chunks=4), cross_entropy(x @ w, y)))
        True
    """
    fn = "linear_cross_entropy"
    _check_reduction(fn, reduction)
    _check_ignore_index(fn, ignore_index)
    x = jnp.asarray(input)
    check_dtype(fn, x, "floating", "input")
    if x.ndim == 0:
        raise ShapeError(f"{fn}: expected input of shape (..., D), got ()")
    w = jnp.asarray(weight)
    if w.ndim != 2 or w.shape[0] != x.shape[-1]:
        raise ShapeError(
            f"{fn}: expected weight of shape ({x.shape[-1]}, C) for input {tuple(x.shape)}, "
            f"got {tuple(w.shape)}"
        )
    t = jnp.asarray(target)
    check_dtype(fn, t, "integer", "target")
    _check_shape(fn, t, x.shape[:-1], "target", "the input's shape without its last axis")
    b = None if bias is None else jnp.asarray(bias)
    if b is not None:
        _check_shape(fn, b, (w.shape[1],), "bias", "the number of classes")
    rows = _row_mask(mask, t.shape)
    n = t.size
    if not isinstance(chunks, int) or isinstance(chunks, bool) or chunks < 1:
        raise ValueError(f"{fn}: chunks must be a positive int, got {chunks!r}")
    out_dtype = jnp.float32 if logits_dtype is None else logits_dtype

    def terms(xc: jax.Array, tc: jax.Array, rc: jax.Array | None):
        logits = jnp.matmul(xc, w, preferred_element_type=out_dtype)
        if b is not None:
            logits = logits + b.astype(out_dtype)[None, :]
        return _index_terms(logits.astype(jnp.float32), tc, ignore_index, rc)

    flat = (x.reshape(n, -1), t.reshape(n), None if rows is None else rows.reshape(n))
    if chunks == 1:
        loss, keep = terms(*flat)
    else:
        per = -(-n // chunks)  # rows per chunk; the last is padded with rows that count not
        if per * chunks != n:
            pad = per * chunks - n
            live = jnp.ones((n,), bool) if flat[2] is None else flat[2]
            flat = (
                jnp.pad(flat[0], ((0, pad), (0, 0))),
                jnp.pad(flat[1], (0, pad)),
                jnp.pad(live, (0, pad)),
            )
        sliced = [None if a is None else a.reshape(chunks, per, *a.shape[1:]) for a in flat]
        body = jax.checkpoint(lambda _, xs: (None, terms(*xs)))
        _, (loss, keep) = jax.lax.scan(body, None, sliced)
        loss, keep = loss.reshape(-1)[:n], keep.reshape(-1)[:n]
    return _reduce_counted(loss.reshape(t.shape), keep.reshape(t.shape), reduction)


def nll_loss(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    *,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Negative log-likelihood of class indices, as ``torch.nn.functional.nll_loss``.

    The class axis is the **last** axis of ``input`` (PyTorch: axis 1). Per element
    ``loss = -w[y] * input[..., y]`` (``w`` all 1 when ``weight`` is None), ``0`` where
    ``target == ignore_index``; ``"mean"`` is ``sum(loss) / sum(w[y] over non-ignored
    targets)``, ``nan`` when every target is ignored (as PyTorch).
    ``nll_loss(log_softmax(x), y)`` equals ``cross_entropy(x, y)``.

    Args:
        input: log-probabilities ``(..., C)``, floating dtype.
        target: class indices, integer, shape ``input.shape[:-1]``, values in ``[0, C)`` or
            ``ignore_index``.
        weight: optional class weights ``(C,)``.
        ignore_index: targets with this value are left out of the loss and the mean.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        mask: optional bool ``(N,)`` (or any leading part of the loss's shape): elements
            of rows where it is False count in neither the sum nor the mean's
            denominator, as if absent (a padded last batch). Not in PyTorch.

    Returns:
        A scalar, or ``input.shape[:-1]`` for ``reduction="none"``; float32 (float64 for
        float64 input). An index outside ``[0, C)`` that is not ``ignore_index`` gives
        ``nan`` (PyTorch raises).

    Raises:
        ShapeError: ``input`` is not floating, ``target`` is not integer or has the wrong
            shape, or ``weight`` is not ``(C,)``.
        ValueError: unknown ``reduction``.
    """
    fn = "nll_loss"
    _check_reduction(fn, reduction)
    _check_ignore_index(fn, ignore_index)
    x = _float_input(fn, input)
    if x.ndim == 0:
        raise ShapeError(f"{fn}: expected input of shape (..., C) with a class axis, got ()")
    w = _class_weight(fn, weight, x.shape[-1], x.dtype)
    t = jnp.asarray(target)
    check_dtype(fn, t, "integer", "target")
    _check_shape(fn, t, x.shape[:-1], "target", "the input's shape without its last, class axis")
    return _weighted_nll(x, t, w, ignore_index, reduction, mask=mask)
