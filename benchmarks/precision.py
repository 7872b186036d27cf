"""Mixed precision: funcnet's train step in float32, bfloat16 and float16, side by side.

    python -m benchmarks.precision [--quick] [--workloads transformer,gpt]
                                   [--precisions float32,bf16,fp16] [--out DIR]

For each workload, the funcnet model, batch, optimizer and loss of ``benchmarks.workloads``
trained by ``train.make_train_step(loss, precision=P)``:

- ``float32``: ``precision=None``, a float32 model (the transformer workload as it is);
- ``bf16``: ``precision="bf16"``: float32 parameters, bfloat16 computation, float32
  outputs;
- ``fp16``: ``precision="fp16"``, the optimizer wrapped in
  ``mixed_precision.with_loss_scale`` (PyTorch's ``GradScaler``); the table counts the
  skipped (overflowing) steps of the whole run.

The gpt workload's model casts its activations and the tied output table to its config's
``dtype`` by itself, and its loss takes its logits dtype from it. Here that field is set
to each row's compute dtype, so the float32 row is float32 throughout and the policy rows
compute in their 16-bit dtype; the
workload's own bfloat16 model (``precision=None``, the one ``benchmarks.run`` compares with
raw JAX) is one more row, ``bf16 (model's casts)``. Under a policy the model's outputs
(final hidden states and the tied table) come back in float32, so the output projection
fused with the loss multiplies float32 operands; the model's own casts keep it in bfloat16.
The column "16-bit types" lists the 16-bit dtypes found in the compiled program, which
shows what each row really computes in. float32 is JAX's default matmul precision: TF32 on
the tensor cores of an NVIDIA GPU (as ``torch.backends.cuda.matmul.allow_tf32 = True``).

The rows run different numbers of steps (as many as fit in the timed rounds), so the losses
are compared after the first ``1 + warm-up`` steps, which every row runs (``loss @ N``); the
final loss is given with its step count. ``--set FIELD=VALUE`` changes a config field of
every workload that has it (``--set batch=8``).

Each row runs in this process: one ``jit(...).lower(...).compile()`` (timed as
``compile s``; its ``memory_analysis`` gives the temporaries and the total buffer size),
then ``harness.measure``'s warm-up and timed rounds (each ended by ``block_until_ready``;
the figure is the median round). Speed-up = float32's step time / the row's. Writes
``precision-<platform>[-quick].md`` and ``.json`` into ``--out``; exits with status 1 when
a row failed. ``--quick`` shrinks the models and the timing: it proves the script runs and
gives no figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from benchmarks import harness

#: Configuration overrides of ``--quick`` beyond the workload's own quick config (the
#: transformer has none): one layer, d_model 32, whose step compiles in about 2 s on CPU.
QUICK_OVERRIDES: dict[str, dict[str, Any]] = {
    "transformer": {
        "batch": 8, "seq": 16, "vocab": 128, "d_model": 32, "heads": 2, "ff": 64, "layers": 1,
    },
}  # fmt: skip
PRECISIONS = ("float32", "bf16", "fp16")
MODEL_CASTS = "bf16 (model's casts)"
_SIXTEEN_BIT = {"bf16": re.compile(r"\bbf16\["), "f16": re.compile(r"\bf16\[")}


@dataclasses.dataclass(frozen=True)
class Variant:
    """One row: what ``make_train_step`` gets and what the model casts to.

    Attributes:
        label: the row's name in the table.
        precision: ``make_train_step``'s ``precision=`` (None: no policy).
        model_dtype: the config ``dtype`` of a workload that casts by itself (gpt) for
            this row; None leaves the workload as it is.
        loss_scale: wrap the optimizer in ``mixed_precision.with_loss_scale``.
    """

    label: str
    precision: str | None
    model_dtype: str | None
    loss_scale: bool = False


def variants(workload: Any, names: list[str]) -> list[Variant]:
    """The rows of one workload: the named precisions, plus gpt's own bfloat16 model."""
    table = {
        "float32": Variant("float32", None, "float32"),
        "bf16": Variant("bf16", "bf16", "bf16"),
        "fp16": Variant("fp16", "fp16", "fp16", loss_scale=True),
    }
    rows = [table[n] for n in names]
    if "dtype" in workload.config(True):
        rows.append(Variant(MODEL_CASTS, None, None))
    return rows


def workload_config(name: str, quick: bool, overrides: list[str]) -> dict[str, Any]:
    """The workload's config, shrunk by ``--quick``, with the ``--set`` fields it has."""
    from benchmarks.run_one import config
    from benchmarks.workloads import load

    workload = load(name)
    cfg = config(workload, quick, [])
    if quick:
        cfg.update(QUICK_OVERRIDES.get(name, {}))
    own = [item for item in overrides if item.partition("=")[0] in cfg]
    return config(SimpleNamespace(config=lambda _quick: dict(cfg)), quick, own)


def _setup(workload: Any, cfg: dict[str, Any], variant: Variant) -> tuple[Any, Any, Any]:
    """(train state, jitted step, batch on the device) of one row."""
    import jax
    import jax.numpy as jnp

    from benchmarks.workloads import _common as C
    from funcnet import mixed_precision, train

    optimizer = workload.funcnet_optimizer(cfg)
    if variant.loss_scale:
        optimizer = mixed_precision.with_loss_scale(optimizer)
    state = train.TrainState.create(workload.funcnet_model(cfg), optimizer, jax.random.key(C.SEED))
    step = train.make_train_step(C.funcnet_loss(workload, cfg), precision=variant.precision)
    x, y = workload.batch(cfg)
    return state, step, (jnp.asarray(x), jnp.asarray(y))


def _memory(compiled: Any) -> dict[str, float | None]:
    """Temporaries and all buffers of a compiled step in MiB (None where not reported)."""
    mem = compiled.memory_analysis()
    if mem is None:
        return {"temp_mib": None, "total_mib": None}
    size = lambda name: getattr(mem, f"{name}_size_in_bytes", 0) or 0
    total = size("argument") + size("output") + size("temp") - size("alias")
    return {"temp_mib": size("temp") / 2**20, "total_mib": total / 2**20}


def run_variant(
    name: str, cfg: dict[str, Any], variant: Variant, timing: harness.Timing
) -> dict[str, Any]:
    """Compiles and times one row; returns its figures (see the module docstring)."""
    import jax

    from benchmarks.workloads import _common as C
    from benchmarks.workloads import load
    from funcnet import mixed_precision

    workload = load(name)
    if variant.model_dtype is not None and "dtype" in cfg:
        cfg = {**cfg, "dtype": variant.model_dtype}
    state, step, batch = _setup(workload, cfg, variant)
    t0 = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_s = time.perf_counter() - t0
    text = compiled.as_text()
    # The loss after the first 1 + warm-up steps, which every row runs (the timed rounds
    # run as many steps as fit in a round): the rows' losses compared at the same step.
    holder: dict[str, Any] = {"state": state, "metrics": None, "count": 0, "early": None}

    def run() -> None:
        holder["state"], holder["metrics"] = compiled(holder["state"], batch)
        holder["count"] += 1
        if holder["count"] == 1 + timing.warmup:
            holder["early"] = holder["metrics"]["loss"]

    bench = harness.Bench(
        step=run,
        sync=lambda: jax.block_until_ready(holder["state"]),
        loss=lambda: float(holder["metrics"]["loss"]),
        n_params=C.count_params(state.params),
    )
    figures = harness.measure(bench, timing)
    scale = mixed_precision.find_loss_scale(holder["state"].opt_state)
    steps = 1 + timing.warmup + len(figures["rounds_s"]) * figures["steps_per_round"]
    return {
        "workload": name,
        "precision": variant.label,
        "step_s": figures["step_s"],
        "compile_s": compile_s,
        **_memory(compiled),
        "steps": steps,
        "skipped": None if scale is None else int(scale.inner_state.num_skipped),
        "loss_scale": None if scale is None else float(scale.scale),
        "early_step": 1 + timing.warmup,
        "early_loss": float(holder["early"]),
        "final_loss": figures["last_loss"],
        "sixteen_bit": [k for k, pattern in _SIXTEEN_BIT.items() if pattern.search(text)],
        "measure": figures,
    }


def run_workload(
    name: str, quick: bool, overrides: list[str], names: list[str], timing: harness.Timing
) -> Iterator[dict[str, Any]]:
    """Every row of one workload, in order; a failing row is reported, not raised."""
    from benchmarks.workloads import load

    cfg = workload_config(name, quick, overrides)
    for variant in variants(load(name), names):
        try:
            row = run_variant(name, cfg, variant, timing)
        except Exception as error:  # an OOM on one row must not hide the others
            row = {"workload": name, "precision": variant.label, "error": repr(error)[:2000]}
        row["config"] = cfg
        print(_progress(row), flush=True)
        gc.collect()
        yield row


def _progress(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"{row['workload']:12s} {row['precision']:22s} FAILED: {row['error'][:300]}"
    return (
        f"{row['workload']:12s} {row['precision']:22s} {1e3 * row['step_s']:9.3f} ms/step  "
        f"compile {row['compile_s']:6.2f} s  loss {row['early_loss']:.4f} "
        f"(step {row['early_step']}), {row['final_loss']:.4f} (step {row['steps']})"
    )


def add_speedups(rows: list[dict[str, Any]]) -> None:
    """Sets each row's ``speedup``: its workload's float32 step time / its own."""
    base = {
        r["workload"]: r["step_s"] for r in rows if r["precision"] == "float32" and "step_s" in r
    }
    for r in rows:
        if r["workload"] in base and "step_s" in r:
            r["speedup"] = base[r["workload"]] / r["step_s"]


def _cell(value: Any, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def markdown(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The table (and the failures) as Markdown."""
    out = [
        f"## Mixed precision, {meta['platform'].upper()} ({meta['device']}): {meta['date']}",
        "",
        f"funcnet `make_train_step(loss, precision=P)`; {meta['timing']}. Speed-up = the "
        "float32 row's step time / the row's. Temp and total: the compiled step's "
        "temporaries and all its buffers (`memory_analysis`). Skipped: fp16 steps skipped "
        f"by the loss scale (overflows) of the row's steps. Loss @ {meta['early_step']}: after the "
        f"first {meta['early_step']} steps, which every row runs; the final loss is after "
        "all of the row's steps. gpt: the float32 and policy rows set the model's own "
        "casts (config `dtype`) to the row's compute dtype."
        + (" `--quick`: tiny models, no figures." if meta["quick"] else ""),
        "",
        "| workload | precision | ms/step | speed-up | compile s | temp MiB | total MiB "
        f"| skipped | loss @ {meta['early_step']} | final loss | 16-bit types |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['workload']} | {r['precision']} | FAILED |" + " |" * 8)
            continue
        skipped = "–" if r["skipped"] is None else str(r["skipped"])
        out.append(
            f"| {r['workload']} | {r['precision']} | {1e3 * r['step_s']:.3f} "
            f"| {_cell(r.get('speedup'), '.2f')} | {r['compile_s']:.1f} "
            f"| {_cell(r['temp_mib'], '.1f')} | {_cell(r['total_mib'], '.1f')} | {skipped} "
            f"| {r['early_loss']:.4f} | {r['final_loss']:.4f} ({r['steps']} steps) "
            f"| {', '.join(r['sixteen_bit']) or 'none'} |"
        )
    failures = [r for r in rows if "error" in r]
    if failures:
        out += ["", "Failures:", ""]
        out += [f"- {r['workload']} {r['precision']}: {r['error'][:500]}" for r in failures]
    return "\n".join(out) + "\n"


def _meta(args: argparse.Namespace, timing: harness.Timing) -> dict[str, Any]:
    import jax

    from benchmarks.run_one import environment

    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": jax.default_backend(),
        "device": jax.devices()[0].device_kind,
        "quick": args.quick,
        "overrides": args.set,
        "early_step": 1 + timing.warmup,
        "timing": f"{timing.warmup} warm-up steps, then {timing.rounds} rounds of "
        f"≈{timing.round_s:g} s, median round",
        "env": environment(),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workloads", help="comma-separated (default: transformer, plus gpt on a GPU)"
    )
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="comma-separated")
    parser.add_argument("--quick", action="store_true", help="tiny models, short timing")
    parser.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE",
        help="config override, applied to every workload that has the field",
    )  # fmt: skip
    parser.add_argument("--warmup", type=int, help="warm-up steps (default 20; 2 with --quick)")
    parser.add_argument("--rounds", type=int, help="timed rounds (default 5; 2 with --quick)")
    parser.add_argument("--round-s", type=float, help="seconds per round (default 1)")
    parser.add_argument("--out", default=os.path.join("benchmarks", "results"))
    args = parser.parse_args(argv)
    unknown = set(args.precisions.split(",")) - set(PRECISIONS)
    if unknown:
        parser.error(f"unknown precision(s) {sorted(unknown)}; choose from {PRECISIONS}")
    return args


def _timing(args: argparse.Namespace) -> harness.Timing:
    base = harness.Timing.quick() if args.quick else harness.Timing()
    return harness.Timing(
        warmup=base.warmup if args.warmup is None else args.warmup,
        rounds=base.rounds if args.rounds is None else args.rounds,
        round_s=base.round_s if args.round_s is None else args.round_s,
    )


def write(args: argparse.Namespace, meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """Writes the Markdown and the JSON of the rows so far; returns their path stem."""
    add_speedups(rows)
    os.makedirs(args.out, exist_ok=True)
    base = os.path.join(args.out, f"precision-{meta['platform']}{'-quick' if args.quick else ''}")
    with open(base + ".json", "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1, default=str)
    with open(base + ".md", "w") as f:
        f.write(markdown(meta, rows))
    return base


def main(argv: list[str] | None = None) -> int:
    """Runs every row, prints the table, writes Markdown and JSON; 1 if a row failed.

    The files are rewritten after every row, so a run stopped by a time limit keeps the
    rows it finished. The command turns JAX's persistent compilation cache off (compile
    times are measured); a caller of ``main`` (the tests) keeps its own setting.
    """
    args = parse_args(argv)
    timing = _timing(args)
    meta = _meta(args, timing)
    default = "transformer,gpt" if meta["platform"] == "gpu" else "transformer"
    rows: list[dict[str, Any]] = []
    for name in (args.workloads or default).split(","):
        for row in run_workload(name, args.quick, args.set, args.precisions.split(","), timing):
            rows.append(row)
            base = write(args, meta, rows)
    print("\n" + markdown(meta, rows))
    print(f"wrote {base}.md and {base}.json")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    import jax

    jax.config.update("jax_enable_compilation_cache", False)
    sys.exit(main())
