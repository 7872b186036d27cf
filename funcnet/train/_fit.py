"""The fit loop and evaluate."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcnet.errors import FuncnetError
from funcnet.train._callbacks import Callback, CallbackList
from funcnet.train._history import History
from funcnet.train._progress import Progress
from funcnet.train._state import TrainState
from funcnet.train._step import make_eval_step, make_train_step

__all__ = ["Loop", "NonFiniteLossError", "evaluate", "fit"]

_HIDDEN = ("count", "finite")


class NonFiniteLossError(FuncnetError, FloatingPointError):
    """Training produced a non-finite loss or gradient (the parameters were kept finite)."""


class Loop:
    """The running fit, as callbacks see it.

    Attributes:
        state: the current TrainState.
        epoch: the current epoch (0-based).
        epochs: the number of epochs fit was asked for.
        step: optimizer steps taken so far (a Python int, kept on the host).
        batch_in_epoch: batches of the current epoch done so far.
        history: the History being recorded.
        train_loader, eval_loader: the loaders.
        stop_training: set it to True to end fit after the current metrics fetch.
    """

    def __init__(
        self, state: TrainState, epochs: int, train_loader: Any, eval_loader: Any, history: History
    ) -> None:
        self.state = state
        self.epochs = epochs
        self.epoch = 0
        self.step = 0
        self.batch_in_epoch = 0
        self.history = history
        self.train_loader = train_loader
        self.eval_loader = eval_loader
        self.stop_training = False


def _pad(leaf: Any, size: int) -> Any:
    missing = size - leaf.shape[0]
    widths = [(0, missing)] + [(0, 0)] * (leaf.ndim - 1)
    return np.pad(leaf, widths) if isinstance(leaf, np.ndarray) else jnp.pad(leaf, widths)


class _Batches:
    """Gives every batch a mask of valid rows, padding a short last batch on the host, so
    one compiled step serves the whole epoch."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.size = getattr(loader, "batch_size", None)
        self.padded = bool(getattr(loader, "pad_last", False))
        self._ones: np.ndarray | None = None

    def __iter__(self) -> Any:
        for item in self.loader:
            if self.padded:
                yield item
                continue
            rows = jax.tree_util.tree_leaves(item)[0].shape[0]
            size = self.size or rows
            if self._ones is None or self._ones.shape[0] != size:
                self._ones = np.ones(size, bool)
            if rows == size:
                yield item, self._ones
            else:
                mask = np.arange(size) < rows
                yield jax.tree_util.tree_map(functools.partial(_pad, size=size), item), mask


def _mean_logs(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Count-weighted means of per-batch values."""
    total = sum(float(r.get("count", 1.0)) for r in records)
    out: dict[str, float] = {}
    for key in records[0] if records else ():
        if key in _HIDDEN:
            continue
        out[key] = float(
            sum(float(r[key]) * float(r.get("count", 1.0)) for r in records) / max(total, 1.0)
        )
    return out


def _lr(state: TrainState) -> float | None:
    from funcnet.optim import current_lr

    try:
        return float(current_lr(state.opt_state))
    except (ValueError, TypeError, AttributeError):
        return None


def evaluate(
    state: TrainState,
    loader: Iterable[Any],
    *,
    loss_fn: Callable[..., Any] | None = None,
    metrics: Mapping[str, Callable[..., Any]] | None = None,
    eval_step: Callable[..., Any] | None = None,
) -> dict[str, float]:
    """Runs the model in eval mode over ``loader`` and averages loss and metrics.

    Every batch goes through one compiled program (a short last batch is padded and
    masked); values are fetched from the device once, at the end.

    Args:
        state: the TrainState to evaluate.
        loader: yields ``(inputs, targets)`` batches (a DataLoader, or any iterable).
        loss_fn: the loss to report as ``loss`` (optional).
        metrics: ``{name: fn(outputs, targets, mask=...)}``, e.g.
            ``{"accuracy": funcnet.metrics.accuracy, "f1": partial(funcnet.metrics.f1_score,
            average="macro", num_classes=10)}``. Values are per-batch results averaged
            with each batch's number of valid rows as weight: exact for means such as
            accuracy, loss, MSE and MAE; for ratios over the whole set (F1, precision,
            recall, R²) use the streaming accumulators of ``funcnet.metrics``.
        eval_step: a step from :func:`make_eval_step` (built from ``loss_fn`` and
            ``metrics`` when omitted).

    Returns:
        ``{name: float}``.
    """
    step = eval_step or make_eval_step(loss_fn, metrics=metrics)
    records = [step(state, batch, mask) for batch, mask in _Batches(loader)]
    return _mean_logs(jax.device_get(records))


def fit(
    state: TrainState,
    train_loader: Any,
    epochs: int = 1,
    *,
    loss_fn: Callable[..., Any] | None = None,
    metrics: Mapping[str, Callable[..., Any]] | None = None,
    eval_loader: Any = None,
    callbacks: Sequence[Callback] = (),
    train_step: Callable[..., Any] | None = None,
    eval_step: Callable[..., Any] | None = None,
    has_aux: bool = False,
    on_nonfinite: str = "error",
    log_every: int = 20,
    max_steps: int | None = None,
    progress: str = "auto",
) -> tuple[TrainState, History]:
    """Trains ``state`` for ``epochs`` epochs of ``train_loader``: Keras' ``fit``.

    Each step is one compiled program (built by :func:`make_train_step`) with the state
    donated. ``fit`` copies ``state`` once before the first step, so the caller's
    ``state`` stays valid. The loop never waits for the device except every ``log_every`` steps, when
    it fetches the accumulated per-step metrics in one transfer to update the progress
    display, the history and the callbacks.

    ``fit`` continues from where ``train_loader`` stands: a loader restored with
    ``load_state_dict`` resumes mid-epoch, and epochs run until ``train_loader.epoch``
    reaches ``epochs``. With the TrainState restored too (its step and key decide the
    random numbers), a resumed run reproduces the uninterrupted one bit for bit.

    Args:
        state: the TrainState (model and optimizer included).
        train_loader: a ``funcnet.data.DataLoader`` (or anything with ``epoch``,
            ``batch_size`` and ``__iter__`` yielding ``(inputs, targets)`` batches).
        epochs: the total number of epochs (counted by the loader's epoch).
        loss_fn: ``loss_fn(outputs, targets) -> scalar``, e.g. ``losses.cross_entropy``.
        metrics: ``{name: fn(outputs, targets, mask=...)}`` for training and evaluation.
        eval_loader: evaluated after every epoch; results are logged as ``val_<name>``.
        callbacks: :class:`Callback` instances (EarlyStopping, ModelCheckpoint, ...).
        train_step: a custom ``step(state, batch, mask) -> (state, metrics)`` (default:
            ``make_train_step(loss_fn, metrics=metrics, ...)``).
        eval_step: a custom ``eval_step(state, batch, mask) -> metrics``.
        has_aux: ``loss_fn`` returns ``(loss, {name: value})``.
        on_nonfinite: ``"error"`` (stop with :class:`NonFiniteLossError` naming the step;
            parameters stay finite), ``"skip"`` (skip such steps and go on) or ``"ignore"``.
        log_every: steps between metric fetches from the device.
        max_steps: stop after this many steps in total (the state's step count).
        progress: ``"auto"``, ``"bar"``, ``"log"`` or ``"quiet"``.

    Returns:
        ``(state, history)``.

    Raises:
        NonFiniteLossError: with ``on_nonfinite="error"``, at the first fetch after a step
            whose loss or gradients were not finite.
    """
    if train_step is None:
        if loss_fn is None:
            raise ValueError("fit needs loss_fn (or a train_step)")
        train_step = make_train_step(
            loss_fn, metrics=metrics, has_aux=has_aux, on_nonfinite=on_nonfinite
        )
    if eval_loader is not None and eval_step is None:
        eval_step = make_eval_step(loss_fn, metrics=metrics, has_aux=has_aux)
    history = History()
    # The step donates its input; one copy up front keeps the caller's `state` usable.
    state = jax.tree_util.tree_map(jnp.copy, state)
    loop = Loop(state, epochs, train_loader, eval_loader, history)
    loop.step = int(state.step)
    cbs = CallbackList(callbacks)
    display = Progress(progress, epochs)
    cbs.on_fit_begin(loop)
    last_finite: tuple[int, float] | None = None
    try:
        while _epoch_of(train_loader) < epochs and not loop.stop_training:
            loop.epoch = _epoch_of(train_loader)
            cbs.on_epoch_begin(loop)
            start_index = getattr(train_loader, "state_dict", lambda: {})().get("batch_index", 0)
            loop.batch_in_epoch = start_index
            display.start_epoch(loop.epoch, len(train_loader), start_index)
            records: list[dict[str, Any]] = []
            pending: list[Any] = []
            started, seen = time.perf_counter(), 0
            for batch, mask in _Batches(train_loader):
                loop.state, values = train_step(loop.state, batch, mask)
                pending.append(values)
                loop.step += 1
                loop.batch_in_epoch += 1
                stop = max_steps is not None and loop.step >= max_steps
                if len(pending) >= log_every or stop:
                    seen, last_finite = _fetch(
                        loop,
                        pending,
                        records,
                        seen,
                        started,
                        display,
                        cbs,
                        on_nonfinite,
                        last_finite,
                    )
                    pending = []
                if stop:
                    loop.stop_training = True
                if loop.stop_training:
                    break
            if pending:
                seen, last_finite = _fetch(
                    loop, pending, records, seen, started, display, cbs, on_nonfinite, last_finite
                )
            logs = {"epoch": loop.epoch, **(_mean_logs(records) if records else {})}
            if eval_loader is not None and not (loop.stop_training and max_steps is not None):
                logs.update(
                    {
                        f"val_{k}": v
                        for k, v in evaluate(loop.state, eval_loader, eval_step=eval_step).items()
                    }
                )
            lr = _lr(loop.state)
            if lr is not None:
                logs["lr"] = lr
            elapsed = time.perf_counter() - started
            logs["time"] = elapsed
            logs["samples_per_s"] = seen / elapsed if elapsed > 0 else 0.0
            history.epochs.append(logs)
            display.end_epoch(loop.epoch, logs)
            cbs.on_epoch_end(loop, logs)
    finally:
        display.close()
    cbs.on_fit_end(loop)
    return loop.state, history


def _epoch_of(loader: Any) -> int:
    epoch = getattr(loader, "epoch", None)
    if epoch is None:
        raise TypeError(
            "fit needs a loader with an `epoch` attribute, such as funcnet.data.DataLoader"
        )
    return int(epoch)


def _fetch(
    loop: Loop,
    pending: list[Any],
    records: list[dict[str, Any]],
    seen: int,
    started: float,
    display: Progress,
    cbs: CallbackList,
    on_nonfinite: str,
    last_finite: tuple[int, float] | None,
) -> tuple[int, tuple[int, float] | None]:
    """Fetches pending step metrics in one transfer and updates history and display."""
    host = jax.device_get(pending)
    first = loop.step - len(host) + 1
    for offset, values in enumerate(host):
        step_no = first + offset
        finite = bool(values.get("finite", True))
        if not finite and on_nonfinite == "error":
            where = (
                f"the last finite loss was {last_finite[1]:.6g} at step {last_finite[0]}"
                if last_finite
                else "no step had a finite loss"
            )
            raise NonFiniteLossError(
                f"non-finite loss at step {step_no} (loss {float(values['loss'])}); {where}. "
                "The parameters were kept finite (that step applied zero gradients). Lower the learning rate, clip gradients "
                "(funcnet.optim.clip_grad_norm), or pass on_nonfinite='skip'."
            )
        if finite:
            last_finite = (step_no, float(values["loss"]))
            records.append(values)
        seen += int(values.get("count", 0))
        loop.history.steps.append(
            {
                "step": step_no,
                "epoch": loop.epoch,
                **{k: float(v) for k, v in values.items() if k not in _HIDDEN},
            }
        )
    elapsed = time.perf_counter() - started
    logs = {
        **_mean_logs(records[-len(host) :] if records else []),
        "samples/s": round(seen / elapsed) if elapsed > 0 else 0,
    }
    display.update(loop.epoch, loop.batch_in_epoch, len(host), logs)
    cbs.on_fetch(loop, logs)
    return seen, last_finite
