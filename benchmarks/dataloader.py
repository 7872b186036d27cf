"""DataLoader throughput against the MLP train step it feeds, measured in one run.

Dataset: in memory, 60,000 x 28 x 28 uint8 images and int32 labels (MNIST's size), shuffled,
batch 128. Loader variants (samples/s, the consumer only iterating):

- fast path, uint8 batches (normalisation done by the consumer's jitted step);
- fast path, normalised on the host to float32 (``transform=Compose([ToFloat(), Normalize])``),
  with one background thread and with ``num_workers=2``;
- per-item path (a dataset without ``gather``), normalised on the host, 0 and 2 workers.

The train step is hand-written JAX: MLP 784 -> 128 -> 10, softmax cross-entropy, Adam, one
``jax.jit`` with the state donated; timed with float32 input and with uint8 input
normalised inside the jit. The ratio is loader samples/s over step samples/s. Finally an
end-to-end epoch (loader feeding the step) is compared with the same number of steps on
one fixed batch. Variants are interleaved within each repetition; medians are reported.

Usage: ``python benchmarks/dataloader.py [--repeats 5] [--quick] [--json PATH]``
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from funcnet.data import ArrayDataset, DataLoader
from funcnet.data import transforms as T

N, BATCH = 60_000, 128
MEAN, STD = 0.1307, 0.3081


class PerItem:
    """The same samples without ``gather``: forces the per-item path."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.images[i], self.labels[i]


def make_step(normalise_in_jit: bool):
    """A jitted MLP + Adam step, ``state = step(state, x, y)``, state donated."""
    to_float = T.Compose([T.ToFloat(), T.Normalize(MEAN, STD)])

    def loss(params, x, y):
        if normalise_in_jit:
            x = to_float(x)
        h = jax.nn.relu(x.reshape(x.shape[0], -1) @ params["w1"] + params["b1"])
        logits = h @ params["w2"] + params["b2"]
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    @functools.partial(jax.jit, donate_argnums=0)
    def step(state, x, y):
        params, m, v, t = state
        grads = jax.grad(loss)(params, x, y)
        t = t + 1
        m = jax.tree.map(lambda m, g: 0.9 * m + 0.1 * g, m, grads)
        v = jax.tree.map(lambda v, g: 0.999 * v + 0.001 * g * g, v, grads)
        lr = 1e-3 * jnp.sqrt(1 - 0.999**t) / (1 - 0.9**t)
        params = jax.tree.map(lambda p, m, v: p - lr * m / (jnp.sqrt(v) + 1e-8), params, m, v)
        return params, m, v, t

    return step


def init_state():
    k1, k2 = jax.random.split(jax.random.key(0))
    params = {
        "w1": jax.random.uniform(k1, (784, 128), minval=-(784**-0.5), maxval=784**-0.5),
        "b1": jnp.zeros(128),
        "w2": jax.random.uniform(k2, (128, 10), minval=-(128**-0.5), maxval=128**-0.5),
        "b2": jnp.zeros(10),
    }
    zeros = jax.tree.map(jnp.zeros_like, params)
    return params, zeros, jax.tree.map(jnp.zeros_like, params), jnp.zeros((), jnp.float32)


def time_step(step, x, y, seconds: float) -> float:
    """Median seconds per step over rounds of about ``seconds / 3`` each."""
    state = init_state()
    for _ in range(20):
        state = step(state, x, y)
    jax.block_until_ready(state)
    rounds = []
    for _ in range(3):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            for _ in range(50):
                state = step(state, x, y)
            jax.block_until_ready(state)
            count += 50
        rounds.append((time.perf_counter() - start) / count)
    return statistics.median(rounds)


def time_loader(loader: DataLoader, max_batches: int) -> float:
    """Samples per second over up to ``max_batches`` batches (one warm-up batch first)."""
    loader.set_epoch(loader.epoch + 1)
    it = iter(loader)
    next(it)
    count, start = 0, time.perf_counter()
    for x, _ in it:
        count += len(x)
        if count >= max_batches * BATCH:
            break
    elapsed = time.perf_counter() - start
    it.close()
    return count / elapsed


def time_end_to_end(loader: DataLoader, step, batches: int) -> tuple[float, float]:
    """Seconds per step fed by the loader (whole batches of one epoch, the shuffle and the
    thread start-up included), then on one fixed batch for the same number of steps."""
    state = init_state()
    x0, y0 = next(iter(loader))
    for _ in range(20):
        state = step(state, x0, y0)
    jax.block_until_ready(state)
    loader.set_epoch(loader.epoch + 1)
    count, start = 0, time.perf_counter()
    for x, y in loader:
        if len(y) == BATCH:  # the short last batch would compile a second program
            state = step(state, x, y)
            count += 1
    jax.block_until_ready(state)
    fed = (time.perf_counter() - start) / count
    start = time.perf_counter()
    for _ in range(count):
        state = step(state, x0, y0)
    jax.block_until_ready(state)
    return fed, (time.perf_counter() - start) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repetitions")
    parser.add_argument("--quick", action="store_true", help="one repetition, short rounds")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    seconds = 0.6 if args.quick else 2.0

    load_before = os.getloadavg()[0]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (N, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, N).astype(np.int32)
    normalise = T.Compose([T.ToFloat(), T.Normalize(MEAN, STD)])
    fast, slow = ArrayDataset(images, labels), PerItem(images, labels)
    full_epoch = N // BATCH + 1
    variants = {
        "fast, uint8 (normalise in the jitted step)": (
            DataLoader(fast, BATCH, shuffle=True),
            full_epoch,
        ),
        "fast, uint8, prefetch=0 (no thread)": (
            DataLoader(fast, BATCH, shuffle=True, prefetch=0),
            full_epoch,
        ),
        "fast, host-normalised float32": (
            DataLoader(fast, BATCH, shuffle=True, transform=normalise),
            full_epoch,
        ),
        "fast, host-normalised float32, 2 workers": (
            DataLoader(fast, BATCH, shuffle=True, transform=normalise, num_workers=2),
            full_epoch,
        ),
        "per-item, host-normalised float32": (
            DataLoader(slow, BATCH, shuffle=True, transform=normalise),
            60,
        ),
        "per-item, host-normalised float32, 2 workers": (
            DataLoader(slow, BATCH, shuffle=True, transform=normalise, num_workers=2),
            60,
        ),
    }
    step_f32, step_u8 = make_step(False), make_step(True)
    x_u8, y = images[:BATCH], labels[:BATCH]
    x_f32 = normalise(x_u8)

    results: dict[str, list[float]] = {name: [] for name in variants}
    results["step, float32 input (s)"] = []
    results["step, uint8 input normalised in jit (s)"] = []
    feeders = {p: DataLoader(fast, BATCH, shuffle=True, prefetch=p) for p in (2, 0)}
    end_to_end: dict[int, list[tuple[float, float]]] = {p: [] for p in feeders}
    for _ in range(repeats):
        results["step, float32 input (s)"].append(time_step(step_f32, x_f32, y, seconds))
        results["step, uint8 input normalised in jit (s)"].append(
            time_step(step_u8, x_u8, y, seconds)
        )
        for name, (loader, batches) in variants.items():
            results[name].append(time_loader(loader, batches))
        for prefetch, feeder in feeders.items():
            end_to_end[prefetch].append(time_end_to_end(feeder, step_u8, N // BATCH))

    med = {k: statistics.median(v) for k, v in results.items()}
    step_key = "step, uint8 input normalised in jit (s)"
    step_rate, best_step_rate = BATCH / med[step_key], BATCH / min(results[step_key])
    print(
        f"jax {jax.__version__}, numpy {np.__version__}, {os.cpu_count()} CPUs, {platform.machine()}"
    )
    print(
        f"{repeats} interleaved repetition(s). 1-min load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after (other processes share the CPUs).\n"
        "Median, and best (fastest repetition: what the machine does when least disturbed).\n"
    )
    for label, key in [
        ("float32 input", "step, float32 input (s)"),
        ("uint8 + in-jit normalise", step_key),
    ]:
        print(
            f"train step, {label:25s} median {med[key] * 1e6:6.0f} µs, best {min(results[key]) * 1e6:6.0f} µs"
        )
    print(
        f"consumed: {step_rate / 1e3:.0f}k samples/s (median), {best_step_rate / 1e3:.0f}k (best)\n"
    )
    header = f"{'loader variant':46s} {'samples/s':>11s} {'x step':>7s} {'µs/batch':>9s}"
    print(f"{header} | {'best':>11s} {'x step':>7s}")
    for name in variants:
        rate, best = med[name], max(results[name])
        print(
            f"{name:46s} {rate:11,.0f} {rate / step_rate:7.1f} {BATCH / rate * 1e6:9.1f} | "
            f"{best:11,.0f} {best / best_step_rate:7.1f}"
        )
    print("\nend to end, one epoch of the uint8 step fed by the fast uint8 loader:")
    for prefetch, pairs in end_to_end.items():
        fed = statistics.median(p[0] for p in pairs)
        fixed = statistics.median(p[1] for p in pairs)
        change = statistics.median(p[0] / p[1] - 1 for p in pairs)
        print(
            f"  prefetch={prefetch}: {fed * 1e6:.0f} µs/step vs {fixed * 1e6:.0f} µs/step on one "
            f"fixed batch (median of per-repetition changes {change:+.1%})"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"medians": med, "runs": results, "end_to_end_s": end_to_end}, f, indent=1)


if __name__ == "__main__":
    main()
