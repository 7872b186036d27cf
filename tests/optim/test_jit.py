"""Under jax.jit: donated state, no recompilation, one program for 1,000 leaves, float32."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet.optim as optim
from funcnet.optim import schedules

from ._problem import B0, STEPS, W0, init_params, loss, numpy_grads
from ._reference import np_adam


def make_train_step(opt, traces):
    @jax.jit(donate_argnums=(0, 1))
    def train_step(params, opt_state):
        traces.append(1)  # runs only while tracing
        grads = jax.grad(loss)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optim.apply_updates(params, updates), opt_state

    return train_step


def test_donated_jit_step_and_hyperparameter_changes_do_not_recompile():
    traces = []
    opt = optim.sgd(0.5, momentum=0.9, in_state=("lr", "momentum"))
    step = make_train_step(opt, traces)
    params = init_params(np.float32)
    opt_state = opt.init(params)
    for _ in range(2):
        old = jax.tree.leaves((params, opt_state))
        params, opt_state = step(params, opt_state)
        assert all(x.is_deleted() for x in old)  # donated: buffers reused, not copied

    # PyTorch's `param_groups[0]["lr"] = ...` and ReduceLROnPlateau: new values, same program.
    opt_state = optim.set_hyperparams(opt_state, lr=0.0, momentum=0.0)
    frozen = jax.tree.map(np.asarray, params)
    params, opt_state = step(params, opt_state)
    jax.tree.map(np.testing.assert_array_equal, params, frozen)  # lr 0, momentum 0: no move

    opt_state = optim.set_hyperparams(opt_state, lr=0.1)
    plateau = optim.ReduceLROnPlateau(patience=0, factor=0.5)
    for metric in (1.0, 2.0):
        opt_state = plateau.step(metric, opt_state)
        params, opt_state = step(params, opt_state)
    assert float(optim.current_lr(opt_state)) == pytest.approx(0.05)
    assert len(traces) == 1


def test_schedules_and_wrappers_run_in_one_program():
    traces = []
    opt = optim.chain(
        optim.clip_grad_norm(1.0),
        optim.accumulate(
            2, optim.skip_nonfinite(optim.adamw(schedules.one_cycle(1e-2, 10), amsgrad=True))
        ),
    )
    step = make_train_step(opt, traces)
    params = init_params(np.float32)
    opt_state = opt.init(params)
    for _ in range(6):
        params, opt_state = step(params, opt_state)
    assert len(traces) == 1
    assert float(optim.current_lr(opt_state)) == pytest.approx(schedules.one_cycle(1e-2, 10)(3))


def test_adam_in_float32_stays_within_float32_error_of_pytorch_rule():
    """float32 against the float64 NumPy rule: 2e-5 relative after 120 steps.

    Each step rounds the moments and the update to float32 (relative 6e-8); the logistic
    loss is contracting, so errors do not compound beyond a few hundred ulps; we observe
    ~3e-6 and allow 2e-5.
    """
    opt = optim.adam(1e-2, weight_decay=0.01)

    @jax.jit
    def run(params):
        def body(carry, _):
            p, s = carry
            u, s = opt.update(jax.grad(loss)(p), s, p)
            p = optim.apply_updates(p, u)
            return (p, s), (p["fc"]["weight"], p["fc"]["bias"])

        return jax.lax.scan(body, (params, opt.init(params)), length=STEPS)[1]

    weights, biases = run(init_params(np.float32))
    assert weights.dtype == jnp.float32
    params, states = [W0.copy(), B0.copy()], [{}, {}]
    for t in range(1, STEPS + 1):
        for i, g in enumerate(numpy_grads(*params)):
            params[i] = np_adam(params[i], g, states[i], t, 1e-2, weight_decay=0.01)
    np.testing.assert_allclose(weights[-1], params[0], rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(biases[-1], params[1], rtol=2e-5, atol=2e-6)


def test_thousand_leaves_compile_to_one_program_with_no_python_per_step(monkeypatch):
    # One host-to-device transfer for the whole tree (1,000 eager ops would be slow to set up).
    params = jax.device_put(
        {
            f"layer{i}": {
                "weight": np.full((2, 2), 0.5, np.float32),
                "bias": np.zeros(2, np.float32),
            }
            for i in range(500)
        }
    )
    # Weight-decay masks and state bookkeeping included; no clip_grad_norm, whose 1,000
    # reductions would double XLA's (cached) program size: it is jitted in the test above.
    opt = optim.sgd(
        0.1, momentum=0.9, weight_decay=0.01, weight_decay_mask=optim.exclude_bias_and_norm
    )
    traces = []

    @jax.jit(donate_argnums=(0, 1))
    def step(params, opt_state, grads):
        traces.append(1)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optim.apply_updates(params, updates), opt_state

    grads = jax.device_put(jax.tree.map(np.ones_like, params))
    opt_state = opt.init(params)
    assert len(jax.tree.leaves(params)) == 1000
    params, opt_state = step(params, opt_state, grads)

    # From now on any Python tree traversal (the per-leaf work an un-jitted optimizer does)
    # fails: the compiled program runs with no per-leaf Python at all.
    def forbidden(*args, **kwargs):
        raise AssertionError("per-leaf Python ran during a compiled step")

    for name in ("map", "leaves", "flatten", "unflatten"):
        monkeypatch.setattr(jax.tree, name, forbidden)
    monkeypatch.setattr(jax.tree_util, "tree_map", forbidden)
    for _ in range(3):
        params, opt_state = step(params, opt_state, grads)
    monkeypatch.undo()

    assert len(traces) == 1
    # No decay on biases; the momentum buffer holds 1, 1.9, 2.71, 3.439 gradients of 1.
    # elementwise float32 (momentum, lr, 4 additions of values < 4): < 10 U32 = 6e-7 relative
    np.testing.assert_allclose(params["layer7"]["bias"], -0.1 * (1 + 1.9 + 2.71 + 3.439), rtol=1e-5)
