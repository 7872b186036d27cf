"""Pretrained weights for zoo models: the ``weights=`` argument and the files it reads.

A weights file holds one model's parameters and state in funcnet's layouts, under
PyTorch-style dotted names (``conv1.weight``, ``bn1.running_mean``): a ``.safetensors``
file or a ``.npz`` file written by ``checkpoint.save_params``. ``python -m
funcnet.models.convert`` (``funcnet-convert``) makes one from a torchvision or Hugging
Face state dict; :func:`save_weights` makes one from trained funcnet parameters.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax

from funcnet import checkpoint, nn
from funcnet.nn._module import Params, State
from funcnet.nn._state_dict import load_flat

__all__ = ["Pretrainable", "load_weights", "read_weights", "save_weights"]

#: The file types :func:`read_weights` and :func:`save_weights` know, by suffix.
SUFFIXES = (".safetensors", ".npz")


class Pretrainable(nn.Module):
    """Base of the zoo models: with ``weights=PATH``, ``init`` returns that file's values.

    ``model.init(key)`` (and so ``TrainState.create``) gives the file's parameters and
    state instead of random ones, checked against the architecture: every entry present,
    no extra entry, every shape equal. The file is read at each ``init``.
    """

    weights: str | None = None

    def __init__(self, weights: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self.weights = None if weights is None else os.fspath(weights)

    def init(self, key: jax.Array) -> tuple[Params, State]:
        """Random parameters and state, or the weights file's (see the class docstring)."""
        if self.weights is None:
            return super().init(key)
        want = jax.eval_shape(super().init, key)
        owner = f"{type(self).__name__} from {self.weights}"
        return load_flat(owner, want, read_weights(self.weights))

    def _architecture_init(self, key: jax.Array) -> tuple[Params, State]:
        """``init`` without reading the weights file: what ``apply`` checks params against."""
        return super().init(key)

    def torch_flatten_inputs(self) -> dict[str, tuple[int, ...]] | None:
        """``{path of a Linear: (C, *spatial)}`` for each Linear that reads a flattened
        image: PyTorch flattens (C, H, W), funcnet (H, W, C), so ``models.from_torch`` and
        ``models.to_torch`` reorder those weights' rows (``nn.load_state_dict``'s
        ``flatten_inputs``). None when there is none."""
        return None


def read_weights(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The flat ``{"conv1.weight": array, ...}`` dict of a weights file (NumPy arrays).

    Args:
        path: a ``.safetensors`` file, or a ``.npz`` file written by ``save_weights``
            or ``checkpoint.save_params``.

    Raises:
        ValueError: another suffix.
        funcnet.checkpoint.CheckpointError: the file is missing, truncated or corrupt, or a
            PyTorch pickle (``.pth``), never unpickled: the message gives the conversion.
    """
    path = Path(path)
    if path.suffix in (".safetensors", ".pt", ".pth", ".bin", ".ckpt"):
        return checkpoint.load_safetensors(path)  # refuses pickles, saying how to convert
    if path.suffix == ".npz":
        return dict(checkpoint.load_params(path, as_numpy=True))
    if not path.suffix and not path.exists():  # torchvision's "DEFAULT", "IMAGENET1K_V1"
        raise ValueError(
            f"weights={str(path)!r}: funcnet downloads nothing; weights= takes the path of a "
            f"file converted once from the PyTorch checkpoint, e.g. `funcnet-convert "
            f"resnet18 resnet18-torchvision.safetensors resnet18.safetensors` (docs/models.md)"
        )
    raise ValueError(
        f"{path}: a weights file is .safetensors or .npz, in funcnet's layouts; convert a "
        f"PyTorch or Hugging Face state dict once with "
        f"`funcnet-convert MODEL SOURCE.safetensors {path.stem}.safetensors` (docs/models.md)"
    )


def load_weights(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    strict: bool = True,
    into: tuple[Params, State] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(params, state)`` for ``model`` from a weights file (any funcnet module).

    Args:
        model: the architecture the file must match.
        path: a ``.safetensors`` or ``.npz`` weights file.
        strict: as in ``nn.load_state_dict``: with False, extra entries of the file are
            ignored and missing ones come from ``into``.
        into: ``(params, state)`` giving the entries the file lacks (``strict=False``):
            a new classifier head, say.

    Returns:
        ``(params, state)`` as nested dicts of arrays in ``model.init``'s dtypes.

    Raises:
        funcnet.errors.StateDictError: listing every missing, unexpected and mis-shaped
            entry.
    """
    return nn.load_state_dict(model, read_weights(path), strict=strict, into=into)


def save_weights(path: str | os.PathLike[str], params: Params, state: State | None = None) -> Path:
    """Writes ``params`` and ``state`` as a weights file (``.safetensors`` or ``.npz``).

    Args:
        path: the file; its suffix chooses the format. An existing file is replaced.
        params: a model's parameters.
        state: its state (BatchNorm statistics), if any.

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    flat = nn.state_dict(params, state)
    if path.suffix == ".safetensors":
        checkpoint.save_safetensors(path, flat)
    elif path.suffix == ".npz":
        checkpoint.save_params(path, flat)
    else:
        raise ValueError(f"{path}: name a .safetensors or .npz file")
    return path
