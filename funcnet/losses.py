"""Loss functions with PyTorch's definitions, as pure JAX functions.

Every loss is ``loss(input, target, ...)`` as in ``torch.nn.functional`` and returns the
reduced loss (``reduction="mean"`` or ``"sum"``, a scalar) or the per-element loss
(``reduction="none"``).

Channels last:
    funcnet keeps images as ``(N, H, W, C)``, so the class axis of ``cross_entropy`` and
    ``nll_loss`` is the **last** axis: ``input`` is ``(..., C)`` where PyTorch expects
    ``(N, C, d1, ...)``. For plain ``(N, C)`` logits the two agree.

Dtypes:
    Losses compute in float32 when ``input`` is a 16-bit float (bfloat16, float16), so
    log-sum-exp and sums stay accurate, and return **float32** for bfloat16, float16 and
    float32 inputs (float64 for float64 inputs). PyTorch returns the input's dtype.

Validation:
    Shapes, dtypes and options are checked while tracing: a wrong target shape raises
    :class:`funcnet.errors.ShapeError` naming the function and both shapes; an unknown
    ``reduction`` raises ``ValueError``. Values cannot be checked under ``jax.jit``: a class
    index outside ``[0, C)`` (other than ``ignore_index``) gives ``nan`` where PyTorch
    raises, and probabilities outside ``[0, 1]`` give ``nan``.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from jax.scipy.special import xlogy
from jax.typing import ArrayLike

from funcnet.errors import ShapeError, check_dtype

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "huber_loss",
    "kl_div",
    "l1_loss",
    "linear_cross_entropy",
    "mse_loss",
    "nll_loss",
    "smooth_l1_loss",
]

Reduction = Literal["mean", "sum", "none"]
_REDUCTIONS = ("mean", "sum", "none")


# ---------------------------------------------------------------------------------------
# Shared checks and helpers
# ---------------------------------------------------------------------------------------


def _check_reduction(fn: str, reduction: str, allowed: tuple[str, ...] = _REDUCTIONS) -> None:
    if not isinstance(reduction, str) or reduction not in allowed:
        names = ", ".join(repr(r) for r in allowed)
        raise ValueError(f"{fn}: reduction must be one of {names}; got {reduction!r}")


def _compute_dtype(dtype: jnp.dtype) -> jnp.dtype:
    """float32 for 16-bit floats, otherwise the dtype itself (float32 or float64)."""
    return jnp.dtype(jnp.float32) if jnp.finfo(dtype).bits < 32 else jnp.dtype(dtype)


def _float_input(fn: str, input: ArrayLike) -> jax.Array:
    """``input`` as an array of its compute dtype; raises unless it is floating."""
    x = jnp.asarray(input)
    check_dtype(fn, x, "floating", "input")
    return x.astype(_compute_dtype(x.dtype))


def _check_shape(fn: str, x: jax.Array, expected: tuple[int, ...], what: str, note: str) -> None:
    if tuple(x.shape) != tuple(expected):
        raise ShapeError(
            f"{fn}: expected {what} of shape {tuple(expected)} ({note}), got {tuple(x.shape)}"
        )


def _real_target(fn: str, target: ArrayLike, dtype: jnp.dtype) -> jax.Array:
    """A numeric target (float, integer or bool) cast to the compute dtype."""
    t = jnp.asarray(target)
    if jnp.issubdtype(t.dtype, jnp.complexfloating):
        raise ShapeError(f"{fn}: expected a real-valued target, got dtype {t.dtype}")
    return t.astype(dtype)


def _broadcastable(fn: str, w: ArrayLike | None, shape: tuple[int, ...], what: str, dtype):
    """``w`` cast to ``dtype``; raises unless it broadcasts to ``shape`` without growing it."""
    if w is None:
        return None
    w = jnp.asarray(w)
    try:
        ok = jnp.broadcast_shapes(w.shape, shape) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise ShapeError(
            f"{fn}: expected {what} broadcastable to the input's shape {tuple(shape)}, "
            f"got shape {tuple(w.shape)}"
        )
    return jnp.broadcast_to(w.astype(dtype), shape)


def _elementwise_args(
    fn: str, input: ArrayLike, target: ArrayLike, reduction: str
) -> tuple[jax.Array, jax.Array]:
    _check_reduction(fn, reduction)
    x = _float_input(fn, input)
    t = _real_target(fn, target, x.dtype)
    _check_shape(fn, t, x.shape, "target", "the input's shape")
    return x, t


def _row_mask(mask: ArrayLike | None, shape: tuple[int, ...]) -> jax.Array | None:
    """``mask`` (bool, a leading part of ``shape``, e.g. ``(N,)``) broadcast to ``shape``."""
    if mask is None:
        return None
    m = jnp.asarray(mask)
    if m.dtype != jnp.bool_ or m.shape != tuple(shape[: m.ndim]):
        raise ShapeError(
            f"mask: expected a bool array shaped like a leading part of the loss's shape "
            f"{tuple(shape)}, e.g. ({shape[0] if shape else ''},), got {m.dtype} {m.shape}"
        )
    return jnp.broadcast_to(m.reshape(m.shape + (1,) * (len(shape) - m.ndim)), shape)


def _reduce(loss: jax.Array, reduction: str, mask: ArrayLike | None = None) -> jax.Array:
    m = _row_mask(mask, loss.shape)
    if m is not None:
        # where, not multiply: padded rows may hold inf or nan and must not reach the sum
        loss = jnp.where(m, loss, jnp.zeros((), loss.dtype))
        if reduction == "mean":
            return jnp.sum(loss) / jnp.sum(m)
    if reduction == "mean":
        return jnp.mean(loss)
    if reduction == "sum":
        return jnp.sum(loss)
    return loss


def _is_concrete_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


# ---------------------------------------------------------------------------------------
# Regression losses
# ---------------------------------------------------------------------------------------


def mse_loss(
    input: ArrayLike,
    target: ArrayLike,
    *,
    reduction: Reduction = "mean",
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Mean squared error, ``(input - target) ** 2``, as ``torch.nn.functional.mse_loss``.

    Args:
        input: predictions, any shape ``(*)``, floating dtype.
        target: ``(*)``, the input's shape exactly (PyTorch broadcasts with a warning);
            float, integer or bool, cast to the compute dtype.
        reduction: ``"mean"`` (over all elements), ``"sum"`` or ``"none"``.
        mask: optional bool ``(N,)`` (or any leading part of the loss's shape): elements
            of rows where it is False count in neither the sum nor the mean's
            denominator, as if absent (a padded last batch). Not in PyTorch.

    Returns:
        A scalar, or ``(*)`` for ``reduction="none"``; float32 for 16- and 32-bit float
        input (float64 for float64).

    Raises:
        ShapeError: ``input`` is not floating or ``target`` has another shape.
        ValueError: unknown ``reduction``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet.losses import mse_loss
        >>> float(mse_loss(jnp.array([1.0, 2.0]), jnp.array([1.0, 4.0])))
        2.0
    """
    x, t = _elementwise_args("mse_loss", input, target, reduction)
    return _reduce(jnp.square(x - t), reduction, mask)


def l1_loss(
    input: ArrayLike,
    target: ArrayLike,
    *,
    reduction: Reduction = "mean",
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Mean absolute error, ``|input - target|``, as ``torch.nn.functional.l1_loss``.

    The gradient at ``input == target`` is 0, as PyTorch's ``sign(0) = 0``.

    Args:
        input: predictions ``(*)``, floating dtype.
        target: ``(*)``, the input's shape; float, integer or bool.
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
    x, t = _elementwise_args("l1_loss", input, target, reduction)
    return _reduce(jnp.abs(x - t), reduction, mask)


def smooth_l1_loss(
    input: ArrayLike,
    target: ArrayLike,
    *,
    reduction: Reduction = "mean",
    beta: float = 1.0,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Smooth L1 loss, as ``torch.nn.functional.smooth_l1_loss``.

    With ``d = |input - target|``::

        loss = 0.5 * d**2 / beta   if d < beta
               d - 0.5 * beta      otherwise

    ``beta = 0`` is exactly ``l1_loss``. ``smooth_l1_loss(beta=b)`` equals
    ``huber_loss(delta=b) / b``.

    Args:
        input: predictions ``(*)``, floating dtype.
        target: ``(*)``, the input's shape; float, integer or bool.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        beta: the threshold between the quadratic and linear parts, ``>= 0``. A traced
            value is accepted (it is then not validated).
        mask: optional bool ``(N,)`` (or any leading part of the loss's shape): elements
            of rows where it is False count in neither the sum nor the mean's
            denominator, as if absent (a padded last batch). Not in PyTorch.

    Returns:
        A scalar, or ``(*)`` for ``reduction="none"``; float32 (float64 for float64 input).

    Raises:
        ShapeError: ``input`` is not floating or ``target`` has another shape.
        ValueError: unknown ``reduction`` or negative ``beta``.
    """
    fn = "smooth_l1_loss"
    if _is_concrete_number(beta) and beta < 0:
        raise ValueError(f"{fn}: beta must be >= 0, got {beta}")
    x, t = _elementwise_args(fn, input, target, reduction)
    d = jnp.abs(x - t)
    quadratic = d < beta
    # A safe divisor keeps the unselected branch (and its gradient) finite when beta = 0.
    safe_beta = jnp.where(quadratic, beta, 1.0)
    loss = jnp.where(quadratic, 0.5 * jnp.square(d) / safe_beta, d - 0.5 * beta)
    return _reduce(loss, reduction, mask)


def huber_loss(
    input: ArrayLike,
    target: ArrayLike,
    *,
    reduction: Reduction = "mean",
    delta: float = 1.0,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Huber loss, as ``torch.nn.functional.huber_loss``.

    With ``d = |input - target|``::

        loss = 0.5 * d**2                 if d < delta
               delta * (d - 0.5 * delta)  otherwise

    Args:
        input: predictions ``(*)``, floating dtype.
        target: ``(*)``, the input's shape; float, integer or bool.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (keyword-only here; PyTorch also
            takes it positionally).
        delta: the threshold between the quadratic and linear parts, ``> 0``. A traced
            value is accepted (it is then not validated).
        mask: optional bool ``(N,)`` (or any leading part of the loss's shape): elements
            of rows where it is False count in neither the sum nor the mean's
            denominator, as if absent (a padded last batch). Not in PyTorch.

    Returns:
        A scalar, or ``(*)`` for ``reduction="none"``; float32 (float64 for float64 input).

    Raises:
        ShapeError: ``input`` is not floating or ``target`` has another shape.
        ValueError: unknown ``reduction`` or ``delta <= 0``.
    """
    fn = "huber_loss"
    if _is_concrete_number(delta) and delta <= 0:
        raise ValueError(f"{fn}: delta must be > 0, got {delta}")
    x, t = _elementwise_args(fn, input, target, reduction)
    d = jnp.abs(x - t)
    loss = jnp.where(d < delta, 0.5 * jnp.square(d), delta * (d - 0.5 * delta))
    return _reduce(loss, reduction, mask)


# ---------------------------------------------------------------------------------------
# Classification losses over a class axis (the last axis)
# ---------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------
# Binary and distribution losses (elementwise)
# ---------------------------------------------------------------------------------------


def _clamped_logs(p: jax.Array) -> tuple[jax.Array, jax.Array]:
    # PyTorch clamps both logs at -100 so that p = 0 or 1 gives a finite loss.
    return jnp.maximum(jnp.log(p), -100.0), jnp.maximum(jnp.log1p(-p), -100.0)


@jax.custom_jvp
def _bce(p: jax.Array, t: jax.Array) -> jax.Array:
    log_p, log_1mp = _clamped_logs(p)
    return -(t * log_p + (1.0 - t) * log_1mp)


@_bce.defjvp
def _bce_jvp(primals, tangents):
    # PyTorch's own derivative: d/dp = (p - t) / max(p (1 - p), 1e-12), finite at p = 0 and
    # 1 where differentiating the clamped logs would give 0 * inf = nan.
    p, t = primals
    dp, dt = tangents
    log_p, log_1mp = _clamped_logs(p)
    out = -(t * log_p + (1.0 - t) * log_1mp)
    grad_p = (p - t) / jnp.maximum(p * (1.0 - p), 1e-12)
    return out, grad_p * dp + (log_1mp - log_p) * dt


def binary_cross_entropy(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    *,
    reduction: Reduction = "mean",
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Binary cross-entropy of probabilities, as ``torch.nn.functional.binary_cross_entropy``.

    Per element ``loss = -w * (t * log(p) + (1 - t) * log(1 - p))`` with both logs clamped
    at ``-100`` (as PyTorch), so ``p = 0`` or ``1`` gives a finite loss; the gradient is
    PyTorch's ``w * (p - t) / max(p * (1 - p), 1e-12)``. ``"mean"`` is over all elements.
    Prefer :func:`binary_cross_entropy_with_logits`: it is stable where ``sigmoid``
    saturates.

    Args:
        input: probabilities ``p`` in ``[0, 1]``, shape ``(*)``, floating dtype. Values
            outside give ``nan`` (PyTorch raises; values are not checked under jit).
        target: ``(*)``, the input's shape; floats in ``[0, 1]``, integers or bools.
        weight: optional rescaling ``w`` broadcastable to ``(*)``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        mask: optional bool ``(N,)`` (or any leading part of the loss's shape): elements
            of rows where it is False count in neither the sum nor the mean's
            denominator, as if absent (a padded last batch). Not in PyTorch.

    Returns:
        A scalar, or ``(*)`` for ``reduction="none"``; float32 (float64 for float64 input).

    Raises:
        ShapeError: ``input`` is not floating, ``target`` has another shape, or ``weight``
            does not broadcast to it.
        ValueError: unknown ``reduction``.
    """
    fn = "binary_cross_entropy"
    x, t = _elementwise_args(fn, input, target, reduction)
    w = _broadcastable(fn, weight, x.shape, "weight", x.dtype)
    loss = _bce(x, t)
    if w is not None:
        loss = loss * w
    return _reduce(loss, reduction, mask)


def binary_cross_entropy_with_logits(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    *,
    reduction: Reduction = "mean",
    pos_weight: ArrayLike | None = None,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Sigmoid + binary cross-entropy in one stable step.

    As ``torch.nn.functional.binary_cross_entropy_with_logits``. Per element, with
    ``softplus(z) = log(1 + exp(z))`` computed stably::

        loss = w * ((1 - t) * softplus(x) + pos_weight * t * softplus(-x))

    which equals ``-w * (pos_weight * t * log(sigmoid(x)) + (1 - t) * log(1 - sigmoid(x)))``
    without overflow for large ``|x|``. ``"mean"`` is over all elements.

    Args:
        input: logits ``x``, shape ``(*)``, floating dtype.
        target: ``(*)``, the input's shape; floats in ``[0, 1]``, integers or bools.
        weight: optional rescaling ``w`` broadcastable to ``(*)``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        pos_weight: optional weight of positive examples, broadcastable to ``(*)``; for
            multi-label ``(..., C)`` input, a ``(C,)`` vector (channels last, so PyTorch's
            ``(C, 1, 1)`` for images becomes ``(C,)``).
        mask: optional bool ``(N,)`` (or any leading part of the loss's shape): elements
            of rows where it is False count in neither the sum nor the mean's
            denominator, as if absent (a padded last batch). Not in PyTorch.

    Returns:
        A scalar, or ``(*)`` for ``reduction="none"``; float32 (float64 for float64 input).

    Raises:
        ShapeError: ``input`` is not floating, ``target`` has another shape, or ``weight``
            or ``pos_weight`` does not broadcast to it.
        ValueError: unknown ``reduction``.
    """
    fn = "binary_cross_entropy_with_logits"
    x, t = _elementwise_args(fn, input, target, reduction)
    w = _broadcastable(fn, weight, x.shape, "weight", x.dtype)
    pw = _broadcastable(fn, pos_weight, x.shape, "pos_weight", x.dtype)
    positive = t * jax.nn.softplus(-x)
    if pw is not None:
        positive = positive * pw
    loss = (1.0 - t) * jax.nn.softplus(x) + positive
    if w is not None:
        loss = loss * w
    return _reduce(loss, reduction, mask)


def kl_div(
    input: ArrayLike,
    target: ArrayLike,
    *,
    reduction: Literal["mean", "batchmean", "sum", "none"] = "mean",
    log_target: bool = False,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Kullback-Leibler divergence ``KL(target || exp(input))``, as ``torch.nn.functional.kl_div``.

    ``input`` holds log-probabilities. Per element::

        loss = target * (log(target) - input)       (0 where target == 0)
        loss = exp(target) * (target - input)       with log_target=True

    ``"batchmean"`` is ``sum(loss) / input.shape[0]``, the mathematical KL divergence per
    sample when the distributions lie along the other axes; ``"mean"`` (the default, as in
    PyTorch) divides by the number of elements instead. PyTorch warns about ``"mean"``;
    funcnet does not.

    Args:
        input: log-probabilities ``(N, *)``, floating dtype.
        target: probabilities, or log-probabilities with ``log_target=True``; the input's
            shape (PyTorch broadcasts).
        reduction: ``"mean"``, ``"batchmean"``, ``"sum"`` or ``"none"``.
        log_target: whether ``target`` holds log-probabilities.
        mask: optional bool ``(N,)`` (or any leading part of the loss's shape): elements
            of rows where it is False count in neither the sum nor the mean's
            denominator, as if absent (a padded last batch). Not in PyTorch.

    Returns:
        A scalar, or ``(N, *)`` for ``reduction="none"``; float32 (float64 for float64
        input).

    Raises:
        ShapeError: ``input`` is not floating or ``target`` has another shape.
        ValueError: unknown ``reduction``.
    """
    fn = "kl_div"
    _check_reduction(fn, reduction, ("mean", "batchmean", "sum", "none"))
    x = _float_input(fn, input)
    t = _real_target(fn, target, x.dtype)
    _check_shape(fn, t, x.shape, "target", "the input's shape")
    loss = jnp.exp(t) * (t - x) if log_target else xlogy(t, t) - t * x
    if reduction == "batchmean":
        if mask is not None:
            return _reduce(loss, "sum", mask) / jnp.sum(jnp.asarray(mask))
        return jnp.sum(loss) / x.shape[0] if x.ndim > 0 else jnp.sum(loss)
    return _reduce(loss, reduction, mask)
