"""Progress display for fit: a tqdm bar, text lines, log records, or nothing."""

from __future__ import annotations

import logging
import numbers
import sys
import time
from collections.abc import Callable, Mapping
from typing import IO, Any

import jax
from tqdm import tqdm
from tqdm.utils import disp_len

__all__ = ["LOGGER_NAME", "MODES", "Progress", "make_progress"]

MODES = ("auto", "bar", "log", "logging", "quiet")
LOGGER_NAME = "funcnet.train"
_MIN_BAR = 10  # columns the bar keeps, however many metrics there are
_SLACK = 2  # columns for the remaining time to grow into (hours)
_BAR_SKIP = ("samples/s",)  # tqdm shows its own rate


def _in_jupyter() -> bool:
    """Whether this process is a Jupyter kernel; consults IPython only if already imported."""
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if get_ipython is not None else None
    return getattr(shell, "kernel", None) is not None


def _has_ipywidgets() -> bool:
    """Whether tqdm's notebook bar can draw (it needs ipywidgets)."""
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def _isatty(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except ValueError:  # a closed stream
        return False


def _resolve(mode: str, file: IO[str] | None) -> tuple[str, bool]:
    """The mode ``"auto"`` stands for here, and whether the bar is tqdm's notebook widget."""
    if mode in ("auto", "bar") and file is None and _in_jupyter():
        return "bar", _has_ipywidgets()  # Jupyter's stderr is no TTY, yet draws a bar
    if mode == "auto":
        return ("bar" if _isatty(file if file is not None else sys.stderr) else "log"), False
    return mode, False


def _items(logs: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(name, text)`` for every number in ``logs`` but ``epoch``, ``loss`` first."""
    out = []
    for key, value in logs.items():
        if key == "epoch" or isinstance(value, bool) or not isinstance(value, numbers.Real):
            continue
        if key == "time":
            out.append((key, f"{value:.1f}s" if value >= 1 else f"{value * 1000:.0f}ms"))
        elif key in ("samples_per_s", "samples/s"):
            out.append(("samples/s", f"{value:.0f}"))
        elif isinstance(value, numbers.Integral):
            out.append((key, str(value)))
        else:
            out.append((key, f"{value:.4g}"))
    return sorted(out, key=lambda item: item[0] != "loss")


def _line(logs: Mapping[str, Any]) -> str:
    return "  ".join(f"{key} {text}" for key, text in _items(logs))


class Progress:
    """Shows fit's progress one epoch at a time; updated only when fit fetches metrics.

    Modes:

    - ``"bar"``: a tqdm bar per epoch with the live loss and as many metrics as fit in the
      terminal's width, then one line with the epoch's full record. In Jupyter, tqdm's
      notebook widget when ipywidgets is installed (``pip install "funcnet[notebook]"``),
      a text bar otherwise.
    - ``"log"``: text lines: one per epoch, and within an epoch a progress line at most
      every ``line_every`` seconds. For batch jobs and log files.
    - ``"logging"``: the same lines as ``"log"``, as INFO records of the
      ``logging.getLogger("funcnet.train")`` logger.
    - ``"quiet"``: nothing.
    - ``"auto"``: ``"bar"`` in Jupyter or on a terminal, ``"log"`` otherwise.

    A Progress can be passed to several ``fit`` calls: each one starts with :meth:`begin`.
    In a run of several processes only process 0 shows anything (the others turn
    ``"quiet"`` at :meth:`begin`).

    Args:
        mode: one of the modes above.
        file: where the bar and the lines go (default: the bar and its epoch lines to
            stderr, ``"log"`` lines to stdout; in Jupyter the widget, and its epoch lines
            to stdout). ``"logging"`` ignores it.
        line_every: the least number of seconds between two progress lines within an
            epoch in ``"log"`` and ``"logging"`` modes (0: a line at every fetch).
        ncols: the bar's width in columns (default: the terminal's, followed as it changes).
        clock: the monotonic clock, in seconds, that ``line_every`` is measured with.

    Attributes:
        mode: the mode in use (what ``"auto"`` stood for).

    Raises:
        ValueError: an unknown mode or a negative ``line_every``.
    """

    def __init__(
        self,
        mode: str = "auto",
        *,
        file: IO[str] | None = None,
        line_every: float = 10.0,
        ncols: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"progress must be one of {MODES}, got {mode!r}")
        if line_every < 0:
            raise ValueError(f"line_every must be >= 0 seconds, got {line_every}")
        self.file = file
        self.line_every = line_every
        self.ncols = ncols
        self._clock = clock
        self.mode, self._notebook = _resolve(mode, file)
        self._logger = logging.getLogger(LOGGER_NAME)
        self._bar: Any = None
        self._final: int | None = None
        self._total: int | None = None
        self._last_line = 0.0

    def begin(self, final_epoch: int) -> None:
        """Starts a fit whose last epoch is ``final_epoch`` (1-based, for the labels).

        In a run of several processes, every process but process 0 turns ``"quiet"`` here.
        """
        self.close()
        self._final = final_epoch
        if jax.process_index() != 0:
            self.mode: str = "quiet"

    def start_epoch(self, epoch: int, total: int | None, initial: int) -> None:
        """Starts ``epoch`` (0-based) of ``total`` batches (None: unknown), ``initial`` done."""
        self.close()
        self._total = total
        self._last_line = self._clock()
        if self.mode == "bar":
            self._bar = self._open_bar(epoch, total, initial)

    def update(self, epoch: int, done: int, advanced: int, logs: Mapping[str, Any]) -> None:
        """Shows a metrics fetch: ``done`` batches of the epoch, ``advanced`` since the last.

        Args:
            epoch: the epoch (0-based).
            done: batches of the epoch done so far.
            advanced: batches done since the previous update (the bar follows ``done``).
            logs: the running values, e.g. ``{"loss": 0.12, "samples/s": 1234}``.
        """
        if self._bar is not None:
            self._bar.n = done  # tqdm's documented way to move a bar to a position
            self._bar.set_postfix_str(self._postfix(logs), refresh=True)
        elif self.mode in ("log", "logging") and self._line_due():
            total = "" if self._total is None else f"/{self._total}"
            self._emit(f"{self._label(epoch)}  batch {done}{total}  {_line(logs)}")

    def end_epoch(self, epoch: int, logs: Mapping[str, Any]) -> None:
        """Closes the epoch's bar and shows the epoch's record (``logs``) on one line."""
        self.close()
        if self.mode != "quiet":
            self._emit(f"{self._label(epoch)} done  {_line(logs)}")

    def close(self) -> None:
        """Closes the bar, if one is open; safe to call at any time, and more than once."""
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.close()

    def _label(self, epoch: int) -> str:
        return f"epoch {epoch + 1}" + ("" if self._final is None else f"/{self._final}")

    def _open_bar(self, epoch: int, total: int | None, initial: int) -> Any:
        options = {
            "total": total,
            "initial": initial,
            "desc": self._label(epoch),
            "unit": "batch",
            "leave": False,  # end_epoch prints the epoch's line in its place
            "smoothing": 0,  # the rate is the epoch's mean: updates come in groups
        }
        if self._notebook:
            from tqdm.notebook import tqdm as notebook_tqdm

            return notebook_tqdm(**options)
        stream = self.file if self.file is not None else sys.stderr
        return tqdm(**options, file=stream, ncols=self.ncols, dynamic_ncols=self.ncols is None)

    def _postfix(self, logs: Mapping[str, Any]) -> str:
        """The bar's metrics, ``loss`` first, as many as leave the bar ``_MIN_BAR`` columns."""
        items = [f"{key}={text}" for key, text in _items(logs) if key not in _BAR_SKIP]
        meter = {**self._bar.format_dict, "postfix": None}
        width = meter.pop("ncols")
        if not isinstance(width, int) or width <= 0:
            return ", ".join(items)
        if meter["total"]:
            meter["n"] = meter["total"]  # the widest counts, so the postfix stays put
        # Without ncols, tqdm draws a 10-column bar when the total is known.
        bar = 10 if meter["total"] else 0
        room = width - (disp_len(tqdm.format_meter(**meter)) - bar) - _SLACK
        room -= _MIN_BAR if meter["total"] else 0
        chosen: list[str] = []
        for item in items:
            if len(", ".join([*chosen, item])) + 2 > room:  # tqdm puts ", " before it
                break
            chosen.append(item)
        return ", ".join(chosen)

    def _line_due(self) -> bool:
        now = self._clock()
        if now - self._last_line < self.line_every:
            return False
        self._last_line = now
        return True

    def _emit(self, line: str) -> None:
        if self.mode == "logging":
            self._logger.info("%s", line)
            return
        stream = self.file
        if stream is None:
            stream = sys.stderr if self.mode == "bar" and not self._notebook else sys.stdout
        print(line, file=stream, flush=True)


def make_progress(progress: str | Progress) -> Progress:
    """The Progress for fit's ``progress=`` argument: a mode name or a Progress instance.

    Raises:
        TypeError: ``progress`` is neither.
        ValueError: an unknown mode name.
    """
    if isinstance(progress, Progress):
        return progress
    if isinstance(progress, str):
        return Progress(progress)
    raise TypeError(
        f"progress must be a mode name {MODES} or a funcnet.train.Progress, "
        f"got {type(progress).__name__}"
    )
