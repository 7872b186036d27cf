"""Compiled training and evaluation steps.

``make_train_step`` returns ``step(state, batch, mask=None) -> (state, metrics)``: one
``jax.jit`` program with the TrainState donated, usable in a hand-written loop or by
``fit``. ``make_eval_step`` returns ``eval_step(state, batch, mask=None) -> metrics``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from funcnet import optim
from funcnet.train._objective import LossFn, MetricFns, Objective, count_rows, split_batch
from funcnet.train._state import TrainState

__all__ = ["make_eval_step", "make_train_step", "split_batch"]

NONFINITE_MODES = ("error", "skip", "ignore")
Guard = Callable[[TrainState, jax.Array, Any, Any], tuple[TrainState, jax.Array | None]]


def _apply_model(state: TrainState, params: Any, x: Any, train: bool, key: Any) -> tuple[Any, Any]:
    args = x if isinstance(x, tuple) else (x,)
    return state.model.apply(params, state.model_state, *args, train=train, key=key)


def _keep_if(finite: jax.Array, new: Any, old: Any) -> Any:
    return jax.tree_util.tree_map(lambda n, o: jnp.where(finite, n, o), new, old)


def _guard_error(state: TrainState, loss: jax.Array, grads: Any, model_state: Any) -> Any:
    # fit stops at its next fetch; until then everything stays finite: a non-finite loss
    # applies zero gradients, and non-finite gradient elements are zeroed, by an
    # elementwise select that XLA fuses into the optimizer's update (no reduction).
    finite = jnp.isfinite(loss)
    grads = jax.tree_util.tree_map(lambda g: optim.finite_or_zero(g, finite), grads)
    model_state = _keep_if(finite, model_state, state.model_state)
    return state.apply_gradients(grads, model_state=model_state), finite


def _guard_skip(state: TrainState, loss: jax.Array, grads: Any, model_state: Any) -> Any:
    finite = jnp.isfinite(loss) & optim.all_finite(grads)
    model_state = _keep_if(finite, model_state, state.model_state)
    return state.apply_gradients(grads, finite=finite, model_state=model_state), finite


def _guard_ignore(state: TrainState, loss: jax.Array, grads: Any, model_state: Any) -> Any:
    return state.apply_gradients(grads, model_state=model_state), None


_GUARDS: dict[str, Guard] = {"error": _guard_error, "skip": _guard_skip, "ignore": _guard_ignore}


def make_train_step(
    loss_fn: LossFn,
    *,
    metrics: MetricFns | None = None,
    has_aux: bool = False,
    batch_fn: Callable[[Any], tuple[Any, Any]] | None = None,
    on_nonfinite: str = "error",
    donate: bool = True,
    jit: bool = True,
) -> Callable[..., tuple[TrainState, dict[str, Any]]]:
    """Builds ``step(state, batch, mask=None) -> (new_state, metrics)``.

    One step: forward in train mode (key ``state.step_key()``), loss, gradients,
    ``state.apply_gradients`` (the optimizer's update), new model state. Clipping,
    accumulation and the like are optimizer transforms (``funcnet.optim``).

    Args:
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` (e.g. ``losses.cross_entropy``, an
            optax loss followed by ``.mean()``, your own function); with ``has_aux``,
            returns ``(loss, {name: scalar})``. A ``mask`` (bool ``(batch,)``, False on
            padding rows) can only be passed to the step when the loss takes ``mask=``, as
            funcnet's losses do (their means, class weights and ``ignore_index`` included
            then equal PyTorch's on the valid rows).
        metrics: ``{name: fn(outputs, targets[, mask=])}`` computed on every batch (e.g.
            ``metrics.accuracy``), or ``{name: metric}`` with a streaming accumulator of
            ``funcnet.metrics`` (e.g. ``metrics.F1Score(num_classes=10)``), whose value in
            the step's metrics is this batch's state, to merge with ``metric.merge``.
        has_aux: whether ``loss_fn`` returns auxiliary metrics.
        batch_fn: ``batch_fn(batch) -> (inputs, targets)``, for batches that are not
            ``(x, y)`` pairs: ``lambda b: (b[0], b[0])`` (an autoencoder on unlabeled
            ``(x,)`` batches),
            ``lambda b: (b[0], b[1:])`` (``(x, y1, y2)``: a multi-task model), ``lambda b:
            (b["image"], b["label"])``. ``inputs`` may be a tuple of the model's inputs;
            ``targets`` any pytree ``loss_fn`` understands.
        on_nonfinite: ``"error"`` (default): a step whose loss is not finite applies
            zero gradients and keeps the model state, gradient elements that are not
            finite are zeroed (``optim.finite_or_zero``), so parameters and optimizer state
            never become NaN; ``metrics["finite"]`` says whether the loss was finite, and
            ``fit`` stops with an error naming the step. ``"skip"``: a step whose loss or
            any gradient is not finite changes nothing but the step count
            (``optim.update_if_finite``); ``fit`` goes on. ``"ignore"``: no guard.
        donate: donate the incoming state's buffers (the caller must not reuse them).
        jit: compile with ``jax.jit`` (False gives the plain function, e.g. to nest it in
            your own jit or ``lax.scan``).

    Returns:
        The step function. Its ``metrics`` hold ``loss``, the auxiliary and metric values,
        ``count`` (valid rows) when a mask is passed and, unless ``on_nonfinite="ignore"``,
        ``finite``. Its attribute ``objective`` tells ``fit`` how to feed it.

    Examples:
        >>> step = make_train_step(losses.cross_entropy, metrics={"acc": metrics.accuracy})
        >>> state, m = step(state, (x, y))
    """
    if on_nonfinite not in NONFINITE_MODES:
        raise ValueError(f"on_nonfinite must be one of {NONFINITE_MODES}, got {on_nonfinite!r}")
    if loss_fn is None:
        raise TypeError("make_train_step needs a loss_fn(outputs, targets) -> scalar")
    objective = Objective(loss_fn, metrics, has_aux, batch_fn)
    guard = _GUARDS[on_nonfinite]

    def step(state: TrainState, batch: Any, mask: jax.Array | None = None) -> Any:
        x, y = objective.split(batch)

        def compute(params: Any) -> tuple[jax.Array, tuple[Any, Any, dict]]:
            out, model_state = _apply_model(state, params, x, True, state.step_key())
            loss, aux = objective.loss(out, y, mask)
            return loss, (out, model_state, aux)

        (loss, (out, model_state, aux)), grads = jax.value_and_grad(compute, has_aux=True)(
            state.params
        )
        values = {"loss": loss, **aux, **objective.values(out, y, mask)}
        if mask is not None:
            values["count"] = count_rows(x, mask)
        new, finite = guard(state, loss, grads, model_state)
        if finite is not None:
            values["finite"] = finite
        return new, values

    compiled = jax.jit(step, donate_argnums=(0,) if donate else ()) if jit else step
    compiled.objective = objective  # type: ignore[attr-defined]
    return compiled


def make_eval_step(
    loss_fn: LossFn | None = None,
    *,
    metrics: MetricFns | None = None,
    has_aux: bool = False,
    batch_fn: Callable[[Any], tuple[Any, Any]] | None = None,
    jit: bool = True,
) -> Callable[..., dict[str, Any]]:
    """Builds ``eval_step(state, batch, mask=None) -> metrics`` (eval mode, no key).

    Args:
        loss_fn: as for :func:`make_train_step`, or None for no loss.
        metrics: as for :func:`make_train_step`.
        has_aux: whether ``loss_fn`` returns auxiliary metrics.
        batch_fn: as for :func:`make_train_step`.
        jit: compile with ``jax.jit``.

    Returns:
        The eval step; its metrics hold ``loss`` (when ``loss_fn`` is given), the metric
        values, and ``count`` (valid rows).
    """
    objective = Objective(loss_fn, metrics, has_aux, batch_fn)

    def eval_step(state: TrainState, batch: Any, mask: jax.Array | None = None) -> dict:
        x, y = objective.split(batch)
        out, _ = _apply_model(state, state.params, x, False, None)
        values: dict[str, Any] = {}
        if loss_fn is not None:
            loss, aux = objective.loss(out, y, mask)
            values.update({"loss": loss, **aux})
        values.update(objective.values(out, y, mask))
        values["count"] = count_rows(x, mask)
        return values

    compiled = jax.jit(eval_step) if jit else eval_step
    compiled.objective = objective  # type: ignore[attr-defined]
    return compiled
