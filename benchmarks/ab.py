"""In-process A/B timing: several implementations' steps interleaved in one process.

    python -m benchmarks.ab --workload cnn [--impls raw,funcnet,funcnet-noguard]
                            [--steps 20] [--rounds 9] [--set batch=1]

The suite (``benchmarks.run``) runs each implementation in a fresh process, which is
what time to first step and memory need, but step times then also carry the spread
between processes (memory layout, clock). This tool answers the narrower question "is
this step slower?": the steps are built as the suite builds them (``run_one.build``:
raw JAX, funcnet, and when installed Linen, NNX, Equinox, Haiku, PyTorch), compiled in
one process, then timed in ``rounds`` interleaved rounds of ``steps`` steps each. It
prints each one's median step time and its median ratio to raw JAX's round and, when
other libraries ran, funcnet against each of them paired within a round.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

IMPLS = ("raw", "funcnet", "funcnet-noguard")


def benches(workload: str, impls: list[str], overrides: list[str]) -> dict[str, Any]:
    """``{impl: Bench}`` built as the suite builds them; libraries not installed are left out."""
    from benchmarks.run_one import build, config
    from benchmarks.workloads import load

    cfg = config(load(workload), False, overrides)
    built = {}
    for impl in impls:
        try:
            built[impl] = build(impl, workload, cfg)
        except (ImportError, NotImplementedError) as e:
            print(f"{impl}: skipped ({e})")
    return built


def measure(built: dict[str, Any], n: int, rounds: int) -> dict[str, list[float]]:
    """Seconds per step of each implementation in each round (rounds interleaved)."""
    for bench in built.values():  # compile and warm up
        for _ in range(max(2, n // 4)):
            bench.step()
        bench.sync()
    times: dict[str, list[float]] = {impl: [] for impl in built}
    for _ in range(rounds):
        for impl, bench in built.items():
            t0 = time.perf_counter()
            for _ in range(n):
                bench.step()
            bench.sync()
            times[impl].append((time.perf_counter() - t0) / n)
    return times


def summarise(times: dict[str, list[float]]) -> dict[str, dict[str, Any]]:
    """Median step time and median ratio to raw JAX's round, per implementation; for
    funcnet also ``vs``: ``{library: [funcnet / library in each round]}``."""
    from benchmarks.run import _against_peers

    rows = {impl: {"step_by_rep": dict(enumerate(t))} for impl, t in times.items()}
    summary: dict[str, dict[str, Any]] = {}
    for impl, t in times.items():
        s: dict[str, Any] = {"step_s": statistics.median(t)}
        if "raw" in times:
            s["ratio"] = statistics.median(a / b for a, b in zip(t, times["raw"]))
        summary[impl] = s
    if "funcnet" in rows:
        summary["funcnet"]["vs"] = _against_peers(rows["funcnet"], rows)
    return summary


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    from benchmarks.run import _spread

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="mlp")
    parser.add_argument("--impls", default=",".join(IMPLS))
    parser.add_argument("--steps", type=int, default=20, help="steps per round")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    args = parser.parse_args(argv)
    built = benches(args.workload, args.impls.split(","), args.set)
    summary = summarise(measure(built, args.steps, args.rounds))
    for impl, s in summary.items():
        ratio = f"  ratio to raw JAX {s['ratio']:.3f}" if "ratio" in s else ""
        print(f"{impl:16s} {s['step_s'] * 1e3:9.3f} ms{ratio}")
    for peer, paired in summary.get("funcnet", {}).get("vs", {}).items():
        print(f"funcnet / {peer:9s} {_spread(paired, 3)} (paired within a round)")
    return summary


if __name__ == "__main__":
    main()
