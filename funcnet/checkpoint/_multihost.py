"""Checkpoints in a run of several processes: each checkpoint is written once, by process 0.

Every process calls ``save`` with the same tree (they run the same program). Arrays
sharded across processes are gathered first (a collective, so every process takes part),
process 0 writes, and every process then waits at a barrier, so that a ``restore`` right
after a ``save`` finds the files on every process. In a single process these are plain
calls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import jax
from jax.experimental import multihost_utils

T = TypeVar("T")


def gather(values: Sequence[Any]) -> tuple[Any, ...]:
    """``values`` with every array that is split across processes gathered whole.

    Replicated arrays and those a process holds entirely are returned as they are (they
    convert to NumPy in any process); the others become NumPy arrays of their global
    shape, in every process.
    """
    return tuple(_whole(value) for value in values)


def _whole(value: Any) -> Any:
    if (
        isinstance(value, jax.Array)
        and not value.is_fully_addressable
        and not value.is_fully_replicated
    ):
        return multihost_utils.process_allgather(value, tiled=True)
    return value


def write_once(write: Callable[[], T], name: str) -> T | None:
    """Runs ``write`` in process 0 only, then holds every process at a barrier.

    Args:
        write: the writing; its exceptions are raised in process 0 after the barrier, so
            the other processes are not left waiting.
        name: the barrier's name, the same in every process.

    Returns:
        What ``write`` returned in process 0; None in the others.
    """
    if jax.process_count() == 1:
        return write()
    try:
        return write() if jax.process_index() == 0 else None
    finally:
        multihost_utils.sync_global_devices(name)


def barrier(name: str) -> None:
    """Holds every process until all reach ``name`` (nothing with one process): what they
    read from the file system before it, no process has changed yet."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)
