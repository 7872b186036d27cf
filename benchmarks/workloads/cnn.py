"""cnn: the CIFAR-10 tutorials' CNN; batch 64 of 32×32×3 (NHWC); SGD lr 0.01, momentum 0.9.

Conv 3→32 and 32→64 (3×3, padding 1), each followed by ReLU and a 2×2 max-pool; Flatten;
Linear 4096→128, ReLU, Linear 128→10. 545,098 parameters.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from benchmarks.workloads import _common as C

LR, MOMENTUM = 0.01, 0.9


def config(quick: bool) -> dict[str, Any]:
    return {"batch": 64, "classes": 10}


def batch(cfg: dict[str, Any]):
    return C.images(cfg["batch"], (32, 32, 3), cfg["classes"])


# ------------------------------------------------------------------------ raw JAX
def _conv_init(key: jax.Array, c_in: int, c_out: int) -> dict[str, jax.Array]:
    kw, kb = jax.random.split(key)
    fan_in = 9 * c_in
    return {"w": C.uniform(kw, (3, 3, c_in, c_out), fan_in), "b": C.uniform(kb, (c_out,), fan_in)}


def raw_init(cfg: dict[str, Any], key: jax.Array) -> dict[str, Any]:
    k = jax.random.split(key, 4)
    return {
        "conv1": _conv_init(k[0], 3, 32),
        "conv2": _conv_init(k[1], 32, 64),
        "fc1": C.linear_init(k[2], 8 * 8 * 64, 128),
        "fc2": C.linear_init(k[3], 128, 10),
    }


@jax.custom_vjp
def _window_max(x: jax.Array) -> jax.Array:
    """Max over axes 2 and 4 of (N, H/2, 2, W/2, 2, C)."""
    return jnp.max(x, axis=(2, 4))


def _window_max_fwd(x: jax.Array):
    y = _window_max(x)
    return y, (x, y)


def _window_max_bwd(res, g):
    # The gradient goes where the input equals its window's max: one elementwise select.
    # (Ties between positive values do not occur on this data; tied zeros come from the
    # ReLU before the pool, whose own gradient there is zero.)
    x, y = res
    at = lambda a: a[:, :, None, :, None]
    return (jnp.where(x == at(y), at(g), 0.0),)


_window_max.defvjp(_window_max_fwd, _window_max_bwd)


def max_pool_2x2(y: jax.Array) -> jax.Array:
    """2×2 max-pool as reshape + max with a hand-written select gradient.

    Not ``lax.reduce_window``: its gradient is a ``select_and_scatter``, 1.5× the step
    time on XLA:CPU. Not plain ``reshape + max`` either: ``jnp.max``'s
    own gradient (equality mask, tie count, division) makes this step's program move
    1.33× the bytes (2.41e8 against 1.81e8 in XLA's cost analysis).
    """
    n, h, w, c = y.shape
    return _window_max(y.reshape(n, h // 2, 2, w // 2, 2, c))


def _conv_relu_pool(p: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    y = lax.conv_general_dilated(
        x, p["w"], (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return max_pool_2x2(jax.nn.relu(y + p["b"]))


def raw_apply(params: dict[str, Any], x: jax.Array) -> jax.Array:
    x = _conv_relu_pool(params["conv1"], x)
    x = _conv_relu_pool(params["conv2"], x)
    x = x.reshape(x.shape[0], -1)
    x = jax.nn.relu(x @ params["fc1"]["w"] + params["fc1"]["b"])
    return x @ params["fc2"]["w"] + params["fc2"]["b"]


raw_opt_init = C.sgd_init


def raw_step(cfg: dict[str, Any]):
    def loss_fn(params, x, y):
        return C.cross_entropy(raw_apply(params, x), y)

    def step(state, batch):
        params, buf = state
        loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
        params, buf = C.sgd_update(params, grads, buf, LR, MOMENTUM)
        return (params, buf), loss

    return jax.jit(step, donate_argnums=0)


def from_funcnet(p: dict[str, Any]) -> dict[str, Any]:
    pick = lambda q: {"w": q["weight"], "b": q["bias"]}
    return {"conv1": pick(p["0"]), "conv2": pick(p["3"]), "fc1": pick(p["7"]), "fc2": pick(p["9"])}


# ------------------------------------------------------------------------ funcnet
def funcnet_model(cfg: dict[str, Any]):
    from funcnet import nn

    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 8 * 64, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def funcnet_optimizer(cfg: dict[str, Any]):
    from funcnet import optim

    return optim.sgd(LR, momentum=MOMENTUM)
