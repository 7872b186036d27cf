"""Transformer blocks (PyTorch's names and structure) and positional embeddings.

The layers nest their parameters under PyTorch's attribute names (``self_attn``,
``multihead_attn``, ``linear1``, ``linear2``, ``norm1``, ``norm2``, ``norm3``), and the
stacks under ``layers.{i}`` and ``norm``, so ``state_dict`` keys match PyTorch's.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from funcnet import functional as F
from funcnet.errors import ShapeError, check_dtype, check_last_dim, check_ndim
from funcnet.functional._dropout import _check_probability
from funcnet.nn import init as init_lib
from funcnet.nn._attention import MultiheadAttention
from funcnet.nn._container import ModuleList
from funcnet.nn._linear import Linear
from funcnet.nn._module import Context, Initializer, Module
from funcnet.nn._normalization import LayerNorm

__all__ = [
    "LearnedPositionalEmbedding",
    "SinusoidalPositionalEmbedding",
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerEncoderLayer",
]

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {"relu": F.relu, "gelu": F.gelu}


def _activation(owner: str, activation: str | Callable[[jax.Array], jax.Array]) -> Callable:
    if callable(activation):
        return activation
    if activation not in _ACTIVATIONS:
        raise ValueError(
            f"{owner}: activation should be relu/gelu or a callable, not {activation!r}"
        )
    return _ACTIVATIONS[activation]


def _dropout(ctx: Context, x: jax.Array, p: float) -> jax.Array:
    return F.dropout(x, p, ctx.next_key()) if ctx.train and p > 0.0 else x


class _Block(Module):
    """What the encoder and decoder layers share."""

    d_model: int
    nhead: int
    dim_feedforward: int
    dropout: float
    activation: str | Callable[[jax.Array], jax.Array]
    layer_norm_eps: float
    batch_first: bool
    norm_first: bool
    bias: bool
    implementation: str | None
    dtype: Any

    def _build(self, attentions: tuple[str, ...], norms: int) -> None:
        name = type(self).__name__
        _check_probability(name, self.dropout)
        _activation(name, self.activation)

        def attn() -> MultiheadAttention:
            return MultiheadAttention(
                self.d_model,
                self.nhead,
                dropout=self.dropout,
                bias=self.bias,
                batch_first=self.batch_first,
                implementation=self.implementation,
                dtype=self.dtype,
            )

        for attr in attentions:
            setattr(self, attr, attn())
        d, ff = self.d_model, self.dim_feedforward
        self.linear1 = Linear(d, ff, bias=self.bias, dtype=self.dtype)
        self.linear2 = Linear(ff, d, bias=self.bias, dtype=self.dtype)
        for i in range(1, norms + 1):
            norm = LayerNorm(d, eps=self.layer_norm_eps, bias=self.bias, dtype=self.dtype)
            setattr(self, f"norm{i}", norm)

    def _check(self, ctx: Context, x: jax.Array, what: str) -> None:
        layout = "(B, L, d_model)" if self.batch_first else "(L, B, d_model)"
        check_ndim(ctx, x, (2, 3), what, f"{layout} or unbatched (L, d_model)")
        check_last_dim(ctx, x, self.d_model, what)
        check_dtype(ctx, x, "floating", what)

    def _ff_block(self, ctx: Context, x: jax.Array) -> jax.Array:
        act = _activation(type(self).__name__, self.activation)
        x = self.linear2(ctx, _dropout(ctx, act(self.linear1(ctx, x)), self.dropout))
        return _dropout(ctx, x, self.dropout)

    def _attn_block(
        self,
        ctx: Context,
        attn: MultiheadAttention,
        x: jax.Array,
        memory: jax.Array,
        mask: jax.Array | None,
        key_padding_mask: jax.Array | None,
        is_causal: bool,
    ) -> jax.Array:
        out, _ = attn(
            ctx,
            x,
            memory,
            memory,
            attn_mask=mask,
            key_padding_mask=key_padding_mask,
            need_weights=False,
            is_causal=is_causal,
        )
        return _dropout(ctx, out, self.dropout)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class TransformerEncoderLayer(_Block):
    """Self-attention and a feed-forward network (``torch.nn.TransformerEncoderLayer``).

    Post-LN (default): ``x = norm1(x + sa(x)); x = norm2(x + ff(x))``; pre-LN
    (``norm_first``): ``x = x + sa(norm1(x)); x = x + ff(norm2(x))``, with
    ``ff(x) = linear2(dropout(activation(linear1(x))))``.

    ``forward(ctx, src, src_mask=None, src_key_padding_mask=None, is_causal=False)``: src
    (L, B, d_model) (or batch-first, or unbatched (L, d_model)); the masks as
    :class:`MultiheadAttention`'s ``attn_mask`` and ``key_padding_mask``; is_causal masks
    future positions (no ``src_mask`` needed). Returns src's shape and dtype.

    Args:
        d_model: features of the input and output.
        nhead: attention heads; must divide d_model.
        dim_feedforward: hidden features of the feed-forward network.
        dropout: dropout after attention, inside and after the feed-forward network, and on
            the attention weights; training mode only.
        activation: ``"relu"``, ``"gelu"`` (exact, PyTorch's) or a callable.
        layer_norm_eps: the LayerNorms' eps.
        batch_first: (B, L, d_model) instead of PyTorch's default (L, B, d_model).
        norm_first: pre-LN (LayerNorm before each sub-block) instead of post-LN.
        bias: whether the Linear, LayerNorm and attention layers learn biases.
        implementation: attention kernel choice, see :class:`MultiheadAttention`.
        dtype: dtype of the parameters.
    """

    d_model: int
    nhead: int
    dim_feedforward: int = 2048
    dropout: float = 0.1
    activation: str | Callable[[jax.Array], jax.Array] = "relu"
    layer_norm_eps: float = 1e-5
    batch_first: bool = False
    norm_first: bool = False
    bias: bool = True
    implementation: str | None = None
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        self._build(("self_attn",), norms=2)

    def forward(
        self,
        ctx: Context,
        src: jax.Array,
        src_mask: jax.Array | None = None,
        src_key_padding_mask: jax.Array | None = None,
        is_causal: bool = False,
    ) -> jax.Array:
        self._check(ctx, src, "src")
        x = src

        def sa(y: jax.Array) -> jax.Array:
            return self._attn_block(
                ctx, self.self_attn, y, y, src_mask, src_key_padding_mask, is_causal
            )

        if self.norm_first:
            x = x + sa(self.norm1(ctx, x))
            return x + self._ff_block(ctx, self.norm2(ctx, x))
        x = self.norm1(ctx, x + sa(x))
        return self.norm2(ctx, x + self._ff_block(ctx, x))


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class TransformerDecoderLayer(_Block):
    """Self-attention, attention over a memory, and a feed-forward network
    (``torch.nn.TransformerDecoderLayer``).

    Post-LN: ``x = norm1(x + sa(x)); x = norm2(x + mha(x, memory)); x = norm3(x + ff(x))``;
    pre-LN (``norm_first``) applies each norm to the sub-block's input instead.

    ``forward(ctx, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False)``: tgt
    (T, B, d_model), memory (S, B, d_model) (or batch-first, or unbatched); the masks as
    :class:`MultiheadAttention`'s. Returns tgt's shape and dtype.

    Args:
        d_model: features of the input and output.
        nhead: attention heads; must divide d_model.
        dim_feedforward: hidden features of the feed-forward network.
        dropout: dropout after attention, inside and after the feed-forward network, and on
            the attention weights; training mode only.
        activation: ``"relu"``, ``"gelu"`` (exact, PyTorch's) or a callable.
        layer_norm_eps: the LayerNorms' eps.
        batch_first: (B, L, d_model) instead of PyTorch's default (L, B, d_model).
        norm_first: pre-LN (LayerNorm before each sub-block) instead of post-LN.
        bias: whether the Linear, LayerNorm and attention layers learn biases.
        implementation: attention kernel choice, see :class:`MultiheadAttention`.
        dtype: dtype of the parameters.
    """

    d_model: int
    nhead: int
    dim_feedforward: int = 2048
    dropout: float = 0.1
    activation: str | Callable[[jax.Array], jax.Array] = "relu"
    layer_norm_eps: float = 1e-5
    batch_first: bool = False
    norm_first: bool = False
    bias: bool = True
    implementation: str | None = None
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        self._build(("self_attn", "multihead_attn"), norms=3)

    def forward(
        self,
        ctx: Context,
        tgt: jax.Array,
        memory: jax.Array,
        tgt_mask: jax.Array | None = None,
        memory_mask: jax.Array | None = None,
        tgt_key_padding_mask: jax.Array | None = None,
        memory_key_padding_mask: jax.Array | None = None,
        tgt_is_causal: bool = False,
        memory_is_causal: bool = False,
    ) -> jax.Array:
        self._check(ctx, tgt, "tgt")
        self._check(ctx, memory, "memory")
        x = tgt

        def sa(y: jax.Array) -> jax.Array:
            return self._attn_block(
                ctx, self.self_attn, y, y, tgt_mask, tgt_key_padding_mask, tgt_is_causal
            )

        def mha(y: jax.Array) -> jax.Array:
            return self._attn_block(
                ctx, self.multihead_attn, y, memory, memory_mask, memory_key_padding_mask,
                memory_is_causal,
            )  # fmt: skip

        if self.norm_first:
            x = x + sa(self.norm1(ctx, x))
            x = x + mha(self.norm2(ctx, x))
            return x + self._ff_block(ctx, self.norm3(ctx, x))
        x = self.norm1(ctx, x + sa(x))
        x = self.norm2(ctx, x + mha(x))
        return self.norm3(ctx, x + self._ff_block(ctx, x))


def _clone(module: Module) -> Module:
    """An independent copy of a module description (fresh sub-module identities)."""
    if dataclasses.is_dataclass(module):
        return dataclasses.replace(module)
    clone = copy.deepcopy(module)
    for _, sub in clone.named_modules():
        sub.__dict__.pop("_funcnet_routes", None)  # cached by id(): stale after the copy
    return clone


class TransformerEncoder(Module):
    """A stack of ``num_layers`` copies of ``encoder_layer`` (``torch.nn.TransformerEncoder``).

    Each copy gets its own parameters, ``layers.{i}.…``; the optional final ``norm`` is
    ``norm.…``, as in PyTorch.

    Args:
        encoder_layer: a :class:`TransformerEncoderLayer` (or any module with its forward
            signature) to copy.
        num_layers: the number of copies.
        norm: an optional module applied to the output (e.g. ``LayerNorm(d_model)`` after
            pre-LN layers).
        enable_nested_tensor, mask_check: accepted for PyTorch compatibility; no effect.

    ``forward(ctx, src, mask=None, src_key_padding_mask=None, is_causal=False)`` runs the
    layers in order with the same masks; returns src's shape and dtype.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from funcnet import nn
        >>> layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True, norm_first=True)
        >>> encoder = nn.TransformerEncoder(layer, num_layers=2, norm=nn.LayerNorm(32))
        >>> params, state = encoder.init(jax.random.key(0))
        >>> sorted(nn.state_dict(params))[:2]
        ['layers.0.linear1.bias', 'layers.0.linear1.weight']
        >>> y, _ = encoder.apply(params, state, jnp.ones((2, 10, 32)), is_causal=True)
        >>> y.shape
        (2, 10, 32)
    """

    def __init__(
        self,
        encoder_layer: Module,
        num_layers: int,
        norm: Module | None = None,
        enable_nested_tensor: bool = True,
        mask_check: bool = True,
    ) -> None:
        del enable_nested_tensor, mask_check
        self.layers = ModuleList(_clone(encoder_layer) for _ in range(num_layers))
        self.num_layers = num_layers
        self.norm = norm

    def forward(
        self,
        ctx: Context,
        src: jax.Array,
        mask: jax.Array | None = None,
        src_key_padding_mask: jax.Array | None = None,
        is_causal: bool = False,
    ) -> jax.Array:
        x = src
        for layer in self.layers:
            x = layer(
                ctx,
                x,
                src_mask=mask,
                src_key_padding_mask=src_key_padding_mask,
                is_causal=is_causal,
            )
        return x if self.norm is None else self.norm(ctx, x)

    def extra_repr(self) -> str:
        return f"num_layers={self.num_layers}"


class TransformerDecoder(Module):
    """A stack of ``num_layers`` copies of ``decoder_layer`` (``torch.nn.TransformerDecoder``).

    Args:
        decoder_layer: a :class:`TransformerDecoderLayer` (or any module with its forward
            signature) to copy.
        num_layers: the number of copies, ``layers.{i}.…``.
        norm: an optional module applied to the output, ``norm.…``.

    ``forward(ctx, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False)`` runs the
    layers in order; returns tgt's shape and dtype.
    """

    def __init__(self, decoder_layer: Module, num_layers: int, norm: Module | None = None) -> None:
        self.layers = ModuleList(_clone(decoder_layer) for _ in range(num_layers))
        self.num_layers = num_layers
        self.norm = norm

    def forward(
        self,
        ctx: Context,
        tgt: jax.Array,
        memory: jax.Array,
        tgt_mask: jax.Array | None = None,
        memory_mask: jax.Array | None = None,
        tgt_key_padding_mask: jax.Array | None = None,
        memory_key_padding_mask: jax.Array | None = None,
        tgt_is_causal: bool = False,
        memory_is_causal: bool = False,
    ) -> jax.Array:
        x = tgt
        for layer in self.layers:
            x = layer(
                ctx,
                x,
                memory,
                tgt_mask=tgt_mask,
                memory_mask=memory_mask,
                tgt_key_padding_mask=tgt_key_padding_mask,
                memory_key_padding_mask=memory_key_padding_mask,
                tgt_is_causal=tgt_is_causal,
                memory_is_causal=memory_is_causal,
            )
        return x if self.norm is None else self.norm(ctx, x)

    def extra_repr(self) -> str:
        return f"num_layers={self.num_layers}"


def _positions(
    ctx: Context, x: jax.Array, positions: jax.Array | None, embed_dim: int, batch_first: bool
) -> tuple[jax.Array, int]:
    """Checks x; returns positions shaped to broadcast against x without its last axis."""
    layout = "(B, L, embed_dim)" if batch_first else "(L, B, embed_dim)"
    check_ndim(ctx, x, (2, 3), layout=f"{layout} or unbatched (L, embed_dim)")
    check_last_dim(ctx, x, embed_dim)
    check_dtype(ctx, x, "floating")
    length_axis = 1 if batch_first and jnp.ndim(x) == 3 else 0
    length = jnp.shape(x)[length_axis]
    if positions is None:
        positions = jnp.arange(length)
        if jnp.ndim(x) == 3:
            positions = positions[None, :] if batch_first else positions[:, None]
        return positions, length
    return jnp.asarray(positions), length


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class SinusoidalPositionalEmbedding(Module):
    """Adds the fixed sinusoidal position embeddings of "Attention Is All You Need".

    ``y = x + sinusoidal_embedding(positions, embed_dim)`` (see
    :func:`funcnet.functional.sinusoidal_embedding`): PyTorch's tutorial
    ``PositionalEncoding`` without its dropout (add ``nn.Dropout`` after it). No parameters;
    the embeddings are computed in float32 and added in x's dtype.

    Args:
        embed_dim: features of x (even).
        base: the wavelength base.
        batch_first: x is (B, L, embed_dim) instead of (L, B, embed_dim).

    ``forward(ctx, x, positions=None)``: x (L, B, embed_dim), (B, L, embed_dim) or
    (L, embed_dim); positions default to 0..L−1 and otherwise broadcast against x without
    its last axis (e.g. (B, L) batch-first, for offsets or packed sequences).
    """

    embed_dim: int
    base: float = 10000.0
    batch_first: bool = False

    def __post_init__(self) -> None:
        if self.embed_dim % 2:
            raise ValueError(
                f"SinusoidalPositionalEmbedding: embed_dim must be even, got {self.embed_dim}"
            )

    def forward(self, ctx: Context, x: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        positions, _ = _positions(ctx, x, positions, self.embed_dim, self.batch_first)
        table = F.sinusoidal_embedding(positions, self.embed_dim, self.base)
        return x + table.astype(jnp.result_type(x))


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class LearnedPositionalEmbedding(Module):
    """Adds a learned embedding per position: ``y = x + weight[positions]``.

    Args:
        max_len: the number of positions (rows of ``weight``).
        embed_dim: features of x.
        batch_first: x is (B, L, embed_dim) instead of (L, B, embed_dim).
        weight_init: initialiser of ``weight`` (max_len, embed_dim); default N(0, 0.02²)
            (GPT-2 and BERT; ``nn.Embedding``'s N(0, 1) is too large for an additive term).
        dtype: dtype of ``weight``.

    ``forward(ctx, x, positions=None)``: as :class:`SinusoidalPositionalEmbedding`;
    without ``positions`` the input length must be at most ``max_len`` (checked).
    """

    max_len: int
    embed_dim: int
    batch_first: bool = False
    weight_init: Initializer | None = None
    dtype: Any = jnp.float32

    def init(self, key: jax.Array) -> tuple[dict, dict]:
        shape = (self.max_len, self.embed_dim)
        if self.weight_init is not None:
            return {"weight": self.weight_init(key, shape, self.dtype)}, {}
        return {"weight": init_lib.normal(key, shape, self.dtype, std=0.02)}, {}

    def forward(self, ctx: Context, x: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        given = positions is not None
        positions, length = _positions(ctx, x, positions, self.embed_dim, self.batch_first)
        if not given and length > self.max_len:
            raise ShapeError(
                f"{ctx.path} (LearnedPositionalEmbedding): sequence length {length} exceeds "
                f"max_len {self.max_len} (input shape {jnp.shape(x)})"
            )
        weight = ctx.param("weight", jnp.result_type(x))
        return x + jnp.take(weight, positions, axis=0)
