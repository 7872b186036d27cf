"""What the optimizer recipes share: argument checks, the lr and its alias, ``maximize``.

Every recipe takes PyTorch's arguments plus ``learning_rate=`` (optax's name for the lr,
so that ``optax.inject_hyperparams(optim.adamw)(learning_rate=1e-3)`` works), ``maximize=``
(negate the gradient first, as PyTorch does), ``weight_decay_mask=`` where there is weight
decay, and ``in_state=`` (which hyper-parameters live in the optimizer state).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import ParamSpec

import jax
from jax.typing import ArrayLike

from ._base import GradientTransformation, Schedule, chain, identity
from ._checks import checked
from ._hyperparams import hyperparameters_only
from ._masking import Selector
from ._transforms import add_weight_decay, is_static_zero, scale
from ._validate import check_args as check_args

_P = ParamSpec("_P")

LR = float | ArrayLike | Schedule
"""A learning rate: a number, a JAX scalar, or a schedule ``count -> lr``."""


def resolve_lr(
    name: str,
    lr: LR | None,
    learning_rate: LR | None,
    default: float,
    in_state: Sequence[str] | None,
) -> tuple[LR, tuple[str, ...]]:
    """The lr (``lr``, or its alias ``learning_rate``, or PyTorch's default) and ``in_state``.

    ``in_state=None`` stores the lr in the optimizer state, unless the lr is a JAX array:
    such a value is computed outside (``optax.inject_hyperparams`` keeps the lr in its own
    state and rebuilds the optimizer with it at every update), so it is used as given.

    Raises:
        TypeError: both ``lr`` and ``learning_rate`` were given.
    """
    if lr is not None and learning_rate is not None:
        raise TypeError(
            f"{name}: got both lr and learning_rate; learning_rate is optax's name for lr, "
            "give one of them"
        )
    if lr is None:
        lr = default if learning_rate is None else learning_rate
    if in_state is None:
        in_state = () if isinstance(lr, jax.Array) else ("lr",)
    return lr, tuple(in_state)


def steps(maximize: bool, *transforms: GradientTransformation) -> GradientTransformation:
    """``chain(*transforms)``, after negating the gradients when ``maximize`` (PyTorch's)."""
    return chain(scale(-1.0), *transforms) if maximize else chain(*transforms)


def decay(weight_decay: ArrayLike, mask: Selector | None) -> GradientTransformation:
    """Weight decay on the selected leaves, or nothing for a Python 0."""
    return identity() if is_static_zero(weight_decay) else add_weight_decay(weight_decay, mask)


def recipe(fn: Callable[_P, GradientTransformation]) -> Callable[_P, GradientTransformation]:
    """Mark an optimizer factory: it refuses parameters where its lr goes, it keeps
    hyper-parameters in the state itself (`inject_hyperparams` refuses to wrap it), and its
    optimizers are `checked` (float parameters at init; gradients and state at update)."""

    @functools.wraps(fn)
    def build(*args: _P.args, **kwargs: _P.kwargs) -> GradientTransformation:
        return checked(fn.__name__, fn(*args, **kwargs), float_params=True)

    wrapped = hyperparameters_only(build)
    wrapped._funcnet_in_state = True  # type: ignore[attr-defined]
    return wrapped
