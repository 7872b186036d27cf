"""mlp: Flatten, Linear 784→128, ReLU, Linear 128→10; batch 128 of 28×28×1; Adam 1e-3.

101,770 parameters.
"""

from __future__ import annotations

from typing import Any

import jax

from benchmarks.workloads import _common as C

LR = 1e-3


def config(quick: bool) -> dict[str, Any]:
    return {"batch": 128, "hidden": 128, "classes": 10}


def batch(cfg: dict[str, Any]):
    return C.images(cfg["batch"], (28, 28, 1), cfg["classes"])


# ------------------------------------------------------------------------ raw JAX
def raw_init(cfg: dict[str, Any], key: jax.Array) -> dict[str, Any]:
    k1, k2 = jax.random.split(key)
    return {
        "fc1": C.linear_init(k1, 784, cfg["hidden"]),
        "fc2": C.linear_init(k2, cfg["hidden"], 10),
    }


def raw_apply(params: dict[str, Any], x: jax.Array) -> jax.Array:
    x = x.reshape(x.shape[0], -1)
    h = jax.nn.relu(x @ params["fc1"]["w"] + params["fc1"]["b"])
    return h @ params["fc2"]["w"] + params["fc2"]["b"]


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
    return {
        "fc1": {"w": p["1"]["weight"], "b": p["1"]["bias"]},
        "fc2": {"w": p["3"]["weight"], "b": p["3"]["bias"]},
    }


# ------------------------------------------------------------------------ funcnet
def funcnet_model(cfg: dict[str, Any]):
    from funcnet import nn

    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, cfg["hidden"]), nn.ReLU(), nn.Linear(cfg["hidden"], 10)
    )


def funcnet_optimizer(cfg: dict[str, Any]):
    from funcnet import optim

    return optim.adam(LR)
