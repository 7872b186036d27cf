"""gpt: a GPT-2-small-size decoder trained in bfloat16 (the GPU workload).

Full size: 12 layers, d_model 768, 12 heads, feed-forward 3072 (GELU), vocab 50304,
sequence 1024, learned positions, pre-LN, final LayerNorm, output projection tied to the
token embedding; 124,475,904 parameters. Next-token cross-entropy; AdamW (lr 3e-4, betas
0.9/0.95, weight decay 0.1). ``--quick`` gives a tiny config (2 layers, d_model 64,
vocab 512, sequence 64, batch 2) that runs on CPU in seconds: a smoke test, not a figure.

Mixed precision in both implementations: float32 master parameters, cast to bfloat16 at
use; activations (the residual stream included) in bfloat16; LayerNorm statistics,
softmax and the loss in float32. ``--set dtype=float32`` (or ``fp16``) makes the model's
own casts go to that dtype instead (``benchmarks.precision`` compares them).

Throughput: tokens/s = batch·seq / step time. Model FLOPs per step:
``6·N·tokens + 12·L·seq·d·tokens`` (N parameters, L layers, d d_model: matmuls forward
and backward, plus attention's score and value products). MFU = FLOPs / step time /
peak; peak 989 TFLOP/s (H100 SXM dense bf16), ``run.py --peak-tflops`` to change it.

Raw-JAX options (``--set name=value``): ``remat`` (``none``, ``full``, ``dots``: what the
backward pass recomputes per layer), ``logits`` (``bf16``/``f32``: the output projection's
result dtype), ``loss_chunks`` (>1: the output projection and cross-entropy run over that
many slices of the tokens inside a rematerialised ``lax.scan``, so the (tokens, vocab)
logits never exist at once), ``attention`` (``auto``: cuDNN's fused kernel on GPU, XLA on
CPU; ``xla``; ``cudnn``), ``scan_layers`` (``true``: ``lax.scan`` over stacked layers, one
compiled layer; ``false``: a Python loop). funcnet's version honours ``scan_layers``
(``nn.LayerStack``, or a ``ModuleList`` looped in ``forward``), ``remat`` (LayerStack's
option, or ``jax.checkpoint`` around each block in the loop), ``logits`` and
``loss_chunks`` (``losses.linear_cross_entropy``).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from benchmarks.workloads import _common as C

LR, BETAS, WEIGHT_DECAY = 3e-4, (0.9, 0.95), 0.1
DTYPES = {"bf16": jnp.bfloat16, "fp16": jnp.float16, "float32": jnp.float32}
VERIFY_TOL = 2e-2  # bfloat16 activations: the two compute in slightly different orders


def config(quick: bool) -> dict[str, Any]:
    if quick:
        size = {"batch": 2, "seq": 64, "vocab": 512, "d_model": 64, "heads": 2, "layers": 2}
    else:
        size = {"batch": 16, "seq": 1024, "vocab": 50304, "d_model": 768, "heads": 12, "layers": 12}
    return {
        **size,
        "remat": "none",
        "logits": "bf16",
        "loss_chunks": 1,
        "attention": "auto",
        "scan_layers": True,
        "dtype": "bf16",
    }


def compute_dtype(cfg: dict[str, Any]) -> Any:
    """The dtype the model casts its activations and weights to (config ``dtype``)."""
    return DTYPES[cfg["dtype"]]


def batch(cfg: dict[str, Any]):
    return C.token_ids(cfg["batch"], cfg["seq"], cfg["vocab"], None)


def n_params(cfg: dict[str, Any]) -> int:
    d, layers = cfg["d_model"], cfg["layers"]
    return (cfg["vocab"] + cfg["seq"]) * d + layers * (12 * d * d + 13 * d) + 2 * d


def bench_extra(cfg: dict[str, Any]) -> dict[str, Any]:
    tokens = cfg["batch"] * cfg["seq"]
    flops = 6 * n_params(cfg) * tokens + 12 * cfg["layers"] * cfg["seq"] * cfg["d_model"] * tokens
    return {"tokens_per_step": tokens, "flops_per_step": float(flops)}


def _attention_impl(kind: str) -> str | None:
    if kind == "auto":
        # implementation=None means XLA's attention in jax 0.10; ask for cuDNN on a GPU.
        return "cudnn" if jax.default_backend() == "gpu" else None
    return kind


#: ``remat`` as ``jax.checkpoint`` options (and LayerStack's ``remat``).
_REMAT = {
    "none": False,
    "full": True,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def _remat(fn, kind: str):
    if kind not in _REMAT:
        raise ValueError(f"remat must be none, full or dots, got {kind!r}")
    option = _REMAT[kind]
    if option is False:
        return fn
    return jax.checkpoint(fn) if option is True else jax.checkpoint(fn, policy=option)


# ------------------------------------------------------------------------ raw JAX
def raw_init(cfg: dict[str, Any], key: jax.Array) -> dict[str, Any]:
    d, layers, v = cfg["d_model"], cfg["layers"], cfg["vocab"]
    k = iter(jax.random.split(key, 6))
    normal = lambda shape, std=0.02: std * jax.random.normal(next(k), shape, jnp.float32)
    out_std = 0.02 / math.sqrt(2 * layers)  # GPT-2's scaled init of residual projections
    zeros, ones = (lambda *s: jnp.zeros(s)), (lambda *s: jnp.ones(s))
    return {
        "wte": normal((v, d)),
        "wpe": normal((cfg["seq"], d), 0.01),
        "blocks": {
            "ln1_g": ones(layers, d), "ln1_b": zeros(layers, d),
            "w_qkv": normal((layers, d, 3 * d)), "b_qkv": zeros(layers, 3 * d),
            "w_o": normal((layers, d, d), out_std), "b_o": zeros(layers, d),
            "ln2_g": ones(layers, d), "ln2_b": zeros(layers, d),
            "w_fc": normal((layers, d, 4 * d)), "b_fc": zeros(layers, 4 * d),
            "w_proj": normal((layers, 4 * d, d), out_std), "b_proj": zeros(layers, d),
        },
        "ln_f": {"g": ones(d), "b": zeros(d)},
    }  # fmt: skip


def _layer_norm(x: jax.Array, g: jax.Array, b: jax.Array, eps: float = 1e-5) -> jax.Array:
    """Statistics in float32, result in x's dtype (bfloat16)."""
    xf = x.astype(jnp.float32)
    mean = jnp.mean(xf, axis=-1, keepdims=True)
    centred = xf - mean
    var = jnp.mean(centred * centred, axis=-1, keepdims=True)
    return (centred * lax.rsqrt(var + eps) * g + b).astype(x.dtype)


def _block(p: dict[str, jax.Array], x: jax.Array, heads: int, impl: str | None) -> jax.Array:
    """One pre-LN decoder block on x (B, T, d) in the compute dtype."""
    b, t, d = x.shape
    w = lambda name: p[name].astype(x.dtype)
    y = _layer_norm(x, p["ln1_g"], p["ln1_b"])
    qkv = (y @ w("w_qkv") + w("b_qkv")).reshape(b, t, 3, heads, d // heads)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    a = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation=impl)
    x = x + a.reshape(b, t, d) @ w("w_o") + w("b_o")
    y = _layer_norm(x, p["ln2_g"], p["ln2_b"])
    y = jax.nn.gelu(y @ w("w_fc") + w("b_fc"), approximate=False)
    return x + y @ w("w_proj") + w("b_proj")


def _logits_loss(x: jax.Array, wte: jax.Array, targets: jax.Array, cfg: dict[str, Any]):
    """Mean next-token cross-entropy of x (N, d) (compute dtype) against targets (N,)."""
    out_type = jnp.float32 if cfg["logits"] == "f32" else x.dtype
    wte = wte.astype(x.dtype)

    def chunk_loss(xc: jax.Array, tc: jax.Array) -> jax.Array:
        logits = jnp.einsum("nd,vd->nv", xc, wte, preferred_element_type=out_type)
        return jnp.sum(C.cross_entropy_terms(logits, tc))

    chunks = int(cfg["loss_chunks"])
    if chunks <= 1:
        return chunk_loss(x, targets) / x.shape[0]
    n, d = x.shape
    xs, ts = x.reshape(chunks, n // chunks, d), targets.reshape(chunks, n // chunks)

    @jax.checkpoint
    def body(total, inputs):
        return total + chunk_loss(*inputs), None

    total, _ = lax.scan(body, jnp.zeros((), jnp.float32), (xs, ts))
    return total / n


def raw_loss(params: dict[str, Any], ids: jax.Array, targets: jax.Array, cfg: dict[str, Any]):
    b, t = ids.shape
    x = (params["wte"][ids] + params["wpe"][:t]).astype(compute_dtype(cfg))
    impl = _attention_impl(cfg["attention"])
    block = _remat(lambda h, p: (_block(p, h, cfg["heads"], impl), None), cfg["remat"])
    if cfg["scan_layers"]:
        x, _ = lax.scan(block, x, params["blocks"])
    else:  # unrolled: longer compile; XLA's cost analysis then counts every layer
        for layer in range(cfg["layers"]):
            x, _ = block(x, {k: v[layer] for k, v in params["blocks"].items()})
    x = _layer_norm(x, params["ln_f"]["g"], params["ln_f"]["b"])
    return _logits_loss(x.reshape(b * t, -1), params["wte"], targets.reshape(-1), cfg)


raw_opt_init = C.adam_init


def raw_step(cfg: dict[str, Any]):
    def step(state, batch):
        params, opt = state
        loss, grads = jax.value_and_grad(raw_loss)(params, *batch, cfg)
        params, opt = C.adam_update(params, grads, opt, LR, betas=BETAS, weight_decay=WEIGHT_DECAY)
        return (params, opt), loss

    return jax.jit(step, donate_argnums=0)


def from_funcnet(p: dict[str, Any]) -> dict[str, Any]:
    if "0" in p["blocks"]:  # a ModuleList (scan_layers=false)
        blocks = [p["blocks"][str(i)] for i in range(len(p["blocks"]))]
        stack = lambda get: jnp.stack([get(b) for b in blocks])
    else:  # a LayerStack: already stacked
        stack = lambda get: get(p["blocks"])
    return {
        "wte": p["wte"]["weight"],
        "wpe": p["wpe"]["weight"],
        "blocks": {
            "ln1_g": stack(lambda b: b["norm1"]["weight"]),
            "ln1_b": stack(lambda b: b["norm1"]["bias"]),
            "w_qkv": stack(lambda b: b["self_attn"]["in_proj_weight"]),
            "b_qkv": stack(lambda b: b["self_attn"]["in_proj_bias"]),
            "w_o": stack(lambda b: b["self_attn"]["out_proj"]["weight"]),
            "b_o": stack(lambda b: b["self_attn"]["out_proj"]["bias"]),
            "ln2_g": stack(lambda b: b["norm2"]["weight"]),
            "ln2_b": stack(lambda b: b["norm2"]["bias"]),
            "w_fc": stack(lambda b: b["linear1"]["weight"]),
            "b_fc": stack(lambda b: b["linear1"]["bias"]),
            "w_proj": stack(lambda b: b["linear2"]["weight"]),
            "b_proj": stack(lambda b: b["linear2"]["bias"]),
        },
        "ln_f": {"g": p["ln_f"]["weight"], "b": p["ln_f"]["bias"]},
    }


# ------------------------------------------------------------------------ funcnet
def funcnet_model(cfg: dict[str, Any]):
    from funcnet import nn

    init_std = lambda std: lambda key, shape, dtype: std * jax.random.normal(key, shape, dtype)

    class GPT(nn.Module):
        def __init__(self, c: dict[str, Any]) -> None:
            super().__init__()
            d = c["d_model"]
            self.wte = nn.Embedding(c["vocab"], d, weight_init=init_std(0.02))
            self.wpe = nn.Embedding(c["seq"], d, weight_init=init_std(0.01))
            block = lambda: nn.TransformerEncoderLayer(
                d, c["heads"], 4 * d, dropout=0.0, activation="gelu", batch_first=True,
                norm_first=True,
            )  # fmt: skip
            if c["scan_layers"]:  # one compiled block, as the raw reference's lax.scan
                self.blocks = nn.LayerStack(block(), c["layers"], remat=_REMAT[c["remat"]])
            else:
                self.blocks = nn.ModuleList(block() for _ in range(c["layers"]))
            self.ln_f = nn.LayerNorm(d)
            self.remat = c["remat"]
            self.dtype = c["dtype"]

        def forward(self, ctx: nn.Context, ids: jax.Array) -> jax.Array:
            positions = jnp.arange(ids.shape[1])
            dtype = DTYPES[self.dtype]
            x = (self.wte(ctx, ids) + self.wpe(ctx, positions)).astype(dtype)
            if isinstance(self.blocks, nn.LayerStack):
                x = self.blocks(ctx, x, is_causal=True)
            else:
                for block in self.blocks:
                    run = lambda h, block=block: block(ctx, h, is_causal=True)
                    x = _remat(run, self.remat)(x)
            # The output projection is tied to the embedding and fused with the loss
            # (funcnet_loss): the model returns the final hidden states and the table.
            return self.ln_f(ctx, x), ctx.params["wte"]["weight"].astype(dtype)

    return GPT(cfg)


def funcnet_loss(cfg: dict[str, Any]):
    """Next-token cross-entropy of the tied output projection, in ``loss_chunks`` slices
    of the tokens (``losses.linear_cross_entropy``: the (tokens, vocab) logits never
    exist at once when ``loss_chunks > 1``)."""
    from funcnet import losses

    logits_dtype = jnp.float32 if cfg["logits"] == "f32" else compute_dtype(cfg)

    def loss(out: tuple[jax.Array, jax.Array], targets: jax.Array) -> jax.Array:
        x, table = out
        return losses.linear_cross_entropy(
            x, table.T, targets, chunks=int(cfg["loss_chunks"]), logits_dtype=logits_dtype
        )

    return loss


def funcnet_optimizer(cfg: dict[str, Any]):
    from funcnet import optim

    return optim.adamw(LR, betas=BETAS, weight_decay=WEIGHT_DECAY)
