"""LayerStack: the stacked blocks compute what a Python loop over the blocks computes."""

from __future__ import annotations

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet.nn._stack as stack_module
from funcnet import nn
from funcnet.errors import ShapeError

N = 3


def _block():
    return nn.Sequential(nn.Linear(4, 4), jnp.tanh, nn.Dropout(0.5))


def _loop(layer, params, state, x, **kwargs):
    """The reference: block i with params[i], one after another (eval mode)."""
    states = []
    for i in range(N):
        pick = lambda a, i=i: a[i]
        x, s = layer.apply(jax.tree.map(pick, params), jax.tree.map(pick, state), x, **kwargs)
        states.append(s)
    return x, jax.tree.map(lambda *a: jnp.stack(a), *states) if states[0] else {}


def test_values_and_gradients_equal_a_loop_over_the_blocks():
    model = nn.LayerStack(_block(), N)
    params, state = model.init(jax.random.key(0))
    assert jax.tree.map(jnp.shape, params) == {"0": {"weight": (N, 4, 4), "bias": (N, 4)}}
    w = np.asarray(params["0"]["weight"])
    assert not np.allclose(w[0], w[1])  # each block has its own initial values
    x = jax.random.normal(jax.random.key(1), (2, 4))

    def loss(f):
        return lambda p, x: jnp.sum(jnp.sin(f(p, x)))

    stacked = lambda p, x: model.apply(p, state, x)[0]
    looped = lambda p, x: _loop(model.layer, p, state, x)[0]
    # float32: the same 4-term dot products and tanh per block in both (identical here); a
    # reordering would move each block's outputs (< 1) by ~2 U32 * sum|terms| (< 3) ~ 4e-7
    np.testing.assert_allclose(stacked(params, x), looped(params, x), rtol=1e-6, atol=1e-6)
    got = jax.jit(jax.grad(loss(stacked), argnums=(0, 1)))(params, x)
    want = jax.grad(loss(looped), argnums=(0, 1))(params, x)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        # gradients (< 2) through 3 blocks back: 1.2e-7 measured, 10x inside the bounds
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_state_is_stacked_and_updated_block_by_block():
    model = nn.LayerStack(nn.BatchNorm1d(4), N)
    params, state = model.init(jax.random.key(0))
    assert state["running_mean"].shape == (N, 4)
    x = jax.random.normal(jax.random.key(1), (8, 4)) * 3 + 1
    y, new_state = jax.jit(lambda p, s, x: model.apply(p, s, x, train=True))(params, state, x)
    want_y, want_state = _loop(model.layer, params, state, x, train=True)
    # the same float32 statistics of 8 values per block: a reordering moves them by
    # ~8 U32 mean|x| (< 2e-6 relative), 5x inside rtol=1e-5; identical here
    np.testing.assert_allclose(y, want_y, rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(new_state), jax.tree.leaves(want_state)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)


def test_each_block_draws_its_own_random_numbers():
    model = nn.LayerStack(nn.Dropout(0.5), 2)
    params, state = model.init(jax.random.key(0))
    x = jnp.ones((4096,))
    run = jax.jit(lambda k: model.apply(params, state, x, train=True, key=k)[0])
    y = run(jax.random.key(1))
    np.testing.assert_array_equal(y, run(jax.random.key(1)))  # reproducible
    assert not np.array_equal(y, run(jax.random.key(2)))
    # Two independent masks of keep-probability 1/2 let a quarter through (scaled x4);
    # one mask used twice would let half through.
    assert set(np.unique(np.asarray(y))) <= {0.0, 4.0}
    assert 0.2 < float(np.mean(np.asarray(y) > 0)) < 0.3
    with pytest.raises(ValueError, match="needs a PRNG key"):
        model.apply(params, state, x, train=True)


@pytest.mark.parametrize(
    "remat", [True, "dots_saveable", jax.checkpoint_policies.dots_with_no_batch_dims_saveable]
)
def test_remat_keeps_the_gradients(remat):
    plain = nn.LayerStack(_block(), N)
    rematted = nn.LayerStack(_block(), N, remat=remat)
    params, state = plain.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (2, 4))

    def grads(model):
        loss = lambda p: jnp.sum(model.apply(p, state, x)[0] ** 2)
        return jax.jit(jax.grad(loss))(params), jax.make_jaxpr(jax.grad(loss))(params)

    (want, _), (got, jaxpr) = grads(plain), grads(rematted)
    assert "checkpoint" in str(jaxpr) or "remat" in str(jaxpr)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        # remat recomputes the same float32 forward: identical, bounds as the test above
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_one_block_is_traced_whatever_the_depth():
    x = jnp.ones((2, 5, 16))
    block = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)

    def matmuls(n):
        model = nn.LayerStack(block, n)
        params, state = jax.eval_shape(model.init, jax.random.key(0))
        return str(jax.make_jaxpr(lambda p: model.apply(p, state, x)[0])(params)).count("dot_")

    assert matmuls(12) == matmuls(1) > 0


def test_vmap_over_a_batch_of_inputs():
    model = nn.LayerStack(nn.Linear(4, 4), N)
    params, state = model.init(jax.random.key(0))
    xs = jax.random.normal(jax.random.key(1), (5, 4))
    # float64: vmapped rows may take another dot kernel than the batch, and rtol=1e-6
    # without atol fails on any cancelling float32 output summed in another order
    with jax.enable_x64(True):
        params, xs = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), (params, xs))
        per_row = jax.vmap(lambda x: model.apply(params, state, x)[0])(xs)
        batched = model.apply(params, state, xs)[0]
    assert per_row.dtype == batched.dtype == jnp.float64
    np.testing.assert_allclose(per_row, batched, rtol=1e-12, atol=1e-12)


def test_errors_name_the_stack():
    with pytest.raises(ShapeError, match=r"model \(LayerStack\): each block must return"):
        model = nn.LayerStack(nn.Linear(4, 3), 2)
        model.apply(*model.init(jax.random.key(0)), jnp.ones((2, 4)))
    model = nn.LayerStack(nn.Linear(4, 4), 2)
    unstacked = nn.Linear(4, 4).init(jax.random.key(0))[0]
    with pytest.raises(ShapeError, match=r"stacked along a leading axis of 2"):
        model.apply(unstacked, {}, jnp.ones((2, 4)))
    with pytest.raises(ShapeError, match=r"model \(Linear\): expected input with last dim"):
        model.apply(model.init(jax.random.key(0))[0], {}, jnp.ones((2, 5)))
    with pytest.raises(ValueError, match="num_layers"):
        nn.LayerStack(nn.Linear(4, 4), 0)
    with pytest.raises(TypeError, match="funcnet module"):
        nn.LayerStack(jnp.tanh, 2)


def test_docstring_examples_run():
    assert doctest.testmod(stack_module).failed == 0
