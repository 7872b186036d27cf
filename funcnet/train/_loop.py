"""Loop: the state of a running fit, which callbacks receive."""

from __future__ import annotations

import logging
import time
from typing import Any

import jax

from funcnet.errors import FuncnetError
from funcnet.train._callbacks import Callback
from funcnet.train._epoch_metrics import HIDDEN, EpochMetrics
from funcnet.train._history import History
from funcnet.train._progress import LOGGER_NAME, Progress
from funcnet.train._state import TrainState

__all__ = ["Loop", "NonFiniteLossError"]

_LOG = logging.getLogger(LOGGER_NAME)


class NonFiniteLossError(FuncnetError, FloatingPointError):
    """Training produced a non-finite loss (the parameters were kept finite)."""


class Loop:
    """The running fit, as callbacks see it.

    Attributes:
        state: the current TrainState.
        epoch: the current epoch (0-based; a DataLoader's own epoch counter).
        epochs: the epoch fit stops before (it trains ``epoch < epochs``).
        step: optimizer steps taken so far (a Python int, kept on the host).
        batch_in_epoch: batches of the current epoch done so far.
        history: the History being recorded.
        train_loader, eval_loader: the loaders.
        metrics: the current epoch's :class:`EpochMetrics` (running means and the streaming
            accumulators' states).
        last_finite: ``(step, loss)`` of the last step with a finite loss, or None.
        skipped_steps: with ``on_nonfinite="skip"``, the current epoch's steps skipped for
            a non-finite loss or gradient (in the epoch logs as ``skipped_steps``).
        stop_training: set it to True to end fit after the current metrics fetch.
    """

    def __init__(
        self,
        state: TrainState,
        train_loader: Any,
        eval_loader: Any,
        epochs: int,
        metrics: EpochMetrics,
        callbacks: Callback,
        progress: Progress,
        on_nonfinite: str,
    ) -> None:
        self.state: TrainState = state
        self.train_loader: Any = train_loader
        self.eval_loader: Any = eval_loader
        self.epoch: int = 0
        self.epochs: int = epochs
        self.step: int = int(state.step)
        self.batch_in_epoch: int = 0
        self.history: History = History()
        self.metrics = metrics
        self.callbacks: Callback = callbacks
        self.progress: Progress = progress
        self.on_nonfinite = on_nonfinite
        self.last_finite: tuple[int, float] | None = None
        self.skipped_steps: int = 0
        self.stop_training = False
        self._pending: list[dict[str, Any]] = []
        self._seen = 0
        self._started = time.perf_counter()

    def start_epoch(self, epoch: int, total: int | None, done: int) -> None:
        """Resets the epoch's metrics and counters; ``done`` batches are already behind."""
        self.epoch, self.batch_in_epoch = epoch, done
        self.metrics.reset()
        self.skipped_steps = 0
        self._seen, self._started = 0, time.perf_counter()
        self.callbacks.on_epoch_begin(self)
        self.progress.start_epoch(epoch, total, done)

    def record(self, state: TrainState, values: dict[str, Any], rows: int | None) -> None:
        """Takes a step's new state and metrics (on the device; nothing waits for them)."""
        self.state = state
        self._pending.append(self.metrics.add(values, rows))
        self.step += 1
        self.batch_in_epoch += 1

    @property
    def pending(self) -> int:
        """Steps whose metrics are still on the device."""
        return len(self._pending)

    def fetch(self) -> None:
        """Fetches the pending metrics in one transfer; updates history, display, callbacks.

        Raises:
            NonFiniteLossError: with ``on_nonfinite="error"``, when a step's loss was not finite.
        """
        if not self._pending:
            return
        host, self._pending = jax.device_get(self._pending), []
        first = self.step - len(host) + 1
        finite = [self._check(first + i, values) for i, values in enumerate(host)]
        self.metrics.extend(v for v, ok in zip(host, finite) if ok)
        self.skipped_steps += finite.count(False)
        for i, values in enumerate(host):
            self._seen += int(values.get("count", 0))
            record = {k: float(v) for k, v in values.items() if k not in HIDDEN}
            if "finite" in values:  # a guarded step: say whether its update was skipped
                record["skipped"] = max(record.get("skipped", 0.0), float(not finite[i]))
            self.history.steps.append({"step": first + i, "epoch": self.epoch, **record})
        logs = {**self.metrics.means(last=sum(finite)), "samples/s": round(self._rate())}
        self.progress.update(self.epoch, self.batch_in_epoch, len(host), logs)
        self.callbacks.on_fetch(self, logs)

    def _check(self, step: int, values: dict[str, Any]) -> bool:
        if bool(values.get("finite", True)):
            self.last_finite = (step, float(values["loss"]))
            return True
        if self.on_nonfinite == "error":
            raise NonFiniteLossError(
                f"non-finite loss at step {step} (loss {float(values['loss'])}); "
                f"{self._last_finite_text()}. The parameters were kept finite (that step "
                "applied zero gradients). Lower the learning rate, clip gradients "
                "(funcnet.optim.clip_grad_norm), or pass on_nonfinite='skip'."
            )
        return False

    def _warn_skipped(self) -> None:
        if self.skipped_steps:
            _LOG.warning(
                "epoch %d: %d step(s) skipped for a non-finite loss or gradient "
                '(on_nonfinite="skip"); %s. The same batches fail every epoch: lower the '
                "learning rate, clip gradients (funcnet.optim.clip_grad_norm) or check "
                "the data",
                self.epoch,
                self.skipped_steps,
                self._last_finite_text(),
            )

    def _last_finite_text(self) -> str:
        if self.last_finite is None:
            return "no step had a finite loss"
        step, loss = self.last_finite
        return f"the last finite loss was {loss:.6g} at step {step}"

    def _rate(self) -> float:
        elapsed = time.perf_counter() - self._started
        return self._seen / elapsed if elapsed > 0 else 0.0

    def end_epoch(self, eval_logs: dict[str, Any], lr: float | None) -> dict[str, Any]:
        """Records the epoch in the history and tells display and callbacks."""
        logs: dict[str, Any] = {"epoch": self.epoch, **self.metrics.results(), **eval_logs}
        if lr is not None:
            logs["lr"] = lr
        if self.on_nonfinite == "skip":
            logs["skipped_steps"] = self.skipped_steps
            self._warn_skipped()
        logs["time"] = time.perf_counter() - self._started
        logs["samples_per_s"] = self._rate()
        self.history.epochs.append(logs)
        self.progress.end_epoch(self.epoch, logs)
        self.callbacks.on_epoch_end(self, logs)
        return logs
