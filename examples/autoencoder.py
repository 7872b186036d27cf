"""Train an autoencoder that compresses handwritten digits to a short code and rebuilds
them, as the PyTorch autoencoder tutorials do on MNIST.

``models.AutoEncoder`` (an MLP encoder 64 -> 64 -> 32 -> 10 and its mirror-image decoder
with a sigmoid output) learns, with Adam and the mean squared error, to reconstruct the
1,797 8x8 handwritten digits shipped inside funcnet from a 10-number code. No labels
are used: each image is its own target. It prints the reconstruction error on the test
images next to that of always answering the average training image, and saves
originals above their reconstructions when matplotlib is installed.

    python examples/autoencoder.py                         # 150 epochs
    python examples/autoencoder.py --out reconstructions.png
    python examples/autoencoder.py --smoke                 # a few steps, for CI
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from funcnet import losses, models, optim, train
from funcnet.data import ArrayDataset, DataLoader
from funcnet.data.datasets import load_digits
from funcnet.data.transforms import ToFloat


def images_only(split: str) -> ArrayDataset:
    """The digits of a split without their labels: batches are ``(images,)``."""
    return ArrayDataset(load_digits(split).arrays[0])


def report_every(n: int) -> train.LambdaCallback:
    """Prints the training loss every ``n`` epochs (the epochs are short)."""

    def show(loop: train.Loop, logs: dict) -> None:
        if (logs["epoch"] + 1) % n == 0:
            print(f"epoch {logs['epoch'] + 1}: train MSE {logs['loss']:.4f}")

    return train.LambdaCallback(on_epoch_end=show)


def save_pairs(originals: np.ndarray, reconstructions: np.ndarray, path: str) -> None:
    """Saves originals (top row) above their reconstructions, if matplotlib is installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipped the PNG of reconstructions")
        return
    n = len(originals)
    fig, axes = plt.subplots(2, n, figsize=(n, 2.2))
    for row, images in enumerate((originals, reconstructions)):
        for ax, image in zip(axes[row], images):
            ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1)
            ax.axis("off")
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    print(f"originals (top) and reconstructions (bottom) saved to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", default="autoencoder.png", help="PNG of reconstructions")
    parser.add_argument("--smoke", action="store_true", help="a few steps only (CI)")
    args = parser.parse_args()

    to_float = ToFloat(scale=1 / 16)  # the digits' pixels are 0..16 -> [0, 1]
    train_loader = DataLoader(
        images_only("train"), args.batch_size, shuffle=True, seed=0, transform=to_float
    )
    test_loader = DataLoader(images_only("test"), 512, transform=to_float)
    same = lambda batch: (batch[0], batch[0])  # inputs are their own targets

    model = models.AutoEncoder(in_features=8 * 8, hidden_sizes=(64, 32), latent_dim=10)
    print(model.summary((args.batch_size, 8, 8, 1)))
    state = train.TrainState.create(model, optim.adam(lr=args.lr), jax.random.key(0))
    start = time.perf_counter()
    state, _ = train.fit(
        state,
        train_loader,
        epochs=1 if args.smoke else args.epochs,
        loss_fn=losses.mse_loss,
        batch_fn=same,
        progress="quiet",
        callbacks=[report_every(25)],
        max_steps=5 if args.smoke else None,
    )
    results = train.evaluate(state, test_loader, loss_fn=losses.mse_loss, batch_fn=same)

    test_images = to_float(images_only("test").arrays[0])
    average = to_float(images_only("train").arrays[0]).mean(axis=0)
    baseline = float(np.mean((test_images - average) ** 2))
    print(f"trained {int(state.step)} steps in {time.perf_counter() - start:.1f} s")
    print(
        f"test reconstruction MSE {results['loss']:.4f} "
        f"(always answering the average training image: {baseline:.4f})"
    )
    originals = test_images[:10]
    reconstructions, _ = model.apply(state.params, state.model_state, originals)
    save_pairs(originals, np.asarray(reconstructions), args.out)


if __name__ == "__main__":
    main()
