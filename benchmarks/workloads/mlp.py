"""mlp: Flatten, Linear 784→128, ReLU, Linear 128→10; batch 128 of 28×28×1; Adam 1e-3.

101,770 parameters. ``depth`` (default 1) is the number of hidden layers: each one past
the first adds a Linear hidden→hidden and a ReLU (``benchmarks.growth`` varies it).
"""

from __future__ import annotations

import itertools
from typing import Any

import jax

from benchmarks.workloads import _common as C

LR = 1e-3


def config(quick: bool) -> dict[str, Any]:
    return {"batch": 128, "hidden": 128, "classes": 10, "depth": 1}


def batch(cfg: dict[str, Any]):
    return C.images(cfg["batch"], (28, 28, 1), cfg["classes"])


# ------------------------------------------------------------------------ raw JAX
def _widths(cfg: dict[str, Any]) -> list[int]:
    """Features in and out of every Linear: 784, hidden (``depth`` times), 10."""
    return [784, *[cfg["hidden"]] * cfg["depth"], 10]


def raw_init(cfg: dict[str, Any], key: jax.Array) -> dict[str, Any]:
    widths = _widths(cfg)
    keys = jax.random.split(key, len(widths) - 1)
    return {
        f"fc{i + 1}": C.linear_init(k, n_in, n_out)
        for i, (k, n_in, n_out) in enumerate(zip(keys, widths[:-1], widths[1:]))
    }


def raw_apply(params: dict[str, Any], x: jax.Array) -> jax.Array:
    h = x.reshape(x.shape[0], -1)
    n = len(params)
    for i in range(1, n):
        h = jax.nn.relu(h @ params[f"fc{i}"]["w"] + params[f"fc{i}"]["b"])
    return h @ params[f"fc{n}"]["w"] + params[f"fc{n}"]["b"]


raw_opt_init = C.adam_init


def raw_step(cfg: dict[str, Any]):
    def loss_fn(params, x, y):
        return C.cross_entropy(raw_apply(params, x), y)

    def step(state, batch):
        params, opt = state
        loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
        params, opt = C.adam_update(params, grads, opt, LR)
        return (params, opt), loss

    return jax.jit(step, donate_argnums=0)


def from_funcnet(p: dict[str, Any]) -> dict[str, Any]:
    # Sequential's Linears sit at indices 1, 3, 5, ... (after Flatten, between ReLUs).
    return {
        f"fc{i + 1}": {"w": p[name]["weight"], "b": p[name]["bias"]}
        for i, name in enumerate(sorted(p, key=int))
    }


# ------------------------------------------------------------------------ funcnet
def funcnet_model(cfg: dict[str, Any]):
    from funcnet import nn

    widths = _widths(cfg)
    layers = [nn.Flatten()]
    for n_in, n_out in itertools.pairwise(widths):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1])  # no ReLU after the output layer


def funcnet_optimizer(cfg: dict[str, Any]):
    from funcnet import optim

    return optim.adam(LR)
