"""Starts the processes of a multi-process run on this machine, like ``torchrun --standalone``.

    python -m funcnet.launch --nproc 2 --cpu-devices 2 train.py --epochs 3
    python -m funcnet.launch --nproc 4 -m mypackage.train

Each process runs the script with ``FUNCNET_COORDINATOR`` (a free loopback port),
``FUNCNET_NUM_PROCESSES`` and ``FUNCNET_PROCESS_ID`` set, which
``funcnet.parallel.init_distributed()`` reads. Every line a process prints is shown
prefixed by its index (``[1] ...``), stdout on stdout and stderr on stderr. When a process
fails, the others are killed (``SIGKILL``: JAX ignores ``SIGTERM``) and the launcher exits
with the failing process's status (128 + N for a process ended by signal N); Ctrl-C kills
them all.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO

from funcnet.parallel._distributed import ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID

__all__ = ["free_port", "launch", "main"]

_POLL_SECONDS = 0.05
_ABORT_HINT = (
    " (SIGABRT: JAX's distributed runtime aborts a process when a peer is missing, died or "
    "stops answering within init_distributed's timeout; its log above says which)"
)


class _Stopped(Exception):
    """The launcher itself was asked to stop (SIGTERM)."""


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on at the moment."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _environment(rank: int, nproc: int, port: int, cpu_devices: int | None) -> dict[str, str]:
    env = {
        **os.environ,
        ENV_COORDINATOR: f"127.0.0.1:{port}",
        ENV_NUM_PROCESSES: str(nproc),
        ENV_PROCESS_ID: str(rank),
        "PYTHONUNBUFFERED": "1",  # lines arrive as printed, and before an abort
    }
    if cpu_devices is not None:
        env.update(JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(cpu_devices))
    return env


def _relay(source: IO[bytes], sink: IO[bytes], prefix: bytes, lock: threading.Lock) -> None:
    """Copies ``source`` to ``sink`` line by line, each line prefixed."""
    for line in iter(source.readline, b""):
        with lock:
            sink.write(prefix + line if line.endswith(b"\n") else prefix + line + b"\n")
            sink.flush()
    source.close()


def _sink(stream: IO[str]) -> IO[bytes]:
    return getattr(stream, "buffer", stream)  # type: ignore[return-value]


def _start(
    command: Sequence[str],
    nproc: int,
    cpu_devices: int | None,
    processes: list[subprocess.Popen],
    relays: list[threading.Thread],
) -> None:
    """Starts the processes, appending each (and its relays) as soon as it runs."""
    port = free_port()
    sinks = [(_sink(sys.stdout), threading.Lock()), (_sink(sys.stderr), threading.Lock())]
    for rank in range(nproc):
        process = subprocess.Popen(
            [sys.executable, *command],
            env=_environment(rank, nproc, port, cpu_devices),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C reaches the launcher, which stops them all
        )
        processes.append(process)
        for source, (sink, lock) in zip((process.stdout, process.stderr), sinks):
            relay = threading.Thread(
                target=_relay, args=(source, sink, f"[{rank}] ".encode(), lock), daemon=True
            )
            relay.start()
            relays.append(relay)


def _kill(processes: Sequence[subprocess.Popen], relays: Sequence[threading.Thread]) -> None:
    """SIGKILLs every process still running, with whatever it started, reaps them, and
    lets their last lines through."""
    for process in processes:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for process in processes:
        process.wait()
    for relay in relays:
        relay.join()


def _status(code: int) -> int:
    """A child's return code as an exit status: 128 + N for a child ended by signal N."""
    return 128 - code if code < 0 else code


def _describe(code: int) -> str:
    if code < 0:
        name = signal.Signals(-code).name
        return f"signal {name}" + (_ABORT_HINT if -code == signal.SIGABRT else "")
    return f"exit status {code}" + (_ABORT_HINT if code == 128 + signal.SIGABRT else "")


def _wait(processes: Sequence[subprocess.Popen]) -> tuple[int, int] | None:
    """Waits until all processes succeed (None) or one fails: ``(rank, return code)``."""
    while True:
        codes = [process.poll() for process in processes]
        for rank, code in enumerate(codes):
            if code:
                return rank, code
        if all(code == 0 for code in codes):
            return None
        time.sleep(_POLL_SECONDS)


def launch(command: Sequence[str], nproc: int, cpu_devices: int | None = None) -> int:
    """Runs ``python <command>`` as ``nproc`` processes of one run; see the module docstring.

    Args:
        command: the Python arguments: ``["train.py", "--epochs", "3"]`` or
            ``["-m", "package.train"]``.
        nproc: the number of processes (>= 1).
        cpu_devices: sets ``JAX_PLATFORMS=cpu`` and ``JAX_NUM_CPU_DEVICES`` in each
            process, to simulate that many devices per process on a CPU.

    Returns:
        0 when every process succeeded; else the status of the first that failed (128 + N
        for signal N), or 130 after Ctrl-C and 143 after SIGTERM to the launcher.

    Raises:
        ValueError: ``nproc`` is below 1.
    """
    if nproc < 1:
        raise ValueError(f"launch: nproc must be at least 1, got {nproc}")
    processes: list[subprocess.Popen] = []
    relays: list[threading.Thread] = []
    try:
        _start(command, nproc, cpu_devices, processes, relays)
        failure = _wait(processes)
    except (KeyboardInterrupt, _Stopped) as stop:
        _kill(processes, relays)
        print("funcnet.launch: stopped; killed every process", file=sys.stderr, flush=True)
        return 130 if isinstance(stop, KeyboardInterrupt) else 143
    _kill(processes, relays)
    if failure is None:
        return 0
    rank, code = failure
    others = f"; killed the other {nproc - 1}" if nproc > 1 else ""
    print(f"funcnet.launch: process {rank} failed with {_describe(code)}{others}", file=sys.stderr)
    return _status(code)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m funcnet.launch",
        description="Run a script as several processes of one JAX run on this machine.",
    )
    parser.add_argument("--nproc", type=int, required=True, help="number of processes")
    parser.add_argument(
        "--cpu-devices",
        type=int,
        default=None,
        help="simulated CPU devices per process (sets JAX_PLATFORMS=cpu, JAX_NUM_CPU_DEVICES)",
    )
    parser.add_argument("-m", dest="module", action="store_true", help="run a module")
    parser.add_argument("target", help="the script (or, with -m, the module) to run")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the script's arguments")
    return parser


def _stop(signum: int, frame: object) -> None:
    raise _Stopped


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: ``python -m funcnet.launch --nproc N [--cpu-devices K] script.py
    [args...]``; returns the exit status (see :func:`launch`)."""
    options = _parser().parse_args(argv)
    command = ["-m", options.target] if options.module else [options.target]
    signal.signal(signal.SIGTERM, _stop)
    return launch([*command, *options.args], options.nproc, options.cpu_devices)


if __name__ == "__main__":
    sys.exit(main())
