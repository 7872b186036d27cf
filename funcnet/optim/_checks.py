"""Trace-time checks of what an optimizer is given: parameters, gradients, its state.

`checked` wraps a funcnet optimizer (every recipe, `chain`, `param_groups`, `masked`,
`freeze`, `accumulate`, `skip_nonfinite`, `with_ema`, `inject_hyperparams`). Its ``update``
compares, once, at the outermost funcnet optimizer of a call:

- the gradients with the parameters: the same tree, and each leaf the same shape (no
  silent broadcasting of ``(1,)`` onto ``(4, 3)``, no transposed gradients);
- the state with what ``init`` makes for those parameters (from ``jax.eval_shape``, cached):
  a state from another optimizer, or made for other parameters, is named as such. Without
  ``params`` (optax allows it), the gradients stand in for the parameters.

Only shapes and tree structures are read, in Python, while tracing: a compiled step is the
same program with or without these checks. Inner optimizers (the groups of `param_groups`,
the optimizer inside `accumulate`) see what the outermost one checked and check nothing.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp

from funcnet.errors import ShapeError

_depth = threading.local()
_made_by: collections.OrderedDict[Any, str] = collections.OrderedDict()
_MADE_BY_SIZE = 256  # the last state structures made by an outermost init, and by whom


@contextlib.contextmanager
def _inner() -> Iterator[None]:
    """Mark the code inside as running inside a checked optimizer."""
    _depth.n = getattr(_depth, "n", 0) + 1
    try:
        yield
    finally:
        _depth.n -= 1


def _outermost() -> bool:
    return getattr(_depth, "n", 0) == 0


def _key_name(key: Any) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _named_leaves(tree: Any) -> list[tuple[str, Any]]:
    """``(dotted name, leaf)`` pairs, PyTorch's names (``"fc1.weight"``)."""
    paths = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [(".".join(_key_name(k) for k in path), leaf) for path, leaf in paths]


def _shape(x: Any) -> tuple[int, ...]:
    shape = getattr(x, "shape", None)  # arrays, tracers, jax.ShapeDtypeStruct
    return tuple(shape) if shape is not None else tuple(jnp.shape(x))


def _dtype(x: Any) -> Any:
    dtype = getattr(x, "dtype", None)
    return jnp.dtype(dtype) if dtype is not None else jnp.result_type(x)


def _listed(names: list[str], limit: int = 5) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(repr(n) for n in names[:limit]) + more


def check_float_params(name: str, params: Any) -> None:
    """Raise ShapeError at ``init`` for a parameter that is not a real floating array.

    Integer parameters never move under Adam, AdamW and Adagrad, are truncated by SGD and
    explode under RMSprop. Complex parameters are refused too: JAX's gradient of a real
    loss is the conjugate of PyTorch's, so a step along it is wrong in the imaginary part.
    """
    for path, leaf in _named_leaves(params):
        dtype = _dtype(leaf)
        if jnp.issubdtype(dtype, jnp.complexfloating):
            raise ShapeError(
                f"{name}.init: parameter {path!r} is {dtype}; funcnet's optimizers update real "
                "floating parameters (JAX's gradient of a real loss is the conjugate of "
                "PyTorch's): keep the real and imaginary parts as two float parameters, or "
                f"freeze it (optim.freeze(opt, {path!r}))"
            )
        if not jnp.issubdtype(dtype, jnp.floating):
            raise ShapeError(
                f"{name}.init: parameter {path!r} is {dtype}; optimizers update floating "
                "parameters: cast with .astype(jnp.float32) or freeze it "
                f"(optim.freeze(opt, {path!r}))"
            )


def _match_structure(name: str, grads: Any, other: Any, what: str) -> None:
    """Raise ShapeError unless ``grads`` has the tree of ``other`` (``what``: its name)."""
    if jax.tree.structure(grads) == jax.tree.structure(other):
        return
    g_names = [n for n, _ in _named_leaves(grads)]
    o_names = [n for n, _ in _named_leaves(other)]
    missing = [n for n in o_names if n not in set(g_names)]
    extra = [n for n in g_names if n not in set(o_names)]
    parts = []
    if missing:
        parts.append(f"no gradient for {_listed(missing)}")
    if extra:
        parts.append(f"gradient for {_listed(extra)}, which is no {what}")
    if not parts:
        parts.append(
            f"the gradients are {jax.tree.structure(grads)}, the {what}s "
            f"{jax.tree.structure(other)}"
        )
    raise ShapeError(
        f"{name}.update: the gradients do not match the {what}s: {'; '.join(parts)}. Pass "
        "gradients with the parameters' tree, e.g. jax.grad(loss_fn)(params)."
    )


def _first_other_shape(leaves: list[Any], reference: list[Any]) -> int | None:
    """The index of the first leaf whose shape is not its reference's (names cost more)."""
    for i, (x, r) in enumerate(zip(leaves, reference)):
        if _shape(x) != _shape(r):
            return i
    return None


def _match_shapes(name: str, grads: Any, params: Any) -> None:
    """Raise ShapeError for the first gradient whose shape is not its parameter's."""
    index = _first_other_shape(jax.tree.leaves(grads), jax.tree.leaves(params))
    if index is not None:
        path, g = _named_leaves(grads)[index]
        p = jax.tree.leaves(params)[index]
        hint = " (transposed?)" if _shape(g) == _shape(p)[::-1] else ""
        raise ShapeError(
            f"{name}.update: gradient for {path!r} has shape {_shape(g)}, the parameter "
            f"{_shape(p)}{hint}; gradients are never broadcast onto parameters"
        )


def _kinds(tree: Any, out: list[str]) -> list[str]:
    """The NamedTuple classes of a state, outermost first, each once."""
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        if type(tree).__name__ not in out:
            out.append(type(tree).__name__)
    if isinstance(tree, tuple | list):
        for x in tree:
            _kinds(x, out)
    elif isinstance(tree, dict):
        for x in tree.values():
            _kinds(x, out)
    return out


def _short(treedef: Any, limit: int = 200) -> str:
    text = str(treedef)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _state_structure_error(name: str, state: Any, expected: Any, params_given: bool) -> str:
    made_by = _made_by.get(jax.tree.structure(state))
    if made_by is not None and made_by != name:
        return f"{name}.update got a state made by {made_by}'s init"
    got, want = _kinds(state, []), _kinds(expected, [])
    if got != want:
        return (
            f"{name}.update got a state that {name}'s init does not make (it holds "
            f"{', '.join(got) or type(state).__name__}; {name}'s init makes {', '.join(want)})"
        )
    s_names = [n for n, _ in _named_leaves(state)]
    e_names = [n for n, _ in _named_leaves(expected)]
    lacks = [n for n in e_names if n not in set(s_names)]
    extra = [n for n in s_names if n not in set(e_names)]
    if not lacks and not extra:
        return (
            f"{name}.update got a state of structure {_short(jax.tree.structure(state))}; "
            f"{name}'s init makes {_short(jax.tree.structure(expected))}"
        )
    parts = []
    if lacks:
        parts.append(f"the state has no {_listed(lacks)}")
    if extra:
        why = "which init does not make" if params_given else "for which there is no gradient"
        parts.append(f"the state has {_listed(extra)}, {why}")
    if params_given:
        return f"{name}.update got a state made by init for other parameters: {'; '.join(parts)}"
    return (
        f"{name}.update: the gradients (given without params) do not match the optimizer "
        f"state: {'; '.join(parts)}"
    )


def _match_state(name: str, state: Any, expected: Any, grads: Any, params_given: bool) -> None:
    """Raise ShapeError unless ``state`` has the tree and shapes of ``expected``."""
    if jax.tree.structure(state) != jax.tree.structure(expected):
        raise ShapeError(
            _state_structure_error(name, state, expected, params_given)
            + ": pass the state made by this optimizer's init, opt_state = opt.init(params)."
        )
    index = _first_other_shape(jax.tree.leaves(state), jax.tree.leaves(expected))
    if index is not None:
        path, s = _named_leaves(state)[index]
        e = jax.tree.leaves(expected)[index]
        grad_names = [n for n, _ in _named_leaves(grads)]
        owner = max(
            (g for g in grad_names if path == g or path.endswith("." + g)), key=len, default=None
        )
        if owner is not None and not params_given:
            raise ShapeError(
                f"{name}.update: gradient for {owner!r} has shape {tuple(e.shape)}, the "
                f"optimizer state holds {_shape(s)} for it (at {path!r}); gradients are never "
                "broadcast onto parameters"
            )
        raise ShapeError(
            f"{name}.update: optimizer state entry {path!r} has shape {_shape(s)}, but init "
            f"makes {tuple(e.shape)} for these parameters: pass the state made by this "
            "optimizer's init for the same parameters."
        )


def _stand_in(tree: Any) -> Any:
    """Shape-only parameters; a non-float leaf (a gradient standing in) counts as float32."""

    def leaf(x: Any) -> jax.ShapeDtypeStruct:
        dtype = _dtype(x)
        if not jnp.issubdtype(dtype, jnp.inexact):
            dtype = jnp.dtype(jnp.float32)
        return jax.ShapeDtypeStruct(_shape(x), dtype)

    return jax.tree.map(leaf, tree)


def _expected_state(init: Callable[[Any], Any], cache: dict, params: Any) -> Any:
    """``jax.eval_shape(init, params)``, cached by the parameters' tree, shapes and dtypes."""
    stand_in = _stand_in(params)
    leaves, treedef = jax.tree.flatten(stand_in)
    key = (treedef, tuple((x.shape, x.dtype) for x in leaves))
    if key not in cache:
        if len(cache) >= 8:
            cache.pop(next(iter(cache)))
        with _inner():
            cache[key] = jax.eval_shape(init, stand_in)
    return cache[key]


def check_update(
    name: str, init: Callable[[Any], Any], cache: dict, grads: Any, state: Any, params: Any
) -> None:
    """All of an ``update``'s checks (see the module's docstring).

    Raises:
        ShapeError: the gradients do not match the parameters (or, without ``params``, the
            state), or the state does not match what ``init`` makes.
    """
    if params is not None:
        _match_structure(name, grads, params, "parameter")
        _match_shapes(name, grads, params)
    expected = _expected_state(init, cache, grads if params is None else params)
    _match_state(name, state, expected, grads, params is not None)


def _remember(state: Any, name: str) -> None:
    treedef = jax.tree.structure(state)
    _made_by[treedef] = name
    _made_by.move_to_end(treedef)
    while len(_made_by) > _MADE_BY_SIZE:
        _made_by.popitem(last=False)


def checked(
    name: str,
    tx: Any,
    *,
    float_params: bool = False,
    check_state: Callable[[Any], None] | None = None,
) -> Any:
    """``tx`` (a `GradientTransformation`) with the checks of this module.

    Args:
        name: the optimizer's name for the messages, e.g. ``"adam"``.
        tx: the transform to wrap; the result has its type.
        float_params: refuse non-float parameters at ``init`` (the recipes; a wrapper
            leaves it to the optimizers it holds, so a frozen integer parameter passes).
        check_state: ``tx``'s own check of its state's outer container, run first so that
            its message (e.g. `chain`'s "got a state that is a 1-tuple") is the one given.

    Returns:
        The same transform, checked.
    """
    cache: dict = {}

    def init(params: Any) -> Any:
        if float_params:
            check_float_params(name, params)
        outermost = _outermost()
        with _inner():
            state = tx.init(params)
        if outermost:
            _remember(state, name)
        return state

    def update(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        if _outermost():
            if check_state is not None:
                check_state(state)
            check_update(name, tx.init, cache, updates, state, params)
        with _inner():
            return tx.update(updates, state, params)

    return tx._replace(init=init, update=update)
