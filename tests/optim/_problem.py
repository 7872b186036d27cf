"""A small, non-trivial training problem shared by the optimizer tests.

Multinomial logistic regression (5 features, 3 classes, 48 samples) with parameters
``{"fc": {"weight": (5, 3), "bias": (3,)}}``: non-quadratic, two leaves of different rank
(so weight-decay masks and parameter groups have something to choose), gradients of
different scales. The same gradient three times, written independently: JAX autodiff
(`loss`), NumPy by hand (`numpy_grads`) and PyTorch autograd (`torch_loss`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

import funcnet.optim as optim

STEPS = 120

_rng = np.random.default_rng(0)
X = _rng.normal(size=(48, 5))
Y = _rng.integers(0, 3, size=48)
W0 = 0.3 * _rng.normal(size=(5, 3))
B0 = 0.1 * _rng.normal(size=(3,))


def init_params(dtype=np.float64) -> dict:
    return {"fc": {"weight": jnp.asarray(W0, dtype), "bias": jnp.asarray(B0, dtype)}}


def loss(params: dict) -> jax.Array:
    x = jnp.asarray(X, params["fc"]["weight"].dtype)
    logits = x @ params["fc"]["weight"] + params["fc"]["bias"]
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(logp, jnp.asarray(Y)[:, None], axis=1))


def numpy_grads(weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits = X @ weight + bias
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(Y)), Y] -= 1.0
    d = p / len(Y)
    return X.T @ d, d.sum(axis=0)


def jax_trajectory(opt: optim.GradientTransformation, steps: int = STEPS) -> np.ndarray:
    """Run ``opt`` for ``steps`` steps in float64 (one jitted scan): weights then bias, flat."""
    with jax.enable_x64(True):
        return np.asarray(jax.jit(lambda p: scan_trajectory(opt, p, steps))(init_params()))


def scan_trajectory(opt: optim.GradientTransformation, params: dict, steps: int) -> jax.Array:
    """``steps`` updates of ``opt`` from ``params`` in a scan (traceable): ``(steps, 18)``."""

    def body(carry, _):
        p, s = carry
        u, s = opt.update(jax.grad(loss)(p), s, p)
        p = optim.apply_updates(p, u)
        return (p, s), flat(p)

    return jax.lax.scan(body, (params, opt.init(params)), length=steps)[1]


def flat(params: dict) -> jax.Array:
    return jnp.concatenate([params["fc"]["weight"].ravel(), params["fc"]["bias"]])


def torch_trajectory(
    make: Callable, steps: int = STEPS, schedule: Callable | None = None
) -> np.ndarray:
    """Run a torch optimizer in float64: ``make([weight, bias]) -> optimizer``.

    ``schedule(optimizer) -> scheduler`` is stepped after every optimizer step.
    """
    import torch

    with single_threaded_torch():
        return _torch_run(torch, make, steps, schedule)


@contextlib.contextmanager
def single_threaded_torch():
    """Tiny tensors: threads only add spin-waiting on a loaded 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _torch_run(torch, make: Callable, steps: int, schedule: Callable | None) -> np.ndarray:
    weight = torch.tensor(W0, requires_grad=True)
    bias = torch.tensor(B0, requires_grad=True)
    x, y = torch.tensor(X), torch.tensor(Y)
    opt = make([weight, bias])
    sched = schedule(opt) if schedule is not None else None
    out = []
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(x @ weight + bias, y).backward()
        opt.step()
        if sched is not None:
            sched.step()
        out.append(np.concatenate([weight.detach().numpy().ravel(), bias.detach().numpy()]))
    return np.stack(out)


def assert_close(actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-6) -> None:
    """Trajectories agree to ``rtol`` relative (float64 runs agree to ~1e-12)."""
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=1e-9 * np.abs(expected).max())
