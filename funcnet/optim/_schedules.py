"""Learning-rate schedules: pure functions of the step count.

Each factory returns ``schedule(count) -> lr`` for PyTorch's ``lr_scheduler`` of the same
name, in closed form: ``schedule(t)`` is the lr PyTorch's optimizer holds after ``t`` calls
of ``scheduler.step()``. Pass a schedule as an optimizer's ``lr``; funcnet's optimizers
count their own updates, so a schedule is per optimizer step. For PyTorch's usual
once-per-epoch stepping, wrap it with `per_epoch`.

Schedules work on Python ints and on traced int32 scalars or arrays (inside ``jax.jit``),
and return the default float dtype (float32, or float64 under x64).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ._base import Schedule


def _t(count: ArrayLike) -> jax.Array:
    return jnp.asarray(count, dtype=jnp.result_type(float))


def _as_schedule(lr: float | Schedule) -> Schedule:
    return lr if callable(lr) else constant(lr)


def _chainable(lr: float, factor: Callable[[ArrayLike], jax.Array]) -> Schedule:
    """``count -> lr * factor(count)``, marked so that `chained` can multiply the factors.

    PyTorch's ``ChainedScheduler`` steps each scheduler on the lr the previous ones left;
    for the schedulers that scale the lr (rather than set it) that is the product of their
    factors, which is what `chained` computes from ``base_lr`` and ``factor``.
    """

    def schedule(count: ArrayLike) -> jax.Array:
        return lr * factor(count)

    schedule.base_lr = lr  # type: ignore[attr-defined]
    schedule.factor = factor  # type: ignore[attr-defined]
    return schedule


def constant(lr: float, factor: float = 1.0, total_iters: int = 0) -> Schedule:
    """PyTorch's ``ConstantLR``: ``lr * factor`` for ``total_iters`` steps, then ``lr``.

    With the defaults a constant ``lr`` (PyTorch's defaults are ``factor=1/3``,
    ``total_iters=5``; here ``constant(lr)`` means what it says).
    """

    def scale(count: ArrayLike) -> jax.Array:
        t = _t(count)
        return jnp.where(t < total_iters, factor, 1.0).astype(t.dtype)

    return _chainable(lr, scale)


def linear(
    lr: float, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5
) -> Schedule:
    """PyTorch's ``LinearLR``: the factor goes linearly from ``start_factor`` to
    ``end_factor`` over ``total_iters`` steps, then stays.

    .. math:: \\mathrm{lr}_t = \\mathrm{lr}\\,(s + (e - s) \\min(t, T) / T)
    """
    if total_iters <= 0:
        raise ValueError(f"linear: total_iters must be > 0, got {total_iters}")

    def scale(count: ArrayLike) -> jax.Array:
        t = jnp.minimum(_t(count), total_iters)
        return start_factor + (end_factor - start_factor) * t / total_iters

    return _chainable(lr, scale)


def step(lr: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """PyTorch's ``StepLR``: :math:`\\mathrm{lr}\\,\\gamma^{\\lfloor t / \\mathrm{step\\_size} \\rfloor}`."""
    if step_size <= 0:
        raise ValueError(f"step: step_size must be > 0, got {step_size}")

    def scale(count: ArrayLike) -> jax.Array:
        return gamma ** _t(jnp.floor_divide(jnp.asarray(count), step_size))

    return _chainable(lr, scale)


def multistep(lr: float, milestones: Sequence[int], gamma: float = 0.1) -> Schedule:
    """PyTorch's ``MultiStepLR``: multiply by ``gamma`` at each milestone reached.

    .. math:: \\mathrm{lr}_t = \\mathrm{lr}\\,\\gamma^{|\\{m \\in \\mathrm{milestones} : m \\le t\\}|}

    (a repeated milestone counts twice, as in PyTorch).
    """
    milestones = sorted(int(m) for m in milestones)

    def scale(count: ArrayLike) -> jax.Array:
        t = _t(count)
        passed = sum((t >= m).astype(t.dtype) for m in milestones) + jnp.zeros_like(t)
        return gamma**passed

    return _chainable(lr, scale)


def exponential(lr: float, gamma: float) -> Schedule:
    """PyTorch's ``ExponentialLR``: :math:`\\mathrm{lr}\\,\\gamma^t`."""

    return _chainable(lr, lambda count: gamma ** _t(count))


def cosine_annealing(lr: float, T_max: int, eta_min: float = 0.0) -> Schedule:
    """PyTorch's ``CosineAnnealingLR``.

    .. math::
        \\mathrm{lr}_t = \\eta_{min} + \\tfrac12 (\\mathrm{lr} - \\eta_{min})
        (1 + \\cos(\\pi t / T_{max}))

    Past ``T_max`` the cosine goes on (back up, period ``2 T_max``) as PyTorch's does;
    ``optax.cosine_decay_schedule`` stays at its minimum instead.

    Examples:
        >>> from funcnet.optim import schedules
        >>> lr = schedules.cosine_annealing(0.1, T_max=10)
        >>> [round(float(lr(t)), 4) for t in (0, 5, 10, 15)]
        [0.1, 0.05, 0.0, 0.05]
    """
    if T_max <= 0:
        raise ValueError(f"cosine_annealing: T_max must be > 0, got {T_max}")

    def schedule(count: ArrayLike) -> jax.Array:
        return eta_min + (lr - eta_min) * (1 + jnp.cos(math.pi * _t(count) / T_max)) / 2

    return schedule


def cosine_annealing_warm_restarts(
    lr: float, T_0: int, T_mult: int = 1, eta_min: float = 0.0
) -> Schedule:
    """PyTorch's ``CosineAnnealingWarmRestarts`` (SGDR).

    Cosine annealing from ``lr`` to ``eta_min`` over a period of ``T_0`` steps, restarted
    at ``lr`` after each period; each period is ``T_mult`` times longer than the last.
    """
    if T_0 <= 0 or not isinstance(T_mult, int) or T_mult < 1:
        raise ValueError(
            f"cosine_annealing_warm_restarts: need T_0 > 0 and an int T_mult >= 1, got {T_0}, {T_mult}"
        )

    def start(n: jax.Array) -> jax.Array:  # first step of period n (integer-valued floats)
        return T_0 * (T_mult**n - 1) / (T_mult - 1)

    def schedule(count: ArrayLike) -> jax.Array:
        t = _t(count)
        if T_mult == 1:
            t_cur, t_i = jnp.mod(t, T_0), jnp.asarray(float(T_0), t.dtype)
        else:
            n = jnp.floor(jnp.log1p(t * (T_mult - 1) / T_0) / math.log(T_mult))
            # The logarithm can land a hair off an integer at a restart: settle it exactly.
            n = jnp.where(t < start(n), n - 1, n)
            n = jnp.where(t >= start(n + 1), n + 1, n)
            t_cur, t_i = t - start(n), T_0 * T_mult**n
        return eta_min + (lr - eta_min) * (1 + jnp.cos(math.pi * t_cur / t_i)) / 2

    return schedule


def polynomial(
    lr: float, total_iters: int = 5, power: float = 1.0, *, end_lr: float = 0.0
) -> Schedule:
    """PyTorch's ``PolynomialLR``, optionally ending above zero (optax's ``end_value``).

    .. math::
        \\mathrm{lr}_t = (\\mathrm{lr} - \\mathrm{end})(1 - \\min(t, T)/T)^{p} + \\mathrm{end}
    """
    if total_iters <= 0:
        raise ValueError(f"polynomial: total_iters must be > 0, got {total_iters}")

    def scale(count: ArrayLike) -> jax.Array:
        # max(., 0): XLA turns the division into a multiplication, 1 - 20 * (1/20) < 0.
        return jnp.maximum(1 - jnp.minimum(_t(count), total_iters) / total_iters, 0.0) ** power

    if end_lr == 0:
        return _chainable(lr, scale)
    return lambda count: (lr - end_lr) * scale(count) + end_lr


def _one_cycle_phases(
    total_steps: int, pct_start: float, three_phase: bool, low: str, high: str, final: str
) -> list[tuple[float, str, str]]:
    """PyTorch's ``OneCycleLR`` phases: (last step, start value, end value)."""
    if three_phase:
        return [
            (float(pct_start * total_steps) - 1, low, high),
            (float(2 * pct_start * total_steps) - 2, high, low),
            (total_steps - 1, low, final),
        ]
    return [(float(pct_start * total_steps) - 1, low, high), (total_steps - 1, high, final)]


def _one_cycle(
    values: dict[str, float],
    total_steps: int,
    pct_start: float,
    anneal_strategy: str,
    three_phase: bool,
    names: tuple[str, str, str],
) -> Schedule:
    if total_steps <= 0 or not 0 <= pct_start <= 1 or anneal_strategy not in ("cos", "linear"):
        raise ValueError(
            "one_cycle: need total_steps > 0, 0 <= pct_start <= 1 and anneal_strategy "
            f"'cos' or 'linear'; got {total_steps}, {pct_start}, {anneal_strategy!r}"
        )
    phases = _one_cycle_phases(total_steps, pct_start, three_phase, *names)

    def anneal(a: float, b: float, pct: jax.Array) -> jax.Array:
        if anneal_strategy == "cos":
            return b + (a - b) / 2 * (jnp.cos(math.pi * pct) + 1)
        return (b - a) * pct + a

    def schedule(count: ArrayLike) -> jax.Array:
        # PyTorch raises past total_steps; here the value at total_steps holds.
        t = jnp.clip(_t(count), 0, total_steps)
        out = jnp.zeros_like(t)
        begin = 0.0
        done = jnp.zeros(t.shape, bool)
        for i, (end, a, b) in enumerate(phases):
            here = ~done & ((t <= end) | (i == len(phases) - 1))
            value = anneal(values[a], values[b], (t - begin) / (end - begin))
            out = jnp.where(here, value, out)
            done = done | here
            begin = end
        return out

    return schedule


def one_cycle(
    max_lr: float,
    total_steps: int,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
) -> Schedule:
    """PyTorch's ``OneCycleLR`` learning rate (stepped once per batch).

    From ``max_lr / div_factor`` up to ``max_lr`` over the first ``pct_start`` of
    ``total_steps``, then down to ``max_lr / div_factor / final_div_factor`` (with
    ``three_phase``: back to the initial lr first, then down), by cosine or linear
    annealing. PyTorch also cycles the momentum by default (``cycle_momentum=True``): use
    `one_cycle_momentum` as the optimizer's momentum (or first beta) with it in ``in_state``.
    """
    initial = max_lr / div_factor
    values = {"initial": initial, "max": max_lr, "min": initial / final_div_factor}
    names = ("initial", "max", "min")
    return _one_cycle(values, total_steps, pct_start, anneal_strategy, three_phase, names)


def one_cycle_momentum(
    total_steps: int,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    base_momentum: float = 0.85,
    max_momentum: float = 0.95,
    three_phase: bool = False,
) -> Schedule:
    """The momentum that PyTorch's ``OneCycleLR`` cycles (``cycle_momentum=True``).

    Inverse to the lr: from ``max_momentum`` down to ``base_momentum`` while the lr rises,
    and back. Use it as ``sgd(..., momentum=one_cycle_momentum(n), in_state=("lr",
    "momentum"))``, or as the first of Adam's ``betas`` with ``in_state=("lr", "betas")``.
    """
    values = {"max": max_momentum, "base": base_momentum}
    names = ("max", "base", "max")
    return _one_cycle(values, total_steps, pct_start, anneal_strategy, three_phase, names)


def sequential(schedules: Sequence[float | Schedule], milestones: Sequence[int]) -> Schedule:
    """PyTorch's ``SequentialLR``: ``schedules[i]`` from ``milestones[i-1]`` on, each
    restarted at step 0 when its turn comes.

    Args:
        schedules: ``len(milestones) + 1`` schedules (or constant floats).
        milestones: increasing step counts at which to switch.
    """
    schedules = [_as_schedule(s) for s in schedules]
    milestones = [int(m) for m in milestones]
    if len(schedules) != len(milestones) + 1 or milestones != sorted(milestones):
        raise ValueError(
            "sequential: need len(schedules) == len(milestones) + 1 and increasing milestones"
        )

    def schedule(count: ArrayLike) -> jax.Array:
        t = jnp.asarray(count)
        out = schedules[0](t)
        for start, fn in zip(milestones, schedules[1:]):
            out = jnp.where(t >= start, fn(jnp.maximum(t - start, 0)), out)
        return out

    return schedule


def linear_warmup(
    schedule: float | Schedule, warmup_steps: int, start_factor: float = 0.0
) -> Schedule:
    """Linear warmup to ``schedule(0)`` over ``warmup_steps`` steps, then ``schedule``.

    ``sequential([linear(base, start_factor, 1.0, warmup_steps), schedule], [warmup_steps])``
    with ``base = schedule(0)``: PyTorch's ``SequentialLR([LinearLR(...), after])``. The
    ``schedule`` after the warmup starts from its own step 0. ``start_factor=0`` (the
    warmup of Hugging Face's ``get_linear_schedule_with_warmup``) makes the first step's
    lr zero; PyTorch's ``LinearLR`` default is 1/3.
    """
    after = _as_schedule(schedule)
    if warmup_steps <= 0:
        return after

    def warmed(count: ArrayLike) -> jax.Array:
        t = jnp.asarray(count)
        factor = start_factor + (1 - start_factor) * jnp.minimum(_t(t), warmup_steps) / warmup_steps
        return jnp.where(
            t < warmup_steps, after(0) * factor, after(jnp.maximum(t - warmup_steps, 0))
        )

    return warmed


def per_epoch(schedule: Schedule, steps_per_epoch: int) -> Schedule:
    """Turn a per-epoch schedule into a per-step one (PyTorch's once-per-epoch stepping).

    ``per_epoch(step(0.1, step_size=30), len(loader))`` gives every step of epoch ``e``
    the lr PyTorch's ``StepLR(step_size=30)`` holds during epoch ``e``.
    """
    if steps_per_epoch <= 0:
        raise ValueError(f"per_epoch: steps_per_epoch must be > 0, got {steps_per_epoch}")
    return lambda count: schedule(jnp.asarray(count) // steps_per_epoch)


def lambda_lr(lr: float, lr_lambda: Callable[[jax.Array], ArrayLike]) -> Schedule:
    """PyTorch's ``LambdaLR``: :math:`\\mathrm{lr} \\cdot \\lambda(t)`.

    Args:
        lr: the base lr (PyTorch's ``base_lrs``, the optimizer's initial lr).
        lr_lambda: the factor as a function of the step count, which it receives as an
            int32 array (traced inside ``jax.jit``): write it with ``jnp`` (``jnp.where``
            instead of ``if``). ``lambda t: 0.95**t`` works as it is.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet.optim import schedules
        >>> lr = schedules.lambda_lr(0.1, lambda t: jnp.minimum(1.0, (t + 1) / 4))  # warmup
        >>> [round(float(lr(t)), 4) for t in range(5)]
        [0.025, 0.05, 0.075, 0.1, 0.1]
    """

    def schedule(count: ArrayLike) -> jax.Array:
        return lr * jnp.asarray(lr_lambda(jnp.asarray(count)), jnp.result_type(float))

    return schedule


def multiplicative(lr: float, lr_lambda: Callable[[jax.Array], ArrayLike]) -> Schedule:
    """PyTorch's ``MultiplicativeLR``: each step multiplies the lr by :math:`\\lambda(t)`.

    .. math:: \\mathrm{lr}_t = \\mathrm{lr} \\prod_{k=1}^{t} \\lambda(k)

    As an optimizer's lr (kept in its state, the default), each update multiplies the
    stored lr by :math:`\\lambda(t)`, as PyTorch does: one call of ``lr_lambda`` per step,
    and a lr changed with `set_hyperparams` goes on from its new value (as PyTorch's
    ``param_groups`` do). Called directly, ``schedule(t)`` loops over the ``t`` factors.

    Args:
        lr: the initial lr.
        lr_lambda: the factor of step ``k`` (an int32 array, traced inside ``jax.jit``:
            write it with ``jnp``).
    """

    def factor(k: jax.Array) -> jax.Array:
        return jnp.asarray(lr_lambda(k), jnp.result_type(float))

    def product(count: jax.Array) -> jax.Array:
        def body(k: jax.Array, acc: jax.Array) -> jax.Array:
            return acc * factor(k)

        return jax.lax.fori_loop(1, count + 1, body, jnp.ones((), jnp.result_type(float)))

    schedule = _chainable(lr, jnp.vectorize(lambda count: product(jnp.asarray(count, jnp.int32))))
    schedule.advance = lambda value, count: value * factor(count)  # type: ignore[attr-defined]
    return schedule


def chained(schedules: Sequence[Schedule]) -> Schedule:
    """PyTorch's ``ChainedScheduler``: the product of the schedules' factors.

    PyTorch steps every scheduler on the lr the previous one left. For the schedules that
    scale the lr (`constant`, `linear`, `step`, `multistep`, `exponential`, `polynomial`
    without ``end_lr``, `multiplicative`, and `chained` itself), that is
    :math:`\\mathrm{lr} \\prod_i f_i(t)` with :math:`f_i` = ``schedule_i(t) / lr``.

    Args:
        schedules: one or more of those schedules, all built with the same lr (PyTorch's
            schedulers all wrap the same optimizer).

    Raises:
        ValueError: no schedule, a schedule that sets the lr rather than scaling it
            (`cosine_annealing`, `one_cycle`, `cyclic`, `lambda_lr`, ...: PyTorch chains
            these in ways that depend on their order), or different base lrs.

    Examples:
        >>> from funcnet.optim import schedules
        >>> lr = schedules.chained(
        ...     [schedules.constant(1.0, factor=0.1, total_iters=2), schedules.exponential(1.0, 0.9)]
        ... )
        >>> [round(float(lr(t)), 4) for t in range(4)]
        [0.1, 0.09, 0.81, 0.729]
    """
    schedules = list(schedules)
    if not schedules:
        raise ValueError("chained: needs at least one schedule")
    for i, schedule in enumerate(schedules):
        if not hasattr(schedule, "factor"):
            raise ValueError(
                f"chained: schedules[{i}] does not scale the lr (only constant, linear, step, "
                "multistep, exponential, polynomial without end_lr, multiplicative and "
                "chained schedules chain as PyTorch's ChainedScheduler multiplies them)"
            )
    bases = [schedule.base_lr for schedule in schedules]
    if any(base != bases[0] for base in bases):
        raise ValueError(f"chained: the schedules must start from the same lr, got {bases}")
    factors = [schedule.factor for schedule in schedules]

    def factor(count: ArrayLike) -> jax.Array:
        out = factors[0](count)
        for f in factors[1:]:
            out = out * f(count)
        return out

    return _chainable(bases[0], factor)
