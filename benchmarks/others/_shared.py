"""Helpers for the other libraries' workloads."""

from __future__ import annotations

from typing import Any

import optax

from benchmarks.workloads import cnn, lstm, mlp, transformer


def optimizer(name: str) -> optax.GradientTransformation:
    """optax's version of each workload's optimizer (same hyper-parameters as raw JAX)."""
    if name == "cnn":
        return optax.sgd(cnn.LR, momentum=cnn.MOMENTUM)
    if name == "transformer":
        return optax.adamw(transformer.LR, weight_decay=transformer.WEIGHT_DECAY)
    return optax.adam({"mlp": mlp.LR, "lstm": lstm.LR}[name])


def unsupported(library: str, name: str) -> NotImplementedError:
    return NotImplementedError(f"{library}: no {name!r} workload (CPU workloads only)")


def softmax_xent(logits: Any, labels: Any) -> Any:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
