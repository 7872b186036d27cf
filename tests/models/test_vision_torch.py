"""The vision zoo against PyTorch: torchvision-structured models written here (torchvision
is not installed beside the CPU torch), random weights and BatchNorm statistics, eval
mode; each module's ``convert_torch`` on ``state_dict()``, then the same input (NHWC for
funcnet, NCHW for torch) must give the same logits.

Tolerance: float32 on both sides, but XLA and PyTorch's CPU kernels sum convolutions and
matmuls in different orders, so each layer differs by a few float32 ulps, compounded
through up to 50 layers: the largest difference seen here is about 2e-6 of the largest
output (vgg11_bn, TutorialCNN), and resnet50's 4e-7. ``rtol=1e-4`` with ``atol`` 1e-4 of
the largest output leaves a factor 50 for other CPUs and library versions, while a wrong
layout, flatten order, stride placement or BatchNorm statistic changes the outputs by
tens of percent (a missing ``flatten_inputs`` changes LeNet5's by 40%, VGG's by 100%).
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import jax
import numpy as np
import pytest

from funcnet import models, nn

pytestmark = [pytest.mark.torch, pytest.mark.one_version]

#: torchvision's configuration "A" (VGG-11): output channels per 3x3 conv, "M" a max-pool.
VGG_A = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


@functools.cache
def torchvision_like():
    """PyTorch models with torchvision's (and the tutorials') module structure."""
    torch = pytest.importorskip("torch")
    tnn = torch.nn

    def conv3x3(inplanes, planes, stride=1):
        return tnn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)

    def conv1x1(inplanes, planes, stride=1):
        return tnn.Conv2d(inplanes, planes, 1, stride=stride, bias=False)

    class BasicBlock(tnn.Module):
        expansion = 1

        def __init__(self, inplanes, planes, stride=1, downsample=None):
            super().__init__()
            self.conv1, self.bn1 = conv3x3(inplanes, planes, stride), tnn.BatchNorm2d(planes)
            self.relu = tnn.ReLU(inplace=True)
            self.conv2, self.bn2 = conv3x3(planes, planes), tnn.BatchNorm2d(planes)
            self.downsample = downsample

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            identity = x if self.downsample is None else self.downsample(x)
            return self.relu(out + identity)

    class Bottleneck(tnn.Module):
        expansion = 4

        def __init__(self, inplanes, planes, stride=1, downsample=None):
            super().__init__()
            self.conv1, self.bn1 = conv1x1(inplanes, planes), tnn.BatchNorm2d(planes)
            self.conv2, self.bn2 = conv3x3(planes, planes, stride), tnn.BatchNorm2d(planes)
            self.conv3 = conv1x1(planes, planes * 4)
            self.bn3 = tnn.BatchNorm2d(planes * 4)
            self.relu = tnn.ReLU(inplace=True)
            self.downsample = downsample

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            identity = x if self.downsample is None else self.downsample(x)
            return self.relu(out + identity)

    class ResNet(tnn.Module):
        def __init__(self, block, layers, num_classes=1000):
            super().__init__()
            self.inplanes = 64
            self.conv1 = tnn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = tnn.BatchNorm2d(64)
            self.relu = tnn.ReLU(inplace=True)
            self.maxpool = tnn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            self.layer1 = self._make_layer(block, 64, layers[0])
            self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
            self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
            self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
            self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
            self.fc = tnn.Linear(512 * block.expansion, num_classes)

        def _make_layer(self, block, planes, blocks, stride=1):
            downsample = None
            if stride != 1 or self.inplanes != planes * block.expansion:
                downsample = tnn.Sequential(
                    conv1x1(self.inplanes, planes * block.expansion, stride),
                    tnn.BatchNorm2d(planes * block.expansion),
                )
            layers = [block(self.inplanes, planes, stride, downsample)]
            self.inplanes = planes * block.expansion
            layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
            return tnn.Sequential(*layers)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    def cifar(model):
        """The common CIFAR variant: a 3x3 stride-1 stem and no max-pool."""
        model.conv1 = tnn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = tnn.Identity()
        return model

    def make_layers(cfg, batch_norm=False):
        layers, in_channels = [], 3
        for v in cfg:
            if v == "M":
                layers += [tnn.MaxPool2d(kernel_size=2, stride=2)]
                continue
            conv = tnn.Conv2d(in_channels, v, kernel_size=3, padding=1)
            bn = [tnn.BatchNorm2d(v)] if batch_norm else []
            layers += [conv, *bn, tnn.ReLU(inplace=True)]
            in_channels = v
        return tnn.Sequential(*layers)

    class VGG(tnn.Module):
        def __init__(self, features, num_classes=1000, dropout=0.5):
            super().__init__()
            self.features = features
            self.avgpool = tnn.AdaptiveAvgPool2d((7, 7))
            self.classifier = tnn.Sequential(
                tnn.Linear(512 * 7 * 7, 4096),
                tnn.ReLU(True),
                tnn.Dropout(p=dropout),
                tnn.Linear(4096, 4096),
                tnn.ReLU(True),
                tnn.Dropout(p=dropout),
                tnn.Linear(4096, num_classes),
            )

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    class LeNet5(tnn.Module):
        def __init__(self, num_classes=10, in_channels=1):
            super().__init__()
            self.conv1 = tnn.Conv2d(in_channels, 6, 5, padding=2)
            self.conv2 = tnn.Conv2d(6, 16, 5)
            self.fc1, self.fc2 = tnn.Linear(16 * 5 * 5, 120), tnn.Linear(120, 84)
            self.fc3 = tnn.Linear(84, num_classes)

        def forward(self, x):
            x = tnn.functional.avg_pool2d(torch.tanh(self.conv1(x)), 2)
            x = tnn.functional.avg_pool2d(torch.tanh(self.conv2(x)), 2)
            x = torch.tanh(self.fc1(torch.flatten(x, 1)))
            return self.fc3(torch.tanh(self.fc2(x)))

    class TutorialCNN(tnn.Module):
        def __init__(self, num_classes=10):
            super().__init__()
            self.conv1 = tnn.Conv2d(3, 32, 3, padding=1)
            self.conv2 = tnn.Conv2d(32, 64, 3, padding=1)
            self.pool = tnn.MaxPool2d(2)
            self.fc1, self.fc2 = tnn.Linear(64 * 8 * 8, 128), tnn.Linear(128, num_classes)

        def forward(self, x):
            x = self.pool(torch.relu(self.conv1(x)))
            x = self.pool(torch.relu(self.conv2(x)))
            return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))

    class MLP(tnn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.fc3 = (
                tnn.Linear(784, 64),
                tnn.Linear(64, 32),
                tnn.Linear(32, 10),
            )

        def forward(self, x):
            x = torch.relu(self.fc1(torch.flatten(x, 1)))
            return self.fc3(torch.relu(self.fc2(x)))

    return SimpleNamespace(
        torch=torch,
        resnet18=lambda **kw: ResNet(BasicBlock, [2, 2, 2, 2], **kw),
        resnet50=lambda **kw: ResNet(Bottleneck, [3, 4, 6, 3], **kw),
        cifar=cifar,
        vgg11_bn=lambda **kw: VGG(make_layers(VGG_A, batch_norm=True), **kw),
        LeNet5=LeNet5,
        TutorialCNN=TutorialCNN,
        MLP=MLP,
    )


def randomised(ref, model, seed=0):
    """``model`` in eval mode with random BatchNorm affine parameters and statistics."""
    torch = ref.torch
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(7)
    return model.eval()


def assert_same_logits(ref, model, torch_model, convert, x_shape, seed=0):
    """``convert`` loads ``torch_model``'s weights into ``model``; both give one output."""
    torch = ref.torch
    params, state = convert(model, torch_model.state_dict())
    x = np.random.default_rng(seed).standard_normal(x_shape, dtype=np.float32)
    y, _ = jax.jit(model.apply)(params, state, x)
    with torch.no_grad():
        want = torch_model(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    scale = float(np.abs(want).max())
    assert y.shape == want.shape and scale > 0
    np.testing.assert_allclose(np.asarray(y), want, rtol=1e-4, atol=1e-4 * scale)


@pytest.fixture(scope="module")
def ref():
    return torchvision_like()


def test_mlp(ref):
    torch_model = ref.MLP().eval()
    model = models.MLP(hidden_sizes=(64, 32))
    assert_same_logits(ref, model, torch_model, models.from_torch, (3, 28, 28, 1))


def test_lenet5(ref):
    torch_model = ref.LeNet5().eval()
    assert_same_logits(ref, models.LeNet5(), torch_model, models.from_torch, (3, 28, 28, 1))


def test_tutorial_cnn(ref):
    torch_model = ref.TutorialCNN().eval()
    model = models.TutorialCNN()
    assert_same_logits(ref, model, torch_model, models.from_torch, (3, 32, 32, 3))


@pytest.mark.parametrize("stem, size", [("imagenet", 64), ("cifar", 32)])
def test_resnet18(ref, stem, size):
    torch_model = ref.resnet18(num_classes=10)
    torch_model = randomised(ref, ref.cifar(torch_model) if stem == "cifar" else torch_model)
    model = models.resnet18(num_classes=10, stem=stem)
    assert_same_logits(ref, model, torch_model, models.from_torch, (2, size, size, 3))


def test_resnet50_bottleneck(ref):
    torch_model = randomised(ref, ref.resnet50(num_classes=10))
    model = models.resnet50(num_classes=10)
    assert_same_logits(ref, model, torch_model, models.from_torch, (2, 64, 64, 3))


def test_vgg11_bn(ref):
    # 64x64 leaves a 2x2 map, which AdaptiveAvgPool2d((7, 7)) spreads over overlapping
    # bins (PyTorch's floor/ceil bins), and the (512, 7, 7) flatten order matters.
    torch_model = randomised(ref, ref.vgg11_bn(num_classes=10))
    model = models.vgg11_bn(num_classes=10)
    assert_same_logits(ref, model, torch_model, models.from_torch, (2, 64, 64, 3))


def test_resnet18_torch_state_dict_round_trip(ref):
    torch_model = randomised(ref, ref.resnet18())
    torch_sd = torch_model.state_dict()
    model = models.resnet18()
    params, state = models.from_torch(model, torch_sd)
    exported = nn.torch_state_dict(model, params, state)
    assert set(exported) == set(torch_sd)
    assert len(exported) == 122  # torchvision's resnet18: 62 parameters, 60 buffers
    for key in (
        "conv1.weight",
        "bn1.num_batches_tracked",
        "layer1.1.bn2.running_var",
        "layer2.0.downsample.0.weight",
        "layer4.0.downsample.1.running_mean",
        "fc.bias",
    ):
        assert key in exported
    for key, value in torch_sd.items():
        assert exported[key].dtype == value.numpy().dtype, key
        np.testing.assert_array_equal(exported[key], value.numpy(), err_msg=key)
    torch_model.load_state_dict({k: ref.torch.from_numpy(v) for k, v in exported.items()})
