"""Train a small convolutional network on CIFAR-10 images with SGD (momentum 0.9), as the
PyTorch CIFAR-10 tutorials do.

Two 3x3 convolutions with padding 1, each followed by ReLU and 2x2 max-pooling, then
Linear(64 * 8 * 8, 128) and Linear(128, 10). (The tutorial flattens to 64 * 6 * 6, which is
wrong for 32x32 inputs: two poolings leave 8x8.) Images are channels-last (N, 32, 32, 3).

    python examples/cifar_cnn.py --data-dir ~/data   # reads cifar-10-batches-bin/*.bin
    python examples/cifar_cnn.py --data-dir ~/data --cpu-cores  # data-parallel over the cores
    python examples/cifar_cnn.py --smoke             # a few steps on random data (CI)

On a CPU, ``--cpu-cores`` makes every core a JAX device (``parallel.use_cpu_devices``) and
trains data-parallel: each batch is split over the cores (``parallel.batch_sharding``)
and the state replicated (``parallel.shard_state``); ``fit`` is unchanged. XLA:CPU runs
each convolution on one core, so this is how a convolutional network uses them all.

CIFAR-10's binary version comes from https://www.cs.toronto.edu/~kriz/cifar.html
(``CIFAR10(root, download=True)`` fetches and verifies it).
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

import funcnet.functional as F
from funcnet import losses, metrics, nn, optim, parallel, train
from funcnet.data import ArrayDataset, DataLoader
from funcnet.data.datasets import CIFAR10
from funcnet.data.transforms import Compose, Normalize, ToFloat


class CNN(nn.Module):
    """conv(3→32) → pool → conv(32→64) → pool → fc(4096→128) → fc(128→10)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(64 * 8 * 8, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, ctx: nn.Context, x: jax.Array) -> jax.Array:
        x = self.pool(ctx, F.relu(self.conv1(ctx, x)))  # (N, 16, 16, 32)
        x = self.pool(ctx, F.relu(self.conv2(ctx, x)))  # (N, 8, 8, 64)
        x = F.relu(self.fc1(ctx, self.flatten(ctx, x)))
        return self.fc2(ctx, x)


def random_cifar(n: int, seed: int) -> ArrayDataset:
    """Random uint8 images and labels in CIFAR-10's shapes (for --smoke)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    return ArrayDataset(images, rng.integers(0, 10, n).astype(np.int32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder with CIFAR-10's binary version")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--cpu-cores", action="store_true", help="data-parallel over the cores")
    parser.add_argument("--smoke", action="store_true", help="a few steps on random data (CI)")
    args = parser.parse_args()
    mesh = place = None  # one device, batches placed on it by the loader
    if args.cpu_cores:
        print(f"{parallel.use_cpu_devices()} CPU devices")  # before any JAX computation
        mesh = parallel.make_mesh()  # one "data" axis over every device
        place = parallel.batch_sharding(mesh)  # each batch split along its rows
    if args.smoke:
        train_set, test_set = random_cifar(256, 0), random_cifar(128, 1)
    elif args.data_dir:
        train_set, test_set = (
            CIFAR10(args.data_dir, train=True),
            CIFAR10(args.data_dir, train=False),
        )
    else:
        parser.error("pass --data-dir with CIFAR-10's binary files, or --smoke")

    # torchvision's ToTensor() + Normalize((0.5,) * 3, (0.5,) * 3), on whole batches
    transform = Compose([ToFloat(), Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    train_loader = DataLoader(
        train_set, args.batch_size, shuffle=True, drop_last=True, transform=transform, device=place
    )
    test_loader = DataLoader(test_set, 256, transform=transform, device=place)

    model = CNN()
    print(model.summary((args.batch_size, 32, 32, 3)))
    state = train.TrainState.create(model, optim.sgd(args.lr, momentum=0.9), jax.random.key(0))
    if mesh is not None:
        state = parallel.shard_state(state, mesh)  # replicated on every device
    start = time.perf_counter()
    state, _ = train.fit(
        state,
        train_loader,
        epochs=1 if args.smoke else args.epochs,
        loss_fn=losses.cross_entropy,
        metrics={"accuracy": metrics.accuracy},
        max_steps=3 if args.smoke else None,
    )
    results = train.evaluate(
        state, test_loader, loss_fn=losses.cross_entropy, metrics={"accuracy": metrics.accuracy}
    )
    print(f"trained {int(state.step)} steps in {time.perf_counter() - start:.1f} s")
    print(f"test accuracy: {results['accuracy']:.4f}  (test loss {results['loss']:.4f})")


if __name__ == "__main__":
    main()
