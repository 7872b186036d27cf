"""Flax Linen + optax, ``jax.jit`` over (params, opt_state) with the state donated."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from benchmarks.harness import Bench
from benchmarks.others._shared import optimizer, softmax_xent, unsupported
from benchmarks.workloads import _common as C


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(10)(nn.relu(nn.Dense(128)(x)))


class CNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        for features in (32, 64):
            x = nn.relu(nn.Conv(features, (3, 3), padding=1)(x))
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(10)(nn.relu(nn.Dense(128)(x)))


class LSTMCell(nn.Module):
    """PyTorch's LSTM cell: one gate matmul over [x, h] and PyTorch's two biases.

    (Linen's built-in cells carry one bias; the second keeps the parameter count equal.)
    """

    hidden: int

    @nn.compact
    def __call__(self, carry, x):
        h, c = carry
        bias_hh = self.param("bias_hh", nn.initializers.zeros, (4 * self.hidden,))
        gates = nn.Dense(4 * self.hidden)(jnp.concatenate([x, h], axis=-1)) + bias_hh
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        c = nn.sigmoid(f) * c + nn.sigmoid(i) * jnp.tanh(g)
        h = nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h


class LSTM(nn.Module):
    hidden: int
    layers: int

    @nn.compact
    def __call__(self, x):  # (B, T, I)
        scan = nn.scan(
            LSTMCell, variable_broadcast="params", split_rngs={"params": False},
            in_axes=1, out_axes=1,
        )  # fmt: skip
        for _ in range(self.layers):
            zeros = jnp.zeros((x.shape[0], self.hidden), x.dtype)
            _, x = scan(self.hidden)((zeros, zeros), x)
        return nn.Dense(10)(x[:, -1])


class EncoderLayer(nn.Module):
    heads: int
    ff: int

    @nn.compact
    def __call__(self, x):
        d = x.shape[-1]
        x = x + nn.MultiHeadDotProductAttention(self.heads)(nn.LayerNorm()(x))
        y = nn.Dense(d)(nn.relu(nn.Dense(self.ff)(nn.LayerNorm()(x))))
        return x + y


class Transformer(nn.Module):
    cfg: dict

    @nn.compact
    def __call__(self, ids):
        c = self.cfg
        x = nn.Embed(c["vocab"], c["d_model"])(ids)
        for _ in range(c["layers"]):
            x = EncoderLayer(c["heads"], c["ff"])(x)
        return nn.Dense(c["classes"])(x.mean(axis=1))


def model(name: str, cfg: dict[str, Any]) -> nn.Module:
    if name == "mlp":
        return MLP()
    if name == "cnn":
        return CNN()
    if name == "lstm":
        return LSTM(cfg["hidden"], cfg["layers"])
    if name == "transformer":
        return Transformer(cfg)
    raise unsupported("flax linen", name)


def build(name: str, cfg: dict[str, Any], x, y, **extra: Any) -> Bench:
    net = model(name, cfg)
    x, y = jnp.asarray(x), jnp.asarray(y)
    params = net.init(jax.random.key(C.SEED), x)["params"]
    tx = optimizer(name)

    def step(state, batch):
        params, opt_state = state

        def loss_fn(p):
            return softmax_xent(net.apply({"params": p}, batch[0]), batch[1])

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    state = (params, tx.init(params))
    return C.jax_bench(
        jax.jit(step, donate_argnums=0), state, (x, y), C.count_params(params),
        notes="flax.linen + optax, jax.jit, state donated", **extra,
    )  # fmt: skip
