"""Train a GAN (a generator against a discriminator) on handwritten digits, as the PyTorch
DCGAN tutorial does on faces.

The tutorial's networks, ``models.DCGANGenerator`` and ``models.DCGANDiscriminator``,
at 8x8 pixels and one channel, learn from the 1,797 handwritten digits shipped inside
funcnet (8x8 images scaled to [-1, 1], as the tutorial's ``Normalize((0.5,), (0.5,))``).
As in the tutorial: Adam (lr 2e-4, betas (0.5, 0.999)) for each network, binary
cross-entropy on the discriminator's probabilities, real and fake images in separate
batches (BatchNorm sees one kind at a time), the generator trained to make the
discriminator say "real". It prints the losses, the discriminator's mean output on real
and on generated images (the tutorial's D(x) and D(G(z))), how far the generated
images' mean is from the real images' mean before and after training, and saves a grid
of samples when matplotlib is installed.

    python examples/gan.py                       # about 3,000 steps
    python examples/gan.py --out samples.png     # where the sample grid goes
    python examples/gan.py --smoke               # a few steps, for CI
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from funcnet import losses, models, optim, train
from funcnet.data import DataLoader
from funcnet.data.datasets import load_digits
from funcnet.data.transforms import Compose, Normalize, ToFloat

NZ = 32  # size of the generator's noise vector (the tutorial: 100)


@jax.jit
def train_step(g: train.TrainState, d: train.TrainState, real: jax.Array):
    """One step of the tutorial's loop: update D on real and fake images, then G.

    Args:
        g, d: the generator's and the discriminator's TrainState.
        real: (N, 8, 8, 1) float32 images in [-1, 1].

    Returns:
        The new ``(g, d)`` and a dict of the losses, D(x) and D(G(z)).
    """
    z = jax.random.normal(g.step_key(), (real.shape[0], NZ))
    fake, g_model_state = g.model.apply(g.params, g.model_state, z, train=True)

    def d_loss(params):
        p_real, model_state = d.model.apply(params, d.model_state, real, train=True)
        p_fake, model_state = d.model.apply(
            params, model_state, jax.lax.stop_gradient(fake), train=True
        )
        loss = losses.binary_cross_entropy(p_real, jnp.ones_like(p_real))
        loss += losses.binary_cross_entropy(p_fake, jnp.zeros_like(p_fake))
        return loss, (model_state, jnp.mean(p_real))

    (loss_d, (d_model_state, d_x)), grads = jax.value_and_grad(d_loss, has_aux=True)(d.params)
    d = d.apply_gradients(grads, model_state=d_model_state)

    def g_loss(params):
        fake, _ = g.model.apply(params, g.model_state, z, train=True)
        p_fake, model_state = d.model.apply(d.params, d.model_state, fake, train=True)
        return losses.binary_cross_entropy(p_fake, jnp.ones_like(p_fake)), (
            model_state,
            jnp.mean(p_fake),
        )

    (loss_g, (d_model_state, d_g_z)), grads = jax.value_and_grad(g_loss, has_aux=True)(g.params)
    g = g.apply_gradients(grads, model_state=g_model_state)
    d = d.replace(model_state=d_model_state)
    return g, d, {"loss_d": loss_d, "loss_g": loss_g, "D(x)": d_x, "D(G(z))": d_g_z}


def generate(g: train.TrainState, n: int, seed: int) -> np.ndarray:
    """(n, 8, 8, 1) samples in [-1, 1] from the generator in eval mode."""
    z = jax.random.normal(jax.random.key(seed), (n, NZ))
    fake, _ = g.model.apply(g.params, g.model_state, z)
    return np.asarray(fake)


def save_grid(images: np.ndarray, path: str) -> None:
    """Saves up to 64 images as an 8x8 grid PNG, if matplotlib is installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipped the PNG of samples")
        return
    fig, axes = plt.subplots(8, 8, figsize=(6, 6))
    for ax, image in zip(axes.flat, images[:64]):
        ax.imshow(image[..., 0], cmap="gray", vmin=-1, vmax=1)
        ax.axis("off")
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    print(f"samples saved to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=140)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--out", default="gan_samples.png", help="PNG grid of samples")
    parser.add_argument("--smoke", action="store_true", help="a few steps only (CI)")
    args = parser.parse_args()

    # torchvision's ToTensor() + Normalize((0.5,), (0.5,)): pixels 0..16 -> [-1, 1]
    transform = Compose([ToFloat(scale=1 / 16), Normalize((0.5,), (0.5,))])
    train_set = load_digits("train")
    loader = DataLoader(
        train_set, args.batch_size, shuffle=True, drop_last=True, seed=0, transform=transform
    )
    real_mean = np.asarray(transform(train_set.arrays[0])).mean(axis=0)

    adam = optim.adam(args.lr, betas=(0.5, 0.999))  # the tutorial's optimizer, for both
    generator = models.DCGANGenerator(nz=NZ, ngf=64, nc=1, image_size=8)
    discriminator = models.DCGANDiscriminator(nc=1, ndf=64, image_size=8)
    g = train.TrainState.create(generator, adam, jax.random.key(0))
    d = train.TrainState.create(discriminator, adam, jax.random.key(1))
    distance_before = np.abs(generate(g, 512, 0).mean(axis=0) - real_mean).mean()

    start = time.perf_counter()
    epochs = 1 if args.smoke else args.epochs
    for _ in range(epochs):
        for real, _ in loader:
            g, d, logs = train_step(g, d, real)
            if args.smoke and int(g.step) == 5:
                break
    logs = {k: float(v) for k, v in logs.items()}
    samples = generate(g, 512, 0)
    distance_after = np.abs(samples.mean(axis=0) - real_mean).mean()
    print(f"trained {int(g.step)} steps in {time.perf_counter() - start:.1f} s")
    print(f"final losses: discriminator {logs['loss_d']:.4f}, generator {logs['loss_g']:.4f}")
    print(f"last batch: D(x) {logs['D(x)']:.3f} on real images, D(G(z)) {logs['D(G(z))']:.3f}")
    print(
        f"mean |average generated image - average real image| per pixel: "
        f"{distance_before:.3f} before training, {distance_after:.3f} after"
    )
    save_grid(samples, args.out)


if __name__ == "__main__":
    main()
