"""DCGAN, AutoEncoder, VAE and the multi-task models of funcnet.models.

References: the DCGAN tutorial's published parameter counts, parameter counts written
out layer by layer, NumPy, and PyTorch modules written here as the DCGAN tutorial and
PyTorch's examples/vae write them.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnet import models, nn
from funcnet.errors import ShapeError
from funcnet.models import (
    VAE,
    AutoEncoder,
    DCGANDiscriminator,
    DCGANGenerator,
    MultiTask,
    MultiTaskNet,
    save_weights,
    vae_loss,
)


def count(model: nn.Module) -> int:
    params, _ = jax.eval_shape(model.init, jax.random.key(0))
    return nn.num_parameters(params)


def linear_count(*sizes: int) -> int:
    return sum(a * b + b for a, b in itertools.pairwise(sizes))


# ---------------------------------------------------------------- parameter counts
def test_dcgan_parameter_counts_are_the_tutorials():
    assert count(DCGANGenerator()) == 3_576_704
    assert count(DCGANDiscriminator()) == 2_765_568


def test_mlp_parameter_counts():
    # PyTorch's examples/vae: fc1 784->400, fc21 and fc22 400->20, fc3 20->400, fc4 400->784
    vae = linear_count(784, 400) + 2 * linear_count(400, 20) + linear_count(20, 400, 784)
    assert count(VAE()) == vae == 652_824
    assert count(AutoEncoder()) == 2 * linear_count(784, 128, 64, 32) + 784 - 32 == 222_384
    heads = linear_count(64, 10) + linear_count(64, 2)
    assert (
        count(MultiTaskNet(64, (128, 64), {"d": 10, "p": 2})) == linear_count(64, 128, 64) + heads
    )


def random_params(model: nn.Module, seed: int = 0):
    """NumPy-random parameters and init's state, without compiling ``model.init``."""
    params, state = jax.eval_shape(model.init, jax.random.key(0))
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda s: rng.normal(0, 0.3, s.shape).astype(s.dtype), params)
    state = jax.tree_util.tree_map_with_path(
        lambda path, s: (np.ones if path[-1].key == "running_var" else np.zeros)(s.shape, s.dtype),
        state,
    )
    return params, state


# ---------------------------------------------------------------- DCGAN
@pytest.mark.parametrize("size", [8, 16, 32, 64])
def test_dcgan_shapes_and_ranges_under_jit(size):
    g = DCGANGenerator(nz=8, ngf=4, nc=2, image_size=size)
    d = DCGANDiscriminator(nc=2, ndf=4, image_size=size)
    (gp, gs), (dp, ds) = random_params(g, 0), random_params(d, 1)

    @jax.jit
    def run(z):
        fake, new_gs = g.apply(gp, gs, z, train=True)
        prob, _ = d.apply(dp, ds, fake, train=True)
        eval_flat, _ = g.apply(gp, gs, z)
        eval_image, _ = g.apply(gp, gs, z.reshape(-1, 1, 1, 8))  # the tutorial's layout
        return fake, prob, new_gs, eval_flat, eval_image

    z = np.random.default_rng(2).standard_normal((3, 8)).astype(np.float32)
    fake, prob, new_gs, eval_flat, eval_image = run(z)
    assert fake.shape == eval_flat.shape == (3, size, size, 2) and prob.shape == (3,)
    assert np.all(np.abs(fake) <= 1) and np.all((prob > 0) & (prob < 1))
    assert int(new_gs["main"]["1"]["num_batches_tracked"]) == 1
    assert not np.allclose(eval_flat, fake)  # eval mode uses the running statistics
    np.testing.assert_array_equal(eval_flat, eval_image)


def test_dcgan_init_is_the_tutorials_weights_init():
    params, state = jax.jit(DCGANGenerator(ngf=32, image_size=16).init)(jax.random.key(0))
    main = params["main"]
    conv = np.asarray(main["0"]["weight"])  # ConvTranspose2d(100, 64): 102,400 values
    assert abs(conv.mean()) < 2e-4 and abs(conv.std() - 0.02) < 4e-4
    bn = np.concatenate([np.asarray(main[i]["weight"]) for i in ("1", "4")])  # 96 values
    assert abs(bn.mean() - 1) < 6e-3 and abs(bn.std() - 0.02) < 5e-3
    assert all(not np.any(main[i]["bias"]) for i in ("1", "4"))
    assert "bias" not in main["0"] and not np.any(state["main"]["1"]["running_mean"])


@pytest.mark.parametrize("size", [4, 12, 0])
def test_dcgan_rejects_other_sizes(size):
    with pytest.raises(ValueError, match="power of two >= 8"):
        DCGANGenerator(image_size=size)
    with pytest.raises(ValueError, match="power of two >= 8"):
        DCGANDiscriminator(image_size=size)


def test_weights_file_gives_its_values(tmp_path):
    d = DCGANDiscriminator(nc=1, ndf=4, image_size=8)
    params, state = random_params(d)
    path = save_weights(tmp_path / "d.safetensors", params, state)
    loaded = DCGANDiscriminator(nc=1, ndf=4, image_size=8, weights=path).init(jax.random.key(0))
    jax.tree.map(np.testing.assert_array_equal, loaded, (params, state))


# ---------------------------------------------------------------- AutoEncoder and VAE
class _Code(AutoEncoder):
    def forward(self, ctx, x):
        return self.encode(ctx, x)


def test_autoencoder_shapes_and_encode():
    ae = AutoEncoder(64, (32,), 8)
    params, state = random_params(ae)

    @jax.jit
    def run(x):
        rows = x.reshape(5, 64)
        code = _Code(64, (32,), 8).apply(params, state, x)[0]
        outside = ae.encoder.apply(params["encoder"], {}, rows)[0]
        decoded = ae.decoder.apply(params["decoder"], {}, code)[0]
        return (
            ae.apply(params, state, x)[0],
            ae.apply(params, state, rows)[0],
            code,
            outside,
            decoded,
        )

    x = np.random.default_rng(1).uniform(0, 1, (5, 8, 8, 1)).astype(np.float32)
    y, y_rows, code, outside, decoded = run(x)
    assert y.shape == x.shape and y_rows.shape == (5, 64) and code.shape == (5, 8)
    assert np.all((y > 0) & (y < 1))
    np.testing.assert_array_equal(y_rows, y.reshape(5, 64))
    np.testing.assert_array_equal(code, outside)
    np.testing.assert_allclose(decoded, y_rows, rtol=1e-6)
    with pytest.raises(ShapeError, match=r"AutoEncoder\): expected input \(N, 64\)"):
        jax.eval_shape(lambda x: ae.apply(params, state, x), jnp.ones((5, 7, 7, 1)))


def test_vae_shapes_modes_and_keys():
    vae = VAE(64, 32, 4)
    params, state = random_params(vae)
    x = np.random.default_rng(1).uniform(0, 1, (6, 8, 8, 1)).astype(np.float32)
    sure = {**params, "fc22": {"weight": np.zeros((32, 4)), "bias": np.full(4, -80.0)}}

    @jax.jit
    def run(params, key):
        return vae.apply(params, state, x)[0], vae.apply(params, state, x, train=True, key=key)[0]

    (recon, mu, logvar), (a, *_) = run(params, jax.random.key(2))
    (again, *_), (b, *_) = run(params, jax.random.key(2))
    _, (c, *_) = run(params, jax.random.key(3))
    assert recon.shape == x.shape and mu.shape == logvar.shape == (6, 4)
    np.testing.assert_array_equal(recon, again)  # eval mode: z = mu, deterministic
    np.testing.assert_array_equal(a, b)  # train mode: the key decides the sample
    assert not np.allclose(a, c) and not np.allclose(a, recon)
    # With logvar -> -inf the sample is the mean: train mode equals eval mode.
    (recon, *_), (a, *_) = run(sure, jax.random.key(2))
    np.testing.assert_allclose(a, recon, atol=1e-6)


def test_vae_loss_matches_numpy():
    rng = np.random.default_rng(0)
    recon = rng.uniform(0, 1, (4, 8, 8, 1)).astype(np.float32)
    recon[0, 0, 0, 0] = 0.0  # PyTorch clamps log(0) at -100
    x = rng.uniform(0, 1, (4, 64)).astype(np.float32)
    mu, logvar = rng.standard_normal((2, 4, 3)).astype(np.float32)
    r, t = recon.reshape(4, 64).astype(np.float64), x.astype(np.float64)
    with np.errstate(divide="ignore"):
        bce = -np.sum(t * np.maximum(np.log(r), -100) + (1 - t) * np.log1p(-r))
    kld = -0.5 * np.sum(1 + logvar - mu**2 - np.exp(logvar))
    got = vae_loss(jnp.asarray(recon), jnp.asarray(x), jnp.asarray(mu), jnp.asarray(logvar))
    np.testing.assert_allclose(float(got), bce + kld, rtol=1e-5)


# ---------------------------------------------------------------- multi-task
def test_multitask_net_heads_match_numpy():
    model = MultiTaskNet(64, (16, 8), {"digit": 10, "parity": 2}, dropout=0.5)
    params, state = random_params(model)
    x = np.random.default_rng(0).uniform(0, 1, (5, 8, 8, 1)).astype(np.float32)
    run = jax.jit(
        lambda x, key: (
            model.apply(params, state, x)[0],
            model.apply(params, state, x, train=True, key=key)[0],
        )
    )
    out, dropped = run(x, jax.random.key(1))
    assert list(out) == ["digit", "parity"]
    sd = {k: np.asarray(v, np.float64) for k, v in nn.state_dict(params).items()}
    h = np.maximum(x.reshape(5, 64) @ sd["trunk.1.weight"] + sd["trunk.1.bias"], 0)
    h = np.maximum(h @ sd["trunk.4.weight"] + sd["trunk.4.bias"], 0)
    for name, n in (("digit", 10), ("parity", 2)):
        want = h @ sd[f"heads.{name}.weight"] + sd[f"heads.{name}.bias"]
        assert out[name].shape == dropped[name].shape == (5, n)
        np.testing.assert_allclose(out[name], want, rtol=1e-5, atol=1e-5)
        assert not np.allclose(dropped[name], out[name])  # dropout in train mode


def test_multitask_runs_any_trunk_and_heads():
    trunk = nn.Sequential(nn.Linear(6, 4), nn.Tanh())
    heads = {"score": nn.Linear(4, 1), "mlp": nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))}
    model = MultiTask(trunk, heads)
    params, state = random_params(model)

    @jax.jit
    def run(x):
        features = trunk.apply(params["trunk"], {}, x)[0]
        each = {k: h.apply(params["heads"][k], {}, features)[0] for k, h in heads.items()}
        return model.apply(params, state, x)[0], each

    out, each = run(np.ones((3, 6), np.float32))
    jax.tree.map(np.testing.assert_array_equal, out, each)
    with pytest.raises(ValueError, match="at least one head"):
        MultiTask(trunk, {})


# ---------------------------------------------------------------- PyTorch parity
def _torch_dcgan(torch, nz, ngf, ndf, nc, size):
    """The DCGAN tutorial's Generator and Discriminator (64x64), or with the middle
    blocks removed for 16x16."""
    tnn = torch.nn
    if size == 64:
        gen = [
            tnn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
            tnn.BatchNorm2d(ngf * 8),
            tnn.ReLU(True),
            tnn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
            tnn.BatchNorm2d(ngf * 4),
            tnn.ReLU(True),
            tnn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
            tnn.BatchNorm2d(ngf * 2),
            tnn.ReLU(True),
            tnn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
            tnn.BatchNorm2d(ngf),
            tnn.ReLU(True),
            tnn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
            tnn.Tanh(),
        ]
        disc = [
            tnn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
            tnn.LeakyReLU(0.2, inplace=True),
            tnn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
            tnn.BatchNorm2d(ndf * 2),
            tnn.LeakyReLU(0.2, inplace=True),
            tnn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),
            tnn.BatchNorm2d(ndf * 4),
            tnn.LeakyReLU(0.2, inplace=True),
            tnn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),
            tnn.BatchNorm2d(ndf * 8),
            tnn.LeakyReLU(0.2, inplace=True),
            tnn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
            tnn.Sigmoid(),
        ]
    else:
        gen = [
            tnn.ConvTranspose2d(nz, ngf * 2, 4, 1, 0, bias=False),
            tnn.BatchNorm2d(ngf * 2),
            tnn.ReLU(True),
            tnn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
            tnn.BatchNorm2d(ngf),
            tnn.ReLU(True),
            tnn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
            tnn.Tanh(),
        ]
        disc = [
            tnn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
            tnn.LeakyReLU(0.2, inplace=True),
            tnn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
            tnn.BatchNorm2d(ndf * 2),
            tnn.LeakyReLU(0.2, inplace=True),
            tnn.Conv2d(ndf * 2, 1, 4, 1, 0, bias=False),
            tnn.Sigmoid(),
        ]

    class Generator(tnn.Module):
        def __init__(self):
            super().__init__()
            self.main = tnn.Sequential(*gen)

        def forward(self, x):
            return self.main(x)

    class Discriminator(tnn.Module):
        def __init__(self):
            super().__init__()
            self.main = tnn.Sequential(*disc)

        def forward(self, x):
            return self.main(x)

    return Generator(), Discriminator()


def _randomise(torch, module):
    """The tutorial's weights_init, then random BatchNorm statistics; eval mode."""
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.normal_(m.weight, 1.0, 0.2)
            torch.nn.init.normal_(m.bias, 0.0, 0.2)
            m.running_mean.normal_(0.0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
        elif "Conv" in type(m).__name__:
            torch.nn.init.normal_(m.weight, 0.0, 0.1)
    return module.eval()


def _run_dcgan(g, d, gp, gs, dp, ds, z):
    fake, _ = g.apply(gp, gs, z)
    return fake, d.apply(dp, ds, fake)[0]


@pytest.mark.torch
@pytest.mark.one_version
@pytest.mark.parametrize("size", [16, 64])
def test_dcgan_matches_the_pytorch_tutorial(size):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    nz, ngf, ndf, nc = 16, 8, 8, 3
    tg, td = (_randomise(torch, m) for m in _torch_dcgan(torch, nz, ngf, ndf, nc, size))
    g = DCGANGenerator(nz, ngf, nc, image_size=size)
    d = DCGANDiscriminator(nc, ndf, image_size=size)
    gp, gs = models.from_torch(g, tg.state_dict())
    dp, ds = models.from_torch(d, td.state_dict())
    z = np.random.default_rng(0).standard_normal((4, nz)).astype(np.float32)
    fake, prob = jax.jit(lambda z: _run_dcgan(g, d, gp, gs, dp, ds, z))(z)
    with torch.no_grad():
        want_fake = tg(torch.from_numpy(z).view(4, nz, 1, 1))
        want_prob = td(want_fake).view(-1)
    # float32 end to end; 1e-5 is ~100 ulps of values in [-1, 1]
    np.testing.assert_allclose(fake, want_fake.permute(0, 2, 3, 1).numpy(), atol=1e-5)
    np.testing.assert_allclose(prob, want_prob.numpy(), atol=1e-5)


@pytest.mark.torch
@pytest.mark.one_version
def test_vae_matches_pytorch_examples_vae():
    torch = pytest.importorskip("torch")
    tnn, tF = torch.nn, torch.nn.functional

    class TorchVAE(tnn.Module):  # PyTorch's examples/vae/main.py
        def __init__(self):
            super().__init__()
            self.fc1 = tnn.Linear(784, 400)
            self.fc21 = tnn.Linear(400, 20)
            self.fc22 = tnn.Linear(400, 20)
            self.fc3 = tnn.Linear(20, 400)
            self.fc4 = tnn.Linear(400, 784)

        def encode(self, x):
            h1 = tF.relu(self.fc1(x))
            return self.fc21(h1), self.fc22(h1)

        def decode(self, z):
            h3 = tF.relu(self.fc3(z))
            return torch.sigmoid(self.fc4(h3))

    def loss_function(recon_x, x, mu, logvar):
        bce = tF.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        return bce + kld

    torch.manual_seed(0)
    tvae = TorchVAE().eval()
    vae = VAE()
    params, state = models.from_torch(vae, tvae.state_dict())
    x = np.random.default_rng(1).uniform(0, 1, (3, 28, 28, 1)).astype(np.float32)
    (recon, mu, logvar), _ = jax.jit(vae.apply)(params, state, x)
    with torch.no_grad():
        tmu, tlogvar = tvae.encode(torch.from_numpy(x).view(-1, 784))
        trecon = tvae.decode(tmu)  # eval mode decodes the mean
        tloss = loss_function(trecon, torch.from_numpy(x), tmu, tlogvar)
    np.testing.assert_allclose(mu, tmu.numpy(), atol=1e-5)
    np.testing.assert_allclose(logvar, tlogvar.numpy(), atol=1e-5)
    np.testing.assert_allclose(recon.reshape(3, 784), trecon.numpy(), atol=1e-5)
    np.testing.assert_allclose(vae_loss(recon, x, mu, logvar), tloss.item(), rtol=1e-5)


@pytest.mark.torch
@pytest.mark.one_version
def test_multitask_loads_a_pytorch_state_dict():
    torch = pytest.importorskip("torch")
    tnn = torch.nn

    class TorchMultiTask(tnn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = tnn.Sequential(tnn.Flatten(), tnn.Linear(64, 16), tnn.ReLU())
            self.heads = tnn.ModuleDict({"digit": tnn.Linear(16, 10), "parity": tnn.Linear(16, 2)})

        def forward(self, x):
            h = self.trunk(x)
            return {name: head(h) for name, head in self.heads.items()}

    torch.manual_seed(0)
    tm = TorchMultiTask()
    model = MultiTaskNet(64, (16,), {"digit": 10, "parity": 2})
    params, state = models.from_torch(model, tm.state_dict())
    x = np.random.default_rng(0).uniform(0, 1, (4, 8, 8, 1)).astype(np.float32)
    out, _ = jax.jit(model.apply)(params, state, x)
    with torch.no_grad():
        want = tm(torch.from_numpy(x).permute(0, 3, 1, 2))  # C = 1: same flatten order
    for name in ("digit", "parity"):
        np.testing.assert_allclose(out[name], want[name].numpy(), atol=1e-5)


@pytest.mark.torch
@pytest.mark.one_version
def test_autoencoder_matches_a_pytorch_autoencoder():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tnn = torch.nn

    class TorchAutoEncoder(tnn.Module):  # the tutorials' MLP autoencoder
        def __init__(self):
            super().__init__()
            self.encoder = tnn.Sequential(
                tnn.Linear(64, 32), tnn.ReLU(), tnn.Linear(32, 16), tnn.ReLU(), tnn.Linear(16, 8)
            )
            self.decoder = tnn.Sequential(
                tnn.Linear(8, 16), tnn.ReLU(), tnn.Linear(16, 32), tnn.ReLU(),
                tnn.Linear(32, 64), tnn.Sigmoid(),
            )  # fmt: skip

        def forward(self, x):
            return self.decoder(self.encoder(x.view(x.shape[0], -1))).view(x.shape)

    reference = TorchAutoEncoder().eval()
    model = AutoEncoder(64, (32, 16), 8)
    params, state = models.from_torch(model, reference.state_dict())
    x = np.random.default_rng(0).uniform(0, 1, (4, 8, 8, 1)).astype(np.float32)
    got, _ = model.apply(params, state, x)
    with torch.no_grad():
        want = reference(torch.from_numpy(x)).numpy()  # one channel: NHWC and NCHW agree
    np.testing.assert_allclose(got, want, atol=1e-6)  # sigmoid outputs in (0, 1), float32
