"""Hyper-parameter checks, PyTorch's ranges and words, in one place.

Every recipe, `set_hyperparams` and `lbfgs` check their numbers here. A check is written as
PyTorch writes it, ``not 0.0 <= lr``, so NaN fails it too. Python numbers and concrete
arrays are checked when the optimizer is built; a traced value (inside ``jax.jit``) or a
schedule is not, so nothing here runs inside a compiled step.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class _Range:
    """``low <= v <= high`` (``< high`` when ``high_open``), and PyTorch's name for ``v``."""

    label: str
    low: float = 0.0
    high: float = math.inf
    high_open: bool = False

    def holds(self, v: np.ndarray) -> bool:
        upper = v < self.high if self.high_open else v <= self.high
        return bool(np.all((self.low <= v) & upper))

    def text(self) -> str:
        if self.high == math.inf:
            return f">= {self.low:g}"
        return f"in [{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


_BETA = _Range("beta parameter", 0.0, 1.0, high_open=True)
RANGES: dict[str, _Range] = {
    "lr": _Range("learning rate"),
    "learning_rate": _Range("learning rate"),
    "eps": _Range("epsilon value"),
    "momentum": _Range("momentum value"),
    "dampening": _Range("dampening value"),
    "weight_decay": _Range("weight_decay value"),
    "alpha": _Range("alpha value"),
    "lr_decay": _Range("lr_decay value"),
    "initial_accumulator_value": _Range("initial_accumulator_value value"),
    "momentum_decay": _Range("momentum_decay value"),
    "rho": _Range("rho value", 0.0, 1.0),
    "lambd": _Range("lambd value"),
    "t0": _Range("t0 value"),
    "betas": _BETA,
    "b1": _BETA,
    "b2": _BETA,
    "step_sizes": _Range("step size"),
}
"""The range of each hyper-parameter by name; a recipe's other numbers must be >= 0."""

_PAIRS = {"betas": "(beta1, beta2)", "etas": "(eta_minus, eta_plus)", "step_sizes": "(min, max)"}


def concrete(value: Any) -> np.ndarray | None:
    """``value`` as a float64 array when it is a number or a concrete real array, else None.

    Tracers (values inside ``jax.jit``), schedules and booleans give None: not checked.
    """
    if isinstance(value, bool) or isinstance(value, jax.core.Tracer):
        return None
    if isinstance(value, numbers.Real):
        return np.asarray(float(value))
    if isinstance(value, jax.Array | np.ndarray | np.generic):
        if not np.issubdtype(value.dtype, np.floating) and not np.issubdtype(
            value.dtype, np.integer
        ):
            return None
        return np.asarray(value, dtype=np.float64)
    return None


def _shown(value: Any) -> str:
    if isinstance(value, jax.Array | np.ndarray | np.generic):
        return f"an array holding {np.asarray(value)!s}"
    return repr(value) if isinstance(value, tuple) else str(value)


def _plain(value: Any) -> str:
    """``value`` as PyTorch would print it in its message."""
    return str(np.asarray(value)) if isinstance(value, jax.Array | np.generic) else str(value)


def check_pair(name: str, key: str, value: Any) -> tuple[Any, Any]:
    """``value`` as a 2-tuple, or a ValueError that says a pair was expected."""
    try:
        pair = tuple(value)
    except TypeError:
        pair = None
    if pair is None or len(pair) != 2:
        got = f"{value!r}" if pair is None else f"{pair!r} of length {len(pair)}"
        raise ValueError(f"{name}: {key} must be a pair {_PAIRS.get(key, '')}, got {got}".strip())
    return pair


def _check_number(name: str, key: str, value: Any, whole: Any, index: int | None) -> None:
    v = concrete(value)
    if v is None:
        return
    rng = RANGES.get(key, _Range(f"{key} value"))
    if rng.holds(v):
        return
    where = f" at index {index}" if index is not None else ""
    prefix = "each of " if index is not None else ""
    raise ValueError(
        f"{name}: {prefix}{key} must be {rng.text()}, got {_shown(whole)} "
        f'(PyTorch: "Invalid {rng.label}{where}: {_plain(value)}")'
    )


def _check_etas(name: str, etas: tuple[Any, Any]) -> None:
    low, high = concrete(etas[0]), concrete(etas[1])
    if low is None or high is None:
        return
    if not (0.0 < low < 1.0 < high):
        raise ValueError(
            f"{name}: etas must satisfy 0 < etas[0] < 1 < etas[1], got {etas!r} "
            f'(PyTorch: "Invalid eta values: {_plain(etas[0])}, {_plain(etas[1])}")'
        )


def check_value(name: str, key: str, value: Any) -> None:
    """Check one hyper-parameter against its range (``RANGES``; >= 0 for other names).

    Args:
        name: the optimizer (or function) named in the message.
        key: the hyper-parameter's name.
        value: a number, an array, a schedule (not checked) or, for ``betas``, ``etas``
            and ``step_sizes``, a pair of them.

    Raises:
        ValueError: a concrete value is out of range (NaN included), or a pair is not a pair.
    """
    if key in _PAIRS:
        pair = check_pair(name, key, value)
        if key == "etas":
            _check_etas(name, pair)
            return
        for i, v in enumerate(pair):
            _check_number(name, key, v, pair, i)
        return
    _check_number(name, key, value, value, None)


def check_args(name: str, in_state: Sequence[str], **values: Any) -> None:
    """A recipe's checks: every value in its range, schedules only where they can run.

    A schedule is allowed for the lr, and for another hyper-parameter only when it is named
    in ``in_state`` (then it lives in the optimizer state and is evaluated each step).

    Raises:
        ValueError: a value is out of range or not a pair where a pair is expected, or a
            schedule is given for a hyper-parameter that is not in ``in_state``.
    """
    for key, value in values.items():
        leaves = check_pair(name, key, value) if key in _PAIRS else (value,)
        if key != "lr" and key not in in_state and any(callable(v) for v in leaves):
            raise ValueError(
                f"{name}: {key} is a schedule, which needs {key!r} in in_state "
                f"(e.g. in_state=('lr', {key!r}))"
            )
        check_value(name, key, value)


def check_known(name: str, values: dict[str, Any]) -> None:
    """`check_value` for the names in ``RANGES`` (and ``etas``); other names pass."""
    for key, value in values.items():
        if key in RANGES or key == "etas":
            check_value(name, key, value)
