"""Train one network to answer two questions about each handwritten digit at once (which
digit it is, and whether it is odd or even), as the multi-task tutorials do with a shared
trunk and one head per task.

``models.MultiTaskNet`` is an MLP trunk (64 -> 128 -> 64, ReLU) shared by two Linear
heads: ``digit`` (10 classes) and ``parity`` (2 classes: even, odd). The training loss
is the sum of the heads' cross-entropies, ``1.0 * digit + 1.0 * parity`` (change the
second weight with ``--parity-weight``), minimised with Adam by ``train.fit``: the model
returns a dict of logits, the batches' targets are ``(digit, parity)``. It trains on the
1,797 8x8 handwritten digits shipped inside funcnet and prints both heads' test
accuracies.

    python examples/multi_task.py                       # 40 epochs
    python examples/multi_task.py --parity-weight 0.5
    python examples/multi_task.py --smoke               # a few steps, for CI
"""

from __future__ import annotations

import argparse
import functools
import time

import jax

from funcnet import losses, metrics, models, optim, train
from funcnet.data import DataLoader
from funcnet.data.datasets import load_digits
from funcnet.data.transforms import ToFloat


def with_parity(batch: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, tuple]:
    """``(images, labels)`` -> ``(images, (digit, parity))``; parity 1 for odd digits."""
    images, labels = batch
    return images, (labels, labels % 2)


def two_losses(outputs: dict, targets: tuple, mask=None, *, parity_weight: float = 1.0):
    """``cross_entropy(digit) + parity_weight * cross_entropy(parity)``, a scalar."""
    digit, parity = targets
    return losses.cross_entropy(outputs["digit"], digit, mask=mask) + (
        parity_weight * losses.cross_entropy(outputs["parity"], parity, mask=mask)
    )


def digit_accuracy(outputs: dict, targets: tuple, mask=None) -> jax.Array:
    """Accuracy of the 10-class head."""
    return metrics.accuracy(outputs["digit"], targets[0], mask=mask)


def parity_accuracy(outputs: dict, targets: tuple, mask=None) -> jax.Array:
    """Accuracy of the odd/even head."""
    return metrics.accuracy(outputs["parity"], targets[1], mask=mask)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--parity-weight", type=float, default=1.0)
    parser.add_argument("--smoke", action="store_true", help="a few steps only (CI)")
    args = parser.parse_args()

    to_float = ToFloat(scale=1 / 16)  # the digits' pixels are 0..16 -> [0, 1]
    train_loader = DataLoader(
        load_digits("train"), args.batch_size, shuffle=True, seed=0, transform=to_float
    )
    test_loader = DataLoader(load_digits("test"), 256, transform=to_float)

    model = models.MultiTaskNet(8 * 8, (128, 64), {"digit": 10, "parity": 2})
    print(model)
    loss_fn = functools.partial(two_losses, parity_weight=args.parity_weight)
    accuracies = {"digit_accuracy": digit_accuracy, "parity_accuracy": parity_accuracy}
    state = train.TrainState.create(model, optim.adam(lr=args.lr), jax.random.key(0))
    start = time.perf_counter()
    state, history = train.fit(
        state,
        train_loader,
        epochs=1 if args.smoke else args.epochs,
        loss_fn=loss_fn,
        metrics=accuracies,
        batch_fn=with_parity,
        max_steps=5 if args.smoke else None,
    )
    results = train.evaluate(
        state, test_loader, loss_fn=loss_fn, metrics=accuracies, batch_fn=with_parity
    )
    print(
        f"trained {int(state.step)} steps in {time.perf_counter() - start:.1f} s "
        f"(last epoch: train loss {history.epochs[-1]['loss']:.4f})"
    )
    print(
        f"test accuracy: digit {results['digit_accuracy']:.4f}, "
        f"odd/even {results['parity_accuracy']:.4f}  (test loss {results['loss']:.4f})"
    )


if __name__ == "__main__":
    main()
