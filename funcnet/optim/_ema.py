"""An exponential moving average of the parameters, kept in the optimizer state.

PyTorch's ``AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))`` updated after
every ``optimizer.step()``, Keras' ``use_ema=True``: `with_ema` wraps an optimizer and
averages the parameters each update produces; `ema_params` reads the average back. Being
part of the optimizer state, the average is jitted, donated, checkpointed and resumed
with it, bit for bit.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._base import (
    GradientTransformation,
    OptState,
    Params,
    Updates,
    apply_updates,
    require_params,
    safe_increment,
)
from ._checks import checked
from ._hyperparams import _is_number


class EmaState(NamedTuple):
    """State of `with_ema`.

    Attributes:
        n_averaged: int32 ``()``, updates averaged so far (PyTorch's
            ``AveragedModel.n_averaged``; it saturates instead of wrapping around).
        ema: the average of the parameters, a tree like them, each leaf in its
            parameter's dtype promoted to float32 at least (bf16 parameters, float32 EMA).
        inner_state: the wrapped optimizer's state.
    """

    n_averaged: jax.Array
    ema: Params
    inner_state: OptState


def _ema_dtype(p: Any) -> Any:
    return jnp.promote_types(jnp.result_type(p), jnp.float32)


def _lerp(ema: jax.Array, new: jax.Array, weight: float) -> jax.Array:
    """``ema + weight * (new - ema)`` as ``torch.lerp`` computes it (either end exact)."""
    w = jnp.asarray(weight, ema.dtype)
    if weight < 0.5:
        return ema + w * (new - ema)
    return new + (w - 1) * (new - ema)


def _as_stored(new: jax.Array, dtype: Any) -> jax.Array:
    """``new`` rounded to its own dtype, then cast to ``dtype``.

    XLA may compute a bf16 parameter in float32 and round it only where it is stored
    (``xla_allow_excess_precision``); the average must see the stored value.
    """
    if new.dtype != dtype and jnp.issubdtype(new.dtype, jnp.floating):
        info = jnp.finfo(new.dtype)
        new = jax.lax.reduce_precision(new, info.nexp, info.nmant)
    return new.astype(dtype)


def _average(ema: jax.Array, new: jax.Array, n_averaged: jax.Array, decay: float) -> jax.Array:
    new = _as_stored(new, ema.dtype)
    return jnp.where(n_averaged == 0, new, _lerp(ema, new, 1.0 - decay))


def _checked_decay(decay: Any) -> float:
    if not _is_number(decay):
        raise TypeError(f"with_ema: decay must be a Python number in [0, 1], got {decay!r}")
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"with_ema: decay must be in [0, 1], got {decay}")
    return float(decay)


def with_ema(tx: GradientTransformation, decay: float = 0.999) -> GradientTransformation:
    """Keep an exponential moving average (EMA) of the parameters in the optimizer state.

    After each update, with :math:`\\theta_t` = ``apply_updates(params, updates)`` the
    parameters that update produces:

    .. math::
        \\bar\\theta_1 = \\theta_1, \\quad
        \\bar\\theta_t = \\mathrm{decay}\\, \\bar\\theta_{t-1} + (1 - \\mathrm{decay})\\, \\theta_t

    PyTorch's ``AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))`` with
    ``update_parameters(model)`` after every ``optimizer.step()``: the first update copies
    the parameters, and later ones are computed as PyTorch does, ``torch.lerp(ema, theta,
    1 - decay)``. Before the first update the average holds the initial parameters (the
    copy ``AveragedModel`` makes).

    The average is kept in float32 at least (PyTorch keeps the parameters' dtype): in
    bf16, ``0.001 * (theta - ema)`` is mostly below half an ulp of ``ema`` and the
    average would stop moving. `ema_params` returns it in that dtype.

    The updates are ``tx``'s, unchanged; ``tx``'s updates must be the ones applied, so put
    ``with_ema`` around the whole optimizer (transforms before it in a `chain`, such as
    clipping, are fine). Inside `skip_nonfinite` (or `update_if_finite`) a skipped step
    leaves the average as it was; around `accumulate` it would average every micro-batch,
    so write ``accumulate(k, with_ema(opt))`` to average once per optimizer step.

    Args:
        tx: the optimizer (funcnet's or optax's).
        decay: the weight of the old average, a Python number in ``[0, 1]``.

    Returns:
        A transform with state `EmaState`; its ``update`` needs ``params``.

    Raises:
        TypeError: ``decay`` is not a number.
        ValueError: ``decay`` is outside ``[0, 1]``; at update time, ``params`` is missing.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import optim
        >>> opt = optim.with_ema(optim.sgd(1.0), decay=0.5)
        >>> params = {"w": jnp.zeros(1)}
        >>> state = opt.init(params)
        >>> for _ in range(3):
        ...     updates, state = opt.update({"w": jnp.array([-1.0])}, state, params)
        ...     params = optim.apply_updates(params, updates)
        >>> params["w"].tolist(), optim.ema_params(state)["w"].tolist()
        ([3.0], [2.25])
    """
    decay = _checked_decay(decay)

    def init(params: Params) -> EmaState:
        ema = jax.tree.map(lambda p: jnp.array(p, dtype=_ema_dtype(p)), params)  # a copy
        return EmaState(jnp.zeros((), jnp.int32), ema, tx.init(params))

    def update(
        updates: Updates, state: EmaState, params: Params | None = None
    ) -> tuple[Updates, EmaState]:
        params = require_params(params, "with_ema")
        out, inner_state = tx.update(updates, state.inner_state, params)
        new_params = apply_updates(params, out)
        ema = jax.tree.map(
            lambda e, p: _average(e, p, state.n_averaged, decay), state.ema, new_params
        )
        return out, EmaState(safe_increment(state.n_averaged), ema, inner_state)

    return checked("with_ema", GradientTransformation(init, update))


def _is_ema(x: Any) -> bool:
    return isinstance(x, EmaState)


def _ema_states(opt_state: OptState) -> list[EmaState]:
    """Every `EmaState` in ``opt_state``, those nested in another's inner state included."""
    found = []
    for x in jax.tree.leaves(opt_state, is_leaf=_is_ema):
        if _is_ema(x):
            found += [x, *_ema_states(x.inner_state)]
    return found


def ema_params(opt_state: OptState) -> Params:
    """The EMA of the parameters kept by `with_ema`, found anywhere in the optimizer state.

    PyTorch's ``ema_model.module`` parameters, or Keras' ``SwapEMAWeights``: evaluate with
    ``model.apply(optim.ema_params(opt_state), ...)``. It finds the `EmaState` at any
    depth: inside `chain`, `accumulate`, `skip_nonfinite`, or an optax wrapper
    (``optax.chain``, ``optax.MultiSteps``, ...). Usable inside ``jax.jit``.

    Args:
        opt_state: the optimizer state.

    Returns:
        A tree like the parameters, each leaf in its parameter's dtype promoted to float32
        at least; ``jax.tree.map(lambda e, p: e.astype(p.dtype), ema, params)`` gives the
        parameters' dtypes back.

    Raises:
        ValueError: the state holds no EMA, or more than one.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import optim
        >>> state = optim.chain(optim.clip_grad_norm(1.0), optim.with_ema(optim.adam())).init(
        ...     {"w": jnp.ones(2)}
        ... )
        >>> optim.ema_params(state)["w"].tolist()  # the initial parameters, before any update
        [1.0, 1.0]
    """
    found = _ema_states(opt_state)
    if not found:
        raise ValueError(
            "this optimizer state holds no EMA of the parameters: build the optimizer with "
            "optim.with_ema(opt, decay=...) and pass the state made by its init."
        )
    if len(found) > 1:
        raise ValueError(
            f"this optimizer state holds {len(found)} EMAs of the parameters (with_ema "
            "nested, or in several parameter groups): wrap the whole optimizer in one "
            "with_ema."
        )
    return found[0].ema
