"""A Linear's forward + backward on a sequence input: ``x @ w`` against its 2-D view.

    python -m benchmarks.linear_layouts [--shapes 32x64x128:128,32x64x128:512]
                                        [--rounds 15] [--calls 10]

For each input shape and output width, compiles ``jax.vjp`` of two ways of writing the
same Linear, ``x @ w`` on the (B, T, in) input and ``funcnet.functional.linear`` (which
multiplies the (B·T, in) view), prints the copies and transposes XLA compiled into each
(``benchmarks.hlo.opcode_counts``) and their times, interleaved in ``rounds`` rounds of
``calls`` calls, with the median of the per-round ratio. On XLA:CPU (jax 0.10.2 and 0.12)
the weight gradient of ``x @ w`` contracts batch and time: XLA copies the whole output
gradient into a transposed layout before the matmul, and the pass is 1.1-1.7x slower
(docs/performance.md).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

SHAPES = ("32x64x128:128", "32x64x128:512", "32x64x512:128", "128x784:128")


def parse(spec: str) -> tuple[tuple[int, ...], int]:
    """``"32x64x128:512"`` → ((32, 64, 128), 512): input shape, output width."""
    shape, out = spec.split(":")
    return tuple(int(n) for n in shape.split("x")), int(out)


def forms() -> dict[str, Any]:
    import funcnet.functional as F

    return {"x @ w": lambda x, w: x @ w, "F.linear (2-D view)": F.linear}


def build(shape: tuple[int, ...], out: int) -> tuple[dict[str, Any], tuple[Any, ...]]:
    """``{form: jitted forward + backward}`` and its arguments (x, w, output gradient)."""
    import jax

    kx, kw, kg = jax.random.split(jax.random.key(0), 3)
    args = (
        jax.random.normal(kx, shape),
        jax.random.normal(kw, (shape[-1], out)) * shape[-1] ** -0.5,
        jax.random.normal(kg, (*shape[:-1], out)),
    )

    def pass_of(f):
        def forward_backward(x, w, g):
            y, vjp = jax.vjp(f, x, w)
            return (y, *vjp(g))

        return jax.jit(forward_backward)

    return {name: pass_of(f) for name, f in forms().items()}, args


def compiled_ops(fn: Any, args: tuple[Any, ...]) -> dict[str, int]:
    """Copies and transposes in ``fn``'s compiled module (fused computations included)."""
    from benchmarks.hlo import opcode_counts

    counts = opcode_counts(fn.lower(*args).compile().as_text())
    return {op: counts.get(op, 0) for op in ("copy", "transpose")}


def measure(fns: dict[str, Any], args: tuple[Any, ...], rounds: int, calls: int) -> dict:
    """Seconds per call of each function in each round (rounds interleaved)."""
    import jax

    for fn in fns.values():
        jax.block_until_ready(fn(*args))
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                result = fn(*args)
            jax.block_until_ready(result)
            times[name].append((time.perf_counter() - t0) / calls)
    return times


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=10)
    args = parser.parse_args(argv)
    found: dict[str, dict[str, Any]] = {}
    for spec in args.shapes.split(","):
        shape, out = parse(spec)
        fns, inputs = build(shape, out)
        kinds = {name: compiled_ops(fn, inputs) for name, fn in fns.items()}
        times = measure(fns, inputs, args.rounds, args.calls)
        base = times["x @ w"]
        print(f"{spec}  (input {shape} → {out})")
        found[spec] = {}
        for name, ts in times.items():
            ratio = statistics.median(t / b for t, b in zip(ts, base))
            k = kinds[name]
            print(
                f"  {name:20s} {statistics.median(ts) * 1e6:9.1f} µs  ratio {ratio:.3f}  "
                f"(copies {k['copy']}, transposes {k['transpose']})"
            )
            found[spec][name] = {"s": statistics.median(ts), "ratio": ratio, **k}
    return found


if __name__ == "__main__":
    main()
