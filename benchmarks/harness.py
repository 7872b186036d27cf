"""Timing, memory and the fresh-process runner shared by every benchmark.

One measurement is one (implementation, workload) pair in its own process
(``python -m benchmarks.run_one``), so that compile time, memory and JIT caches of one
implementation never leak into another's figures. Inside that process:

1. ``build``: parameters, optimizer state and the fixed batch are created and put on the
   device (not timed as a step; reported as ``setup_s``).
2. Time to first step (after a `gc.collect()`, as every timed phase starts): the first
   call of the step, including tracing and compilation,
   ended by ``block_until_ready``; both wall time and this process's CPU time (all its
   threads), which a busy machine inflates much less (compilation is mostly one thread).
3. Warm-up steps, then ``rounds`` rounds of about ``round_s`` seconds each. A round issues
   ``n`` steps back to back and ends with one ``block_until_ready``; its figure is
   elapsed / n. The process's figure is the median round.
4. Peak resident memory of the process (``getrusage``), and on a GPU the device's peak
   bytes in use.

The parent (``benchmarks.run``) interleaves implementations within each repetition and
divides every step time by raw JAX's from the same repetition.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

RESULT_MARKER = "BENCH_RESULT "


@dataclasses.dataclass
class Bench:
    """One implementation of one workload, ready to run.

    Attributes:
        step: runs one full train step (forward, loss, backward, update) on the fixed
            batch, dispatching asynchronously where the framework allows it.
        sync: waits until every step issued so far has finished.
        loss: the loss of the most recent step as a Python float (syncs).
        n_params: the number of trainable parameters at initialisation.
        tokens_per_step: tokens (or samples) processed per step, for throughput.
        flops_per_step: model FLOPs of one train step (None when not reported).
        notes: free-form description of the variant (printed in the JSON).
    """

    step: Callable[[], None]
    sync: Callable[[], None]
    loss: Callable[[], float]
    n_params: int
    tokens_per_step: int = 0
    flops_per_step: float | None = None
    notes: str = ""


@dataclasses.dataclass(frozen=True)
class Timing:
    """How long to measure: warm-up steps, number of rounds, seconds per round."""

    warmup: int = 20
    rounds: int = 5
    round_s: float = 1.0

    @classmethod
    def quick(cls) -> Timing:
        return cls(warmup=2, rounds=2, round_s=0.1)

    @classmethod
    def chosen(
        cls, quick: bool, warmup: int | None, rounds: int | None, round_s: float | None
    ) -> Timing:
        """The default (or quick) timing with the command line's ``--warmup``,
        ``--rounds`` and ``--round-s`` applied where given (None keeps the default)."""
        base = cls.quick() if quick else cls()
        return cls(
            warmup=base.warmup if warmup is None else warmup,
            rounds=base.rounds if rounds is None else rounds,
            round_s=base.round_s if round_s is None else round_s,
        )

    def args(self) -> tuple[str, ...]:
        """This timing as ``benchmarks.run_one``'s options."""
        return ("--warmup", str(self.warmup), "--rounds", str(self.rounds),
                "--round-s", str(self.round_s))  # fmt: skip


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def device_peak_bytes() -> int | None:
    """Peak bytes in use on the first JAX device, where the backend reports it (GPU)."""
    try:
        import jax

        stats = jax.devices()[0].memory_stats()
    except Exception:
        return None
    if not stats:
        return None
    return stats.get("peak_bytes_in_use")


def measure(bench: Bench, timing: Timing) -> dict[str, Any]:
    """Time ``bench`` as described in the module docstring; returns the figures."""
    # Every implementation starts timing from a collected heap: otherwise whether a full
    # collection owed to the setup's allocations lands inside the first step is chance
    # (it was 60 ms of one MLP first step). Collections the step itself causes still count.
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    bench.step()
    bench.sync()
    first_step_s = time.perf_counter() - t0
    first_step_cpu_s = time.process_time() - c0
    first_loss = bench.loss()

    gc.collect()
    t0 = time.perf_counter()
    for _ in range(timing.warmup):
        bench.step()
    bench.sync()
    warm_s = time.perf_counter() - t0
    estimate = warm_s / timing.warmup if timing.warmup else first_step_s
    per_round = max(1, math.ceil(timing.round_s / max(estimate, 1e-7)))

    rounds = []
    for _ in range(timing.rounds):
        t0 = time.perf_counter()
        for _ in range(per_round):
            bench.step()
        bench.sync()
        rounds.append((time.perf_counter() - t0) / per_round)
    last_loss = bench.loss()
    step_s = statistics.median(rounds)
    out: dict[str, Any] = {
        "first_step_s": first_step_s,
        "first_step_cpu_s": first_step_cpu_s,
        "step_s": step_s,
        "rounds_s": rounds,
        "steps_per_round": per_round,
        "warmup_steps": timing.warmup,
        "peak_rss_mib": peak_rss_mib(),
        "device_peak_bytes": device_peak_bytes(),
        "n_params": bench.n_params,
        "first_loss": first_loss,
        "last_loss": last_loss,
        "notes": bench.notes,
    }
    if bench.tokens_per_step:
        out["tokens_per_s"] = bench.tokens_per_step / step_s
    if bench.flops_per_step is not None:
        out["flops_per_step"] = bench.flops_per_step
    return out


def emit(result: dict[str, Any]) -> None:
    """Prints the result line that the parent process parses."""
    print(RESULT_MARKER + json.dumps(result), flush=True)


def bench_env() -> dict[str, str]:
    """The environment of a benchmark process: no persistent compilation cache, quiet TF logs."""
    env = dict(os.environ)
    for name in ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
        env.pop(name, None)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def run_process(
    impl: str,
    workload: str,
    *,
    quick: bool,
    python: str = sys.executable,
    timeout_s: float = 900.0,
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Runs one (implementation, workload) measurement in a fresh process.

    Returns its result dict, or ``{"error": ...}`` when the process failed, timed out or
    printed no result (the last lines of its output are kept for the report).
    """
    cmd = [python, "-m", "benchmarks.run_one", "--impl", impl, "--workload", workload, *extra]
    if quick:
        cmd.append("--quick")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        proc = subprocess.run(
            cmd, cwd=root, env=bench_env(), capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return {"impl": impl, "workload": workload, "error": f"timed out after {timeout_s:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER) :])
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
    return {"impl": impl, "workload": workload, "error": f"exit {proc.returncode}: {tail}"}
