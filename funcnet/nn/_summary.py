"""Model summary: layer tree, output shapes and parameter counts via jax.eval_shape."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

#: One recorded call: the module's dotted path, the module, its output.
Row = tuple[str, Any, Any]


def _as_spec(x: Any) -> Any:
    if isinstance(x, tuple) and all(isinstance(d, int) for d in x):
        return jax.ShapeDtypeStruct(x, jnp.float32)
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return jax.ShapeDtypeStruct(x.shape, x.dtype)
    return x


def _count(tree: Any) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree))


def _nbytes(tree: Any) -> int:
    return sum(
        int(np.prod(leaf.shape)) * leaf.dtype.itemsize for leaf in jax.tree_util.tree_leaves(tree)
    )


def _shape_text(out: Any) -> str:
    leaves = jax.tree_util.tree_leaves(out)
    shapes = [
        f"({', '.join(str(d) for d in leaf.shape)})" for leaf in leaves if hasattr(leaf, "shape")
    ]
    if len(shapes) == 1:
        return shapes[0]
    return "[" + ", ".join(shapes) + "]"


def _subtree(tree: Mapping[str, Any], path: str) -> Any:
    node: Any = tree
    for name in path.split(".")[1:]:
        node = node.get(name, {}) if isinstance(node, Mapping) else {}
    return node


def summarize(
    init: Callable[[jax.Array], tuple[Any, Any]],
    run: Callable[[Any, Any, tuple[Any, ...], list[Row]], Any],
    inputs: tuple[Any, ...],
    *,
    depth: int | None,
) -> str:
    """Builds the text of ``Module.summary`` (see there).

    Args:
        init: the model's ``init``.
        run: ``run(params, state, inputs, rows)`` applies the model, appending one
            :data:`Row` per module call to ``rows``, in call (pre-)order.
        inputs: example inputs: arrays, ``jax.ShapeDtypeStruct`` s or shape tuples.
        depth: show modules at most this deep (``None``: all).
    """
    specs = tuple(_as_spec(x) for x in inputs)
    params, state = jax.eval_shape(init, jax.random.key(0))
    rows: list[Row] = []
    jax.eval_shape(lambda p, s, *xs: run(p, s, xs, rows), params, state, *specs)
    table = [("Layer (type)", "Output shape", "Param #")]
    for path, module, out in rows:
        level = path.count(".")
        if depth is not None and level > depth:
            continue
        name = path.rsplit(".", 1)[-1] if level else path
        label = f"{'  ' * level}{name} ({type(module).__name__})"
        table.append((label, _shape_text(out), f"{_count(_subtree(params, path)):,}"))
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    rule = "-" * (sum(widths) + 4)

    def fmt(row: tuple[str, str, str]) -> str:
        return f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}"

    lines = [rule, fmt(table[0]), rule, *(fmt(r) for r in table[1:]), rule]
    lines.append(f"Trainable params: {_count(params):,} ({_nbytes(params) / 2**20:.2f} MiB)")
    lines.append(f"State (non-trainable): {_count(state):,} ({_nbytes(state) / 2**20:.2f} MiB)")
    return "\n".join(lines)
