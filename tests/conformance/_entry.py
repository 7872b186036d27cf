"""The conformance registry's entry type.

Each layer family lists its public layers in ``tests/conformance/registry_<family>.py`` as
``ENTRIES = [Entry(...), ...]``; ``test_conformance.py`` runs every cross-cutting check
over all of them and fails when a public layer of ``funcnet.nn`` has no entry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

Shape = tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Entry:
    """One configured layer and how to exercise it.

    Attributes:
        id: a unique test id, starting with the layer's class name (e.g. "Conv2d-groups").
        make: builds the module.
        inputs: the positional inputs of ``apply`` as ``(shape, dtype_name)`` pairs; integer
            dtypes are filled with small non-negative integers, floats with normals.
        bad_inputs: inputs with a wrong shape or dtype, or None when no check applies.
        bad_match: a regex the ShapeError message must match (it must name the layer).
        train: also run the checks in train mode (with a key).
        bf16_dtype: the output dtype for bfloat16 floating inputs ("bfloat16" when the layer
            computes in its input's dtype), or None to skip that check.
        grad: check that gradients w.r.t. the parameters (and float inputs) are finite.
        kwargs: keyword arguments for ``apply``.
        output: picks the array to check from ``apply``'s output (default: the output
            itself, or its first element for tuple outputs).
    """

    id: str
    make: Callable[[], Any]
    inputs: tuple[tuple[Shape, str], ...]
    bad_inputs: tuple[tuple[Shape, str], ...] | None = None
    bad_match: str = ""
    train: bool = False
    bf16_dtype: str | None = "bfloat16"
    grad: bool = True
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    output: Callable[[Any], Any] | None = None
