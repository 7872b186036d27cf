"""The benchmark suite's command: every implementation of every workload, interleaved.

    python -m benchmarks.run [--workloads mlp,cnn] [--impls raw,funcnet] [--reps 5]
                             [--quick] [--verify] [--out benchmarks/results]

Each (implementation, workload) runs in a fresh process (``benchmarks.run_one``);
within each repetition the implementations run one after another in an order rotated
from one repetition to the next, so slow drifts of a shared machine hit all of them.
Step-time and first-step ratios are taken against raw JAX's figure **from the same
repetition**, then summarised as median [min–max] over repetitions.

Writes ``<out>/<UTC time>-<platform>.json`` (every process's figures and the summary)
and ``.md`` (the tables), and copies the Markdown to ``<out>/latest-<platform>.md``.
Exits with status 1 when implementations of one workload disagree on the parameter
count, or a process failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import shutil
import statistics
import sys
from collections import defaultdict
from typing import Any

from benchmarks import harness
from benchmarks.run_one import IMPLS
from benchmarks.workloads import ALL_WORKLOADS, CPU_WORKLOADS

#: The libraries whose fastest run funcnet must match (a target of the suite).
PEERS = ("nnx", "linen", "equinox", "haiku")
LIBRARY_OF = {
    "linen": "flax",
    "nnx": "flax",
    "equinox": "equinox",
    "haiku": "haiku",
    "torch": "torch",
}
LABELS = {
    "raw": "raw JAX (hand-written, one `jax.jit`, state donated)",
    "funcnet": "funcnet (`make_train_step`, default non-finite guard)",
    "funcnet-noguard": 'funcnet, `on_nonfinite="ignore"`',
    "funcnet-cpus": "funcnet, data-parallel over the CPU cores as devices",
    "linen": "Flax Linen + optax (`jax.jit`)",
    "nnx": "Flax NNX (`nnx.jit`, in-place model and optimizer)",
    "equinox": "Equinox + optax (`eqx.filter_jit`)",
    "haiku": "Haiku + optax (`hk.transform`, `jax.jit`)",
    "torch": "PyTorch eager",
}
#: Workloads only raw JAX and funcnet implement.
FUNCNET_ONLY = ("gpt",)
TARGET_RATIO = {"gpt": 1.02}  # funcnet / raw step time; 1.03 elsewhere
TARGET_FIRST_STEP = 1.2
TARGET_MFU = 40.0  # percent, GPT on one H100


def _platform(python: str) -> str:
    """jax's default backend in a child process (this process never initialises jax)."""
    import subprocess

    code = "import jax; print(jax.default_backend())"
    out = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, env=harness.bench_env()
    )
    return out.stdout.strip() or "cpu"


def available(impl: str) -> bool:
    library = LIBRARY_OF.get(impl)
    return library is None or importlib.util.find_spec(library) is not None


def _fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def _spread(values: list[float], digits: int = 2) -> str:
    if not values:
        return "–"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} [{min(values):.{digits}f}–{max(values):.{digits}f}]"


def summarise(
    results: list[dict[str, Any]], impls: list[str], workloads: list[str], peak_flops: float
) -> dict[str, Any]:
    """Per (workload, impl): medians, and ratios to raw JAX of the same repetition."""
    by_rep: dict[tuple[str, int], dict[str, dict]] = defaultdict(dict)
    for r in results:
        if "error" not in r and "skipped" not in r:
            by_rep[(r["workload"], r["rep"])][r["impl"]] = r
    summary: dict[str, Any] = {}
    for w in workloads:
        summary[w] = {}
        reps = sorted(rep for (wl, rep) in by_rep if wl == w)
        for impl in impls:
            runs = [by_rep[(w, rep)][impl] for rep in reps if impl in by_rep[(w, rep)]]
            if not runs:
                continue
            ratio, first_ratio, first_cpu_ratio = [], [], []
            for rep in reps:
                row = by_rep[(w, rep)]
                if impl in row and "raw" in row:
                    ratio.append(row[impl]["step_s"] / row["raw"]["step_s"])
                    first_ratio.append(row[impl]["first_step_s"] / row["raw"]["first_step_s"])
                    first_cpu_ratio.append(
                        row[impl]["first_step_cpu_s"] / row["raw"]["first_step_cpu_s"]
                    )
            s = {
                "step_s": statistics.median(r["step_s"] for r in runs),
                "first_step_s": statistics.median(r["first_step_s"] for r in runs),
                "first_step_cpu_s": statistics.median(r["first_step_cpu_s"] for r in runs),
                "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in runs),
                "n_params": sorted({r["n_params"] for r in runs}),
                "ratio": ratio,
                "first_step_ratio": first_ratio,
                "first_step_cpu_ratio": first_cpu_ratio,
                "reps": len(runs),
                "step_by_rep": {rep: by_rep[(w, rep)][impl]["step_s"] for rep in reps
                                if impl in by_rep[(w, rep)]},
            }  # fmt: skip
            device = [r["device_peak_bytes"] for r in runs if r.get("device_peak_bytes")]
            if device:
                s["device_peak_gib"] = statistics.median(device) / 2**30
            if runs[0].get("tokens_per_s"):
                s["tokens_per_s"] = statistics.median(r["tokens_per_s"] for r in runs)
            if runs[0].get("flops_per_step"):
                s["mfu"] = runs[0]["flops_per_step"] / s["step_s"] / peak_flops
            summary[w][impl] = s
    return summary


def check_params(summary: dict[str, Any]) -> list[str]:
    problems = []
    for w, rows in summary.items():
        counts = {impl: s["n_params"] for impl, s in rows.items()}
        distinct = {c for cs in counts.values() for c in cs}
        if len(distinct) > 1:
            problems.append(f"{w}: parameter counts differ: {counts}")
    return problems


def targets(summary: dict[str, Any], platform_name: str = "cpu") -> list[str]:
    lines = []
    for w, rows in summary.items():
        if platform_name == "gpu":
            for impl in ("funcnet", "raw"):
                if "mfu" in rows.get(impl, {}):
                    mfu = 100 * rows[impl]["mfu"]
                    ok = "met" if mfu >= TARGET_MFU else "MISSED"
                    lines.append(f"- {w}: {impl} MFU {mfu:.1f}% (target ≥ {TARGET_MFU}%): {ok}")
        fn, raw = rows.get("funcnet"), rows.get("raw")
        if not fn or not raw or not fn["ratio"]:
            continue
        limit = TARGET_RATIO.get(w, 1.03)
        ratio = statistics.median(fn["ratio"])
        first = statistics.median(fn["first_step_ratio"])
        first_cpu = statistics.median(fn["first_step_cpu_ratio"])
        ok = "met" if ratio <= limit else "MISSED"
        lines.append(f"- {w}: funcnet / raw JAX step time {ratio:.2f} (target ≤ {limit}): {ok}")
        ok = "met" if first <= TARGET_FIRST_STEP else "MISSED"
        lines.append(
            f"- {w}: funcnet / raw JAX time to first step {first:.2f} (CPU time "
            f"{first_cpu:.2f}; target ≤ {TARGET_FIRST_STEP}): {ok}"
        )
        behind = _against_peers(fn, rows)
        if behind:
            peer, paired = max(behind.items(), key=lambda kv: statistics.median(kv[1]))
            ok = "met" if statistics.median(paired) <= 1.0 else "MISSED"
            lines.append(
                f"- {w}: funcnet against the fastest of {', '.join(behind)}, step time in "
                f"the same repetition: funcnet / {peer} {_spread(paired)} "
                f"({_fmt_time(fn['step_s'])} vs {_fmt_time(rows[peer]['step_s'])}): {ok}"
            )
        if platform_name == "cpu" and "torch" in rows:
            lines.append(_against_torch(w, rows))
    return lines


def _against_torch(w: str, rows: dict[str, Any]) -> str:
    """The CPU target: funcnet's step, on one device or data-parallel over the cores
    (``funcnet-cpus``), whichever is faster, at most PyTorch eager's in each repetition."""
    theirs = rows["torch"]["step_by_rep"]
    modes = [m for m in ("funcnet", "funcnet-cpus") if m in rows]
    best = {}
    for rep, t in theirs.items():
        mine = {m: rows[m]["step_by_rep"][rep] for m in modes if rep in rows[m]["step_by_rep"]}
        if mine:
            mode = min(mine, key=mine.__getitem__)
            best[rep] = (mine[mode] / t, mode)
    ratios = [r for r, _ in best.values()]
    fastest = {m for _, m in best.values()}
    ok = "met" if ratios and statistics.median(ratios) <= 1.0 else "MISSED"
    return (
        f"- {w}: funcnet ({' or '.join(sorted(fastest))}, the faster in each repetition) / "
        f"PyTorch eager step time {_spread(ratios) if ratios else '–'} (target ≤ 1.0): {ok}"
    )


def _against_peers(fn: dict[str, Any], rows: dict[str, Any]) -> dict[str, list[float]]:
    """``{peer: [funcnet / peer step time in each repetition both ran]}``.

    Paired within a repetition, as the ratios to raw JAX are: the machine's drift between
    repetitions cancels, which comparing medians taken across repetitions does not do.
    """
    out = {}
    for peer in PEERS:
        if peer in rows:
            theirs = rows[peer]["step_by_rep"]
            paired = [t / theirs[r] for r, t in fn["step_by_rep"].items() if r in theirs]
            if paired:
                out[peer] = paired
    return out


def markdown(
    meta: dict[str, Any],
    summary: dict[str, Any],
    impls: list[str],
    workloads: list[str],
    verify: dict[str, Any],
) -> str:
    out = [
        f"# Benchmarks, {meta['platform'].upper()}: {meta['date']}",
        "",
        f"Machine: {meta['machine']}; {meta['device']}; {meta['cpu_count']} cores; "
        f"load average {meta['load_before'][0]:.1f} before, {meta['load_after'][0]:.1f} after.",
        f"Versions: {meta['versions']}.",
        f"Method: {meta['reps']} repetition{'s' if meta['reps'] > 1 else ''}, implementations interleaved (order rotated "
        f"per repetition), each (implementation, workload) in a fresh process; "
        f"{meta['timing']}. Ratio = step time / raw JAX's in the same repetition, median "
        "[min–max] over repetitions. Lower is faster.",
        "",
        "## Step time relative to raw JAX",
        "",
        "| implementation | " + " | ".join(workloads) + " |",
        "|---|" + "---|" * len(workloads),
    ]
    for impl in impls:
        cells = []
        for w in workloads:
            s = summary.get(w, {}).get(impl)
            if not s:
                cells.append("–")
            elif impl == "raw":
                cells.append(f"1.00 ({_fmt_time(s['step_s'])})")
            else:
                cells.append(_spread(s["ratio"]))
        out.append(f"| {LABELS.get(impl, impl)} | " + " | ".join(cells) + " |")

    def table(title: str, cell) -> None:
        out.extend(["", f"## {title}", "", "| implementation | " + " | ".join(workloads) + " |",
                    "|---|" + "---|" * len(workloads)])  # fmt: skip
        for impl in impls:
            cells = [cell(summary.get(w, {}).get(impl)) if summary.get(w, {}).get(impl) else "–"
                     for w in workloads]  # fmt: skip
            out.append(f"| {LABELS.get(impl, impl)} | " + " | ".join(cells) + " |")

    table("Step time (median)", lambda s: _fmt_time(s["step_s"]))
    table(
        "Time to first step (trace + compile + run), ratio to raw JAX",
        lambda s: f"{s['first_step_s']:.2f} s ({_spread(s['first_step_ratio'])})",
    )
    table(
        "CPU time of the first step (all threads; less sensitive to load), ratio to raw JAX",
        lambda s: f"{s['first_step_cpu_s']:.2f} s ({_spread(s['first_step_cpu_ratio'])})",
    )
    table("Peak host memory (RSS, MiB)", lambda s: f"{s['peak_rss_mib']:.0f}")
    table("Parameters", lambda s: ", ".join(f"{n:,}" for n in s["n_params"]))
    if any("tokens_per_s" in s for rows in summary.values() for s in rows.values()):
        table(f"Throughput: tokens/s and MFU (peak {meta['peak_tflops']:g} TFLOP/s)",
              lambda s: f"{s['tokens_per_s'] / 1e3:.1f}k, {100 * s['mfu']:.1f}%"
              if "tokens_per_s" in s else "–")  # fmt: skip
    if any("device_peak_gib" in s for rows in summary.values() for s in rows.values()):
        table(
            "Device peak memory (GiB)",
            lambda s: f"{s['device_peak_gib']:.1f}" if "device_peak_gib" in s else "–",
        )
    lines = targets(summary, meta["platform"])
    if lines:
        out.extend(["", "## Targets", "", *lines])
    if verify:
        out.extend(["", "## funcnet against raw JAX from the same parameters", ""])
        for w, v in verify.items():
            if "error" in v:
                out.append(f"- {w}: ERROR {v['error']}")
                continue
            out.append(
                f"- {w}: {v['n_params_funcnet']:,} parameters each; losses over "
                f"{len(v['raw_losses'])} steps differ by at most {v['max_abs_diff']:.1e}: "
                + ("ok" if v["ok"] else "MISMATCH")
            )
    if meta["failures"]:
        out.extend(["", "## Failures", ""] + [f"- {f}" for f in meta["failures"]])
    if meta["skipped"]:
        out.extend(["", "Not run: " + "; ".join(meta["skipped"]) + "."])
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workloads", help="comma-separated (default: the CPU workloads; gpt is added on a GPU)"
    )
    parser.add_argument(
        "--impls", default=",".join(IMPLS), help="comma-separated; missing libraries are skipped"
    )
    parser.add_argument("--reps", type=int, help="repetitions (default 5, 1 with --quick)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short timing and the tiny GPT: a smoke test, not figures",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="first check funcnet and raw JAX compute the same losses",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="workload config override passed to every process (e.g. batch=32)",
    )
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=989.0,
        help="peak for MFU (default: H100 SXM dense bf16)",
    )
    parser.add_argument("--warmup", type=int, help="warm-up steps (default 20; 2 with --quick)")
    parser.add_argument("--rounds", type=int, help="timed rounds (default 5; 2 with --quick)")
    parser.add_argument(
        "--round-s", type=float, help="seconds per round (default 1; 0.1 with --quick)"
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per process")
    parser.add_argument("--out", default=os.path.join("benchmarks", "results"))
    args = parser.parse_args(argv)

    python = sys.executable
    plat = _platform(python)
    if args.workloads:
        workloads = args.workloads.split(",")
    else:
        workloads = list(CPU_WORKLOADS) + (["gpt"] if plat == "gpu" else [])
    for w in workloads:
        if w not in ALL_WORKLOADS:
            parser.error(f"unknown workload {w!r}")
    requested = args.impls.split(",")
    for impl in requested:
        if impl not in IMPLS:
            parser.error(f"unknown implementation {impl!r}")
    if "raw" not in requested:
        requested.insert(0, "raw")  # ratios need it
    impls = [i for i in requested if available(i)]
    skipped = [f"{i} ({LIBRARY_OF[i]} not installed)" for i in requested if i not in impls]
    reps = args.reps or (1 if args.quick else 5)
    extra = tuple(x for s in args.set for x in ("--set", s))
    timing = harness.Timing.chosen(args.quick, args.warmup, args.rounds, args.round_s)
    timing_args = timing.args()

    load_before = os.getloadavg()
    verify: dict[str, Any] = {}
    if args.verify:
        for w in workloads:
            r = harness.run_process("raw", w, quick=args.quick, timeout_s=args.timeout,
                                    extra=("--verify", *extra))  # fmt: skip
            verify[w] = r
            print(f"verify {w}: {'ok' if r.get('ok') else r}", flush=True)

    results: list[dict[str, Any]] = []
    failures: list[str] = []
    for rep in range(reps):
        for w in workloads:
            todo = [i for i in impls if w not in FUNCNET_ONLY or i.startswith(("raw", "funcnet"))]
            shift = rep % len(todo)
            for impl in todo[shift:] + todo[:shift]:
                r = harness.run_process(impl, w, quick=args.quick, timeout_s=args.timeout,
                                        extra=extra + timing_args)  # fmt: skip
                r.update(rep=rep, impl=impl, workload=w)
                results.append(r)
                if "error" in r:
                    failures.append(f"{impl}/{w} (rep {rep}): {r['error']}")
                    print(f"[{rep}] {w:12s} {impl:16s} FAILED: {r['error'][-300:]}", flush=True)
                elif "skipped" in r:
                    print(f"[{rep}] {w:12s} {impl:16s} skipped: {r['skipped']}", flush=True)
                else:
                    print(f"[{rep}] {w:12s} {impl:16s} step {_fmt_time(r['step_s']):>9s}  "
                          f"first {r['first_step_s']:6.2f} s  rss {r['peak_rss_mib']:5.0f} MiB  "
                          f"params {r['n_params']:,}", flush=True)  # fmt: skip

    ok = [r for r in results if "env" in r]
    env = ok[0]["env"] if ok else {}
    versions = ", ".join(
        f"{k} {env[k]}" for k in ("python", "jax", "jaxlib", "optax", "flax", "equinox", "haiku",
                                  "torch", "funcnet") if k in env)  # fmt: skip
    other_versions = sorted({f"{k} {r['env'][k]}" for r in ok for k in ("flax", "equinox", "haiku", "torch")
                             if k in r["env"]})  # fmt: skip
    if other_versions:
        versions = ", ".join([versions, *[v for v in other_versions if v not in versions]])
    meta = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": plat,
        "machine": platform.platform(),
        "device": env.get("device", "?"),
        "cpu_count": os.cpu_count(),
        "versions": versions,
        "reps": reps,
        "quick": args.quick,
        "timing": f"{timing.warmup} warm-up steps, then {timing.rounds} rounds of ≈{timing.round_s:g} s "
        "each ended by `block_until_ready`; per-process figure = median round",
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "peak_tflops": args.peak_tflops,
        "overrides": args.set,
        "failures": failures,
        "skipped": skipped,
    }
    summary = summarise(results, impls, workloads, args.peak_tflops * 1e12)
    problems = check_params(summary)
    failures.extend(problems)
    md = markdown(meta, summary, impls, workloads, verify)

    os.makedirs(args.out, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    base = os.path.join(args.out, f"{stamp}-{plat}{'-quick' if args.quick else ''}")
    with open(base + ".json", "w") as f:
        json.dump({"meta": meta, "summary": summary, "verify": verify, "results": results}, f,
                  indent=1)  # fmt: skip
    with open(base + ".md", "w") as f:
        f.write(md)
    shutil.copyfile(base + ".md", os.path.join(args.out, f"latest-{plat}.md"))
    print("\n" + md)
    print(f"wrote {base}.json and {base}.md")
    for p in problems:
        print("ERROR:", p, file=sys.stderr)
    bad_verify = [w for w, v in verify.items() if not v.get("ok")]
    return 1 if failures or bad_verify else 0


if __name__ == "__main__":
    sys.exit(main())
