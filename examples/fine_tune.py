"""Transfer learning: reuse a trained network's body for a new task, as PyTorch users do
by freezing layers (``requires_grad=False``) and giving parameter groups their own
learning rates.

1. Train a small network (a shared ``trunk`` and a ``head``) to tell the digits 0-4 apart.
2. Give it a new head for the digits 5-9 and train only that head, the trunk frozen
   (``optim.freeze``, PyTorch's ``requires_grad_(False)``).
3. Fine-tune everything, the trunk at a 10x smaller learning rate than the head
   (``optim.param_groups``, PyTorch's ``Adam([{"params": trunk, "lr": 1e-4}, ...])``).

It prints the test accuracy after each stage and checks that stage 2 left the trunk
untouched. Runs on the handwritten digits shipped inside funcnet (no download).

    python examples/fine_tune.py
    python examples/fine_tune.py --smoke     # a few steps, for CI
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

from funcnet import losses, metrics, nn, optim, train
from funcnet.data import ArrayDataset, DataLoader
from funcnet.data.datasets import load_digits
from funcnet.data.transforms import ToFloat


class Net(nn.Module):
    """trunk: Flatten → Linear(64, 128) → ReLU → Linear(128, 64) → ReLU; head: Linear(64, 5)."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU()
        )
        self.head = nn.Linear(64, num_classes)

    def forward(self, ctx: nn.Context, x: jax.Array) -> jax.Array:
        return self.head(ctx, self.trunk(ctx, x))  # (N, 8, 8, 1) -> (N, num_classes)


def digits(split: str, first: int) -> ArrayDataset:
    """The digits ``first`` .. ``first + 4`` of a split, relabelled 0..4."""
    images, labels = load_digits(split).arrays
    keep = (labels >= first) & (labels < first + 5)
    return ArrayDataset(images[keep], labels[keep] - first)


def run(state: train.TrainState, first: int, epochs: int, max_steps: int | None):
    """Trains ``state`` on the digits ``first``..``first+4``; returns it and test accuracy."""
    to_float = ToFloat(scale=1 / 16)
    loader = DataLoader(digits("train", first), 32, shuffle=True, transform=to_float)
    state, _ = train.fit(
        state,
        loader,
        epochs=epochs,
        loss_fn=losses.cross_entropy,
        max_steps=max_steps,
        progress="quiet",
    )
    test = DataLoader(digits("test", first), 256, transform=to_float)
    accuracy = {"accuracy": metrics.accuracy}
    result = train.evaluate(state, test, loss_fn=losses.cross_entropy, metrics=accuracy)
    return state, result["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--smoke", action="store_true", help="a few steps (CI)")
    args = parser.parse_args()
    epochs, max_steps = (1, 3) if args.smoke else (args.epochs, None)
    model = Net()

    # 1. digits 0-4, everything trained
    state = train.TrainState.create(model, optim.adam(1e-3), jax.random.key(0))
    state, acc_first = run(state, 0, epochs, max_steps)
    print(f"stage 1, digits 0-4, all trained:          test accuracy {acc_first:.4f}")

    # 2. digits 5-9: the trained trunk, a new head; only the head learns
    new_head, _ = model.init(jax.random.key(1))
    params = {"trunk": state.params["trunk"], "head": new_head["head"]}
    frozen = optim.freeze(optim.adam(1e-3), "trunk")
    state = train.TrainState.create(model, frozen, jax.random.key(2), params=params)
    state, acc_head = run(state, 5, epochs, max_steps)
    trunk_kept = jax.tree.all(jax.tree.map(np.array_equal, state.params["trunk"], params["trunk"]))
    print(f"stage 2, digits 5-9, trunk frozen:         test accuracy {acc_head:.4f}")
    print(f"         trunk unchanged by stage 2: {trunk_kept}")

    # 3. digits 5-9: everything, the trunk at a 10x smaller learning rate
    groups = optim.param_groups([("trunk", optim.adam(1e-4))], default=optim.adam(1e-3))
    state = train.TrainState.create(model, groups, jax.random.key(3), params=state.params)
    state, acc_all = run(state, 5, epochs, max_steps)
    print(f"stage 3, digits 5-9, trunk at lr 1e-4:     test accuracy {acc_all:.4f}")
    if not trunk_kept:
        raise SystemExit("the frozen trunk moved")


if __name__ == "__main__":
    main()
