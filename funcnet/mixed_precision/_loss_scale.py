"""Dynamic loss scaling (PyTorch's ``GradScaler``) as an optimizer wrapper.

float16 has 5 exponent bits: gradients below 2**-24 flush to zero. Multiplying the loss by
a large scale moves the backward pass's values into range; the gradients are divided by
it again before the optimizer sees them. The scale lives in the optimizer state, so it is
checkpointed and resumed with it, and a train step finds it there (`find_loss_scale`), as
``optim.current_lr`` finds the learning rate.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from funcnet.optim import GradientTransformation, SkipNonfiniteState, skip_nonfinite
from funcnet.optim._base import OptState, Params, Updates

__all__ = [
    "DynamicLossScale",
    "LossScaleState",
    "current_loss_scale",
    "find_loss_scale",
    "with_loss_scale",
]


class LossScaleState(NamedTuple):
    """State of `with_loss_scale`.

    Attributes:
        scale: float32 ``()``, the scale the next step multiplies its loss by.
        growth_tracker: int32 ``()``, consecutive steps with finite gradients since the
            scale last changed (GradScaler's ``_growth_tracker``).
        inner_state: a `funcnet.optim.SkipNonfiniteState` around the wrapped optimizer's
            state: its ``num_skipped`` counts the skipped steps, ``last_finite`` says
            whether the last step was applied.
    """

    scale: jax.Array
    growth_tracker: jax.Array
    inner_state: SkipNonfiniteState


def _check_positive(name: str, value: Any, low: float, high: float = math.inf) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not low < value < high:
        bounds = f"> {low}" if high == math.inf else f"in ({low}, {high})"
        raise ValueError(f"DynamicLossScale: {name} must be a number {bounds}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class DynamicLossScale:
    """The rule of PyTorch's ``torch.amp.GradScaler``, with its defaults.

    A step multiplies the loss by ``scale``; the gradients are multiplied by
    ``1 / scale``. If any of them is not finite, the step is skipped (parameters and
    optimizer state untouched) and ``scale *= backoff_factor``; after
    ``growth_interval`` consecutive steps with finite gradients,
    ``scale *= growth_factor`` (unless that overflows float32).

    Args:
        init_scale: the first scale (GradScaler's default, ``2.0**16``).
        growth_factor: the factor after ``growth_interval`` good steps (> 1).
        backoff_factor: the factor after an overflow (in (0, 1)).
        growth_interval: good steps between growths (an int >= 1).

    Raises:
        ValueError: a value out of range.
    """

    init_scale: float = 2.0**16
    growth_factor: float = 2.0
    backoff_factor: float = 0.5
    growth_interval: int = 2000

    def __post_init__(self) -> None:
        _check_positive("init_scale", self.init_scale, 0.0, float(jnp.finfo(jnp.float32).max))
        _check_positive("growth_factor", self.growth_factor, 1.0)
        _check_positive("backoff_factor", self.backoff_factor, 0.0, 1.0)
        interval = self.growth_interval
        if not isinstance(interval, numbers.Integral) or isinstance(interval, bool) or interval < 1:
            raise ValueError(
                f"DynamicLossScale: growth_interval must be an int >= 1, got {interval!r}"
            )

    def adjust(
        self, scale: jax.Array, growth_tracker: jax.Array, finite: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """The next ``(scale, growth_tracker)`` after a step (GradScaler's ``update``).

        Args:
            scale: float32 ``()``, the scale the step used.
            growth_tracker: int32 ``()``, good steps before it since the last change.
            finite: bool ``()``, whether the step's gradients were all finite.

        Returns:
            ``(scale, growth_tracker)``, float32 and int32 scalars.
        """
        good = growth_tracker + 1
        grow = good >= self.growth_interval
        grown = scale * self.growth_factor
        on_success = jnp.where(grow & jnp.isfinite(grown), grown, scale)
        new_scale = jnp.where(finite, on_success, scale * self.backoff_factor)
        new_tracker = jnp.where(finite & ~grow, good, 0).astype(jnp.int32)
        return new_scale, new_tracker


def _unscale(g: jax.Array, inv_scale: jax.Array) -> jax.Array:
    # In at least float32 (the scale's dtype), back in the gradient's own dtype.
    return (g * inv_scale).astype(g.dtype)


def with_loss_scale(
    optimizer: GradientTransformation, loss_scale: DynamicLossScale | None = None
) -> GradientTransformation:
    """Wraps ``optimizer`` for gradients of a loss multiplied by a dynamic loss scale.

    PyTorch's ``GradScaler`` as an optimizer transform: ``update`` takes the gradients of
    ``loss * scale``, multiplies them by ``1 / scale`` (``scaler.unscale_``), skips the
    step when one of them is not finite (``funcnet.optim.skip_nonfinite``: zero updates,
    ``optimizer``'s state, step count and schedules untouched; ``scaler.step``) and
    adjusts the scale (``scaler.update``). A train step built by
    ``train.make_train_step`` finds the scale in the state and multiplies its loss by it,
    and reports ``loss_scale`` and ``skipped`` in its metrics; a hand-written step
    multiplies its loss by :func:`current_loss_scale` itself.

    Wrap the whole optimizer, so that clipping and the other transforms inside see
    unscaled gradients (PyTorch: ``scaler.unscale_(optimizer)`` before clipping).

    Args:
        optimizer: the optimizer to wrap (funcnet's or optax's).
        loss_scale: the rule; ``DynamicLossScale()`` (PyTorch's defaults) when None.

    Returns:
        A transform with state `LossScaleState`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import optim
        >>> from funcnet.mixed_precision import current_loss_scale, with_loss_scale
        >>> opt = with_loss_scale(optim.sgd(0.1))
        >>> state = opt.init({"w": jnp.zeros(2)})
        >>> float(current_loss_scale(state))
        65536.0
        >>> _, state = opt.update({"w": jnp.array([jnp.inf, 1.0])}, state)  # skipped
        >>> float(current_loss_scale(state)), int(state.inner_state.num_skipped)
        (32768.0, 1)
    """
    rule = DynamicLossScale() if loss_scale is None else loss_scale
    if not isinstance(rule, DynamicLossScale):
        raise TypeError(
            f"with_loss_scale: loss_scale must be a DynamicLossScale, got {type(rule).__name__}"
        )
    guarded = skip_nonfinite(optimizer)

    def init(params: Params) -> LossScaleState:
        scale = jnp.asarray(rule.init_scale, jnp.float32)
        return LossScaleState(scale, jnp.zeros((), jnp.int32), guarded.init(params))

    def update(
        updates: Updates, state: LossScaleState, params: Params | None = None
    ) -> tuple[Updates, LossScaleState]:
        if not isinstance(state, LossScaleState):
            raise ValueError(
                f"with_loss_scale expects a LossScaleState, got {type(state).__name__}: "
                "pass the state made by this optimizer's init"
            )
        inv_scale = 1.0 / state.scale
        updates = jax.tree_util.tree_map(lambda g: _unscale(g, inv_scale), updates)
        out, inner = guarded.update(updates, state.inner_state, params)
        scale, tracker = rule.adjust(state.scale, state.growth_tracker, inner.last_finite)
        return out, LossScaleState(scale, tracker, inner)

    return GradientTransformation(init, update)


def _is_loss_scale(x: Any) -> bool:
    return isinstance(x, LossScaleState)


def find_loss_scale(opt_state: OptState) -> LossScaleState | None:
    """The `LossScaleState` inside an optimizer state, at any depth, or None.

    Raises:
        ValueError: the state holds more than one (wrap the optimizer once).
    """
    leaves = jax.tree_util.tree_leaves(opt_state, is_leaf=_is_loss_scale)
    nodes = [x for x in leaves if _is_loss_scale(x)]
    if len(nodes) > 1:
        raise ValueError(
            f"the optimizer state holds {len(nodes)} loss scales: wrap the whole optimizer "
            "in with_loss_scale once"
        )
    return nodes[0] if nodes else None


def current_loss_scale(opt_state: OptState) -> jax.Array:
    """The scale the next step multiplies its loss by, read from the optimizer state.

    PyTorch's ``scaler.get_scale()``. Usable inside ``jax.jit``; in a hand-written step,
    differentiate ``loss * current_loss_scale(state.opt_state)``.

    Args:
        opt_state: the state of an optimizer wrapped in `with_loss_scale`.

    Returns:
        A float32 scalar ``()``.

    Raises:
        ValueError: no loss scale lives in this state.
    """
    node = find_loss_scale(opt_state)
    if node is None:
        raise ValueError(
            "no loss scale in this optimizer state: wrap the optimizer in "
            "funcnet.mixed_precision.with_loss_scale(optimizer)"
        )
    return node.scale
