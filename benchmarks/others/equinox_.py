"""Equinox + optax, ``eqx.filter_jit`` with the model and optimizer state donated.

Equinox layers are unbatched: the models map single examples and ``jax.vmap`` adds the
batch, as Equinox's documentation does.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from benchmarks.harness import Bench
from benchmarks.others._shared import optimizer, softmax_xent, unsupported
from benchmarks.workloads import _common as C


class MLP(eqx.Module):
    fc1: eqx.nn.Linear
    fc2: eqx.nn.Linear

    def __init__(self, key):
        k1, k2 = jax.random.split(key)
        self.fc1, self.fc2 = eqx.nn.Linear(784, 128, key=k1), eqx.nn.Linear(128, 10, key=k2)

    def __call__(self, x):
        return self.fc2(jax.nn.relu(self.fc1(x.reshape(-1))))


class CNN(eqx.Module):
    """Equinox convolutions are channels-first: (C, H, W) per example."""

    conv1: eqx.nn.Conv2d
    conv2: eqx.nn.Conv2d
    pool: eqx.nn.MaxPool2d
    fc1: eqx.nn.Linear
    fc2: eqx.nn.Linear

    def __init__(self, key):
        k = jax.random.split(key, 4)
        self.conv1 = eqx.nn.Conv2d(3, 32, 3, padding=1, key=k[0])
        self.conv2 = eqx.nn.Conv2d(32, 64, 3, padding=1, key=k[1])
        self.pool = eqx.nn.MaxPool2d(2, 2)
        self.fc1 = eqx.nn.Linear(8 * 8 * 64, 128, key=k[2])
        self.fc2 = eqx.nn.Linear(128, 10, key=k[3])

    def __call__(self, x):
        x = self.pool(jax.nn.relu(self.conv1(x)))
        x = self.pool(jax.nn.relu(self.conv2(x)))
        return self.fc2(jax.nn.relu(self.fc1(x.reshape(-1))))


class LSTMLayer(eqx.Module):
    """PyTorch's LSTM layer: one gate matmul over [x, h], two biases (``eqx.nn.LSTMCell``
    carries one; the second keeps the parameter count equal)."""

    gates: eqx.nn.Linear
    bias_hh: jax.Array
    hidden: int = eqx.field(static=True)

    def __init__(self, n_in: int, hidden: int, key):
        self.gates = eqx.nn.Linear(n_in + hidden, 4 * hidden, key=key)
        self.bias_hh = jnp.zeros((4 * hidden,))
        self.hidden = hidden

    def __call__(self, xs):  # (T, I) → (T, H)
        def step(carry, x_t):
            h, c = carry
            gates = self.gates(jnp.concatenate([x_t, h])) + self.bias_hh
            i, f, g, o = jnp.split(gates, 4)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), h

        zeros = jnp.zeros((self.hidden,), xs.dtype)
        return jax.lax.scan(step, (zeros, zeros), xs)[1]


class LSTM(eqx.Module):
    layers: list
    fc: eqx.nn.Linear

    def __init__(self, cfg: dict[str, Any], key):
        h, keys = cfg["hidden"], jax.random.split(key, cfg["layers"] + 1)
        self.layers = [
            LSTMLayer(cfg["input"] if i == 0 else h, h, keys[i]) for i in range(cfg["layers"])
        ]
        self.fc = eqx.nn.Linear(h, cfg["classes"], key=keys[-1])

    def __call__(self, xs):
        for layer in self.layers:
            xs = layer(xs)
        return self.fc(xs[-1])


class EncoderLayer(eqx.Module):
    norm1: eqx.nn.LayerNorm
    attn: eqx.nn.MultiheadAttention
    norm2: eqx.nn.LayerNorm
    ff1: eqx.nn.Linear
    ff2: eqx.nn.Linear

    def __init__(self, d: int, heads: int, ff: int, key):
        k = jax.random.split(key, 3)
        self.norm1, self.norm2 = eqx.nn.LayerNorm(d), eqx.nn.LayerNorm(d)
        self.attn = eqx.nn.MultiheadAttention(
            heads, d, use_query_bias=True, use_key_bias=True, use_value_bias=True,
            use_output_bias=True, key=k[0],
        )  # fmt: skip
        self.ff1, self.ff2 = eqx.nn.Linear(d, ff, key=k[1]), eqx.nn.Linear(ff, d, key=k[2])

    def __call__(self, x):  # (T, d)
        y = jax.vmap(self.norm1)(x)
        x = x + self.attn(y, y, y)
        y = jax.vmap(self.norm2)(x)
        return x + jax.vmap(lambda t: self.ff2(jax.nn.relu(self.ff1(t))))(y)


class Transformer(eqx.Module):
    embed: eqx.nn.Embedding
    layers: list
    fc: eqx.nn.Linear

    def __init__(self, c: dict[str, Any], key):
        k = jax.random.split(key, c["layers"] + 2)
        self.embed = eqx.nn.Embedding(c["vocab"], c["d_model"], key=k[0])
        self.layers = [
            EncoderLayer(c["d_model"], c["heads"], c["ff"], k[1 + i]) for i in range(c["layers"])
        ]
        self.fc = eqx.nn.Linear(c["d_model"], c["classes"], key=k[-1])

    def __call__(self, ids):  # (T,)
        x = jax.vmap(self.embed)(ids)
        for layer in self.layers:
            x = layer(x)
        return self.fc(x.mean(axis=0))


def model(name: str, cfg: dict[str, Any], key) -> eqx.Module:
    if name == "mlp":
        return MLP(key)
    if name == "cnn":
        return CNN(key)
    if name == "lstm":
        return LSTM(cfg, key)
    if name == "transformer":
        return Transformer(cfg, key)
    raise unsupported("equinox", name)


def build(name: str, cfg: dict[str, Any], x, y, **extra: Any) -> Bench:
    net = model(name, cfg, jax.random.key(C.SEED))
    tx = optimizer(name)
    if name == "cnn":
        x = x.transpose(0, 3, 1, 2)  # NCHW, Equinox's layout
    x, y = jnp.asarray(x), jnp.asarray(y)

    @eqx.filter_jit(donate="all-except-first")
    def step(batch, net, opt_state):
        def loss_fn(m):
            return softmax_xent(jax.vmap(m)(batch[0]), batch[1])

        loss, grads = eqx.filter_value_and_grad(loss_fn)(net)
        updates, opt_state = tx.update(grads, opt_state, eqx.filter(net, eqx.is_array))
        return eqx.apply_updates(net, updates), opt_state, loss

    holder = [net, tx.init(eqx.filter(net, eqx.is_inexact_array)), None]

    def run() -> None:
        holder[0], holder[1], holder[2] = step((x, y), holder[0], holder[1])

    def sync() -> None:
        jax.block_until_ready(eqx.filter(holder, eqx.is_array))

    return Bench(
        step=run, sync=sync, loss=lambda: float(holder[2]),
        n_params=C.count_params(eqx.filter(net, eqx.is_inexact_array)),
        notes="equinox + optax, eqx.filter_jit(donate='all-except-first')", **extra,
    )  # fmt: skip
