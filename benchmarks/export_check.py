"""Export round trip: a funcnet model exported here runs elsewhere without its code.

    python -m benchmarks.export_check --out DIR [--quick]

Exports the transformer workload's funcnet model (``--quick``: a tiny one) with
``funcnet.export.export(..., platforms=("cpu", "cuda"), batch_polymorphic=True)``, and
once more for ``platforms=("cpu",)`` only. A fresh Python process that imports funcnet but
not the model's code (``benchmarks.workloads``) then loads the first file, runs it on JAX's
default device (the GPU when there is one) at another batch size than the export's
example, and compares the output with ``model.apply`` run on the CPU
(``jax.devices("cpu")``) in this process: ``rtol = atol = 1e-2`` (a GPU multiplies float32
matrices in TF32 by default). On a GPU it also checks that the CPU-only file is refused
with an ``ExportError`` naming the platforms; without a GPU that check is skipped, said so.

Prints one PASS, FAIL or SKIP line per check; writes the exported files, the inputs,
``export_check.md`` and ``export_check.json`` into ``--out``; exits with status 1 when a
check failed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import harness

WORKLOAD = "transformer"
RUN_BATCH = 5  # rows the loaded program runs on: not the example's batch size
TOLERANCE = 1e-2  # rtol and atol against the CPU's model.apply
CHILD_MARKER = "EXPORT_CHECK "
MODEL_MODULES = ("benchmarks.workloads", "benchmarks.precision")


def export_files(out: Path, quick: bool) -> dict[str, Any]:
    """Exports the model twice (cpu+cuda, cpu only), saves inputs and CPU outputs.

    Returns what the report needs: the config, the parameter count, the example's and the
    run's batch sizes, the seconds the cpu+cuda export took, the reference's device.
    """
    import jax
    import numpy as np

    from benchmarks.precision import workload_config
    from benchmarks.workloads import _common as C
    from benchmarks.workloads import load
    from funcnet import export

    cfg = workload_config(WORKLOAD, quick, [])
    model = load(WORKLOAD).funcnet_model(cfg)
    params, state = model.init(jax.random.key(C.SEED))
    example, _ = C.token_ids(cfg["batch"], cfg["seq"], cfg["vocab"], cfg["classes"])
    t0 = time.perf_counter()
    export.export(model, params, state, example, path=out / "model.fnx", platforms=("cpu", "cuda"))
    export_s = time.perf_counter() - t0
    export.export(model, params, state, example, path=out / "model-cpu.fnx", platforms=("cpu",))
    ids = np.random.default_rng(1).integers(0, cfg["vocab"], (RUN_BATCH, cfg["seq"]), np.int32)
    cpu = jax.devices("cpu")[0]
    with jax.default_device(cpu):
        expected, _ = model.apply(*jax.device_put((params, state, ids), cpu), train=False)
    np.savez(out / "inputs.npz", ids=ids, expected=np.asarray(expected))
    return {
        "config": cfg,
        "n_params": C.count_params(params),
        "example_batch": cfg["batch"],
        "run_batch": RUN_BATCH,
        "export_s": export_s,
        "expected_device": str(next(iter(expected.devices()))),
    }


def _check(name: str, status: str, detail: str) -> dict[str, str]:
    return {"check": name, "status": status, "detail": detail}


def _run_exported(out: Path) -> dict[str, str]:
    """Loads model.fnx, runs it on the default device, compares with the CPU's output."""
    import jax
    import numpy as np

    from funcnet import export

    data = np.load(out / "inputs.npz")
    t0 = time.perf_counter()
    predict = export.load(out / "model.fnx")
    result = predict(data["ids"])
    jax.block_until_ready(result)
    seconds = time.perf_counter() - t0
    got, expected = np.asarray(result), data["expected"]
    device = next(iter(result.devices()))
    diff = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else float("inf")
    ok = got.shape == expected.shape and np.allclose(got, expected, TOLERANCE, TOLERANCE)
    return _check(
        f"cpu+cuda file runs on {jax.default_backend()} ({device.device_kind})",
        "PASS" if ok else "FAIL",
        f"batch {got.shape[0]}, output {got.shape} on {device}; max |diff| against "
        f"model.apply on the CPU {diff:.2e} (rtol = atol = {TOLERANCE:g}); load + first "
        f"call {seconds:.2f} s",
    )


def _refuse_cpu_only(out: Path) -> dict[str, str]:
    """On a GPU, the CPU-only file must be refused with an ExportError naming both."""
    import jax

    from funcnet import export

    name = "cpu-only file refused on a GPU"
    here = jax.default_backend()
    if here != "gpu":
        return _check(name, "SKIP", f"no GPU here (default backend {here!r})")
    try:
        export.load(out / "model-cpu.fnx")
    except export.ExportError as error:
        message = str(error)
        clear = "('cpu',)" in message and "cuda" in message and "export again" in message
        return _check(name, "PASS" if clear else "FAIL", f"ExportError: {message}")
    except Exception as error:
        return _check(name, "FAIL", f"not an ExportError: {error!r}")
    return _check(name, "FAIL", "loaded without an error")


def child(out: Path) -> None:
    """The fresh process: every check on the exported files, one marker line of JSON."""
    checks = []
    for run in (_run_exported, _refuse_cpu_only):
        try:
            checks.append(run(out))
        except Exception as error:
            checks.append(_check(run.__name__.strip("_"), "FAIL", repr(error)))
    imported = [m for m in sys.modules if m.startswith(MODEL_MODULES)]
    checks.append(
        _check(
            "the model's code is not imported",
            "FAIL" if imported else "PASS",
            f"imported: {imported}" if imported else f"none of {', '.join(MODEL_MODULES)}",
        )
    )
    print(CHILD_MARKER + json.dumps(checks), flush=True)


def run_child(out: Path, timeout_s: float) -> list[dict[str, str]]:
    """Runs `child` in a fresh process; a crash or timeout is one FAIL check."""
    cmd = [sys.executable, "-m", "benchmarks.export_check", "--child", "--out", str(out)]
    root = Path(__file__).resolve().parent.parent
    try:
        proc = subprocess.run(
            cmd, cwd=root, env=harness.bench_env(), capture_output=True, text=True,
            timeout=timeout_s,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return [_check("fresh process", "FAIL", f"timed out after {timeout_s:.0f} s")]
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(CHILD_MARKER):
            return json.loads(line[len(CHILD_MARKER) :])
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
    return [_check("fresh process", "FAIL", f"exit {proc.returncode}: {tail}")]


def markdown(info: dict[str, Any], checks: list[dict[str, str]]) -> str:
    """The report: what was exported, then one line per check."""
    lines = [
        f"## Export check: {info['backend'].upper()} ({info['device']})",
        "",
        f"The {WORKLOAD} workload's model ({info['n_params']:,} parameters"
        f"{', --quick size' if info['quick'] else ''}) exported with example batch "
        f"{info['example_batch']} for ('cpu', 'cuda') in {info['export_s']:.2f} s, loaded in "
        f"a fresh process without the model's code and run at batch {info['run_batch']}; "
        f"reference: model.apply on {info['expected_device']}.",
        "",
    ]
    lines += [f"- {c['status']}: {c['check']}: {c['detail']}" for c in checks]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Exports, checks in a fresh process, reports; 1 if a check failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the files and the report")
    parser.add_argument("--quick", action="store_true", help="a tiny model")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for the child")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.child:
        child(out)
        return 0
    import jax

    out.mkdir(parents=True, exist_ok=True)
    info = export_files(out, args.quick)
    checks = run_child(out, args.timeout)
    info.update(
        quick=args.quick, backend=jax.default_backend(), device=jax.devices()[0].device_kind
    )
    for c in checks:
        print(f"{c['status']}: {c['check']}: {c['detail']}", flush=True)
    (out / "export_check.md").write_text(markdown(info, checks))
    (out / "export_check.json").write_text(json.dumps({"info": info, "checks": checks}, indent=1))
    return 1 if any(c["status"] == "FAIL" for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
