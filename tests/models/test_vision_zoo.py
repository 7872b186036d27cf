"""The vision zoo's classic CNNs, ResNets and VGGs: published parameter counts, output
shapes under jit, train mode (dropout, BatchNorm statistics) and ``weights=`` files.

Parameter counts come from ``jax.eval_shape`` (nothing allocated); forward checks use
small inputs. The counts are the published ones (torchvision's documentation for ResNet
and VGG, LeCun et al. 1998's LeNet-5, the CIFAR-10 tutorial CNN, the common CIFAR
ResNet-18); the MLP's is 784·128 + 128 + 128·10 + 10.
"""

from __future__ import annotations

import doctest
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnet import nn
from funcnet.errors import StateDictError
from funcnet.models._classic import MLP, LeNet5, TutorialCNN
from funcnet.models._resnet import BasicBlock, ResNet, resnet18, resnet34, resnet50
from funcnet.models._vgg import VGG, vgg11, vgg11_bn, vgg16, vgg16_bn
from funcnet.models._weights import save_weights

PUBLISHED = [
    (MLP, 101_770),
    (LeNet5, 61_706),
    (TutorialCNN, 545_098),
    (resnet18, 11_689_512),
    (resnet34, 21_797_672),
    (resnet50, 25_557_032),
    (vgg11, 132_863_336),
    (vgg11_bn, 132_868_840),
    (vgg16, 138_357_544),
    (vgg16_bn, 138_365_992),
]


def shapes(model):
    """``(params, state)`` as ShapeDtypeStructs: no allocation, no compilation."""
    return jax.eval_shape(model.init, jax.random.key(0))


def random_params(model, seed=0):
    """Random parameters and init-like state in ``model``'s shapes, on the device.

    Cheaper than ``init`` (whose random draws XLA compiles slowly), and unlike any
    ``init``'s values, so a loaded file is told apart from a fresh init.
    """
    params, state = shapes(model)
    rng = np.random.default_rng(seed)

    def draw(s):
        scale = 1 / np.sqrt(np.prod(s.shape[:-1])) if len(s.shape) > 1 else 0.1
        return (scale * rng.standard_normal(s.shape, dtype=np.float32)).astype(s.dtype)

    def buffer(path, s):
        return np.full(s.shape, path[-1].key == "running_var", s.dtype)

    state = jax.tree_util.tree_map_with_path(buffer, state)
    return jax.device_put((jax.tree.map(draw, params), state))


def output_shape(model, x_shape, **kwargs):
    """The output's shape from a traced (not compiled) ``apply``."""
    x = jax.ShapeDtypeStruct(x_shape, jnp.float32)
    run = lambda p, s, x: model.apply(p, s, x, **kwargs)
    out, _ = jax.eval_shape(run, *shapes(model), x)
    return out.shape


@pytest.fixture(scope="module")
def cifar_resnet():
    """A one-block-per-stage ResNet with the CIFAR stem and 10 classes, with random
    params and state (quicker to compile than resnet18, the same code)."""
    model = ResNet(BasicBlock, (1, 1, 1, 1), num_classes=10, stem="cifar")
    return model, *random_params(model)


@pytest.mark.parametrize("factory, count", PUBLISHED, ids=lambda v: getattr(v, "__name__", ""))
def test_parameter_counts_are_the_published_ones(factory, count):
    params, _ = shapes(factory())
    assert nn.num_parameters(params) == count


def test_cifar_stem_parameter_counts():
    # The 7x7 stem (3·64·49) becomes 3x3 (3·64·9); at 10 classes, the 11,173,962 of the
    # common CIFAR ResNet-18.
    assert nn.num_parameters(shapes(resnet18(stem="cifar"))[0]) == 11_689_512 - 64 * 3 * 40
    assert nn.num_parameters(shapes(resnet18(stem="cifar", num_classes=10))[0]) == 11_173_962


def test_keyword_only_arguments_and_unknown_stem():
    with pytest.raises(TypeError):
        resnet18(10)  # type: ignore[misc]
    with pytest.raises(ValueError, match="stem must be one of"):
        resnet18(stem="tiny")
    with pytest.raises(ValueError, match="4 stage depths"):
        ResNet(BasicBlock, (2, 2, 2))


@pytest.mark.parametrize(
    "model, x_shape",
    [
        (MLP(hidden_sizes=(32, 16)), (2, 28, 28)),
        (LeNet5(), (2, 28, 28, 1)),
        (LeNet5(num_classes=7, in_channels=3), (2, 28, 28, 3)),
        (TutorialCNN(), (2, 32, 32, 3)),
    ],
    ids=["mlp", "lenet5", "lenet5-rgb", "tutorial-cnn"],
)
def test_small_models_run_under_jit(model, x_shape):
    params, state = random_params(model)
    x = jax.random.normal(jax.random.key(1), x_shape)
    y, new_state = jax.jit(model.apply)(params, state, x)
    classes = model.fc3.out_features if isinstance(model, LeNet5) else 10
    assert y.shape == (2, classes) and y.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(y))) and new_state == {}


def test_cifar_resnet_runs_under_jit(cifar_resnet):
    model, params, state = cifar_resnet
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
    y, new_state = jax.jit(model.apply)(params, state, x)
    assert y.shape == (2, 10) and y.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(y)))
    assert jax.tree.structure(new_state) == jax.tree.structure(state)


@pytest.mark.parametrize(
    "factory, x_shape",
    [
        (resnet18, (2, 32, 32, 3)),
        (resnet34, (2, 64, 64, 3)),
        (resnet50, (2, 224, 224, 3)),
        (lambda: resnet50(stem="cifar", num_classes=100), (2, 32, 32, 3)),
        (vgg11, (2, 32, 32, 3)),
        (vgg16_bn, (2, 224, 224, 3)),
    ],
    ids=["resnet18", "resnet34", "resnet50", "resnet50-cifar", "vgg11", "vgg16_bn"],
)
def test_large_models_output_shapes(factory, x_shape):
    model = factory()
    assert output_shape(model, x_shape) == (2, model.num_classes)
    key = jax.random.key(0)
    assert output_shape(model, x_shape, train=True, key=key) == (2, model.num_classes)


def test_torchvision_initialisation():
    key = jax.random.key(0)
    # kaiming normal with fan_out (128·3·3), not fan_in (64·3·3): std sqrt(2 / 1152)
    conv, _ = resnet18().layer2[0].conv1.init(key)
    conv = np.asarray(conv["weight"])
    assert abs(conv.mean()) < 0.002 and conv.std() == pytest.approx(np.sqrt(2 / 1152), rel=0.03)
    bn, _ = resnet18().bn1.init(key)
    np.testing.assert_array_equal(bn["weight"], np.ones(64))
    np.testing.assert_array_equal(bn["bias"], np.zeros(64))
    vgg = vgg11(num_classes=10)
    conv, _ = vgg.features[0].init(key)  # fan_out 64·3·3 (fan_in would be 27), zero bias
    assert np.std(conv["weight"]) == pytest.approx(np.sqrt(2 / 576), rel=0.1)
    np.testing.assert_array_equal(conv["bias"], np.zeros(64))
    head, _ = vgg.classifier[6].init(key)  # N(0, 0.01²), zero bias
    assert np.std(head["weight"]) == pytest.approx(0.01, rel=0.03)
    np.testing.assert_array_equal(head["bias"], np.zeros(10))


def test_vgg_dropout_in_train_mode():
    # VGG's avgpool and classifier on a (N, 7, 7, 512) map: the features need no test here.
    model = VGG(nn.Identity(), num_classes=10)
    params, state = shapes(model)  # 0.01 everywhere: cheap, and enough to see masks
    params = jax.tree.map(lambda s: jnp.full(s.shape, 0.01, s.dtype), params)
    x = jax.random.uniform(jax.random.key(1), (2, 7, 7, 512))  # positive: ReLU passes
    run = jax.jit(lambda p, x, k: model.apply(p, state, x, train=True, key=k)[0])
    a, b = run(params, x, jax.random.key(2)), run(params, x, jax.random.key(3))
    np.testing.assert_array_equal(a, run(params, x, jax.random.key(2)))
    assert not np.allclose(a, b)  # two keys, two dropout masks
    assert not np.allclose(a, model.apply(params, state, x)[0])  # eval mode drops nothing


def test_batchnorm_statistics_update_in_train_mode(cifar_resnet):
    model, params, state = cifar_resnet
    x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
    _, new = jax.jit(lambda p, s, x: model.apply(p, s, x, train=True))(params, state, x)
    # Reference for the stem's BatchNorm: momentum 0.1, unbiased batch variance.
    conv = jax.lax.conv_general_dilated(
        x, params["conv1"]["weight"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    conv = np.asarray(conv, np.float64).reshape(-1, 64)
    bn1 = new["bn1"]
    np.testing.assert_allclose(bn1["running_mean"], 0.1 * conv.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(bn1["running_var"], 0.9 + 0.1 * conv.var(0, ddof=1), rtol=1e-4)
    assert int(bn1["num_batches_tracked"]) == 1
    deep = new["layer4"]["0"]["downsample"]["1"]
    assert int(deep["num_batches_tracked"]) == 1
    assert not np.allclose(deep["running_var"], 1.0)


def same(a, b) -> bool:
    """Equal trees: the same structure, dtypes and values."""
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        x.dtype == y.dtype and np.array_equal(x, y)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_weights_file_round_trip(tmp_path, suffix):
    params, state = random_params(LeNet5())
    path = save_weights(tmp_path / f"lenet{suffix}", params, state)
    assert same(LeNet5(weights=path).init(jax.random.key(1)), (params, {}))


def test_weights_file_restores_batchnorm_state(tmp_path, cifar_resnet):
    _, params, state = cifar_resnet
    state = jax.tree.map(lambda a: a + 3, state)  # unlike init's statistics and counters
    path = save_weights(tmp_path / "resnet.safetensors", params, state)
    model = ResNet(BasicBlock, (1, 1, 1, 1), num_classes=10, stem="cifar", weights=path)
    loaded = model.init(jax.random.key(5))
    assert same(loaded, (params, state))


def test_mis_shaped_weights_file_names_the_entry(tmp_path):
    params, state = random_params(LeNet5(num_classes=5))
    path = save_weights(tmp_path / "lenet5.safetensors", params, state)
    with pytest.raises(StateDictError, match=r"fc3\.weight"):
        LeNet5(weights=path).init(jax.random.key(0))


ZOO_MODULES = [  # the zoo's modules with Examples in their docstrings
    importlib.import_module(f"funcnet.models.{name}")
    for name in ("_classic", "_resnet", "_vgg", "_sequence", "_gpt")
]


@pytest.mark.one_version
@pytest.mark.parametrize("module", ZOO_MODULES, ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
