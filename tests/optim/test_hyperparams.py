"""Hyper-parameters in the optimizer state: current_lr, get/set_hyperparams, inject_hyperparams."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funcnet.optim as optim
from funcnet.optim import schedules

RECIPES = [optim.sgd, optim.adam, optim.adamw, optim.rmsprop, optim.adagrad]
PARAMS = {"fc": {"weight": jnp.ones((2, 3)), "bias": jnp.ones(3)}}
GRADS = {"fc": {"weight": jnp.full((2, 3), 0.5), "bias": jnp.full(3, -0.5)}}


def run(opt, steps, params=PARAMS, grads=GRADS, state=None):
    """``steps`` updates in one jitted scan with the state donated; returns the final state.

    Donation fails loudly if two leaves of a state share a buffer, so every optimizer run
    here is also checked to be donatable.
    """

    @jax.jit(donate_argnums=0)
    def go(state):
        def body(s, _):
            return opt.update(grads, s, params)[1], None

        return jax.lax.scan(body, state, length=steps)[0]

    return go(opt.init(params) if state is None else state)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.__name__)
def test_current_lr_reads_every_optimizer_and_follows_its_schedule(recipe):
    state = recipe(0.25).init(PARAMS)
    lr = optim.current_lr(state)
    assert isinstance(lr, jax.Array) and lr.shape == () and lr.dtype == jnp.float32
    assert float(lr) == 0.25

    schedule = schedules.step(0.1, step_size=2, gamma=0.5)
    state = run(recipe(schedule), 5)
    # The lr the next (6th) update uses, as PyTorch's param_groups[0]["lr"] after 5 steps.
    # float32(0.1) times 0.5^2 (exact): one rounding, < U32 = 6e-8 relative on any CPU
    np.testing.assert_allclose(optim.current_lr(state), 0.1 * 0.5**2, rtol=1e-7)
    assert int(state.count) == 5


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.__name__)
def test_a_constant_lr_keeps_no_step_count(recipe):
    # Nothing evaluates a schedule, so no count (a state leaf and a kernel per step less);
    # the inner optimizer keeps its own count where its rule needs one (Adam's bias
    # correction). The stored lr still changes with set_hyperparams.
    state = run(recipe(0.25), 3)
    assert state.count is None
    leaves = len(jax.tree_util.tree_leaves(state))
    scheduled = run(recipe(schedules.constant(0.25)), 3)
    assert int(scheduled.count) == 3
    assert len(jax.tree_util.tree_leaves(scheduled)) == leaves + 1
    state = optim.set_hyperparams(state, lr=0.5)
    assert float(optim.current_lr(run(recipe(0.25), 1, state=state))) == 0.5


def test_current_lr_through_wrappers_and_groups():
    opt = optim.chain(
        optim.clip_grad_norm(1.0),
        optim.accumulate(
            2,
            optim.skip_nonfinite(
                optim.param_groups([("fc.bias", optim.sgd(0.5))], default=optim.adam(1e-3))
            ),
        ),
    )
    state = opt.init(PARAMS)
    assert float(optim.current_lr(state)) == 0.5  # group 0, as param_groups[0]["lr"]
    lrs = [float(g["lr"]) for g in optim.get_hyperparams(state)]
    assert lrs == pytest.approx([0.5, 1e-3])

    state = optim.set_hyperparams(state, group=1, lr=1e-4)
    assert [float(g["lr"]) for g in optim.get_hyperparams(state)] == pytest.approx([0.5, 1e-4])
    state = optim.set_hyperparams(state, lr=0.2)
    assert [float(g["lr"]) for g in optim.get_hyperparams(state)] == pytest.approx([0.2, 0.2])
    state = run(opt, 4, state=state)  # donated through every wrapper
    assert int(state[1].micro_step) == 0
    assert [float(g["lr"]) for g in optim.get_hyperparams(state)] == pytest.approx([0.2, 0.2])


def test_current_lr_of_optax_inject_hyperparams_states():
    state = optax.chain(
        optax.clip(1.0), optax.inject_hyperparams(optax.adam)(learning_rate=3e-4)
    ).init(PARAMS)
    # float32 constants: one rounding each, < U32 = 6e-8 relative (default rtol=1e-7)
    np.testing.assert_allclose(optim.current_lr(state), 3e-4)
    state = optim.set_hyperparams(state, lr=1e-4)  # sets optax's "learning_rate"
    np.testing.assert_allclose(optim.current_lr(state), 1e-4)


def test_current_lr_says_where_the_lr_went_missing():
    for state in (optax.adam(1e-3).init(PARAMS), optim.adam(1e-3, in_state=()).init(PARAMS)):
        with pytest.raises(ValueError, match="no learning rate in this optimizer state"):
            optim.current_lr(state)


def test_hyperparams_named_in_in_state_can_change_between_steps():
    """Changing betas in the state gives exactly the optimizer built with the new betas."""
    opt = optim.adam(1e-2, in_state=("lr", "betas", "weight_decay"))
    state = opt.init(PARAMS)
    assert set(optim.get_hyperparams(state)[0]) == {"lr", "betas", "weight_decay"}
    state = optim.set_hyperparams(state, betas=(0.5, 0.6), weight_decay=0.1)
    updates, _ = opt.update(GRADS, state, PARAMS)
    reference = optim.adam(1e-2, betas=(0.5, 0.6), weight_decay=0.1)
    expected, _ = reference.update(GRADS, reference.init(PARAMS), PARAMS)
    # the same elementwise float32 rule (no sums), betas traced or folded: a few roundings
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), updates, expected)


def test_set_hyperparams_errors():
    state = optim.sgd(0.1).init(PARAMS)
    with pytest.raises(ValueError, match=r"stores no momentum \(it stores \['lr'\]\)"):
        optim.set_hyperparams(state, momentum=0.9)
    with pytest.raises(ValueError, match="group=3, but the state stores 1 group"):
        optim.set_hyperparams(state, group=3, lr=0.1)
    with pytest.raises(ValueError, match=r"lr has shape \(\); got a value of shape \(2,\)"):
        optim.set_hyperparams(state, lr=jnp.ones(2))
    with pytest.raises(ValueError, match="stores no hyper-parameters"):
        optim.set_hyperparams(optax.sgd(0.1).init(PARAMS), lr=0.1)


def test_in_state_errors():
    with pytest.raises(ValueError, match="in_state names 'beta1', which is not one of"):
        optim.adam(in_state=("lr", "beta1"))
    with pytest.raises(ValueError, match="amsgrad=False cannot live in the optimizer state"):
        optim.adam(in_state=("lr", "amsgrad"))


def test_inject_hyperparams_for_optax_and_custom_factories():
    opt = optim.inject_hyperparams(optax.sgd)(learning_rate=0.1, momentum=0.9)
    state = opt.init(PARAMS)
    assert set(state.hyperparams) == {"learning_rate", "momentum"}
    state = optim.set_hyperparams(state, lr=0.01, momentum=0.0)
    updates, _ = opt.update(GRADS, state, PARAMS)
    np.testing.assert_allclose(updates["fc"]["weight"], -0.01 * 0.5, rtol=1e-6)  # 2 roundings

    def my_sgd(lr, scale_first=True):
        return optim.chain(optim.scale(2.0 if scale_first else 1.0), optim.scale_by_lr(lr))

    opt = optim.inject_hyperparams(my_sgd)(schedules.exponential(1.0, 0.5))
    state = run(opt, 3)
    assert float(optim.current_lr(state)) == 0.125


def test_inject_hyperparams_refuses_to_nest():
    with pytest.raises(ValueError, match=r"write adam\(\.\.\., in_state=\('lr', \.\.\.\)\)"):
        optim.inject_hyperparams(optim.adam)
    # A JAX array lr (what an injector passes) is used as given, not stored a second time;
    # a factory that still stores one nests two stores, which is refused.
    nested = optim.inject_hyperparams(lambda lr: optim.adam(lr, in_state=("lr",)))(1e-3)
    with pytest.raises(ValueError, match="already keeps hyper-parameters in its state"):
        nested.init(PARAMS)


def test_schedules_for_other_hyperparameters_need_in_state():
    momentum = schedules.one_cycle_momentum(10)
    with pytest.raises(
        ValueError, match=r"momentum is a schedule, which needs 'momentum' in in_state"
    ):
        optim.sgd(0.1, momentum=momentum, nesterov=True)
    opt = optim.sgd(0.1, momentum=momentum, nesterov=True, in_state=("lr", "momentum"))
    state = run(opt, 3)
    # the same float32 schedule, traced or not: a few roundings (< 1e-6 = 17 U32)
    np.testing.assert_allclose(optim.get_hyperparams(state)[0]["momentum"], momentum(3), rtol=1e-6)


def test_schedule_without_state_counts_by_itself():
    """in_state=() keeps a schedule in scale_by_lr's own counter: same updates, no lr in state."""
    schedule = schedules.cosine_annealing(0.1, T_max=4)

    def fourth_update(opt):
        return opt.update(GRADS, run(opt, 3), PARAMS)[0]

    stored, bare = (
        fourth_update(optim.adam(schedule)),
        fourth_update(optim.adam(schedule, in_state=())),
    )
    # the same elementwise float32 updates (no sums): a few roundings at most
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), stored, bare)
