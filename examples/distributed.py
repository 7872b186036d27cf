"""Train with several processes (one per machine or GPU), each holding a copy of the model:
PyTorch's ``DistributedDataParallel`` with ``torchrun``, for a digits MLP.

Every process runs this same script (one SPMD program). ``parallel.init_distributed()``
joins them (in a single process it does nothing); the mesh spans all devices of all
processes; each process's DataLoader reads only its rows of every global batch; ``fit``
trains as on one machine; process 0 prints the progress and writes the checkpoint.

    python -m funcnet.launch --nproc 2 --cpu-devices 2 examples/distributed.py --smoke
    python examples/distributed.py --smoke            # one process, its own devices
    srun python examples/distributed.py               # SLURM: one process per task
"""

from __future__ import annotations

import argparse
import time

import jax

from funcnet import losses, metrics, nn, optim, parallel, train
from funcnet.data import DataLoader
from funcnet.data.datasets import load_digits
from funcnet.data.transforms import ToFloat


class MLP(nn.Module):
    """Flatten → Linear(64, 128) → ReLU → Linear(128, 10), for the 8x8 digits."""

    def __init__(self) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(8 * 8, 128)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(128, 10)

    def forward(self, ctx: nn.Context, x: jax.Array) -> jax.Array:
        x = self.flatten(ctx, x)  # (N, 8, 8, 1) -> (N, 64)
        return self.fc2(ctx, self.relu(ctx, self.fc1(ctx, x)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32, help="global, over all devices")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--checkpoint-dir", default="checkpoints/distributed")
    parser.add_argument("--smoke", action="store_true", help="a few steps only (CI)")
    args = parser.parse_args()

    parallel.init_distributed()  # first, before any JAX computation
    mesh = parallel.make_mesh()  # one "data" axis over the devices of every process
    batches = parallel.batch_sharding(mesh)  # each batch's rows split over that axis
    if parallel.is_main_process():
        print(f"{jax.process_count()} process(es), {len(jax.devices())} devices in all")

    # The same loaders in every process: the same order (seed), each process reading only
    # its rows of a batch. batch_size is the global batch (over all devices).
    to_float = ToFloat(scale=1 / 16)  # pixel counts 0..16 -> [0, 1]
    train_loader = DataLoader(
        load_digits("train"), args.batch_size, shuffle=True, seed=0, transform=to_float,
        device=batches,
    )  # fmt: skip
    test_loader = DataLoader(load_digits("test"), 256, transform=to_float, device=batches)

    state = train.TrainState.create(MLP(), optim.adam(lr=args.lr), jax.random.key(0))
    start = time.perf_counter()
    state, history = train.fit(
        state,
        train_loader,
        epochs=1 if args.smoke else args.epochs,
        loss_fn=losses.cross_entropy,
        metrics={"accuracy": metrics.accuracy},
        callbacks=[train.ModelCheckpoint(args.checkpoint_dir, max_to_keep=1, overwrite=True)],
        max_steps=5 if args.smoke else None,
    )
    results = train.evaluate(
        state, test_loader, loss_fn=losses.cross_entropy, metrics={"accuracy": metrics.accuracy}
    )
    if parallel.is_main_process():
        seconds = time.perf_counter() - start
        loss = history.epochs[-1]["loss"]
        print(f"trained {int(state.step)} steps in {seconds:.1f} s (last epoch: loss {loss:.4f})")
        print(f"test accuracy: {results['accuracy']:.4f}  (test loss {results['loss']:.4f})")
        print(f"checkpoint saved in {args.checkpoint_dir}")


if __name__ == "__main__":
    main()
