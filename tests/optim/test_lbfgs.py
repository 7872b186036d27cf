"""L-BFGS against ``torch.optim.LBFGS`` step for step, a NumPy L-BFGS and closed forms.

Two problems in float64, a 4-D quadratic and the 4-D Rosenbrock function, as one loss
``w[0] * quadratic + w[1] * rosenbrock`` whose weights are data: each line-search mode
compiles one program (the lr is traced too), used for every problem and lr.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet.optim as optim

from ._problem import single_threaded_torch

_rng = np.random.default_rng(0)
_M = _rng.normal(size=(4, 4))
A = _M @ _M.T + 0.5 * np.eye(4)
B = _rng.normal(size=4)
QUADRATIC, ROSENBROCK = (1.0, 0.0), (0.0, 1.0)
STARTS = {QUADRATIC: np.zeros(4), ROSENBROCK: np.array([-1.5, 2.0, 0.5, -0.5])}
STEPS, MAX_ITER, HISTORY = 4, 10, 3  # 40 iterations through a history of 3: the ring wraps


def loss(params, w):
    x = params["x"]
    quadratic = 0.5 * x @ jnp.asarray(A, x.dtype) @ x - jnp.asarray(B, x.dtype) @ x
    rosenbrock = jnp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
    return w[0] * quadratic + w[1] * rosenbrock


@functools.cache
def _step(line_search_fn):
    @jax.jit
    def step(params, state, w, lr):
        opt = optim.lbfgs(lr, MAX_ITER, history_size=HISTORY, line_search_fn=line_search_fn)
        return opt.step(lambda p: loss(p, w), params, state)

    return step


def run(line_search_fn, problem, lr, steps=STEPS):
    """``steps`` L-BFGS steps: per step (x, n_iter, func_evals, loss at the start)."""
    out = []
    with jax.enable_x64(True):
        params = {"x": jnp.asarray(STARTS[problem])}
        state = optim.lbfgs(history_size=HISTORY).init(params)
        for _ in range(steps):
            args = (jnp.asarray(problem), jnp.asarray(lr, jnp.float64))
            params, state, value = _step(line_search_fn)(params, state, *args)
            out.append((np.asarray(params["x"]), int(state.n_iter), int(state.func_evals),
                        float(value)))  # fmt: skip
    return out


def numpy_lbfgs(problem, lr, steps=STEPS, tolerance_grad=1e-7, tolerance_change=1e-9):
    """PyTorch's LBFGS without line search, with the dense inverse-Hessian recursion
    ``H <- V^T H V + rho s s^T`` (V = I - rho y s^T) instead of the two-loop recursion."""

    def value_and_grad(x):
        w = problem
        r = x[1:] - x[:-1] ** 2
        grad = w[0] * (A @ x - B)
        grad[:-1] += w[1] * (-400 * x[:-1] * r - 2 * (1 - x[:-1]))
        grad[1:] += w[1] * 200 * r
        value = w[0] * (0.5 * x @ A @ x - B @ x) + w[1] * np.sum(100 * r**2 + (1 - x[:-1]) ** 2)
        return value, grad

    x, st, out = STARTS[problem].copy(), {"n_iter": 0, "evals": 0, "pairs": []}, []
    for _ in range(steps):
        value, g = value_and_grad(x)
        st["evals"] += 1
        for n in range(1, MAX_ITER + 1):
            st["n_iter"] += 1
            if st["n_iter"] == 1:
                d, st["h_diag"] = -g, 1.0
            else:
                y, s = g - st["prev_g"], st["d"] * st["t"]
                if y @ s > 1e-10:
                    st["pairs"] = (st["pairs"] + [(s, y)])[-HISTORY:]
                    st["h_diag"] = (y @ s) / (y @ y)
                h = st["h_diag"] * np.eye(4)
                for s_i, y_i in st["pairs"]:
                    v = np.eye(4) - np.outer(y_i, s_i) / (y_i @ s_i)
                    h = v.T @ h @ v + np.outer(s_i, s_i) / (y_i @ s_i)
                d = -h @ g
            st["prev_g"], prev_value = g, value
            st["d"] = d
            st["t"] = t = min(1.0, 1.0 / np.abs(g).sum()) * lr if st["n_iter"] == 1 else lr
            if g @ d > -tolerance_change:
                break
            x = x + t * d
            if n == MAX_ITER:
                break
            value, g = value_and_grad(x)
            st["evals"] += 1
            if np.abs(g).max() <= tolerance_grad or np.abs(d * t).max() <= tolerance_change:
                break
            if abs(value - prev_value) < tolerance_change:
                break
        out.append((x.copy(), st["n_iter"], st["evals"]))
    return out


@pytest.mark.parametrize("problem, lr", [(QUADRATIC, 1.0), (ROSENBROCK, 0.1)])
def test_fixed_step_matches_numpy_lbfgs(problem, lr):
    for got, expected in zip(run(None, problem, lr), numpy_lbfgs(problem, lr)):
        np.testing.assert_allclose(got[0], expected[0], rtol=1e-8, atol=1e-12)
        assert got[1:3] == expected[1:]  # iterations and evaluations


def test_strong_wolfe_finds_the_minimum_of_the_quadratic():
    # stopped by tolerance_change (1e-9 on the loss): ~1e-5 from the minimiser
    x = run("strong_wolfe", QUADRATIC, 1.0)[-1][0]
    np.testing.assert_allclose(x, np.linalg.solve(A, B), atol=1e-4)
    x, _, _, value = run("strong_wolfe", ROSENBROCK, 1.0)[-1]
    assert value < 3.71  # from 1e3 at the start to the local minimum near (-0.78, 0.61, ...)


def _torch_run(problem, steps=STEPS, **kwargs):
    torch = pytest.importorskip("torch")
    with single_threaded_torch():
        x = torch.tensor(STARTS[problem], requires_grad=True)
        a, b = torch.tensor(A), torch.tensor(B)
        opt = torch.optim.LBFGS([x], max_iter=MAX_ITER, history_size=HISTORY, **kwargs)

        def closure():
            opt.zero_grad()
            quadratic = 0.5 * x @ a @ x - b @ x
            rosenbrock = torch.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
            value = problem[0] * quadratic + problem[1] * rosenbrock
            value.backward()
            return value

        out = []
        for _ in range(steps):
            value = opt.step(closure).item()
            state = opt.state[x]
            out.append((x.detach().numpy().copy(), state["n_iter"], state["func_evals"], value))
        return out


TORCH_CASES = [
    (None, QUADRATIC, 1.0),
    (None, ROSENBROCK, 0.1),
    ("strong_wolfe", QUADRATIC, 1.0),  # converges, then stops on tolerance_grad
    ("strong_wolfe", ROSENBROCK, 1.0),
    ("strong_wolfe", ROSENBROCK, 0.01),  # short first trials: extrapolation, max_eval stops
    ("strong_wolfe", ROSENBROCK, 5.0),  # long first trials: the zoom phase
]


@pytest.mark.torch
def test_matches_torch_lbfgs_step_for_step():
    pytest.importorskip("torch")
    for line_search_fn, problem, lr in TORCH_CASES:
        expected = _torch_run(problem, lr=lr, line_search_fn=line_search_fn)
        for got, want in zip(run(line_search_fn, problem, lr), expected):
            assert got[1:3] == want[1:3], (line_search_fn, problem, lr)  # n_iter, func_evals
            np.testing.assert_allclose(got[0], want[0], rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(got[3], want[3], rtol=1e-9)


def test_vmap_over_starting_points():
    """A batch of starts under jit(vmap(step)) = each start alone (float32, defaults)."""
    opt = optim.lbfgs(max_iter=5)
    starts = {"x": jnp.asarray([[0.0, 0.0, 0.0, 0.0], [1.0, -1.0, 0.5, 2.0]], jnp.float32)}
    w = jnp.asarray(QUADRATIC, jnp.float32)

    def step(params):
        params, state, _ = opt.step(lambda p: loss(p, w), params, opt.init(params))
        return params, state.func_evals

    batched, evals = jax.jit(jax.vmap(step))(starts)
    for i in range(2):
        alone, n = jax.jit(step)({"x": starts["x"][i]})
        # float32 matrix-vector products in another order: a few hundred roundings at most
        np.testing.assert_allclose(batched["x"][i], alone["x"], rtol=1e-4, atol=1e-5)
        assert int(evals[i]) == int(n)


def test_errors():
    with pytest.raises(ValueError, match="line_search_fn must be None or 'strong_wolfe'"):
        optim.lbfgs(line_search_fn="armijo")
    with pytest.raises(ValueError, match="max_iter must be an int >= 1, got 0"):
        optim.lbfgs(max_iter=0)
    with pytest.raises(ValueError, match="lr must be a number >= 0"):
        optim.lbfgs(optim.schedules.exponential(1.0, 0.9))
    with pytest.raises(TypeError, match="lbfgs: got both lr and learning_rate"):
        optim.lbfgs(1.0, learning_rate=1.0)
    with pytest.raises(TypeError, match="chain argument 0 is Lbfgs, not a transform"):
        optim.chain(optim.lbfgs())
    with pytest.raises(TypeError, match="lbfgs: funcnet optimizers take hyper-parameters"):
        optim.lbfgs({"x": jnp.zeros(2)})
