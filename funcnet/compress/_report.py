"""Per-parameter reports: sparsity after pruning, bytes before and after quantisation."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcnet.compress._prune import Params
from funcnet.compress._select import WEIGHTS, Patterns, select
from funcnet.optim import leaf_names

Row = dict[str, int | float]


@dataclasses.dataclass(frozen=True)
class Report:
    """A table with one row per parameter and a total: ``print(report)`` shows it.

    Attributes:
        columns: the column names, the keys of every row.
        formats: one ``str.format`` pattern per column, for the printed table.
        layers: dotted parameter name -> row (column -> int or float).
        total: the row of the whole selection.
    """

    columns: tuple[str, ...]
    formats: tuple[str, ...]
    layers: dict[str, Row]
    total: Row

    def as_dict(self) -> dict[str, Any]:
        """``{"layers": {name: row}, "total": row}``, plain Python numbers (JSON-ready)."""
        return {"layers": {k: dict(v) for k, v in self.layers.items()}, "total": dict(self.total)}

    def __str__(self) -> str:
        table = [("parameter", *self.columns)]
        for name, row in [*self.layers.items(), ("total", self.total)]:
            table.append((name, *(f.format(row[c]) for c, f in zip(self.columns, self.formats))))
        widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
        return "\n".join(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(line, widths))
            ).rstrip()
            for line in table
        )


def _sparsity_row(size: int, zeros: int) -> Row:
    return {"size": size, "zeros": zeros, "sparsity": zeros / size if size else 0.0}


@jax.jit
def _count_zeros(arrays: list) -> list:
    return [jnp.sum(x == 0) for x in arrays]


def sparsity_report(
    params: Params, *, include: Patterns = WEIGHTS, exclude: Patterns = ()
) -> Report:
    """How many entries of each selected parameter are exactly zero.

    The numbers PyTorch's pruning tutorial prints (``100 * (w == 0).sum() / w.numel()``),
    read from the parameters themselves, so it also checks a fine-tuned model.

    Args:
        params: the parameter tree.
        include: glob pattern(s) on dotted names, as for `prune` (default: the weights).
        exclude: glob pattern(s) to leave out.

    Returns:
        A `Report` with columns ``size`` (entries), ``zeros`` and ``sparsity`` (their
        fraction, a float in [0, 1]) per parameter, and the total over them.

    Raises:
        ValueError: the selection is empty.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import compress
        >>> report = compress.sparsity_report({"fc": {"weight": jnp.array([[0.0, 1.0]])}})
        >>> print(report)
        parameter  size  zeros  sparsity
        fc.weight     2      1     50.0%
        total         2      1     50.0%
    """
    picked = select(params, include, exclude, "sparsity_report")
    chosen = [(n, x) for n, x, p in zip(leaf_names(params), jax.tree.leaves(params), picked) if p]
    counts = _count_zeros([x for _, x in chosen])
    layers = {
        name: _sparsity_row(int(np.size(leaf)), int(z)) for (name, leaf), z in zip(chosen, counts)
    }
    size = sum(int(r["size"]) for r in layers.values())
    zeros = sum(int(r["zeros"]) for r in layers.values())
    return Report(
        ("size", "zeros", "sparsity"),
        ("{:,}", "{:,}", "{:.1%}"),
        layers,
        _sparsity_row(size, zeros),
    )


def _nbytes(tree: Any) -> int:
    """Bytes of a tree's arrays, from shapes and dtypes (``ShapeDtypeStruct`` works too)."""
    leaves = jax.tree.leaves(tree)
    dtypes = [np.dtype(x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype) for x in leaves]
    return sum(int(np.prod(np.shape(x))) * d.itemsize for x, d in zip(leaves, dtypes))


def _size_row(before: int, after: int) -> Row:
    return {"bytes_before": before, "bytes_after": after, "ratio": before / after if after else 0.0}


def size_report(params: Params, qparams: Any) -> Report:
    """Bytes of each parameter before and after `quantize`, and in total.

    Args:
        params: the float parameter tree.
        qparams: ``quantize(params, ...)``: the same tree with some leaves quantised.

    Returns:
        A `Report` with columns ``bytes_before``, ``bytes_after`` (int8 values plus float32
        scales for a quantised weight) and ``ratio`` (before / after) for every parameter,
        and the total over the whole tree.

    Raises:
        ValueError: ``qparams`` does not have ``params``' structure.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import compress
        >>> params = {"fc": {"weight": jnp.ones((64, 128)), "bias": jnp.ones(128)}}
        >>> print(compress.size_report(params, compress.quantize(params)))
        parameter  bytes_before  bytes_after  ratio
        fc.bias             512          512  1.00x
        fc.weight        32,768        8,704  3.76x
        total            33,280        9,216  3.61x
    """
    try:
        quantized = jax.tree.structure(params).flatten_up_to(qparams)
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"size_report: qparams does not have the structure of params: {err}"
        ) from None
    layers = {
        name: _size_row(_nbytes(p), _nbytes(q))
        for name, p, q in zip(leaf_names(params), jax.tree.leaves(params), quantized)
    }
    before = sum(int(r["bytes_before"]) for r in layers.values())
    after = sum(int(r["bytes_after"]) for r in layers.values())
    return Report(
        ("bytes_before", "bytes_after", "ratio"),
        ("{:,}", "{:,}", "{:.2f}x"),
        layers,
        _size_row(before, after),
    )
