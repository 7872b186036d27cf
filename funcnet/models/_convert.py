"""Loading PyTorch state dicts into zoo models, and converting their files.

``from_torch`` converts a torchvision or Hugging Face ``state_dict`` in memory;
``convert_file`` converts a file into a weights file for ``weights=`` (the
``funcnet-convert`` command, ``funcnet/models/convert.py``).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from funcnet import checkpoint, nn
from funcnet.models._weights import Pretrainable, save_weights
from funcnet.nn._module import Params, State

__all__ = ["convert_file", "from_torch", "to_torch"]


def from_torch(model: nn.Module, state_dict: Mapping[str, Any]) -> tuple[Params, State]:
    """``(params, state)`` for a zoo model from its PyTorch counterpart's ``state_dict``.

    Applies the model's own rules where names alone do not suffice (Hugging Face GPT-2's
    prefix and ``Conv1D`` layout, the (C, H, W) flatten before VGG's classifier, see
    ``Pretrainable.torch_flatten_inputs``); otherwise it is
    ``nn.load_state_dict(model, state_dict, from_torch=True)``.

    Args:
        model: a zoo model (or any funcnet module named like its PyTorch counterpart).
        state_dict: torchvision's or Hugging Face's ``state_dict`` (torch tensors or NumPy).

    Returns:
        ``(params, state)`` in funcnet's layouts.

    Raises:
        funcnet.errors.StateDictError: listing every missing, unexpected and mis-shaped key.
    """
    convert = _hook(model, "convert_torch")
    if convert is not None:
        return convert(model, state_dict)
    return nn.load_state_dict(
        model, state_dict, from_torch=True, flatten_inputs=_flatten_inputs(model)
    )


def to_torch(model: nn.Module, params: Params, state: State | None = None) -> dict[str, Any]:
    """The ``state_dict`` of a zoo model's PyTorch counterpart (NumPy arrays): the inverse of
    :func:`from_torch`, for ``torch_model.load_state_dict`` or a ``.safetensors`` file.

    Args:
        model: a zoo model (or any funcnet module).
        params: its parameters.
        state: its state (BatchNorm statistics), if any.

    Returns:
        ``{"conv1.weight": array, ...}`` in PyTorch's names, layouts and dtypes.
    """
    export = _hook(model, "export_torch")
    if export is not None:
        return export(model, params, state)
    return nn.torch_state_dict(model, params, state, flatten_inputs=_flatten_inputs(model))


def _hook(model: nn.Module, name: str) -> Any:
    """A conversion function defined next to ``model``'s class, if its module has one."""
    return getattr(sys.modules[type(model).__module__], name, None)


def _flatten_inputs(model: nn.Module) -> dict[str, tuple[int, ...]] | None:
    return model.torch_flatten_inputs() if isinstance(model, Pretrainable) else None


def build(name: str, **kwargs: Any) -> Pretrainable:
    """The zoo model ``funcnet.models.<name>(**kwargs)``.

    Raises:
        ValueError: ``name`` is no zoo model (the message lists them).
    """
    models = importlib.import_module("funcnet.models")
    if name in models.__all__:
        model = getattr(models, name)(**kwargs)
        if isinstance(model, Pretrainable):
            return model
    raise ValueError(f"unknown zoo model {name!r}; choose one of: {', '.join(model_names())}")


def model_names() -> list[str]:
    """The names ``build`` accepts: the zoo's model classes and factory functions."""
    models = importlib.import_module("funcnet.models")
    return [name for name in models.__all__ if _makes_model(models, getattr(models, name))]


def _makes_model(models: Any, obj: Any) -> bool:
    """Whether ``obj`` is a zoo model class or a function annotated to return one."""
    if isinstance(obj, type):
        return issubclass(obj, Pretrainable) and obj is not Pretrainable
    returns = getattr(obj, "__annotations__", {}).get("return")
    cls = getattr(models, returns, None) if isinstance(returns, str) else returns
    return isinstance(cls, type) and issubclass(cls, Pretrainable)


def convert_file(
    name: str,
    source: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    **model_kwargs: Any,
) -> Path:
    """Converts a PyTorch state dict file into a weights file for ``models.<name>``.

    Args:
        name: the zoo model (``"resnet18"``, ``"gpt2_small"``, ``"LeNet5"``).
        source: a ``.safetensors`` state dict. funcnet never unpickles: a ``.pth`` file is
            refused with the one line that converts it in PyTorch.
        dest: the ``.safetensors`` or ``.npz`` file to write.
        **model_kwargs: arguments of the model (``num_classes=10``).

    Returns:
        ``dest`` as a Path.
    """
    model = build(name, **model_kwargs)
    params, state = from_torch(model, checkpoint.load_safetensors(source))
    save_weights(dest, params, state)
    return Path(dest)
