"""Connectionist temporal classification: ctc_loss, batch-first."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from funcnet.errors import ShapeError, check_dtype
from funcnet.losses._reduction import Reduction, _check_reduction, _float_input, _reduce

__all__ = ["ctc_loss"]


def _logsumexp(*terms: jax.Array) -> jax.Array:
    """Elementwise ``log(sum(exp(terms)))``, ``-inf`` when every term is ``-inf``, with a
    finite (zero) gradient there: the states no alignment reaches must not make ``nan``."""
    top = jax.lax.stop_gradient(functools.reduce(jnp.maximum, terms))
    top = jnp.where(jnp.isfinite(top), top, jnp.zeros((), top.dtype))
    total = functools.reduce(jnp.add, [jnp.exp(t - top) for t in terms])
    positive = total > 0
    safe = jnp.where(positive, total, jnp.ones((), total.dtype))
    return jnp.where(positive, top + jnp.log(safe), -jnp.inf)


def _shift(x: jax.Array, by: int, fill: float | int = -jnp.inf) -> jax.Array:
    """``x[:, s - by]``, ``fill`` for ``s < by``."""
    return jax.lax.pad(x, jnp.asarray(fill, x.dtype), ((0, 0, 0), (by, -by, 0)))


def _log_likelihood(
    log_probs: jax.Array,
    labels: jax.Array,
    input_lengths: jax.Array,
    target_lengths: jax.Array,
    blank: int,
) -> jax.Array:
    """``log p(labels | log_probs)`` per sample ``(N,)`` by the forward (alpha) recursion
    over the extended label sequence ``blank, l1, blank, l2, ..., blank`` (Graves et al.,
    2006), in log space, one ``lax.scan`` step per frame."""
    n, frames, _ = log_probs.shape
    ext = jnp.full((n, 2 * labels.shape[1] + 1), blank, labels.dtype).at[:, 1::2].set(labels)
    # a label may follow the label two states back directly when the two differ
    can_skip = (ext != blank) & (ext != _shift(ext, 2, blank))
    index = jnp.broadcast_to(ext[:, None, :], (n, frames, ext.shape[1]))
    emit = jnp.take_along_axis(log_probs, index, axis=2)  # (N, T, 2S + 1)
    first = jnp.arange(ext.shape[1])[None, :] < 2
    alpha = jnp.where(first, emit[:, 0], -jnp.inf)

    def step(alpha, xs):
        emit_t, active = xs
        skip = jnp.where(can_skip, _shift(alpha, 2), -jnp.inf)
        new = _logsumexp(alpha, _shift(alpha, 1), skip) + emit_t
        return jnp.where(active[:, None], new, alpha), None

    active = jnp.arange(1, frames)[:, None] < input_lengths[None, :]
    alpha, _ = jax.lax.scan(step, alpha, (jnp.swapaxes(emit[:, 1:], 0, 1), active))
    end = 2 * target_lengths[:, None]
    last = jnp.take_along_axis(alpha, end, axis=1)[:, 0]
    before = jnp.take_along_axis(alpha, jnp.maximum(end - 1, 0), axis=1)[:, 0]
    ll = _logsumexp(last, jnp.where(target_lengths > 0, before, -jnp.inf))
    empty = jnp.where(target_lengths == 0, 0.0, -jnp.inf).astype(ll.dtype)
    return jnp.where(input_lengths == 0, empty, ll)


def _concrete(x: ArrayLike) -> np.ndarray | None:
    """The values of ``x`` when they are known (outside ``jax.jit``), else None."""
    try:
        return np.asarray(x)
    except jax.errors.TracerArrayConversionError:
        return None


def _lengths(fn: str, lengths: ArrayLike, n: int, what: str, most: int) -> jax.Array:
    """Integer lengths ``(N,)``, checked against ``[0, most]`` where the values are known."""
    host = _concrete(lengths)
    if host is not None and host.size and not 0 <= host.min() <= host.max() <= most:
        raise ValueError(f"{fn}: expected {what} in [0, {most}], got {host.tolist()}")
    x = jnp.asarray(lengths)
    check_dtype(fn, x, "integer", what)
    if x.shape != (n,):
        raise ShapeError(f"{fn}: expected {what} of shape ({n},) (one per sample), got {x.shape}")
    return x.astype(jnp.int32)


def _padded_targets(fn: str, targets: ArrayLike, target_lengths: ArrayLike, n: int):
    """``(labels (N, S), lengths (N,))`` from padded ``(N, S)`` or concatenated targets."""
    t = jnp.asarray(targets)
    check_dtype(fn, t, "integer", "targets")
    if t.ndim == 2:
        if t.shape[0] != n:
            raise ShapeError(f"{fn}: expected padded targets of shape ({n}, S), got {t.shape}")
        return t, _lengths(fn, target_lengths, n, "target_lengths", t.shape[1])
    if t.ndim != 1:
        raise ShapeError(
            f"{fn}: expected targets of shape (N, S) or (sum(target_lengths),), got {t.shape}"
        )
    lengths = _lengths(fn, target_lengths, n, "target_lengths", t.shape[0])
    host = _concrete(target_lengths)
    # the longest target bounds S; under jit, where lengths are unknown, the total does
    longest = int(host.max()) if host is not None and host.size else t.shape[0]
    if longest == 0 or t.shape[0] == 0:
        return jnp.zeros((n, 0), t.dtype), lengths
    starts = jnp.cumsum(lengths) - lengths
    where = jnp.clip(starts[:, None] + jnp.arange(longest)[None, :], 0, t.shape[0] - 1)
    return t[where], lengths


def ctc_loss(
    log_probs: ArrayLike,
    targets: ArrayLike,
    input_lengths: ArrayLike,
    target_lengths: ArrayLike,
    *,
    blank: int = 0,
    reduction: Reduction = "mean",
    zero_infinity: bool = False,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Connectionist temporal classification loss, as ``torch.nn.functional.ctc_loss``,
    batch-first.

    Per sample, ``-log`` of the summed probability of every alignment of ``T`` frames
    (``input_lengths[n]`` of them) that collapses to the target (repeats merged, then
    blanks removed), by the forward recursion in log space (Graves et al., 2006). A target
    no alignment can produce (too long for its frames) gives ``inf``, as PyTorch.

    The gradient is JAX's derivative of that value: with respect to ``log_probs`` it is
    ``-(alignment occupancy)``; PyTorch's adds ``exp(log_probs)``, a term that cancels in
    the backward pass of the ``log_softmax`` that made ``log_probs``, so gradients with
    respect to the logits agree.

    Args:
        log_probs: ``(N, T, C)``, batch first (PyTorch: ``(T, N, C)``), or ``(T, C)`` for
            one sequence: log-probabilities over ``C`` classes, blank included (from
            ``log_softmax(logits, axis=-1)``); floating.
        targets: class indices, integer: padded ``(N, S)`` (the entries after each
            target's length are ignored, any value), or all targets concatenated,
            ``(sum(target_lengths),)``; ``(S,)`` for unbatched ``log_probs``. They must
            not contain ``blank``.
        input_lengths: frames per sample, integer ``(N,)`` (``()`` unbatched), ``<= T``.
        target_lengths: labels per sample, integer ``(N,)`` (``()`` unbatched).
        blank: the blank's class index, in ``[0, C)``.
        reduction: ``"mean"``: each sample's loss divided by its target length (at least
            1), then the mean over samples, as PyTorch; ``"sum"``; or ``"none"``.
        zero_infinity: replace infinite losses (impossible targets) and their gradients
            by 0.
        mask: optional bool ``(N,)``: samples where it is False count in neither the sum
            nor the mean's denominator (a padded last batch). Not in PyTorch.

    Returns:
        A scalar, or ``(N,)`` for ``reduction="none"`` (``()`` unbatched); float32
        (float64 for float64 input). A label outside ``[0, C)`` gives ``nan``.

    Raises:
        ShapeError: ``log_probs`` not floating or not 2-D/3-D, or targets or lengths of a
            wrong shape or dtype.
        ValueError: unknown ``reduction``, ``blank`` outside ``[0, C)``, or lengths out of
            range (checked where their values are known, outside ``jax.jit``).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from funcnet.losses import ctc_loss
        >>> log_probs = jax.nn.log_softmax(jnp.zeros((1, 3, 2)))  # uniform over 2 classes
        >>> # "1" from 3 frames: 6 alignments of probability 1/8 (e.g. 011, 111, 100, ...)
        >>> loss = jax.jit(ctc_loss)(log_probs, jnp.array([[1]]), jnp.array([3]), jnp.array([1]))
        >>> round(float(jnp.exp(-loss)), 4)
        0.75
    """
    fn = "ctc_loss"
    _check_reduction(fn, reduction)
    lp = _float_input(fn, log_probs, "log_probs")
    if lp.ndim not in (2, 3):
        raise ShapeError(f"{fn}: expected log_probs of shape (N, T, C) or (T, C), got {lp.shape}")
    unbatched = lp.ndim == 2
    if unbatched:
        lp, targets = lp[None], jnp.asarray(targets)[None]
        input_lengths = jnp.reshape(jnp.asarray(input_lengths), (1,))
        target_lengths = jnp.reshape(jnp.asarray(target_lengths), (1,))
    n, frames, classes = lp.shape
    if not isinstance(blank, int) or isinstance(blank, bool) or not 0 <= blank < classes:
        raise ValueError(f"{fn}: blank must be an int in [0, {classes}), got {blank!r}")
    labels, lengths = _padded_targets(fn, targets, target_lengths, n)
    frames_used = _lengths(fn, input_lengths, n, "input_lengths", frames)
    listed = jnp.arange(labels.shape[1])[None, :] < lengths[:, None]
    in_range = (labels >= 0) & (labels < classes)
    labels = jnp.where(listed & in_range, labels, blank)  # padding must not reach the sums
    loss = -_log_likelihood(lp, labels, frames_used, lengths, blank)
    loss = jnp.where(jnp.all(in_range | ~listed, axis=1), loss, jnp.nan)
    if zero_infinity:
        loss = jnp.where(jnp.isinf(loss), jnp.zeros((), loss.dtype), loss)
    if reduction == "mean":
        loss = loss / jnp.maximum(lengths, 1).astype(loss.dtype)
    out = _reduce(loss, reduction, mask)
    return out[0] if unbatched and reduction == "none" else out
