"""How cost grows: funcnet against hand-written JAX by batch, depth, layers and memory.

Step time as the batch and the depth grow, compile time as the layer count grows, and
the memory of the compiled step.

    python -m benchmarks.growth [--sections batch,depth,compile,memory] [--reps 3]
                                [--quick] [--out benchmarks/results]

Sections (all by default):

- ``batch``: step time of the mlp (batch 32, 128, 512, 2048) and the transformer (batch
  8, 32, 128), funcnet's ``make_train_step`` against raw JAX.
- ``depth``: step time of the transformer with 1, 2, 4 and 8 encoder layers, and of the
  mlp with 1, 2, 4 and 8 hidden layers (its ``depth`` field).
- ``compile``: time to first step (trace, compile and one step) of a small GPT (d_model
  64, sequence 64, vocabulary 512, batch 2) with 2 and 48 layers in ``nn.LayerStack``
  (raw JAX: ``lax.scan`` over stacked blocks), and with 2 and 12 layers unrolled
  (``scan_layers=false``: a ``ModuleList`` looped in ``forward``, raw JAX's Python loop);
  the growth is the deep model's figure over the 2-layer one's, paired within a
  repetition.
- ``memory``: the compiled train step's ``memory_analysis`` for mlp, cnn, lstm and
  transformer (raw JAX, funcnet, funcnet without its non-finite guard): arguments,
  outputs, output bytes aliased to donated arguments, temporaries, and the peak =
  arguments + outputs - aliased + temporaries. Deterministic: no timing, one process.

The timed sections run every (implementation, configuration) in a fresh process
(``benchmarks.run_one`` through ``harness.run_process``, configurations set with
``--set FIELD=VALUE``), timed as the suite times (``harness.measure``); raw JAX and
funcnet alternate at each configuration, their order swapped from one repetition to the
next, and every ratio is funcnet's figure over raw JAX's from the same repetition,
given as median [min–max] over repetitions. ``--quick`` shortens the timing (2 warm-up
steps, 2 rounds of 0.1 s, one repetition): it proves the sections run and gives no
figures.

Prints Markdown tables and writes them to ``<out>/growth-<platform>[-quick].md``, with
every process's figures in ``.json``. Exits with status 1 when a process failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib.metadata
import json
import os
import platform
import statistics
import sys
from typing import Any

from benchmarks import harness
from benchmarks.run import _fmt_time, _platform, _spread

SECTIONS = ("batch", "depth", "compile", "memory")
IMPLS = ("raw", "funcnet")
MEMORY_IMPLS = ("raw", "funcnet", "funcnet-noguard")
MEMORY_WORKLOADS = ("mlp", "cnn", "lstm", "transformer")
NAMES = {"raw": "raw JAX", "funcnet": "funcnet", "funcnet-noguard": "funcnet, no guard"}
#: The compile section's GPT: the size of the gpt workload's quick config.
GPT_SIZE = ("batch=2", "seq=64", "vocab=512", "d_model=64", "heads=2")
#: The compile section times the first step only: one warm-up step, one single-step round.
FIRST_STEP_TIMING = harness.Timing(warmup=1, rounds=1, round_s=0.0)
MEMORY_FIELDS = ("argument_bytes", "output_bytes", "alias_bytes", "temp_bytes", "peak_bytes")


@dataclasses.dataclass(frozen=True)
class Point:
    """One configuration of a timed section.

    Attributes:
        section: the section it belongs to (``batch``, ``depth`` or ``compile``).
        workload: the workload's name (``benchmarks.workloads``).
        field: the config field the section varies.
        value: that field's value here.
        variant: the name of the rows that share ``fixed`` ("" when there is none).
        fixed: further ``FIELD=VALUE`` overrides, the same at every point of the variant.
    """

    section: str
    workload: str
    field: str
    value: int
    variant: str = ""
    fixed: tuple[str, ...] = ()

    @property
    def sets(self) -> tuple[str, ...]:
        """The ``--set`` overrides of this point."""
        return (*self.fixed, f"{self.field}={self.value}")

    @property
    def key(self) -> str:
        """A name unique within a run, stored with every result of this point."""
        name = f"{self.workload}/{self.variant}" if self.variant else self.workload
        return f"{name} {self.field}={self.value}"


def points(section: str) -> list[Point]:
    """The configurations of a timed section, in table order."""
    if section == "batch":
        sizes = {"mlp": (32, 128, 512, 2048), "transformer": (8, 32, 128)}
        return [Point(section, w, "batch", b) for w, bs in sizes.items() for b in bs]
    if section == "depth":
        fields = {"transformer": "layers", "mlp": "depth"}
        return [Point(section, w, f, n) for w, f in fields.items() for n in (1, 2, 4, 8)]
    if section == "compile":
        variants = {"LayerStack": ("true", (2, 48)), "unrolled": ("false", (2, 12))}
        return [
            Point(section, "gpt", "layers", n, name, (*GPT_SIZE, f"scan_layers={scan}"))
            for name, (scan, layers) in variants.items()
            for n in layers
        ]
    raise ValueError(f"{section!r} is not a timed section")


def run_timed(
    todo: list[Point], reps: int, quick: bool, timing: harness.Timing, timeout_s: float
) -> list[dict[str, Any]]:
    """Every point's raw-JAX and funcnet processes, ``reps`` times, alternated.

    Args:
        todo: the points, in the order they run within a repetition.
        reps: the number of repetitions.
        quick: ``run_one --quick`` for the step-time sections.
        timing: warm-up and rounds of the step-time sections (the compile section times
            the first step only: `FIRST_STEP_TIMING`).
        timeout_s: the limit of one process, in seconds.

    Returns:
        One dict per process: its result (or ``error``) with ``rep``, ``impl``, ``point``
        (`Point.key`) and ``section``.
    """
    runs = []
    for rep in range(reps):
        order = IMPLS[rep % 2 :] + IMPLS[: rep % 2]
        for point in todo:
            first_only = point.section == "compile"
            extra = tuple(x for s in point.sets for x in ("--set", s))
            extra += (FIRST_STEP_TIMING if first_only else timing).args()
            for impl in order:
                r = harness.run_process(impl, point.workload, quick=quick and not first_only,
                                        timeout_s=timeout_s, extra=extra)  # fmt: skip
                r.update(rep=rep, impl=impl, point=point.key, section=point.section)
                runs.append(r)
                if "error" in r:
                    print(f"[{rep}] {point.key:28s} {impl:8s} FAILED: {r['error'][-300:]}")
                else:
                    print(f"[{rep}] {point.key:28s} {impl:8s} step {_fmt_time(r['step_s']):>9s}"
                          f"  first {r['first_step_s']:6.2f} s", flush=True)  # fmt: skip
    return runs


def _by_rep(runs: list[dict[str, Any]], key: str, impl: str) -> dict[int, dict[str, Any]]:
    return {
        r["rep"]: r for r in runs if r["point"] == key and r["impl"] == impl and "error" not in r
    }


def paired(
    runs: list[dict[str, Any]], a: tuple[str, str], b: tuple[str, str], field: str
) -> list[float]:
    """``a``'s figure over ``b``'s in every repetition where both ran.

    Args:
        runs: the results of `run_timed`.
        a: (point key, implementation) of the numerator.
        b: (point key, implementation) of the denominator.
        field: the figure, e.g. ``step_s`` or ``first_step_s``.

    Returns:
        The ratios, in repetition order.
    """
    top, bottom = _by_rep(runs, *a), _by_rep(runs, *b)
    return [top[rep][field] / bottom[rep][field] for rep in sorted(top) if rep in bottom]


def _median(runs: list[dict[str, Any]], key: str, impl: str, field: str) -> float | None:
    values = [r[field] for r in _by_rep(runs, key, impl).values()]
    return statistics.median(values) if values else None


def step_table(runs: list[dict[str, Any]], todo: list[Point]) -> str:
    """Markdown: per point, raw JAX's and funcnet's median step time and their ratio."""
    lines = [
        "| workload | setting | raw JAX | funcnet | funcnet / raw JAX |",
        "|---|---|---|---|---|",
    ]
    for p in todo:
        raw, fn = (_median(runs, p.key, impl, "step_s") for impl in IMPLS)
        ratio = paired(runs, (p.key, "funcnet"), (p.key, "raw"), "step_s")
        cells = [_fmt_time(t) if t is not None else "failed" for t in (raw, fn)]
        lines.append(
            f"| {p.workload} | {p.field} {p.value} | {' | '.join(cells)} | {_spread(ratio)} |"
        )
    return "\n".join(lines)


def compile_table(runs: list[dict[str, Any]], todo: list[Point]) -> str:
    """Markdown: time to first step per point, then each variant's deepest point over its
    shallowest, per implementation (wall and CPU time, paired within a repetition)."""
    lines = [
        "| gpt blocks | layers | raw JAX | funcnet | funcnet / raw JAX |",
        "|---|---|---|---|---|",
    ]

    def cell(key: str, impl: str) -> str:
        wall, cpu = (_median(runs, key, impl, f) for f in ("first_step_s", "first_step_cpu_s"))
        return "failed" if wall is None else f"{wall:.2f} s (CPU {cpu:.2f} s)"

    for p in todo:
        ratio = paired(runs, (p.key, "funcnet"), (p.key, "raw"), "first_step_s")
        lines.append(f"| {p.variant} | {p.value} | {cell(p.key, 'raw')} | "
                     f"{cell(p.key, 'funcnet')} | {_spread(ratio)} |")  # fmt: skip
    lines.append("")
    for variant in dict.fromkeys(p.variant for p in todo):
        group = [p for p in todo if p.variant == variant]
        low, high = group[0], group[-1]
        parts = []
        for impl in IMPLS:
            wall = paired(runs, (high.key, impl), (low.key, impl), "first_step_s")
            cpu = paired(runs, (high.key, impl), (low.key, impl), "first_step_cpu_s")
            parts.append(f"{NAMES[impl]} {_spread(wall)} (CPU time {_spread(cpu)})")
        lines.append(f"- {variant}, {high.value} layers / {low.value} layers, time to first "
                     f"step: " + "; ".join(parts))  # fmt: skip
    return "\n".join(lines)


def memory_row(impl: str, workload: str, cfg: dict[str, Any]) -> dict[str, int]:
    """The buffers of one implementation's compiled train step, in bytes.

    Args:
        impl: ``raw``, ``funcnet`` or ``funcnet-noguard``.
        workload: the workload's name.
        cfg: its config (``workload.config(quick)``).

    Returns:
        ``argument_bytes``, ``output_bytes``, ``alias_bytes`` (outputs that reuse donated
        arguments' buffers), ``temp_bytes`` and ``peak_bytes`` = arguments + outputs -
        aliased + temporaries, from XLA's ``memory_analysis`` of the step compiled for
        abstract arguments (nothing is allocated).
    """
    from benchmarks import hlo

    analysis = hlo.analyse(impl, workload, cfg, dump=None)
    row = {f: int(analysis[f]) for f in MEMORY_FIELDS[:4]}
    row["peak_bytes"] = (
        row["argument_bytes"] + row["output_bytes"] - row["alias_bytes"] + row["temp_bytes"]
    )
    return row


def memory_section(workloads: list[str], quick: bool) -> dict[str, dict[str, dict[str, int]]]:
    """The compiled steps' buffers, in this process.

    Args:
        workloads: the workloads' names.
        quick: use each workload's quick config.

    Returns:
        ``{workload: {impl: memory_row(...)}}`` for every implementation in `MEMORY_IMPLS`.
    """
    from benchmarks.workloads import load

    return {
        w: {impl: memory_row(impl, w, load(w).config(quick)) for impl in MEMORY_IMPLS}
        for w in workloads
    }


def memory_table(rows: dict[str, dict[str, dict[str, int]]]) -> str:
    """Markdown: the buffers of every compiled step, and each peak over raw JAX's."""
    lines = [
        "| workload | implementation | arguments | outputs | aliased | temporaries | peak "
        "| peak − raw JAX's | peak / raw JAX |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for w, impls in rows.items():
        for impl, row in impls.items():
            cells = " | ".join(f"{row[f]:,}" for f in MEMORY_FIELDS)
            raw = impls["raw"]["peak_bytes"]
            ratio, more = row["peak_bytes"] / raw, row["peak_bytes"] - raw
            lines.append(f"| {w} | {NAMES[impl]} | {cells} | {more:+,} | {ratio:.3f} |")
    return "\n".join(lines)


def memory_targets(rows: dict[str, dict[str, dict[str, int]]]) -> list[str]:
    """One line per workload: funcnet's peak at most raw JAX's, met or MISSED."""
    lines = []
    for w, impls in rows.items():
        fn, raw = impls["funcnet"]["peak_bytes"], impls["raw"]["peak_bytes"]
        ok = "met" if fn <= raw else "MISSED"
        lines.append(f"- {w}: funcnet / raw JAX peak bytes of the compiled step {fn / raw:.3f} "
                     f"({fn - raw:+,} bytes; target ≤ 1): {ok}")  # fmt: skip
    return lines


TITLES = {
    "batch": "Step time against batch size",
    "depth": "Step time against depth (transformer layers, mlp hidden layers)",
    "compile": "Time to first step (trace + compile + one step) of a deep GPT",
    "memory": "Peak memory of the compiled train step (bytes, XLA's memory_analysis)",
}


def markdown(meta: dict[str, Any], runs: list[dict[str, Any]], memory: dict[str, Any]) -> str:
    """The report: a header, then one table per section that ran."""
    header = (
        f"{meta['cpu_count']} CPUs; jax {meta['jax']}; load average {meta['load_before']:.1f} "
        f"before, {meta['load_after']:.1f} after."
    )
    if any(s != "memory" for s in meta["sections"]):
        header += (
            f" Timed sections: {meta['reps']} repetition(s), each configuration's raw JAX "
            f"and funcnet in fresh processes, alternated; {meta['timing']}. Ratios are "
            "funcnet / raw JAX in the same repetition, median [min–max]; lower is faster."
        )
    if meta["quick"]:
        header += " Quick mode: proves the sections run, gives no figures."
    out = [f"# How cost grows, {meta['platform'].upper()}: {meta['date']}", "", header]
    for section in meta["sections"]:
        out += ["", f"## {TITLES[section]}", ""]
        if section == "memory":
            out += [memory_table(memory), "", *memory_targets(memory)]
        elif section == "compile":
            out.append(compile_table(runs, points(section)))
        else:
            out.append(step_table(runs, points(section)))
    failures = [f"{r['impl']} {r['point']} (rep {r['rep']}): {r['error']}" for r in runs
                if "error" in r]  # fmt: skip
    if failures:
        out += ["", "## Failures", "", *(f"- {f}" for f in failures)]
    return "\n".join(out) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; ``sections`` comes back as a list of `SECTIONS` names."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated")
    parser.add_argument("--reps", type=int, help="repetitions (default 3, 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="short timing: no figures")
    parser.add_argument("--warmup", type=int, help="warm-up steps (default 20; 2 with --quick)")
    parser.add_argument("--rounds", type=int, help="timed rounds (default 5; 2 with --quick)")
    parser.add_argument("--round-s", type=float, help="seconds per round (default 1; 0.1 quick)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per process")
    parser.add_argument("--out", default=os.path.join("benchmarks", "results"))
    args = parser.parse_args(argv)
    args.sections = args.sections.split(",")
    for section in args.sections:
        if section not in SECTIONS:
            parser.error(f"unknown section {section!r}; choose from {', '.join(SECTIONS)}")
    args.reps = args.reps or (1 if args.quick else 3)
    args.timing = harness.Timing.chosen(args.quick, args.warmup, args.rounds, args.round_s)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plat = _platform(sys.executable)
    load_before = os.getloadavg()[0]
    timed = [p for s in args.sections if s != "memory" for p in points(s)]
    runs = run_timed(timed, args.reps, args.quick, args.timing, args.timeout) if timed else []
    memory = memory_section(list(MEMORY_WORKLOADS), args.quick) if "memory" in args.sections else {}
    t = args.timing
    meta = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": plat,
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "jax": importlib.metadata.version("jax"),
        "sections": args.sections,
        "reps": args.reps,
        "quick": args.quick,
        "timing": f"step time: {t.warmup} warm-up steps, then {t.rounds} rounds of ≈{t.round_s:g} s, "
        "median round",
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }
    md = markdown(meta, runs, memory)
    os.makedirs(args.out, exist_ok=True)
    base = os.path.join(args.out, f"growth-{plat}{'-quick' if args.quick else ''}")
    with open(base + ".json", "w") as f:
        json.dump({"meta": meta, "runs": runs, "memory": memory}, f, indent=1)
    with open(base + ".md", "w") as f:
        f.write(md)
    print("\n" + md)
    print(f"wrote {base}.json and {base}.md")
    return 1 if any("error" in r for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
