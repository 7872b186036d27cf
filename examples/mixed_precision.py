"""Mixed-precision training: PyTorch's AMP recipe (``torch.autocast`` + ``GradScaler``).

PyTorch's "Automatic Mixed Precision" tutorial trains a network of Linear + ReLU layers
with its forward pass under ``torch.autocast`` and, for float16, a ``GradScaler`` that
scales the loss so that small gradients do not flush to zero. Here the same happens to an
MLP (Flatten, Linear(64, 128), ReLU, Linear(128, 10)) on the handwritten digits shipped
inside funcnet (1,797 real 8x8 images, no download):

- ``--precision bf16`` (the default): the parameters and Adam's state stay float32, the
  layers compute in bfloat16 and the logits come back float32 for the loss. bfloat16 has
  float32's exponent range, so no loss scale is needed.
- ``--precision fp16``: the layers compute in float16 and the optimizer is wrapped in
  ``mixed_precision.with_loss_scale`` (GradScaler's dynamic loss scale, its defaults: start
  at 2**16, halve on an overflow and skip that step, double after 2,000 good steps).
- ``--precision float32``: everything in float32, the baseline.

It prints the test accuracy (0.983 after 40 epochs on a CPU, in every precision) and, for
fp16, the final loss scale and how many steps were skipped because a gradient overflowed
(on this small model none: the scale stays at 2**16 through the 1,800 steps, fewer than
the 2,000 it takes to grow). The speed-up is on GPUs and TPUs (tensor cores, half the bytes per
activation); a CPU computes 16-bit matmuls in float32 and is, if anything, slower.

    python examples/mixed_precision.py                     # bfloat16, 40 epochs
    python examples/mixed_precision.py --precision fp16    # float16 with a loss scale
    python examples/mixed_precision.py --smoke             # a few steps, for CI
"""

from __future__ import annotations

import argparse
import time

import jax

from funcnet import losses, metrics, mixed_precision, nn, optim, train
from funcnet.data import DataLoader
from funcnet.data.datasets import load_digits
from funcnet.data.transforms import ToFloat


def make_state(precision: str, lr: float) -> train.TrainState:
    """The MLP and Adam in a TrainState; for float16, Adam inside a dynamic loss scale.

    Args:
        precision: ``"bf16"``, ``"fp16"`` or ``"float32"``.
        lr: Adam's learning rate.

    Returns:
        A fresh TrainState (float32 parameters whatever the precision).
    """
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = optim.adam(lr=lr)
    if precision == "fp16":
        # GradScaler: fit's steps multiply the loss by the scale kept in the optimizer
        # state; the wrapper unscales the gradients, skips overflowing steps and adapts.
        opt = mixed_precision.with_loss_scale(opt)
    return train.TrainState.create(model, opt, jax.random.key(0))


def report_loss_scale(state: train.TrainState, history: train.History) -> None:
    """Prints the final loss scale and the number of steps skipped on an overflow.

    Args:
        state: the trained state (its optimizer state holds the scale).
        history: ``fit``'s history; each step's record has ``skipped`` (0 or 1).
    """
    scale = float(mixed_precision.current_loss_scale(state.opt_state))
    skipped = round(sum(record["skipped"] for record in history.steps))
    print(
        f"final loss scale: {scale:g}  (started at {2.0**16:g}); "
        f"skipped steps: {skipped} of {len(history.steps)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", choices=("bf16", "fp16", "float32"), default="bf16")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--smoke", action="store_true", help="a few steps only (CI)")
    args = parser.parse_args()

    to_float = ToFloat(scale=1 / 16)  # the digits' pixels are 0..16
    train_loader = DataLoader(
        load_digits("train"), args.batch_size, shuffle=True, seed=0, transform=to_float
    )
    test_loader = DataLoader(load_digits("test"), 256, transform=to_float)
    state = make_state(args.precision, args.lr)
    accuracy = {"accuracy": metrics.accuracy}
    # The same policy for evaluation: the test set runs in the 16-bit dtype too.
    eval_step = train.make_eval_step(
        losses.cross_entropy, metrics=accuracy, precision=args.precision
    )
    start = time.perf_counter()
    state, history = train.fit(
        state,
        train_loader,
        epochs=1 if args.smoke else args.epochs,
        loss_fn=losses.cross_entropy,
        metrics=accuracy,
        precision=args.precision,  # torch.autocast(dtype=...) for the whole model
        max_steps=5 if args.smoke else None,
    )
    results = train.evaluate(state, test_loader, eval_step=eval_step)
    print(
        f"trained {int(state.step)} steps in {args.precision} in "
        f"{time.perf_counter() - start:.1f} s on {jax.default_backend()}"
    )
    print(f"test accuracy: {results['accuracy']:.4f}  (test loss {results['loss']:.4f})")
    if args.precision == "fp16":
        report_loss_scale(state, history)


if __name__ == "__main__":
    main()
