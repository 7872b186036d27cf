"""The protocol: chain, apply_updates, errors, and mixing with optax in both directions."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funcnet.optim as optim

from ._problem import assert_close, jax_trajectory


def test_chain_applies_transforms_in_order_and_keeps_one_state_each():
    tx = optim.chain(optim.clip_grad_value(1.0), optim.scale(3.0), optim.scale_by_lr(0.5))
    params = {"w": jnp.zeros(3)}
    state = tx.init(params)
    assert isinstance(state, tuple) and len(state) == 3
    updates, _ = tx.update({"w": jnp.array([0.5, 2.0, -4.0])}, state)
    # clip to [-1, 1], times 3, times -lr
    np.testing.assert_allclose(updates["w"], [-0.75, -1.5, 1.5])


def test_chain_rejects_a_state_from_another_optimizer():
    tx = optim.chain(optim.scale(1.0), optim.scale(2.0))
    with pytest.raises(ValueError, match="chain of 2 transforms got a state that is a 1-tuple"):
        tx.update({"w": jnp.ones(2)}, (optim.EmptyState(),))


def test_chain_rejects_what_is_not_a_transform():
    with pytest.raises(TypeError, match="chain argument 1 is float"):
        optim.chain(optim.scale(1.0), 0.1)


def test_apply_updates_keeps_parameter_dtypes_and_skips_none():
    params = {"a": jnp.ones(2, jnp.bfloat16), "b": jnp.ones(2, jnp.float32)}
    new = optim.apply_updates(params, {"a": jnp.full(2, 0.5, jnp.float32), "b": None})
    assert new["a"].dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(new["a"], np.float32), [1.5, 1.5])
    assert new["b"] is params["b"]


@pytest.mark.parametrize(
    "opt",
    [
        optim.adam(1e-3, weight_decay=0.1),
        optim.adamw(1e-3),
        optim.sgd(0.1, weight_decay=0.1),
        optim.add_weight_decay(0.1),
    ],
    ids=["adam-l2", "adamw", "sgd-l2", "add_weight_decay"],
)
def test_transforms_that_read_params_say_so_when_none_given(opt):
    params = {"w": jnp.ones(2)}
    with pytest.raises(
        ValueError, match=r"reads the parameters: call update\(grads, opt_state, params\)"
    ):
        opt.update(params, opt.init(params))


def test_pytorch_argument_checks():
    with pytest.raises(ValueError, match="lr must be >= 0"):
        optim.sgd(-0.1)
    with pytest.raises(ValueError, match=r"each of betas must be in \[0, 1\)"):
        optim.adam(betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="nesterov momentum requires a momentum > 0"):
        optim.sgd(0.1, nesterov=True)
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        optim.rmsprop(weight_decay=-1.0)


def test_optax_transforms_inside_a_funcnet_chain():
    """optax -> funcnet: any optax transform works where a funcnet one does."""
    ours = optim.chain(optax.clip_by_global_norm(0.05), optim.adam(1e-2))
    theirs = optax.chain(optax.clip_by_global_norm(0.05), optax.adam(1e-2))
    assert_close(jax_trajectory(ours), jax_trajectory(theirs))


def test_funcnet_optimizers_inside_optax_chain():
    """funcnet -> optax: a funcnet optimizer is an optax GradientTransformation."""
    ours = optax.chain(optim.clip_grad_value(0.02), optim.adamw(1e-2, weight_decay=0.1))
    theirs = optax.chain(optax.clip(0.02), optax.adamw(1e-2, weight_decay=0.1))
    assert_close(jax_trajectory(ours), jax_trajectory(theirs))


def test_optax_optimizer_as_a_funcnet_parameter_group():
    ours = optim.param_groups([("fc.bias", optax.sgd(0.1))], default=optim.adam(1e-2))
    theirs = optax.multi_transform(
        {"bias": optax.sgd(0.1), "rest": optax.adam(1e-2)},
        {"fc": {"weight": "rest", "bias": "bias"}},
    )
    assert_close(jax_trajectory(ours), jax_trajectory(theirs))
