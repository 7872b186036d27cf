"""Train a variational autoencoder (VAE) on handwritten digits, as PyTorch's examples/vae
does on MNIST, and draw new digits from it.

``models.VAE`` is the example's network (fc1, then fc21/fc22 giving the mean and log
variance of a Gaussian code, then fc3 and fc4 decoding it through a sigmoid), here
64 -> 128 -> 10 for the 1,797 8x8 handwritten digits shipped inside funcnet. As in the
example: Adam (lr 1e-3) on ``models.vae_loss``, the binary cross-entropy of the
reconstruction plus the KL divergence of the code from N(0, 1), summed, reported per
image. Training samples the code (the key comes from the TrainState); evaluation uses
its mean. It prints the test loss and the test reconstruction error, and saves
originals, reconstructions and digits decoded from random codes when matplotlib is
installed.

    python examples/vae.py                     # 150 epochs
    python examples/vae.py --out vae.png
    python examples/vae.py --smoke             # a few steps, for CI
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from funcnet import losses, models, nn, optim, train
from funcnet.data import ArrayDataset, DataLoader
from funcnet.data.datasets import load_digits
from funcnet.data.transforms import ToFloat


def loss_per_image(outputs: tuple[jax.Array, ...], x: jax.Array) -> jax.Array:
    """The example's loss (summed over the batch) divided by the batch size."""
    recon, mu, logvar = outputs
    return models.vae_loss(recon, x, mu, logvar) / x.shape[0]


def reconstruction_mse(outputs: tuple[jax.Array, ...], x: jax.Array) -> jax.Array:
    """Mean squared error of the reconstruction alone."""
    return losses.mse_loss(outputs[0], x)


def decode(model: models.VAE, params: dict, z: jax.Array) -> jax.Array:
    """Images (N, 8, 8, 1) decoded from codes (N, latent_dim): the VAE's fc3 and fc4."""
    decoder = nn.Sequential(model.fc3, nn.ReLU(), model.fc4, nn.Sigmoid())
    pixels, _ = decoder.apply({"0": params["fc3"], "2": params["fc4"]}, {}, z)
    return pixels.reshape(-1, 8, 8, 1)


def report_every(n: int) -> train.LambdaCallback:
    """Prints the training loss every ``n`` epochs (the epochs are short)."""

    def show(loop: train.Loop, logs: dict) -> None:
        if (logs["epoch"] + 1) % n == 0:
            print(f"epoch {logs['epoch'] + 1}: train loss {logs['loss']:.3f} per image")

    return train.LambdaCallback(on_epoch_end=show)


def save_rows(rows: list[np.ndarray], titles: list[str], path: str) -> None:
    """Saves rows of (8, 8, 1) images as a PNG, if matplotlib is installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipped the PNG")
        return
    fig, axes = plt.subplots(len(rows), len(rows[0]), figsize=(len(rows[0]), 1.2 * len(rows)))
    for row_axes, images, title in zip(axes, rows, titles):
        row_axes[0].set_title(title, loc="left", fontsize=9)
        for ax, image in zip(row_axes, images):
            ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1)
            ax.axis("off")
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    print(f"{', '.join(titles)} saved to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", default="vae.png", help="PNG of reconstructions and samples")
    parser.add_argument("--smoke", action="store_true", help="a few steps only (CI)")
    args = parser.parse_args()

    to_float = ToFloat(scale=1 / 16)  # the digits' pixels are 0..16 -> [0, 1]
    train_set = ArrayDataset(load_digits("train").arrays[0])  # images only: batches (x,)
    test_images = to_float(load_digits("test").arrays[0])
    train_loader = DataLoader(train_set, args.batch_size, shuffle=True, seed=0, transform=to_float)
    test_loader = DataLoader(ArrayDataset(test_images), 512)
    same = lambda batch: (batch[0], batch[0])  # inputs are their own targets

    model = models.VAE(in_features=8 * 8, hidden_size=128, latent_dim=10)
    state = train.TrainState.create(model, optim.adam(lr=args.lr), jax.random.key(0))
    start = time.perf_counter()
    state, _ = train.fit(
        state,
        train_loader,
        epochs=1 if args.smoke else args.epochs,
        loss_fn=loss_per_image,
        batch_fn=same,
        progress="quiet",
        callbacks=[report_every(25)],
        max_steps=5 if args.smoke else None,
    )
    results = train.evaluate(
        state,
        test_loader,
        loss_fn=loss_per_image,
        metrics={"mse": reconstruction_mse},
        batch_fn=same,
    )
    print(f"trained {int(state.step)} steps in {time.perf_counter() - start:.1f} s")
    print(
        f"test loss {results['loss']:.3f} per image (BCE + KL, codes at their mean); "
        f"test reconstruction MSE {results['mse']:.4f}"
    )

    originals = test_images[:10]
    (reconstructions, _, _), _ = model.apply(state.params, state.model_state, originals)
    z = jax.random.normal(jax.random.key(1), (10, model.latent_dim))
    samples = decode(model, state.params, z)
    rows = [originals, np.asarray(reconstructions), np.asarray(samples)]
    save_rows(rows, ["test images", "reconstructions", "decoded from random codes"], args.out)


if __name__ == "__main__":
    main()
