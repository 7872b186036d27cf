"""Compiled training and evaluation steps.

``make_train_step`` returns ``step(state, batch, mask=None) -> (state, metrics)``: one
``jax.jit`` program with the TrainState donated, usable in a hand-written loop or by
``fit``. ``make_eval_step`` returns ``eval_step(state, batch, mask=None) -> metrics``.
With ``axis_name`` the steps run on every member of a named axis (``pmap``,
``shard_map``, ``vmap``), each on its part of the batch, and combine across it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from funcnet import optim
from funcnet.mixed_precision import LossScaleState, Policy, find_loss_scale, get_policy
from funcnet.optim._guards import _finite_or_zero
from funcnet.train._objective import (
    LossFn,
    MetricFns,
    Objective,
    combine_across,
    count_rows,
    split_batch,
)
from funcnet.train._state import TrainState

__all__ = ["make_eval_step", "make_train_step", "split_batch"]

NONFINITE_MODES = ("error", "skip", "ignore")
Guard = Callable[[TrainState, jax.Array, Any, Any], tuple[TrainState, jax.Array | None]]


def _apply_model(
    state: TrainState, params: Any, x: Any, train: bool, key: Any, policy: Policy | None
) -> tuple[Any, Any]:
    args = x if isinstance(x, tuple) else (x,)
    if policy is None:
        return state.model.apply(params, state.model_state, *args, train=train, key=key)
    return state.model.apply(
        params, state.model_state, *args, train=train, key=key, precision=policy
    )


def _keep_if(finite: jax.Array, new: Any, old: Any) -> Any:
    return jax.tree_util.tree_map(lambda n, o: jnp.where(finite, n, o), new, old)


def _guard_error(state: TrainState, loss: jax.Array, grads: Any, model_state: Any) -> Any:
    # fit stops at its next fetch; until then everything stays finite: a non-finite loss
    # applies zero gradients, and non-finite gradient elements are zeroed, by an
    # elementwise select that XLA fuses into the optimizer's update (no reduction).
    finite = jnp.isfinite(loss)
    grads = jax.tree_util.tree_map(lambda g: _finite_or_zero(g, finite), grads)
    model_state = _keep_if(finite, model_state, state.model_state)
    return state.apply_gradients(grads, model_state=model_state), finite


def _guard_skip(state: TrainState, loss: jax.Array, grads: Any, model_state: Any) -> Any:
    finite = jnp.isfinite(loss) & optim.all_finite(grads)
    model_state = _keep_if(finite, model_state, state.model_state)
    return state.apply_gradients(grads, finite=finite, model_state=model_state), finite


def _guard_ignore(state: TrainState, loss: jax.Array, grads: Any, model_state: Any) -> Any:
    return state.apply_gradients(grads, model_state=model_state), None


def _guard_scaled(state: TrainState, loss: jax.Array, grads: Any, model_state: Any) -> Any:
    # With a loss scale the optimizer wrapper skips a step whose gradients overflow and
    # backs off its scale; a non-finite loss poisons the gradients so that it is skipped
    # too (zeroing elements here would hide the overflow from the wrapper).
    finite = jnp.isfinite(loss)
    grads = jax.tree_util.tree_map(lambda g: jnp.where(finite, g, jnp.nan).astype(g.dtype), grads)
    model_state = _keep_if(finite, model_state, state.model_state)
    return state.apply_gradients(grads, model_state=model_state), finite


_GUARDS: dict[str, Guard] = {"error": _guard_error, "skip": _guard_skip, "ignore": _guard_ignore}
#: The guards of a step whose optimizer state holds a loss scale (`with_loss_scale`).
_SCALED_GUARDS: dict[str, Guard] = {
    "error": _guard_scaled,
    "skip": _guard_scaled,
    "ignore": _guard_ignore,
}


def make_train_step(
    loss_fn: LossFn,
    *,
    metrics: MetricFns | None = None,
    has_aux: bool = False,
    batch_fn: Callable[[Any], tuple[Any, Any]] | None = None,
    on_nonfinite: str = "error",
    donate: bool = True,
    jit: bool = True,
    axis_name: str | None = None,
    precision: str | Policy | None = None,
) -> Callable[..., tuple[TrainState, dict[str, Any]]]:
    """Builds ``step(state, batch, mask=None) -> (new_state, metrics)``.

    One step: forward in train mode (key ``state.step_key()``), loss, gradients,
    ``state.apply_gradients`` (the optimizer's update), new model state. Clipping,
    accumulation and the like are optimizer transforms (``funcnet.optim``).

    Args:
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` (e.g. ``losses.cross_entropy``, an
            optax loss followed by ``.mean()``, your own function); with ``has_aux``,
            returns ``(loss, {name: scalar})``. A ``mask`` (bool ``(batch,)``, False on
            padding rows) can only be passed to the step when the loss takes ``mask=``, as
            funcnet's losses do (their means, class weights and ``ignore_index`` included
            then equal PyTorch's on the valid rows).
        metrics: ``{name: fn(outputs, targets[, mask=])}`` computed on every batch (e.g.
            ``metrics.accuracy``), or ``{name: metric}`` with a streaming accumulator of
            ``funcnet.metrics`` (e.g. ``metrics.F1Score(num_classes=10)``), whose value in
            the step's metrics is this batch's state, to merge with ``metric.merge``.
        has_aux: whether ``loss_fn`` returns auxiliary metrics.
        batch_fn: ``batch_fn(batch) -> (inputs, targets)``, for batches that are not
            ``(x, y)`` pairs: ``lambda b: (b[0], b[0])`` (an autoencoder on unlabeled
            ``(x,)`` batches),
            ``lambda b: (b[0], b[1:])`` (``(x, y1, y2)``: a multi-task model), ``lambda b:
            (b["image"], b["label"])``. ``inputs`` may be a tuple of the model's inputs;
            ``targets`` any pytree ``loss_fn`` understands.
        on_nonfinite: ``"error"`` (default): a step whose loss is not finite applies
            zero gradients and keeps the model state, gradient elements that are not
            finite are zeroed, so parameters and optimizer state never become NaN;
            ``metrics["finite"]`` says whether the loss was finite, and ``fit`` stops with
            an error naming the step. ``"skip"``: a step whose loss or
            any gradient is not finite changes nothing but the step count
            (``optim.update_if_finite``); ``fit`` goes on. ``"ignore"``: no guard.
        donate: donate the incoming state's buffers (the caller must not reuse them).
        jit: compile with ``jax.jit`` (False gives the plain function, e.g. to nest it in
            your own jit or ``lax.scan``).
        axis_name: None (default): the step sees the whole batch. A name: the step runs
            on every member of that named axis (inside ``jax.pmap`` or ``jax.shard_map``
            over devices, or ``jax.vmap``), each with its own part of the batch and the
            same (replicated) state, and computes the global batch's loss, gradients and
            metrics: each member's means are weighted by its valid rows ``n_d`` and
            summed, ``sum_d n_d * mean_d / sum_d n_d``, so a padded or unevenly masked
            batch gives the full batch's exact means (PyTorch's DistributedDataParallel
            averages the devices' gradients unweighted, which differs when they hold
            different numbers of valid rows). Streaming metric states are merged across
            the axis with ``metric.merge``; ``count`` is the global count; the non-finite
            check sees the global loss and gradients, so every member takes the same
            step; the model state (BatchNorm statistics) is member 0's, as DDP broadcasts
            rank 0's buffers (give BatchNorm the same ``axis_name`` for global batch
            statistics); each member draws its own dropout masks
            (``fold_in(state.step_key(), axis_index)``). One ``psum`` carries it all.
            :class:`funcnet.parallel.DataParallel` builds and runs such steps.
        precision: a mixed-precision policy or its name (``"bf16"``, ``"fp16"``,
            ``"float32"``; see ``funcnet.mixed_precision.Policy``), passed to
            ``model.apply``: the forward and backward passes compute in its compute
            dtype, the loss sees its output dtype, the parameters (which must be of its
            param dtype) and the optimizer state keep theirs. None (default): the model
            runs as it is. A float16 policy needs a loss scale in the optimizer state.

    **Loss scaling.** When the optimizer state holds a loss scale (the optimizer wrapped
    in ``funcnet.mixed_precision.with_loss_scale``: PyTorch's ``GradScaler``), whatever
    ``precision``, the step differentiates ``loss * scale``; the wrapper unscales the
    gradients, skips a step whose gradients are not all finite (parameters and optimizer
    state untouched) and adjusts the scale. ``on_nonfinite`` then zeroes no gradient
    elements: ``"error"`` and ``"skip"`` count a non-finite loss as an overflow (the step
    is skipped) and keep the model state; ``"error"`` still makes ``fit`` stop at a
    non-finite loss, not at an overflow. The metrics add ``loss_scale`` (the scale this
    step used) and ``skipped`` (whether its update was skipped).

    Returns:
        The step function. Its ``metrics`` hold ``loss`` (unscaled), the auxiliary and
        metric values, ``count`` (valid rows) when a mask is passed, ``finite`` unless
        ``on_nonfinite="ignore"``, and ``loss_scale`` and ``skipped`` with a loss scale.
        Its attribute ``objective`` tells ``fit`` how to feed it.

    Raises:
        ValueError: an unknown ``on_nonfinite`` or ``precision``; when the step is traced,
            parameters not of the policy's param dtype, or a float16 policy without a
            loss scale in the optimizer state.

    Examples:
        >>> step = make_train_step(losses.cross_entropy, metrics={"acc": metrics.accuracy})
        >>> state, m = step(state, (x, y))
    """
    if on_nonfinite not in NONFINITE_MODES:
        raise ValueError(f"on_nonfinite must be one of {NONFINITE_MODES}, got {on_nonfinite!r}")
    if loss_fn is None:
        raise TypeError("make_train_step needs a loss_fn(outputs, targets) -> scalar")
    objective = Objective(loss_fn, metrics, has_aux, batch_fn)
    name = None if axis_name is None else _check_axis_name(axis_name)
    step = _train_step(objective, on_nonfinite, name, get_policy(precision))
    compiled = jax.jit(step, donate_argnums=(0,) if donate else ()) if jit else step
    compiled.objective = objective  # type: ignore[attr-defined]
    return compiled


def _check_axis_name(axis_name: Any) -> str:
    if not isinstance(axis_name, str) or not axis_name:
        raise TypeError(
            f"axis_name must be the name of a pmap/shard_map/vmap axis such as 'data', "
            f"got {axis_name!r}"
        )
    return axis_name


def _train_step(
    objective: Objective, on_nonfinite: str, axis_name: str | None, policy: Policy | None
) -> Callable[..., Any]:
    """The step on the whole batch, or on one member's part of it combined across
    ``axis_name`` (see make_train_step)."""

    def step(state: TrainState, batch: Any, mask: jax.Array | None = None) -> Any:
        x, y = objective.split(batch)
        scaling = _loss_scaling(state, policy)
        scale = None if scaling is None else scaling.scale

        def compute(params: Any) -> tuple[jax.Array, tuple[Any, Any, Any, dict]]:
            out, model_state = _apply_model(state, params, x, True, _key(state, axis_name), policy)
            loss, aux = objective.loss(out, y, mask)
            return (loss if scale is None else loss * scale), (loss, out, model_state, aux)

        (_, (loss, out, model_state, aux)), grads = jax.value_and_grad(compute, has_aux=True)(
            _varying(state.params, axis_name)
        )
        values = {"loss": loss, **aux, **objective.values(out, y, mask)}
        values, grads, model_state = _whole_batch(
            objective, axis_name, x, mask, values, grads, model_state
        )
        guard = (_GUARDS if scaling is None else _SCALED_GUARDS)[on_nonfinite]
        new, finite = guard(state, values["loss"], grads, model_state)
        if finite is not None:
            values["finite"] = finite
        if scaling is not None:
            applied = find_loss_scale(new.opt_state).inner_state.last_finite
            values.update(loss_scale=scaling.scale, skipped=~applied)
        return new, values

    return step


def _loss_scaling(state: TrainState, policy: Policy | None) -> LossScaleState | None:
    """The optimizer state's loss scale, after checking (at trace time) that the
    parameters have the policy's param dtype and that a float16 policy has a scale."""
    scaling = find_loss_scale(state.opt_state)
    if policy is None:
        return scaling
    for path, leaf in jax.tree_util.tree_leaves_with_path(state.params):
        dtype = jnp.result_type(leaf)
        if jnp.issubdtype(dtype, jnp.floating) and dtype != policy.param_dtype:
            raise ValueError(
                f"precision={policy}: parameter {jax.tree_util.keystr(path)} is {dtype}, "
                f"not the policy's param_dtype {policy.param_dtype}; cast the parameters "
                "with policy.cast_to_param(params) and pass them to TrainState.create(..., "
                "params=...), or choose a Policy with that param_dtype"
            )
    if policy.needs_loss_scale and scaling is None:
        raise ValueError(
            f"precision={policy} computes in float16, whose gradients underflow without "
            "loss scaling: wrap the optimizer, TrainState.create(model, "
            "funcnet.mixed_precision.with_loss_scale(optimizer), key) (PyTorch's GradScaler)"
        )
    return scaling


def _key(state: TrainState, axis_name: str | None) -> jax.Array:
    """The step's key; each member of ``axis_name`` draws its own dropout masks."""
    if axis_name is None:
        return state.step_key()
    return jax.random.fold_in(state.step_key(), _axis_index(axis_name))


def _whole_batch(
    objective: Objective,
    axis_name: str | None,
    x: Any,
    mask: jax.Array | None,
    values: dict[str, Any],
    grads: Any,
    model_state: Any,
) -> tuple[dict[str, Any], Any, Any]:
    """The whole batch's values (``count`` among them when masked), gradients and model
    state: the step's own, or combined across ``axis_name``."""
    if axis_name is None:
        if mask is not None:
            values["count"] = count_rows(x, mask)
        return values, grads, model_state
    total, values, grads, model_state = _across(
        objective, axis_name, count_rows(x, mask), values, grads, model_state
    )
    if mask is not None:
        values["count"] = total
    return values, grads, model_state


def _axis_index(axis_name: str) -> jax.Array:
    try:
        return lax.axis_index(axis_name)
    except NameError as e:
        raise NameError(
            f"this step was built with axis_name={axis_name!r}: it is one device's part of a "
            f"data-parallel step, to run under jax.pmap(step, axis_name={axis_name!r}, "
            f"in_axes=(None, 0, 0), out_axes=None) or jax.shard_map over a mesh axis "
            f"{axis_name!r}; or use funcnet.parallel.DataParallel, which does that. For one "
            "device, build the step without axis_name"
        ) from e


def _varying(params: Any, axis_name: str | None) -> Any:
    """``params`` typed as varying over ``axis_name`` inside ``shard_map`` (``pmap`` runs on
    it): the gradient with respect to a replicated (invariant) input comes back already
    summed over the axis, one all-reduce per parameter; with respect to a varying one it is
    this member's own, summed once by ``_across`` with everything else. Under ``vmap``
    (no mesh axis) a gradient is the member's own anyway."""
    if axis_name is not None and axis_name in jax.sharding.get_abstract_mesh().manual_axes:
        return lax.pcast(params, axis_name, to="varying")
    return params


def _across(
    objective: Objective,
    axis_name: str,
    count: jax.Array,
    values: dict[str, Any],
    grads: Any = None,
    model_state: Any = None,
) -> tuple[jax.Array, dict[str, Any], Any, Any]:
    """``(global count, global values, global gradients, member 0's model state)`` from
    this member's (``combine_across``); the values keep their order."""
    _axis_index(axis_name)  # names the fix when the axis is unbound
    states = {k: values[k] for k in objective.streaming if k in values}
    means = {k: v for k, v in values.items() if k not in states}
    total, (means, grads), states, model_state = combine_across(
        axis_name, count, (means, grads), states, objective.streaming, model_state
    )
    merged = {**means, **states}
    return total, {k: merged[k] for k in values}, grads, model_state


def make_eval_step(
    loss_fn: LossFn | None = None,
    *,
    metrics: MetricFns | None = None,
    has_aux: bool = False,
    batch_fn: Callable[[Any], tuple[Any, Any]] | None = None,
    jit: bool = True,
    axis_name: str | None = None,
    precision: str | Policy | None = None,
) -> Callable[..., dict[str, Any]]:
    """Builds ``eval_step(state, batch, mask=None) -> metrics`` (eval mode, no key).

    Args:
        loss_fn: as for :func:`make_train_step`, or None for no loss.
        metrics: as for :func:`make_train_step`.
        has_aux: whether ``loss_fn`` returns auxiliary metrics.
        batch_fn: as for :func:`make_train_step`.
        jit: compile with ``jax.jit``.
        axis_name: as for :func:`make_train_step`: the step runs on every member of
            that named axis and reports the global batch's count-weighted loss and
            metrics, streaming states merged, and the global ``count``.
        precision: as for :func:`make_train_step` (the model runs under the policy;
            float16 needs no loss scale here).

    Returns:
        The eval step; its metrics hold ``loss`` (when ``loss_fn`` is given), the metric
        values, and ``count`` (valid rows).

    Raises:
        ValueError: an unknown ``precision``.
    """
    objective = Objective(loss_fn, metrics, has_aux, batch_fn)
    name = None if axis_name is None else _check_axis_name(axis_name)
    policy = get_policy(precision)

    def eval_step(state: TrainState, batch: Any, mask: jax.Array | None = None) -> dict:
        x, y = objective.split(batch)
        out, _ = _apply_model(state, state.params, x, False, None, policy)
        values: dict[str, Any] = {}
        if loss_fn is not None:
            loss, aux = objective.loss(out, y, mask)
            values.update({"loss": loss, **aux})
        values.update(objective.values(out, y, mask))
        count = count_rows(x, mask)
        if name is not None:
            count, values, _, _ = _across(objective, name, count, values)
        values["count"] = count
        return values

    compiled = jax.jit(eval_step) if jit else eval_step
    compiled.objective = objective  # type: ignore[attr-defined]
    return compiled
