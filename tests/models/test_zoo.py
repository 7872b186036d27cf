"""Every zoo model: PyTorch weights out and back in exactly, and through funcnet-convert."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from funcnet import checkpoint, models, nn
from funcnet.models import convert as convert_cli
from funcnet.models._convert import model_names

#: Every model the zoo offers (class or factory), built small; the test below fails
#: when a new model is not listed here.
SMALL = {
    "MLP": lambda: models.MLP(12, (8,), 3),
    "LeNet5": lambda: models.LeNet5(),
    "TutorialCNN": lambda: models.TutorialCNN(),
    "ResNet": lambda: models.ResNet(models.Bottleneck, [1, 1, 1, 1], num_classes=3),
    "resnet18": lambda: models.resnet18(num_classes=3, stem="cifar"),
    "resnet34": lambda: models.resnet34(num_classes=3),
    "resnet50": lambda: models.resnet50(num_classes=3),
    "VGG": lambda: models.vgg11(num_classes=3),
    "vgg11": lambda: models.vgg11(num_classes=3),
    "vgg11_bn": lambda: models.vgg11_bn(num_classes=3),
    "vgg16": lambda: models.vgg16(num_classes=3),
    "vgg16_bn": lambda: models.vgg16_bn(num_classes=3),
    "MobileNetV2": lambda: models.MobileNetV2(num_classes=3, width_mult=0.5),
    "mobilenet_v2": lambda: models.mobilenet_v2(num_classes=3),
    "VisionTransformer": lambda: models.VisionTransformer(
        image_size=16,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=8,
        mlp_dim=16,
        num_classes=3,
    ),
    "vit_tiny": lambda: models.vit_tiny(num_classes=3),
    "LSTMClassifier": lambda: models.LSTMClassifier(4, 8, 3, num_layers=2, vocab_size=11),
    "TransformerClassifier": lambda: models.TransformerClassifier(
        20, 3, d_model=8, nhead=2, num_layers=2, dim_feedforward=16, max_len=8
    ),
    "GPT2": lambda: models.GPT2(vocab_size=20, n_positions=8, n_embd=8, n_layer=2, n_head=2),
    "gpt2_small": lambda: models.gpt2_small(),
    "DCGANGenerator": lambda: models.DCGANGenerator(nz=4, ngf=4, nc=1, image_size=16),
    "DCGANDiscriminator": lambda: models.DCGANDiscriminator(nc=1, ndf=4, image_size=16),
    "AutoEncoder": lambda: models.AutoEncoder(12, (8,), 4),
    "VAE": lambda: models.VAE(12, 8, 4),
    "MultiTask": lambda: models.MultiTask(
        nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6)), {"a": nn.Linear(6, 2)}
    ),
    "MultiTaskNet": lambda: models.MultiTaskNet(12, (8,), {"a": 2, "b": 3}),
}

#: Too big to fill with random values in every CI run: the same classes are covered at a
#: smaller configuration above, except VGG, whose classifier has 102M parameters at any
#: size (tests/models/test_vision_torch.py converts one from PyTorch).
LARGE = {"VGG", "vgg11", "vgg11_bn", "vgg16", "vgg16_bn", "gpt2_small"}


def test_every_zoo_model_is_listed():
    assert sorted(SMALL) == sorted(model_names())


def random_weights(model, seed: int = 0):
    """Random values of ``model.init``'s shapes and dtypes (no init, no compile)."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.key(0))

    def fill(spec):
        if np.issubdtype(spec.dtype, np.floating):
            return rng.standard_normal(spec.shape).astype(spec.dtype)
        return rng.integers(0, 100, spec.shape).astype(spec.dtype)

    return jax.tree.map(fill, shapes)


def same(a, b) -> bool:
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


@pytest.mark.parametrize("name", sorted(set(SMALL) - LARGE))
def test_pytorch_weights_go_out_and_come_back_exactly(name):
    model = SMALL[name]()
    params, state = random_weights(model)
    torch_sd = models.to_torch(model, params, state)
    assert all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in torch_sd.items())
    assert same(models.from_torch(model, torch_sd), (params, state))


def test_pytorch_layouts_where_names_are_not_enough():
    vgg = models.VGG(models._vgg._make_features([8, "M"], batch_norm=False), num_classes=3)
    assert vgg.torch_flatten_inputs() == {"classifier.0": (512, 7, 7)}
    gpt = SMALL["GPT2"]()
    params, _ = random_weights(gpt)
    hf = models.to_torch(gpt, params)
    assert "transformer.h.1.attn.c_attn.weight" in hf and "h.1.attn.c_attn.weight" not in hf
    # Hugging Face's Conv1D keeps (in, out): funcnet's layout, no transpose
    assert np.array_equal(
        hf["transformer.h.1.attn.c_attn.weight"], params["h"]["attn"]["c_attn"]["weight"][1]
    )
    assert np.array_equal(hf["lm_head.weight"], hf["transformer.wte.weight"])


TINY_GPT2 = {"vocab_size": 20, "n_positions": 8, "n_embd": 8, "n_layer": 2, "n_head": 2}


@pytest.mark.parametrize(
    ("name", "build"),
    [
        ("resnet18", lambda **kw: models.resnet18(num_classes=3, stem="cifar", **kw)),
        ("GPT2", lambda **kw: models.GPT2(**TINY_GPT2, **kw)),
    ],
)
def test_funcnet_convert_makes_a_file_weights_loads(tmp_path, capsys, name, build):
    model = build()
    params, state = random_weights(model, seed=3)
    source = tmp_path / "torch.safetensors"
    checkpoint.save_safetensors(source, models.to_torch(model, params, state))
    dest = tmp_path / "funcnet.npz"
    kwargs = {"num_classes": 3, "stem": "cifar"} if name == "resnet18" else TINY_GPT2
    args = [f"--arg={k}={v}" for k, v in kwargs.items()]
    assert convert_cli.main([name, str(source), str(dest), *args]) == 0
    assert f"{nn.num_parameters(params):,} parameters" in capsys.readouterr().out
    assert same(build(weights=dest).init(jax.random.key(0)), (params, state))
    # a file for another configuration: a clear error, no traceback
    assert convert_cli.main([name, str(source), str(dest)]) == 1
    assert "expected PyTorch shape" in capsys.readouterr().err
