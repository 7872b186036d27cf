"""One (implementation, workload) measurement, in this fresh process.

    python -m benchmarks.run_one --impl funcnet --workload mlp [--quick]
    python -m benchmarks.run_one --verify --workload cnn     # funcnet == raw JAX?

Prints one ``BENCH_RESULT {json}`` line (the parent, ``benchmarks.run``, parses it).
Implementations: ``raw`` (the hand-written JAX reference), ``funcnet`` (the default
``make_train_step``, with its non-finite guard), ``funcnet-noguard``
(``on_nonfinite="ignore"``), ``funcnet-cpus`` (the same step data-parallel over the CPU's
cores made devices by ``parallel.use_cpu_devices``; CPU only), and when installed
``linen``, ``nnx``, ``equinox``, ``haiku``, ``torch``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from typing import Any

IMPLS = (
    "raw",
    "funcnet",
    "funcnet-noguard",
    "funcnet-cpus",
    "linen",
    "nnx",
    "equinox",
    "haiku",
    "torch",
)
OTHERS = {
    "linen": "flax_linen",
    "nnx": "flax_nnx",
    "equinox": "equinox_",
    "haiku": "haiku_",
    "torch": "torch_",
}


def _parse_value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def config(workload: Any, quick: bool, overrides: list[str]) -> dict[str, Any]:
    cfg = workload.config(quick)
    for item in overrides:
        name, _, value = item.partition("=")
        if name not in cfg:
            raise SystemExit(f"--set {name}: not a field of this workload ({', '.join(cfg)})")
        cfg[name] = _parse_value(value)
    return cfg


def build(impl: str, name: str, cfg: dict[str, Any]):
    """The Bench of one implementation (imports happen here, after the clock started)."""
    import jax
    import jax.numpy as jnp

    from benchmarks.workloads import _common as C
    from benchmarks.workloads import load

    workload = load(name)
    x, y = workload.batch(cfg)
    extra = workload.bench_extra(cfg) if hasattr(workload, "bench_extra") else {}
    if impl == "raw":
        params = workload.raw_init(cfg, jax.random.key(C.SEED))
        state = (params, workload.raw_opt_init(params))
        batch = (jnp.asarray(x), jnp.asarray(y))
        return C.jax_bench(
            workload.raw_step(cfg), state, batch, C.count_params(params), notes="raw JAX", **extra
        )
    if impl in ("funcnet", "funcnet-noguard"):
        batch = (jnp.asarray(x), jnp.asarray(y))
        mode = "error" if impl == "funcnet" else "ignore"
        model, optimizer = workload.funcnet_model(cfg), workload.funcnet_optimizer(cfg)
        loss_fn = C.funcnet_loss(workload, cfg)
        return C.funcnet_bench(model, optimizer, batch, mode, loss_fn, **extra)
    if impl == "funcnet-cpus":
        if jax.default_backend() != "cpu":
            raise NotImplementedError("funcnet-cpus: CPU only")
        from benchmarks.cpu_devices import data_parallel_bench

        return data_parallel_bench(name, cfg)
    import importlib

    module = importlib.import_module(f"benchmarks.others.{OTHERS[impl]}")
    return module.build(name, cfg, x, y, **extra)


def environment() -> dict[str, Any]:
    import jax

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "platform": jax.default_backend(),
        "device": jax.devices()[0].device_kind,
        "cpu_count": os.cpu_count(),
        "load_avg": os.getloadavg(),
        "machine": platform.platform(),
    }
    for module in ("jaxlib", "optax", "flax", "equinox", "haiku", "torch", "funcnet"):
        mod = sys.modules.get(module)
        if mod is not None:
            info[module] = getattr(mod, "__version__", "?")
    return info


def verify(name: str, cfg: dict[str, Any], steps: int) -> dict[str, Any]:
    """Trains funcnet and the raw reference from the same parameters; compares the losses."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from benchmarks.workloads import _common as C
    from benchmarks.workloads import load
    from funcnet import train

    workload = load(name)
    x, y = workload.batch(cfg)
    batch = (jnp.asarray(x), jnp.asarray(y))
    state = train.TrainState.create(
        workload.funcnet_model(cfg), workload.funcnet_optimizer(cfg), jax.random.key(C.SEED)
    )
    raw_params = workload.from_funcnet(jax.tree_util.tree_map(jnp.copy, state.params))
    n_fn, n_raw = C.count_params(state.params), C.count_params(raw_params)
    raw = (raw_params, workload.raw_opt_init(raw_params))
    fn_step = train.make_train_step(C.funcnet_loss(workload, cfg))
    raw_step = workload.raw_step(cfg)
    fn_losses, raw_losses = [], []
    for _ in range(steps):
        state, m = fn_step(state, batch)
        raw, loss = raw_step(raw, batch)
        fn_losses.append(float(m["loss"]))
        raw_losses.append(float(loss))
    diff = float(np.max(np.abs(np.array(fn_losses) - np.array(raw_losses))))
    tol = getattr(workload, "VERIFY_TOL", 1e-3)  # relative; bfloat16 workloads need more
    return {
        "workload": name,
        "n_params_funcnet": n_fn,
        "n_params_raw": n_raw,
        "funcnet_losses": fn_losses,
        "raw_losses": raw_losses,
        "max_abs_diff": diff,
        "ok": n_fn == n_raw and diff <= tol * max(1.0, abs(raw_losses[0])),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", choices=IMPLS, default="raw")
    parser.add_argument("--workload", required=True)
    parser.add_argument("--quick", action="store_true", help="short timing (and tiny GPT)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a workload config field (e.g. batch=32)",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="check funcnet and raw JAX give the same losses, then exit",
    )
    parser.add_argument("--verify-steps", type=int, default=3)
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--round-s", type=float)
    args = parser.parse_args(argv)
    if args.impl == "funcnet-cpus":
        from funcnet import parallel

        parallel.use_cpu_devices()  # every core this process may use; before JAX starts

    import jax

    # Time to first step must include compilation: never read a persistent cache.
    jax.config.update("jax_enable_compilation_cache", False)

    from benchmarks import harness
    from benchmarks.workloads import load

    workload = load(args.workload)
    cfg = config(workload, args.quick, args.set)
    if args.verify:
        result = verify(args.workload, cfg, args.verify_steps)
        harness.emit(result)
        sys.exit(0 if result["ok"] else 1)

    timing = harness.Timing.chosen(args.quick, args.warmup, args.rounds, args.round_s)
    result: dict[str, Any] = {"impl": args.impl, "workload": args.workload, "config": cfg}
    t0 = time.perf_counter()
    try:
        bench = build(args.impl, args.workload, cfg)
    except ImportError as e:
        result["skipped"] = f"not installed: {e.name or e}"
        harness.emit(result)
        return
    except NotImplementedError as e:
        result["skipped"] = str(e)
        harness.emit(result)
        return
    result["setup_s"] = time.perf_counter() - t0
    result.update(harness.measure(bench, timing))
    result["env"] = environment()
    harness.emit(result)


if __name__ == "__main__":
    main()
