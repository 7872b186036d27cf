"""transformer: Embedding 1000×128, 2 pre-LN encoder layers (d_model 128, 4 heads,
feed-forward 512, ReLU, no dropout), mean over the sequence → Linear 128→10; sequence 64,
batch 32; AdamW (lr 1e-3, weight decay 0.01). 525,834 parameters.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from benchmarks.workloads import _common as C

LR, WEIGHT_DECAY = 1e-3, 0.01
#: "einsum": two einsums and a softmax; "dpa": ``jax.nn.dot_product_attention`` (XLA's path
#: on CPU), within 1% of each other on XLA:CPU.
ATTENTION = "einsum"


def config(quick: bool) -> dict[str, Any]:
    return {
        "batch": 32,
        "seq": 64,
        "vocab": 1000,
        "d_model": 128,
        "heads": 4,
        "ff": 512,
        "layers": 2,
        "classes": 10,
        "eps": 1e-5,
    }


def batch(cfg: dict[str, Any]):
    return C.token_ids(cfg["batch"], cfg["seq"], cfg["vocab"], cfg["classes"])


# ------------------------------------------------------------------------ raw JAX
def _xavier(key: jax.Array, shape: tuple[int, int]) -> jax.Array:
    bound = (6.0 / (shape[0] + shape[1])) ** 0.5
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


def raw_init(cfg: dict[str, Any], key: jax.Array) -> dict[str, Any]:
    d, ff = cfg["d_model"], cfg["ff"]
    keys = iter(jax.random.split(key, 8 * cfg["layers"] + 2))
    params: dict[str, Any] = {"emb": jax.random.normal(next(keys), (cfg["vocab"], d))}
    for layer in range(cfg["layers"]):
        # q, k and v as three matrices: separate projections beat one fused qkv matmul plus
        # slicing on XLA:CPU; the parameter count is the same.
        params[f"layer{layer}"] = {
            "wq": _xavier(next(keys), (d, d)),
            "wk": _xavier(next(keys), (d, d)),
            "wv": _xavier(next(keys), (d, d)),
            "bq": jnp.zeros((d,)),
            "bk": jnp.zeros((d,)),
            "bv": jnp.zeros((d,)),
            "wo": C.linear_init(next(keys), d, d),
            "ln1": {"g": jnp.ones((d,)), "b": jnp.zeros((d,))},
            "ln2": {"g": jnp.ones((d,)), "b": jnp.zeros((d,))},
            "ff1": C.linear_init(next(keys), d, ff),
            "ff2": C.linear_init(next(keys), ff, d),
        }
    params["fc"] = C.linear_init(next(keys), d, cfg["classes"])
    return params


def layer_norm(p: dict[str, jax.Array], x: jax.Array, eps: float) -> jax.Array:
    """Two-pass LayerNorm (one-pass E[x²]−E[x]² is 1.11× slower on XLA:CPU)."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    centred = x - mean
    var = jnp.mean(centred * centred, axis=-1, keepdims=True)
    return centred * jax.lax.rsqrt(var + eps) * p["g"] + p["b"]


def attention(q: jax.Array, k: jax.Array, v: jax.Array, kind: str = ATTENTION) -> jax.Array:
    """q, k, v (B, T, N, D) → (B, T, N, D), no mask."""
    if kind == "dpa":
        return jax.nn.dot_product_attention(q, k, v)
    scale = q.shape[-1] ** -0.5
    logits = jnp.einsum("btnd,bsnd->bnts", q * scale, k)
    return jnp.einsum("bnts,bsnd->btnd", jax.nn.softmax(logits, axis=-1), v)


def _encoder_layer(p: dict[str, Any], x: jax.Array, heads: int, eps: float) -> jax.Array:
    b, t, d = x.shape
    y = layer_norm(p["ln1"], x, eps)
    split = lambda z: z.reshape(b, t, heads, d // heads)
    q = split(y @ p["wq"] + p["bq"])
    k = split(y @ p["wk"] + p["bk"])
    v = split(y @ p["wv"] + p["bv"])
    a = attention(q, k, v).reshape(b, t, d)
    x = x + a @ p["wo"]["w"] + p["wo"]["b"]
    y = layer_norm(p["ln2"], x, eps)
    y = jax.nn.relu(y @ p["ff1"]["w"] + p["ff1"]["b"])
    return x + y @ p["ff2"]["w"] + p["ff2"]["b"]


def raw_apply(params: dict[str, Any], ids: jax.Array, *, heads: int, eps: float) -> jax.Array:
    x = params["emb"][ids]
    layer = 0
    while f"layer{layer}" in params:
        x = _encoder_layer(params[f"layer{layer}"], x, heads, eps)
        layer += 1
    return jnp.mean(x, axis=1) @ params["fc"]["w"] + params["fc"]["b"]


raw_opt_init = C.adam_init


def raw_step(cfg: dict[str, Any]):
    def loss_fn(params, ids, y):
        return C.cross_entropy(raw_apply(params, ids, heads=cfg["heads"], eps=cfg["eps"]), y)

    def step(state, batch):
        params, opt = state
        loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
        params, opt = C.adam_update(params, grads, opt, LR, weight_decay=WEIGHT_DECAY)
        return (params, opt), loss

    return jax.jit(step, donate_argnums=0)


def from_funcnet(p: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"emb": p["embedding"]["weight"]}
    for name, lp in p["layers"].items():
        attn = lp["self_attn"]
        w, bias = attn["in_proj_weight"], attn["in_proj_bias"]
        d = w.shape[0]
        out[f"layer{name}"] = {
            "wq": w[:, :d],
            "wk": w[:, d : 2 * d],
            "wv": w[:, 2 * d :],
            "bq": bias[:d],
            "bk": bias[d : 2 * d],
            "bv": bias[2 * d :],
            "wo": {"w": attn["out_proj"]["weight"], "b": attn["out_proj"]["bias"]},
            "ln1": {"g": lp["norm1"]["weight"], "b": lp["norm1"]["bias"]},
            "ln2": {"g": lp["norm2"]["weight"], "b": lp["norm2"]["bias"]},
            "ff1": {"w": lp["linear1"]["weight"], "b": lp["linear1"]["bias"]},
            "ff2": {"w": lp["linear2"]["weight"], "b": lp["linear2"]["bias"]},
        }
    out["fc"] = {"w": p["fc"]["weight"], "b": p["fc"]["bias"]}
    return out


# ------------------------------------------------------------------------ funcnet
def funcnet_model(cfg: dict[str, Any]):
    from funcnet import nn

    class Classifier(nn.Module):
        def __init__(self, c: dict[str, Any]) -> None:
            super().__init__()
            self.embedding = nn.Embedding(c["vocab"], c["d_model"])
            self.layers = nn.ModuleList(
                nn.TransformerEncoderLayer(
                    c["d_model"],
                    c["heads"],
                    dim_feedforward=c["ff"],
                    dropout=0.0,
                    batch_first=True,
                    norm_first=True,
                )
                for _ in range(c["layers"])
            )
            self.fc = nn.Linear(c["d_model"], c["classes"])

        def forward(self, ctx: nn.Context, ids: jax.Array) -> jax.Array:
            x = self.embedding(ctx, ids)  # (B, T, d_model)
            for layer in self.layers:
                x = layer(ctx, x)
            return self.fc(ctx, x.mean(axis=1))

    return Classifier(cfg)


def funcnet_optimizer(cfg: dict[str, Any]):
    from funcnet import optim

    return optim.adamw(LR, weight_decay=WEIGHT_DECAY)
