"""Callbacks for fit: early stopping, checkpoints, learning-rate control, loggers.

A callback subclasses :class:`Callback` and overrides any of its hooks; each hook gets the
running :class:`~funcnet.train.Loop` (state, epoch, step, history, stop_training) and,
where there are any, the latest logs. Hooks run on the host between compiled steps:
``on_fetch`` only when fit fetches metrics (every ``log_every`` steps), never per step.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax

from funcnet import optim
from funcnet.checkpoint import CheckpointManager
from funcnet.checkpoint._multihost import barrier
from funcnet.errors import CheckpointError
from funcnet.train._progress import LOGGER_NAME

__all__ = [
    "Callback",
    "CallbackList",
    "CSVLogger",
    "EarlyStopping",
    "JSONLogger",
    "LambdaCallback",
    "LearningRateLogger",
    "ModelCheckpoint",
    "ReduceLROnPlateau",
    "SwapEMAWeights",
]

_LOG = logging.getLogger(LOGGER_NAME)


class Callback:
    """Base class: override the hooks you need."""

    def on_fit_begin(self, loop: Any) -> None:
        """Before the first epoch."""

    def on_epoch_begin(self, loop: Any) -> None:
        """At the start of every epoch (also a resumed, partly done one)."""

    def on_fetch(self, loop: Any, logs: dict[str, Any]) -> None:
        """After fit fetched step metrics from the device (every ``log_every`` steps)."""

    def on_evaluate_begin(self, loop: Any) -> None:
        """Before fit evaluates ``loop.state`` on the eval loader (after each epoch)."""

    def on_evaluate_end(self, loop: Any, logs: dict[str, Any]) -> None:
        """After that evaluation; ``logs`` holds its results (``val_*``)."""

    def on_epoch_end(self, loop: Any, logs: dict[str, Any]) -> None:
        """After an epoch and its evaluation; ``logs`` is the epoch's History record."""

    def on_fit_end(self, loop: Any) -> None:
        """After training ends (normally or by ``stop_training``)."""


class CallbackList(Callback):
    """Calls every hook of several callbacks in order."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(
                    f"callbacks must be funcnet.train.Callback instances, got {type(cb).__name__}"
                )
        self.callbacks: list[Callback] = list(callbacks)

    def on_fit_begin(self, loop: Any) -> None:
        for cb in self.callbacks:
            cb.on_fit_begin(loop)

    def on_epoch_begin(self, loop: Any) -> None:
        for cb in self.callbacks:
            cb.on_epoch_begin(loop)

    def on_fetch(self, loop: Any, logs: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_fetch(loop, logs)

    def on_evaluate_begin(self, loop: Any) -> None:
        for cb in self.callbacks:
            cb.on_evaluate_begin(loop)

    def on_evaluate_end(self, loop: Any, logs: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_evaluate_end(loop, logs)

    def on_epoch_end(self, loop: Any, logs: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_epoch_end(loop, logs)

    def on_fit_end(self, loop: Any) -> None:
        for cb in self.callbacks:
            cb.on_fit_end(loop)


class LambdaCallback(Callback):
    """A callback from plain functions, e.g. ``LambdaCallback(on_epoch_end=lambda loop, logs: ...)``."""

    def __init__(self, **hooks: Callable[..., None]) -> None:
        allowed = {name for name in vars(Callback) if name.startswith("on_")}
        unknown = set(hooks) - allowed
        if unknown:
            raise TypeError(
                f"LambdaCallback: unknown hooks {sorted(unknown)}; use {sorted(allowed)}"
            )
        for name, fn in hooks.items():
            setattr(self, name, fn)


def _better(mode: str, min_delta: float) -> Callable[[float, float], bool]:
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    if mode == "min":
        return lambda new, best: new < best - min_delta
    return lambda new, best: new > best + min_delta


def _monitored(logs: dict[str, Any], monitor: str, owner: str) -> float:
    if monitor not in logs:
        raise KeyError(
            f"{owner}: monitored value {monitor!r} is not in the epoch logs {sorted(logs)}; pass eval_loader= to fit for val_* values"
        )
    return float(logs[monitor])


class EarlyStopping(Callback):
    """Stops training when a monitored value has stopped improving (Keras' EarlyStopping).

    Args:
        monitor: an epoch log key, e.g. ``"val_loss"`` or ``"val_accuracy"``.
        patience: epochs without improvement before stopping.
        mode: ``"min"`` or ``"max"``.
        min_delta: the smallest change that counts as an improvement.
        restore_best: on stopping, put back the parameters of the best epoch.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 3,
        mode: str = "min",
        min_delta: float = 0.0,
        restore_best: bool = False,
    ) -> None:
        self.monitor: str = monitor
        self.patience: int = patience
        self.restore_best: bool = restore_best
        self._better = _better(mode, min_delta)
        self.best: float = math.inf if mode == "min" else -math.inf
        self.best_epoch: int | None = None
        self.wait: int = 0
        self._best_state: Any = None

    def on_epoch_end(self, loop: Any, logs: dict[str, Any]) -> None:
        value = _monitored(logs, self.monitor, "EarlyStopping")
        if self._better(value, self.best):
            self.best, self.best_epoch, self.wait = value, loop.epoch, 0
            if self.restore_best:
                self._best_state = jax.tree_util.tree_map(lambda a: a.copy(), loop.state)
        else:
            self.wait += 1
            if self.wait >= self.patience:
                loop.stop_training = True

    def on_fit_end(self, loop: Any) -> None:
        if self.restore_best and self._best_state is not None and loop.stop_training:
            loop.state = self._best_state


class ModelCheckpoint(Callback):
    """Saves the TrainState (with the loader position and the epoch logs) during fit.

    Uses :class:`funcnet.checkpoint.CheckpointManager`: keeps the last ``max_to_keep``
    checkpoints and, with ``monitor``, the best one. A checkpoint holds everything a
    resume needs: ``restore_training(directory, state, loader)`` puts it back.

    Each save records in its metadata whether the parameters were all finite
    (``"params_finite"``, checked on the host as the state is saved). The last checkpoint
    with finite parameters is never pruned in favour of newer non-finite ones (with
    ``on_nonfinite="ignore"`` a diverged run would otherwise keep only NaN checkpoints);
    a warning on the ``funcnet.train`` logger says so when it is kept beyond
    ``max_to_keep``.

    Args:
        directory: the checkpoint directory.
        monitor: an epoch log key to keep the best checkpoint by (None: keep the last ones).
        mode: ``"min"`` or ``"max"`` for ``monitor``.
        max_to_keep: how many recent checkpoints to keep.
        every_n_steps: also save at the first metrics fetch at least this many steps
            after the previous such save (fetches come every ``log_every`` steps), for
            long epochs; None saves at epoch ends only.
        overwrite: when the directory holds checkpoints of later steps than the run's
            (an earlier run's), delete them at the start instead of raising.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        monitor: str | None = None,
        mode: str = "min",
        max_to_keep: int = 3,
        every_n_steps: int | None = None,
        overwrite: bool = False,
    ) -> None:
        self.monitor = monitor
        self.every_n_steps = every_n_steps
        self.overwrite = overwrite
        self._last_periodic = 0
        self._finite_step: int | None = None
        self._kept_said: int | None = None
        self.manager: CheckpointManager = CheckpointManager(
            directory, max_to_keep=max_to_keep, best_metric=monitor, best_mode=mode
        )

    def on_fit_begin(self, loop: Any) -> None:
        later = [s for s in self.manager.all_steps() if s > loop.step]
        # Every process reads the directory before process 0 deletes anything from it, so
        # all of them decide the same (and meet at the same barriers and collectives).
        barrier("funcnet.ModelCheckpoint.fit_begin")
        if later and not self.overwrite:
            raise CheckpointError(
                f"ModelCheckpoint: {self.manager.directory} holds checkpoints of later steps "
                f"{later} than this run's step {loop.step}. To continue that run, restore it "
                f"first (train.restore_training); to start over, pass overwrite=True or "
                f"another directory"
            )
        for step in later:
            self.manager.delete(step)
        self._finite_step = self._last_finite_saved()

    def _last_finite_saved(self) -> int | None:
        """The newest saved step whose parameters were finite (older saves: assumed)."""
        for step in reversed(self.manager.all_steps()):
            if self.manager.restore_metadata(step).get("params_finite", True):
                return step
        return None

    def _save(self, loop: Any, logs: dict[str, Any]) -> None:
        loader = loop.train_loader
        finite = bool(optim.all_finite(loop.state.params))
        metadata = {
            "epoch": loop.epoch,
            "loader": loader.state_dict() if hasattr(loader, "state_dict") else None,
            "params_finite": finite,
        }
        metrics = {k: float(v) for k, v in logs.items() if isinstance(v, int | float)} or None
        # An epoch that ends right after a periodic save saves the same step again, now
        # with the epoch's metrics: that version replaces the other.
        again = self.manager.latest_step() == loop.step
        if finite:
            self._finite_step = loop.step
        keep = () if self._finite_step is None else (self._finite_step,)
        self.manager.save(
            loop.step,
            _arrays_of(loop.state),
            metrics=metrics,
            metadata=metadata,
            overwrite=again,
            keep=keep,
        )
        if not finite:
            self._say_kept(loop.step)

    def _say_kept(self, step: int) -> None:
        """Warns (once per kept step) when the last finite checkpoint outlives max_to_keep."""
        kept, limit = self._finite_step, self.manager.max_to_keep
        if kept is None or limit is None or kept == self._kept_said:
            return
        if kept in self.manager.all_steps()[-limit:]:
            return
        self._kept_said = kept
        _LOG.warning(
            "ModelCheckpoint: the parameters at step %d are not finite; keeping step %d, "
            "the last checkpoint with finite parameters, beyond max_to_keep=%d in %s "
            "(restore it with restore_training(..., step=%d))",
            step,
            kept,
            self.manager.max_to_keep,
            self.manager.directory,
            kept,
        )

    def on_fetch(self, loop: Any, logs: dict[str, Any]) -> None:
        if self.every_n_steps and loop.step - self._last_periodic >= self.every_n_steps:
            self._save(loop, {})
            self._last_periodic = loop.step

    def on_epoch_end(self, loop: Any, logs: dict[str, Any]) -> None:
        if self.monitor is not None:
            _monitored(logs, self.monitor, "ModelCheckpoint")
        self._save(loop, logs)


def _arrays_of(state: Any) -> dict[str, Any]:
    """The array fields of a TrainState, as the dict that checkpoints store."""
    return {
        "params": state.params,
        "model_state": state.model_state,
        "opt_state": state.opt_state,
        "step": state.step,
        "key": state.key,
    }


class LearningRateLogger(Callback):
    """Records the learning rate read from the optimizer state at every metrics fetch
    (into the step records of History, as ``lr``); epoch records carry ``lr`` anyway."""

    def on_fetch(self, loop: Any, logs: dict[str, Any]) -> None:
        lr = float(optim.current_lr(loop.state.opt_state))
        logs["lr"] = lr
        if loop.history.steps:
            loop.history.steps[-1]["lr"] = lr


class ReduceLROnPlateau(Callback):
    """Lowers the learning rate when a monitored value stops improving (PyTorch's
    ``ReduceLROnPlateau``), by rewriting the lr stored in the optimizer state: no
    recompilation.

    Args:
        monitor: an epoch log key.
        **kwargs: passed to :class:`funcnet.optim.ReduceLROnPlateau`: ``mode``,
            ``factor``, ``patience``, ``threshold``, ``threshold_mode``, ``cooldown``,
            ``min_lr`` and ``eps``, as ``torch.optim.lr_scheduler.ReduceLROnPlateau``.
    """

    def __init__(self, monitor: str = "val_loss", **kwargs: Any) -> None:
        self.monitor = monitor
        self.scheduler: optim.ReduceLROnPlateau = optim.ReduceLROnPlateau(**kwargs)

    def on_epoch_end(self, loop: Any, logs: dict[str, Any]) -> None:
        value = _monitored(logs, self.monitor, "ReduceLROnPlateau")
        loop.state = loop.state.replace(opt_state=self.scheduler.step(value, loop.state.opt_state))


class SwapEMAWeights(Callback):
    """Evaluates on the exponential moving average of the parameters (Keras' callback).

    The optimizer keeps the average: ``TrainState.create(model, optim.with_ema(opt,
    decay=0.999), key)``. Around each evaluation of fit this callback puts
    ``optim.ema_params(opt_state)`` in place of the parameters, and the trained parameters
    back afterwards, so ``val_*`` values are the averaged model's while training goes on
    from its own parameters. (For other uses read the average with ``optim.ema_params``.)
    """

    def __init__(self) -> None:
        self._trained: Any = None

    def on_evaluate_begin(self, loop: Any) -> None:
        self._trained = loop.state.params
        loop.state = loop.state.replace(params=optim.ema_params(loop.state.opt_state))

    def on_evaluate_end(self, loop: Any, logs: dict[str, Any]) -> None:
        loop.state, self._trained = loop.state.replace(params=self._trained), None


def writes_files() -> bool:
    """Whether this process writes logs: process 0 of a multi-process run (or the only one)."""
    return jax.process_index() == 0


class _FileLogger(Callback):
    """A log file that only process 0 writes (every process runs the same callbacks)."""

    def __init__(self, path: str | os.PathLike[str], append: bool = False) -> None:
        self.path: str = os.fspath(path)
        self.append = append

    def on_fit_begin(self, loop: Any) -> None:
        if not writes_files():
            return
        parent = os.path.dirname(self.path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        if not self.append and os.path.exists(self.path):
            os.remove(self.path)


class CSVLogger(_FileLogger):
    """Appends one CSV row per epoch (the History record) to ``path``; in a run of several
    processes, process 0 writes it."""

    def on_epoch_end(self, loop: Any, logs: dict[str, Any]) -> None:
        if not writes_files():
            return
        exists = os.path.exists(self.path) and os.path.getsize(self.path) > 0
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(logs), extrasaction="ignore")
            if not exists:
                writer.writeheader()
            writer.writerow(logs)


class JSONLogger(_FileLogger):
    """Appends one JSON line per epoch (``{"type": "epoch", ...}``) and, with
    ``steps=True``, one per fetched step (``{"type": "step", ...}``) to ``path``; in a run
    of several processes, process 0 writes it."""

    def __init__(
        self, path: str | os.PathLike[str], append: bool = False, steps: bool = False
    ) -> None:
        super().__init__(path, append)
        self.steps = steps
        self._written = 0

    def _write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def on_fetch(self, loop: Any, logs: dict[str, Any]) -> None:
        if self.steps and writes_files():
            for record in loop.history.steps[self._written :]:
                self._write({"type": "step", **record})
            self._written = len(loop.history.steps)

    def on_epoch_end(self, loop: Any, logs: dict[str, Any]) -> None:
        if writes_files():
            self._write({"type": "epoch", **logs})
