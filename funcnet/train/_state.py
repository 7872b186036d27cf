"""TrainState: everything a training step reads and writes, as one pytree."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from funcnet import optim
from funcnet.errors import UsageError
from funcnet.nn import Module


@dataclasses.dataclass(frozen=True)
class TrainState:
    """Parameters, model state, optimizer state, step count and PRNG key of a run.

    A pytree: ``jax.jit`` takes it whole (and donates it), checkpoints save it, and
    ``jax.tree_util`` maps over its arrays. The model and the optimizer ride along as
    static (non-array) fields, so a step function needs nothing else.

    Attributes:
        params: the model's parameters (nested dicts of arrays).
        model_state: the model's state (BatchNorm statistics), ``{}`` if none.
        opt_state: the optimizer's state.
        step: int32 scalar, the number of optimizer steps taken.
        key: the run's base PRNG key, as raw uint32 key data (a typed key costs a few
            microseconds per jitted call); step ``t`` uses ``fold_in(key, t)``, so a resumed
            run draws exactly the random numbers the uninterrupted run would have.
        model: the funcnet module (static).
        optimizer: the gradient transformation, funcnet's or optax's (static).
    """

    params: Any
    model_state: Any
    opt_state: Any
    step: jax.Array
    key: jax.Array
    model: Module = dataclasses.field(metadata={"static": True})
    optimizer: optim.GradientTransformation = dataclasses.field(metadata={"static": True})

    @classmethod
    def create(
        cls,
        model: Module,
        optimizer: optim.GradientTransformation,
        key: jax.Array,
        params: Any = None,
        model_state: Any = None,
    ) -> TrainState:
        """Initialises the model (unless ``params`` are given) and the optimizer.

        Args:
            model: the funcnet module to train.
            optimizer: an object with ``init``/``update`` (funcnet.optim or optax).
            key: a PRNG key; split into one for ``init`` and the run's base key.
            params: existing parameters (fine-tuning, resuming from ``load_params``).
            model_state: existing model state to go with ``params``.

        Returns:
            A TrainState at step 0.

        Raises:
            UsageError: ``optimizer`` is not an optimizer (``None``, a factory not called).
        """
        _check_optimizer(optimizer)
        init_key, run_key = jax.random.split(key)
        if params is None:
            params, initial_state = model.init(init_key)
            model_state = initial_state if model_state is None else model_state
        elif model_state is None:
            model_state = model.init(init_key)[1]
        return cls(
            params=params,
            model_state=model_state,
            opt_state=_unaliased(optimizer.init(params), params),
            step=jnp.zeros((), jnp.int32),
            key=_raw(run_key),
            model=model,
            optimizer=optimizer,
        )

    def replace(self, **changes: Any) -> TrainState:
        """A copy with some fields replaced."""
        return dataclasses.replace(self, **changes)

    def step_key(self) -> jax.Array:
        """The PRNG key of the current step, ``fold_in(key, step)`` (raw uint32 key data)."""
        return jax.random.fold_in(self.key, self.step)

    def apply_gradients(
        self, grads: Any, *, finite: jax.Array | None = None, **changes: Any
    ) -> TrainState:
        """One optimizer step (Flax's ``TrainState.apply_gradients``).

        ``updates, opt_state = optimizer.update(grads, opt_state, params)``, then
        ``params = optim.apply_updates(params, updates)`` and ``step + 1``.

        Args:
            grads: gradients, shaped like ``params``.
            finite: optional bool ``()``; when False the optimizer does not run (its state
                stays as it was and the parameters do not move), as
                :func:`funcnet.optim.update_if_finite`; the step count still advances.
            **changes: other fields to replace, e.g. ``model_state=new_model_state``.

        Returns:
            The new TrainState.
        """
        if finite is None:
            updates, opt_state = self.optimizer.update(grads, self.opt_state, self.params)
        else:
            updates, opt_state = optim.update_if_finite(
                finite, self.optimizer, grads, self.opt_state, self.params
            )
        params = optim.apply_updates(self.params, updates)
        return self.replace(params=params, opt_state=opt_state, step=self.step + 1, **changes)


def _check_optimizer(optimizer: Any) -> None:
    """Raise UsageError unless ``optimizer`` has callable ``init`` and ``update``."""
    if callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None)):
        return
    if optimizer is None:
        got = "None"
    elif callable(optimizer):
        name = getattr(optimizer, "__name__", type(optimizer).__name__)
        got = f"{name}, an optimizer factory: call it, e.g. optim.{name}(1e-3)"
    else:
        got = f"a {type(optimizer).__name__}, which has no init and update"
    raise UsageError(
        "TrainState.create needs an optimizer, e.g. TrainState.create(model, optim.adam(1e-3), "
        f"key) (funcnet.optim's or optax's, anything with init and update); got {got}"
    )


def _raw(key: jax.Array) -> jax.Array:
    """A typed key's uint32 data: jit rebuilds typed keys in Python on every call (~5 µs)."""
    return jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key


def _unaliased(tree: Any, *others: Any) -> Any:
    """``tree`` with every array that appears twice (in it or in ``others``) copied.

    A donated step cannot take one buffer twice, and optimizer states built by sharing one
    zeros tree between two moments (or holding the parameters themselves) do exactly that.
    """
    seen = {id(leaf) for other in others for leaf in jax.tree_util.tree_leaves(other)}

    def fresh(leaf: Any) -> Any:
        if isinstance(leaf, jax.Array) and id(leaf) in seen:
            return jnp.copy(leaf)
        seen.add(id(leaf))
        return leaf

    return jax.tree_util.tree_map(fresh, tree)


jax.tree_util.register_dataclass(
    TrainState,
    data_fields=["params", "model_state", "opt_state", "step", "key"],
    meta_fields=["model", "optimizer"],
)
