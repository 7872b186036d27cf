"""Use a pretrained torchvision ResNet-18 and fine-tune it on a new task, as PyTorch users
do with ``torchvision.models.resnet18(weights=...)`` and a new ``model.fc``.

1. Convert torchvision's ResNet-18 state dict, saved as ``.safetensors``, into a funcnet
   weights file, once: ``funcnet-convert resnet18 resnet18-torchvision.safetensors
   resnet18.safetensors``. (funcnet never unpickles a ``.pth``; in PyTorch,
   ``safetensors.torch.save_file(model.state_dict(), "resnet18-torchvision.safetensors")``
   makes the file.) Without ``--torch-weights`` the example makes a stand-in with
   torchvision's keys and layouts and random values, so it runs without a download.
2. ``models.resnet18(weights="resnet18.safetensors")``: ``init`` returns those weights.
   The example checks them against the source (and against torchvision's output, when
   torchvision is installed).
3. Replace the 1000-class head with a 10-class one and fine-tune on the handwritten digits
   shipped inside funcnet (enlarged to 32x32 RGB), with SGD (lr 0.001, momentum 0.9) as the
   tutorial does; prints the test accuracy.

    python examples/pretrained.py --torch-weights resnet18-torchvision.safetensors
    python examples/pretrained.py              # a stand-in state dict, random values
    python examples/pretrained.py --smoke      # a few steps, for CI
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import jax
import numpy as np

from funcnet import checkpoint, losses, metrics, models, nn, optim, train
from funcnet.data import ArrayDataset, DataLoader
from funcnet.data.datasets import load_digits
from funcnet.data.transforms import Compose, Normalize, ToFloat

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def standin_state_dict(path: Path) -> Path:
    """torchvision's ResNet-18 keys and layouts with random values, as ``.safetensors``."""
    model = models.resnet18()
    checkpoint.save_safetensors(path, models.to_torch(model, *model.init(jax.random.key(42))))
    return path


def check_against_checkpoint(model: models.ResNet, params, state, source: Path) -> None:
    """Prints whether the loaded weights are the source's, and torchvision's output."""
    original = checkpoint.load_safetensors(source)
    ours = models.to_torch(model, params, state)
    identical = all(np.array_equal(ours[k], original[k]) for k in ours)
    print(f"weights identical to the source after conversion: {identical}")
    try:
        import torch
        import torchvision
    except ModuleNotFoundError:
        print("(torchvision not installed: output comparison skipped)")
        return
    reference = torchvision.models.resnet18()
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in original.items()})
    x = np.random.default_rng(0).standard_normal((2, 64, 64, 3), dtype=np.float32)
    with torch.no_grad():
        want = reference.eval()(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    got, _ = model.apply(params, state, x)
    print(f"max |funcnet - torchvision| logit: {np.abs(np.asarray(got) - want).max():.2e}")


def digits_rgb(split: str) -> ArrayDataset:
    """The embedded digits enlarged 4x (nearest) to 32x32 and repeated over 3 channels."""
    images, labels = load_digits(split).arrays
    images = images.repeat(4, axis=1).repeat(4, axis=2).repeat(3, axis=3)
    return ArrayDataset(np.ascontiguousarray(images), labels)


def fine_tune(params, state, epochs: int, max_steps: int | None) -> float:
    """A new 10-class head on the pretrained body, trained on the digits; test accuracy."""
    model = models.resnet18(num_classes=10)
    head = model.init(jax.random.key(1))[0]["fc"]
    params = {**params, "fc": head}  # PyTorch: model.fc = nn.Linear(512, 10)
    state_ = train.TrainState.create(
        model, optim.sgd(1e-3, momentum=0.9), jax.random.key(2), params=params, model_state=state
    )
    transform = Compose([ToFloat(scale=1 / 16), Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    loader = DataLoader(digits_rgb("train"), 32, shuffle=True, transform=transform)
    state_, _ = train.fit(
        state_, loader, epochs=epochs, loss_fn=losses.cross_entropy, max_steps=max_steps
    )
    test = DataLoader(digits_rgb("test"), 128, transform=transform)
    result = train.evaluate(
        state_, test, loss_fn=losses.cross_entropy, metrics={"accuracy": metrics.accuracy}
    )
    return result["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--torch-weights", type=Path, help="torchvision's resnet18 state dict as .safetensors"
    )
    parser.add_argument("--out", type=Path, help="folder for the converted weights file")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="a few steps (CI)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="funcnet-pretrained-"))
    out.mkdir(parents=True, exist_ok=True)

    source = args.torch_weights or standin_state_dict(out / "resnet18-standin.safetensors")
    if args.torch_weights is None:
        print(f"made a stand-in torchvision state dict (random values): {source}")

    weights = models.convert_file("resnet18", source, out / "resnet18.safetensors")
    print(f"converted: funcnet-convert resnet18 {source} {weights}")
    model = models.resnet18(weights=weights)
    params, state = model.init(jax.random.key(0))  # the file's weights, not random ones
    print(f"resnet18: {nn.num_parameters(params):,} parameters loaded")
    check_against_checkpoint(model, params, state, source)

    epochs, max_steps = (1, 2) if args.smoke else (args.epochs, None)
    accuracy = fine_tune(params, state, epochs, max_steps)
    print(f"fine-tuned on digits: test accuracy {accuracy:.4f}")


if __name__ == "__main__":
    main()
