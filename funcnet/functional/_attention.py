"""Attention maths: scaled dot-product attention, positional encodings, rotary embeddings.

Inside funcnet attention runs in JAX's layout (batch, seq, heads, head_dim), the layout of
``jax.nn.dot_product_attention``. When the attention weights are not needed and no dropout
is applied to them, on a CUDA GPU with float16 or bfloat16 inputs funcnet asks that
function for cuDNN's fused (flash) kernel explicitly, because ``implementation=None``
means XLA in jax 0.10. Otherwise the attention is computed explicitly, with the numerics
of JAX's XLA path (logits and softmax in float32) but the queries scaled before the first
einsum (on XLA:CPU a scale of the logits becomes a materialised constant of their size);
``implementation="xla"`` asks for JAX's XLA path itself.

Masks: inside funcnet a boolean mask is True where a query may attend (JAX's and
``F.scaled_dot_product_attention``'s convention); ``nn.MultiheadAttention`` converts
PyTorch's "True = masked" masks at its boundary. A query whose keys are all masked
attends uniformly to all keys (finite output), where PyTorch returns NaN.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from funcnet.errors import ShapeError

__all__ = [
    "generate_square_subsequent_mask",
    "rotary_embedding",
    "scaled_dot_product_attention",
    "sinusoidal_embedding",
]

_FUSED_DTYPES = (jnp.float16, jnp.bfloat16)


def _large_negative(dtype: jnp.dtype) -> float:
    # The value JAX's XLA attention uses, so both paths agree on fully masked rows.
    return float(-0.7 * min(jnp.finfo(dtype).max, jnp.finfo(jnp.float32).max))


def _on_gpu() -> bool:
    # On a GPU without cuDNN the attempt fails at trace time and falls back to XLA.
    return jax.default_backend() == "gpu"


def fused_implementation(q: jax.Array, implementation: str | None) -> str:
    """``"cudnn"`` (call ``jax.nn.dot_product_attention`` for cuDNN's kernel) or ``"xla"``.

    ``None`` (auto) picks ``"cudnn"`` on a CUDA GPU for float16/bfloat16 inputs with a
    head dimension cuDNN supports (a multiple of 8, at most 128), else ``"xla"``: the
    explicit form, unless ``"xla"`` was asked for by name (then JAX's XLA path).
    """
    if implementation is not None:
        if implementation not in ("xla", "cudnn"):
            raise ValueError(
                f"implementation must be None, 'xla' or 'cudnn', got {implementation!r}"
            )
        return implementation
    head_dim = jnp.shape(q)[-1]
    if jnp.result_type(q) in _FUSED_DTYPES and head_dim % 8 == 0 and head_dim <= 128:
        if _on_gpu():
            return "cudnn"
    return "xla"


def attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    mask: jax.Array | None = None,
    bias: jax.Array | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
    dropout_key: jax.Array | None = None,
    need_weights: bool = False,
    implementation: str | None = None,
) -> tuple[jax.Array, jax.Array | None]:
    """Multi-head attention core in JAX's layout.

    Args:
        q: (B, T, N, D). k: (B, S, K, D), v: (B, S, K, Dv), K dividing N (grouped queries).
        mask: boolean, True = attend, broadcastable to (B, N, T, S).
        bias: added to the logits, broadcastable to (B, N, T, S).
        is_causal: also mask keys after the query's position (top-left aligned).
        scale: logit scale, default 1 / sqrt(D).
        dropout_p: dropout on the attention weights (needs ``dropout_key``).
        need_weights: also return the weights.
        implementation: for the fused path (``fused_implementation``).

    Returns:
        ``(out (B, T, N, Dv), weights (B, N, T, S) or None)``.
    """
    scale = 1.0 / math.sqrt(jnp.shape(q)[-1]) if scale is None else scale
    mask = None if mask is None else _as_4d(mask)
    bias = None if bias is None else _as_4d(bias)
    dv = jnp.shape(v)[-1]
    if not need_weights and dropout_p == 0.0 and dv == jnp.shape(q)[-1]:
        if fused_implementation(q, implementation) == "cudnn":
            try:
                return _cudnn(q, k, v, bias, mask, scale, is_causal), None
            except (ValueError, NotImplementedError, RuntimeError):
                if implementation == "cudnn":
                    raise
                # auto: a shape or configuration cuDNN does not support
        if implementation == "xla":
            return _dpa(q, k, v, bias, mask, scale, is_causal, "xla"), None
    return _explicit(q, k, v, mask, bias, is_causal, scale, dropout_p, dropout_key, need_weights)


def _cudnn(q, k, v, bias, mask, scale, is_causal):
    # cuDNN wants bias and mask with full (T, S) axes, and the bias in q's dtype.
    t, s = jnp.shape(q)[1], jnp.shape(k)[1]
    if mask is not None:
        mask = jnp.broadcast_to(mask, (*mask.shape[:2], t, s))
    if bias is not None:
        bias = jnp.broadcast_to(bias, (*bias.shape[:2], t, s)).astype(q.dtype)
    return _dpa(q, k, v, bias, mask, scale, is_causal, "cudnn")


def _dpa(q, k, v, bias, mask, scale, is_causal, implementation):
    return jax.nn.dot_product_attention(
        q, k, v, bias, mask, scale=scale, is_causal=is_causal, implementation=implementation
    )


def _as_4d(m: jax.Array) -> jax.Array:
    m = jnp.asarray(m)
    return jnp.reshape(m, (1,) * (4 - m.ndim) + m.shape) if m.ndim < 4 else m


def _explicit(q, k, v, mask, bias, is_causal, scale, dropout_p, dropout_key, need_weights):
    n, kv_heads = jnp.shape(q)[2], jnp.shape(k)[2]
    if kv_heads != n:  # grouped queries: repeat each key/value head for its group
        k = jnp.repeat(k, n // kv_heads, axis=2)
        v = jnp.repeat(v, n // kv_heads, axis=2)
    logits_dtype = jnp.promote_types(q.dtype, jnp.float32)  # as JAX: at least float32
    # Scale q, not the logits (as Flax does): on XLA:CPU a scale of the logits is fused into
    # the matmul's kernel as a materialised constant of the logits' size.
    q = q * jnp.asarray(scale, q.dtype)
    logits = jnp.einsum("btnd,bsnd->bnts", q, k, preferred_element_type=logits_dtype)
    if bias is not None:
        logits = logits + jnp.asarray(bias, logits_dtype)
    if is_causal:
        t, s = logits.shape[-2:]
        causal = jnp.tril(jnp.ones((1, 1, t, s), bool))
        mask = causal if mask is None else jnp.logical_and(mask, causal)
    if mask is not None:
        logits = jnp.where(mask, logits, _large_negative(logits_dtype))
    weights = jax.nn.softmax(logits, axis=-1).astype(q.dtype)
    if dropout_p > 0.0:
        if dropout_key is None:
            raise ValueError(f"attention dropout with p={dropout_p} needs a PRNG key")
        keep = jax.random.bernoulli(dropout_key, 1.0 - dropout_p, weights.shape)
        weights = jnp.where(keep, weights / (1.0 - dropout_p), 0).astype(q.dtype)
    out = jnp.einsum("bnts,bsnd->btnd", weights, v)
    return out, (weights if need_weights else None)


def scaled_dot_product_attention(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    attn_mask: jax.Array | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
    *,
    dropout_key: jax.Array | None = None,
    implementation: str | None = None,
) -> jax.Array:
    """softmax(Q Kᵀ · scale + mask) V, as ``torch.nn.functional.scaled_dot_product_attention``.

    PyTorch's layout and mask convention: heads before sequence, and a boolean
    ``attn_mask`` is True where attention is *allowed* (the opposite of
    ``nn.MultiheadAttention``'s). Without dropout this is ``jax.nn.dot_product_attention``
    (cuDNN's fused kernel on a CUDA GPU for float16/bfloat16, XLA elsewhere).

    Args:
        query: (B, N, L, E) or (B, L, E).
        key: (B, K, S, E) or (B, S, E); K = N unless ``enable_gqa`` (then K divides N).
        value: (B, K, S, Ev) or (B, S, Ev).
        attn_mask: boolean (True = attend) or floating (added to the logits), broadcastable
            to (B, N, L, S).
        dropout_p: dropout on the attention weights, applied whenever > 0 (as PyTorch:
            pass 0.0 in evaluation); needs ``dropout_key``.
        is_causal: mask keys after each query's position (top-left aligned); may be
            combined with ``attn_mask`` (PyTorch raises).
        scale: logit scale, default 1 / sqrt(E).
        enable_gqa: allow fewer key/value heads than query heads.
        dropout_key: a PRNG key for the dropout.
        implementation: ``None`` (auto), ``"xla"`` or ``"cudnn"`` for the fused path.

    Returns:
        (B, N, L, Ev) or (B, L, Ev), query's dtype.
    """
    ndim = jnp.ndim(query)
    if ndim not in (3, 4) or jnp.ndim(key) != ndim or jnp.ndim(value) != ndim:
        raise ShapeError(
            "scaled_dot_product_attention: expected query, key and value all (B, N, L, E) or "
            f"all (B, L, E), got {jnp.shape(query)}, {jnp.shape(key)}, {jnp.shape(value)}"
        )
    if jnp.shape(query)[-1] != jnp.shape(key)[-1] or jnp.shape(key)[:-1] != jnp.shape(value)[:-1]:
        raise ShapeError(
            "scaled_dot_product_attention: query and key need the same feature size and key "
            f"and value the same leading shape, got {jnp.shape(query)}, {jnp.shape(key)}, "
            f"{jnp.shape(value)}"
        )
    if ndim == 4 and jnp.shape(key)[1] != jnp.shape(query)[1]:
        n, kv = jnp.shape(query)[1], jnp.shape(key)[1]
        if not enable_gqa or n % kv:
            raise ShapeError(
                f"scaled_dot_product_attention: {kv} key/value heads for {n} query heads "
                "(fewer key/value heads need enable_gqa=True and must divide the query heads)"
            )

    def to_jax(t: jax.Array) -> jax.Array:
        return t[:, :, None, :] if ndim == 3 else jnp.swapaxes(t, 1, 2)

    mask = bias = None
    if attn_mask is not None:
        attn_mask = jnp.asarray(attn_mask)
        if attn_mask.dtype == jnp.bool_:
            mask = attn_mask
        else:
            bias = attn_mask
    out, _ = attention(
        to_jax(query),
        to_jax(key),
        to_jax(value),
        mask=mask,
        bias=bias,
        is_causal=is_causal,
        scale=scale,
        dropout_p=dropout_p,
        dropout_key=dropout_key,
        implementation=implementation,
    )
    return out[:, :, 0, :] if ndim == 3 else jnp.swapaxes(out, 1, 2)


def generate_square_subsequent_mask(size: int, dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """The (size, size) additive causal mask: 0 on and below the diagonal, −inf above
    (``torch.nn.Transformer.generate_square_subsequent_mask``). Passing ``is_causal=True``
    instead lets the fused kernel skip the masked half."""
    return jnp.where(jnp.tril(jnp.ones((size, size), bool)), 0.0, -jnp.inf).astype(dtype)


def sinusoidal_embedding(
    positions: jax.Array, dim: int, base: float = 10000.0, dtype: jnp.dtype = jnp.float32
) -> jax.Array:
    """Sinusoidal position embeddings of "Attention Is All You Need".

    ``out[..., 2i] = sin(p / base^(2i/dim))`` and ``out[..., 2i+1] = cos(p / base^(2i/dim))``:
    the interleaved layout of PyTorch's tutorial ``PositionalEncoding`` (its ``pe`` buffer
    is ``sinusoidal_embedding(jnp.arange(max_len), d_model)``). Computed in float32.

    Args:
        positions: integer or float positions, any shape (*).
        dim: embedding size (even).
        base: the wavelength base.
        dtype: output dtype.

    Returns:
        (*, dim).
    """
    if dim % 2:
        raise ValueError(f"sinusoidal_embedding: dim must be even, got {dim}")
    inv_freq = jnp.exp(jnp.arange(0, dim, 2, dtype=jnp.float32) * (-math.log(base) / dim))
    angles = jnp.asarray(positions, jnp.float32)[..., None] * inv_freq
    table = jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1)
    return table.reshape((*angles.shape[:-1], dim)).astype(dtype)


def rotary_embedding(
    x: jax.Array,
    positions: jax.Array | None = None,
    *,
    base: float = 10000.0,
    interleaved: bool = False,
    seq_axis: int = -3,
) -> jax.Array:
    """Rotary position embedding (RoPE, Su et al. 2021) of queries or keys.

    Feature pairs are rotated by angle ``position · base^(−2i/D)``. Pairs are
    ``(x[i], x[i + D/2])`` (``interleaved=False``: GPT-NeoX, Hugging Face Llama) or
    ``(x[2i], x[2i+1])`` (``interleaved=True``: the paper, Meta's Llama, torchtune).
    Apply it to q and k after the projection and before attention; relative positions
    then enter the logits.

    Args:
        x: (*, head_dim) with the sequence on ``seq_axis``: (B, T, N, D) for JAX's
            layout (default ``seq_axis=-3``), or ``seq_axis=-2`` for (B, N, T, D) or (B, T, D).
        positions: integer or float positions broadcastable against x without its last
            axis, or None for ``arange(T)`` along ``seq_axis`` (pass offsets for a cache).
        base: the wavelength base.
        interleaved: the pairing convention (above).
        seq_axis: the sequence axis when ``positions`` is None.

    Returns:
        x's shape and dtype; the angles are computed in float32.
    """
    shape = jnp.shape(x)
    dim = shape[-1]
    if dim % 2:
        raise ShapeError(f"rotary_embedding: head dimension must be even, got shape {shape}")
    if positions is None:
        if not -len(shape) <= seq_axis < -1:
            raise ShapeError(f"rotary_embedding: seq_axis {seq_axis} invalid for shape {shape}")
        steps = shape[seq_axis]
        positions = jnp.arange(steps).reshape((steps,) + (1,) * (-seq_axis - 2))
    inv_freq = base ** (-jnp.arange(0, dim, 2, dtype=jnp.float32) / dim)
    angles = jnp.asarray(positions, jnp.float32)[..., None] * inv_freq
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    xf = x.astype(jnp.float32)
    if interleaved:
        a, b = xf[..., 0::2], xf[..., 1::2]
        out = jnp.stack([a * cos - b * sin, a * sin + b * cos], axis=-1).reshape(shape)
    else:
        a, b = xf[..., : dim // 2], xf[..., dim // 2 :]
        out = jnp.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)
    return out.astype(x.dtype)
