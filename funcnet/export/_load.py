"""load: an exported file as a callable, with jax and funcnet alone; save_weights."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from funcnet import checkpoint
from funcnet.errors import ShapeError
from funcnet.export._format import (
    BATCH,
    ExportError,
    dtype_of,
    read,
    require_flatbuffers,
    weights_path,
    weights_tree,
)

__all__ = ["ExportedModel", "load", "save_weights"]


@dataclasses.dataclass(frozen=True)
class _Input:
    """One array input of an exported program: its name, shape (None: the batch) and dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype

    def __str__(self) -> str:
        return f"{self.name} {_describe(self.shape, self.dtype)}"


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class ExportedModel:
    """An exported model, loaded: call it as ``outputs = exported(*inputs, **kwargs)``.

    Returned by :func:`load`. Calls are compiled once per batch size (``jax.jit`` of
    ``Exported.call``) and may run inside ``jax.jit`` and, for a ``differentiable``
    export, ``jax.grad``. Inputs are checked first: a wrong shape or dtype raises
    ``ShapeError`` naming the input and the shape it expects.

    Attributes:
        path: the file it was loaded from.
        metadata: the file's JSON metadata (docs/export.md lists the fields).
        exported: the ``jax.export.Exported`` program.
        params: the parameters passed as inputs (None when baked into the program).
        state: the state passed as inputs (None when baked into the program).
    """

    path: Path
    metadata: dict[str, Any]
    exported: jax.export.Exported
    params: Any = None
    state: Any = None
    _run: Any = dataclasses.field(init=False)
    _input_tree: Any = dataclasses.field(init=False)
    _input_specs: list[_Input] = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        tree, specs = _input_table(self.exported, self.metadata)
        object.__setattr__(self, "_run", jax.jit(self.exported.call))
        object.__setattr__(self, "_input_tree", tree)
        object.__setattr__(self, "_input_specs", specs)

    def __call__(self, *inputs: Any, **kwargs: Any) -> Any:
        """Runs the program on ``inputs`` with the loaded weights.

        Args:
            *inputs: the positional inputs, as at export (any batch size if polymorphic).
            **kwargs: the keyword inputs, as at export.

        Returns:
            The model's outputs (the same pytree of arrays as ``model.apply(...)[0]``).

        Raises:
            ShapeError: an input's shape or dtype differs from the export's.
            TypeError: other inputs than at export.
        """
        self._check_inputs(inputs, kwargs)
        if self.metadata["params_as_inputs"]:
            return self._run(self.params, self.state, *inputs, **kwargs)
        return self._run(*inputs, **kwargs)

    def apply(
        self, params: Mapping[str, Any], state: Mapping[str, Any], *inputs: Any, **kwargs: Any
    ) -> tuple[Any, Mapping[str, Any]]:
        """``model.apply(params, state, *inputs, train=False)`` without the model's code.

        Only for an export with ``params_as_inputs=True``; differentiate it with respect
        to ``params`` if it was exported with ``differentiable=True``.

        Returns:
            ``(outputs, state)``: eval mode leaves the state as it was.

        Raises:
            ExportError: the weights are baked in, or do not match the export's.
        """
        if not self.metadata["params_as_inputs"]:
            raise ExportError(
                f"{self.path} holds its weights as constants: export with "
                f"params_as_inputs=True to pass params and state"
            )
        weights = _match_weights(
            weights_tree(params, state), self.exported, self.path, "the arguments"
        )
        self._check_inputs(inputs, kwargs)
        return self._run(weights["params"], weights["state"], *inputs, **kwargs), state

    def _check_inputs(self, inputs: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Raises TypeError or ShapeError unless the inputs fit the exported program."""
        leaves, treedef = jax.tree.flatten((tuple(inputs), kwargs))
        if treedef != self._input_tree:
            raise TypeError(
                f"{self.path.name} takes inputs ({self.signature()}); got "
                f"{len(inputs)} positional and keywords {sorted(kwargs)}"
            )
        batch: tuple[str, int] | None = None
        for spec, x in zip(self._input_specs, leaves):
            batch = _check_input(self.path.name, spec, x, batch)

    def signature(self) -> str:
        """The inputs as text, e.g. ``"x (batch, 4) float32"``."""
        return ", ".join(str(spec) for spec in self._input_specs)

    def __repr__(self) -> str:
        return (
            f"ExportedModel({str(self.path)!r}, inputs=({self.signature()}), "
            f"platforms={tuple(self.exported.platforms)})"
        )


def load(
    path: str | os.PathLike[str],
    *,
    params: Mapping[str, Any] | None = None,
    state: Mapping[str, Any] | None = None,
) -> ExportedModel:
    """Reads a file written by :func:`export`; needs jax and funcnet, not the model's code.

    Args:
        path: the exported file.
        params: for an export with ``params_as_inputs=True``, parameters to use instead
            of the params file beside ``path`` (the same names, shapes and dtypes).
        state: the state to use with ``params`` (``{}`` or omitted if the model has none).

    Returns:
        The callable :class:`ExportedModel`.

    Raises:
        FileNotFoundError: ``path``, or the params file an export with
            ``params_as_inputs=True`` reads, does not exist.
        ExportError: not an export file, written by a newer funcnet, exported for other
            platforms than JAX's default here, or weights that do not match.
        ImportError: the ``flatbuffers`` package is missing.
    """
    require_flatbuffers()
    path = Path(path)
    metadata, exported = read(path)
    here = jax.export.default_export_platform()
    if here not in exported.platforms:
        raise ExportError(
            f"{path} was exported for platforms {tuple(exported.platforms)}, but JAX's "
            f"default platform here is {here!r}: export again with platforms including "
            f"{here!r} (any platform can be exported on any machine)"
            + (", or run on the CPU (JAX_PLATFORMS=cpu)" if "cpu" in exported.platforms else "")
        )
    if not metadata["params_as_inputs"]:
        if params is not None or state is not None:
            raise ExportError(f"{path} holds its weights as constants; it takes no params")
        return ExportedModel(path, metadata, exported)
    weights = _load_weights(path, exported, params, state)
    return ExportedModel(path, metadata, exported, weights["params"], weights["state"])


def save_weights(
    path: str | os.PathLike[str], params: Mapping[str, Any], state: Mapping[str, Any] | None = None
) -> Path:
    """Writes new weights for an export made with ``params_as_inputs=True``.

    They are checked against the export's (names, shapes, dtypes) and written atomically
    to the params file beside ``path``, which the next ``load(path)`` reads.

    Args:
        path: the exported file.
        params: the new parameters.
        state: the new state (``{}`` or omitted if the model has none).

    Returns:
        The params file's path.

    Raises:
        ExportError: the export bakes its weights in, or the weights do not match.
    """
    require_flatbuffers()
    path = Path(path)
    metadata, exported = read(path)
    if not metadata["params_as_inputs"]:
        raise ExportError(f"{path} holds its weights as constants: export it again instead")
    weights = _match_weights(weights_tree(params, state or {}), exported, path, "the weights given")
    return checkpoint.save_params(weights_path(path), weights)


def _load_weights(
    path: Path,
    exported: jax.export.Exported,
    params: Mapping[str, Any] | None,
    state: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The weights of an export with params as inputs: given, or from its params file."""
    if params is None and state is None:
        file = weights_path(path)
        if not file.is_file():
            raise FileNotFoundError(
                f"{path} was exported with params_as_inputs=True and reads its weights from "
                f"{file}, which does not exist: write it with "
                f"funcnet.export.save_weights({str(path)!r}, params, state), or pass "
                f"params= and state= to load"
            )
        return _match_weights(checkpoint.load_params(file), exported, path, str(file))
    if params is None:
        raise TypeError("load: pass params= together with state=")
    return _match_weights(weights_tree(params, state or {}), exported, path, "the params given")


def _weights_spec(exported: jax.export.Exported) -> dict[str, Any]:
    """``{"params": ..., "state": ...}`` of the avals an export takes as weights."""
    args, _ = jax.tree.unflatten(exported.in_tree, exported.in_avals)
    return weights_tree(args[0], args[1])


def _dotted(path: tuple[Any, ...]) -> str:
    """A pytree path as PyTorch-style dotted names: ``params.0.weight``."""
    return ".".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


def _match_weights(weights: Any, exported: jax.export.Exported, path: Path, what: str) -> Any:
    """``weights`` rebuilt in the structure the export takes; ExportError lists differences."""
    spec_leaves, treedef = jax.tree_util.tree_flatten_with_path(_weights_spec(exported))
    expected = {_dotted(p): aval for p, aval in spec_leaves}
    given = {_dotted(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(weights)[0]}
    differences = [f"{name}: not in the export" for name in sorted(given.keys() - expected.keys())]
    for name, aval in expected.items():
        if name not in given:
            differences.append(f"{name}: missing")
            continue
        shape, dtype = (
            tuple(np.shape(given[name])),
            jax.dtypes.canonicalize_dtype(dtype_of(given[name])),
        )
        if shape != tuple(aval.shape) or dtype != aval.dtype:
            differences.append(
                f"{name}: expected {aval.dtype}{list(aval.shape)}, got {dtype}{list(shape)}"
            )
    if differences:
        raise ExportError(
            f"{what} do not match the weights {path} was exported with "
            f"({len(differences)} differences):\n  " + "\n  ".join(differences)
        )
    return jax.tree.unflatten(treedef, [given[name] for name in expected])


def _describe(shape: tuple[int | None, ...], dtype: np.dtype) -> str:
    """``(batch, 4) float32``: a shape (None for the batch) and a dtype, as messages show them."""
    dims = ", ".join(BATCH if d is None else str(d) for d in shape)
    return f"({dims}{',' if len(shape) == 1 else ''}) {dtype}"


def _input_table(
    exported: jax.export.Exported, metadata: dict[str, Any]
) -> tuple[Any, list[_Input]]:
    """The inputs' pytree structure (``(args, kwargs)``) and one ``_Input`` per leaf."""
    args, kwargs = jax.tree.unflatten(exported.in_tree, exported.in_avals)
    args = tuple(args[2:] if metadata["params_as_inputs"] else args)
    avals, treedef = jax.tree.flatten((args, kwargs))
    names = [entry["name"] for entry in metadata["inputs"]]
    specs = [
        _Input(
            name, tuple(None if jax.export.is_symbolic_dim(d) else int(d) for d in a.shape), a.dtype
        )
        for name, a in zip(names, avals)
    ]
    return treedef, specs


def _check_input(
    where: str, spec: _Input, x: Any, batch: tuple[str, int] | None
) -> tuple[str, int] | None:
    """Raises ShapeError unless ``x`` fits ``spec``; returns the batch seen so far."""
    shape, dtype = tuple(np.shape(x)), jax.dtypes.canonicalize_dtype(dtype_of(x))
    fits = len(shape) == len(spec.shape) and all(e in (None, g) for e, g in zip(spec.shape, shape))
    if not fits or dtype != spec.dtype:
        raise ShapeError(f"{where}: expected input {spec}, got {_describe(shape, dtype)}")
    if None not in spec.shape:
        return batch
    size = shape[spec.shape.index(None)]
    if size < 1:
        raise ShapeError(f"{where}: input {spec.name} has batch size {size}; it must be at least 1")
    if batch is not None and size != batch[1]:
        raise ShapeError(
            f"{where}: input {spec.name} has batch size {size} but {batch[0]} has {batch[1]}: "
            f"the inputs share the batch dimension"
        )
    return spec.name, size
