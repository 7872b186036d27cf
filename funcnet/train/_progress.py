"""Progress display for fit: a tqdm bar, log lines, or nothing."""

from __future__ import annotations

import sys
import time
from typing import Any

MODES = ("auto", "bar", "log", "quiet")


def _fmt(logs: dict[str, Any]) -> str:
    parts = []
    for k, v in logs.items():
        if k == "epoch":
            continue
        if isinstance(v, float):
            parts.append(f"{k} {v:.4g}")
        elif isinstance(v, int):
            parts.append(f"{k} {v}")
    return "  ".join(parts)


class Progress:
    """Shows one epoch at a time; updated only when fit fetches metrics from the device.

    Args:
        mode: ``"bar"`` (a tqdm bar per epoch with live loss, metrics and throughput),
            ``"log"`` (a line per epoch, and a progress line at most every
            ``line_every`` seconds within long epochs: for batch jobs and logs), ``"quiet"``, or ``"auto"`` (bar on a terminal, log otherwise).
        epochs: the total number of epochs, for the labels.
        file: where to write (default stderr for the bar, stdout for log lines).
    """

    def __init__(self, mode: str, epochs: int, file: Any = None) -> None:
        if mode not in MODES:
            raise ValueError(f"progress must be one of {MODES}, got {mode!r}")
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "log"
        self.mode = mode
        self.epochs = epochs
        self.file = file
        self._bar: Any = None
        self._total = 0
        self._last_line = 0.0
        self.line_every = 10.0  # seconds between progress lines in "log" mode

    def start_epoch(self, epoch: int, total: int, initial: int) -> None:
        self._total = total
        self._last_line = time.monotonic()
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total,
                initial=initial,
                desc=f"epoch {epoch + 1}/{self.epochs}",
                unit="batch",
                dynamic_ncols=True,
                file=self.file or sys.stderr,
                leave=True,
            )

    def update(self, epoch: int, done: int, advanced: int, logs: dict[str, Any]) -> None:
        if self.mode == "bar" and self._bar is not None:
            self._bar.update(advanced)
            self._bar.set_postfix_str(_fmt(logs), refresh=True)
        elif self.mode == "log":
            print(
                f"epoch {epoch + 1}/{self.epochs}  batch {done}/{self._total}  {_fmt(logs)}",
                file=self.file or sys.stdout,
                flush=True,
            )

    def end_epoch(self, epoch: int, logs: dict[str, Any]) -> None:
        if self.mode == "bar" and self._bar is not None:
            self._bar.set_postfix_str(_fmt(logs), refresh=True)
            self._bar.close()
            self._bar = None
        elif self.mode == "log":
            print(
                f"epoch {epoch + 1}/{self.epochs} done  {_fmt(logs)}",
                file=self.file or sys.stdout,
                flush=True,
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
