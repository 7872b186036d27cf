"""Flat PyTorch-style views of parameter trees: state_dict, load_state_dict and
torch_state_dict (PyTorch's layouts, converted by the rules of ``_torch_layout``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from funcnet.errors import StateDictError
from funcnet.nn._torch_layout import Slot, torch_slots

if TYPE_CHECKING:
    from funcnet.nn._module import Module

__all__ = [
    "flatten_dict",
    "load_state_dict",
    "num_parameters",
    "state_dict",
    "torch_state_dict",
    "unflatten_dict",
]

FlattenInputs = Mapping[str, tuple[int, ...]]


def flatten_dict(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"fc1": {"weight": w}}`` → ``{"fc1.weight": w}`` (empty sub-dicts vanish)."""
    flat: dict[str, Any] = {}
    for name, value in tree.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping):
            flat.update(flatten_dict(value, key + "."))
        else:
            flat[key] = value
    return flat


def unflatten_dict(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"fc1.weight": w}`` → ``{"fc1": {"weight": w}}``."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = tree
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    return tree


def state_dict(params: Mapping[str, Any], state: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One flat dict of parameters and state, keyed like PyTorch (``"fc1.weight"``,
    ``"bn.running_mean"``). Arrays are not copied."""
    flat = flatten_dict(params)
    for key, value in flatten_dict(state or {}).items():
        if key in flat:
            raise StateDictError(f"state_dict: {key!r} is both a parameter and a state entry")
        flat[key] = value
    return flat


def num_parameters(params: Mapping[str, Any]) -> int:
    """The total number of elements in a parameter tree."""
    return sum(int(np.prod(jnp.shape(leaf))) for leaf in jax.tree_util.tree_leaves(params))


def load_state_dict(
    model: Module,
    flat: Mapping[str, Any],
    *,
    strict: bool = True,
    into: tuple[Mapping[str, Any], Mapping[str, Any]] | None = None,
    from_torch: bool = False,
    flatten_inputs: FlattenInputs | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Builds ``(params, state)`` for ``model`` from a flat dict such as ``state_dict``'s.

    Values are copied into new arrays of the dtype ``model.init`` would give (as PyTorch's
    ``copy_`` converts), so changing a source array in place later (a NumPy array, a
    torch tensor's ``.numpy()`` view) leaves the result unchanged. Shapes must match
    exactly.

    With ``from_torch=True``, ``flat`` is a PyTorch ``state_dict`` (torch tensors on any
    device, or NumPy arrays) in PyTorch's layouts, and each entry is converted by the rule
    of the layer that owns it, found by walking ``model``'s module tree: a Linear weight
    ``(out, in)`` is transposed, a convolution kernel ``(C_out, C_in // groups, *k)``
    becomes ``(*k, C_in // groups, C_out)``, an Embedding weight is unchanged, an int64
    ``num_batches_tracked`` becomes int32; a ``LayerStack`` is read from PyTorch's
    ``ModuleList`` keys (``layers.0.…``, ``layers.1.…``). docs/pytorch-weights.md lists
    every rule.

    Args:
        model: the module whose structure the result must have.
        flat: ``{"fc1.weight": array, ...}`` (NumPy or JAX arrays; torch tensors with
            ``from_torch``).
        strict: if True, missing and unexpected keys are errors; if False, unexpected keys
            are ignored and missing ones are taken from ``into``.
        into: ``(params, state)`` (funcnet's layouts) supplying the entries that ``flat``
            lacks when ``strict=False``.
        from_torch: ``flat`` is in PyTorch's layouts: convert every entry.
        flatten_inputs: with ``from_torch``, ``{path of a Linear: (C, *spatial)}`` for each
            Linear that reads a ``Flatten``-ed image: PyTorch flattened ``(C, H, W)``,
            funcnet flattens ``(H, W, C)``, so that weight's input rows are reordered.

    Returns:
        ``(params, state)`` as nested dicts.

    Raises:
        StateDictError: listing every missing, unexpected and mis-shaped key at once
            (with ``from_torch``, PyTorch's keys and both layouts' shapes).
        ValueError: ``flatten_inputs`` without ``from_torch``, or naming no Linear of
            ``model``, or a shape that does not multiply to its ``in_features``.

    Examples:
        >>> import numpy as np
        >>> from funcnet import nn
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> torch_sd = {  # what torch.nn.Sequential(...).state_dict() holds: (out, in)
        ...     "0.weight": np.ones((4, 3)), "0.bias": np.zeros(4),
        ...     "2.weight": np.ones((2, 4)), "2.bias": np.zeros(2)}
        >>> params, state = nn.load_state_dict(model, torch_sd, from_torch=True)
        >>> params["0"]["weight"].shape
        (3, 4)
    """
    if flatten_inputs is not None and not from_torch:
        raise ValueError(
            "load_state_dict: flatten_inputs converts PyTorch weights; pass from_torch=True"
        )
    want_params, want_state = jax.eval_shape(model._architecture_init, jax.random.key(0))
    fallback = state_dict(*into) if into is not None else {}
    if from_torch:
        slots = torch_slots(model, want_params, want_state, flatten_inputs)
        _raise_problems(type(model).__name__, _torch_problems(flat, slots, strict, fallback))
        values = _from_torch(flat, slots, fallback)
    else:
        expected = {**flatten_dict(want_params), **flatten_dict(want_state)}
        problems = _problems(flat, expected, strict, fallback)
        if problems:
            problems += _torch_hint(model, flat, want_params, want_state)
        _raise_problems(type(model).__name__, problems)
        values = {k: flat[k] if k in flat else fallback[k] for k in expected}
    return _filled(want_params, want_state, values)


def load_flat(
    owner: str,
    want: tuple[Mapping[str, Any], Mapping[str, Any]],
    flat: Mapping[str, Any],
    *,
    strict: bool = True,
    into: tuple[Mapping[str, Any], Mapping[str, Any]] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``load_state_dict`` (funcnet's layouts) against given shapes instead of a model's.

    Args:
        owner: what is loaded, for the error message (``"ResNet"``).
        want: ``(params, state)`` of ``jax.ShapeDtypeStruct`` (``jax.eval_shape`` of an
            ``init``).
        flat, strict, into: as in :func:`load_state_dict`.
    """
    fallback = state_dict(*into) if into is not None else {}
    expected = {**flatten_dict(want[0]), **flatten_dict(want[1])}
    problems = _problems(flat, expected, strict, fallback)
    _raise_problems(owner, problems)
    values = {k: flat[k] if k in flat else fallback[k] for k in expected}
    return _filled(want[0], want[1], values)


def _filled(
    want_params: Mapping[str, Any], want_state: Mapping[str, Any], values: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Nested ``(params, state)`` of owned arrays from flat ``values``, in the wanted dtypes."""
    params = {k: _owned(values[k], s.dtype) for k, s in flatten_dict(want_params).items()}
    state = {k: _owned(values[k], s.dtype) for k, s in flatten_dict(want_state).items()}
    return unflatten_dict(params), unflatten_dict(state)


def torch_state_dict(
    model: Module,
    params: Mapping[str, Any],
    state: Mapping[str, Any] | None = None,
    *,
    flatten_inputs: FlattenInputs | None = None,
) -> dict[str, np.ndarray]:
    """``model``'s parameters and state as PyTorch's ``state_dict`` would hold them.

    The inverse of ``load_state_dict(model, flat, from_torch=True)``: every entry is
    converted to PyTorch's layout by the rule of the layer that owns it (so it needs the
    module tree, not just the arrays: a Linear and an Embedding weight are both 2-D),
    ``num_batches_tracked`` becomes int64, and a ``LayerStack``'s stacked entries become
    one key per block (``layers.0.…``). Load the result into the matching PyTorch model
    with ``torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})``
    or save it with ``checkpoint.save_safetensors``.

    Args:
        model: the module ``params`` and ``state`` belong to.
        params: its parameters, as ``model.init`` gives them (possibly trained).
        state: its state (``None`` or ``{}`` if none).
        flatten_inputs: ``{path of a Linear: (C, *spatial)}`` as for ``load_state_dict``:
            write that Linear's weight for PyTorch's channels-first ``Flatten``.

    Returns:
        ``{"fc1.weight": array, ...}`` with PyTorch's keys: fresh, C-contiguous NumPy
        arrays of the parameters' dtypes (bfloat16 stays ``ml_dtypes.bfloat16``).

    Raises:
        StateDictError: ``params``/``state`` do not match ``model`` (every missing,
            unexpected and mis-shaped key at once).
        ValueError: a ``flatten_inputs`` path that is no Linear of ``model``, or a shape
            that does not multiply to its ``in_features``.

    Examples:
        >>> import jax
        >>> from funcnet import nn
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> params, state = model.init(jax.random.key(0))
        >>> sd = nn.torch_state_dict(model, params, state)
        >>> sd["0.weight"].shape  # PyTorch's (out_features, in_features)
        (4, 3)
    """
    given = state_dict(params, state)
    want_params, want_state = jax.eval_shape(model._architecture_init, jax.random.key(0))
    expected = {**flatten_dict(want_params), **flatten_dict(want_state)}
    problems = _problems(given, expected, strict=True, fallback={})
    if problems:
        raise StateDictError(
            f"torch_state_dict: params and state do not match {type(model).__name__}:\n  "
            + "\n  ".join(problems)
        )
    out: dict[str, np.ndarray] = {}
    for slot in torch_slots(model, want_params, want_state, flatten_inputs):
        array = _numpy(given[slot.key])
        value = slot.layout.to_torch(array[slot.index] if slot.index else array)
        out[slot.torch_key] = np.array(value, dtype=slot.layout.torch_dtype, order="C")
    return out


def _listing(missing: list[str], unexpected: list[str]) -> list[str]:
    problems = []
    if missing:
        problems.append("missing keys: " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected keys: " + ", ".join(unexpected))
    return problems


def _problems(
    flat: Mapping[str, Any], expected: Mapping[str, Any], strict: bool, fallback: Mapping[str, Any]
) -> list[str]:
    """Missing, unexpected and mis-shaped keys of ``flat`` against funcnet's ``expected``."""
    missing = [k for k in expected if k not in flat and not (not strict and k in fallback)]
    unexpected = [k for k in flat if k not in expected] if strict else []
    problems = _listing(missing, unexpected)
    for key, spec in expected.items():
        if key in flat and tuple(np.shape(flat[key])) != tuple(spec.shape):
            problems.append(
                f"{key}: expected shape {tuple(spec.shape)}, got {tuple(np.shape(flat[key]))}"
            )
    return problems


def _torch_problems(
    flat: Mapping[str, Any], slots: list[Slot], strict: bool, fallback: Mapping[str, Any]
) -> list[str]:
    """As ``_problems``, for PyTorch's keys and layouts."""
    known = {slot.torch_key for slot in slots}
    missing = [
        s.torch_key
        for s in slots
        if s.torch_key not in flat and not (not strict and s.key in fallback)
    ]
    unexpected = [k for k in flat if k not in known] if strict else []
    problems = _listing(missing, unexpected)
    for slot in slots:
        if slot.torch_key not in flat:
            continue
        got = tuple(np.shape(flat[slot.torch_key]))
        if got != slot.layout.torch_shape:
            problems.append(
                f"{slot.torch_key}: expected PyTorch shape {slot.layout.torch_shape} "
                f"(funcnet's {slot.shape}), got {got}"
            )
    return problems


def _torch_hint(
    model: Module, flat: Mapping[str, Any], params: Mapping[str, Any], state: Mapping[str, Any]
) -> list[str]:
    """A line suggesting ``from_torch=True`` when the mis-shaped entries are all in
    PyTorch's layouts (a torch ``state_dict`` loaded as it is)."""
    try:
        slots = torch_slots(model, params, state)
    except (NotImplementedError, ValueError):
        return []
    wrong = [
        s
        for s in slots
        if not s.index and s.key in flat and tuple(np.shape(flat[s.key])) != s.shape
    ]
    if wrong and all(tuple(np.shape(flat[s.key])) == s.layout.torch_shape for s in wrong):
        return ["these are PyTorch's layouts: pass from_torch=True to convert them"]
    return []


def _raise_problems(owner: str, problems: list[str]) -> None:
    if problems:
        raise StateDictError(
            f"Error(s) in loading state_dict for {owner}:\n  " + "\n  ".join(problems)
        )


def _from_torch(
    flat: Mapping[str, Any], slots: list[Slot], fallback: Mapping[str, Any]
) -> dict[str, Any]:
    """funcnet's flat values from PyTorch's (or ``fallback``'s, for missing keys)."""
    blocks: dict[str, list[Any]] = {}
    stacked: dict[str, tuple[int, ...]] = {}
    for slot in slots:
        if slot.torch_key in flat:
            value = slot.layout.from_torch(_numpy(flat[slot.torch_key]))
        else:
            value = fallback[slot.key]
            value = np.asarray(value)[slot.index] if slot.index else value
        blocks.setdefault(slot.key, []).append(value)
        if slot.index:
            stacked[slot.key] = tuple(i + 1 for i in slot.index)
    values = {}
    for key, parts in blocks.items():
        if key in stacked:
            shape = (*stacked[key], *np.shape(parts[0]))
            values[key] = np.reshape(np.stack([np.asarray(p) for p in parts]), shape)
        else:
            values[key] = parts[0]
    return values


def _numpy(value: Any) -> np.ndarray:
    """``value`` as a NumPy array; a torch tensor (any device; bfloat16 through float32,
    exactly) without importing torch."""
    if type(value).__module__.startswith("torch"):
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        return value.numpy()
    return np.asarray(value)


def _owned(value: Any, dtype: Any) -> jax.Array:
    """``value`` as a JAX array of ``dtype`` that shares no memory with a mutable source.

    ``jnp.asarray`` may wrap a suitably aligned NumPy buffer without copying it; JAX
    arrays are immutable, so they alone may be shared.
    """
    if isinstance(value, jax.Array):
        return jnp.asarray(value, dtype=dtype)
    return jnp.array(_numpy(value), dtype=dtype, copy=True)
