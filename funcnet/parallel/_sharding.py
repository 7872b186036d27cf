"""Placing parameters and optimizer state on a mesh by rules: replicated, FSDP, tensor parallel.

A *rule* gives the ``PartitionSpec`` of the parameters it selects:

- ``(pattern, spec)``: a glob on the dotted parameter names, matched exactly as
  ``optim.param_groups`` matches them (``"fc1.weight"``, ``"*.bias"``, ``"encoder"`` for a
  sub-tree, or a list of patterns);
- a callable ``rule(name, shape, mesh) -> PartitionSpec | None`` (None: not selected), as
  :func:`fsdp`, :func:`column_parallel`, :func:`row_parallel` and :func:`megatron` return.

The first rule that selects a parameter gives its spec; the others get ``default``
(replicated). ``jax.jit`` then compiles the train step for these shardings and inserts the
collectives (GSPMD): ``train.make_train_step`` and ``train.fit`` run unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import jax
import numpy as np
from jax.sharding import AbstractMesh, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from funcnet.optim import leaf_names
from funcnet.optim._masking import name_matches

__all__ = [
    "Rule",
    "column_parallel",
    "fsdp",
    "megatron",
    "param_specs",
    "row_parallel",
    "shard_state",
    "state_shardings",
]

_REPLICATED = P()

AnyMesh: TypeAlias = Mesh | AbstractMesh
RuleFn: TypeAlias = Callable[[str, tuple[int, ...], AnyMesh | None], P | None]
Rule: TypeAlias = tuple[str | Sequence[str], P] | RuleFn
"""``(glob or globs, PartitionSpec)``, or ``rule(name, shape, mesh) -> PartitionSpec | None``."""


def _check_rules(rules: Sequence[Rule]) -> list[Rule]:
    rules = list(rules)
    for rule in rules:
        pair = isinstance(rule, tuple) and len(rule) == 2 and isinstance(rule[1], P)
        if not (pair or callable(rule)):
            raise TypeError(
                f"a sharding rule is (pattern, PartitionSpec) or a callable, got {rule!r}; "
                'e.g. ("*.linear1.weight", P(None, "model"))'
            )
    return rules


def _apply_rule(rule: Rule, name: str, shape: tuple[int, ...], mesh: AnyMesh | None) -> P | None:
    if callable(rule):
        return rule(name, shape, mesh)
    pattern, spec = rule
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    return spec if any(name_matches(name, p) for p in patterns) else None


def _check_spec(name: str, shape: tuple[int, ...], spec: P, mesh: AnyMesh | None) -> None:
    """ValueError unless ``spec`` fits ``shape`` and every split divides its dimension."""
    where = f"parameter {name!r} of shape {shape}"
    if len(spec) > len(shape):
        raise ValueError(f"{where}: {spec} has {len(spec)} entries for {len(shape)} dimensions")
    if mesh is None:
        return
    for dim, (size, axes) in enumerate(zip(shape, spec)):
        names = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
        unknown = [a for a in names if a not in mesh.shape]
        if unknown:
            raise ValueError(f"{where}: {spec} names {unknown}, not axes of the mesh {mesh.shape}")
        ways = math.prod(mesh.shape[a] for a in names)
        if size % ways:
            raise ValueError(
                f"{where}: {spec} splits dimension {dim} ({size}) {ways} ways over {names}, "
                f"which does not divide it (mesh {dict(mesh.shape)}); change the rule or "
                "the mesh, or give the layer a divisible size"
            )


def _shape(leaf: Any) -> tuple[int, ...]:
    return tuple(getattr(leaf, "shape", np.shape(leaf)))


def _canonical(spec: P) -> P:
    """``spec`` without trailing Nones, the form jit gives its outputs: P("m", None) -> P("m")."""
    entries = list(spec)
    while entries and entries[-1] is None:
        entries.pop()
    return P(*entries)


def _specs(
    tree: Any, rules: list[Rule], default: P, mesh: AnyMesh | None, hits: list[bool]
) -> list[P]:
    """The spec of every leaf of ``tree`` (leaves order); marks in ``hits`` the rules used."""
    specs = []
    for name, leaf in zip(leaf_names(tree), jax.tree.leaves(tree)):
        shape = _shape(leaf)
        chosen = None
        for i, rule in enumerate(rules):
            spec = _apply_rule(rule, name, shape, mesh)
            if spec is not None:
                hits[i] = True
                chosen = spec if chosen is None else chosen
        chosen = _canonical(default if chosen is None else chosen)
        _check_spec(name, shape, chosen, mesh)
        specs.append(chosen)
    return specs


def _check_hits(rules: list[Rule], hits: list[bool], tree: Any) -> None:
    for rule, hit in zip(rules, hits):
        if not hit:
            raise ValueError(
                f"sharding rule {rule!r} selects no parameter; names look like "
                f"{leaf_names(tree)[:4]} (patterns match the whole dotted name, as in "
                'optim.param_groups: "*.weight", "encoder" for a sub-tree)'
            )


def param_specs(
    params: Any,
    rules: Sequence[Rule] = (),
    default: P = _REPLICATED,
    *,
    mesh: AnyMesh | None = None,
) -> Any:
    """The ``PartitionSpec`` of every parameter, by rules (first match wins).

    Useful as ``jax.jit``'s ``out_shardings`` (with ``NamedSharding``) and to restore a
    checkpoint sharded. Callable rules such as :func:`fsdp` need ``mesh``; with it, every
    spec is also checked against the parameter's shape.

    Args:
        params: a pytree of arrays (or ``jax.ShapeDtypeStruct``) with dotted names.
        rules: ``(pattern, spec)`` pairs and callable rules (see the module docstring).
        default: the spec of the parameters no rule selects (replicated).
        mesh: the mesh the specs are for.

    Returns:
        A pytree of ``PartitionSpec`` with the structure of ``params``.

    Raises:
        ValueError: a rule selects no parameter (a typo must not silently replicate), a
            spec names an axis the mesh lacks, has more entries than the parameter has
            dimensions, or splits a dimension its mesh axes do not divide.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jax.sharding import PartitionSpec as P
        >>> from funcnet import parallel
        >>> params = {"fc1": {"weight": jnp.zeros((4, 8)), "bias": jnp.zeros(8)}}
        >>> parallel.param_specs(params, [("*.weight", P(None, "model"))])
        {'fc1': {'bias': P(), 'weight': P(None, 'model')}}
    """
    rules = _check_rules(rules)
    hits = [False] * len(rules)
    specs = _specs(params, rules, default, mesh, hits)
    _check_hits(rules, hits, params)
    return jax.tree.unflatten(jax.tree.structure(params), specs)


def _suffixes(name: str) -> list[str]:
    """``"a.b.c"`` -> ``["a.b.c", "b.c", "c", ""]``: the names a parameter could have."""
    parts = name.split(".") if name else []
    return [".".join(parts[k:]) for k in range(len(parts))] + [""]


def _mirror_specs(opt_state: Any, params: Any, specs: list[P]) -> list[P]:
    """Specs of the optimizer-state leaves: a parameter's spec where the leaf mirrors it
    (its name ends with the parameter's and it has its shape), else replicated."""
    by_name = {
        name: (_shape(leaf), spec)
        for name, leaf, spec in zip(leaf_names(params), jax.tree.leaves(params), specs)
    }
    out = []
    for name, leaf in zip(leaf_names(opt_state), jax.tree.leaves(opt_state)):
        found = next((by_name[s] for s in _suffixes(name) if s in by_name), None)
        out.append(found[1] if found is not None and found[0] == _shape(leaf) else P())
    return out


def _is_train_state(state: Any) -> bool:
    return all(hasattr(state, f) for f in ("params", "opt_state", "replace"))


def _state_shardings(state: Any, mesh: Mesh, rules: list[Rule], default: P) -> Any:
    """A copy of ``state``'s structure holding the ``NamedSharding`` of every leaf."""
    hits = [False] * len(rules)
    param_spec = _specs(state.params, rules, default, mesh, hits)
    model_state = getattr(state, "model_state", {})
    model_spec = _specs(model_state, rules, P(), mesh, hits)
    _check_hits(rules, hits, state.params)
    opt_spec = _mirror_specs(state.opt_state, state.params, param_spec)

    def named(tree: Any, specs: list[P]) -> Any:
        shardings = [NamedSharding(mesh, s) for s in specs]
        return jax.tree.unflatten(jax.tree.structure(tree), shardings)

    shardings = jax.tree.map(lambda _: NamedSharding(mesh, P()), state)
    changes = {"params": named(state.params, param_spec)}
    changes["opt_state"] = named(state.opt_state, opt_spec)
    if hasattr(state, "model_state"):
        changes["model_state"] = named(model_state, model_spec)
    return shardings.replace(**changes)


def shard_state(
    state: Any, mesh: Mesh, rules: Sequence[Rule] = (), *, default: P = _REPLICATED
) -> Any:
    """Places a TrainState (or a pytree of parameters) on ``mesh``, sharded by ``rules``.

    Parameters get the spec of the first rule that selects them, else ``default``
    (replicated: plain data parallelism). Optimizer-state leaves that mirror a parameter
    (Adam's moments, momentum, an EMA, accumulated gradients: a name ending with the
    parameter's name, and its shape) get that parameter's spec, so sharded parameters
    shard their optimizer state too; the other optimizer leaves (counts,
    hyper-parameters), the step and the key are replicated. Model state (BatchNorm
    statistics) is replicated unless a rule selects it by name.

    The result feeds ``train.make_train_step`` / ``train.fit`` unchanged: ``jax.jit``
    compiles the step for these shardings (gathering sharded weights and reducing
    gradients where the computation needs it). XLA chooses the shardings of the new
    state; they are usually the same (then the donated buffers are reused and one program
    serves every step), but XLA may split a replicated leaf, and the second step then
    compiles again. To rule that out, compile the step with
    ``out_shardings=(state_shardings(state), None)`` (see :func:`state_shardings`).

    Args:
        state: a ``train.TrainState`` (anything with ``params``, ``opt_state`` and
            ``replace``), or a pytree of parameters.
        mesh: the device mesh (:func:`make_mesh`).
        rules: ``(pattern, PartitionSpec)`` pairs and callable rules (:func:`fsdp`,
            :func:`column_parallel`, :func:`row_parallel`, :func:`megatron`).
        default: the spec of the parameters no rule selects.

    Returns:
        ``state`` with every array placed (``jax.device_put``) with its ``NamedSharding``.

    Raises:
        ValueError: as :func:`param_specs`: a rule that selects nothing, a spec that does
            not fit its parameter or does not divide it on this mesh.

    Examples:
        >>> from jax.sharding import PartitionSpec as P
        >>> from funcnet import nn, optim, parallel, train
        >>> state = train.TrainState.create(nn.Linear(4, 8), optim.adam(1e-3), jax.random.key(0))
        >>> mesh = parallel.make_mesh()
        >>> state = parallel.shard_state(state, mesh, [("weight", P(None, "data"))])
        >>> state.params["weight"].sharding.spec
        P(None, 'data')
    """
    rules = _check_rules(rules)
    if not _is_train_state(state):
        specs = param_specs(state, rules, default, mesh=mesh)
        return jax.device_put(state, jax.tree.map(lambda s: NamedSharding(mesh, s), specs))
    return jax.device_put(state, _state_shardings(state, mesh, rules, default))


@dataclasses.dataclass(frozen=True)
class _ByName:
    """Specs by the last components of a name, for the layers under ``pattern``."""

    pattern: str
    specs: tuple[tuple[str, P], ...]
    label: str
    nested: bool = False  # also layers further down (pattern.*.suffix)

    def __call__(self, name: str, shape: tuple[int, ...], mesh: AnyMesh | None) -> P | None:
        for suffix, spec in self.specs:
            globs = [f"{self.pattern}.{suffix}"] + [f"{self.pattern}.*.{suffix}"] * self.nested
            if any(name_matches(name, g) for g in globs):
                return spec
            if name_matches(name, suffix) and name_matches("", self.pattern):
                return spec  # "*" covers a model that is the layer itself
        return None

    def __repr__(self) -> str:
        return self.label


def _column(axis: str) -> tuple[tuple[str, P], ...]:
    return (("weight", P(None, axis)), ("bias", P(axis)))


def _row(axis: str) -> tuple[tuple[str, P], ...]:
    return (("weight", P(axis, None)), ("bias", P()))


def column_parallel(pattern: str, axis: str = "model") -> RuleFn:
    """Megatron's column-parallel Linear: output features split over ``axis``.

    ``weight`` (in, out) gets ``P(None, axis)`` and ``bias`` (out,) ``P(axis)``: each
    device computes its slice of the output features from the whole input, with no
    communication in the forward pass. Follow it with :func:`row_parallel` on the next
    Linear so the activation stays split in between.

    Args:
        pattern: a glob for the Linear layers (``"fc1"``, ``"*.linear1"``).
        axis: the mesh axis.

    Returns:
        A callable rule for :func:`shard_state` / :func:`param_specs`.
    """
    return _ByName(pattern, _column(axis), f"column_parallel({pattern!r}, axis={axis!r})")


def row_parallel(pattern: str, axis: str = "model") -> RuleFn:
    """Megatron's row-parallel Linear: input features split over ``axis``.

    ``weight`` (in, out) gets ``P(axis, None)``; ``bias`` (out,) is replicated. Each device
    multiplies its slice of the input features, and one all-reduce of the output
    (batch, ..., out) sums the partial products.

    Args:
        pattern: a glob for the Linear layers (``"fc2"``, ``"*.linear2"``).
        axis: the mesh axis.

    Returns:
        A callable rule for :func:`shard_state` / :func:`param_specs`.
    """
    return _ByName(pattern, _row(axis), f"row_parallel({pattern!r}, axis={axis!r})")


@dataclasses.dataclass(frozen=True)
class _Fsdp:
    axis: str
    min_size: int

    def __call__(self, name: str, shape: tuple[int, ...], mesh: AnyMesh | None) -> P | None:
        if mesh is None or self.axis not in mesh.shape:
            raise ValueError(
                f"{self!r} needs a mesh with a {self.axis!r} axis: pass mesh= to param_specs"
            )
        ways = mesh.shape[self.axis]
        dims = [i for i, size in enumerate(shape) if size % ways == 0]
        if math.prod(shape) < self.min_size or not dims:
            return None
        largest = max(dims, key=lambda i: shape[i])  # the first of equal ones
        return P(*[None] * largest, self.axis)

    def __repr__(self) -> str:
        return f"fsdp(axis={self.axis!r}, min_size={self.min_size})"


def fsdp(axis: str = "data", min_size: int = 2**10) -> RuleFn:
    """Fully sharded data parallelism (ZeRO-3): every large parameter split over ``axis``.

    A parameter of at least ``min_size`` elements is split along its largest dimension
    that the axis size divides (the first of equal ones); smaller ones, and those with no
    such dimension, are left to the next rules (replicated by default). With
    :func:`shard_state` the optimizer state follows, so parameters and optimizer state
    take 1/N of the memory per device on an N-way axis. The batch is split over the same
    axis; in the compiled step each weight is all-gathered before use and its gradient
    reduce-scattered (XLA's choice of collectives; see docs/parallel.md).

    Args:
        axis: the mesh axis that splits the parameters (and the batch).
        min_size: the smallest number of elements worth splitting.

    Returns:
        A callable rule for :func:`shard_state` / :func:`param_specs` (which needs the
        mesh for it). It raises ValueError there when it selects no parameter.
    """
    return _Fsdp(axis, min_size)


def _attention(axis: str) -> tuple[tuple[str, P], ...]:
    qkv = tuple((f"{n}_proj_weight", P(None, axis)) for n in "qkv")
    return (("in_proj_weight", P(None, axis)), ("in_proj_bias", P(axis)), *qkv)


def megatron(pattern: str = "*", axis: str = "model", *, attention: bool = False) -> RuleFn:
    """Megatron-style tensor parallelism for the transformer blocks under ``pattern``.

    The feed-forward network of every ``TransformerEncoderLayer`` / ``DecoderLayer``
    (``linear1`` column-parallel, ``linear2`` row-parallel) is split over ``axis``: each
    device holds ``dim_feedforward / N`` hidden units, and the block's forward pass costs
    one all-reduce of its output (batch, seq, d_model), its backward pass one more.
    LayerNorms stay replicated.

    Attention is left to the next rules (replicated by default: computed whole on every
    device of ``axis``, no communication), because funcnet's ``MultiheadAttention``
    packs q | k | v in one ``in_proj_weight`` (E, 3E) as PyTorch does: a
    ``PartitionSpec`` splits that axis in contiguous blocks, which do not hold whole heads
    of q, k and v, and XLA then moves activations between devices (all-to-all and
    collective-permute) to line the heads up. ``attention=True`` splits it anyway, for
    memory: ``in_proj_weight`` / ``in_proj_bias`` (and the separate
    ``q/k/v_proj_weight``) by columns, ``out_proj`` row-parallel. The results are the
    same either way (GSPMD keeps any sharding correct); only the communication differs.

    Args:
        pattern: a glob for the blocks, or for modules holding them (``"*"``: every
            block; ``"encoder"``: those inside ``encoder``; ``"layers.1"``: one).
        axis: the mesh axis that splits the weights ("model" on a ("data", "model") mesh,
            whose "data" axis splits the batch).
        attention: also split the attention weights (see above).

    Returns:
        A callable rule for :func:`shard_state` / :func:`param_specs`.

    Examples:
        >>> from funcnet import nn, parallel
        >>> layer = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32)
        >>> specs = parallel.param_specs(layer.init(jax.random.key(0))[0], [parallel.megatron()])
        >>> specs["linear1"]["weight"], specs["linear2"]["weight"], specs["norm1"]["weight"]
        (P(None, 'model'), P('model',), P())
    """
    table = (
        *((f"linear1.{leaf}", spec) for leaf, spec in _column(axis)),
        *((f"linear2.{leaf}", spec) for leaf, spec in _row(axis)),
    )
    if attention:
        table += _attention(axis) + tuple((f"out_proj.{n}", s) for n, s in _row(axis))
    label = f"megatron({pattern!r}, axis={axis!r}{', attention=True' if attention else ''})"
    return _ByName(pattern, table, label, nested=True)


def state_shardings(state: Any) -> Any:
    """The sharding of every array of ``state`` (None for other leaves), same structure.

    A step compiled with ``out_shardings=(state_shardings(state), None)`` returns its new
    state with the layout :func:`shard_state` chose; left free, XLA may hand back some
    leaves sharded otherwise (a small FSDP model's replicated biases came back split),
    and the next call then compiles the step again::

        step = jax.jit(train.make_train_step(loss_fn, jit=False), donate_argnums=0,
                       out_shardings=(parallel.state_shardings(state), None))

    Args:
        state: a TrainState or any pytree of arrays.

    Returns:
        A pytree of ``jax.sharding.Sharding`` (None where a leaf is not a ``jax.Array``).
    """
    return jax.tree.map(lambda leaf: getattr(leaf, "sharding", None), state)
