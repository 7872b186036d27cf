"""Resuming a run from a ModelCheckpoint directory."""

from __future__ import annotations

import os
from typing import Any

from funcnet.checkpoint import restore_checkpoint
from funcnet.train._callbacks import _arrays_of
from funcnet.train._state import TrainState

__all__ = ["restore_training"]


def restore_training(
    directory: str | os.PathLike[str],
    state: TrainState,
    loader: Any = None,
    step: int | None = None,
) -> TrainState:
    """Puts a checkpoint written by :class:`ModelCheckpoint` back into a run.

    Restores the parameters, model state, optimizer state, step count and PRNG key into
    ``state``'s structure (so shapes and dtypes are checked against it, with a complete
    report of any difference), and the data loader's position (epoch, batch, seed).
    ``fit(state, loader, epochs=E, initial_epoch=loader.epoch)`` then goes on from there,
    reproducing the uninterrupted run.

    Args:
        directory: the checkpoint directory.
        state: a TrainState of the same model and optimizer (e.g. a fresh
            ``TrainState.create``), whose arrays are replaced.
        loader: the training DataLoader, whose position is restored (optional).
        step: the step to restore (default: the latest).

    Returns:
        The restored TrainState.

    Raises:
        funcnet.checkpoint.CheckpointError: no checkpoint, a damaged one, or one that does
            not match ``state``.
    """
    ckpt = restore_checkpoint(directory, target=_arrays_of(state), step=step)
    position = (ckpt.metadata or {}).get("loader")
    if loader is not None and position is not None:
        loader.load_state_dict(position)
    return state.replace(**ckpt.tree)
