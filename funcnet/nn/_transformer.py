"""Transformer blocks and the encoder-decoder Transformer (PyTorch's names and structure),
and positional embeddings.

The layers nest their parameters under PyTorch's attribute names (``self_attn``,
``multihead_attn``, ``linear1``, ``linear2``, ``norm1``, ``norm2``, ``norm3``), the
stacks under ``layers.{i}`` and ``norm``, and ``Transformer`` under ``encoder`` and
``decoder``, so ``state_dict`` keys match PyTorch's.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp

from funcnet import functional as F
from funcnet.errors import ShapeError, check_input_dtype, check_last_dim, check_ndim
from funcnet.functional._dropout import _check_probability
from funcnet.nn import init as init_lib
from funcnet.nn._attention import MultiheadAttention
from funcnet.nn._container import ModuleList
from funcnet.nn._linear import Linear
from funcnet.nn._module import Context, Initializer, Module, _name_hash
from funcnet.nn._normalization import LayerNorm

__all__ = [
    "LearnedPositionalEmbedding",
    "SinusoidalPositionalEmbedding",
    "Transformer",
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
        self.linear1: Linear = Linear(d, ff, bias=self.bias, dtype=self.dtype)
        self.linear2: Linear = Linear(ff, d, bias=self.bias, dtype=self.dtype)
        for i in range(1, norms + 1):
            norm = LayerNorm(d, eps=self.layer_norm_eps, bias=self.bias, dtype=self.dtype)
            setattr(self, f"norm{i}", norm)

    def _check(self, ctx: Context, x: jax.Array, what: str) -> None:
        layout = "(B, L, d_model)" if self.batch_first else "(L, B, d_model)"
        check_ndim(ctx, x, (2, 3), what, f"{layout} or unbatched (L, d_model)")
        check_last_dim(ctx, x, self.d_model, what)
        check_input_dtype(ctx, x, what=what)

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
        enable_nested_tensor: accepted for PyTorch compatibility; no effect.
        mask_check: accepted for PyTorch compatibility; no effect.

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
        self.layers: ModuleList = ModuleList(_clone(encoder_layer) for _ in range(num_layers))
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
        self.layers: ModuleList = ModuleList(_clone(decoder_layer) for _ in range(num_layers))
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


def _xavier_uniform(name: str, key: jax.Array, leaf: jax.Array) -> jax.Array:
    """PyTorch's ``xavier_uniform_`` of a parameter stored in funcnet's layout (fans as
    ``init.fans``, which match PyTorch's); ``bias_k`` / ``bias_v`` keep PyTorch's
    (1, 1, E) layout, whose fans PyTorch counts as E and E."""
    shape, dtype = jnp.shape(leaf), leaf.dtype
    if name in ("bias_k", "bias_v"):
        bound = math.sqrt(6.0 / (2 * shape[-1]))
        return init_lib.uniform(key, shape, dtype, a=-bound, b=bound)
    return init_lib.xavier_uniform(key, shape, dtype)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Transformer(Module):
    """The encoder-decoder Transformer of "Attention Is All You Need" (``torch.nn.Transformer``).

    ``encoder`` is a :class:`TransformerEncoder` of ``num_encoder_layers``
    :class:`TransformerEncoderLayer` s with a final ``LayerNorm(d_model)`` (``encoder.norm``),
    ``decoder`` likewise of :class:`TransformerDecoderLayer` s (``decoder.norm``), as
    PyTorch builds them, so the ``state_dict`` keys are PyTorch's (``encoder.layers.0.…``,
    ``encoder.norm.weight``, ``decoder.layers.0.…``, ``decoder.norm.bias``) and a PyTorch
    state dict imports with every 2-D weight transposed. ``init`` then draws every
    parameter of more than one dimension from Xavier-uniform, as PyTorch's
    ``_reset_parameters`` (the custom encoder's and decoder's too); biases and LayerNorms
    keep their defaults.

    Args:
        d_model: features of src, tgt and the output.
        nhead: attention heads; must divide d_model.
        num_encoder_layers: the layers of the encoder stack.
        num_decoder_layers: the layers of the decoder stack.
        dim_feedforward: hidden features of the feed-forward networks.
        dropout: the layers' dropout, training mode only.
        activation: ``"relu"``, ``"gelu"`` or a callable.
        custom_encoder: a module used instead of the built encoder stack, with
            :class:`TransformerEncoder`'s forward signature; its parameters are
            ``encoder.…``.
        custom_decoder: a module used instead of the built decoder stack, with
            :class:`TransformerDecoder`'s forward signature; its parameters are
            ``decoder.…``.
        layer_norm_eps: the LayerNorms' eps.
        batch_first: (B, L, d_model) instead of PyTorch's default (L, B, d_model).
        norm_first: pre-LN layers instead of post-LN.
        bias: whether the Linear, LayerNorm and attention layers learn biases.
        implementation: attention kernel choice, see :class:`MultiheadAttention`.
        dtype: dtype of the parameters.

    ``forward(ctx, src, tgt, src_mask=None, tgt_mask=None, memory_mask=None,
    src_key_padding_mask=None, tgt_key_padding_mask=None, memory_key_padding_mask=None,
    src_is_causal=None, tgt_is_causal=None, memory_is_causal=False)``: src (S, B, d_model),
    tgt (T, B, d_model) (or batch-first, or unbatched (S, d_model) and (T, d_model));
    the masks as :class:`MultiheadAttention`'s (``src_mask`` (S, S), ``tgt_mask`` (T, T),
    ``memory_mask`` (T, S), or per head (B·nhead, ·, ·); key padding masks (B, S), (B, T),
    (B, S)). ``*_is_causal=True`` masks future positions without a mask (PyTorch takes
    it as a hint about the mask given); None is False. Returns tgt's shape and dtype.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from funcnet import nn
        >>> model = nn.Transformer(16, 2, 1, 1, 32, dropout=0.0, batch_first=True)
        >>> params, state = model.init(jax.random.key(0))
        >>> sorted(k for k in nn.state_dict(params) if "norm." in k and "layers" not in k)
        ['decoder.norm.bias', 'decoder.norm.weight', 'encoder.norm.bias', 'encoder.norm.weight']
        >>> src, tgt = jnp.ones((3, 7, 16)), jnp.ones((3, 5, 16))  # (B, S, E), (B, T, E)
        >>> run = lambda p, s, t: model.apply(p, state, s, t, tgt_is_causal=True)[0]
        >>> jax.eval_shape(run, params, src, tgt).shape  # run(params, src, tgt) computes it
        (3, 5, 16)
    """

    d_model: int = 512
    nhead: int = 8
    num_encoder_layers: int = 6
    num_decoder_layers: int = 6
    dim_feedforward: int = 2048
    dropout: float = 0.1
    activation: str | Callable[[jax.Array], jax.Array] = "relu"
    custom_encoder: Module | None = None
    custom_decoder: Module | None = None
    layer_norm_eps: float = 1e-5
    batch_first: bool = False
    norm_first: bool = False
    bias: bool = True
    implementation: str | None = None
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        kw = {
            "dim_feedforward": self.dim_feedforward,
            "dropout": self.dropout,
            "activation": self.activation,
            "layer_norm_eps": self.layer_norm_eps,
            "batch_first": self.batch_first,
            "norm_first": self.norm_first,
            "bias": self.bias,
            "implementation": self.implementation,
            "dtype": self.dtype,
        }
        d, eps = self.d_model, self.layer_norm_eps
        self.encoder: Module
        self.decoder: Module
        if self.custom_encoder is not None:
            self.encoder = self.custom_encoder
        else:
            self.encoder = TransformerEncoder(
                TransformerEncoderLayer(d, self.nhead, **kw),
                self.num_encoder_layers,
                LayerNorm(d, eps=eps, bias=self.bias, dtype=self.dtype),
            )
        if self.custom_decoder is not None:
            self.decoder = self.custom_decoder
        else:
            self.decoder = TransformerDecoder(
                TransformerDecoderLayer(d, self.nhead, **kw),
                self.num_decoder_layers,
                LayerNorm(d, eps=eps, bias=self.bias, dtype=self.dtype),
            )

    def named_children(self) -> Iterator[tuple[str, Module]]:
        # A custom encoder is also the field custom_encoder: name it "encoder" only.
        return iter((("encoder", self.encoder), ("decoder", self.decoder)))

    def init(self, key: jax.Array) -> tuple[dict[str, Any], dict[str, Any]]:
        """The sub-modules' parameters, then every one with more than one dimension
        redrawn from Xavier-uniform (PyTorch's ``Transformer._reset_parameters``)."""
        params, state = super().init(key)
        reset = jax.random.fold_in(key, _name_hash("_reset_parameters"))

        def redraw(path: tuple[Any, ...], leaf: jax.Array) -> jax.Array:
            if jnp.ndim(leaf) < 2:
                return leaf
            k = jax.random.fold_in(reset, _name_hash(jax.tree_util.keystr(path)))
            return _xavier_uniform(str(path[-1].key), k, leaf)

        return jax.tree_util.tree_map_with_path(redraw, params), state

    def forward(
        self,
        ctx: Context,
        src: jax.Array,
        tgt: jax.Array,
        src_mask: jax.Array | None = None,
        tgt_mask: jax.Array | None = None,
        memory_mask: jax.Array | None = None,
        src_key_padding_mask: jax.Array | None = None,
        tgt_key_padding_mask: jax.Array | None = None,
        memory_key_padding_mask: jax.Array | None = None,
        src_is_causal: bool | None = None,
        tgt_is_causal: bool | None = None,
        memory_is_causal: bool = False,
    ) -> jax.Array:
        self._check(ctx, src, tgt)
        memory = self.encoder(
            ctx,
            src,
            mask=src_mask,
            src_key_padding_mask=src_key_padding_mask,
            is_causal=bool(src_is_causal),
        )
        return self.decoder(
            ctx,
            tgt,
            memory,
            tgt_mask=tgt_mask,
            memory_mask=memory_mask,
            tgt_key_padding_mask=tgt_key_padding_mask,
            memory_key_padding_mask=memory_key_padding_mask,
            tgt_is_causal=bool(tgt_is_causal),
            memory_is_causal=memory_is_causal,
        )

    def _check(self, ctx: Context, src: jax.Array, tgt: jax.Array) -> None:
        layout = "(B, L, d_model)" if self.batch_first else "(L, B, d_model)"
        for what, x in (("src", src), ("tgt", tgt)):
            check_ndim(ctx, x, (2, 3), what, f"{layout} or unbatched (L, d_model)")
            check_last_dim(ctx, x, self.d_model, what)
        axis = 0 if self.batch_first else 1
        if jnp.ndim(src) != jnp.ndim(tgt) or (
            jnp.ndim(src) == 3 and jnp.shape(src)[axis] != jnp.shape(tgt)[axis]
        ):
            raise ShapeError(
                f"{ctx.path} (Transformer): expected src and tgt with the same batch size "
                f"(axis {axis}, batch_first={self.batch_first}), got shapes {jnp.shape(src)} "
                f"and {jnp.shape(tgt)}"
            )

    @staticmethod
    def generate_square_subsequent_mask(sz: int, dtype: Any = None) -> jax.Array:
        """The (sz, sz) additive causal mask, 0 on and below the diagonal and −inf above
        (:func:`funcnet.functional.generate_square_subsequent_mask`); float32 by default.
        Passing ``tgt_is_causal=True`` instead lets the fused kernel skip the masked half."""
        return F.generate_square_subsequent_mask(sz, jnp.float32 if dtype is None else dtype)


def _positions(
    ctx: Context, x: jax.Array, positions: jax.Array | None, embed_dim: int, batch_first: bool
) -> tuple[jax.Array, int]:
    """Checks x; returns positions shaped to broadcast against x without its last axis."""
    layout = "(B, L, embed_dim)" if batch_first else "(L, B, embed_dim)"
    check_ndim(ctx, x, (2, 3), layout=f"{layout} or unbatched (L, embed_dim)")
    check_last_dim(ctx, x, embed_dim)
    check_input_dtype(ctx, x)
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

    def init(self, key: jax.Array) -> tuple[dict[str, Any], dict[str, Any]]:
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
