"""export: a model's eval-mode forward pass traced by jax.export and written to a file."""

from __future__ import annotations

import importlib.metadata
import inspect
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from funcnet import checkpoint
from funcnet._version import __version__
from funcnet.checkpoint import _layout
from funcnet.export._format import (
    BATCH,
    FORMAT,
    FORMAT_VERSION,
    dtype_of,
    require_flatbuffers,
    weights_path,
    weights_tree,
    write_zip,
)

__all__ = ["export"]

PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


def export(
    model: Any,
    params: Mapping[str, Any],
    state: Mapping[str, Any],
    *inputs: Any,
    path: str | os.PathLike[str],
    platforms: str | Sequence[str] = ("cpu", "cuda"),
    batch_polymorphic: bool = True,
    params_as_inputs: bool = False,
    differentiable: bool = False,
    **kwargs: Any,
) -> Path:
    """Writes ``model.apply(params, state, *inputs, train=False, **kwargs)[0]`` to a file.

    The file (a zip, see docs/export.md) holds the program serialised by ``jax.export``
    and JSON metadata: inputs and outputs with shapes and dtypes, the funcnet, jax and
    jaxlib versions, the platforms and ``repr(model)``. It runs in eval mode (dropout off,
    BatchNorm's running statistics) with ``load(path)``, in a process that never imports
    the model's code.

    Args:
        model: the module to export.
        params: its parameters, from ``model.init`` (possibly trained).
        state: its state (BatchNorm running statistics), ``{}`` if none.
        *inputs: example positional inputs of ``forward``: arrays or
            ``jax.ShapeDtypeStruct`` (pytrees of them work too); only shapes and dtypes
            are used. E.g. ``x`` of shape ``(N, in_features)``.
        path: the file to write (conventionally ``.fnx``); replaced atomically.
        platforms: the platforms the program may run on, among ``"cpu"``, ``"cuda"``,
            ``"rocm"``, ``"tpu"``; any of them can be exported on any machine.
        batch_polymorphic: export axis 0 of every input as one symbolic dimension named
            ``batch``, so any batch size ``>= 1`` runs; if False the shapes are fixed.
        params_as_inputs: pass the weights as inputs, read from a ``save_params`` file
            ``<stem>.params.npz`` written beside ``path`` (``{"params": ..., "state":
            ...}``); if False they are baked into the program as constants.
        differentiable: also serialise the program's VJP, so that ``jax.grad`` works
            through the loaded function (first order; a larger file, a slower export).
        **kwargs: example keyword inputs of ``forward``.

    Returns:
        ``path`` as a Path.

    Raises:
        ImportError: the ``flatbuffers`` package is missing (``pip install "funcnet[export]"``).
        ValueError: unknown platforms, or inputs whose batch sizes (axis 0) differ while
            ``batch_polymorphic`` is True.

    Examples:
        >>> import jax, numpy as np
        >>> from funcnet import export, nn
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> params, state = model.init(jax.random.key(0))
        >>> path = export.export(model, params, state, np.zeros((1, 4), np.float32), path="mlp.fnx")
        >>> export.load(path)(np.ones((3, 4), np.float32)).shape  # any batch size
        (3, 2)
    """
    require_flatbuffers()
    path = Path(path)
    platforms = _check_platforms(platforms)
    names = _input_names(model, inputs, kwargs)
    args_spec, kwargs_spec = _input_specs(inputs, kwargs, names, batch_polymorphic)
    exported = _trace(model, params, state, args_spec, kwargs_spec, platforms, params_as_inputs)
    program = exported.serialize(vjp_order=1 if differentiable else 0)
    if params_as_inputs:
        checkpoint.save_params(weights_path(path), weights_tree(params, state))
    fields = {"batch_polymorphic": batch_polymorphic, "differentiable": differentiable}
    metadata = _metadata(model, exported, names, params_as_inputs, fields)
    _layout.write_file(path, lambda f: write_zip(f, metadata, program))
    return path


def _check_platforms(platforms: str | Sequence[str]) -> tuple[str, ...]:
    """``platforms`` as a tuple of jax.export's platform names."""
    platforms = (platforms,) if isinstance(platforms, str) else tuple(platforms)
    unknown = [p for p in platforms if p not in PLATFORMS]
    if unknown or not platforms:
        hint = " ('gpu' is 'cuda' for NVIDIA, 'rocm' for AMD)" if "gpu" in unknown else ""
        raise ValueError(f"platforms must name some of {PLATFORMS}, got {platforms!r}{hint}")
    return platforms


def _input_names(model: Any, inputs: tuple[Any, ...], kwargs: Mapping[str, Any]) -> list[str]:
    """One name per input leaf: ``forward``'s parameter name (``x``), then the pytree path."""
    try:
        parameters = list(inspect.signature(model.forward).parameters.values())[1:]  # ctx
    except (TypeError, ValueError):
        parameters = []
    positional = [
        p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    names = []
    for path, _ in jax.tree_util.tree_flatten_with_path((tuple(inputs), dict(kwargs)))[0]:
        group, where, rest = path[0].idx, path[1], path[2:]
        if group == 0:
            base = positional[where.idx] if where.idx < len(positional) else f"input{where.idx}"
        else:
            base = str(where.key)
        names.append(base + jax.tree_util.keystr(tuple(rest)))
    return names


def _input_specs(
    inputs: tuple[Any, ...], kwargs: Mapping[str, Any], names: list[str], batch_polymorphic: bool
) -> tuple[Any, Any]:
    """``(args, kwargs)`` as ``jax.ShapeDtypeStruct``s, axis 0 symbolic if polymorphic."""
    leaves, treedef = jax.tree.flatten((tuple(inputs), dict(kwargs)))
    shapes = [tuple(np.shape(x)) for x in leaves]
    dtypes = [jax.dtypes.canonicalize_dtype(dtype_of(x)) for x in leaves]
    if batch_polymorphic:
        sizes = {name: shape[0] for name, shape in zip(names, shapes) if shape}
        if len(set(sizes.values())) > 1:
            raise ValueError(
                f"batch_polymorphic=True makes axis 0 of every input the batch, but the "
                f"example inputs' sizes differ ({sizes}): pass batch_polymorphic=False to "
                f"export fixed shapes"
            )
        (batch,) = jax.export.symbolic_shape(BATCH)
        shapes = [(batch, *shape[1:]) if shape else shape for shape in shapes]
    specs = [jax.ShapeDtypeStruct(s, d) for s, d in zip(shapes, dtypes)]
    return jax.tree.unflatten(treedef, specs)


def _trace(
    model: Any,
    params: Mapping[str, Any],
    state: Mapping[str, Any],
    args_spec: tuple[Any, ...],
    kwargs_spec: dict[str, Any],
    platforms: tuple[str, ...],
    params_as_inputs: bool,
) -> jax.export.Exported:
    """The Exported program of the model's eval-mode forward pass."""
    if params_as_inputs:

        def forward(params, state, *args, **kwargs):
            return model.apply(params, state, *args, train=False, **kwargs)[0]

        weights = jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(np.shape(a), jax.dtypes.canonicalize_dtype(dtype_of(a))),
            (params, state),
        )
    else:

        def forward(*args, **kwargs):
            return model.apply(params, state, *args, train=False, **kwargs)[0]

        weights = ()
    forward.__name__ = type(model).__name__  # jax.export's messages name the function
    return jax.export.export(jax.jit(forward), platforms=platforms)(
        *weights, *args_spec, **kwargs_spec
    )


def _shape_json(shape: tuple[Any, ...]) -> list[int | str]:
    """A shape for the metadata: ints, and the symbolic batch dimension by name."""
    return [str(d) if jax.export.is_symbolic_dim(d) else int(d) for d in shape]


def _metadata(
    model: Any,
    exported: jax.export.Exported,
    names: list[str],
    params_as_inputs: bool,
    fields: dict[str, Any],
) -> dict[str, Any]:
    """The JSON metadata of an export (docs/export.md lists the fields)."""
    skip = 2 if params_as_inputs else 0  # params, state
    args, kwargs = jax.tree.unflatten(exported.in_tree, exported.in_avals)
    leaves = jax.tree.leaves((tuple(args[skip:]), kwargs))
    positional_leaves = len(jax.tree.leaves(tuple(args[skip:])))
    outputs = jax.tree_util.tree_flatten_with_path(
        jax.tree.unflatten(exported.out_tree, exported.out_avals)
    )[0]
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "funcnet_version": __version__,
        "jax_version": jax.__version__,
        "jaxlib_version": importlib.metadata.version("jaxlib"),
        "created": _layout.now(),
        "platforms": list(exported.platforms),
        "calling_convention_version": exported.calling_convention_version,
        "batch_dim": BATCH if fields["batch_polymorphic"] else None,
        "params_as_inputs": params_as_inputs,
        "differentiable": fields["differentiable"],
        "inputs": [
            {
                "name": n,
                "shape": _shape_json(a.shape),
                "dtype": str(a.dtype),
                "keyword": i >= positional_leaves,
            }
            for i, (n, a) in enumerate(zip(names, leaves))
        ],
        "outputs": [
            {
                "name": "output" + jax.tree_util.keystr(p),
                "shape": _shape_json(a.shape),
                "dtype": str(a.dtype),
            }
            for p, a in outputs
        ],
        "model": repr(model),
    }
