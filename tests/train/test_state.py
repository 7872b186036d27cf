"""TrainState: apply_gradients and step_key, the pieces of a Flax-style hand-written step."""

import jax
import jax.numpy as jnp
import numpy as np

from funcnet import losses, optim, train
from tests.train._models import MLP, blobs, tree_equal


def _grads(state, x, y):
    def loss(params):
        return losses.cross_entropy(state.model.apply(params, {}, x)[0], y)

    return jax.grad(loss)(state.params)


def test_apply_gradients_is_the_optimizer_step(key):
    state = train.TrainState.create(MLP(), optim.adam(1e-2), key)
    x, y = blobs(16)
    grads = _grads(state, x, y)
    new = jax.jit(lambda s, g: s.apply_gradients(g))(state, grads)

    @jax.jit  # the same program written out: equal bit for bit
    def by_hand(s, g):
        updates, opt_state = s.optimizer.update(g, s.opt_state, s.params)
        return optim.apply_updates(s.params, updates), opt_state

    params, opt_state = by_hand(state, grads)
    assert tree_equal(new.params, params) and not tree_equal(new.params, state.params)
    assert tree_equal(new.opt_state, opt_state) and int(new.step) == 1
    kept = new.apply_gradients(grads, model_state={"kept": jnp.ones(1)})
    assert kept.model_state == {"kept": jnp.ones(1)}


def test_apply_gradients_with_finite_false_changes_nothing_but_the_step(key):
    state = train.TrainState.create(MLP(), optim.adam(1e-2), key)
    x, y = blobs(16)
    grads = _grads(state, x, y)
    skipped = jax.jit(lambda s, g, f: s.apply_gradients(g, finite=f))(state, grads, False)
    assert tree_equal(skipped.params, state.params)
    assert tree_equal(skipped.opt_state, state.opt_state) and int(skipped.step) == 1


def test_step_key_folds_the_step_into_the_run_key(key):
    state = train.TrainState.create(MLP(), optim.sgd(0.1), key)
    later = state.replace(step=jnp.asarray(5, jnp.int32))
    np.testing.assert_array_equal(later.step_key(), jax.random.fold_in(state.key, 5))
    assert not np.array_equal(later.step_key(), state.step_key())
