"""Flax NNX + optax, ``nnx.jit`` updating the model and ``nnx.Optimizer`` in place
(the NNX tutorials' train step)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from benchmarks.harness import Bench
from benchmarks.others._shared import optimizer, softmax_xent, unsupported
from benchmarks.workloads import _common as C


class MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.fc1 = nnx.Linear(784, 128, rngs=rngs)
        self.fc2 = nnx.Linear(128, 10, rngs=rngs)

    def __call__(self, x):
        return self.fc2(nnx.relu(self.fc1(x.reshape(x.shape[0], -1))))


class CNN(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.conv1 = nnx.Conv(3, 32, (3, 3), padding=1, rngs=rngs)
        self.conv2 = nnx.Conv(32, 64, (3, 3), padding=1, rngs=rngs)
        self.fc1 = nnx.Linear(8 * 8 * 64, 128, rngs=rngs)
        self.fc2 = nnx.Linear(128, 10, rngs=rngs)

    def __call__(self, x):
        for conv in (self.conv1, self.conv2):
            x = nnx.max_pool(nnx.relu(conv(x)), (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        return self.fc2(nnx.relu(self.fc1(x)))


class LSTMLayer(nnx.Module):
    """PyTorch's LSTM layer: one gate matmul over [x, h], two biases (NNX's built-in cells
    carry one; the second keeps the parameter count equal)."""

    def __init__(self, n_in: int, hidden: int, rngs: nnx.Rngs) -> None:
        self.hidden = hidden
        self.gates = nnx.Linear(n_in + hidden, 4 * hidden, rngs=rngs)
        self.bias_hh = nnx.Param(jnp.zeros((4 * hidden,)))

    def __call__(self, x):  # (B, T, I) → (B, T, H)
        kernel, bias = self.gates.kernel[...], self.gates.bias[...] + self.bias_hh[...]

        def step(carry, x_t):
            h, c = carry
            gates = jnp.concatenate([x_t, h], axis=-1) @ kernel + bias
            i, f, g, o = jnp.split(gates, 4, axis=-1)
            c = nnx.sigmoid(f) * c + nnx.sigmoid(i) * jnp.tanh(g)
            h = nnx.sigmoid(o) * jnp.tanh(c)
            return (h, c), h

        zeros = jnp.zeros((x.shape[0], self.hidden), x.dtype)
        _, hs = jax.lax.scan(step, (zeros, zeros), jnp.swapaxes(x, 0, 1))
        return jnp.swapaxes(hs, 0, 1)


class LSTM(nnx.Module):
    def __init__(self, cfg: dict[str, Any], rngs: nnx.Rngs) -> None:
        h = cfg["hidden"]
        self.layers = nnx.List(
            [LSTMLayer(cfg["input"] if i == 0 else h, h, rngs) for i in range(cfg["layers"])]
        )
        self.fc = nnx.Linear(h, cfg["classes"], rngs=rngs)

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.fc(x[:, -1])


class EncoderLayer(nnx.Module):
    def __init__(self, d: int, heads: int, ff: int, rngs: nnx.Rngs) -> None:
        self.norm1 = nnx.LayerNorm(d, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(heads, d, decode=False, rngs=rngs)
        self.norm2 = nnx.LayerNorm(d, rngs=rngs)
        self.ff1 = nnx.Linear(d, ff, rngs=rngs)
        self.ff2 = nnx.Linear(ff, d, rngs=rngs)

    def __call__(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.ff2(nnx.relu(self.ff1(self.norm2(x))))


class Transformer(nnx.Module):
    def __init__(self, c: dict[str, Any], rngs: nnx.Rngs) -> None:
        self.embed = nnx.Embed(c["vocab"], c["d_model"], rngs=rngs)
        self.layers = nnx.List(
            [EncoderLayer(c["d_model"], c["heads"], c["ff"], rngs) for _ in range(c["layers"])]
        )
        self.fc = nnx.Linear(c["d_model"], c["classes"], rngs=rngs)

    def __call__(self, ids):
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x)
        return self.fc(x.mean(axis=1))


def model(name: str, cfg: dict[str, Any], rngs: nnx.Rngs) -> nnx.Module:
    if name == "mlp":
        return MLP(rngs)
    if name == "cnn":
        return CNN(rngs)
    if name == "lstm":
        return LSTM(cfg, rngs)
    if name == "transformer":
        return Transformer(cfg, rngs)
    raise unsupported("flax nnx", name)


def build(name: str, cfg: dict[str, Any], x, y, **extra: Any) -> Bench:
    net = model(name, cfg, nnx.Rngs(C.SEED))
    opt = nnx.Optimizer(net, optimizer(name), wrt=nnx.Param)
    x, y = jnp.asarray(x), jnp.asarray(y)

    @nnx.jit(donate_argnums=(0, 1))
    def step(net, opt, x, y):
        loss, grads = nnx.value_and_grad(lambda m: softmax_xent(m(x), y))(net)
        opt.update(net, grads)
        return loss

    holder = [None]

    def run() -> None:
        holder[0] = step(net, opt, x, y)

    def sync() -> None:
        jax.block_until_ready((nnx.state(net), nnx.state(opt), holder[0]))

    n_params = C.count_params(nnx.state(net, nnx.Param))
    return Bench(
        step=run, sync=sync, loss=lambda: float(holder[0]), n_params=n_params,
        notes="flax.nnx, nnx.jit with in-place model and nnx.Optimizer", **extra,
    )  # fmt: skip
