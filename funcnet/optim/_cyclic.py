"""PyTorch's ``CyclicLR`` as two schedules: the lr (`cyclic`) and the momentum
(`cyclic_momentum`), which an optimizer takes as its momentum (or first beta)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ._schedules import Schedule, _t

_MODES = {"triangular": "cycle", "triangular2": "cycle", "exp_range": "iterations"}


def _cycle_height(
    step_size_up: int,
    step_size_down: int | None,
    mode: str,
    gamma: float,
    scale_fn: Callable[[jax.Array], ArrayLike] | None,
    scale_mode: str,
) -> Callable[[float, ArrayLike], jax.Array]:
    """``(amplitude, count) -> amplitude * triangle(count) * scale``, PyTorch's arithmetic."""
    if scale_fn is None and mode not in _MODES:
        raise ValueError(f"cyclic: mode must be one of {sorted(_MODES)}, got {mode!r}")
    if scale_fn is None:
        scale_mode = _MODES[mode]  # PyTorch: a mode decides its own scale_mode
        scale_fn = {
            "triangular": lambda x: 1.0,
            "triangular2": lambda x: 1 / (2.0 ** (x - 1)),
            "exp_range": lambda x: gamma**x,
        }[mode]
    if scale_mode not in ("cycle", "iterations"):
        raise ValueError(f"cyclic: scale_mode must be 'cycle' or 'iterations', got {scale_mode!r}")
    up = float(step_size_up)
    total = up + (float(step_size_down) if step_size_down is not None else up)
    if up <= 0 or total < up:
        raise ValueError(
            f"cyclic: need step_size_up > 0 and step_size_down >= 0, got {step_size_up}, "
            f"{step_size_down}"
        )
    ratio = up / total

    def height(amplitude: float, count: ArrayLike) -> jax.Array:
        t = _t(count)
        cycle = jnp.floor(1 + t / total)
        x = 1.0 + t / total - cycle
        factor = jnp.where(x <= ratio, x / ratio, (x - 1) / (ratio - 1))
        scale = scale_fn(cycle if scale_mode == "cycle" else t)
        return amplitude * factor * jnp.asarray(scale, t.dtype)

    return height


def cyclic(
    base_lr: float,
    max_lr: float,
    step_size_up: int = 2000,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
    scale_fn: Callable[[jax.Array], ArrayLike] | None = None,
    scale_mode: str = "cycle",
) -> Schedule:
    """PyTorch's ``CyclicLR`` learning rate (stepped once per batch).

    The lr goes linearly from ``base_lr`` up to ``max_lr`` over ``step_size_up`` steps and
    back over ``step_size_down``, the height of each cycle scaled by ``scale_fn``:

    .. math::
        c = \\lfloor 1 + t / T \\rfloor, \\quad x = 1 + t/T - c, \\quad
        \\mathrm{lr}_t = b + (m - b)\\, h(x)\\, s(c \\text{ or } t)

    (:math:`T` the cycle length, :math:`h` the triangle). ``"triangular"``: :math:`s = 1`;
    ``"triangular2"``: halved every cycle; ``"exp_range"``: :math:`\\gamma^t`. PyTorch also
    cycles the momentum by default (``cycle_momentum=True``): use `cyclic_momentum` as the
    optimizer's momentum (or first beta), with it in ``in_state``.

    Args:
        base_lr: the lowest lr.
        max_lr: the highest lr (reached only when the scale is 1).
        step_size_up: steps from ``base_lr`` to ``max_lr``.
        step_size_down: steps back; ``None``: ``step_size_up``.
        mode: ``"triangular"``, ``"triangular2"`` or ``"exp_range"`` (ignored with a
            ``scale_fn``).
        gamma: the base of ``"exp_range"``'s scale.
        scale_fn: a custom scale, ``x -> factor`` with ``x`` a float array (the cycle
            number or the step count, per ``scale_mode``); write it with ``jnp``.
        scale_mode: ``"cycle"`` or ``"iterations"``: what ``scale_fn`` receives (the
            built-in modes choose their own, as in PyTorch).

    Examples:
        >>> from funcnet.optim import schedules
        >>> lr = schedules.cyclic(0.1, 0.5, step_size_up=2)
        >>> [round(float(lr(t)), 4) for t in range(6)]
        [0.1, 0.3, 0.5, 0.3, 0.1, 0.3]
    """
    height = _cycle_height(step_size_up, step_size_down, mode, gamma, scale_fn, scale_mode)
    return lambda count: base_lr + height(max_lr - base_lr, count)


def cyclic_momentum(
    step_size_up: int = 2000,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
    scale_fn: Callable[[jax.Array], ArrayLike] | None = None,
    scale_mode: str = "cycle",
    base_momentum: float = 0.8,
    max_momentum: float = 0.9,
) -> Schedule:
    """The momentum that PyTorch's ``CyclicLR`` cycles (``cycle_momentum=True``).

    Inverse to `cyclic`'s lr: from ``max_momentum`` down to ``base_momentum`` while the lr
    rises, and back, with the same cycle arguments. Use it as
    ``sgd(lr, momentum=cyclic_momentum(...), in_state=("lr", "momentum"))``, or as the first
    of Adam's ``betas`` with ``in_state=("lr", "betas")``.

    Examples:
        >>> from funcnet import optim
        >>> from funcnet.optim import schedules
        >>> opt = optim.sgd(
        ...     schedules.cyclic(0.01, 0.1, step_size_up=100),
        ...     momentum=schedules.cyclic_momentum(step_size_up=100),
        ...     in_state=("lr", "momentum"),
        ... )
    """
    height = _cycle_height(step_size_up, step_size_down, mode, gamma, scale_fn, scale_mode)
    return lambda count: max_momentum - height(max_momentum - base_momentum, count)
