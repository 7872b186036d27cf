"""MultiheadAttention with PyTorch's arguments, masks, outputs and parameter names."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from funcnet import functional as F
from funcnet.errors import ShapeError, check_input_dtype, check_last_dim, check_ndim
from funcnet.functional._attention import attention
from funcnet.nn import init as init_lib
from funcnet.nn._linear import Linear, compute_dtype
from funcnet.nn._module import Context, Module, Parameter

__all__ = ["MultiheadAttention"]


def _bias_kv_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    """PyTorch's ``xavier_normal_`` of ``bias_k`` / ``bias_v`` (1, 1, E): PyTorch reads the
    last axis as a receptive field, so fan_in = fan_out = E and std = 1/sqrt(E)."""
    return init_lib.normal(key, shape, dtype, std=1.0 / math.sqrt(shape[-1]))


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class MultiheadAttention(Module):
    """Multi-head attention (``torch.nn.MultiheadAttention``).

    ``out_proj(concat_h softmax(q_h k_hᵀ / sqrt(d) + mask) v_h)`` with q, k, v the input
    projections split into ``num_heads`` heads of size d = embed_dim / num_heads.

    Parameters, PyTorch's names with weights transposed to funcnet's (in, out):
    ``in_proj_weight`` (embed_dim, 3·embed_dim), columns q | k | v (PyTorch's is
    (3·embed_dim, embed_dim)); when ``kdim`` or ``vdim`` differ from embed_dim instead
    ``q_proj_weight`` (embed_dim, embed_dim), ``k_proj_weight`` (kdim, embed_dim),
    ``v_proj_weight`` (vdim, embed_dim); ``in_proj_bias`` (3·embed_dim,);
    ``out_proj.weight`` (embed_dim, embed_dim), ``out_proj.bias``; with ``add_bias_kv``
    ``bias_k`` and ``bias_v`` (1, 1, embed_dim), PyTorch's shape unchanged. Initialised as
    PyTorch: Xavier-uniform input projections, zero biases, default Linear
    ``out_proj.weight``, ``bias_k`` and ``bias_v`` N(0, 1/embed_dim) (PyTorch's
    ``xavier_normal_`` of a (1, 1, E) tensor, whose fans are both E).

    Args:
        embed_dim: E, the query's features and the output's.
        num_heads: heads; must divide embed_dim.
        dropout: dropout on the attention weights, in training mode.
        bias: whether to learn ``in_proj_bias`` and ``out_proj.bias``.
        add_bias_kv: append the learned ``bias_k`` and ``bias_v`` to the projected keys and
            values as one more key/value position (S + 1 keys), as PyTorch.
        add_zero_attn: then append a zero key and value (one more position, whose logit
            is 0), as PyTorch.
        kdim: features of the key (default embed_dim).
        vdim: features of the value (default embed_dim).
        batch_first: inputs and output are (B, L, E) instead of PyTorch's default (L, B, E).
        implementation: ``None`` (auto: cuDNN's fused kernel on a CUDA GPU for
            float16/bfloat16, else two einsums and a softmax), ``"xla"`` (JAX's XLA
            path) or ``"cudnn"``; used only when the weights are not needed and no
            attention dropout applies.
        dtype: dtype of the parameters.
        in_projection: how self-attention (``query``, ``key`` and ``value`` the same
            array) projects with the packed ``in_proj_weight``: ``"fused"``, one matmul
            to (…, 3·embed_dim) split after it (as PyTorch); ``"separate"``, three
            matmuls with the weight's three column blocks; ``"auto"`` (default):
            separate on CPU, where it is faster, fused elsewhere (one larger GEMM on a
            GPU). Same values either way; other attention (key or value not the query)
            is always separate.

    ``forward(ctx, query, key, value, key_padding_mask=None, need_weights=True,
    attn_mask=None, average_attn_weights=True, is_causal=False)`` with query (L, B, E)
    (or (B, L, E) if batch_first, or unbatched (L, E)), key (S, B, kdim), value
    (S, B, vdim), returns ``(output, weights)``: output of query's shape and dtype;
    weights (B, L, S) averaged over heads, (B, num_heads, L, S) with
    ``average_attn_weights=False``, or None with ``need_weights=False`` (then cuDNN's
    fused kernel runs where it can). Masks as PyTorch:

    - ``key_padding_mask`` (B, S): boolean True = ignore that key, or floating, added.
    - ``attn_mask`` (L, S) or (B·num_heads, L, S): boolean True = *not* allowed, or
      floating, added to the logits.
    - ``is_causal=True`` masks keys after each query's position; unlike PyTorch it needs
      no ``attn_mask`` (if given, both apply).

    With ``add_bias_kv`` / ``add_zero_attn`` the masks keep the shapes above (S keys) and
    are extended, as PyTorch pads them, with an unmasked column per appended position;
    ``is_causal`` masks the S given keys only, never the appended ones (what PyTorch
    computes with an explicit causal ``attn_mask``). The weights then have S + 1 or S + 2
    columns.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from funcnet import nn
        >>> mha = nn.MultiheadAttention(16, 4, batch_first=True)
        >>> params, state = mha.init(jax.random.key(0))
        >>> x = jnp.ones((2, 5, 16))
        >>> padding = jnp.array([[False] * 5, [False] * 3 + [True] * 2])  # True = ignore
        >>> (out, weights), _ = mha.apply(params, state, x, x, x, key_padding_mask=padding)
        >>> out.shape, weights.shape
        ((2, 5, 16), (2, 5, 5))
    """

    embed_dim: int
    num_heads: int
    dropout: float = 0.0
    bias: bool = True
    add_bias_kv: bool = False
    add_zero_attn: bool = False
    kdim: int | None = None
    vdim: int | None = None
    batch_first: bool = False
    implementation: str | None = None
    dtype: Any = jnp.float32
    in_projection: str = "auto"

    def __post_init__(self) -> None:
        if self.embed_dim <= 0 or self.num_heads <= 0 or self.embed_dim % self.num_heads:
            raise ValueError(
                f"MultiheadAttention: embed_dim must be divisible by num_heads, got "
                f"{self.embed_dim} and {self.num_heads}"
            )
        if not 0.0 <= self.dropout <= 1.0:
            raise ValueError(f"MultiheadAttention: dropout must be in [0, 1], got {self.dropout}")
        if self.implementation not in (None, "xla", "cudnn"):
            raise ValueError(
                f"MultiheadAttention: implementation must be None, 'xla' or 'cudnn', got "
                f"{self.implementation!r}"
            )
        if self.in_projection not in ("auto", "fused", "separate"):
            raise ValueError(
                f"MultiheadAttention: in_projection must be 'auto', 'fused' or 'separate', "
                f"got {self.in_projection!r}"
            )
        e, xavier = self.embed_dim, init_lib.xavier_uniform
        if self._packed:
            self.in_proj_weight: Parameter = Parameter((e, 3 * e), xavier, self.dtype)
        else:
            self.q_proj_weight: Parameter = Parameter((e, e), xavier, self.dtype)
            self.k_proj_weight: Parameter = Parameter((self._kdim, e), xavier, self.dtype)
            self.v_proj_weight: Parameter = Parameter((self._vdim, e), xavier, self.dtype)
        if self.bias:
            self.in_proj_bias: Parameter = Parameter((3 * e,), init_lib.zeros, self.dtype)
        if self.add_bias_kv:
            self.bias_k: Parameter = Parameter((1, 1, e), _bias_kv_init, self.dtype)
            self.bias_v: Parameter = Parameter((1, 1, e), _bias_kv_init, self.dtype)
        self.out_proj: Linear = Linear(
            e, e, bias=self.bias, bias_init=init_lib.zeros, dtype=self.dtype
        )

    @property
    def _kdim(self) -> int:
        return self.embed_dim if self.kdim is None else self.kdim

    @property
    def _vdim(self) -> int:
        return self.embed_dim if self.vdim is None else self.vdim

    @property
    def _packed(self) -> bool:
        return self._kdim == self.embed_dim and self._vdim == self.embed_dim

    def _fused_projection(self, self_attention: bool) -> bool:
        """Whether to project q, k and v with one matmul (see ``in_projection``)."""
        if not (self_attention and self._packed) or self.in_projection == "separate":
            return False
        return self.in_projection == "fused" or jax.default_backend() != "cpu"

    def _projection_weights(self, ctx: Context, dtype: Any) -> tuple[jax.Array, ...]:
        if self._packed:
            # jnp.split, not three slices: its gradient is one concatenate, where the
            # slices' is three pads and two adds (smaller program, faster compile).
            weights = tuple(jnp.split(ctx.param("in_proj_weight", dtype), 3, axis=1))
        else:
            weights = tuple(ctx.param(f"{n}_proj_weight", dtype) for n in "qkv")
        if not self.bias:
            return (*weights, None, None, None)
        return (*weights, *jnp.split(ctx.param("in_proj_bias", dtype), 3))

    def _project(
        self,
        ctx: Context,
        q_in: jax.Array,
        k_in: jax.Array,
        v_in: jax.Array,
        self_attention: bool,
        dtype: Any,
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """q (B, L, N, D), k and v (B, S', N, D): the input projections, then the appended
        ``bias_k`` / ``bias_v`` and zero positions (S' = S + ``_extra_keys``)."""
        b, length = jnp.shape(q_in)[:2]
        source = jnp.shape(k_in)[1]
        heads, head_dim = self.num_heads, self.embed_dim // self.num_heads
        if self._fused_projection(self_attention):
            in_bias = ctx.param("in_proj_bias", dtype) if self.bias else None
            qkv = F.linear(q_in, ctx.param("in_proj_weight", dtype), in_bias)
            q, k, v = (x.reshape(b, length, heads, head_dim) for x in jnp.split(qkv, 3, -1))
        else:
            wq, wk, wv, bq, bk, bv = self._projection_weights(ctx, dtype)
            q = F.linear(q_in, wq, bq).reshape(b, length, heads, head_dim)
            k = F.linear(k_in.astype(dtype), wk, bk).reshape(b, source, heads, head_dim)
            v = F.linear(v_in.astype(dtype), wv, bv).reshape(b, source, heads, head_dim)
        if not self._extra_keys:
            return q, k, v
        ks, vs = [k], [v]
        row = (b, 1, heads, head_dim)
        if self.add_bias_kv:  # PyTorch: after the projection and its bias
            ks.append(jnp.broadcast_to(ctx.param("bias_k", dtype).reshape(1, 1, heads, -1), row))
            vs.append(jnp.broadcast_to(ctx.param("bias_v", dtype).reshape(1, 1, heads, -1), row))
        if self.add_zero_attn:
            ks.append(jnp.zeros(row, k.dtype))
            vs.append(jnp.zeros(row, v.dtype))
        return q, jnp.concatenate(ks, axis=1), jnp.concatenate(vs, axis=1)

    @property
    def _extra_keys(self) -> int:
        """Key/value positions appended after the given S (``add_bias_kv``, ``add_zero_attn``)."""
        return int(self.add_bias_kv) + int(self.add_zero_attn)

    def forward(
        self,
        ctx: Context,
        query: jax.Array,
        key: jax.Array,
        value: jax.Array,
        key_padding_mask: jax.Array | None = None,
        need_weights: bool = True,
        attn_mask: jax.Array | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[jax.Array, jax.Array | None]:
        layout = "(B, L, E)" if self.batch_first else "(L, B, E)"
        check_ndim(ctx, query, (2, 3), "query", f"{layout} or unbatched (L, E)")
        expected = (("query", query, self.embed_dim), ("key", key, self._kdim))
        for name, arr, size in (*expected, ("value", value, self._vdim)):
            check_ndim(ctx, arr, jnp.ndim(query), name)
            check_last_dim(ctx, arr, size, name)
            check_input_dtype(ctx, arr, what=name)
        batched = jnp.ndim(query) == 3

        def batch_major(x: jax.Array) -> jax.Array:
            if not batched:
                return x[None]
            return x if self.batch_first else jnp.swapaxes(x, 0, 1)

        q_in, k_in, v_in = batch_major(query), batch_major(key), batch_major(value)
        b, length = jnp.shape(q_in)[:2]
        source = jnp.shape(k_in)[1]
        if jnp.shape(k_in)[:2] != jnp.shape(v_in)[:2] or jnp.shape(k_in)[0] != b:
            raise ShapeError(
                f"{ctx.path} (MultiheadAttention): query, key and value need one batch size and "
                f"key and value one length, got shapes {jnp.shape(query)}, {jnp.shape(key)}, "
                f"{jnp.shape(value)} (batch_first={self.batch_first})"
            )
        mask, bias = self._masks(ctx, key_padding_mask, attn_mask, b, length, source, batched)
        if self._extra_keys:
            mask, bias = _extend_masks(mask, bias, is_causal, length, source, self._extra_keys)
            is_causal = False  # now inside mask, over the given keys only

        self_attention = query is key and key is value
        q, k, v = self._project(ctx, q_in, k_in, v_in, self_attention, compute_dtype(query))
        p = self.dropout if ctx.train else 0.0
        out, weights = attention(
            q,
            k,
            v,
            mask=mask,
            bias=bias,
            is_causal=is_causal,
            dropout_p=p,
            dropout_key=ctx.next_key() if p > 0.0 else None,
            need_weights=need_weights,
            implementation=self.implementation,
        )
        out = self.out_proj(ctx, out.reshape(b, length, self.embed_dim))
        out = out[0] if not batched else (out if self.batch_first else jnp.swapaxes(out, 0, 1))
        if weights is not None:
            if average_attn_weights:
                weights = jnp.mean(weights, axis=1)
            if not batched:
                weights = weights[0]
        return out, weights

    def _masks(
        self,
        ctx: Context,
        key_padding_mask: jax.Array | None,
        attn_mask: jax.Array | None,
        b: int,
        length: int,
        source: int,
        batched: bool,
    ) -> tuple[jax.Array | None, jax.Array | None]:
        """PyTorch's masks as (boolean True = attend, additive float), each (B|1, N|1, L, S)."""
        masks, biases = [], []
        where = f"{ctx.path} (MultiheadAttention)"
        if key_padding_mask is not None:
            want = (b, source) if batched else (source,)
            if jnp.shape(key_padding_mask) != want:
                raise ShapeError(
                    f"{where}: expected key_padding_mask of shape {want} (batch, source length), "
                    f"got {jnp.shape(key_padding_mask)}"
                )
            kpm = jnp.reshape(key_padding_mask, (b, 1, 1, source))
            (masks if kpm.dtype == jnp.bool_ else biases).append(kpm)
        if attn_mask is not None:
            shape = jnp.shape(attn_mask)
            rows = b * self.num_heads
            if shape == (length, source):
                am = jnp.reshape(attn_mask, (1, 1, length, source))
            elif shape == (rows, length, source):
                am = jnp.reshape(attn_mask, (b, self.num_heads, length, source))
            else:
                raise ShapeError(
                    f"{where}: expected attn_mask of shape {(length, source)} or "
                    f"{(rows, length, source)} (batch * num_heads, target, source), got {shape}"
                )
            (masks if am.dtype == jnp.bool_ else biases).append(am)
        mask = None
        for m in masks:  # PyTorch's True means "masked": invert to "attend"
            mask = ~m if mask is None else jnp.logical_and(mask, ~m)
        bias = None
        for a in biases:
            bias = a if bias is None else bias + a
        return mask, bias


def _extend_masks(
    mask: jax.Array | None,
    bias: jax.Array | None,
    is_causal: bool,
    length: int,
    source: int,
    extra: int,
) -> tuple[jax.Array | None, jax.Array | None]:
    """The masks over S + ``extra`` keys: the appended positions are never masked (PyTorch
    pads its masks with zeros); ``is_causal`` applies to the S given keys only."""
    if is_causal:
        causal = jnp.tril(jnp.ones((1, 1, length, source), bool))
        mask = causal if mask is None else jnp.logical_and(mask, causal)
    widths = ((0, 0), (0, 0), (0, 0), (0, extra))
    mask = None if mask is None else jnp.pad(mask, widths, constant_values=True)
    bias = None if bias is None else jnp.pad(bias, widths)
    return mask, bias
