"""In-process A/B timing: raw JAX, funcnet and funcnet unguarded, interleaved in one process.

    python -m benchmarks.ab --workload cnn [--steps 20] [--rounds 9] [--set batch=1]

The suite (``benchmarks.run``) runs each implementation in a fresh process, which is
what time to first step and memory need, but step times then also carry the spread
between processes (memory layout, clock). This tool answers the narrower question "is
this step slower?": the three steps are compiled in one process, then timed in
``rounds`` interleaved rounds of ``steps`` steps each; it prints each one's median step
time and its median ratio to raw JAX's round.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

IMPLS = ("raw", "funcnet", "funcnet-noguard")


def steps(workload: str, overrides: list[str]) -> dict[str, tuple[Any, Any, Any]]:
    """``{impl: (step, state, batch)}``, built as ``benchmarks.hlo`` builds them."""
    from benchmarks.hlo import lower
    from benchmarks.run_one import config
    from benchmarks.workloads import load

    cfg = config(load(workload), False, overrides)
    built = {}
    for impl in IMPLS:
        step, (state, batch) = lower(impl, workload, cfg)
        built[impl] = (step, state, batch)
    return built


def measure(built: dict[str, tuple[Any, Any, Any]], n: int, rounds: int) -> dict[str, list]:
    """Seconds per step of each implementation in each round (rounds interleaved)."""
    import jax

    states = {}
    for impl, (step, state, batch) in built.items():  # compile and warm up
        for _ in range(max(2, n // 4)):
            state, _ = step(state, batch)
        states[impl] = jax.block_until_ready(state)
    times: dict[str, list] = {impl: [] for impl in built}
    for _ in range(rounds):
        for impl, (step, _, batch) in built.items():
            state = states[impl]
            t0 = time.perf_counter()
            for _ in range(n):
                state, _ = step(state, batch)
            states[impl] = jax.block_until_ready(state)
            times[impl].append((time.perf_counter() - t0) / n)
    return times


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="mlp")
    parser.add_argument("--steps", type=int, default=20, help="steps per round")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    args = parser.parse_args(argv)
    times = measure(steps(args.workload, args.set), args.steps, args.rounds)
    summary = {}
    for impl, t in times.items():
        ratio = statistics.median(a / b for a, b in zip(t, times["raw"]))
        summary[impl] = {"step_s": statistics.median(t), "ratio": ratio}
        print(f"{impl:16s} {statistics.median(t) * 1e3:9.3f} ms  ratio to raw JAX {ratio:.3f}")
    return summary


if __name__ == "__main__":
    main()
