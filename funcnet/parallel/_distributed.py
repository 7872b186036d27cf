"""Several processes: joining them into one JAX runtime, and telling process 0 apart.

``init_distributed`` wraps ``jax.distributed.initialize``; ``python -m funcnet.launch``
starts processes with the environment it reads. ``jax.process_index()`` and
``jax.process_count()`` say where a process stands; they are JAX's own, not wrapped here.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Mapping, Sequence

import jax

__all__ = [
    "ENV_COORDINATOR",
    "ENV_NUM_PROCESSES",
    "ENV_PROCESS_ID",
    "init_distributed",
    "is_main_process",
]

ENV_COORDINATOR = "FUNCNET_COORDINATOR"
"""The coordinator's ``host:port`` (process 0 serves it), as ``funcnet.launch`` sets it."""
ENV_NUM_PROCESSES = "FUNCNET_NUM_PROCESSES"
"""The number of processes, as ``funcnet.launch`` sets it."""
ENV_PROCESS_ID = "FUNCNET_PROCESS_ID"
"""This process's index, ``0 .. num_processes - 1``, as ``funcnet.launch`` sets it."""

_COLLECTIVE_TIMEOUT_FLAG = "--xla_cpu_collective_timeout_seconds"
_NO_CLUSTER = "coordinator_address"  # JAX's ValueError when it detects no cluster names it
_logger = logging.getLogger("funcnet.parallel")
_LATE = (
    "init_distributed: this process already ran a JAX computation, so JAX can no longer "
    "look for a cluster (SLURM, MPI, a TPU pod); it goes on as a single process. Call "
    "init_distributed() first, before creating arrays or models"
)


def _env_int(environ: Mapping[str, str], name: str) -> int | None:
    text = environ.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"init_distributed: {name}={text!r} is not an integer") from None


def _settings(
    coordinator_address: str | None,
    num_processes: int | None,
    process_id: int | None,
    environ: Mapping[str, str],
) -> tuple[str | None, int | None, int | None]:
    """The arguments, each missing one taken from the launcher's environment."""
    if coordinator_address is None:
        coordinator_address = environ.get(ENV_COORDINATOR) or None
    if num_processes is None:
        num_processes = _env_int(environ, ENV_NUM_PROCESSES)
    if process_id is None:
        process_id = _env_int(environ, ENV_PROCESS_ID)
    return coordinator_address, num_processes, process_id


def _with_collective_timeout(xla_flags: str, seconds: int) -> str:
    """``XLA_FLAGS`` with a CPU collective timeout of ``seconds`` added, unless it has one."""
    if _COLLECTIVE_TIMEOUT_FLAG in xla_flags:
        return xla_flags
    return f"{xla_flags} {_COLLECTIVE_TIMEOUT_FLAG}={seconds}".strip()


def _check_running(num_processes: int | None, process_id: int | None) -> None:
    """A second call: nothing to do, unless it asks for another setup than the running one."""
    running = (jax.process_count(), jax.process_index())
    if num_processes not in (None, running[0]) or process_id not in (None, running[1]):
        raise ValueError(
            f"init_distributed: this process already runs as process {running[1]} of "
            f"{running[0]}, not process {process_id} of {num_processes}; JAX's distributed "
            "runtime is set up once per process"
        )


def init_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: int | Sequence[int] | None = None,
    timeout: float = 300.0,
) -> None:
    """Joins this process to the others of a multi-process run (``jax.distributed.initialize``).

    Call it once at the top of the script, before any JAX computation. Afterwards
    ``jax.devices()`` lists the devices of every process, ``jax.process_index()`` and
    ``jax.process_count()`` say where this process stands, and a jitted step runs on
    arrays sharded over all of them (one SPMD program, every process running the same
    script). Each setting comes from the first of:

    1. the arguments;
    2. the environment that ``python -m funcnet.launch`` sets: ``FUNCNET_COORDINATOR``
       (``host:port``), ``FUNCNET_NUM_PROCESSES``, ``FUNCNET_PROCESS_ID``;
    3. JAX's detection of the cluster (SLURM, Open MPI, Kubernetes, cloud TPU pods), as
       ``jax.distributed.initialize()`` with no arguments does it.

    With none of them (a plain ``python script.py``), or with one process, it does
    nothing: the same script runs as a single process. A second call does nothing either.
    Called with none of them after JAX has run a computation, when JAX can no longer look
    for a cluster, it warns and does nothing.

    **Timeouts.** Process 0 serves the coordinator; the others connect to it. Every
    process waits at most ``timeout`` seconds for all to connect; a process that then
    stops answering (heartbeats) for ``timeout`` seconds counts as dead. In both cases
    JAX ends every remaining process with ``SIGABRT`` (exit status 134) and a message
    saying ``DEADLINE_EXCEEDED`` or that "another task died": an abort, not a Python
    exception, so the run fails rather than hangs. When process 0 (the coordinator) is
    the one lost, the others are aborted at once. With
    ``jax.config.update("jax_enable_recoverability", True)`` set before this call, the
    others are not aborted: on CPU a collective with a peer that died raises
    ``jax.errors.JaxRuntimeError`` (at once when its connection breaks, else after
    ``timeout`` seconds: this function adds ``--xla_cpu_collective_timeout_seconds`` to
    ``XLA_FLAGS`` for it, unless there is one), which the script may catch to save
    what it can and exit.

    Args:
        coordinator_address: ``host:port`` of process 0, reachable from every process.
        num_processes: how many processes the run has.
        process_id: this process's index, ``0 .. num_processes - 1``.
        local_device_ids: the local devices this process drives (default: all of them).
        timeout: seconds to wait for a missing or silent peer (see above).

    Raises:
        ValueError: an environment variable that is not an integer, JAX's detection found
            a cluster but not every setting, or a second call asks for another setup.
        RuntimeError: JAX already ran a computation in this process, and arguments or the
            launcher's environment ask for several processes (call this first).
    """
    address, count, index = _settings(coordinator_address, num_processes, process_id, os.environ)
    if jax.distributed.is_initialized():
        _check_running(count, index)
        return
    if count == 1:
        return
    seconds = max(1, math.ceil(timeout))
    if jax.config.jax_enable_recoverability:
        os.environ["XLA_FLAGS"] = _with_collective_timeout(os.environ.get("XLA_FLAGS", ""), seconds)
    detect = (address, count, index) == (None, None, None)  # left to JAX's detection
    where = "the cluster JAX detects" if detect else f"process {index} of {count} at {address}"
    _logger.info("init_distributed: joining %s (waiting up to %d s)", where, seconds)
    try:
        jax.distributed.initialize(
            address,
            count,
            index,
            local_device_ids=local_device_ids,
            initialization_timeout=seconds,
            heartbeat_timeout_seconds=seconds,
            shutdown_timeout_seconds=seconds,
        )
    except ValueError as e:  # with nothing to go on and no cluster: a single process
        if not (detect and _NO_CLUSTER in str(e)):
            raise
    except RuntimeError:
        if not detect:
            raise
        warnings.warn(_LATE, RuntimeWarning, stacklevel=2)


def is_main_process() -> bool:
    """Whether this is process 0, the one that prints, logs and writes checkpoints."""
    return jax.process_index() == 0
