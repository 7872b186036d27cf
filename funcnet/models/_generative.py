"""Generative models: DCGAN's generator and discriminator, an MLP autoencoder, a VAE.

The DCGAN networks are those of the PyTorch DCGAN tutorial (``Generator``,
``Discriminator``: a ``main`` Sequential, the tutorial's ``weights_init``), generalised
to any power-of-two image size from 8. ``AutoEncoder`` is the MLP autoencoder of the
tutorials; ``VAE`` is the MLP VAE of PyTorch's ``examples/vae`` with its loss,
:func:`vae_loss`. Images are channels-last, (N, H, W, C).
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

import funcnet.functional as F
from funcnet import losses, nn
from funcnet.errors import ShapeError
from funcnet.models._weights import Pretrainable
from funcnet.nn._module import Params, State

__all__ = ["VAE", "AutoEncoder", "DCGANDiscriminator", "DCGANGenerator", "vae_loss"]

Weights = str | os.PathLike[str] | None


def _dcgan_normal(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    """The tutorial's ``weights_init`` for convolutions: N(0, 0.02)."""
    return nn.init.normal(key, shape, dtype, std=0.02)


def _num_upsamplings(owner: str, image_size: int) -> int:
    """The number of stride-2 layers between 4x4 and ``image_size`` (3 for 64: 4 -> 64)."""
    if image_size < 8 or image_size & (image_size - 1):
        raise ValueError(f"{owner}: image_size must be a power of two >= 8, got {image_size}")
    return int(math.log2(image_size)) - 2


class _DCGAN(Pretrainable):
    """``init`` with the tutorial's ``weights_init``: BatchNorm weights N(1, 0.02), bias 0."""

    main: nn.Sequential

    def init(self, key: jax.Array) -> tuple[Params, State]:
        """Random parameters as the DCGAN tutorial draws them, or the weights file's."""
        params, state = super().init(key)
        if self.weights is not None:
            return params, state
        for name, layer in self.main.named_children():
            if isinstance(layer, nn.BatchNorm2d):
                entry = params["main"][name]
                sub = jax.random.fold_in(key, int(name))
                entry["weight"] = nn.init.normal(
                    sub, entry["weight"].shape, entry["weight"].dtype, mean=1.0, std=0.02
                )
        return params, state


class DCGANGenerator(_DCGAN):
    """The DCGAN generator (Radford et al., 2016) of the PyTorch DCGAN tutorial.

    ``main`` is ConvTranspose2d(nz, ngf·2^(k−1), 4, 1, 0) to 4x4, then k stride-2
    ConvTranspose2d(·, ·, 4, 2, 1) layers halving the channels and doubling the size,
    BatchNorm2d and ReLU after each but the last, Tanh at the end; k = log2(image_size) − 2.
    image_size=64 is the tutorial's network exactly (state-dict keys ``main.0.weight``,
    ``main.1.running_mean``, ...); convolutions have no bias. Initialised as the
    tutorial's ``weights_init``: convolution weights N(0, 0.02), BatchNorm weights
    N(1, 0.02), BatchNorm biases 0.

    Input: noise (N, nz) or (N, 1, 1, nz) (the tutorial's (N, nz, 1, 1), channels-last),
    floating. Output: (N, image_size, image_size, nc) in [-1, 1], the input's dtype.
    Parameters at the defaults (nz=100, ngf=64, nc=3, image_size=64): 3,576,704.

    Args:
        nz: size of the noise vector.
        ngf: channels of the last hidden feature map (64x64 images: ngf·8, ·4, ·2, ·1).
        nc: channels of the generated images.
        image_size: side of the square images, a power of two >= 8.
        weights: optional weights file for ``init`` (see ``Pretrainable``).

    Raises:
        ValueError: image_size is not a power of two >= 8.
    """

    def __init__(
        self,
        nz: int = 100,
        ngf: int = 64,
        nc: int = 3,
        image_size: int = 64,
        *,
        weights: Weights = None,
    ) -> None:
        super().__init__(weights)
        self.nz: int = nz
        self.ngf: int = ngf
        self.nc: int = nc
        self.image_size: int = image_size
        k = _num_upsamplings("DCGANGenerator", image_size)
        width = ngf * 2 ** (k - 1)
        layers: list[nn.Module] = [_up(nz, width, 1, 0), nn.BatchNorm2d(width), nn.ReLU()]
        for _ in range(k - 1):
            layers += [_up(width, width // 2, 2, 1), nn.BatchNorm2d(width // 2), nn.ReLU()]
            width //= 2
        self.main: nn.Sequential = nn.Sequential(*layers, _up(width, nc, 2, 1), nn.Tanh())

    def forward(self, ctx: nn.Context, z: jax.Array) -> jax.Array:
        if z.ndim == 2:
            z = z[:, None, None, :]  # (N, nz) -> (N, 1, 1, nz)
        return self.main(ctx, z)


class DCGANDiscriminator(_DCGAN):
    """The DCGAN discriminator (Radford et al., 2016) of the PyTorch DCGAN tutorial.

    ``main`` is k stride-2 Conv2d(·, ·, 4, 2, 1) layers doubling the channels from ndf
    (BatchNorm2d after each but the first, LeakyReLU(0.2) after each) down to 4x4, then
    Conv2d(ndf·2^(k−1), 1, 4, 1, 0) and Sigmoid; k = log2(image_size) − 2. image_size=64
    is the tutorial's network exactly; convolutions have no bias; initialised as
    :class:`DCGANGenerator`.

    Input: images (N, image_size, image_size, nc), floating (the tutorial's in [-1, 1]).
    Output: (N,) probabilities that each image is real, as the tutorial's
    ``netD(x).view(-1)``, to train with ``losses.binary_cross_entropy`` (PyTorch's
    BCELoss). Parameters at the defaults (nc=3, ndf=64, image_size=64): 2,765,568.

    Args:
        nc: channels of the images.
        ndf: channels of the first feature map (64x64 images: ndf·1, ·2, ·4, ·8).
        image_size: side of the square images, a power of two >= 8.
        weights: optional weights file for ``init`` (see ``Pretrainable``).

    Raises:
        ValueError: image_size is not a power of two >= 8.
    """

    def __init__(
        self, nc: int = 3, ndf: int = 64, image_size: int = 64, *, weights: Weights = None
    ) -> None:
        super().__init__(weights)
        self.nc: int = nc
        self.ndf: int = ndf
        self.image_size: int = image_size
        k = _num_upsamplings("DCGANDiscriminator", image_size)
        layers: list[Any] = [_down(nc, ndf, 2, 1), nn.LeakyReLU(0.2)]
        width = ndf
        for _ in range(k - 1):
            layers += [_down(width, width * 2, 2, 1), nn.BatchNorm2d(width * 2), nn.LeakyReLU(0.2)]
            width *= 2
        self.main: nn.Sequential = nn.Sequential(*layers, _down(width, 1, 1, 0), nn.Sigmoid())

    def forward(self, ctx: nn.Context, x: jax.Array) -> jax.Array:
        return self.main(ctx, x).reshape(-1)  # (N, 1, 1, 1) -> (N,)


def _up(c_in: int, c_out: int, stride: int, padding: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(
        c_in, c_out, 4, stride, padding, bias=False, weight_init=_dcgan_normal
    )


def _down(c_in: int, c_out: int, stride: int, padding: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 4, stride, padding, bias=False, weight_init=_dcgan_normal)


def _mlp(sizes: Sequence[int], last: Any = None) -> nn.Sequential:
    """Linear layers through ``sizes`` with ReLU between them, then ``last`` if given."""
    layers: list[Any] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers, *([last] if last is not None else []))


def _flat(owner: str, x: jax.Array, in_features: int) -> jax.Array:
    """(N, H, W, C) or (N, F) -> (N, in_features), naming ``owner`` on a mismatch."""
    flat = x.reshape(x.shape[0], -1) if x.ndim > 1 else x
    if x.ndim < 2 or flat.shape[1] != in_features:
        raise ShapeError(
            f"{owner}: expected input (N, {in_features}) or (N, H, W, C) with "
            f"H·W·C = {in_features}, got shape {tuple(x.shape)}"
        )
    return flat


class AutoEncoder(Pretrainable):
    """An MLP autoencoder, as the PyTorch tutorials write it.

    ``encoder``: Linear(in_features, h1), ReLU, ..., Linear(h_last, latent_dim) (no
    activation on the code); ``decoder``: the mirror image, Linear(latent_dim, h_last),
    ReLU, ..., Linear(h1, in_features), Sigmoid. Images are flattened in (H, W, C) order,
    which is PyTorch's ``x.view(N, -1)`` order when C = 1 (MNIST).

    Input: (N, H, W, C) or (N, in_features), floating, in [0, 1]. Output: the
    reconstruction, the input's shape, in (0, 1). :meth:`encode` gives the
    (N, latent_dim) code inside a forward; from outside, ``model.encoder.apply(
    params["encoder"], {}, x.reshape(N, -1))``. Parameters at the defaults
    (784, (128, 64), 32): 222,384.

    Args:
        in_features: H·W·C of the input (784 for MNIST).
        hidden_sizes: widths of the encoder's hidden layers (the decoder's, reversed).
        latent_dim: size of the code.
        weights: optional weights file for ``init`` (see ``Pretrainable``).
    """

    def __init__(
        self,
        in_features: int = 784,
        hidden_sizes: Sequence[int] = (128, 64),
        latent_dim: int = 32,
        *,
        weights: Weights = None,
    ) -> None:
        super().__init__(weights)
        self.in_features: int = in_features
        self.latent_dim: int = latent_dim
        self.hidden_sizes: tuple[int, ...] = tuple(hidden_sizes)
        sizes = (in_features, *self.hidden_sizes, latent_dim)
        self.encoder: nn.Sequential = _mlp(sizes)
        self.decoder: nn.Sequential = _mlp(sizes[::-1], nn.Sigmoid())

    def encode(self, ctx: nn.Context, x: jax.Array) -> jax.Array:
        """The code (N, latent_dim) of images (N, H, W, C) or rows (N, in_features)."""
        return self.encoder(ctx, _flat(f"{ctx.path} (AutoEncoder)", x, self.in_features))

    def forward(self, ctx: nn.Context, x: jax.Array) -> jax.Array:
        return self.decoder(ctx, self.encode(ctx, x)).reshape(x.shape)


class VAE(Pretrainable):
    """Kingma & Welling's variational autoencoder, as PyTorch's ``examples/vae``.

    ``fc1`` (in_features -> hidden_size) and ReLU, then ``fc21`` (mean) and ``fc22`` (log
    variance) of the latent Gaussian; ``fc3`` (latent_dim -> hidden_size), ReLU, ``fc4``
    (-> in_features) and sigmoid decode. The same state-dict keys as the PyTorch
    example. In train mode the code is sampled, ``z = mu + eps·exp(logvar / 2)`` with
    ``eps`` drawn from ``ctx.next_key()`` (``apply`` needs ``key=``); in eval mode
    ``z = mu``, so evaluation is deterministic (the PyTorch example samples in both).

    Input: (N, H, W, C) or (N, in_features), floating, in [0, 1] (flattened in
    (H, W, C) order, PyTorch's when C = 1). Output: ``(reconstruction, mu, logvar)``:
    the reconstruction in the input's shape, in (0, 1); ``mu`` and ``logvar``
    (N, latent_dim). Train with :func:`vae_loss`. Parameters at the defaults
    (784, 400, 20): 652,824.

    Args:
        in_features: H·W·C of the input (784 for MNIST).
        hidden_size: width of the hidden layers.
        latent_dim: size of the latent code.
        weights: optional weights file for ``init`` (see ``Pretrainable``).

    References:
        Kingma & Welling, "Auto-Encoding Variational Bayes", 2014.
    """

    def __init__(
        self,
        in_features: int = 784,
        hidden_size: int = 400,
        latent_dim: int = 20,
        *,
        weights: Weights = None,
    ) -> None:
        super().__init__(weights)
        self.in_features: int = in_features
        self.hidden_size: int = hidden_size
        self.latent_dim: int = latent_dim
        self.fc1: nn.Linear = nn.Linear(in_features, hidden_size)
        self.fc21: nn.Linear = nn.Linear(hidden_size, latent_dim)
        self.fc22: nn.Linear = nn.Linear(hidden_size, latent_dim)
        self.fc3: nn.Linear = nn.Linear(latent_dim, hidden_size)
        self.fc4: nn.Linear = nn.Linear(hidden_size, in_features)

    def encode(self, ctx: nn.Context, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(mu, logvar)``, each (N, latent_dim), of the input (N, H, W, C) or (N, F)."""
        h = F.relu(self.fc1(ctx, _flat(f"{ctx.path} (VAE)", x, self.in_features)))
        return self.fc21(ctx, h), self.fc22(ctx, h)

    def reparameterize(self, ctx: nn.Context, mu: jax.Array, logvar: jax.Array) -> jax.Array:
        """A sample ``mu + eps·std`` in train mode, ``mu`` in eval mode; (N, latent_dim)."""
        if not ctx.train:
            return mu
        eps = jax.random.normal(ctx.next_key(), mu.shape, mu.dtype)
        return mu + eps * jnp.exp(0.5 * logvar)

    def decode(self, ctx: nn.Context, z: jax.Array) -> jax.Array:
        """Pixel probabilities (N, in_features) of codes (N, latent_dim)."""
        return jax.nn.sigmoid(self.fc4(ctx, F.relu(self.fc3(ctx, z))))

    def forward(self, ctx: nn.Context, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        mu, logvar = self.encode(ctx, x)
        recon = self.decode(ctx, self.reparameterize(ctx, mu, logvar))
        return recon.reshape(x.shape), mu, logvar


def vae_loss(recon: jax.Array, x: jax.Array, mu: jax.Array, logvar: jax.Array) -> jax.Array:
    """The VAE's negative ELBO, summed over the batch, as PyTorch's ``examples/vae``.

    ``binary_cross_entropy(recon, x, reduction="sum")`` plus the KL divergence of
    N(mu, exp(logvar)) from N(0, 1), ``-0.5·sum(1 + logvar − mu² − exp(logvar))``.
    Divide by N for a per-example value.

    Args:
        recon: reconstructions in [0, 1], any shape with x's number of elements.
        x: the inputs in [0, 1], e.g. (N, H, W, C) or (N, F).
        mu: (N, latent_dim) means.
        logvar: (N, latent_dim) log variances.

    Returns:
        A float32 scalar.
    """
    bce = losses.binary_cross_entropy(recon, jnp.reshape(x, jnp.shape(recon)), reduction="sum")
    kld = -0.5 * jnp.sum(1.0 + logvar - mu**2 - jnp.exp(logvar))
    return bce + kld
