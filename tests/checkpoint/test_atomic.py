"""Atomicity: kill a process that saves, overwrites and deletes checkpoints (with SIGKILL at
random moments, and right before each of its filesystem changes in turn) and check that
every earlier checkpoint still restores bit-exactly and that no half-written one is ever
listed or picked by ``restore``."""

from __future__ import annotations

import os
import random
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet
from funcnet import checkpoint
from funcnet.checkpoint import _format, _layout, _npz
from tests.checkpoint import _crash_child

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

TRIALS = 24
ROOT = str(Path(funcnet.__file__).resolve().parent.parent)
CHILD = str(Path(_crash_child.__file__).resolve())


def _template() -> dict:
    """About 200 kB in leaves of several kinds."""
    return {
        "params": {
            "fc1": {"weight": jnp.zeros((128, 256)), "bias": jnp.zeros(256, jnp.bfloat16)},
            "fc2": {"weight": jnp.zeros((256, 64)), "bias": jnp.zeros(64)},
        },
        "opt": {"count": jnp.zeros((), jnp.int32), "mu": jnp.zeros((64, 64), jnp.float16)},
        "key": jax.random.key(0),
        "raw_key": np.zeros(2, np.uint32),
        "step": 0,
    }


class _Child:
    """The crash child (see _crash_child.py), its output read line by line with timeouts."""

    def __init__(self, directory: Path, stderr_path: Path) -> None:
        self._stderr_path = stderr_path
        with open(stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, CHILD, ROOT, str(directory)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        self._buffer = b""

    def readline(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            with selectors.DefaultSelector() as selector:
                selector.register(fd, selectors.EVENT_READ)
                if not selector.select(max(0.0, deadline - time.monotonic())):
                    pytest.fail(f"the crash child is stuck:\n{self.stderr()}")
            chunk = os.read(fd, 65536)
            if not chunk:
                pytest.fail(f"the crash child exited:\n{self.stderr()}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def send(self, line: str) -> None:
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def stderr(self) -> str:
        return self._stderr_path.read_text()

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=30)
        self.process.stdout.close()


def _run_worker(child: _Child, first: int, delay: float | None) -> list[str]:
    """Forks a worker saving from step ``first`` and SIGKILLs it after ``delay`` s (None: as
    soon as it has saved one step and overwritten step 0); returns its output."""
    child.send(f"fork {first}")
    lines = []
    while not (line := child.readline()).startswith("pid "):
        lines.append(line)
    if delay is None:
        while not lines or lines[-1] != "overwrote 0":
            lines.append(child.readline())
    else:
        time.sleep(delay)
    os.kill(int(line.split()[1]), signal.SIGKILL)
    while not (line := child.readline()).startswith("exit "):
        lines.append(line)
    status = int(line.split()[1])
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert killed, f"the worker failed by itself:\n{child.stderr()}"
    return lines


def _assert_content(ckpt: checkpoint.Checkpoint, leaves: tuple[_format.Leaf, ...]) -> None:
    expected = _crash_child.generate(_format, _npz, leaves, ckpt.metadata["seed"])
    restored = jax.tree_util.tree_leaves(ckpt.tree)
    assert len(restored) == len(leaves)
    for leaf, got, want in zip(leaves, restored, expected):
        if leaf.kind == "prng_key":
            got = np.asarray(jax.random.key_data(got))
        if want is None:
            continue
        assert got.dtype == want.dtype and got.shape == want.shape, (ckpt.path, leaf.name)
        assert got.tobytes() == want.tobytes(), (ckpt.path, leaf.name)


def _verify(
    directory: Path, lines: list[str], leaves: tuple[_format.Leaf, ...], lag: int = 3
) -> None:
    """Checks the directory after a worker died, given its output.

    Every step directory is complete, every complete step has the content its seed gives,
    ``restore`` picks the newest, and every step the worker reported saved is still there,
    except the one it deletes after saving step s (s - ``lag``) if that may be half-way.
    """
    steps = checkpoint.all_steps(directory)
    assert 0 in steps, "an interrupted overwrite lost step 0"
    on_disk = {int(name[5:]) for name in os.listdir(directory) if name.startswith("step_")}
    assert on_disk <= set(steps), f"incomplete step directories: {on_disk - set(steps)}"
    newest = checkpoint.restore_checkpoint(directory, as_numpy=True)
    assert newest.step == steps[-1]
    for step in steps:
        _assert_content(checkpoint.restore_checkpoint(directory, step=step, as_numpy=True), leaves)
    saved = [int(line.split()[1]) for line in lines if line.startswith("saved")]
    deleted = {int(line.split()[1]) for line in lines if line.startswith("deleted")}
    in_flight = {saved[-1] - lag} if saved and not lines[-1].startswith("deleted") else set()
    for step in saved:
        if step not in deleted | in_flight:
            assert step in steps, f"step {step} was saved, then lost"


def _setup(directory: Path) -> tuple[_format.Leaf, ...]:
    """Step 0 with the template's structure and content seeded by 0; its leaf records."""
    checkpoint.save(directory, _template(), 0)
    manifest = _layout.find(directory, 0)[2]
    values = _crash_child.generate(_format, _npz, manifest.leaves, 0)
    _layout.write_step(
        directory,
        0,
        _format.Encoded(manifest.tree, manifest.leaves, tuple(values)),
        metadata={"seed": 0},
        metrics={},
        funcnet_version="test",
        overwrite=True,
    )
    return manifest.leaves


@pytest.fixture
def fast_dir(tmp_path):
    """A directory in RAM where there is one: fsync costs nothing there, so the workers get
    through many more operations per second. A SIGKILL affects a process the same way on
    any filesystem; durability across power loss cannot be tested here in any case."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir=shm, prefix="funcnet-test-") as directory:
        yield Path(directory)


def test_sigkill_at_random_moments_never_loses_or_exposes_a_checkpoint(tmp_path, fast_dir):
    directory = fast_dir / "ckpt"
    leaves = _setup(directory)
    rng = random.Random(20261123)
    child = _Child(directory, tmp_path / "stderr.txt")
    interrupted, saves = 0, 0
    try:
        assert child.readline() == "ready"
        # Calibrate: kill moments are spread over about two save-overwrite-delete rounds
        # however fast this machine is today.
        start = time.monotonic()
        lines = _run_worker(child, 1, delay=None)
        round_trip = time.monotonic() - start
        _verify(directory, lines, leaves)
        for _ in range(TRIALS):
            first = max(checkpoint.all_steps(directory)) + 1
            lines = _run_worker(child, first, delay=rng.uniform(0.0, 2.0 * round_trip))
            saves += sum(line.startswith("saved") for line in lines)
            interrupted += any(name.startswith(".") for name in os.listdir(directory))
            _verify(directory, lines, leaves)
            for step in checkpoint.all_steps(directory)[1:-3]:  # stragglers of killed workers
                _layout.delete_step(directory, step)
    finally:
        child.close()
    # The kills must have landed inside operations, not only between them.
    assert interrupted >= TRIALS // 4, f"only {interrupted} of {TRIALS} kills interrupted a write"
    assert saves >= 3, f"only {saves} saves completed in {TRIALS} trials"
    _layout.remove_leftovers(directory)
    assert not [name for name in os.listdir(directory) if name.startswith(".")]


def test_a_crash_before_any_filesystem_change_never_loses_or_exposes_a_checkpoint(
    tmp_path, fast_dir
):
    """Deterministic: one round (save, overwrite, delete) dies before its 1st, 2nd, ... change,
    so the short windows (a rename pair, a deletion) are hit every time, not by luck."""
    directory = fast_dir / "ckpt"
    leaves = _setup(directory)
    child = _Child(directory, tmp_path / "stderr.txt")
    try:
        assert child.readline() == "ready"
        for crash_at in range(1, 200):
            child.send(f"crash {crash_at} {max(checkpoint.all_steps(directory)) + 1}")
            lines = []
            while not (line := child.readline()).startswith("exit "):
                lines.append(line)
            status = int(line.split()[1])
            assert os.WIFEXITED(status), f"the worker failed:\n{child.stderr()}"
            if lines[-1] == "done":
                break
            assert os.WEXITSTATUS(status) == 137, f"the worker failed:\n{child.stderr()}"
            lines = [line for line in lines if not line.startswith("pid ")]
            _verify(directory, lines, leaves, lag=0)
            for step in checkpoint.all_steps(directory)[1:]:
                _layout.delete_step(directory, step)
    finally:
        child.close()
    assert 20 <= crash_at < 199, f"a round made {crash_at - 1} filesystem changes"
