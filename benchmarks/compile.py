"""Where a first step's time goes: tracing, lowering, XLA's compilation and its kernels.

    python -m benchmarks.compile --workload mlp [--impls raw,funcnet,funcnet-noguard]
                                 [--reps 7] [--top 5] [--set FIELD=VALUE]

The suite's time to first step is one number per fresh process, and on a small machine it
spreads by ±20% between processes. This tool splits it, for raw JAX and funcnet:

1. **Phases, in one process.** Each step is traced, lowered and compiled ``reps`` times
   (a fresh ``jax.jit`` each time, no persistent cache), the implementations interleaved;
   the median of each phase and its median ratio to raw JAX's in the same round. First-use
   costs of a fresh process (imports, JAX's own caches) are not in these figures.
2. **Kernels (XLA:CPU).** Each step is compiled once more in a child process with the CPU
   compiler's log on (``TF_CPP_VMODULE=cpu_compiler=1,ir_compiler=1``): XLA:CPU compiles
   every fusion as its own LLVM module, so the number of kernels and the LLVM time of each
   show which part of a program is expensive to compile (the kernels compile on several
   threads, so their sum exceeds the wall time). Other backends print no such log.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import statistics
import subprocess
import sys
import time
from typing import Any

STEP = "jit_step"  # the jitted function's name in XLA's log, raw JAX's and funcnet's alike
_KERNEL = re.compile(r"Compiled LLVM module: (\S+) time: ([\d.]+) (ms|us|s)\b")
_AFFIXES = re.compile(r"^(?:__compute_module_)+|_kernel_module$")
_UNIT = {"s": 1e3, "ms": 1.0, "us": 1e-3}


def parse_cpu_log(text: str, name: str = STEP) -> list[tuple[str, float]]:
    """``[(kernel, LLVM milliseconds)]`` of the compilation of ``name`` in an XLA:CPU log.

    The log lines after ``Compiling: <name>`` up to the next module's ``Compiling:``.
    Empty if the log holds no such compilation (another backend, or no logging).
    """
    start = text.find(f"Compiling: {name}\n")
    if start < 0:
        return []
    end = text.find("Compiling: ", start + len(name) + 12)
    section = text[start : end if end >= 0 else len(text)]
    return [(_AFFIXES.sub("", m[1]), float(m[2]) * _UNIT[m[3]]) for m in _KERNEL.finditer(section)]


def phases(impls: list[str], workload: str, cfg: dict[str, Any], reps: int) -> dict:
    """``{impl: {"trace"|"lower"|"compile": [seconds per round]}}``, rounds interleaved."""
    import jax

    from benchmarks.hlo import lower

    times: dict[str, dict[str, list[float]]] = {
        i: {"trace": [], "lower": [], "compile": []} for i in impls
    }
    for _ in range(reps):
        for impl in impls:
            step, args = lower(impl, workload, cfg)  # a fresh jit: nothing cached
            jax.block_until_ready(args)
            gc.collect()
            t0 = time.perf_counter()
            traced = step.trace(*args)
            t1 = time.perf_counter()
            lowered = traced.lower()
            t2 = time.perf_counter()
            lowered.compile()
            t3 = time.perf_counter()
            for phase, seconds in zip(("trace", "lower", "compile"), (t1 - t0, t2 - t1, t3 - t2)):
                times[impl][phase].append(seconds)
    return times


def kernels(impl: str, workload: str, overrides: list[str]) -> list[tuple[str, float]]:
    """The step's kernels and their LLVM times, compiled in a child process with logging."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0")
    env["TF_CPP_VMODULE"] = "cpu_compiler=1,ir_compiler=1"
    cmd = [sys.executable, "-m", "benchmarks.compile", "--child", impl, "--workload", workload]
    for item in overrides:
        cmd += ["--set", item]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, check=True)
    return parse_cpu_log(done.stderr)


def _compile_once(impl: str, workload: str, cfg: dict[str, Any]) -> None:
    from benchmarks.hlo import lower

    step, args = lower(impl, workload, cfg)
    step.trace(*args).lower().compile()


def report(times: dict, found: dict[str, list[tuple[str, float]]], top: int) -> str:
    """The two tables as text."""
    base = next(iter(times))
    lines = [f"{'':16s}{'trace':>16s}{'lower':>16s}{'compile':>16s}{'kernels':>9s}{'LLVM':>10s}"]
    for impl, t in times.items():
        row = f"{impl:16s}"
        for phase in ("trace", "lower", "compile"):
            ratio = statistics.median(a / b for a, b in zip(t[phase], times[base][phase]))
            row += f"{statistics.median(t[phase]) * 1e3:8.0f} ms {ratio:4.2f}"
        ks = found.get(impl, [])
        row += f"{len(ks):9d}{sum(ms for _, ms in ks):7.0f} ms" if ks else f"{'–':>9s}{'–':>10s}"
        lines.append(row)
    for impl, ks in found.items():
        if ks:
            slow = sorted(ks, key=lambda k: -k[1])[:top]
            lines.append(
                f"{impl}: slowest kernels " + ", ".join(f"{n} {ms:.0f} ms" for n, ms in slow)
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="mlp")
    parser.add_argument("--impls", default="raw,funcnet,funcnet-noguard")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--top", type=int, default=5, help="slowest kernels shown per step")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import jax

    jax.config.update("jax_enable_compilation_cache", False)
    from benchmarks.run_one import config
    from benchmarks.workloads import load

    cfg = config(load(args.workload), False, args.set)
    if args.child:
        _compile_once(args.child, args.workload, cfg)
        return None
    impls = args.impls.split(",")
    times = phases(impls, args.workload, cfg, args.reps)
    on_cpu = jax.default_backend() == "cpu"
    found = {i: kernels(i, args.workload, args.set) for i in impls} if on_cpu else {}
    print(f"{args.workload}: " + ", ".join(f"{k}={v}" for k, v in cfg.items()))
    print(f"medians of {args.reps} interleaved rounds; ratio to {impls[0]} in the same round")
    print(report(times, found, args.top))
    return {"phases": times, "kernels": found}


if __name__ == "__main__":
    main()
