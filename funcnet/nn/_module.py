"""Module, the per-call Context, and apply: the layer system.

A module is an immutable *description* of a computation (its hyper-parameters and its
sub-modules). Parameters and state are not stored in it: ``init`` creates them as plain
nested dicts and ``apply`` takes them as arguments::

    params, state = model.init(jax.random.key(0))
    y, state = model.apply(params, state, x, train=True, key=jax.random.key(1))

Inside ``apply``, every module's ``forward(ctx, ...)`` receives a :class:`Context`: the
module's own slice of ``params`` and ``state``, the train flag, a path for error messages
(``"model.encoder.fc1"``) and PRNG keys on demand. A forward method calls a sub-module as
``self.fc1(ctx, x)``; the sub-module's context is derived from ``ctx`` by the attribute
name under which ``fc1`` was assigned, so parameter names follow attribute names and no
key or state is threaded by hand. All of this is Python that runs while JAX traces; the
compiled program contains only the arrays' maths.
"""

from __future__ import annotations

import dataclasses
import inspect
import numbers
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import jax
import jax.numpy as jnp

from funcnet.errors import FrozenModuleError, PyTorchAttributeError, ShapeError, UsageError
from funcnet.mixed_precision._policy import Policy, get_policy, has_floating
from funcnet.nn._check_params import check_params
from funcnet.nn._summary import summarize

__all__ = ["Buffer", "Context", "Module", "Parameter"]

Params = dict[str, Any]
State = dict[str, Any]
Initializer = Callable[..., jax.Array]
_M = TypeVar("_M")


def _name_hash(name: str) -> int:
    """A stable 31-bit hash of a name, used to derive per-module keys."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


@dataclasses.dataclass(frozen=True)
class Parameter:
    """Declares a trainable array owned directly by a module.

    Assign it as an attribute while the module is built (``__init__``, or
    ``__post_init__`` of a dataclass layer); ``init`` creates the array under the
    attribute's name with the key ``fold_in(key, hash(name))``, and ``forward`` reads it
    with ``ctx.param(name)``::

        self.scale = nn.Parameter((features,), init=nn.init.ones)

    Args:
        shape: the array's shape.
        init: an initialiser ``(key, shape, dtype) -> array`` (see ``funcnet.nn.init``);
            required.
        dtype: the array's dtype.

    Raises:
        UsageError: for an array instead of a shape (PyTorch's ``nn.Parameter(tensor)``;
            the message gives the declaration to write), or without ``init``.
    """

    shape: tuple[int, ...]
    init: Initializer | None = None  # required; the default lets __post_init__ say so
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        kind = type(self).__name__
        if hasattr(self.shape, "shape"):
            raise UsageError(
                f"nn.{kind} takes a shape and an initialiser, not an array (PyTorch's "
                f"nn.{kind}(tensor)): write `self.name = nn.{kind}({tuple(self.shape.shape)}, "
                f"init=nn.init.normal)` in __init__; init creates the array, forward reads it "
                f"with ctx.param(name), and nn.load_state_dict loads given values"
            )
        if not isinstance(self.shape, (tuple, list)) or not all(
            isinstance(d, numbers.Integral) for d in self.shape
        ):
            raise UsageError(f"nn.{kind}: shape must be a tuple of ints, got {self.shape!r}")
        if not callable(self.init):
            raise UsageError(
                f"nn.{kind}({tuple(self.shape)}): pass init=..., an initialiser "
                f"(key, shape, dtype) -> array such as nn.init.zeros, got {self.init!r}"
            )

    def create(self, key: jax.Array) -> jax.Array:
        """The initial array, from ``init`` and ``key``."""
        return self.init(key, tuple(self.shape), self.dtype)


@dataclasses.dataclass(frozen=True)
class Buffer(Parameter):
    """Declares a non-trainable array (PyTorch's ``register_buffer``); it lives in ``state``.

    ``forward`` reads it with ``ctx.state[name]`` and replaces it with
    ``ctx.set_state(name, value)``.
    """


class _ModuleMeta(type):
    """Freezes every module once its constructor has returned."""

    # Typed as returning an instance of the class, so that type checkers check the call
    # against the class's own __init__ (an untyped metaclass __call__ hides it).
    def __call__(cls: type[_M], *args: Any, **kwargs: Any) -> _M:
        module: _M = super().__call__(*args, **kwargs)  # type: ignore[misc]
        object.__setattr__(module, "_funcnet_frozen", True)
        return module

    @property
    def __signature__(cls) -> inspect.Signature:
        """The constructor's arguments, for ``inspect.signature``, ``help()`` and IDEs.

        ``__init__``'s signature without ``self`` (a dataclass layer's fields); without
        this, ``inspect.signature(nn.Linear)`` would show ``__call__`` above:
        ``(*args, **kwargs)``.
        """
        init = inspect.signature(cls.__init__)
        return init.replace(
            parameters=list(init.parameters.values())[1:],
            return_annotation=inspect.Signature.empty,
        )


class Module(metaclass=_ModuleMeta):
    """Base class of every layer and model.

    Subclass it as in PyTorch: assign sub-modules (and :class:`Parameter` /
    :class:`Buffer` declarations) as attributes while the module is built, and write
    ``forward(self, ctx, *inputs)``. "While it is built" is ``__init__``, or
    ``__post_init__`` for a layer written as a dataclass of hyper-parameters, as the
    built-in layers are: ``@dataclasses.dataclass(unsafe_hash=True, repr=False)``, equal
    and hashable by value (hashing is safe because the module is immutable). Once the
    constructor returns, the module is immutable: setting or deleting an attribute raises
    :class:`~funcnet.errors.FrozenModuleError`.
    """

    #: Containers (ModuleList, ModuleDict) are transparent: their parent's forward may
    #: call their elements directly.
    _transparent: bool = False
    #: Set on the instance by the metaclass once the constructor has returned.
    _funcnet_frozen: bool = False

    def __init__(self) -> None:  # lets PyTorch users keep their super().__init__() call
        pass

    def __setattr__(self, name: str, value: Any) -> None:
        if self._funcnet_frozen:
            raise _frozen_error(self, f"set {name!r}")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if self._funcnet_frozen:
            raise _frozen_error(self, f"delete {name!r}")
        object.__delattr__(self, name)

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails, so attributes and methods of the same
        # name defined by a subclass or instance win; costs nothing otherwise.
        hint = _PYTORCH_ONLY.get(name)
        message = f"{type(self).__name__!r} object has no attribute {name!r}"
        if hint is None:
            raise AttributeError(message, name=name, obj=self)
        raise PyTorchAttributeError(
            f"{message} (PyTorch's nn.Module.{name}); in funcnet, {hint}", name=name, obj=self
        )

    # ----------------------------------------------------------------- structure
    def named_children(self) -> Iterator[tuple[str, Module]]:
        """Yields ``(attribute_name, sub_module)`` for the direct sub-modules, in
        assignment order, each object once (PyTorch's ``named_children``).

        Containers override this to name their elements ``"0"``, ``"1"``, ….
        """
        return iter(_unique_modules(self._attributes().items()).items())

    def children(self) -> Iterator[Module]:
        """Yields the direct sub-modules (PyTorch's ``children``)."""
        return (child for _, child in self.named_children())

    def _attributes(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def _declarations(self) -> dict[str, Parameter]:
        return {k: v for k, v in self._attributes().items() if isinstance(v, Parameter)}

    def _routes(self) -> dict[int, tuple[str, ...]]:
        """Maps id(sub-module) to the attribute path by which a forward reaches it."""
        cached = self.__dict__.get("_funcnet_routes")
        if cached is not None:
            return cached
        routes: dict[int, tuple[str, ...]] = {}
        for name, child in self.named_children():
            routes.setdefault(id(child), (name,))
            if child._transparent:
                for sub_id, sub_route in child._routes().items():
                    routes.setdefault(sub_id, (name, *sub_route))
        if self._funcnet_frozen:
            object.__setattr__(self, "_funcnet_routes", routes)
        return routes

    def named_modules(
        self, prefix: str = "", remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Module]]:
        """Yields ``(dotted_name, module)`` for this module (named ``prefix``) and every
        descendant, parents first (PyTorch's ``named_modules``).

        Args:
            prefix: the name given to this module and put before its descendants' names.
            remove_duplicate: yield a module reached by several paths only once, under
                the first.
        """
        seen: set[int] | None = set() if remove_duplicate else None
        return _walk(self, prefix, seen)

    def modules(self) -> Iterator[Module]:
        """Yields this module and every descendant, each once (PyTorch's ``modules``)."""
        return (module for _, module in self.named_modules())

    # ------------------------------------------------------------- init / apply
    def init(self, key: jax.Array) -> tuple[Params, State]:
        """Creates this module's parameters and state.

        The default initialises every sub-module and declared :class:`Parameter` /
        :class:`Buffer` with a key derived from ``key`` and the attribute name (so adding a
        layer does not change the others' initial values). Modules with no parameters are
        left out of the dicts.

        Args:
            key: a PRNG key.

        Returns:
            ``(params, state)``: nested dicts of arrays named after the attributes.
        """
        params: Params = {}
        state: State = {}
        for name, decl in self._declarations().items():
            target = state if isinstance(decl, Buffer) else params
            target[name] = decl.create(jax.random.fold_in(key, _name_hash(name)))
        for name, child in self.named_children():
            p, s = child.init(jax.random.fold_in(key, _name_hash(name)))
            if p:
                params[name] = p
            if s:
                state[name] = s
        return params, state

    def _architecture_init(self, key: jax.Array) -> tuple[Params, State]:
        """The ``init`` whose shapes and dtypes ``apply`` checks ``params`` and ``state``
        against (traced with ``jax.eval_shape``, never run): ``init`` itself. A module
        whose ``init`` reads values from elsewhere (a weights file) overrides it to give
        the architecture's without reading them."""
        return self.init(key)

    def _params_owner(self) -> Module:
        """The module whose sub-module names this module's params use: itself; a wrapper
        whose ``init`` is its block's (Remat, LayerStack) returns the block. For
        messages only."""
        return self

    def forward(self, ctx: Context, *args: Any, **kwargs: Any) -> Any:
        """The computation. Override it; call sub-modules as ``self.child(ctx, x)``."""
        raise NotImplementedError(f"{type(self).__name__} does not define forward(self, ctx, ...)")

    def apply(
        self,
        params: Mapping[str, Any],
        state: Mapping[str, Any],
        *args: Any,
        train: bool = False,
        key: jax.Array | None = None,
        precision: str | Policy | None = None,
        **kwargs: Any,
    ) -> tuple[Any, State]:
        """Runs the module: a pure function of its arguments.

        Args:
            params: the parameter dict from :meth:`init` (possibly trained).
            state: the state dict from :meth:`init` or a previous ``apply`` (``{}`` if none).
            *args: the inputs of ``forward``.
            train: training mode (dropout active, batch statistics used and updated). A
                Python bool: under ``jax.jit`` close over it or mark it static.
            key: a PRNG key, needed when a layer draws random numbers in this mode.
            precision: a mixed-precision policy (``funcnet.mixed_precision.Policy``) or
                its name: ``"bf16"``, ``"fp16"``, ``"float32"``. The floating inputs are
                cast to its compute dtype (integer and boolean ones stay), the layers
                compute in it, the floating outputs are cast to its output dtype;
                ``params`` are not cast (layers cast them at use). None (default): no
                casting at all. A ``forward`` keyword named ``precision`` cannot be
                passed through ``apply``.
            **kwargs: keyword inputs of ``forward``.

        Returns:
            ``(output, new_state)``; ``new_state`` has the structure of ``state``.

        Raises:
            ShapeError: ``params`` or ``state`` do not fit what :meth:`init` gives: an
                entry missing or unexpected, a shape that differs, a dtype of another
                kind (an integer weight where init makes a float one; any float width
                is accepted). Checked while tracing, before ``forward`` runs; the
                message lists every such entry by its dotted path.
            ValueError: an unknown ``precision`` name (the message lists the choices).
        """
        if not isinstance(params, Mapping) or not isinstance(state, Mapping):
            bad, value = ("params", params) if not isinstance(params, Mapping) else ("state", state)
            raise TypeError(
                f"{type(self).__name__}.apply(params, state, *inputs): {bad} must be the dict "
                f"returned by init (use {{}} when there is none), got {type(value).__name__}"
            )
        if not isinstance(train, bool):
            raise TypeError(
                f"{type(self).__name__}.apply: train must be a Python bool, got {type(train).__name__}"
                " (under jax.jit, close over it or mark it static)"
            )
        check_params(self, params, state)
        policy = get_policy(precision)
        if policy is None:
            return self._run(params, state, args, kwargs, train=train, key=key)
        args, kwargs = policy.cast_to_compute((args, kwargs))
        out, new_state = self._run(params, state, args, kwargs, train=train, key=key, policy=policy)
        return policy.cast_to_output(out), new_state

    def _run(
        self,
        params: Mapping[str, Any],
        state: Mapping[str, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        train: bool,
        key: jax.Array | None,
        recorder: list | None = None,
        path: str = "model",
        policy: Policy | None = None,
    ) -> tuple[Any, State]:
        # A container that runs its blocks through _run (LayerStack, Remat) passes its
        # ctx.policy on; inputs and outputs are cast by apply alone.
        root = _Root(train=train, key=key, state=state, policy=policy)
        root.recorder = recorder
        ctx = Context(self, path, params, (), root)
        return _recorded_forward(self, ctx, args, kwargs), root.state_out

    def __call__(self, ctx: Context, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(ctx, Context):
            got = "an array" if hasattr(ctx, "shape") else f"a {type(ctx).__name__}"
            raise UsageError(
                f"{type(self).__name__} was called with {got} where ctx belongs: "
                f"at the top level run `y, state = model.apply(params, state, x)` (with "
                f"`params, state = model.init(key)`); inside a forward call sub-layers as "
                f"`self.layer(ctx, x)`"
            )
        child = ctx._enter(self)
        # The attribute path names the operations (trace time only): profiles and compiled
        # HLO read "layers.0/self_attn/dot_general" instead of "dot_general".
        with jax.named_scope(child.path[len(ctx.path) + 1 :]):
            out = _recorded_forward(self, child, args, kwargs)
            policy = ctx._root.policy
            if policy is None or has_floating((args, kwargs)):
                return out
            # A layer with no floating input (an Embedding of token ids) starts the
            # activations: they begin in the policy's compute dtype.
            return policy.cast_to_compute(out)

    # ------------------------------------------------------------------- display
    def extra_repr(self) -> str:
        """The hyper-parameters shown by ``repr``; dataclass layers list their fields."""
        if not dataclasses.is_dataclass(self):
            return ""
        parts = []
        for f in dataclasses.fields(self):
            if not f.repr or isinstance(getattr(self, f.name), Module):
                continue
            value = getattr(self, f.name)
            has_default = f.default is not dataclasses.MISSING
            if has_default and value == f.default:
                continue
            shown = getattr(value, "__name__", None) if callable(value) else None
            parts.append(f"{f.name}={shown or repr(value)}")
        return ", ".join(parts)

    def __repr__(self) -> str:
        children = dict(self.named_children())
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not children:
            return head + ")"
        lines = [head]
        for name, child in children.items():
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + "\n)"

    def summary(self, *inputs: Any, train: bool = False, depth: int | None = None) -> str:
        """A table of the layer tree with output shapes and parameter counts.

        Computed with ``jax.eval_shape``: no FLOPs are spent and no memory is allocated.

        Args:
            *inputs: example inputs: arrays, ``jax.ShapeDtypeStruct`` s, or shape tuples
                (taken as float32).
            train: the mode to trace in.
            depth: show modules at most this deep (``None``: all).

        Returns:
            The table as a string (also convenient to ``print``).
        """

        def run(params: Params, state: State, xs: tuple[Any, ...], rows: list) -> Any:
            key = jax.random.key(0)
            return self._run(params, state, xs, {}, train=train, key=key, recorder=rows)

        return summarize(self.init, run, inputs, depth=depth)


def _frozen_error(module: Module, tried: str) -> FrozenModuleError:
    return FrozenModuleError(
        f"{type(module).__name__} is immutable after construction: a funcnet module is a "
        f"description; parameters and state live in the dicts returned by init (tried to "
        f"{tried}); build a new module instead"
    )


_PYTORCH_ONLY = {
    "train": "training mode is an argument: model.apply(params, state, x, train=True, key=key)",
    "eval": "eval mode is apply's default: model.apply(params, state, x) (train=False)",
    "training": "the mode is not stored in a module: forward reads ctx.train, apply takes train=",
    "parameters": "the parameters are the dict from `params, state = model.init(key)`; "
    "jax.tree_util.tree_leaves(params) lists its arrays",
    "named_parameters": "nn.state_dict(params) gives {'fc1.weight': array, ...}, with "
    "`params, state = model.init(key)`",
    "buffers": "buffers are the state dict from `params, state = model.init(key)`",
    "named_buffers": "nn.flatten_dict(state) gives {'bn.running_mean': array, ...}, with "
    "`params, state = model.init(key)`",
    "state_dict": "flat = nn.state_dict(params, state)",
    "load_state_dict": (
        "params, state = nn.load_state_dict(model, flat) (from_torch=True for a PyTorch state_dict)"
    ),
    "to": "arrays live in params and state, not in the module: "
    "params = jax.device_put(params, device); a parameter dtype is the layers' dtype= argument",
    "cuda": "arrays live in params and state, not in the module: "
    "params = jax.device_put(params, jax.devices('gpu')[0]) (JAX uses the accelerator by default)",
    "cpu": "arrays live in params and state, not in the module: "
    "params = jax.device_put(params, jax.devices('cpu')[0])",
    "half": "cast the arrays: params = jax.tree.map(lambda a: a.astype(jnp.float16), params)",
    "bfloat16": "cast the arrays: params = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)",
    "float": "cast the arrays: params = jax.tree.map(lambda a: a.astype(jnp.float32), params)",
    "double": "cast the arrays: params = jax.tree.map(lambda a: a.astype(jnp.float64), params)",
    "zero_grad": "gradients are the values jax.grad returns, never stored in the model: "
    "there is nothing to zero",
    "register_parameter": "declare it in __init__: self.name = nn.Parameter(shape, init=...); "
    "forward reads ctx.param(name)",
    "register_buffer": "declare it in __init__: self.name = nn.Buffer(shape, init=...); "
    "forward reads ctx.state[name] and replaces it with ctx.set_state(name, value)",
    "add_module": "assign the sub-module as an attribute in __init__: self.name = module",
    "register_module": "assign the sub-module as an attribute in __init__: self.name = module",
}


def _unique_modules(items: Iterable[tuple[str, Any]]) -> dict[str, Module]:
    """The modules among ``(name, value)`` pairs, by name, each object once."""
    seen: set[int] = set()
    out: dict[str, Module] = {}
    for name, value in items:
        if isinstance(value, Module) and id(value) not in seen:
            seen.add(id(value))
            out[name] = value
    return out


def _walk(module: Module, prefix: str, seen: set[int] | None) -> Iterator[tuple[str, Module]]:
    """``named_modules``' traversal; ``seen`` holds ids already yielded (None: keep repeats)."""
    if seen is not None:
        if id(module) in seen:
            return
        seen.add(id(module))
    yield prefix, module
    for name, child in module.named_children():
        yield from _walk(child, f"{prefix}.{name}" if prefix else name, seen)


def _recorded_forward(
    module: Module, ctx: Context, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Runs ``module.forward``; for ``summary``, records its output in call (pre-)order."""
    recorder = ctx._root.recorder
    if recorder is None:
        return _forward(module, ctx, args, kwargs)
    slot = len(recorder)
    recorder.append(None)
    out = _forward(module, ctx, args, kwargs)
    recorder[slot] = (ctx.path, module, out)
    return out


def _forward(module: Module, ctx: Context, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``module.forward(ctx, *args, **kwargs)``, explaining a forward that does not fit."""
    try:
        return module.forward(ctx, *args, **kwargs)
    except TypeError:
        mismatch = _forward_mismatch(module, ctx, args, kwargs)
        if mismatch is None:
            raise  # raised inside a forward that fits: not ours to explain
        raise mismatch from None


def _forward_mismatch(
    module: Module, ctx: Context, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> UsageError | None:
    """The error to raise when ``module.forward``'s signature does not take ``(ctx, *args,
    **kwargs)``, or None when it does."""
    try:
        signature = inspect.signature(module.forward)
    except (TypeError, ValueError):  # no signature to read (a C function, a mock)
        return None
    try:
        signature.bind(ctx, *args, **kwargs)
    except TypeError as problem:
        reason = str(problem)
    else:
        return None
    params = list(signature.parameters.values())
    where = f"{ctx.path} ({type(module).__name__})"
    text = ", ".join(["self", *(str(p) for p in params)])
    if _binds(signature, args, kwargs) and (not params or params[0].name != "ctx"):
        return UsageError(
            f"{where}: forward({text}) has no ctx: funcnet calls forward(self, ctx, *inputs). "
            f"Write `def forward(self, ctx, x)` and call sub-layers as `self.fc(ctx, x)`"
        )
    return UsageError(
        f"{where}: forward({text}) does not take the inputs given ({reason}): funcnet calls "
        f"forward(self, ctx, *inputs) with the inputs passed to apply or to self.layer(ctx, ...)"
    )


def _binds(signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    try:
        signature.bind(*args, **kwargs)
    except TypeError:
        return False
    return True


class _Root:
    """What one ``apply`` call shares between all contexts: mode, key, new state."""

    __slots__ = ("key", "policy", "recorder", "state_out", "train")

    def __init__(
        self,
        train: bool,
        key: jax.Array | None,
        state: Mapping[str, Any],
        policy: Policy | None = None,
    ) -> None:
        self.train: bool = train
        self.key: jax.Array | None = key
        self.policy: Policy | None = policy
        self.state_out: dict[str, Any] = _copy_dicts(state)
        self.recorder: list[tuple[str, Module, Any]] | None = None


def _copy_dicts(tree: Mapping[str, Any]) -> dict[str, Any]:
    """Copies the nested dicts of a state tree (arrays are shared, not copied)."""
    return {k: _copy_dicts(v) if isinstance(v, Mapping) else v for k, v in tree.items()}


class Context:
    """What a module's ``forward`` sees during one ``apply`` call.

    Attributes:
        module: the module being run.
        path: its dotted path from the root, e.g. ``"model.encoder.fc1"`` (for messages).
        params: its slice of the parameter dict (read-only by convention).
        train: whether the call is in training mode.
        policy: the mixed-precision policy of the ``apply`` call, or None.
    """

    __slots__ = (
        "_calls",
        "_key",
        "_key_source",
        "_rng_count",
        "_root",
        "_route",
        "module",
        "params",
        "path",
    )

    def __init__(
        self,
        module: Module,
        path: str,
        params: Mapping[str, Any],
        route: tuple[str, ...],
        root: _Root,
        key_source: tuple[Context, tuple[str, ...], int] | None = None,
    ) -> None:
        self.module: Module = module
        self.path: str = path
        self.params: Mapping[str, Any] = params
        self._route = route
        self._root = root
        self._key_source = key_source
        self._key: jax.Array | None = None
        self._rng_count = 0
        self._calls: dict[tuple[str, ...], int] = {}

    @property
    def train(self) -> bool:
        return self._root.train

    @property
    def policy(self) -> Policy | None:
        """The mixed-precision policy of this ``apply`` call (``precision=``), or None."""
        return self._root.policy

    # ------------------------------------------------------------------ params
    def param(self, name: str, dtype: Any = None) -> jax.Array:
        """This module's parameter ``name``, cast to ``dtype`` when given and floating.

        Layers read parameters through here (not ``ctx.params[...]``) so that a missing
        parameter is reported with the layer's path, and so that casting for mixed
        precision happens in one place.
        """
        try:
            value = self.params[name]
        except (KeyError, TypeError):
            have = (
                sorted(self.params)
                if isinstance(self.params, Mapping)
                else type(self.params).__name__
            )
            raise ShapeError(
                f"{self.path} ({type(self.module).__name__}): no parameter {name!r} in params "
                f"(found {have}); were these params made by this model's init?"
            ) from None
        if dtype is not None and jnp.issubdtype(value.dtype, jnp.floating) and value.dtype != dtype:
            value = value.astype(dtype)
        return value

    # ------------------------------------------------------------------- state
    @property
    def state(self) -> Mapping[str, Any]:
        """This module's current state (updates made earlier in this call included)."""
        node: Any = self._root.state_out
        for name in self._route:
            node = node.get(name, {}) if isinstance(node, Mapping) else {}
        return node

    def set_state(self, name: str, value: jax.Array) -> None:
        """Replaces state entry ``name``; its shape and dtype may not change.

        The new value is returned by ``apply`` as part of the new state.

        Raises:
            UsageError: ``value`` is not an array (a dict, list or other container: each
                state entry is one array; a nested state is several ``Buffer`` entries).
            ShapeError: there is no entry ``name``, or the value's shape or dtype differs.
        """
        if isinstance(value, (Mapping, list, tuple)):
            raise UsageError(
                f"{self.path} ({type(self.module).__name__}): set_state({name!r}, ...) stores "
                f"one array, got {type(value).__name__}; keep a nested state as one Buffer "
                "per array (e.g. flattened names such as 'stats/mean')"
            )
        node: Any = self._root.state_out
        for part in self._route:
            node = node.get(part) if isinstance(node, Mapping) else None
        if not isinstance(node, dict) or name not in node:
            raise ShapeError(
                f"{self.path} ({type(self.module).__name__}): no state entry {name!r}; pass the "
                f"state returned by init to apply"
            )
        old = node[name]
        if jnp.shape(old) != jnp.shape(value) or jnp.result_type(old) != jnp.result_type(value):
            raise ShapeError(
                f"{self.path} ({type(self.module).__name__}): state {name!r} would change from "
                f"{jnp.shape(old)} {jnp.result_type(old)} to {jnp.shape(value)} {jnp.result_type(value)}"
            )
        node[name] = value

    def _replace_state(self, tree: Mapping[str, Any]) -> None:
        """Replaces this module's whole state subtree (for containers such as LayerStack
        that run their blocks with ``apply``); the caller keeps its structure."""
        if not self._route:
            self._root.state_out = _copy_dicts(tree)
            return
        node: Any = self._root.state_out
        for part in self._route[:-1]:
            node = node[part]
        node[self._route[-1]] = _copy_dicts(tree)

    # -------------------------------------------------------------------- keys
    @property
    def has_key(self) -> bool:
        """Whether ``apply`` was given a PRNG key."""
        return self._root.key is not None

    def next_key(self) -> jax.Array:
        """A fresh PRNG key, distinct for every module, call and request.

        Keys derive from ``apply``'s ``key``, the module's path and the call's position, so
        the same key gives the same random numbers, and two dropout layers (or two calls
        of one) never share a mask.

        Raises:
            ValueError: when ``apply`` was called without ``key``.
        """
        if self._root.key is None:
            raise ValueError(
                f"{self.path} ({type(self.module).__name__}) needs a PRNG key in this mode: "
                f"pass key=... to apply (train={self.train})"
            )
        key = jax.random.fold_in(self._base_key(), self._rng_count)
        self._rng_count += 1
        return key

    def _base_key(self) -> jax.Array:
        if self._key is None:
            if self._key_source is None:
                self._key = self._root.key
            else:
                parent, route, index = self._key_source
                key = parent._base_key()
                for name in route:
                    key = jax.random.fold_in(key, _name_hash(name))
                self._key = jax.random.fold_in(key, index) if index else key
        return self._key

    # --------------------------------------------------------------- children
    def _enter(self, module: Module) -> Context:
        route = self.module._routes().get(id(module))
        if route is None:
            raise TypeError(
                f"{self.path} ({type(self.module).__name__}): {type(module).__name__} is not a "
                f"sub-module of {type(self.module).__name__}; assign it as an attribute in "
                f"__init__ (inside a list use nn.ModuleList) before calling it in forward"
            )
        index = self._calls.get(route, 0)
        self._calls[route] = index + 1
        params: Any = self.params
        for name in route:
            params = params.get(name, {}) if isinstance(params, Mapping) else {}
        return Context(
            module,
            f"{self.path}.{'.'.join(route)}",
            params,
            self._route + route,
            self._root,
            key_source=(self, route, index),
        )
