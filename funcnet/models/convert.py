"""Convert a torchvision or Hugging Face state dict into a zoo model's weights file.

    python -m funcnet.models.convert MODEL SOURCE DEST [--arg NAME=VALUE ...]
    funcnet-convert resnet18 resnet18-torchvision.safetensors resnet18.safetensors
    funcnet-convert gpt2_small model.safetensors gpt2.safetensors       # Hugging Face GPT-2
    funcnet-convert resnet18 r18.safetensors r18_cifar.npz --arg stem=cifar --arg num_classes=10

MODEL names a zoo model (a function or class of ``funcnet.models``); ``--arg`` passes it
arguments. SOURCE is the PyTorch state dict as a ``.safetensors`` file, read with NumPy
alone. funcnet never unpickles: a ``.pth``/``.pt``/``.bin`` file is refused with the one
line that converts it in PyTorch. DEST is a ``.safetensors`` or ``.npz`` file in funcnet's
layouts, for ``MODEL(weights=DEST)``. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Sequence
from typing import Any

from funcnet import checkpoint, nn
from funcnet.errors import CheckpointError, StateDictError
from funcnet.models._convert import build, from_torch
from funcnet.models._weights import save_weights

__all__ = ["main"]


def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="funcnet-convert",
        description="Convert a torchvision or Hugging Face state dict into a funcnet.models "
        "weights file (MODEL(weights=DEST)).",
    )
    parser.add_argument("model", help="zoo model, e.g. resnet18, vgg16_bn, gpt2_small")
    parser.add_argument("source", help="the PyTorch state dict, a .safetensors file")
    parser.add_argument("dest", help=".safetensors or .npz file to write")
    parser.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a model argument (a Python literal or a string), e.g. num_classes=10",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: ``funcnet-convert MODEL SOURCE DEST [--arg NAME=VALUE ...]``."""
    args = _parser().parse_args(argv)
    kwargs = {}
    for item in args.arg:
        key, sep, text = item.partition("=")
        if not sep:
            _parser().error(f"--arg takes NAME=VALUE, got {item!r}")
        kwargs[key] = _value(text)
    try:
        model = build(args.model, **kwargs)
        params, state = from_torch(model, checkpoint.load_safetensors(args.source))
        dest = save_weights(args.dest, params, state)
    except (ValueError, TypeError, OSError, CheckpointError, StateDictError) as error:
        print(f"funcnet-convert: {error}", file=sys.stderr)
        return 1
    print(
        f"wrote {dest}: {nn.num_parameters(params):,} parameters; "
        f"models.{args.model}(weights={str(dest)!r}) loads them"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
