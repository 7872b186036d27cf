"""CPU cores as JAX devices: a workload's funcnet train step on 1 and on N CPU devices.

XLA:CPU runs one device's program on a few threads and leaves cores idle;
``parallel.use_cpu_devices(n)`` makes n devices of them, and the data-parallel step (the
batch split over a ``"data"`` mesh axis by ``batch_sharding``, the state replicated by
``shard_state``, ``train.make_train_step`` unchanged) runs one shard per device. The
global batch is the workload's (64 images for the CNN), so every configuration computes
the same step: the speed-up is strong scaling.

Each (workload, device count) runs in a fresh process (the device count is fixed when
JAX starts), timed as ``benchmarks.harness.measure`` times the suite (20 warm-up steps,
5 rounds of about 1 s, the median round), with two changes: every step waits for the
previous one (on CPU, many steps with collectives in flight deadlock when devices >=
cores), in every configuration alike; and the persistent compilation cache is off.
Configurations are interleaved within each repetition, their order rotated; the table
gives the median step time and the median of the per-repetition ratios to 1 device.

    python -m benchmarks.cpu_devices                                  # mlp, cnn, lstm; 1, 2
    python -m benchmarks.cpu_devices --workloads cnn --devices 1,2,4 --reps 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Any

from benchmarks import harness

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def data_parallel_bench(workload_name: str, cfg: dict[str, Any]) -> harness.Bench:
    """funcnet's train step of a workload, data-parallel over every JAX device.

    The batch is split over a ``"data"`` mesh axis (``parallel.batch_sharding``), the state
    replicated (``parallel.shard_state``), and ``train.make_train_step`` is unchanged.
    Every step waits for the previous one: on CPU, many steps with collectives in flight
    deadlock when devices >= cores. Call ``parallel.use_cpu_devices(n)`` before JAX starts.
    """
    import jax

    from benchmarks.workloads import _common as C
    from benchmarks.workloads import load
    from funcnet import parallel, train

    workload = load(workload_name)
    mesh = parallel.make_mesh()
    state = train.TrainState.create(
        workload.funcnet_model(cfg), workload.funcnet_optimizer(cfg), jax.random.key(C.SEED)
    )
    state = parallel.shard_state(state, mesh)
    batch = jax.device_put(workload.batch(cfg), parallel.batch_sharding(mesh))
    bench = C.jax_bench(
        train.make_train_step(C.funcnet_loss(workload, cfg)),
        state,
        batch,
        C.count_params(state.params),
        loss_of=lambda m: m["loss"],
        notes=f"make_train_step, data-parallel over {len(jax.devices())} CPU devices",
    )
    run = bench.step

    def step_and_wait() -> None:
        run()
        bench.sync()

    bench.step = step_and_wait
    return bench


def child(workload_name: str, devices: int, quick: bool) -> None:
    """Measures one configuration in this process and emits its result line."""
    from funcnet import parallel

    parallel.use_cpu_devices(devices)  # before JAX starts
    import jax

    from benchmarks.workloads import load

    jax.config.update("jax_enable_compilation_cache", False)
    cfg = load(workload_name).config(quick)
    bench = data_parallel_bench(workload_name, cfg)
    timing = harness.Timing.quick() if quick else harness.Timing()
    result = {"workload": workload_name, "devices": devices, "batch": cfg["batch"]}
    result.update(harness.measure(bench, timing))
    harness.emit(result)


def run_child(workload: str, devices: int, quick: bool) -> dict[str, Any]:
    """One configuration in a fresh process; its result dict, or ``{"error": ...}``."""
    cmd = [sys.executable, "-m", "benchmarks.cpu_devices", "--child", f"{workload}:{devices}"]
    proc = subprocess.run(
        cmd + ["--quick"] * quick,
        cwd=ROOT,
        env=harness.bench_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(harness.RESULT_MARKER):
            return json.loads(line[len(harness.RESULT_MARKER) :])
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
    return {"workload": workload, "devices": devices, "error": f"exit {proc.returncode}: {tail}"}


def table(runs: list[dict[str, Any]], workloads: list[str], counts: list[int]) -> str:
    """Markdown: per workload and device count, the median step and the speed-up."""
    lines = [
        "| workload | devices | step (ms, median) | speed-up vs 1 device (median [min–max]) |",
        "|---|---|---|---|",
    ]
    for name in workloads:
        by_rep: dict[int, dict[int, float]] = {}
        for r in runs:
            if r["workload"] == name and "step_s" in r:
                by_rep.setdefault(r["rep"], {})[r["devices"]] = r["step_s"]
        for n in counts:
            steps = [rep[n] for rep in by_rep.values() if n in rep]
            ratios = [rep[1] / rep[n] for rep in by_rep.values() if n in rep and 1 in rep]
            if not steps:
                lines.append(f"| {name} | {n} | failed | |")
                continue
            spread = f"{statistics.median(ratios):.2f} [{min(ratios):.2f}–{max(ratios):.2f}]"
            lines.append(
                f"| {name} | {n} | {statistics.median(steps) * 1e3:.2f} | "
                f"{spread if ratios else '–'} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="mlp,cnn,lstm")
    parser.add_argument("--devices", default="1,2", help="device counts, 1 first")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--quick", action="store_true", help="short timing: no figures")
    parser.add_argument("--json", help="also write every process's figures to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # "workload:devices"
    args = parser.parse_args()
    if args.child:
        name, _, devices = args.child.partition(":")
        child(name, int(devices), args.quick)
        return

    workloads = args.workloads.split(",")
    counts = [int(n) for n in args.devices.split(",")]
    configs = [(w, n) for w in workloads for n in counts]
    load_before = os.getloadavg()[0]
    runs = []
    for rep in range(args.reps):
        shift = rep % len(configs)
        for name, n in configs[shift:] + configs[:shift]:
            result = run_child(name, n, args.quick)
            runs.append({**result, "rep": rep})
            print(f"rep {rep}: {name} on {n} device(s): {result.get('step_s', result)}", flush=True)
    print(
        f"\n{os.cpu_count()} CPUs; 1-min load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after; {args.reps} interleaved repetition(s)\n"
    )
    print(table(runs, workloads, counts))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=1)
    if any("error" in r for r in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
