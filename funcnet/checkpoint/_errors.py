"""The checkpoint errors and warning; all errors subclass ``funcnet.errors.CheckpointError``."""

from __future__ import annotations

from collections.abc import Iterable

from funcnet.errors import CheckpointError

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "CheckpointNotFoundError",
    "CorruptCheckpointError",
    "PartialRestoreWarning",
]


_MAX_MESSAGE = 4000
"""The longest message these errors carry; values from files are quoted shortened, and
this bounds what slips through (e.g. a 50 MB dict key in a manifest's tree)."""


def bounded(message: str, limit: int = _MAX_MESSAGE) -> str:
    """``message`` with its middle cut when longer than ``limit`` (start and end kept)."""
    if len(message) <= limit:
        return message
    head, tail = limit * 2 // 3, limit // 3
    cut = len(message) - head - tail
    return f"{message[:head]} ... ({cut} characters cut) ... {message[-tail:]}"


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The directory, the step or the file asked for does not exist."""

    def __init__(self, message: str) -> None:
        super().__init__(bounded(message))


class CorruptCheckpointError(CheckpointError):
    """A checkpoint exists but is truncated, corrupt, edited or unreadable."""

    def __init__(self, message: str) -> None:
        super().__init__(bounded(message))


class CheckpointMismatchError(CheckpointError, ValueError):
    """A checkpoint's structure, shapes or dtypes differ from the target's.

    Attributes:
        differences: one line per difference, e.g.
            ``"params.fc1.weight: expected shape (784, 128), got (100, 128)"``.
    """

    def __init__(self, message: str, differences: Iterable[str] = ()) -> None:
        super().__init__(bounded(message))
        self.differences: tuple[str, ...] = tuple(differences)


class PartialRestoreWarning(UserWarning):
    """``restore(..., strict=False)`` kept some of the target's values (listed in the message)."""
