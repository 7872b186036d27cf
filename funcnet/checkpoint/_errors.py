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


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The directory, the step or the file asked for does not exist."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint exists but is truncated, corrupt, edited or unreadable."""


class CheckpointMismatchError(CheckpointError, ValueError):
    """A checkpoint's structure, shapes or dtypes differ from the target's.

    Attributes:
        differences: one line per difference, e.g.
            ``"params.fc1.weight: expected shape (784, 128), got (100, 128)"``.
    """

    def __init__(self, message: str, differences: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.differences = tuple(differences)


class PartialRestoreWarning(UserWarning):
    """``restore(..., strict=False)`` kept some of the target's values (listed in the message)."""
