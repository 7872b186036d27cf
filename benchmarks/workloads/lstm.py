"""lstm: 2-layer LSTM (hidden 128, input 28), sequence 28, batch 64; the last step's hidden
state → Linear 128→10; Adam 1e-3.

PyTorch's LSTM (gate order i, f, g, o; two bias vectors per layer): 214,282 parameters.
Flax's, Haiku's and Equinox's built-in cells have one bias per layer (213,258
parameters); here every implementation has PyTorch's two.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from benchmarks.workloads import _common as C

LR = 1e-3


def config(quick: bool) -> dict[str, Any]:
    return {"batch": 64, "seq": 28, "input": 28, "hidden": 128, "layers": 2, "classes": 10}


def batch(cfg: dict[str, Any]):
    return C.images(cfg["batch"], (cfg["seq"], cfg["input"]), cfg["classes"])


# ------------------------------------------------------------------------ raw JAX
def raw_init(cfg: dict[str, Any], key: jax.Array) -> dict[str, Any]:
    h, keys = cfg["hidden"], jax.random.split(key, 3 * cfg["layers"] + 1)
    params: dict[str, Any] = {}
    for layer in range(cfg["layers"]):
        n_in = cfg["input"] if layer == 0 else h
        kw, kb1, kb2 = keys[3 * layer : 3 * layer + 3]
        params[f"l{layer}"] = {
            # weight_ih and weight_hh stacked once, at init: one (I+H, 4H) gate matmul per
            # step is the fastest LSTM step on XLA:CPU.
            "w": C.uniform(kw, (n_in + h, 4 * h), h),
            "b_ih": C.uniform(kb1, (4 * h,), h),
            "b_hh": C.uniform(kb2, (4 * h,), h),
        }
    params["fc"] = C.linear_init(keys[-1], h, cfg["classes"])
    return params


def _layer(p: dict[str, jax.Array], xs: jax.Array) -> jax.Array:
    """One layer over time-major xs (T, B, I) → hidden states (T, B, H)."""
    hidden = p["w"].shape[1] // 4
    bias = p["b_ih"] + p["b_hh"]
    zeros = jnp.zeros((xs.shape[1], hidden), xs.dtype)

    def step(carry, x_t):
        h, c = carry
        gates = jnp.concatenate([x_t, h], axis=-1) @ p["w"] + bias
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    _, hs = lax.scan(step, (zeros, zeros), xs)
    return hs


def raw_apply(params: dict[str, Any], x: jax.Array) -> jax.Array:
    xs = jnp.swapaxes(x, 0, 1)  # (B, T, I) → (T, B, I)
    layer = 0
    while f"l{layer}" in params:
        xs = _layer(params[f"l{layer}"], xs)
        layer += 1
    return xs[-1] @ params["fc"]["w"] + params["fc"]["b"]


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
    lstm = p["lstm"]
    out: dict[str, Any] = {}
    layer = 0
    while f"weight_ih_l{layer}" in lstm:
        out[f"l{layer}"] = {
            "w": jnp.concatenate([lstm[f"weight_ih_l{layer}"], lstm[f"weight_hh_l{layer}"]], 0),
            "b_ih": lstm[f"bias_ih_l{layer}"],
            "b_hh": lstm[f"bias_hh_l{layer}"],
        }
        layer += 1
    out["fc"] = {"w": p["fc"]["weight"], "b": p["fc"]["bias"]}
    return out


# ------------------------------------------------------------------------ funcnet
def funcnet_model(cfg: dict[str, Any]):
    from funcnet import nn

    class LSTMClassifier(nn.Module):
        def __init__(self, input_size: int, hidden: int, layers: int, classes: int) -> None:
            super().__init__()
            self.lstm = nn.LSTM(input_size, hidden, num_layers=layers, batch_first=True)
            self.fc = nn.Linear(hidden, classes)

        def forward(self, ctx: nn.Context, x: jax.Array) -> jax.Array:
            out, _ = self.lstm(ctx, x)  # (B, T, H)
            return self.fc(ctx, out[:, -1])

    return LSTMClassifier(cfg["input"], cfg["hidden"], cfg["layers"], cfg["classes"])


def funcnet_optimizer(cfg: dict[str, Any]):
    from funcnet import optim

    return optim.adam(LR)
