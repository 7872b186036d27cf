"""Metrics as pure, jit-able functions and as streaming accumulators.

One-shot functions (scikit-learn's definitions; predictions first, as PyTorch):
``accuracy``, ``confusion_matrix``, ``precision``, ``recall``, ``f1_score``,
``mean_squared_error``, ``mean_absolute_error``, ``r2_score``.

Streaming accumulators, for epoch metrics over many batches inside ``jax.jit``::

    metric = Accuracy()
    state = metric.init()
    state = metric.update(state, logits, targets, mask=mask)   # per batch
    value = metric.compute(state)

States are plain dicts of arrays with fixed shapes and dtypes (see :class:`Metric`).
"""

from funcnet.metrics._classification import (
    Accuracy,
    ConfusionMatrix,
    F1Score,
    Precision,
    Recall,
    accuracy,
    confusion_matrix,
    f1_score,
    precision,
    recall,
)
from funcnet.metrics._metric import Mean, Metric, MetricCollection
from funcnet.metrics._regression import (
    MeanAbsoluteError,
    MeanSquaredError,
    R2Score,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
)

__all__ = [
    "Accuracy",
    "ConfusionMatrix",
    "F1Score",
    "Mean",
    "MeanAbsoluteError",
    "MeanSquaredError",
    "Metric",
    "MetricCollection",
    "Precision",
    "R2Score",
    "Recall",
    "accuracy",
    "confusion_matrix",
    "f1_score",
    "mean_absolute_error",
    "mean_squared_error",
    "precision",
    "r2_score",
    "recall",
]
