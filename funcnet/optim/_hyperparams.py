"""Hyper-parameters that live in the optimizer state.

PyTorch keeps ``lr`` (and the other hyper-parameters) in ``optimizer.param_groups``, where a
training loop reads and changes them between steps. funcnet keeps them in the optimizer
state instead: a `HyperparamsState` node holds their current values as JAX scalars, so
changing one between steps is a new *value* for the same compiled program, never a
recompilation. Every funcnet optimizer keeps its ``lr`` there (``in_state=("lr",)``);
`current_lr`, `get_hyperparams` and `set_hyperparams` read and write those nodes, and
`inject_hyperparams` gives the same to any other optimizer factory, optax's included.
"""

from __future__ import annotations

import functools
import inspect
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple, ParamSpec, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from ._base import GradientTransformation, OptState, Params, Updates, safe_increment
from ._checks import checked
from ._masking import FrozenState, ParamGroupsState
from ._validate import check_known

_LR_NAMES = ("lr", "learning_rate")  # funcnet's name, then optax's
_P = ParamSpec("_P")
_T = TypeVar("_T")


class HyperparamsState(NamedTuple):
    """State of an optimizer whose hyper-parameters live in its state.

    Attributes:
        count: int32 ``()``, updates applied so far, which schedules are evaluated at; only
            kept when a hyper-parameter is a schedule (else ``None``: one state leaf and one
            kernel less per step).
        hyperparams: name -> value that the *next* update uses: float scalars ``()`` of the
            default float dtype (float32, or float64 under ``jax_enable_x64``), or tuples of
            them (``betas``). A schedule-driven entry holds ``schedule(count)``.
        inner_state: the state of the optimizer built from those values.
    """

    count: jax.Array | None
    hyperparams: dict[str, Any]
    inner_state: OptState


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_scalar_array(value: Any) -> bool:
    return isinstance(value, jax.Array | np.ndarray | np.generic) and np.ndim(value) == 0


def _injectable(value: Any) -> bool:
    """A number, a scalar array, a schedule, or a tuple of those (``betas``)."""
    if isinstance(value, tuple):
        return len(value) > 0 and all(_injectable(v) for v in value)
    return _is_number(value) or _is_scalar_array(value) or callable(value)


def _evaluate(spec: Any, count: jax.Array, dtype: Any) -> Any:
    """The value of a hyper-parameter spec at ``count``: schedules called, numbers cast."""
    if isinstance(spec, tuple):
        return tuple(_evaluate(s, count, dtype) for s in spec)
    value = spec(count) if callable(spec) else spec
    return jnp.array(value, dtype=dtype)  # a copy: state buffers must not alias (donation)


def _scheduled(spec: Any) -> bool:
    if isinstance(spec, tuple):
        return any(_scheduled(s) for s in spec)
    return callable(spec)


def _advance(spec: Any, stored: Any, count: jax.Array | None) -> Any:
    """Stored values for the next step: schedules re-evaluated, constants kept as stored.

    A schedule with an ``advance(value, count)`` method (`schedules.multiplicative`) goes
    from the stored value in O(1), as PyTorch's recursive schedulers do.
    """
    if isinstance(spec, tuple):
        return tuple(_advance(s, v, count) for s, v in zip(spec, stored))
    if not callable(spec):
        return stored
    advance = getattr(spec, "advance", None)
    value = spec(count) if advance is None else advance(stored, count)
    return jnp.asarray(value, dtype=stored.dtype)


def _is_node(x: Any) -> bool:
    """A hyper-parameter node: funcnet's `HyperparamsState` or optax's inject state."""
    return isinstance(getattr(x, "hyperparams", None), dict) and hasattr(x, "inner_state")


def _nodes(opt_state: OptState) -> list[Any]:
    return [x for x in jax.tree.leaves(opt_state, is_leaf=_is_node) if _is_node(x)]


def _is_param_tree(x: Any) -> bool:
    """A parameter tree or ``model.parameters()``: what PyTorch's optimizers take first."""
    if callable(x):  # a schedule
        return False
    return isinstance(x, Mapping | list | tuple | Iterator) or np.ndim(x) > 0


def _kind(x: Any) -> str:
    shape = getattr(x, "shape", None)
    return f"an array of shape {tuple(shape)}" if shape is not None else f"a {type(x).__name__}"


def _misplaced_params(args: tuple, kwargs: dict) -> str | None:
    """How the parameters were passed to an optimizer factory, if they were."""
    if "params" in kwargs:
        return "params="
    if args and _is_param_tree(args[0]):
        return f"{_kind(args[0])} as the first argument"
    for key in _LR_NAMES:
        if _is_param_tree(kwargs.get(key)):
            return f"{_kind(kwargs[key])} as {key}"
    return None


def hyperparameters_only(factory: Callable[_P, _T]) -> Callable[_P, _T]:
    """``factory`` (signature and docstring kept) refusing parameters where its lr goes.

    PyTorch's habit, ``Adam(model.parameters(), lr=1e-3)``, would otherwise end in
    "multiple values for argument 'lr'" or in an error that prints the whole tree.
    """

    @functools.wraps(factory)
    def checked(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        got = _misplaced_params(args, kwargs)
        if got is not None:
            name = factory.__name__
            raise TypeError(
                f"{name}: funcnet optimizers take hyper-parameters only (e.g. "
                f"optim.{name}(lr=1e-3)); the parameters go to opt_state = opt.init(params) "
                f"afterwards. Got {got}."
            )
        return factory(*args, **kwargs)

    return checked


def with_hyperparams(
    build: Callable[..., GradientTransformation],
    values: Mapping[str, Any],
    in_state: Iterable[str],
    name: str,
) -> GradientTransformation:
    """``build(**values)``, with the ``in_state`` entries kept in a `HyperparamsState`.

    ``build`` is called again inside every ``update`` with the stored values (JAX scalars);
    it must therefore only branch in Python on the static entries. At ``init`` it is called
    with the initial values as JAX scalars too, so the structure of its state is the same.
    """
    in_state = tuple(in_state)
    if not in_state:
        return build(**values)
    for key in in_state:
        if key not in values:
            raise ValueError(f"{name}: in_state names {key!r}, which is not one of its arguments")
        if not _injectable(values[key]):
            raise ValueError(
                f"{name}: {key}={values[key]!r} cannot live in the optimizer state; only "
                "numbers, scalar arrays, schedules and tuples of them can."
            )
    static = {k: v for k, v in values.items() if k not in in_state}
    specs = {k: values[k] for k in in_state}
    counted = any(_scheduled(spec) for spec in specs.values())

    def init(params: Params) -> HyperparamsState:
        zero = jnp.zeros((), jnp.int32)
        dtype = jnp.result_type(float)
        hyperparams = {k: _evaluate(spec, zero, dtype) for k, spec in specs.items()}
        inner_state = build(**static, **hyperparams).init(params)
        if _nodes(inner_state):
            raise ValueError(
                f"{name} builds an optimizer that already keeps hyper-parameters in its "
                "state; choose them with its own in_state= argument instead of nesting."
            )
        return HyperparamsState(zero if counted else None, hyperparams, inner_state)

    def update(
        updates: Updates, state: HyperparamsState, params: Params | None = None
    ) -> tuple[Updates, HyperparamsState]:
        if not isinstance(state, HyperparamsState):
            raise ValueError(
                f"{name} expects a HyperparamsState, got {type(state).__name__}: pass the "
                "state made by this optimizer's init."
            )
        inner = build(**static, **state.hyperparams)
        out, inner_state = inner.update(updates, state.inner_state, params)
        count = safe_increment(state.count) if counted else None
        hyperparams = {k: _advance(specs[k], state.hyperparams[k], count) for k in specs}
        return out, HyperparamsState(count, hyperparams, inner_state)

    return GradientTransformation(init, update)


def inject_hyperparams(
    factory: Callable[..., GradientTransformation], *, static_args: Iterable[str] = ()
) -> Callable[..., GradientTransformation]:
    """Keep the numeric arguments of any optimizer factory in the optimizer state.

    For factories that are not funcnet optimizers (yours, or optax's such as
    ``optax.adam``); funcnet's optimizers take ``in_state=(...)`` instead. Every argument
    given in the call that is a number, a scalar array, a schedule (any callable) or a tuple
    of those is stored in a `HyperparamsState`; the rest (booleans, strings, names in
    ``static_args``) stays static. A schedule is evaluated at the step count.

    Args:
        factory: ``factory(**hyperparams) -> GradientTransformation``; called again inside
            every update with the stored values, so it must not branch in Python on them.
        static_args: arguments to keep static although numeric or callable (an int used
            in Python, a mask function).

    Returns:
        A function with ``factory``'s signature returning the wrapped transform.

    Raises:
        ValueError: ``factory`` is a funcnet optimizer (use its ``in_state=`` argument).

    Examples:
        >>> import jax.numpy as jnp
        >>> import optax
        >>> from funcnet import optim
        >>> tx = optim.inject_hyperparams(optax.adam)(learning_rate=1e-2)
        >>> state = tx.init({"w": jnp.zeros(3)})
        >>> float(optim.current_lr(state))
        0.009999999776482582
    """
    if getattr(factory, "_funcnet_in_state", False):
        raise ValueError(
            f"{factory.__name__} already keeps hyper-parameters in the optimizer state: "
            f"write {factory.__name__}(..., in_state=('lr', ...)) instead of inject_hyperparams."
        )
    signature = inspect.signature(factory)
    static = set(static_args)
    name = getattr(factory, "__name__", "inject_hyperparams")

    def make(*args: Any, **kwargs: Any) -> GradientTransformation:
        bound = signature.bind(*args, **kwargs)
        values: dict[str, Any] = {}
        for key, value in bound.arguments.items():
            kind = signature.parameters[key].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                values.update(value)
            elif kind is inspect.Parameter.VAR_POSITIONAL:
                raise TypeError(f"inject_hyperparams cannot store *{key} of {name}")
            else:
                values[key] = value
        in_state = [k for k, v in values.items() if k not in static and _injectable(v)]
        tx = with_hyperparams(lambda **kw: factory(**kw), values, in_state, name)
        return checked(name, tx)

    return make


def current_lr(opt_state: OptState) -> jax.Array:
    """The learning rate the next update will use, read from the optimizer state.

    PyTorch's ``optimizer.param_groups[0]["lr"]``: with parameter groups, the first group's
    lr (`get_hyperparams` lists them all), the group of `freeze`'s frozen parameters
    excepted (PyTorch's optimizer does not see them). When that first group keeps no lr in
    its state (an optax optimizer not wrapped in an inject), it is an error, not another
    group's lr. Works on every funcnet optimizer (unless built
    with ``in_state=()``) and on optax optimizers wrapped in ``optax.inject_hyperparams``
    or `inject_hyperparams`, at any depth of the state (inside `chain`, `accumulate`, ...).
    Cheap, and usable inside ``jax.jit``; outside, it returns the stored array itself.

    Args:
        opt_state: the optimizer state.

    Returns:
        A float scalar ``()`` (float32, or float64 under x64). For a schedule-driven lr it
        is ``schedule(count)``, the value for the coming update, as PyTorch's
        ``get_last_lr()`` after ``scheduler.step()``.

    Raises:
        ValueError: no learning rate lives in this state, or in its first parameter group.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import optim
        >>> opt = optim.adam(optim.schedules.step(1e-3, step_size=2, gamma=0.5))
        >>> params = {"w": jnp.ones(2)}
        >>> state = opt.init(params)
        >>> for _ in range(2):
        ...     _, state = opt.update({"w": jnp.ones(2)}, state, params)
        >>> float(optim.current_lr(state))
        0.0005000000237487257
    """
    lr = _first_lr(opt_state)
    if lr is not None:
        return lr
    raise ValueError(
        "no learning rate in this optimizer state: funcnet optimizers keep it there unless "
        "built with in_state=(); wrap other optimizers in funcnet.optim.inject_hyperparams "
        "(or optax.inject_hyperparams)."
    )


def _is_groups(x: Any) -> bool:
    return isinstance(x, ParamGroupsState)


def _first_lr(opt_state: OptState) -> jax.Array | None:
    """The first stored lr; inside `param_groups`, the first trainable group's or an error."""
    for x in jax.tree.leaves(opt_state, is_leaf=lambda x: _is_node(x) or _is_groups(x)):
        if _is_groups(x):
            groups = [s for s in x.inner_states if not isinstance(s, FrozenState)]
            if not groups:
                continue
            lr = _first_lr(groups[0])
            if lr is None:
                raise ValueError(
                    "the first parameter group keeps no learning rate in its state (PyTorch's "
                    "param_groups[0]['lr']); an optax optimizer keeps it there when wrapped: "
                    "optim.inject_hyperparams(optax.adam)(learning_rate=...)."
                )
            return lr
        if _is_node(x):
            for key in _LR_NAMES:
                if key in x.hyperparams:
                    return x.hyperparams[key]
    return None


def get_hyperparams(opt_state: OptState) -> list[dict[str, Any]]:
    """The hyper-parameters stored in the state: one dict per stored group.

    PyTorch's ``optimizer.param_groups`` without the ``"params"`` entries: one dict for each
    `HyperparamsState` (or optax inject state) in the state, in the order of the state's
    leaves, so parameter groups come in the order they were given to `param_groups`.

    Args:
        opt_state: the optimizer state.

    Returns:
        A list of ``{name: value}`` dicts (values are JAX scalars or tuples of them).
    """
    return [dict(node.hyperparams) for node in _nodes(opt_state)]


def _converted(name: str, old: Any, new: Any) -> Any:
    """``new`` with ``old``'s structure, shape and dtype, so jit reuses its program."""
    if isinstance(old, tuple):
        if not isinstance(new, tuple | list) or len(new) != len(old):
            raise ValueError(f"{name} holds a tuple of {len(old)} values; got {new!r}")
        return tuple(_converted(name, o, n) for o, n in zip(old, new))
    new = jnp.array(new, dtype=old.dtype)  # a copy per group: donated buffers must not alias
    if new.shape != old.shape:
        raise ValueError(f"{name} has shape {old.shape}; got a value of shape {new.shape}")
    return new


def set_hyperparams(opt_state: OptState, *, group: int | None = None, **values: Any) -> OptState:
    """A copy of the state with new hyper-parameter values (no recompilation).

    PyTorch's ``for g in optimizer.param_groups: g["lr"] = value``. Values keep the stored
    dtype and shape, so a jitted train step reuses its compiled program. A schedule-driven
    entry is overwritten by its schedule after the next update. ``lr`` also sets optax's
    ``learning_rate``.

    Args:
        opt_state: the optimizer state.
        group: index of the stored group to change (see `get_hyperparams`); ``None`` for all.
        **values: name -> new value (a number, a JAX scalar, a tuple for ``betas``).

    Returns:
        The new state; the given one is not modified.

    Raises:
        ValueError: no targeted group stores one of the names, ``group`` is out of range,
            or a value is out of its optimizer's range (``lr=-1``, ``lr=nan``; as at
            construction, see `funcnet.optim._validate.RANGES`).

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import optim
        >>> state = optim.sgd(0.1, momentum=0.9).init({"w": jnp.zeros(3)})
        >>> state = optim.set_hyperparams(state, lr=0.01)
        >>> round(float(optim.current_lr(state)), 6)
        0.01
    """
    check_known("set_hyperparams", values)
    nodes = _nodes(opt_state)
    if not nodes:
        raise ValueError("this optimizer state stores no hyper-parameters (see current_lr)")
    if group is not None and not -len(nodes) <= group < len(nodes):
        raise ValueError(f"group={group}, but the state stores {len(nodes)} group(s)")
    targets = set(range(len(nodes))) if group is None else {group % len(nodes)}
    found = dict.fromkeys(values, False)
    position = iter(range(len(nodes)))

    def replace(x: Any) -> Any:
        if not _is_node(x):
            return x
        if next(position) not in targets:
            return x
        hyperparams = dict(x.hyperparams)
        for key, value in values.items():
            stored = key
            if key == "lr" and "lr" not in hyperparams and "learning_rate" in hyperparams:
                stored = "learning_rate"
            if stored in hyperparams:
                hyperparams[stored] = _converted(key, hyperparams[stored], value)
                found[key] = True
        return x._replace(hyperparams=hyperparams)

    new_state = jax.tree.map(replace, opt_state, is_leaf=_is_node)
    missing = [k for k, ok in found.items() if not ok]
    if missing:
        stored = sorted({k for i in targets for k in nodes[i].hyperparams})
        raise ValueError(
            f"the optimizer state stores no {', '.join(missing)} (it stores {stored}); "
            "choose what lives in the state with the optimizer's in_state= argument."
        )
    return new_state
