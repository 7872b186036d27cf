"""Train on several GPUs (or CPU devices) of one machine at once, each taking a slice of every
batch: PyTorch's ``DataParallel`` / ``DistributedDataParallel`` on one node, for a digits MLP.

``parallel.DataParallel`` runs the train and eval steps on all local devices: every
device holds the same parameters, takes its slice of each batch, and one all-reduce per
step combines the gradients, loss and metrics into the whole batch's. ``fit`` takes the
steps unchanged. On a machine with GPUs (or TPUs) the script uses them; on a CPU it
simulates ``--cpu-devices`` devices (``parallel.use_cpu_devices``; the environment
variable ``JAX_NUM_CPU_DEVICES=4`` does the same).

    python examples/data_parallel.py                      # 40 epochs on the digits
    python examples/data_parallel.py --backend shard_map  # the same with jax.shard_map
    python examples/data_parallel.py --smoke              # a few steps, for CI
"""

from __future__ import annotations

import argparse
import time

import jax

from funcnet import losses, metrics, nn, optim, parallel, train
from funcnet.data import DataLoader
from funcnet.data.datasets import load_digits
from funcnet.data.transforms import ToFloat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=128, help="the global batch")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--backend", choices=("pmap", "shard_map"), default="pmap")
    parser.add_argument("--cpu-devices", type=int, default=4, help="simulated, on a CPU")
    parser.add_argument("--smoke", action="store_true", help="a few steps only (CI)")
    args = parser.parse_args()
    parallel.use_cpu_devices(args.cpu_devices)  # before any JAX computation

    dp = parallel.DataParallel(backend=args.backend)  # all local devices
    print(f"{dp}: {[str(d) for d in dp.devices]}")
    to_float = ToFloat(scale=1 / 16)  # the digits' pixels are 0..16
    train_loader = DataLoader(
        load_digits("train"), args.batch_size, shuffle=True, seed=0, transform=to_float
    )
    test_loader = DataLoader(load_digits("test"), 256, transform=to_float)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    state = train.TrainState.create(model, optim.adam(lr=args.lr), jax.random.key(0))

    scores = {"accuracy": metrics.accuracy, "f1": metrics.F1Score(num_classes=10, average="macro")}
    train_step = dp.make_train_step(losses.cross_entropy, metrics=scores)
    eval_step = dp.make_eval_step(losses.cross_entropy, metrics=scores)
    start = time.perf_counter()
    state, history = train.fit(
        state,
        train_loader,
        epochs=1 if args.smoke else args.epochs,
        train_step=train_step,
        eval_step=eval_step,
        eval_loader=test_loader,
        max_steps=5 if args.smoke else None,
        progress="log",
    )
    results = train.evaluate(state, test_loader, eval_step=eval_step)
    last = history.epochs[-1]
    print(
        f"trained {int(state.step)} steps on {dp.num_devices} devices in "
        f"{time.perf_counter() - start:.1f} s (last epoch: train loss {last['loss']:.4f})"
    )
    print(
        f"test accuracy: {results['accuracy']:.4f}  (macro F1 {results['f1']:.4f}, "
        f"test loss {results['loss']:.4f})"
    )


if __name__ == "__main__":
    main()
