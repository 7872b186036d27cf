"""Save a trained model for deployment: PyTorch's TorchScript / ``torch.export`` scenario.

PyTorch's tutorials trace or export a trained model (``torch.jit.trace``,
``torch.export.export``), save it to a file and load it where the model's Python code is
not available. ``funcnet.export`` does the same with ``jax.export``: ``export.export``
writes the model's eval-mode forward pass (dropout off, BatchNorm's running statistics),
weights included, to one ``.fnx`` file; ``export.load`` gives back a function that runs
it at any batch size and needs only jax and funcnet, never the module that defined the
model.

The script trains a small classifier (Flatten, Linear(64, 128), BatchNorm1d, ReLU,
Dropout, Linear(128, 10)) on the handwritten digits shipped inside funcnet (1,797 real
8x8 images, no download), exports it from an example batch of 8 images, loads the file
and runs it on the whole test set (359 images) in one call. It prints the largest
absolute difference between the loaded program's logits and ``model.apply``'s (float32
rounding: about 1e-6 on a CPU; more on a GPU, which multiplies float32 matrices in TF32)
and the test accuracy of the loaded program (about 0.98 after 10 epochs). Exporting needs
the ``flatbuffers`` package: ``pip install "funcnet[export]"``.

    python examples/export_model.py                     # writes to a temporary folder
    python examples/export_model.py --out digits.fnx    # keeps the file
    python examples/export_model.py --smoke             # a few steps, for CI

The serving side is then three lines, with no model code::

    from funcnet import export
    predict = export.load("digits.fnx")
    labels = predict(images).argmax(axis=1)  # images: (N, 8, 8, 1) float32 in [0, 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from funcnet import export, losses, metrics, nn, optim, train
from funcnet.data import DataLoader
from funcnet.data.datasets import load_digits
from funcnet.data.transforms import ToFloat

TO_FLOAT = ToFloat(scale=1 / 16)  # the digits' pixels are 0..16


def train_model(epochs: int, max_steps: int | None) -> train.TrainState:
    """Trains the digits classifier with Adam.

    Args:
        epochs: epochs to train.
        max_steps: stop after this many steps (None: train every epoch).

    Returns:
        The trained state: parameters and BatchNorm's running statistics.
    """
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 128),
        nn.BatchNorm1d(128),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(128, 10),
    )
    loader = DataLoader(
        load_digits("train"), 32, shuffle=True, seed=0, drop_last=True, transform=TO_FLOAT
    )
    state = train.TrainState.create(model, optim.adam(lr=1e-3), jax.random.key(0))
    state, _ = train.fit(
        state,
        loader,
        epochs=epochs,
        loss_fn=losses.cross_entropy,
        metrics={"accuracy": metrics.accuracy},
        max_steps=max_steps,
    )
    return state


def export_and_check(state: train.TrainState, path: Path, platforms: list[str]) -> None:
    """Exports the model to ``path``, loads it and compares it with ``model.apply``.

    Args:
        state: the trained state.
        path: the file to write.
        platforms: where the program may run (``"cpu"``, ``"cuda"``, ``"rocm"``, ``"tpu"``).
    """
    images, labels = load_digits("test").arrays  # (359, 8, 8, 1) uint8, (359,) int32
    x = np.asarray(TO_FLOAT(images))
    start = time.perf_counter()
    # Only the example's shape and dtype matter; axis 0 is exported as a symbolic `batch`.
    export.export(
        state.model, state.params, state.model_state, x[:8], path=path, platforms=platforms
    )
    seconds = time.perf_counter() - start
    print(f"exported in {seconds:.2f} s: {path} ({path.stat().st_size:,} bytes)")

    predict = export.load(path)  # the weights are in the file; the model class is not needed
    print(predict)
    logits = np.asarray(predict(x))  # batch 359, not the example's 8
    expected, _ = state.model.apply(state.params, state.model_state, x)  # eval mode
    difference = np.max(np.abs(logits - np.asarray(expected)))
    accuracy = np.mean(logits.argmax(axis=1) == labels)
    print(f"max abs difference vs model.apply on {len(x)} images: {difference:.2e}")
    print(f"test accuracy of the exported program: {accuracy:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="the .fnx file to write (default: a temporary folder)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument(
        "--platforms",
        default="cpu,cuda,rocm,tpu",
        help="comma-separated platforms the file may run on (default: all four)",
    )
    parser.add_argument("--smoke", action="store_true", help="a few steps only (CI)")
    args = parser.parse_args()

    state = train_model(1 if args.smoke else args.epochs, 5 if args.smoke else None)
    print(f"trained {int(state.step)} steps")
    platforms = args.platforms.split(",")
    if args.out:
        export_and_check(state, Path(args.out), platforms)
    else:
        with tempfile.TemporaryDirectory() as folder:
            export_and_check(state, Path(folder) / "digits.fnx", platforms)


if __name__ == "__main__":
    main()
