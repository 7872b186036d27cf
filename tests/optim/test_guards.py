"""Non-finite guards: all_finite, _finite_or_zero, zero_nonfinite, update_if_finite,
skip_nonfinite; NumPy and optax references, under jit, grad and vmap."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funcnet.optim as optim
from funcnet.optim._guards import _finite_or_zero

NAN, INF = np.nan, np.inf
G = np.array([[1.5, NAN, -INF], [INF, -2.0, 0.0]])


def _np_finite_or_zero(g, finite):
    return np.where(finite & np.isfinite(g), g, 0.0)


def test_all_finite():
    assert bool(optim.all_finite({"w": jnp.ones(3), "b": jnp.zeros((2, 2), jnp.bfloat16)}))
    assert not bool(jax.jit(optim.all_finite)({"w": jnp.ones(3), "b": jnp.array([0.0, INF])}))
    assert bool(optim.all_finite({}))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("finite", [True, False])
def test_finite_or_zero_matches_numpy(dtype, finite):
    out = jax.jit(_finite_or_zero)(jnp.asarray(G, dtype), jnp.array(finite))
    assert out.dtype == dtype and out.shape == G.shape
    np.testing.assert_array_equal(np.asarray(out, np.float64), _np_finite_or_zero(G, finite))


def test_finite_or_zero_under_grad_and_vmap():
    x = jnp.array([1.0, INF, 3.0])
    dx = jax.grad(lambda x: jnp.sum(2.0 * _finite_or_zero(x, jnp.array(True))))(x)
    np.testing.assert_array_equal(dx, [2.0, 0.0, 2.0])
    rows = jax.vmap(_finite_or_zero)(jnp.asarray(G), jnp.array([False, True]))
    np.testing.assert_array_equal(rows, [[0.0, 0.0, 0.0], _np_finite_or_zero(G[1], True)])


def test_zero_nonfinite_zeroes_the_nonfinite_elements_only():
    tx = optim.zero_nonfinite()
    grads = {"w": jnp.asarray(G, jnp.float32), "b": jnp.array([-INF, 0.5], jnp.bfloat16)}
    state = tx.init(grads)
    assert state == optim.EmptyState()
    updates, state = jax.jit(tx.update)(grads, state)
    assert updates["b"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(updates["w"], _np_finite_or_zero(G, True))
    np.testing.assert_array_equal(np.asarray(updates["b"], np.float32), [0.0, 0.5])


def test_zero_nonfinite_in_an_optax_chain_is_adam_on_the_cleaned_gradient():
    params = {"w": jnp.zeros(G.shape)}
    tx = optax.chain(optim.zero_nonfinite(), optax.adam(0.1))
    updates, _ = tx.update({"w": jnp.asarray(G)}, tx.init(params), params)
    clean = {"w": jnp.asarray(_np_finite_or_zero(G, True), jnp.float32)}
    expected, _ = optax.adam(0.1).update(clean, optax.adam(0.1).init(params), params)
    np.testing.assert_allclose(updates["w"], expected["w"], rtol=1e-6)


@pytest.mark.parametrize(
    "make",
    [lambda: optim.adamw(0.1, weight_decay=0.1), lambda: optax.adam(0.1)],
    ids=["funcnet-adamw", "optax-adam"],
)
def test_update_if_finite_steps_or_keeps_the_state(make):
    tx = make()
    params = {"w": jnp.ones(2), "b": jnp.zeros(3)}
    grads = {"w": jnp.array([1.0, 2.0]), "b": jnp.array([0.5, -1.0, 3.0])}
    traces = []

    @jax.jit
    def step(finite, grads, state):
        traces.append(1)
        return optim.update_if_finite(finite, tx, grads, state, params)

    state = tx.init(params)
    updates, stepped = step(jnp.array(True), grads, state)
    expected, expected_state = tx.update(grads, state, params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), updates, expected)
    jax.tree.map(np.testing.assert_array_equal, stepped, expected_state)

    # False skips even with finite gradients (the flag decides: a non-finite loss), and
    # non-finite gradients never reach the state.
    for g in (grads, jax.tree.map(lambda x: x * INF, grads)):
        updates, kept = step(jnp.array(False), g, stepped)
        for u, e in zip(jax.tree.leaves(updates), jax.tree.leaves(expected)):
            assert u.dtype == e.dtype and u.shape == e.shape
            np.testing.assert_array_equal(u, 0.0)
        jax.tree.map(np.testing.assert_array_equal, kept, stepped)
    assert len(traces) == 1


def test_update_if_finite_under_vmap_decides_per_example():
    tx = optim.sgd(1.0)
    params = {"w": jnp.zeros(3)}
    grads = jnp.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])

    def one(finite, g):
        return optim.update_if_finite(finite, tx, {"w": g}, tx.init(params), params)[0]["w"]

    out = jax.vmap(one)(jnp.array([True, False]), grads)
    np.testing.assert_array_equal(out, [[-1.0, -2.0, -3.0], [0.0, 0.0, 0.0]])


@pytest.mark.parametrize(
    "finite, got",
    [(jnp.array([True, False]), r"bool of shape \(2,\)"), (1.0, r"float32 of shape \(\)")],
)
def test_update_if_finite_needs_a_bool_scalar(finite, got):
    tx = optim.sgd(0.1)
    params = {"w": jnp.zeros(2)}
    with pytest.raises(TypeError, match=rf"finite must be a bool scalar of shape \(\), got {got}"):
        optim.update_if_finite(finite, tx, params, tx.init(params), params)


def test_skip_nonfinite_skips_the_step_and_keeps_the_state():
    opt = optim.skip_nonfinite(optim.adam(0.1))
    reference = optim.adam(0.1)
    params = {"w": jnp.zeros(2)}
    step = jax.jit(lambda g, s: opt.update({"w": g}, s, params))
    state, ref_state = opt.init(params), reference.init(params)
    for g in [
        jnp.array([1.0, 2.0]),
        jnp.array([jnp.nan, 1.0]),
        jnp.array([jnp.inf, 0.0]),
        jnp.array([-1.0, 3.0]),
    ]:
        updates, state = step(g, state)
        if bool(jnp.all(jnp.isfinite(g))):
            expected, ref_state = reference.update({"w": g}, ref_state, params)
            np.testing.assert_allclose(updates["w"], expected["w"], rtol=1e-6)
            assert bool(state.last_finite)
        else:
            np.testing.assert_array_equal(updates["w"], 0.0)
            assert not bool(state.last_finite)
    assert int(state.num_skipped) == 2
    adam_count = lambda s: int(s.inner_state[1].count)
    assert adam_count(state.inner_state) == adam_count(ref_state) == 2
