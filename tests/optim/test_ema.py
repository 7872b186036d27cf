"""with_ema / ema_params: PyTorch's AveragedModel EMA kept in the optimizer state.

References: the EMA rule in NumPy (below), and ``torch.optim.swa_utils.AveragedModel`` with
``get_ema_multi_avg_fn`` fed the same parameter trajectory.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funcnet.optim as optim

from ._problem import flat, init_params, loss, single_threaded_torch

OPT = optim.sgd(0.5, momentum=0.9)
STEPS = 40


def np_ema(trajectory: np.ndarray, decay: float) -> np.ndarray:
    """AveragedModel's EMA of each row: the first copies, then decay * ema + (1 - decay) * new."""
    out, ema = [], None
    for theta in trajectory:
        ema = theta.copy() if ema is None else decay * ema + (1 - decay) * theta
        out.append(ema)
    return np.stack(out)


def trajectories(opt, params, steps=STEPS):
    """(parameters, EMA) after each of ``steps`` updates, flat, from one jitted scan."""

    @jax.jit
    def run(params):
        def body(carry, _):
            p, s = carry
            u, s = opt.update(jax.grad(loss)(p), s, p)
            p = optim.apply_updates(p, u)
            return (p, s), (flat(p), flat(optim.ema_params(s)))

        return jax.lax.scan(body, (params, opt.init(params)), length=steps)[1]

    return run(params)


@pytest.mark.parametrize("decay", [0.9, 0.5, 0.0, 1.0])
def test_ema_matches_numpy_rule(decay):
    with jax.enable_x64(True):
        params, ema = map(np.asarray, trajectories(optim.with_ema(OPT, decay), init_params()))
    assert np.abs(params[-1] - params[0]).max() > 1e-2  # the parameters move
    np.testing.assert_allclose(ema, np_ema(params, decay), rtol=1e-12, atol=1e-15)


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("decay", [0.999, 0.9, 0.3])
def test_ema_matches_torch_averaged_model(dtype, decay):
    torch = pytest.importorskip("torch")
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    with jax.enable_x64(dtype == np.float64):
        params, ema = map(np.asarray, trajectories(optim.with_ema(OPT, decay), init_params(dtype)))
    model = torch.nn.Module()
    model.theta = torch.nn.Parameter(
        torch.zeros(params.shape[1], dtype=getattr(torch, dtype.__name__))
    )
    expected = []
    with single_threaded_torch(), torch.no_grad():
        averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))
        for theta in params:  # optimizer.step(), then ema_model.update_parameters(model)
            model.theta.copy_(torch.tensor(theta))
            averaged.update_parameters(model)
            expected.append(averaged.module.theta.numpy().copy())
    assert ema.dtype == dtype
    rtol = 1e-6 if dtype == np.float32 else 1e-14  # torch's lerp uses an FMA, XLA may not
    np.testing.assert_allclose(ema, np.stack(expected), rtol=rtol, atol=rtol * 1e-2)


def test_bf16_parameters_keep_a_float32_ema():
    opt = optim.with_ema(OPT, 0.99)
    state = opt.init(init_params(jnp.bfloat16))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(optim.ema_params(state)))
    params, ema = trajectories(opt, init_params(jnp.bfloat16))
    assert params.dtype == jnp.bfloat16 and ema.dtype == jnp.float32
    expected = np_ema(np.asarray(params, np.float64), 0.99)
    np.testing.assert_allclose(np.asarray(ema), expected, rtol=1e-5, atol=1e-7)


def test_decay_must_be_a_number_in_0_1():
    for decay in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"with_ema: decay must be in \[0, 1\]"):
            optim.with_ema(OPT, decay)
    with pytest.raises(TypeError, match=r"with_ema: decay must be a Python number in \[0, 1\]"):
        optim.with_ema(OPT, jnp.array(0.9))


def test_with_ema_reads_the_parameters():
    opt = optim.with_ema(optim.sgd(0.1))
    params = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match=r"with_ema reads the parameters: call update\("):
        opt.update(params, opt.init(params))


def donated_step(opt, traces):
    """A jitted train step on the shared problem, state donated; counts its tracings."""

    @jax.jit(donate_argnums=(0, 1))  # the EMA is a copy: no buffer shared with params
    def step(params, opt_state):
        traces.append(1)
        updates, opt_state = opt.update(jax.grad(loss)(params), opt_state, params)
        return optim.apply_updates(params, updates), opt_state

    return step


@pytest.mark.parametrize(
    "opt",
    [
        optim.with_ema(optax.adamw(1e-2), 0.9),
        optax.chain(optax.clip_by_global_norm(1.0), optim.with_ema(optim.adam(1e-2), 0.9)),
    ],
    ids=["optax-inside", "inside-optax-chain"],
)
def test_donated_jit_step_does_not_retrace_and_averages(opt):
    traces = []
    step = donated_step(opt, traces)
    params = init_params(np.float32)
    opt_state = opt.init(params)
    seen = []
    for _ in range(5):
        params, opt_state = step(params, opt_state)
        seen.append(np.asarray(flat(params)))
    assert len(traces) == 1
    ema = np.asarray(flat(optim.ema_params(opt_state)))
    np.testing.assert_allclose(ema, np_ema(np.stack(seen), 0.9)[-1], rtol=1e-6)


def test_checkpoint_and_resume_is_bit_exact():
    opt = optim.with_ema(optim.adam(1e-2), 0.9)
    step = donated_step(opt, [])
    params = init_params(np.float32)
    carry = (params, opt.init(params))
    for _ in range(3):
        carry = step(*carry)
    saved = jax.tree.map(np.array, carry)  # what a checkpoint holds
    for _ in range(3):
        carry = step(*carry)
    resumed = jax.tree.map(jnp.asarray, saved)
    for _ in range(3):
        resumed = step(*resumed)
    assert int(resumed[1].n_averaged) == 6
    jax.tree.map(np.testing.assert_array_equal, resumed, carry)


def test_ema_params_finds_the_ema_at_any_depth():
    params = {"w": jnp.array([1.0, 2.0]), "b": jnp.array([3.0])}
    ema = optim.with_ema(optim.sgd(0.1))
    for opt in (
        optim.chain(optim.clip_grad_norm(1.0), ema),
        optim.accumulate(2, optim.skip_nonfinite(ema)),
        optax.chain(optax.clip(1.0), ema),
        optax.MultiSteps(ema, every_k_schedule=2),
    ):
        found = optim.ema_params(opt.init(params))
        jax.tree.map(np.testing.assert_array_equal, found, params)


def test_ema_params_says_when_there_is_no_single_ema():
    params = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match=r"holds no EMA of the parameters: build the optimizer"):
        optim.ema_params(optim.adam().init(params))
    nested = optim.accumulate(2, optim.with_ema(optim.with_ema(optim.adam())))
    with pytest.raises(ValueError, match="holds 2 EMAs of the parameters"):
        optim.ema_params(nested.init(params))


def test_skipped_steps_and_micro_batches_do_not_move_the_ema():
    params = {"w": jnp.ones(2)}
    opt = optim.skip_nonfinite(optim.with_ema(optim.sgd(1.0), 0.5))
    state = opt.init(params)
    _, state = opt.update({"w": jnp.array([1.0, 1.0])}, state, params)
    _, skipped = opt.update({"w": jnp.array([jnp.nan, 1.0])}, state, params)
    jax.tree.map(np.testing.assert_array_equal, skipped.inner_state, state.inner_state)

    opt = optim.accumulate(2, optim.with_ema(optim.sgd(1.0), 0.5))
    state = opt.init(params)
    for g in (1.0, 3.0, 1.0, 3.0):  # two optimizer steps of -2, from the same params
        _, state = opt.update({"w": jnp.full(2, g)}, state, params)
    assert int(state.inner_state.n_averaged) == 2
    np.testing.assert_array_equal(optim.ema_params(state)["w"], [-1.0, -1.0])
