"""Haiku + optax: ``hk.without_apply_rng(hk.transform(...))``, ``jax.jit`` over
(params, opt_state) with the state donated."""

from __future__ import annotations

from typing import Any

import haiku as hk
import jax
import jax.numpy as jnp
import optax

from benchmarks.others._shared import optimizer, softmax_xent, unsupported
from benchmarks.workloads import _common as C


def mlp(x, cfg):
    x = x.reshape(x.shape[0], -1)
    return hk.Linear(10)(jax.nn.relu(hk.Linear(128)(x)))


def cnn(x, cfg):
    for features in (32, 64):
        x = jax.nn.relu(hk.Conv2D(features, 3, padding=((1, 1), (1, 1)))(x))
        x = hk.max_pool(x, window_shape=(1, 2, 2, 1), strides=(1, 2, 2, 1), padding="VALID")
    x = x.reshape(x.shape[0], -1)
    return hk.Linear(10)(jax.nn.relu(hk.Linear(128)(x)))


class LSTMCell(hk.RNNCore):
    """PyTorch's LSTM cell: one gate matmul over [x, h], two biases (``hk.LSTM`` carries
    one; the second keeps the parameter count equal)."""

    def __init__(self, hidden: int, name: str | None = None) -> None:
        super().__init__(name=name)
        self.hidden = hidden

    def __call__(self, x, state):
        h, c = state
        bias_hh = hk.get_parameter("bias_hh", (4 * self.hidden,), init=jnp.zeros)
        gates = hk.Linear(4 * self.hidden)(jnp.concatenate([x, h], axis=-1)) + bias_hh
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return h, (h, c)

    def initial_state(self, batch_size):
        zeros = jnp.zeros((batch_size, self.hidden))
        return zeros, zeros


def lstm(x, cfg):
    for _ in range(cfg["layers"]):
        cell = LSTMCell(cfg["hidden"])
        x, _ = hk.dynamic_unroll(cell, x, cell.initial_state(x.shape[0]), time_major=False)
    return hk.Linear(cfg["classes"])(x[:, -1])


def transformer(ids, cfg):
    d, heads = cfg["d_model"], cfg["heads"]
    x = hk.Embed(cfg["vocab"], d)(ids)
    for _ in range(cfg["layers"]):
        y = hk.LayerNorm(-1, create_scale=True, create_offset=True)(x)
        x = x + hk.MultiHeadAttention(heads, d // heads, w_init=hk.initializers.VarianceScaling())(
            y, y, y
        )
        y = hk.LayerNorm(-1, create_scale=True, create_offset=True)(x)
        x = x + hk.Linear(d)(jax.nn.relu(hk.Linear(cfg["ff"])(y)))
    return hk.Linear(cfg["classes"])(x.mean(axis=1))


MODELS = {"mlp": mlp, "cnn": cnn, "lstm": lstm, "transformer": transformer}


def build(name: str, cfg: dict[str, Any], x, y, **extra: Any):
    if name not in MODELS:
        raise unsupported("haiku", name)
    net = hk.without_apply_rng(hk.transform(lambda inputs: MODELS[name](inputs, cfg)))
    x, y = jnp.asarray(x), jnp.asarray(y)
    params = net.init(jax.random.key(C.SEED), x)
    tx = optimizer(name)

    def step(state, batch):
        params, opt_state = state
        loss, grads = jax.value_and_grad(lambda p: softmax_xent(net.apply(p, batch[0]), batch[1]))(
            params
        )
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    return C.jax_bench(
        jax.jit(step, donate_argnums=0), (params, tx.init(params)), (x, y),
        C.count_params(params), notes="haiku + optax, jax.jit, state donated", **extra,
    )  # fmt: skip
