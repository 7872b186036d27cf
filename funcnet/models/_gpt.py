"""GPT-2 (Radford et al. 2019), Hugging Face ``GPT2LMHeadModel``'s architecture and names.

Parameters are named as Hugging Face's (``wte``, ``wpe``, ``h.{i}.ln_1``,
``h.{i}.attn.c_attn``, ``h.{i}.attn.c_proj``, ``h.{i}.ln_2``, ``h.{i}.mlp.c_fc``,
``h.{i}.mlp.c_proj``, ``ln_f``); the blocks are an ``nn.LayerStack`` named ``h`` (one
compiled block however deep), whose parameters carry a leading axis of n_layer and whose
PyTorch keys are ``h.0.…``, ``h.1.…``. :func:`convert_torch` loads a Hugging Face state
dict.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcnet import functional as F
from funcnet import nn
from funcnet.errors import ShapeError, check_dtype, check_ndim
from funcnet.models._weights import Pretrainable
from funcnet.nn._module import Params, State
from funcnet.nn._state_dict import _numpy

__all__ = ["GPT2", "generate", "gpt2_small"]

_normal = functools.partial(nn.init.normal, std=0.02)  # Hugging Face's initializer_range


def _dropout(ctx: nn.Context, x: jax.Array, p: float) -> jax.Array:
    return F.dropout(x, p, ctx.next_key()) if ctx.train and p > 0.0 else x


def _linear(in_features: int, out_features: int, std: float = 0.02) -> nn.Linear:
    """Hugging Face's Conv1D as a Linear: weight N(0, std²), bias zeros."""
    init = functools.partial(nn.init.normal, std=std)
    return nn.Linear(in_features, out_features, weight_init=init, bias_init=nn.init.zeros)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class GPT2Attention(nn.Module):
    """Causal multi-head self-attention: ``c_attn`` (d → 3d: q | k | v), ``c_proj``."""

    n_embd: int
    n_head: int
    n_layer: int
    dropout: float

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"GPT2: n_head {self.n_head} must divide n_embd {self.n_embd}")
        self.c_attn = _linear(self.n_embd, 3 * self.n_embd)
        # GPT-2's scaled init of the projections into the residual stream.
        self.c_proj = _linear(self.n_embd, self.n_embd, 0.02 / math.sqrt(2 * self.n_layer))

    def forward(self, ctx: nn.Context, x: jax.Array) -> jax.Array:
        b, t, d = jnp.shape(x)
        qkv = self.c_attn(ctx, x).reshape(b, t, 3, self.n_head, d // self.n_head)
        q, k, v = (jnp.swapaxes(qkv[:, :, i], 1, 2) for i in range(3))  # (B, N, T, D)
        p = self.dropout if ctx.train else 0.0
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=p, is_causal=True, dropout_key=ctx.next_key() if p else None
        )
        out = jnp.swapaxes(out, 1, 2).reshape(b, t, d)
        return _dropout(ctx, self.c_proj(ctx, out), self.dropout)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class GPT2MLP(nn.Module):
    """``c_fc`` (d → 4d), GELU with the tanh approximation (``gelu_new``), ``c_proj``."""

    n_embd: int
    n_layer: int
    dropout: float

    def __post_init__(self) -> None:
        self.c_fc = _linear(self.n_embd, 4 * self.n_embd)
        self.c_proj = _linear(4 * self.n_embd, self.n_embd, 0.02 / math.sqrt(2 * self.n_layer))

    def forward(self, ctx: nn.Context, x: jax.Array) -> jax.Array:
        h = F.gelu(self.c_fc(ctx, x), approximate="tanh")
        return _dropout(ctx, self.c_proj(ctx, h), self.dropout)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class GPT2Block(nn.Module):
    """A pre-LN block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``; (B, T, d) → same."""

    n_embd: int
    n_head: int
    n_layer: int
    dropout: float
    layer_norm_epsilon: float

    def __post_init__(self) -> None:
        d, eps = self.n_embd, self.layer_norm_epsilon
        self.ln_1 = nn.LayerNorm(d, eps=eps)
        self.attn = GPT2Attention(d, self.n_head, self.n_layer, self.dropout)
        self.ln_2 = nn.LayerNorm(d, eps=eps)
        self.mlp = GPT2MLP(d, self.n_layer, self.dropout)

    def forward(self, ctx: nn.Context, x: jax.Array) -> jax.Array:
        x = x + self.attn(ctx, self.ln_1(ctx, x))
        return x + self.mlp(ctx, self.ln_2(ctx, x))


class GPT2(Pretrainable):
    """GPT-2, a decoder-only Transformer language model (Hugging Face ``GPT2LMHeadModel``).

    ``wte(ids) + wpe(positions)`` → dropout → ``n_layer`` pre-LN blocks ``h`` (causal
    self-attention, then an MLP with tanh-approximated GELU) → ``ln_f`` → logits
    ``x @ wte.weightᵀ``: the output projection is tied to the token embedding, so there is
    no ``lm_head`` parameter. Attention is :func:`funcnet.functional.scaled_dot_product_attention`
    with ``is_causal=True`` (cuDNN's fused kernel on a GPU for half-precision inputs).
    Initialisation as Hugging Face's: N(0, 0.02²) weights and embeddings, zero biases,
    the two projections into the residual stream N(0, (0.02/√(2·n_layer))²).

    Parameters (funcnet's nested names; ``h`` is an ``nn.LayerStack``, each entry
    stacked along a leading axis of n_layer): ``wte.weight`` (vocab_size, d),
    ``wpe.weight`` (n_positions, d), ``h.ln_1.*``, ``h.attn.c_attn.*`` (d → 3d),
    ``h.attn.c_proj.*``, ``h.ln_2.*``, ``h.mlp.c_fc.*`` (d → 4d), ``h.mlp.c_proj.*``,
    ``ln_f.*``. Count, d = n_embd: ``(vocab_size + n_positions)·d + n_layer·(12d² + 13d)
    + 2d``; 124,439,808 at the defaults (GPT-2 small).

    Args:
        vocab_size: tokens (50257, GPT-2's byte-level BPE).
        n_positions: the longest sequence.
        n_embd: model features d.
        n_layer: blocks.
        n_head: attention heads; must divide n_embd.
        dropout: Hugging Face's ``embd_pdrop``, ``attn_pdrop`` and ``resid_pdrop`` (after
            the embeddings, on the attention weights, after each projection into the
            residual stream), training mode only.
        layer_norm_epsilon: the LayerNorms' eps.
        weights: a converted weights file (``.safetensors`` / ``.npz``) ``init`` returns.

    ``forward(ctx, ids)``: ids (N, T) integers, T ≤ n_positions. Returns (N, T,
    vocab_size) logits, float32 (the compute dtype under a mixed-precision policy).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from funcnet import nn
        >>> from funcnet.models import GPT2, gpt2_small
        >>> shapes, _ = jax.eval_shape(gpt2_small().init, jax.random.key(0))
        >>> nn.num_parameters(shapes)
        124439808
        >>> model = GPT2(vocab_size=100, n_positions=16, n_embd=32, n_layer=2, n_head=4)
        >>> params, state = model.init(jax.random.key(0))
        >>> logits, _ = model.apply(params, state, jnp.zeros((2, 5), jnp.int32))
        >>> logits.shape
        (2, 5, 100)
    """

    def __init__(
        self,
        vocab_size: int = 50257,
        n_positions: int = 1024,
        n_embd: int = 768,
        n_layer: int = 12,
        n_head: int = 12,
        dropout: float = 0.1,
        layer_norm_epsilon: float = 1e-5,
        weights: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(weights)
        self.vocab_size = vocab_size
        self.n_positions = n_positions
        self.n_layer = n_layer
        self.dropout = dropout
        self.wte: nn.Embedding = nn.Embedding(vocab_size, n_embd, weight_init=_normal)
        self.wpe: nn.Embedding = nn.Embedding(n_positions, n_embd, weight_init=_normal)
        block = GPT2Block(n_embd, n_head, n_layer, dropout, layer_norm_epsilon)
        self.h: nn.LayerStack = nn.LayerStack(block, n_layer)
        self.ln_f: nn.LayerNorm = nn.LayerNorm(n_embd, eps=layer_norm_epsilon)

    def forward(self, ctx: nn.Context, ids: jax.Array) -> jax.Array:
        check_ndim(ctx, ids, 2, "token ids", "(N, T)")
        check_dtype(ctx, ids, "integer", "token ids")
        length = jnp.shape(ids)[1]
        if length > self.n_positions:
            raise ShapeError(
                f"{ctx.path} (GPT2): sequence length {length} exceeds n_positions "
                f"{self.n_positions} (ids of shape {jnp.shape(ids)})"
            )
        x = self.wte(ctx, ids) + self.wpe(ctx, jnp.arange(length))
        x = self.ln_f(ctx, self.h(ctx, _dropout(ctx, x, self.dropout)))
        wte = ctx.params["wte"]["weight"].astype(x.dtype)  # tied output projection
        return jnp.einsum("btd,vd->btv", x, wte)


def gpt2_small(*, weights: str | os.PathLike[str] | None = None) -> GPT2:
    """GPT-2 small: 12 layers, 12 heads, d = 768, 1024 positions, 50257 tokens;
    124,439,808 parameters (Hugging Face's ``gpt2``). Input: (N, T) integer token ids,
    T ≤ 1024; output: (N, T, 50257) logits. See :class:`GPT2`.

    Args:
        weights: a converted weights file (``.safetensors`` / ``.npz``) ``init`` returns.
    """
    return GPT2(weights=weights)


_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def convert_torch(model: GPT2, state_dict: dict[str, Any]) -> tuple[Params, State]:
    """``(params, state)`` for a :class:`GPT2` from a Hugging Face GPT-2 state dict.

    Accepts ``GPT2LMHeadModel``'s keys (``transformer.`` prefix, ``lm_head.weight``) and
    ``GPT2Model``'s (no prefix), as torch tensors or NumPy arrays. ``lm_head.weight`` is
    dropped (it must equal ``wte.weight``: GPT-2 ties them), as are the causal-mask
    buffers ``h.{i}.attn.bias`` and ``h.{i}.attn.masked_bias``. Hugging Face's Conv1D
    weights are stored (in, out), funcnet's Linear layout: they are transposed to
    PyTorch Linear's (out, in) and loaded with ``nn.load_state_dict(from_torch=True)``,
    which also splits ``h.{i}.…`` into the stacked blocks.

    Raises:
        ValueError: ``lm_head.weight`` differs from ``wte.weight``.
        funcnet.errors.StateDictError: missing, unexpected or mis-shaped entries.
    """
    flat: dict[str, Any] = {}
    for key, value in state_dict.items():
        name = key.removeprefix("transformer.")
        parts = name.split(".")
        if name == "lm_head.weight" or parts[-2:] in (["attn", "bias"], ["attn", "masked_bias"]):
            continue
        flat[name] = value.T if name.endswith(_CONV1D) else value
    if "lm_head.weight" in state_dict and "wte.weight" in flat:
        if not np.array_equal(_numpy(state_dict["lm_head.weight"]), _numpy(flat["wte.weight"])):
            raise ValueError(
                "convert_torch: lm_head.weight differs from wte.weight; GPT2 ties its output "
                "projection to the token embedding and cannot hold an untied lm_head"
            )
    return nn.load_state_dict(model, flat, from_torch=True)


def export_torch(model: GPT2, params: Params, state: State | None = None) -> dict[str, Any]:
    """Hugging Face ``GPT2LMHeadModel``'s ``state_dict`` for ``params`` (NumPy arrays).

    The inverse of :func:`convert_torch`: ``transformer.``-prefixed keys, Conv1D weights
    (in, out), one entry per block ``h.{i}``, and ``lm_head.weight`` equal to
    ``wte.weight`` (the tie). The causal-mask buffers are not persistent in current
    ``transformers`` and are left out.
    """
    exported = nn.torch_state_dict(model, params, state)
    flat = {
        f"transformer.{key}": value.T if key.endswith(_CONV1D) else value
        for key, value in exported.items()
    }
    flat["lm_head.weight"] = flat["transformer.wte.weight"]
    return flat


def generate(
    model: nn.Module,
    params: Params,
    prompt_ids: jax.Array,
    max_new_tokens: int,
    *,
    key: jax.Array | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
) -> jax.Array:
    """Extends ``prompt_ids`` by ``max_new_tokens`` tokens, one at a time.

    A ``lax.fori_loop`` over a fixed (N, P + max_new_tokens) buffer: each step runs the
    model (eval mode) on the whole buffer, whose later positions causal attention ignores,
    and writes the next token. Without a key the choice is greedy (argmax); with one it is
    sampled from ``softmax(logits / temperature)``, over the ``top_k`` most likely tokens
    when given. Works under ``jax.jit`` with ``model``, ``max_new_tokens``, ``temperature``
    and ``top_k`` static.

    Args:
        model: a causal language model, (N, T) ids → (N, T, vocab) logits, without state
            (a :class:`GPT2`); P + max_new_tokens must fit its positions.
        params: its parameters.
        prompt_ids: (N, P) integer token ids.
        max_new_tokens: tokens to add.
        key: a PRNG key for sampling, or None for greedy decoding.
        temperature: divides the logits before sampling.
        top_k: sample among the k most likely tokens only.

    Returns:
        (N, P + max_new_tokens) int32 ids, the prompt first.
    """
    batch, prompt = jnp.shape(prompt_ids)
    ids = jnp.zeros((batch, prompt + max_new_tokens), jnp.int32)
    ids = ids.at[:, :prompt].set(jnp.asarray(prompt_ids, jnp.int32))

    def step(i: jax.Array, ids: jax.Array) -> jax.Array:
        logits, _ = model.apply(params, {}, ids)
        last = jax.lax.dynamic_index_in_dim(logits, prompt + i - 1, axis=1, keepdims=False)
        if key is None:
            token = jnp.argmax(last, axis=-1)
        else:
            last = last.astype(jnp.float32) / temperature
            if top_k is not None:
                kth = jax.lax.top_k(last, top_k)[0][:, -1:]
                last = jnp.where(last < kth, -jnp.inf, last)
            token = jax.random.categorical(jax.random.fold_in(key, i), last, axis=-1)
        return jax.lax.dynamic_update_index_in_dim(
            ids, token.astype(jnp.int32)[:, None], prompt + i, 1
        )

    return jax.lax.fori_loop(0, max_new_tokens, step, ids)
