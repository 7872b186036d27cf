"""fit and evaluate: Keras' training loop over the compiled steps."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from funcnet import optim
from funcnet.mixed_precision import Policy
from funcnet.train._batches import Batches
from funcnet.train._callbacks import Callback, CallbackList
from funcnet.train._epoch_metrics import EpochMetrics
from funcnet.train._history import History
from funcnet.train._loop import Loop
from funcnet.train._objective import MetricFns, Objective
from funcnet.train._progress import Progress, make_progress
from funcnet.train._state import TrainState
from funcnet.train._step import make_eval_step, make_train_step

__all__ = ["evaluate", "fit"]

Step = Callable[..., Any]


def _objective_of(step: Step, metrics: MetricFns | None) -> Objective:
    """The step's own objective, or (for a hand-written step) one that only knows which of
    ``metrics`` are streaming accumulators; a hand-written step gets no masks."""
    objective = getattr(step, "objective", None)
    if isinstance(objective, Objective):
        return objective
    fallback = Objective(None, metrics)
    fallback.takes_mask = False
    return fallback


def _run_step(step: Step, state: Any, batch: Any, mask: Any) -> Any:
    return step(state, batch) if mask is None else step(state, batch, mask)


def evaluate(
    state: TrainState,
    loader: Any,
    *,
    loss_fn: Callable[..., Any] | None = None,
    metrics: MetricFns | None = None,
    batch_fn: Callable[[Any], tuple[Any, Any]] | None = None,
    has_aux: bool = False,
    eval_step: Step | None = None,
    precision: str | Policy | None = None,
) -> dict[str, float | list[Any]]:
    """Runs the model in eval mode over one pass of ``loader`` and reports loss and metrics.

    Every batch goes through one compiled program (a short last batch is padded and masked
    when the loss and metrics take ``mask=``, else it compiles once more at its size);
    values are fetched from the device once, at the end.

    Args:
        state: the TrainState to evaluate.
        loader: any re-iterable of batches (see :func:`fit`).
        loss_fn: the loss to report as ``loss`` (optional).
        metrics: ``{name: fn(outputs, targets[, mask=])}``, averaged over the rows of
            every batch (exact for means such as accuracy, loss, MSE, MAE), or
            ``{name: metric}`` with a ``funcnet.metrics`` accumulator (``F1Score``,
            ``Precision``, ``R2Score``, …), exact over the whole pass.
        batch_fn: ``batch_fn(batch) -> (inputs, targets)`` (see :func:`make_train_step`).
        has_aux: ``loss_fn`` returns ``(loss, {name: value})``.
        eval_step: a step from :func:`make_eval_step` (built from the above when omitted).
        precision: the mixed-precision policy of the step built here (see
            :func:`make_train_step`).

    Returns:
        ``{name: value}``: floats, and lists for per-class results (``average=None``).
    """
    _check_precision(precision, eval_step is None)
    step = eval_step or make_eval_step(
        loss_fn, metrics=metrics, has_aux=has_aux, batch_fn=batch_fn, precision=precision
    )
    objective = _objective_of(step, metrics)
    batches = Batches(loader, pad=objective.takes_mask)
    epoch = EpochMetrics(objective.streaming)
    items, _ = batches.iterate()
    records = [epoch.add(_run_step(step, state, b, m), rows) for b, m, rows in items]
    epoch.extend(jax.device_get(records))
    return epoch.results()


def fit(
    state: TrainState,
    train_loader: Any,
    epochs: int = 1,
    *,
    loss_fn: Callable[..., Any] | None = None,
    metrics: MetricFns | None = None,
    eval_loader: Any = None,
    callbacks: Sequence[Callback] = (),
    batch_fn: Callable[[Any], tuple[Any, Any]] | None = None,
    initial_epoch: int | None = None,
    max_steps: int | None = None,
    log_every: int = 20,
    progress: str | Progress = "auto",
    train_step: Step | None = None,
    eval_step: Step | None = None,
    has_aux: bool = False,
    on_nonfinite: str = "error",
    precision: str | Policy | None = None,
) -> tuple[TrainState, History]:
    """Trains ``state`` for ``epochs`` epochs of ``train_loader``: Keras' ``fit``.

    Each step is one compiled program (:func:`make_train_step`) with the state donated.
    ``fit`` copies ``state`` once before the first step, so the caller's ``state`` stays
    valid. The loop never waits for the device except every ``log_every`` steps, when it
    fetches the steps' metrics in one transfer for the display, the history and callbacks.

    **Epochs.** Each call trains ``epochs`` epochs, continuing a DataLoader's epoch count
    (its shuffle order), so a second ``fit(state, loader, epochs=3)`` trains three more.
    With ``initial_epoch`` (Keras' meaning), ``epochs`` is the epoch to stop before: the
    call trains epochs ``initial_epoch .. epochs - 1``. To resume an interrupted run, put
    its checkpoint back with :func:`restore_training` (state and the loader's mid-epoch
    position) and call ``fit(state, loader, epochs=E, initial_epoch=loader.epoch)``: the
    run then reproduces the uninterrupted one bit for bit.

    **Loaders and batches.** ``train_loader`` is any re-iterable of batches: a
    ``funcnet.data.DataLoader``, a list, a ``torch.utils.data.DataLoader`` (its tensors
    become NumPy arrays), a grain dataset. A batch is ``(inputs, targets)``, or anything
    ``batch_fn`` splits into that. When the loss and every metric take ``mask=`` (funcnet's
    do), a short last batch is padded and masked, so one compiled step serves the epoch;
    otherwise it runs at its own size (one more compilation).

    Args:
        state: the TrainState (model and optimizer included).
        train_loader: the training batches (see above).
        epochs: epochs to train in this call; with ``initial_epoch``, the epoch to stop before.
        loss_fn: ``loss_fn(outputs, targets) -> scalar``, e.g. ``losses.cross_entropy``.
        metrics: ``{name: fn(outputs, targets[, mask=])}`` or ``{name: metric}`` with a
            ``funcnet.metrics`` accumulator (exact epoch F1, precision, …), for training and
            evaluation.
        eval_loader: evaluated after every epoch; results are logged as ``val_<name>``.
        callbacks: :class:`Callback` instances (EarlyStopping, ModelCheckpoint, ...).
        batch_fn: ``batch_fn(batch) -> (inputs, targets)`` for batches that are not pairs.
        initial_epoch: the epoch to start at (Keras); see **Epochs**.
        max_steps: stop once the state's step count reaches this (mid-epoch if need be).
        log_every: steps between metric fetches from the device.
        progress: ``"auto"``, ``"bar"``, ``"log"``, ``"logging"``, ``"quiet"`` or a
            :class:`Progress`.
        train_step: a custom ``step(state, batch[, mask]) -> (state, metrics)`` (default:
            ``make_train_step(loss_fn, metrics=metrics, ...)``).
        eval_step: a custom ``eval_step(state, batch[, mask]) -> metrics``.
        has_aux: ``loss_fn`` returns ``(loss, {name: value})``.
        on_nonfinite: ``"error"`` (stop with :class:`NonFiniteLossError` naming the step;
            parameters stay finite), ``"skip"`` (skip such steps and go on) or ``"ignore"``.
        precision: a mixed-precision policy or its name (``"bf16"``, ``"fp16"``) for the
            steps built here (see :func:`make_train_step`); pass it to
            ``make_train_step`` / ``make_eval_step`` for steps you build. With a loss
            scale in the optimizer state, the history's steps hold ``loss_scale`` and
            ``skipped``, and an overflow is a skipped step, not an error.

    Returns:
        ``(state, history)``.

    Raises:
        ValueError: nothing to train (``epochs`` < 1, ``initial_epoch >= epochs``, a
            ``max_steps`` already reached, a loader that yields no batches).
        NonFiniteLossError: with ``on_nonfinite="error"``, at the first fetch after a step
            whose loss was not finite.
    """
    _check_precision(
        precision, train_step is None or (eval_loader is not None and eval_step is None)
    )
    steps = {"metrics": metrics, "has_aux": has_aux, "batch_fn": batch_fn, "precision": precision}
    if train_step is None:
        if loss_fn is None:
            raise ValueError("fit needs loss_fn=... (or a train_step)")
        train_step = make_train_step(loss_fn, on_nonfinite=on_nonfinite, **steps)
    if eval_loader is not None and eval_step is None:
        eval_step = make_eval_step(loss_fn, **steps)
    objective = _objective_of(train_step, metrics)
    batches = Batches(train_loader, pad=objective.takes_mask)
    first, stop = _epoch_range(batches.epoch, epochs, initial_epoch)
    _check_max_steps(state, max_steps)
    # The step donates its input; one copy up front keeps the caller's `state` usable.
    loop = Loop(
        jax.tree_util.tree_map(jnp.copy, state),
        train_loader,
        eval_loader,
        stop,
        EpochMetrics(objective.streaming),
        CallbackList(callbacks),
        make_progress(progress),
        on_nonfinite,
    )
    _run(loop, batches, train_step, range(first, stop), (eval_step, metrics), max_steps, log_every)
    return loop.state, loop.history


def _check_precision(precision: Any, builds_a_step: bool) -> None:
    """``precision=`` shapes only the steps fit and evaluate build: an error when they
    build none (every step needed was given)."""
    if precision is not None and not builds_a_step:
        raise ValueError(
            f"precision={precision!r} applies to the steps fit and evaluate build, and "
            "every step was given: build them with make_train_step(..., precision=...) "
            "and make_eval_step(..., precision=...) instead"
        )


def _epoch_range(current: int, epochs: int, initial_epoch: int | None) -> tuple[int, int]:
    """``(first, stop)`` of the epochs to train, or a ValueError saying why there are none."""
    if not isinstance(epochs, int) or isinstance(epochs, bool):
        raise TypeError(f"fit: epochs must be an int, got {epochs!r}")
    if initial_epoch is None:
        if epochs < 1:
            raise ValueError(f"fit: epochs={epochs} trains nothing; pass epochs >= 1")
        return current, current + epochs
    if initial_epoch < 0 or initial_epoch >= epochs:
        raise ValueError(
            f"fit: initial_epoch={initial_epoch} with epochs={epochs} trains nothing: with "
            "initial_epoch, epochs is the epoch to stop before (Keras' meaning), e.g. "
            f"epochs={max(initial_epoch, 0) + 1} trains one more epoch"
        )
    return initial_epoch, epochs


def _check_max_steps(state: TrainState, max_steps: int | None) -> None:
    if max_steps is not None and int(state.step) >= max_steps:
        raise ValueError(
            f"fit: the state has taken {int(state.step)} steps, so max_steps={max_steps} "
            "(a total of the state's steps) trains nothing; raise it or leave it out"
        )


def _run(
    loop: Loop,
    batches: Batches,
    step: Step,
    epochs: range,
    evaluation: tuple[Step | None, MetricFns | None],
    max_steps: int | None,
    log_every: int,
) -> None:
    loop.callbacks.on_fit_begin(loop)
    loop.progress.begin(epochs.stop)
    try:
        for epoch in epochs:
            batches.set_epoch(epoch)
            _train_epoch(loop, batches, step, epoch, max_steps, log_every)
            stopped_by_max_steps = max_steps is not None and loop.step >= max_steps
            eval_logs = _eval_logs(loop, evaluation) if not stopped_by_max_steps else {}
            loop.end_epoch(eval_logs, _lr(loop.state))
            if loop.stop_training or stopped_by_max_steps:
                break
    finally:
        loop.progress.close()
    loop.callbacks.on_fit_end(loop)


def _train_epoch(
    loop: Loop, batches: Batches, step: Step, epoch: int, max_steps: int | None, log_every: int
) -> None:
    items, done = batches.iterate()
    loop.start_epoch(epoch, batches.total, done)
    ran = 0
    for batch, mask, rows in items:
        loop.record(*_run_step(step, loop.state, batch, mask), rows)
        ran += 1
        at_max = max_steps is not None and loop.step >= max_steps
        if loop.pending >= log_every or at_max:
            loop.fetch()
        if at_max or loop.stop_training:
            break
    loop.fetch()
    if ran == 0:
        raise ValueError(
            f"fit: train_loader yielded no batches in epoch {epoch} (a DataLoader with "
            "drop_last=True and fewer samples than batch_size, or an empty dataset)"
        )


def _eval_logs(loop: Loop, evaluation: tuple[Step | None, MetricFns | None]) -> dict[str, Any]:
    eval_step, metrics = evaluation
    if loop.eval_loader is None or eval_step is None:
        return {}
    loop.callbacks.on_evaluate_begin(loop)
    results = evaluate(loop.state, loop.eval_loader, metrics=metrics, eval_step=eval_step)
    logs = {f"val_{k}": v for k, v in results.items()}
    loop.callbacks.on_evaluate_end(loop, logs)
    return logs


def _lr(state: TrainState) -> float | None:
    try:
        return float(optim.current_lr(state.opt_state))
    except (ValueError, TypeError, AttributeError):
        return None
