"""Compares the compiled train steps of raw JAX and funcnet: where a step-time gap comes from.

    python -m benchmarks.hlo --workload cnn [--impls raw,funcnet,funcnet-noguard]
                             [--dump DIR] [--quick] [--set FIELD=VALUE]

For each implementation: XLA's cost analysis (FLOPs, bytes accessed), the buffers of the
compiled program (arguments, outputs, temporaries, and how many output bytes alias donated
inputs), and the optimised HLO's instruction counts by kind (fusions, dots, convolutions,
copies, transposes, ``select-and-scatter``, ...). Unlike step times these do not depend on
the machine's load, so they are the first thing to look at when a ratio misses its
target. ``--dump`` writes each optimised HLO module as text for a diff.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
from typing import Any

#: Opcodes worth showing (the rest are summed as "other").
KINDS = (
    "fusion", "dot", "convolution", "copy", "transpose", "select-and-scatter",
    "reduce-window", "while", "custom-call", "all-reduce", "gather", "scatter",
    "dynamic-slice", "dynamic-update-slice", "concatenate", "slice", "reduce",
    "rng-bit-generator",
)  # fmt: skip

_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*[^=]*?\s([a-z][\w\-]*)\(", re.M)


def opcode_counts(hlo_text: str) -> dict[str, int]:
    """Instruction counts by opcode over the whole module (fused computations included)."""
    counts = collections.Counter(m.group(1) for m in _INSTRUCTION.finditer(hlo_text))
    return dict(counts)


def lower(impl: str, workload: str, cfg: dict[str, Any], abstract: bool = False):
    """(jitted step, example args) of one implementation, as run_one builds them.

    With ``abstract`` the arguments are shapes only (``jax.eval_shape``): nothing is
    allocated, so a full-size GPT compiles for analysis on a small machine.
    """
    import jax
    import jax.numpy as jnp

    from benchmarks.workloads import _common as C
    from benchmarks.workloads import load

    wl = load(workload)
    x, y = wl.batch(cfg)
    batch = (jnp.asarray(x), jnp.asarray(y))
    if abstract:
        batch = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), batch)
    make = (lambda f: jax.eval_shape(f)) if abstract else (lambda f: f())
    if impl == "raw":

        def raw_state():
            params = wl.raw_init(cfg, jax.random.key(C.SEED))
            return params, wl.raw_opt_init(params)

        return wl.raw_step(cfg), (make(raw_state), batch)
    from funcnet import train

    state = make(
        lambda: train.TrainState.create(
            wl.funcnet_model(cfg), wl.funcnet_optimizer(cfg), jax.random.key(C.SEED)
        )
    )
    mode = "error" if impl == "funcnet" else "ignore"
    return train.make_train_step(C.funcnet_loss(wl, cfg), on_nonfinite=mode), (state, batch)


def analyse(
    impl: str, workload: str, cfg: dict[str, Any], dump: str | None, abstract: bool = True
) -> dict[str, Any]:
    step, args = lower(impl, workload, cfg, abstract)
    compiled = step.lower(*args).compile()
    text = compiled.as_text()
    if dump:
        os.makedirs(dump, exist_ok=True)
        with open(os.path.join(dump, f"{workload}-{impl}.hlo.txt"), "w") as f:
            f.write(text)
    cost = compiled.cost_analysis() or {}
    if isinstance(cost, list):
        cost = cost[0] if cost else {}
    mem = compiled.memory_analysis()
    counts = opcode_counts(text)
    return {
        "flops": cost.get("flops"),
        "bytes_accessed": cost.get("bytes accessed"),
        "argument_bytes": getattr(mem, "argument_size_in_bytes", None),
        "output_bytes": getattr(mem, "output_size_in_bytes", None),
        "alias_bytes": getattr(mem, "alias_size_in_bytes", None),
        "temp_bytes": getattr(mem, "temp_size_in_bytes", None),
        "instructions": sum(counts.values()),
        "counts": counts,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", required=True)
    parser.add_argument("--impls", default="raw,funcnet,funcnet-noguard")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--dump", help="folder for the optimised HLO text of each step")
    args = parser.parse_args(argv)

    import jax

    jax.config.update("jax_enable_compilation_cache", False)
    from benchmarks.run_one import config
    from benchmarks.workloads import load

    cfg = config(load(args.workload), args.quick, args.set)
    impls = args.impls.split(",")
    rows = {impl: analyse(impl, args.workload, cfg, args.dump) for impl in impls}

    def fmt(v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.4g}"
        return f"{v:,}"

    fields = ["flops", "bytes_accessed", "argument_bytes", "output_bytes", "alias_bytes",
              "temp_bytes", "instructions"]  # fmt: skip
    kinds = [k for k in KINDS if any(rows[i]["counts"].get(k) for i in impls)]
    print(f"{args.workload}: " + ", ".join(f"{k}={v}" for k, v in cfg.items()))
    print(f"{'':22s}" + "".join(f"{i:>18s}" for i in impls))
    for name in fields:
        print(f"{name:22s}" + "".join(f"{fmt(rows[i][name]):>18s}" for i in impls))
    for kind in kinds:
        print(f"  {kind:20s}" + "".join(f"{rows[i]['counts'].get(kind, 0):>18,}" for i in impls))


if __name__ == "__main__":
    main()
