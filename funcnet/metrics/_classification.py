"""One-shot classification metrics with scikit-learn's definitions."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from funcnet.metrics._common import (
    Average,
    check_num_classes,
    check_num_scores,
    class_inputs,
    element_weights,
    resolve_num_classes,
    safe_div,
)
from funcnet.metrics._metric import Metric, State

__all__ = [
    "Accuracy",
    "ConfusionMatrix",
    "F1Score",
    "Precision",
    "Recall",
    "accuracy",
    "confusion_matrix",
    "f1_score",
    "precision",
    "recall",
]


def correct_predictions(fn: str, preds: ArrayLike, targets: ArrayLike, top_k: int):
    """``(correct, targets)``: whether each target is among the ``top_k`` predictions."""
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ValueError(f"{fn}: top_k must be a positive int, got {top_k!r}")
    labels, scores, t = class_inputs(fn, preds, targets)
    if top_k == 1:
        return labels == t, t
    if scores is None:
        raise ValueError(f"{fn}: top_k={top_k} needs floating scores (..., C), got integer labels")
    if top_k > scores.shape[-1]:
        raise ValueError(f"{fn}: top_k={top_k} exceeds the number of classes {scores.shape[-1]}")
    _, top = jax.lax.top_k(scores, top_k)  # ties: the lower class index first, as argmax
    return jnp.any(top == t[..., None], axis=-1), t


def accuracy(
    preds: ArrayLike,
    targets: ArrayLike,
    top_k: int = 1,
    *,
    mask: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
) -> jax.Array:
    """Fraction of correct predictions: ``sum(w * [y in top_k(preds)]) / sum(w)``.

    ``top_k=1`` is scikit-learn's ``accuracy_score``; ``top_k > 1`` its
    ``top_k_accuracy_score`` (ties go to the lower class index, as ``argmax``).

    Args:
        preds: floating scores ``(..., C)`` (logits or probabilities; the prediction is
            their argmax) or integer/bool labels ``(...)``. Floating ``(...)`` is rejected:
            threshold binary probabilities first (``probs > 0.5``).
        targets: integer class labels ``(...)``.
        top_k: a target counts as correct when among the ``top_k`` highest scores;
            ``top_k > 1`` needs scores.
        mask: optional boolean ``(...)`` or a leading part of it such as ``(N,)``
            (broadcast over the remaining axes); False elements are not counted (padding).
        sample_weight: optional real weights, shaped like ``mask``.

    Returns:
        A float32 scalar in ``[0, 1]``; 0 when nothing is counted.

    Raises:
        ShapeError: wrong shapes or dtypes.
        ValueError: ``top_k`` is not a positive int, exceeds ``C``, or is > 1 with labels.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet.metrics import accuracy
        >>> logits = jnp.array([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0], [1.0, 2.0, 0.0]])
        >>> round(float(accuracy(logits, jnp.array([0, 1, 1]))), 4)
        0.6667
        >>> float(accuracy(logits, jnp.array([0, 1, 1]), top_k=2))
        1.0
    """
    fn = "accuracy"
    correct, t = correct_predictions(fn, preds, targets, top_k)
    w = element_weights(fn, t.shape, mask, sample_weight)
    hits = jnp.sum(jnp.where(correct, w, 0))
    return safe_div(hits.astype(jnp.float32), jnp.sum(w).astype(jnp.float32))


def confusion_counts(labels: jax.Array, targets: jax.Array, num_classes: int, w: jax.Array):
    """``(C, C)`` sums of ``w`` by (true class, predicted class); out-of-range labels dropped."""
    valid = (targets >= 0) & (targets < num_classes) & (labels >= 0) & (labels < num_classes)
    index = jnp.where(valid, targets * num_classes + labels, 0).ravel()
    counts = jnp.zeros(num_classes * num_classes, w.dtype)
    counts = counts.at[index].add(jnp.where(valid, w, 0).ravel())
    return counts.reshape(num_classes, num_classes)


def confusion_matrix(
    preds: ArrayLike,
    targets: ArrayLike,
    num_classes: int,
    *,
    mask: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
) -> jax.Array:
    """Confusion matrix: entry ``[i, j]`` counts samples of true class ``i`` predicted ``j``.

    Rows are true classes and columns predictions, as scikit-learn's ``confusion_matrix``
    (note the argument order: predictions first, as PyTorch/torchmetrics). Labels outside
    ``[0, num_classes)`` (e.g. an ignore value such as -100) are not counted, as
    scikit-learn with ``labels=range(num_classes)``.

    Args:
        preds: floating scores ``(..., C)`` with ``C == num_classes`` or integer labels
            ``(...)``.
        targets: integer class labels ``(...)``.
        num_classes: ``C``, the matrix is ``(C, C)``.
        mask: optional boolean ``(...)`` or a leading part of it; False is not counted.
        sample_weight: optional real weights, shaped like ``mask``.

    Returns:
        ``(num_classes, num_classes)``: int32 counts, or float32 sums of ``sample_weight``
        when given.

    Raises:
        ShapeError: wrong shapes or dtypes, or a score axis that is not ``num_classes``.
        ValueError: ``num_classes`` is not a positive int.
    """
    fn = "confusion_matrix"
    check_num_classes(fn, num_classes)
    labels, scores, t = class_inputs(fn, preds, targets)
    check_num_scores(fn, scores, num_classes)
    w = element_weights(fn, t.shape, mask, sample_weight)
    return confusion_counts(labels, t, num_classes, w)


def scores_from_confusion(cm: jax.Array, metric: str, average: Average, pos_label: int = 1):
    """Precision, recall or F1 from a ``(C, C)`` confusion matrix, as scikit-learn.

    Per class ``k``: ``tp = cm[k, k]``, ``fp = sum(cm[:, k]) - tp``,
    ``fn = sum(cm[k, :]) - tp``; precision ``tp / (tp + fp)``, recall ``tp / (tp + fn)``,
    F1 ``2 tp / (2 tp + fp + fn)``, each 0 when its denominator is 0.
    """
    cm = cm.astype(jnp.float32)
    tp = jnp.diagonal(cm)
    support = jnp.sum(cm, axis=1)
    fp = jnp.sum(cm, axis=0) - tp
    fn = support - tp
    if average == "micro":
        tp, fp, fn = jnp.sum(tp), jnp.sum(fp), jnp.sum(fn)
    num, den = {
        "precision": (tp, tp + fp),
        "recall": (tp, tp + fn),
        "f1": (2 * tp, 2 * tp + fp + fn),
    }[metric]
    score = safe_div(num, den)
    if average is None or average == "micro":
        return score
    if average == "binary":
        return score[pos_label]
    if average == "weighted":
        return safe_div(jnp.sum(score * support), jnp.sum(support))
    # macro: over the classes that occur in the targets or the predictions, which is
    # scikit-learn's default label set (labels=None).
    present = (tp + fp + fn) > 0
    return safe_div(jnp.sum(jnp.where(present, score, 0.0)), jnp.sum(present).astype(jnp.float32))


def _prf(fn, metric, preds, targets, average, num_classes, pos_label, mask, sample_weight):
    labels, scores, t = class_inputs(fn, preds, targets)
    if num_classes is None and scores is not None:
        num_classes = scores.shape[-1]
    num_classes = resolve_num_classes(fn, average, num_classes, pos_label)
    check_num_scores(fn, scores, num_classes)
    w = element_weights(fn, t.shape, mask, sample_weight)
    return scores_from_confusion(
        confusion_counts(labels, t, num_classes, w), metric, average, pos_label
    )


def precision(
    preds: ArrayLike,
    targets: ArrayLike,
    *,
    average: Average = "binary",
    num_classes: int | None = None,
    pos_label: int = 1,
    mask: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
) -> jax.Array:
    """Precision ``tp / (tp + fp)``, as scikit-learn's ``precision_score``.

    Predictions come first (PyTorch/torchmetrics order); scikit-learn takes
    ``(y_true, y_pred)``.

    Args:
        preds: floating scores ``(..., C)`` (the prediction is their argmax) or integer/bool
            labels ``(...)``.
        targets: integer class labels ``(...)`` in ``[0, C)``; labels outside are not
            counted (mask them explicitly, e.g. ``mask=targets != -100``).
        average: ``"binary"`` (the ``pos_label`` class of a two-class problem; the
            default, as scikit-learn), ``"micro"`` (global counts), ``"macro"`` (unweighted
            mean over the classes present in targets or predictions, scikit-learn's default
            label set), ``"weighted"`` (mean weighted by each class's number of true
            samples), or None (per-class scores ``(C,)``).
        num_classes: ``C``; required with integer labels unless ``average="binary"``; with
            scores it is their last axis (and must agree if given).
        pos_label: the positive class, 0 or 1, for ``average="binary"``.
        mask: optional boolean ``(...)`` or a leading part of it; False is not counted.
        sample_weight: optional real weights, shaped like ``mask``.

    Returns:
        A float32 scalar, or ``(C,)`` for ``average=None``. A 0/0 is 0, scikit-learn's
        ``zero_division`` result.

    Raises:
        ShapeError: wrong shapes or dtypes.
        ValueError: unknown ``average``; ``"binary"`` with more than two classes; missing
            ``num_classes``; ``pos_label`` not 0 or 1.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet.metrics import precision
        >>> preds, targets = jnp.array([0, 1, 1, 2]), jnp.array([0, 1, 2, 2])
        >>> round(float(precision(preds, targets, average="macro", num_classes=3)), 4)
        0.8333
    """
    return _prf(
        "precision",
        "precision",
        preds,
        targets,
        average,
        num_classes,
        pos_label,
        mask,
        sample_weight,
    )


def recall(
    preds: ArrayLike,
    targets: ArrayLike,
    *,
    average: Average = "binary",
    num_classes: int | None = None,
    pos_label: int = 1,
    mask: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
) -> jax.Array:
    """Recall ``tp / (tp + fn)``, as scikit-learn's ``recall_score``.

    Predictions come first (PyTorch/torchmetrics order); scikit-learn takes
    ``(y_true, y_pred)``.

    Args:
        preds: floating scores ``(..., C)`` (the prediction is their argmax) or integer/bool
            labels ``(...)``.
        targets: integer class labels ``(...)`` in ``[0, C)``; labels outside are not
            counted (mask them explicitly, e.g. ``mask=targets != -100``).
        average: ``"binary"`` (the ``pos_label`` class of a two-class problem; the
            default, as scikit-learn), ``"micro"`` (global counts), ``"macro"`` (unweighted
            mean over the classes present in targets or predictions, scikit-learn's default
            label set), ``"weighted"`` (mean weighted by each class's number of true
            samples), or None (per-class scores ``(C,)``).
        num_classes: ``C``; required with integer labels unless ``average="binary"``; with
            scores it is their last axis (and must agree if given).
        pos_label: the positive class, 0 or 1, for ``average="binary"``.
        mask: optional boolean ``(...)`` or a leading part of it; False is not counted.
        sample_weight: optional real weights, shaped like ``mask``.

    Returns:
        A float32 scalar, or ``(C,)`` for ``average=None``. A 0/0 is 0, scikit-learn's
        ``zero_division`` result.

    Raises:
        ShapeError: wrong shapes or dtypes.
        ValueError: unknown ``average``; ``"binary"`` with more than two classes; missing
            ``num_classes``; ``pos_label`` not 0 or 1.
    """
    return _prf(
        "recall", "recall", preds, targets, average, num_classes, pos_label, mask, sample_weight
    )


def f1_score(
    preds: ArrayLike,
    targets: ArrayLike,
    *,
    average: Average = "binary",
    num_classes: int | None = None,
    pos_label: int = 1,
    mask: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
) -> jax.Array:
    """F1 score ``2 tp / (2 tp + fp + fn)``, as scikit-learn's ``f1_score``.

    The per-class F1 is the harmonic mean of precision and recall; ``"macro"`` averages
    the per-class F1 scores (not the F1 of averaged precision and recall), as scikit-learn.
    Predictions come first (PyTorch/torchmetrics order); scikit-learn takes
    ``(y_true, y_pred)``.

    Args:
        preds: floating scores ``(..., C)`` (the prediction is their argmax) or integer/bool
            labels ``(...)``.
        targets: integer class labels ``(...)`` in ``[0, C)``; labels outside are not
            counted (mask them explicitly, e.g. ``mask=targets != -100``).
        average: ``"binary"`` (the ``pos_label`` class of a two-class problem; the
            default, as scikit-learn), ``"micro"`` (global counts), ``"macro"`` (unweighted
            mean over the classes present in targets or predictions, scikit-learn's default
            label set), ``"weighted"`` (mean weighted by each class's number of true
            samples), or None (per-class scores ``(C,)``).
        num_classes: ``C``; required with integer labels unless ``average="binary"``; with
            scores it is their last axis (and must agree if given).
        pos_label: the positive class, 0 or 1, for ``average="binary"``.
        mask: optional boolean ``(...)`` or a leading part of it; False is not counted.
        sample_weight: optional real weights, shaped like ``mask``.

    Returns:
        A float32 scalar, or ``(C,)`` for ``average=None``. A 0/0 is 0, scikit-learn's
        ``zero_division`` result.

    Raises:
        ShapeError: wrong shapes or dtypes.
        ValueError: unknown ``average``; ``"binary"`` with more than two classes; missing
            ``num_classes``; ``pos_label`` not 0 or 1.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet.metrics import f1_score
        >>> preds, targets = jnp.array([1, 1, 0, 1]), jnp.array([1, 0, 0, 1])
        >>> round(float(f1_score(preds, targets)), 4)  # binary, pos_label=1
        0.8
    """
    return _prf(
        "f1_score", "f1", preds, targets, average, num_classes, pos_label, mask, sample_weight
    )


# ---------------------------------------------------------------------------------------
# Streaming accumulators
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Accuracy(Metric):
    """Streaming :func:`~funcnet.metrics.accuracy`: correct and counted samples.

    Args:
        top_k: a target counts as correct when among the ``top_k`` highest scores.

    State: ``{"correct": int32 (), "count": int32 ()}``, exact up to 2**31 - 1 samples.
    ``update(state, preds, targets, *, mask=None)`` takes the inputs of
    :func:`~funcnet.metrics.accuracy`; for weighted samples, feed the per-sample
    correctness to a :class:`~funcnet.metrics.Mean` instead. ``compute`` gives float32, 0
    before any sample.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet.metrics import Accuracy
        >>> m = Accuracy()
        >>> s = m.update(m.init(), jnp.array([[2.0, 0.0], [0.0, 1.0]]), jnp.array([0, 0]))
        >>> s = m.update(s, jnp.array([1, 1]), jnp.array([1, 0]), mask=jnp.array([True, False]))
        >>> round(float(m.compute(s)), 4)
        0.6667
    """

    top_k: int = 1

    def init(self) -> State:
        return {"correct": jnp.zeros((), jnp.int32), "count": jnp.zeros((), jnp.int32)}

    def update(
        self, state: State, preds: ArrayLike, targets: ArrayLike, *, mask: ArrayLike | None = None
    ) -> State:
        """Add a batch of classification results.

        Args:
            state: the current state.
            preds: floating scores ``(..., C)`` or integer/bool labels ``(...)``.
            targets: integer class labels ``(...)``.
            mask: optional boolean ``(...)`` or a leading part of it, such as ``(N,)``;
                False elements (padding) are not counted.

        Returns:
            The new state.
        """
        fn = "Accuracy.update"
        correct, t = correct_predictions(fn, preds, targets, self.top_k)
        w = element_weights(fn, t.shape, mask)
        return {
            "correct": state["correct"] + jnp.sum(jnp.where(correct, w, 0), dtype=jnp.int32),
            "count": state["count"] + jnp.sum(w, dtype=jnp.int32),
        }

    def compute(self, state: State) -> jax.Array:
        return safe_div(state["correct"].astype(jnp.float32), state["count"].astype(jnp.float32))


def _confusion_update(name: str, num_classes: int, state: State, preds, targets, mask) -> State:
    fn = f"{name}.update"
    labels, scores, t = class_inputs(fn, preds, targets)
    check_num_scores(fn, scores, num_classes)
    w = element_weights(fn, t.shape, mask)
    return {"matrix": state["matrix"] + confusion_counts(labels, t, num_classes, w)}


@dataclasses.dataclass(frozen=True)
class ConfusionMatrix(Metric):
    """Streaming confusion matrix, from which precision, recall and F1 follow for any average.

    Args:
        num_classes: ``C``; the matrix is ``(C, C)``, rows true classes, columns
            predictions (scikit-learn's convention).

    State: ``{"matrix": int32 (C, C)}``, exact up to 2**31 - 1 samples per cell.
    ``update(state, preds, targets, *, mask=None)`` takes the inputs of
    :func:`~funcnet.metrics.confusion_matrix` (labels outside ``[0, C)`` are not counted);
    ``compute`` returns the matrix, and :meth:`accuracy`, :meth:`precision`,
    :meth:`recall` and :meth:`f1_score` read the other metrics off the same state.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet.metrics import ConfusionMatrix
        >>> m = ConfusionMatrix(num_classes=3)
        >>> s = m.update(m.init(), jnp.array([0, 1, 1, 2]), jnp.array([0, 1, 2, 2]))
        >>> m.compute(s).tolist()
        [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
        >>> round(float(m.f1_score(s, average="macro")), 4)
        0.7778
    """

    num_classes: int

    def __post_init__(self) -> None:
        check_num_classes(type(self).__name__, self.num_classes)

    def init(self) -> State:
        return {"matrix": jnp.zeros((self.num_classes, self.num_classes), jnp.int32)}

    def update(
        self, state: State, preds: ArrayLike, targets: ArrayLike, *, mask: ArrayLike | None = None
    ) -> State:
        """Add a batch of classification results.

        Args:
            state: the current state.
            preds: floating scores ``(..., C)`` or integer/bool labels ``(...)``.
            targets: integer class labels ``(...)``.
            mask: optional boolean ``(...)`` or a leading part of it, such as ``(N,)``;
                False elements (padding) are not counted.

        Returns:
            The new state.
        """
        return _confusion_update("ConfusionMatrix", self.num_classes, state, preds, targets, mask)

    def compute(self, state: State) -> jax.Array:
        return state["matrix"]

    def accuracy(self, state: State) -> jax.Array:
        """``trace / total`` as float32 (0 when empty); out-of-range labels never counted."""
        matrix = state["matrix"].astype(jnp.float32)
        return safe_div(jnp.trace(matrix), jnp.sum(matrix))

    def _score(self, state: State, metric: str, average: Average, pos_label: int) -> jax.Array:
        resolve_num_classes(f"ConfusionMatrix.{metric}", average, self.num_classes, pos_label)
        return scores_from_confusion(state["matrix"], metric, average, pos_label)

    def precision(self, state: State, *, average: Average, pos_label: int = 1) -> jax.Array:
        """Precision as :func:`~funcnet.metrics.precision` with this ``average``."""
        return self._score(state, "precision", average, pos_label)

    def recall(self, state: State, *, average: Average, pos_label: int = 1) -> jax.Array:
        """Recall as :func:`~funcnet.metrics.recall` with this ``average``."""
        return self._score(state, "recall", average, pos_label)

    def f1_score(self, state: State, *, average: Average, pos_label: int = 1) -> jax.Array:
        """F1 as :func:`~funcnet.metrics.f1_score` with this ``average``."""
        return self._score(state, "f1", average, pos_label)


@dataclasses.dataclass(frozen=True)
class _ConfusionScore(Metric):
    num_classes: int | None = None
    average: Average = "binary"
    pos_label: int = 1

    _metric: ClassVar[str]

    def __post_init__(self) -> None:
        name = type(self).__name__
        num_classes = resolve_num_classes(name, self.average, self.num_classes, self.pos_label)
        object.__setattr__(self, "num_classes", num_classes)

    def init(self) -> State:
        return {"matrix": jnp.zeros((self.num_classes, self.num_classes), jnp.int32)}

    def update(
        self, state: State, preds: ArrayLike, targets: ArrayLike, *, mask: ArrayLike | None = None
    ) -> State:
        """Add a batch of classification results.

        Args:
            state: the current state.
            preds: floating scores ``(..., C)`` or integer/bool labels ``(...)``.
            targets: integer class labels ``(...)``.
            mask: optional boolean ``(...)`` or a leading part of it, such as ``(N,)``;
                False elements (padding) are not counted.

        Returns:
            The new state.
        """
        name = type(self).__name__
        return _confusion_update(name, self.num_classes, state, preds, targets, mask)

    def compute(self, state: State) -> jax.Array:
        return scores_from_confusion(state["matrix"], self._metric, self.average, self.pos_label)


@dataclasses.dataclass(frozen=True)
class Precision(_ConfusionScore):
    """Streaming :func:`~funcnet.metrics.precision`.

    Args:
        num_classes: ``C``; required unless ``average="binary"`` (then 2).
        average: ``"binary"`` (default; two classes, the ``pos_label`` class),
            ``"micro"``, ``"macro"``, ``"weighted"`` or None (per-class ``(C,)``), with the
            meanings of the one-shot function.
        pos_label: the positive class (0 or 1) for ``average="binary"``.

    State: ``{"matrix": int32 (C, C)}``, as :class:`ConfusionMatrix`.
    ``update(state, preds, targets, *, mask=None)`` takes the one-shot function's inputs;
    ``compute`` gives float32 (0 for 0/0, scikit-learn's ``zero_division``).

    Raises:
        ValueError: at construction, for an unknown ``average``, ``"binary"`` with
            ``num_classes`` other than 2, or a missing ``num_classes``.
    """

    _metric: ClassVar[str] = "precision"


@dataclasses.dataclass(frozen=True)
class Recall(_ConfusionScore):
    """Streaming :func:`~funcnet.metrics.recall`.

    Args:
        num_classes: ``C``; required unless ``average="binary"`` (then 2).
        average: ``"binary"`` (default; two classes, the ``pos_label`` class),
            ``"micro"``, ``"macro"``, ``"weighted"`` or None (per-class ``(C,)``), with the
            meanings of the one-shot function.
        pos_label: the positive class (0 or 1) for ``average="binary"``.

    State: ``{"matrix": int32 (C, C)}``, as :class:`ConfusionMatrix`.
    ``update(state, preds, targets, *, mask=None)`` takes the one-shot function's inputs;
    ``compute`` gives float32 (0 for 0/0, scikit-learn's ``zero_division``).

    Raises:
        ValueError: at construction, for an unknown ``average``, ``"binary"`` with
            ``num_classes`` other than 2, or a missing ``num_classes``.
    """

    _metric: ClassVar[str] = "recall"


@dataclasses.dataclass(frozen=True)
class F1Score(_ConfusionScore):
    """Streaming :func:`~funcnet.metrics.f1_score`.

    Args:
        num_classes: ``C``; required unless ``average="binary"`` (then 2).
        average: ``"binary"`` (default; two classes, the ``pos_label`` class),
            ``"micro"``, ``"macro"``, ``"weighted"`` or None (per-class ``(C,)``), with the
            meanings of the one-shot function.
        pos_label: the positive class (0 or 1) for ``average="binary"``.

    State: ``{"matrix": int32 (C, C)}``, as :class:`ConfusionMatrix`.
    ``update(state, preds, targets, *, mask=None)`` takes the one-shot function's inputs;
    ``compute`` gives float32 (0 for 0/0, scikit-learn's ``zero_division``).

    Raises:
        ValueError: at construction, for an unknown ``average``, ``"binary"`` with
            ``num_classes`` other than 2, or a missing ``num_classes``.
    """

    _metric: ClassVar[str] = "f1"
