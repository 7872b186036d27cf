"""PyTorch's weight layouts: per-layer rules between funcnet's entries and ``torch.nn``'s.

Names already match (``fc1.weight``); layouts do not: a Linear weight is ``(in, out)`` here
and ``(out, in)`` in PyTorch, an Embedding weight is the same in both, and both are 2-D, so
no rule on shapes alone can convert a state dict. The conversion is driven by the module
tree: :func:`torch_slots` walks it alongside the parameter tree and gives, for every
PyTorch entry, the funcnet entry it belongs to and the :class:`Layout` that converts it.

Rules are looked up by class name (``_RULES``), for the classes of ``funcnet.nn`` and the
first ``funcnet.nn`` class among a user subclass's bases. A module of the user's own with
``nn.Parameter``/``nn.Buffer`` declarations keeps its entries unchanged (its author chose
their layout); a ``funcnet.nn`` layer with an entry no rule knows raises, so a new layer
cannot be converted wrongly in silence (tests/nn/test_torch_weights.py checks every
registered layer).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from funcnet.nn._module import Module
from funcnet.nn._remat import Remat
from funcnet.nn._stack import LayerStack

__all__: list[str] = []

Shape = tuple[int, ...]
Convert = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Layout:
    """How one funcnet entry is stored in PyTorch.

    Attributes:
        torch_shape: the entry's shape in PyTorch.
        to_torch: funcnet array → PyTorch-layout array (NumPy, possibly a view).
        from_torch: the inverse.
        torch_dtype: PyTorch's dtype when it differs from funcnet's (``num_batches_tracked``
            is int64 there, int32 here), else None.
    """

    torch_shape: Shape
    to_torch: Convert
    from_torch: Convert
    torch_dtype: Any = None


@dataclasses.dataclass(frozen=True)
class Slot:
    """One PyTorch entry and the funcnet entry (or one block of a stacked entry) it holds.

    Attributes:
        torch_key: the PyTorch name, e.g. ``"layers.0.linear1.weight"``.
        key: the funcnet name, e.g. ``"layers.linear1.weight"`` for a ``LayerStack``.
        index: the block's position along a ``LayerStack``'s leading axes (``()`` if none).
        shape: the funcnet shape of one block's entry (without the stacked axes).
        layout: the conversion.
        is_state: whether the entry lives in ``state`` (a buffer) rather than ``params``.
    """

    torch_key: str
    key: str
    index: tuple[int, ...]
    shape: Shape
    layout: Layout
    is_state: bool


Rule = Callable[[Module, str, Shape, Any], Layout]


def _identity(array: np.ndarray) -> np.ndarray:
    return array


def same(shape: Shape, torch_dtype: Any = None) -> Layout:
    """The entry is stored identically in PyTorch."""
    return Layout(tuple(shape), _identity, _identity, torch_dtype)


def permuted(shape: Shape, axes: Sequence[int]) -> Layout:
    """PyTorch's array is ``funcnet_array.transpose(axes)``."""
    axes = tuple(axes)
    back = tuple(int(a) for a in np.argsort(axes))
    return Layout(
        tuple(shape[a] for a in axes),
        lambda a: np.transpose(a, axes),
        lambda t: np.transpose(t, back),
    )


def reshaped(shape: Shape, torch_shape: Shape) -> Layout:
    """The same elements in the same order, PyTorch's array of shape ``torch_shape``."""
    shape, torch_shape = tuple(shape), tuple(torch_shape)
    return Layout(torch_shape, lambda a: np.reshape(a, torch_shape), lambda t: np.reshape(t, shape))


def transposed(shape: Shape) -> Layout:
    """A 2-D weight stored ``(in, out)`` here and ``(out, in)`` in PyTorch."""
    return permuted(shape, (1, 0))


def flattened_linear(shape: Shape, torch_input: Shape) -> Layout:
    """A Linear weight after a ``Flatten`` of a channels-first (PyTorch) / channels-last
    (funcnet) input.

    PyTorch flattens ``(C, *spatial)`` and funcnet ``(*spatial, C)``, so the same feature
    sits in a different row: funcnet's ``(in, out)`` weight is PyTorch's transposed with its
    input axis read as ``(C, *spatial)`` and reordered to ``(*spatial, C)``.
    """
    n_in, n_out = shape
    c, *spatial = torch_input

    def to_torch(a: np.ndarray) -> np.ndarray:
        rows = np.moveaxis(np.reshape(a, (*spatial, c, n_out)), -2, 0)
        return np.reshape(rows, (n_in, n_out)).T

    def from_torch(t: np.ndarray) -> np.ndarray:
        rows = np.moveaxis(np.reshape(t.T, (c, *spatial, n_out)), 0, -2)
        return np.reshape(rows, (n_in, n_out))

    return Layout((n_out, n_in), to_torch, from_torch)


class _Unknown(KeyError):
    """A rule does not know an entry name."""


def _unchanged(*names: str, counters: Sequence[str] = ()) -> Rule:
    """A rule for layers whose entries ``names`` import unchanged; ``counters`` are int64
    scalars in PyTorch (``num_batches_tracked``)."""

    def rule(module: Module, name: str, shape: Shape, option: Any) -> Layout:
        if name in counters:
            return same(shape, np.int64)
        if name not in names:
            raise _Unknown(name)
        return same(shape)

    return rule


def _linear(module: Module, name: str, shape: Shape, option: Any) -> Layout:
    if name == "bias":
        return same(shape)
    if name != "weight":
        raise _Unknown(name)
    return transposed(shape) if option is None else flattened_linear(shape, option)


def _bilinear(module: Module, name: str, shape: Shape, option: Any) -> Layout:
    # funcnet's Bilinear weight is (in1_features, in2_features, out_features), so that
    # y = einsum("...i,...j,ijo->...o", x1, x2, weight); PyTorch's is (out, in1, in2).
    if name == "bias":
        return same(shape)
    if name != "weight":
        raise _Unknown(name)
    return permuted(shape, (2, 0, 1))


def _conv(module: Module, name: str, shape: Shape, option: Any) -> Layout:
    # Conv: funcnet (*kernel, C_in // groups, C_out), PyTorch (C_out, C_in // groups, *kernel).
    # ConvTranspose: funcnet (*kernel, C_out // groups, C_in), PyTorch (C_in, C_out //
    # groups, *kernel). Either way the last two axes swap and move first; no kernel flip.
    if name == "bias":
        return same(shape)
    if name != "weight":
        raise _Unknown(name)
    nd = len(shape) - 2
    return permuted(shape, (nd + 1, nd, *range(nd)))


_RECURRENT_WEIGHT = re.compile(r"weight_(ih|hh|hr)(_l\d+(_reverse)?)?")
_RECURRENT_BIAS = re.compile(r"bias_(ih|hh)(_l\d+(_reverse)?)?")


def _recurrent(module: Module, name: str, shape: Shape, option: Any) -> Layout:
    # weight_ih (in, gates·H), weight_hh (H or proj, gates·H), weight_hr (H, proj): each
    # PyTorch's transposed, gates in PyTorch's order along the same axis; biases unchanged.
    if _RECURRENT_WEIGHT.fullmatch(name):
        return transposed(shape)
    if _RECURRENT_BIAS.fullmatch(name):
        return same(shape)
    raise _Unknown(name)


def _attention(module: Module, name: str, shape: Shape, option: Any) -> Layout:
    if name in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"):
        return transposed(shape)
    if name == "in_proj_bias":
        return same(shape)
    if name in ("bias_k", "bias_v"):  # PyTorch (1, 1, embed_dim)
        return reshaped(shape, (1, 1, math.prod(shape)))
    raise _Unknown(name)


_AFFINE = ("weight", "bias")
_BATCH_NORM = _unchanged(*_AFFINE, "running_mean", "running_var", counters=("num_batches_tracked",))

_RULES: dict[str, Rule] = {
    "Linear": _linear,
    "Bilinear": _bilinear,
    **dict.fromkeys(
        ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"],
        _conv,
    ),
    **dict.fromkeys(["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"], _recurrent),
    "MultiheadAttention": _attention,
    **dict.fromkeys(
        [
            *("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm"),
            *("InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d"),
        ],
        _BATCH_NORM,
    ),
    **dict.fromkeys(["LayerNorm", "GroupNorm", "RMSNorm"], _unchanged(*_AFFINE)),
    **dict.fromkeys(
        ["Embedding", "EmbeddingBag", "PReLU", "LearnedPositionalEmbedding"],
        _unchanged("weight"),
    ),
}


def _is_funcnet(cls: type) -> bool:
    """Whether ``cls`` is a layer of ``funcnet.nn`` (zoo models own their entries, as a
    user's module does)."""
    return cls.__module__.startswith("funcnet.nn.")


def rule_for(cls: type) -> Rule | None:
    """The rule for a module class: its own if it is a ``funcnet.nn`` class, else that of
    the first ``funcnet.nn`` base class with one (a user subclass of ``nn.Linear``), else
    None."""
    for base in cls.__mro__:
        if _is_funcnet(base) and base.__name__ in _RULES:
            return _RULES[base.__name__]
    return None


def _layout(module: Module, name: str, shape: Shape, option: Any, where: str) -> Layout:
    cls = type(module)
    rule = rule_for(cls)
    if rule is None:
        if _is_funcnet(cls):
            raise NotImplementedError(
                f"{where} ({cls.__name__}): funcnet has no PyTorch layout rule for "
                f"{cls.__name__} (entry {name!r}); add one to funcnet/nn/_torch_layout.py"
            )
        return same(shape)  # a user's own module: its author chose the layout
    try:
        return rule(module, name, shape, option)
    except _Unknown:
        if _is_funcnet(cls):
            raise NotImplementedError(
                f"{where} ({cls.__name__}): funcnet's PyTorch layout rule for {cls.__name__} "
                f"does not know the entry {name!r}; add it to funcnet/nn/_torch_layout.py"
            ) from None
        return same(shape)  # an entry a user's subclass added


@dataclasses.dataclass
class _Walk:
    """What one traversal collects."""

    options: Mapping[str, Any]
    slots: list[Slot] = dataclasses.field(default_factory=list)
    seen_options: set[str] = dataclasses.field(default_factory=set)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def torch_slots(
    model: Module,
    params: Mapping[str, Any],
    state: Mapping[str, Any],
    flatten_inputs: Mapping[str, Sequence[int]] | None = None,
) -> list[Slot]:
    """Every PyTorch entry of ``model``, module by module (parents first).

    Args:
        model: the module tree that drives the conversion.
        params: its parameter tree (arrays or ``jax.ShapeDtypeStruct``s).
        state: its state tree.
        flatten_inputs: ``{path of a Linear: (C, *spatial)}``: that Linear reads a
            flattened channels-first image in PyTorch (see :func:`flattened_linear`).

    Raises:
        ValueError: a ``flatten_inputs`` path that is no Linear of the model, or a shape
            whose product is not the Linear's ``in_features``.
        NotImplementedError: a ``funcnet.nn`` layer without a rule.
    """
    options = dict(flatten_inputs or {})
    walk = _Walk(options)
    _visit(walk, model, "", "", (), (params, state))
    unused = sorted(set(options) - walk.seen_options)
    if unused:
        raise ValueError(
            f"flatten_inputs: no Linear at {unused} in {type(model).__name__}; the keys are "
            f"module paths such as 'fc1' or 'classifier.0' (the Linear's weight is "
            f"'<path>.weight')"
        )
    return walk.slots


def _visit(
    walk: _Walk,
    module: Module,
    path: str,
    torch_path: str,
    index: tuple[int, ...],
    nodes: tuple[Mapping[str, Any], Mapping[str, Any]],
) -> None:
    """Adds the slots of ``module`` (at funcnet path ``path``) and its descendants."""
    if isinstance(module, Remat):  # transparent: its block's entries sit at its place
        _visit(walk, module.block, path, torch_path, index, nodes)
        return
    if isinstance(module, LayerStack):  # a ModuleList of num_layers blocks in PyTorch
        for i in range(module.num_layers):
            block_path = _join(torch_path, str(i))
            _visit(walk, module.layer, path, block_path, (*index, i), nodes)
        return
    option = _option(walk, module, path)
    children = dict(module.named_children())
    where = f"model.{path}" if path else "model"
    for is_state, node in enumerate(nodes):
        for name, value in node.items():
            if isinstance(value, Mapping):
                if name not in children:  # a sub-dict of a custom init: unchanged
                    _plain(walk, value, _join(path, name), _join(torch_path, name), index, is_state)
                continue
            shape = tuple(np.shape(value))[len(index) :]
            layout = _layout(module, name, shape, option, where)
            walk.slots.append(
                Slot(
                    _join(torch_path, name), _join(path, name), index, shape, layout, bool(is_state)
                )
            )
    for name, child in children.items():
        sub = tuple(node.get(name, {}) for node in nodes)
        _visit(walk, child, _join(path, name), _join(torch_path, name), index, sub)


def _plain(
    walk: _Walk,
    node: Mapping[str, Any],
    path: str,
    torch_path: str,
    index: tuple[int, ...],
    is_state: int,
) -> None:
    for name, value in node.items():
        if isinstance(value, Mapping):
            _plain(walk, value, _join(path, name), _join(torch_path, name), index, is_state)
        else:
            shape = tuple(np.shape(value))[len(index) :]
            key, torch_key = _join(path, name), _join(torch_path, name)
            walk.slots.append(Slot(torch_key, key, index, shape, same(shape), bool(is_state)))


def _option(walk: _Walk, module: Module, path: str) -> Any:
    """The ``flatten_inputs`` shape for the Linear at ``path``, checked, or None."""
    if path not in walk.options:
        return None
    walk.seen_options.add(path)
    value = walk.options[path]
    if rule_for(type(module)) is not _linear:
        raise ValueError(
            f"flatten_inputs[{path!r}]: {path} is a {type(module).__name__}, not a Linear"
        )
    shape = tuple(value) if isinstance(value, Sequence) else ()
    if len(shape) < 2 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ValueError(
            f"flatten_inputs[{path!r}]: expected PyTorch's (C, *spatial) shape before the "
            f"Flatten, e.g. (64, 7, 7), got {value!r}"
        )
    in_features = getattr(module, "in_features", math.prod(shape))
    if math.prod(shape) != in_features:
        raise ValueError(
            f"flatten_inputs[{path!r}]: {shape} holds {math.prod(shape)} features but "
            f"{path} (Linear) has in_features={in_features}"
        )
    return shape
