"""Classify handwritten digits with a multilayer perceptron (Flatten, Linear(784, 128), ReLU,
Linear(128, 10)) trained with Adam, as the PyTorch MNIST tutorials do.

By default it trains on the handwritten digits shipped inside funcnet (1,797 real 8x8
images, so the first layer is Linear(64, 128)); ``--data-dir`` switches to real MNIST IDX
files (Linear(784, 128), as in the tutorials). It shows a progress bar, prints the final test
accuracy and saves a checkpoint.

    python examples/mnist_mlp.py                     # embedded digits, no download
    python examples/mnist_mlp.py --data-dir ~/data   # ~/data/MNIST/raw/*-ubyte(.gz)
    python examples/mnist_mlp.py --smoke             # a few steps, for CI
"""

from __future__ import annotations

import argparse
import time

import jax

from funcnet import losses, metrics, nn, optim, train
from funcnet.data import DataLoader
from funcnet.data.datasets import MNIST, load_digits
from funcnet.data.transforms import ToFloat


class MLP(nn.Module):
    """Flatten → Linear(in_features, 128) → ReLU → Linear(128, 10)."""

    def __init__(self, in_features: int = 784) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(in_features, 128)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(128, 10)

    def forward(self, ctx: nn.Context, x: jax.Array) -> jax.Array:
        x = self.flatten(ctx, x)  # (N, H, W, 1) -> (N, H*W)
        return self.fc2(ctx, self.relu(ctx, self.fc1(ctx, x)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder with MNIST IDX files (default: embedded digits)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--checkpoint-dir", default="checkpoints/mnist_mlp")
    parser.add_argument("--smoke", action="store_true", help="a few steps only (CI)")
    args = parser.parse_args()

    if args.data_dir:
        train_set, test_set = MNIST(args.data_dir, train=True), MNIST(args.data_dir, train=False)
        in_features, scale, epochs = 28 * 28, 1 / 255, 5
    else:
        train_set, test_set = load_digits("train"), load_digits("test")
        in_features, scale, epochs = 8 * 8, 1 / 16, 40
    epochs = args.epochs or epochs
    to_float = ToFloat(scale=scale)  # uint8 pixels -> float32 in [0, 1]
    train_loader = DataLoader(train_set, args.batch_size, shuffle=True, seed=0, transform=to_float)
    test_loader = DataLoader(test_set, 256, transform=to_float)

    model = MLP(in_features)
    print(model.summary((args.batch_size, *train_set.arrays[0].shape[1:])))
    state = train.TrainState.create(model, optim.adam(lr=args.lr), jax.random.key(0))
    start = time.perf_counter()
    state, history = train.fit(
        state,
        train_loader,
        epochs=1 if args.smoke else epochs,
        loss_fn=losses.cross_entropy,
        metrics={"accuracy": metrics.accuracy},
        callbacks=[train.ModelCheckpoint(args.checkpoint_dir, max_to_keep=1, overwrite=True)],
        max_steps=5 if args.smoke else None,
    )
    results = train.evaluate(
        state, test_loader, loss_fn=losses.cross_entropy, metrics={"accuracy": metrics.accuracy}
    )
    last = history.epochs[-1]
    print(
        f"trained {int(state.step)} steps in {time.perf_counter() - start:.1f} s (last epoch: train loss {last['loss']:.4f})"
    )
    print(f"test accuracy: {results['accuracy']:.4f}  (test loss {results['loss']:.4f})")
    print(f"checkpoint saved in {args.checkpoint_dir}")


if __name__ == "__main__":
    main()
