"""What the non-finite guard costs XLA:CPU's compiler, by parameter shape.

    python -m benchmarks.guard_shapes [--shapes 128x10,784x128] [--reps 3]

Compiles one Adam update of a single parameter (first moment, second moment, parameter:
three kernels) with and without funcnet's default guard (zero the gradient's elements
that are not finite, and all of it when the loss is not), each in a child process with
XLA:CPU's compiler log on, and prints the LLVM time of the three kernels (median over
``reps`` compilations). On jax 0.10.2 the guard costs little on most shapes and 3–4× on
those whose last dimension is 9 to 16 (a 10-class head, a 16-channel convolution); see
docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

SHAPES = ("1280", "128x8", "128x9", "128x10", "128x16", "128x100", "10x128", "784x128")


def _step(guard: bool):
    import jax.numpy as jnp

    from funcnet.optim import finite_or_zero

    def step(m, v, p, g, loss):
        if guard:  # make_train_step(on_nonfinite="error")'s own select
            g = finite_or_zero(g, jnp.isfinite(loss))
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        return m, v, p - 1e-3 * m / (jnp.sqrt(v) + 1e-8)

    return step


def _child(shape: str, guard: bool) -> None:
    import jax
    import jax.numpy as jnp

    a = jnp.zeros(tuple(int(d) for d in shape.split("x")))
    jax.jit(_step(guard)).lower(a, a, a, a, jnp.float32(0)).compile()


def llvm_ms(shape: str, guard: bool) -> float:
    """LLVM milliseconds of the update's kernels, compiled in a fresh child process."""
    from benchmarks.compile import parse_cpu_log

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0")
    env["TF_CPP_VMODULE"] = "cpu_compiler=1,ir_compiler=1"
    cmd = [sys.executable, "-m", "benchmarks.guard_shapes", "--child", shape]
    if guard:
        cmd.append("--guard")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, check=True)
    kernels = parse_cpu_log(done.stderr)
    if not kernels:
        raise RuntimeError("no XLA:CPU compiler log: not a CPU backend, or its format changed")
    return sum(ms for _, ms in kernels)


def main(argv: list[str] | None = None) -> dict[str, tuple[float, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--guard", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.guard)
        return {}
    print(f"{'shape':>10s} {'unguarded ms':>13s} {'guarded ms':>11s} {'ratio':>6s}")
    found = {}
    for shape in args.shapes.split(","):
        plain, guarded = (
            statistics.median(llvm_ms(shape, guard) for _ in range(args.reps))
            for guard in (False, True)
        )
        found[shape] = (plain, guarded)
        print(f"{shape:>10s} {plain:13.1f} {guarded:11.1f} {guarded / plain:6.2f}")
    return found


if __name__ == "__main__":
    main()
