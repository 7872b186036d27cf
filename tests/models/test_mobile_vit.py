"""MobileNetV2 and the Vision Transformer of the zoo.

Parameter counts against torchvision's published ones (MobileNetV2 3,504,872) and
DeiT/timm's ViT-Tiny (5,717,416); outputs against PyTorch models written here with
torchvision's module structure and key names, loaded through each module's
``convert_torch``. MobileNetV2's parameters come from ``eval_shape`` filled with NumPy
values where its initialisation is not under test (its eager ``init`` is 52 layers of
small compilations); its initialisation is checked on its own sub-modules.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnet import models, nn
from funcnet.errors import ShapeError, StateDictError
from funcnet.models import VisionTransformer, _mobilenet, mobilenet_v2, save_weights, vit_tiny

# A small ViT: 32x32 images in 8x8 patches (17 tokens), 2 blocks of width 48.
SMALL_VIT = {
    "image_size": 32,
    "patch_size": 8,
    "num_layers": 2,
    "num_heads": 3,
    "hidden_dim": 48,
    "mlp_dim": 96,
    "num_classes": 10,
}

# torchvision's inverted_residual_setting (t, c, n, s), written out for the reference model
TORCHVISION_SETTING = [
    [1, 16, 1, 1],
    [6, 24, 2, 2],
    [6, 32, 3, 2],
    [6, 64, 4, 2],
    [6, 96, 3, 1],
    [6, 160, 3, 2],
    [6, 320, 1, 1],
]


def _count(model):
    return nn.num_parameters(jax.eval_shape(model.init, jax.random.key(0))[0])


def _images(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def _filled(model, seed=0):
    """``(params, state)`` of ``model``'s shapes with random values (BatchNorm variances
    positive), without running its ``init``."""
    rng = np.random.default_rng(seed)
    params, state = jax.eval_shape(model.init, jax.random.key(0))
    flat = {k: 0.1 * rng.standard_normal(v.shape) for k, v in nn.state_dict(params).items()}
    for name, spec in nn.state_dict(state).items():
        flat[name] = np.zeros(spec.shape) if spec.ndim == 0 else rng.uniform(0.5, 1.5, spec.shape)
    return nn.load_state_dict(model, flat)


def _forward(model):
    """``model``'s jitted forward in eval mode and in training mode (one compilation):
    ``(params, state, x, key) -> (eval output, train output, train state)``."""

    def run(params, state, x, key):
        y_eval, _ = model.apply(params, state, x)
        y_train, new_state = model.apply(params, state, x, train=True, key=key)
        return y_eval, y_train, new_state

    return jax.jit(run)


# One model of each and its compiled forward, shared by the tests below.
MOBILENET = mobilenet_v2(num_classes=10)
MOBILENET_FORWARD = _forward(MOBILENET)
VIT = VisionTransformer(**SMALL_VIT, dropout=0.1)
VIT_FORWARD = _forward(VIT)


# ------------------------------------------------------------------ parameter counts
def test_mobilenet_v2_parameter_count():
    # torchvision's mobilenet_v2: 3,504,872 parameters.
    assert _count(mobilenet_v2()) == 3_504_872


def test_vit_tiny_parameter_count():
    # DeiT-Tiny / timm vit_tiny_patch16_224: 5,717,416 parameters.
    assert _count(vit_tiny()) == 5_717_416


def test_mobilenet_v2_channels_follow_make_divisible():
    # torchvision's _make_divisible: 32 * 0.5 = 16; 1280 is not scaled below width 1.
    model = mobilenet_v2(num_classes=10, width_mult=0.5)
    params, _ = jax.eval_shape(model.init, jax.random.key(0))
    flat = nn.state_dict(params)
    assert flat["features.0.0.weight"].shape == (3, 3, 3, 16)
    assert flat["features.1.conv.1.weight"].shape == (1, 1, 16, 8)  # 16 * 0.5 = 8
    assert flat["features.18.0.weight"].shape == (1, 1, 160, 1280)  # 320 * 0.5 = 160
    assert flat["classifier.1.weight"].shape == (1280, 10)
    assert [_mobilenet._make_divisible(v, 8) for v in (8.4, 12.0, 20.0, 36.0)] == [8, 16, 24, 40]


# ------------------------------------------------------------------ initialisation
def test_mobilenet_v2_init_is_torchvisions():
    block = MOBILENET.features[2]  # expansion 6, 16 -> 24 channels, stride 2
    params, state = block.init(jax.random.key(0))
    expand = np.asarray(params["conv"]["0"]["0"]["weight"])  # (1, 1, 16, 96)
    depthwise = np.asarray(params["conv"]["1"]["0"]["weight"])  # (3, 3, 1, 96)
    # He-normal over fan_out: std sqrt(2 / (C_out * kh * kw)).
    assert expand.std() == pytest.approx(math.sqrt(2 / 96), rel=0.1)
    assert depthwise.std() == pytest.approx(math.sqrt(2 / (96 * 9)), rel=0.15)
    np.testing.assert_array_equal(params["conv"]["0"]["1"]["weight"], np.ones(96))
    np.testing.assert_array_equal(state["conv"]["3"]["running_var"], np.ones(24))
    head, _ = MOBILENET.classifier.init(jax.random.key(1))
    assert np.asarray(head["1"]["weight"]).std() == pytest.approx(0.01, rel=0.1)
    np.testing.assert_array_equal(head["1"]["bias"], np.zeros(10))


def test_vit_init_is_torchvisions():
    params, _ = VIT.init(jax.random.key(0))
    np.testing.assert_array_equal(params["class_token"], np.zeros((1, 1, 48)))
    assert params["encoder"]["pos_embedding"].shape == (1, 17, 48)
    assert np.asarray(params["encoder"]["pos_embedding"]).std() == pytest.approx(0.02, rel=0.15)
    patch = np.asarray(params["conv_proj"]["weight"])  # (8, 8, 3, 48), fan_in 192
    assert patch.std() == pytest.approx(math.sqrt(1 / 192), rel=0.1)
    np.testing.assert_array_equal(params["heads"]["head"]["weight"], np.zeros((48, 10)))
    mlp = params["encoder"]["layers"]["encoder_layer_0"]["mlp"]["0"]
    bound = math.sqrt(6 / (48 + 96))  # Xavier-uniform
    assert np.abs(np.asarray(mlp["weight"])).max() <= bound
    assert np.abs(np.asarray(mlp["bias"])).max() < 1e-5


# ------------------------------------------------------------------ forward
def test_mobilenet_v2_forward_jit_and_train():
    params, state = _filled(MOBILENET)
    x = _images((2, 32, 32, 3))
    y_eval, y_train, new_state = MOBILENET_FORWARD(params, state, x, jax.random.key(1))
    assert y_eval.shape == y_train.shape == (2, 10)
    assert y_eval.dtype == jnp.float32
    assert np.all(np.isfinite(y_eval)) and np.all(np.isfinite(y_train))
    assert not np.allclose(y_eval, y_train)  # batch statistics and dropout
    assert not np.allclose(new_state["features"]["0"]["1"]["running_mean"], 0.0)
    assert int(new_state["features"]["0"]["1"]["num_batches_tracked"]) == 1


def test_vit_forward_jit_and_train():
    params, state = VIT.init(jax.random.key(0))
    assert state == {}
    x = _images((2, 32, 32, 3))
    y_eval, y_train, _ = VIT_FORWARD(params, state, x, jax.random.key(1))
    assert y_eval.shape == y_train.shape == (2, 10)
    np.testing.assert_array_equal(y_eval, np.zeros((2, 10)))  # torchvision's zero head
    params["heads"]["head"]["weight"] = jnp.ones((48, 10))
    y_eval, y_train, _ = VIT_FORWARD(params, state, x, jax.random.key(1))
    assert not np.allclose(y_eval, y_train)  # dropout


def test_vit_rejects_other_image_sizes():
    params, state = jax.eval_shape(VIT.init, jax.random.key(0))
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    with pytest.raises(ShapeError, match=r"expected 32x32 images"):
        jax.eval_shape(VIT.apply, params, state, x)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        VisionTransformer(30, 8, 1, 1, 8, 8)


def test_vit_weights_file(tmp_path):
    model = VIT
    params, state = model.init(jax.random.key(3))
    path = save_weights(tmp_path / "vit.safetensors", params, state)
    loaded, _ = VisionTransformer(**SMALL_VIT, weights=path).init(jax.random.key(0))
    flat, want = nn.state_dict(loaded), nn.state_dict(params)
    assert flat.keys() == want.keys()
    for name in want:
        np.testing.assert_array_equal(flat[name], want[name], err_msg=name)


def test_vit_convert_torch_checks_its_own_entries():
    flat = {"encoder.pos_embedding": np.zeros((1, 16, 48), np.float32)}
    with pytest.raises(StateDictError, match="missing keys: class_token") as error:
        models.from_torch(VIT, flat)
    assert "encoder.pos_embedding: expected PyTorch shape (1, 17, 48)" in str(error.value)


# ------------------------------------------------------------------ PyTorch parity
def _torch_mobilenet_v2(torch):
    """torchvision's MobileNetV2 (width 1.0, 10 classes), its modules and names."""
    tnn = torch.nn

    def conv_bn(inp, oup, kernel=3, stride=1, groups=1):  # Conv2dNormActivation
        conv = tnn.Conv2d(inp, oup, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False)
        return tnn.Sequential(conv, tnn.BatchNorm2d(oup), tnn.ReLU6())

    class InvertedResidual(tnn.Module):
        def __init__(self, inp, oup, stride, t):
            super().__init__()
            hidden = round(inp * t)
            self.use_res = stride == 1 and inp == oup
            layers = [conv_bn(inp, hidden, 1)] if t != 1 else []
            layers += [conv_bn(hidden, hidden, 3, stride, hidden)]
            layers += [tnn.Conv2d(hidden, oup, 1, bias=False), tnn.BatchNorm2d(oup)]
            self.conv = tnn.Sequential(*layers)

        def forward(self, x):
            return x + self.conv(x) if self.use_res else self.conv(x)

    class MobileNetV2(tnn.Module):
        def __init__(self):
            super().__init__()
            features, inp = [conv_bn(3, 32, stride=2)], 32
            for t, c, n, s in TORCHVISION_SETTING:
                for i in range(n):
                    features.append(InvertedResidual(inp, c, s if i == 0 else 1, t))
                    inp = c
            features.append(conv_bn(inp, 1280, 1))
            self.features = tnn.Sequential(*features)
            self.classifier = tnn.Sequential(tnn.Dropout(0.2), tnn.Linear(1280, 10))

        def forward(self, x):
            x = self.features(x).mean(dim=(2, 3))
            return self.classifier(x)

    model = MobileNetV2()
    for module in model.modules():  # torchvision's init: activations large enough to clip
        if isinstance(module, tnn.Conv2d):
            tnn.init.kaiming_normal_(module.weight, mode="fan_out")
    return model


def _torch_vit(
    torch, image_size, patch_size, num_layers, num_heads, hidden_dim, mlp_dim, num_classes
):
    """torchvision's VisionTransformer, its modules and names (no dropout)."""
    tnn = torch.nn
    from collections import OrderedDict

    class EncoderBlock(tnn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = tnn.LayerNorm(hidden_dim, eps=1e-6)
            self.self_attention = tnn.MultiheadAttention(hidden_dim, num_heads, batch_first=True)
            self.dropout = tnn.Dropout(0.0)
            self.ln_2 = tnn.LayerNorm(hidden_dim, eps=1e-6)
            self.mlp = tnn.Sequential(
                tnn.Linear(hidden_dim, mlp_dim), tnn.GELU(), tnn.Dropout(0.0),
                tnn.Linear(mlp_dim, hidden_dim), tnn.Dropout(0.0),
            )  # fmt: skip

        def forward(self, x):
            y = self.ln_1(x)
            y, _ = self.self_attention(y, y, y, need_weights=False)
            x = x + self.dropout(y)
            return x + self.mlp(self.ln_2(x))

    class Encoder(tnn.Module):
        def __init__(self, seq_length):
            super().__init__()
            self.pos_embedding = tnn.Parameter(torch.randn(1, seq_length, hidden_dim))
            self.dropout = tnn.Dropout(0.0)
            blocks = [(f"encoder_layer_{i}", EncoderBlock()) for i in range(num_layers)]
            self.layers = tnn.Sequential(OrderedDict(blocks))
            self.ln = tnn.LayerNorm(hidden_dim, eps=1e-6)

        def forward(self, x):
            return self.ln(self.layers(self.dropout(x + self.pos_embedding)))

    class VisionTransformer(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv_proj = tnn.Conv2d(3, hidden_dim, patch_size, stride=patch_size)
            self.class_token = tnn.Parameter(torch.randn(1, 1, hidden_dim))
            self.encoder = Encoder((image_size // patch_size) ** 2 + 1)
            self.heads = tnn.Sequential(OrderedDict(head=tnn.Linear(hidden_dim, num_classes)))

        def forward(self, x):
            x = self.conv_proj(x).flatten(2).permute(0, 2, 1)
            x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
            return self.heads(self.encoder(x)[:, 0])

    return VisionTransformer()


def _randomise_batch_norms(torch, model):
    """Random affine parameters and running statistics, so that eval mode uses them; gains
    of 1 to 3 let activations pass 6, where ReLU6 clips."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            c = module.num_features
            module.weight.data = 2 * torch.rand(c, generator=generator) + 1
            module.bias.data = torch.randn(c, generator=generator)
            module.running_mean.data = 0.1 * torch.randn(c, generator=generator)
            module.running_var.data = torch.rand(c, generator=generator) + 0.5


def _torch_out(torch, model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()


@pytest.mark.torch
@pytest.mark.one_version
def test_mobilenet_v2_matches_pytorch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    reference = _torch_mobilenet_v2(torch)
    _randomise_batch_norms(torch, reference)
    reference.eval()
    params, state = models.from_torch(MOBILENET, reference.state_dict())
    x = _images((2, 32, 32, 3), seed=1)
    y, _, _ = MOBILENET_FORWARD(params, state, x, jax.random.key(0))
    want = _torch_out(torch, reference, x)
    # float32 through 52 convolutions, summed in other orders by XLA and PyTorch: the
    # difference measured 5e-7 of the logits' scale; 1e-5 leaves a margin for other CPUs,
    # while a wrong layer (ReLU for ReLU6, a transposed kernel) moves them by ~1.
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.torch
@pytest.mark.one_version
def test_vit_matches_pytorch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    reference = _torch_vit(torch, **SMALL_VIT).eval()
    params, state = models.from_torch(VIT, reference.state_dict())
    x = _images((2, 32, 32, 3), seed=1)
    y, _, _ = VIT_FORWARD(params, state, x, jax.random.key(0))
    want = _torch_out(torch, reference, x)
    # float32 through 2 blocks (sums of at most 192 terms, softmax, erf GELU): the
    # difference measured 2e-7 of the logits' scale; 1e-5 leaves a margin for other CPUs.
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
