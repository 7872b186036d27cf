"""apply's trace-time check of ``params`` and ``state`` against the model's ``init``.

Every entry is compared with what ``init`` gives (``jax.eval_shape``, so nothing is
computed): no entry missing, none unexpected, every shape equal and every dtype of the
same kind (floating, integer, bool, complex; a floating parameter may be of any float
width, as mixed precision stores them). The expected tree is computed once per module
instance and kept on it (modules are immutable), so an eager ``apply`` pays one tree
flatten and a comparison per leaf, and a jitted one nothing once compiled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from funcnet.errors import ShapeError

if TYPE_CHECKING:
    from funcnet.nn._module import Module

__all__ = ["check_params"]

#: Problems listed in full; the rest are counted.
MAX_LISTED = 10
_CACHE_ATTR = "_funcnet_expected"
_KINDS = (
    ("bool", jnp.bool_),
    ("integer", jnp.integer),
    ("floating", jnp.floating),
    ("complex", jnp.complexfloating),
)


class _Expected:
    """What ``init`` gives, flattened: the treedef of ``(params, state)`` and its leaves."""

    __slots__ = ("leaves", "params", "state", "treedef")

    def __init__(self, params: Any, state: Any) -> None:
        leaves, self.treedef = jax.tree_util.tree_flatten((params, state))
        self.leaves = [(tuple(leaf.shape), leaf.dtype) for leaf in leaves]
        self.params = params
        self.state = state


def check_params(module: Module, params: Mapping[str, Any], state: Mapping[str, Any]) -> None:
    """Raise ShapeError unless ``params`` and ``state`` fit what ``module.init`` gives.

    Python on shapes and dtypes only: at trace time under ``jax.jit``, and free once
    compiled.

    Raises:
        ShapeError: listing every missing, unexpected, mis-shaped or mis-typed entry
            (the first ``MAX_LISTED`` and a count), by dotted path.
    """
    expected = _expected(module)
    if expected is None:
        return
    leaves, treedef = jax.tree_util.tree_flatten((params, state))
    if treedef == expected.treedef and all(
        _fits(leaf, shape, dtype) for leaf, (shape, dtype) in zip(leaves, expected.leaves)
    ):
        return
    problems, hints = _problems(module, expected, params, state)
    if problems:
        raise ShapeError(_message(module, problems, hints))


def _expected(module: Module) -> _Expected | None:
    """The module's expected tree, computed once and kept on the (immutable) module;
    None when its ``init`` cannot be traced abstractly (nothing is checked then)."""
    cached = module.__dict__.get(_CACHE_ATTR, False)
    if cached is not False:
        return cached
    try:
        params, state = jax.eval_shape(lambda: module._architecture_init(jax.random.key(0)))
        expected: _Expected | None = _Expected(params, state)
    except Exception:  # an init that only runs on concrete values: leave it to forward
        expected = None
    object.__setattr__(module, _CACHE_ATTR, expected)
    return expected


def _fits(leaf: Any, shape: tuple[int, ...], dtype: Any) -> bool:
    """The fast test: the same shape, and the same dtype or kind (a bfloat16 copy of
    float32 parameters fits); anything else goes to ``_problems``."""
    if getattr(leaf, "shape", None) != shape:
        return False
    got = getattr(leaf, "dtype", None)
    return got == dtype or (got is not None and _kind(got) == _kind(dtype))


# ---------------------------------------------------------------- the slow path
def _entries(tree: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """``{path: leaf}`` of a tree of mappings, lists and tuples (None counts as absent)."""
    if isinstance(tree, Mapping):
        items: Any = tree.items()
    elif isinstance(tree, (list, tuple)):
        items = enumerate(tree)
    else:
        return {} if tree is None else {prefix: tree}
    out: dict[tuple[str, ...], Any] = {}
    for key, value in items:
        out.update(_entries(value, (*prefix, str(key))))
    return out


def _problems(
    module: Module, expected: _Expected, params: Any, state: Any
) -> tuple[list[str], list[str]]:
    """Every problem of ``params`` and ``state`` (one line each) and general hints."""
    problems: list[str] = []
    hints: list[str] = []
    got = {"params": _entries(params), "state": _entries(state)}
    want = {"params": _entries(expected.params), "state": _entries(expected.state)}
    if got["params"].keys() == want["state"].keys() != want["params"].keys() and (
        got["state"].keys() == want["params"].keys()
    ):
        hints.append("params and state look swapped: call apply(params, state, *inputs)")
    for kind in ("params", "state"):
        for path, spec in want[kind].items():
            leaf = got[kind].get(path)
            if leaf is not None and _matches(spec, leaf):
                continue
            owner, depth = _owner(module, path)
            if leaf is None:
                entry = "parameter" if kind == "params" else "state entry"
                problems.append(
                    f"{_dotted(path[:-1])} ({type(owner).__name__}): no {entry} "
                    f"{path[-1]!r} (expected {_spec(spec)})"
                )
            else:
                problems.append(f"{_label(path, owner, kind)}: {_leaf_problem(spec, leaf, depth)}")
        for path, leaf in got[kind].items():
            if path not in want[kind]:
                problems.append(
                    f"{_label(path, _owner(module, path)[0], kind)}: unexpected {kind} entry "
                    f"{_describe(leaf)}; {type(module).__name__}.init makes no such entry"
                )
        if any("." in path[0] for path in got[kind] if path not in want[kind]):
            hints.append(
                f"the {kind} dict looks like a flat state dict ('fc1.weight' keys): make the nested "
                f"dicts with `params, state = nn.load_state_dict(model, flat)`"
            )
    return problems, hints


def _matches(spec: Any, leaf: Any) -> bool:
    """Whether ``leaf`` has ``spec``'s shape and a dtype of its kind."""
    try:
        shape, dtype = tuple(np.shape(leaf)), jnp.result_type(leaf)
    except TypeError:
        return False
    return shape == tuple(spec.shape) and _kind(dtype) == _kind(spec.dtype)


def _leaf_problem(spec: Any, leaf: Any, depth: int | None) -> str:
    """What is wrong with ``leaf`` where ``spec`` (a ShapeDtypeStruct) is expected;
    ``depth``: the ``num_layers`` of the LayerStack the entry is stacked by, if any."""
    try:
        shape, dtype = tuple(np.shape(leaf)), jnp.result_type(leaf)
    except TypeError:
        return f"expected an array {_spec(spec)}, got a {type(leaf).__name__}"
    want_shape = tuple(spec.shape)
    wrong_kind = _kind(dtype) != _kind(spec.dtype)
    text = f"expected {_spec(spec)}, got {shape} {dtype}"
    if depth is not None and shape[:1] != (depth,):
        return (
            f"{text} (a LayerStack of {depth} has every parameter and state entry stacked "
            f"along a leading axis of {depth}: use the params made by this LayerStack's init)"
        )
    if wrong_kind:
        what = f"an {dtype} array" if str(dtype)[0] in "aeiou" else f"a {dtype} array"
        return f"{text} ({what} where init makes {_kind(spec.dtype)}: .astype(jnp.{spec.dtype}))"
    if len(want_shape) >= 2 and shape == (want_shape[-1], want_shape[-2], *want_shape[:-2]):
        spatial = ", *kernel" if len(want_shape) > 2 else ""
        text += (
            f" (PyTorch's (out, in{spatial}) layout? load PyTorch weights with "
            f"nn.load_state_dict(model, torch_state_dict, from_torch=True))"
        )
    return text


def _kind(dtype: Any) -> str:
    for name, kind in _KINDS:
        if jnp.issubdtype(dtype, kind):
            return name
    return str(dtype)


def _spec(spec: Any) -> str:
    return f"{tuple(spec.shape)} {spec.dtype}"


def _describe(leaf: Any) -> str:
    try:
        return f"{tuple(np.shape(leaf))} {jnp.result_type(leaf)}"
    except TypeError:
        return f"of type {type(leaf).__name__}"


def _owner(module: Module, path: tuple[str, ...]) -> tuple[Module, int | None]:
    """The module owning the entry at ``path``, and the ``num_layers`` of the outermost
    LayerStack on the way (its entries have that leading axis), or None."""
    owner, depth = module, None
    for name in (*path[:-1], None):
        inner = owner._params_owner()
        if inner is not owner and depth is None:
            depth = getattr(owner, "num_layers", None)
        owner = inner
        child = None if name is None else dict(owner.named_children()).get(name)
        if child is None:
            break
        owner = child
    return owner, depth


def _label(path: tuple[str, ...], owner: Module, kind: str) -> str:
    """``"model.fc1.weight (Linear)"``: the dotted path and the module owning the entry."""
    state = " state" if kind == "state" else ""
    return f"{_dotted(path)} ({type(owner).__name__}{state})"


def _dotted(path: tuple[str, ...]) -> str:
    """``model.fc1.weight``; a key that holds a dot itself is quoted: ``model['fc1.weight']``."""
    return "model" + "".join(f"[{name!r}]" if "." in name else f".{name}" for name in path)


def _message(module: Module, problems: list[str], hints: list[str]) -> str:
    name = type(module).__name__
    count = len(problems)
    lines = [
        f"{name}.apply: params/state do not fit this {name} "
        f"({count} problem{'s' if count != 1 else ''}; entries are checked against "
        f"{name}.init):"
    ]
    lines += [f"  {problem}" for problem in problems[:MAX_LISTED]]
    if count > MAX_LISTED:
        lines.append(f"  ... and {count - MAX_LISTED} more")
    lines += hints or [
        "were they made by another model or configuration? make them with this model's "
        "init, or load a checkpoint with nn.load_state_dict(model, flat), which converts "
        "and checks it"
    ]
    return "\n".join(lines)
