"""The child process of test_atomic: forks workers that save, overwrite and delete
checkpoints in a loop until the test SIGKILLs them.

Run as ``python _crash_child.py REPO_ROOT DIRECTORY``. It imports only NumPy and
funcnet.checkpoint's jax-free modules (``_format``, ``_npz``, ``_layout``), loaded from
REPO_ROOT behind a stub ``funcnet`` package so that neither funcnet's ``__init__`` nor jax is
imported. It reads the tree's structure from the existing step 0, prints ``ready``, then for
each line ``fork FIRST_STEP`` on stdin forks a worker (a fork costs milliseconds, a fresh
interpreter most of a second), prints ``pid PID``, waits for the worker and prints
``exit STATUS`` (the raw wait status). A worker loops forever::

    save step s (content seeded by s)      -> prints "saved s"
    overwrite step 0 (content seeded by s) -> prints "overwrote 0"
    delete step s - 3                      -> prints "deleted s-3"

For ``crash N FIRST`` the worker instead does one round (save FIRST, overwrite step 0,
delete FIRST) and dies with ``os._exit`` right before its N-th filesystem change (mkdir,
rename, replace, unlink, rmdir or fsync), or prints ``done`` if the round has fewer.

Every checkpoint records its seed in its metadata, so the test can check each one's arrays
bit for bit with :func:`generate`, which it shares.
"""

from __future__ import annotations

import os
import sys
import traceback
import types
from pathlib import Path
from typing import Any

import numpy as np


def generate(fmt: Any, npz: Any, leaves: Any, seed: int) -> list[Any]:
    """The values to store for ``leaves``: random bytes seeded by ``seed``, true dtypes."""
    rng = np.random.default_rng(seed)
    values = []
    for leaf in leaves:
        if not leaf.stored:
            values.append(None)
            continue
        raw = rng.integers(0, 256, size=leaf.nbytes, dtype=np.uint8)
        storage = raw.view(fmt.storage_dtype(leaf.dtype)).reshape(leaf.shape)
        values.append(npz.from_storage(storage, leaf.dtype))
    return values


def _import_writer(root: str) -> tuple[Any, Any, Any]:
    """funcnet.checkpoint's jax-free modules, loaded without funcnet/__init__.py."""

    class FuncnetError(Exception):
        pass

    class CheckpointError(FuncnetError, OSError):
        pass

    package = types.ModuleType("funcnet")
    package.__path__ = [os.path.join(root, "funcnet")]
    errors = types.ModuleType("funcnet.errors")
    errors.FuncnetError = FuncnetError
    errors.CheckpointError = CheckpointError
    subpackage = types.ModuleType("funcnet.checkpoint")
    subpackage.__path__ = [os.path.join(root, "funcnet", "checkpoint")]
    sys.modules.update(
        {"funcnet": package, "funcnet.errors": errors, "funcnet.checkpoint": subpackage}
    )
    from funcnet.checkpoint import _format, _layout, _npz

    assert "jax" not in sys.modules, "the checkpoint writer must not import jax"
    return _format, _npz, _layout


def _say(line: str) -> None:
    """Writes one line to stdout in a single system call: a line written by ``print`` can
    reach the pipe in two writes (text, then newline), and a SIGKILL between them would glue
    the worker's half line to the parent's next one."""
    os.write(1, (line + "\n").encode())


def _die_before(n: int) -> None:
    """Makes the process exit, as if killed, right before its n-th filesystem change."""
    count = 0

    def counted(function: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            nonlocal count
            count += 1
            if count == n:
                os._exit(137)
            return function(*args, **kwargs)

        return call

    for name in ("mkdir", "rename", "replace", "unlink", "rmdir", "fsync"):
        setattr(os, name, counted(getattr(os, name)))


def _work(
    fmt: Any, npz: Any, layout: Any, directory: Path, first: int, crash_at: int | None
) -> None:
    template = layout.find(directory, 0)[2]

    def write(step: int, seed: int, overwrite: bool) -> None:
        values = generate(fmt, npz, template.leaves, seed)
        layout.write_step(
            directory,
            step,
            fmt.Encoded(template.tree, template.leaves, tuple(values)),
            metadata={"seed": seed},
            metrics={},
            funcnet_version="crash-test",
            overwrite=overwrite,
        )

    if crash_at is not None:
        _die_before(crash_at)
    step = first
    while True:
        write(step, seed=step, overwrite=False)
        _say(f"saved {step}")
        write(0, seed=step, overwrite=True)
        _say("overwrote 0")
        if crash_at is not None:
            layout.delete_step(directory, step)
            _say(f"deleted {step}")
            _say("done")
            return
        if step - 3 > 0:
            layout.delete_step(directory, step - 3)
            _say(f"deleted {step - 3}")
        step += 1


def main() -> None:
    root, directory = sys.argv[1], Path(sys.argv[2])
    fmt, npz, layout = _import_writer(root)
    _say("ready")
    for line in sys.stdin:
        command, *numbers = line.split()
        first = int(numbers[-1])
        crash_at = int(numbers[0]) if command == "crash" else None
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                _work(fmt, npz, layout, directory, first, crash_at)
                status = 0
            except BaseException:
                traceback.print_exc()
                sys.stderr.flush()
            finally:
                os._exit(status)
        _say(f"pid {pid}")
        _, status = os.waitpid(pid, 0)
        _say(f"exit {status}")


if __name__ == "__main__":
    main()
