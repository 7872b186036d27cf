"""Sequence classifiers: an LSTM and a Transformer encoder over token or feature sequences.

Both models are the classifiers of PyTorch's text-classification tutorials, with their
attribute names (``embedding``, ``lstm``, ``pos_embedding``, ``encoder``, ``fc``), so a
PyTorch model written with those names loads with ``models.from_torch``. Inputs are
batch-first, (N, T) token ids or (N, T, features).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from funcnet import nn
from funcnet.errors import ShapeError, check_dtype, check_ndim
from funcnet.models._weights import Pretrainable

__all__ = ["LSTMClassifier", "TransformerClassifier"]


class LSTMClassifier(Pretrainable):
    """An LSTM over a sequence, then a Linear on its last step (the tutorials' classifier).

    ``embedding`` (optional) → ``lstm`` (``nn.LSTM``, batch-first, zero initial state)
    → dropout → ``fc``. The features ``fc`` reads are the top layer's final hidden state
    ``h_n[-1]`` (the output at the last step); bidirectional, ``concat(h_n[-2], h_n[-1])``:
    the forward direction's last step and the backward direction's first step, PyTorch
    users' ``torch.cat((hidden[-2], hidden[-1]), dim=1)``. With ``lengths`` (right-padded
    sequences, PyTorch's ``pack_padded_sequence``) the forward direction stops at each
    sequence's last valid step and the backward one starts there.

    Parameters: ``embedding.weight`` (vocab_size, input_size) when ``vocab_size`` is
    given; ``lstm.weight_ih_l{k}[_reverse]``, ``lstm.weight_hh_l{k}``,
    ``lstm.bias_ih_l{k}``, ``lstm.bias_hh_l{k}`` (torch.nn.LSTM's); ``fc.weight``,
    ``fc.bias``. Count, with D = 2 if bidirectional else 1, H = hidden_size:
    ``vocab_size·input_size + Σ_layers D·(4H·(in_k + H) + 8H) + D·H·num_classes +
    num_classes``, in_0 = input_size, in_k = D·H after; LSTMClassifier(8, 128, 10) has
    71,946.

    Args:
        input_size: features per time step (the embedding size with ``vocab_size``).
        hidden_size: the LSTM's hidden features H.
        num_classes: output classes.
        num_layers: stacked LSTM layers.
        vocab_size: if given, inputs are token ids looked up in ``embedding``.
        bidirectional: run a backward direction too (``fc`` reads 2·H features).
        dropout: dropout between LSTM layers (``nn.LSTM``'s) and on the features before
            ``fc``, in training mode only.
        weights: a converted weights file (``.safetensors`` / ``.npz``) ``init`` returns.

    ``forward(ctx, x, lengths=None)``: x (N, T, input_size) floating, or (N, T) integer
    token ids with ``vocab_size``; lengths (N,) integers, optional. Returns (N, num_classes)
    logits in the features' dtype (float32 for token ids).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from funcnet.models import LSTMClassifier
        >>> model = LSTMClassifier(16, 32, 2, vocab_size=100, bidirectional=True)
        >>> params, state = model.init(jax.random.key(0))
        >>> logits, _ = model.apply(params, state, jnp.ones((4, 9), jnp.int32))
        >>> logits.shape
        (4, 2)
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_classes: int,
        *,
        num_layers: int = 1,
        vocab_size: int | None = None,
        bidirectional: bool = False,
        dropout: float = 0.0,
        weights: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(weights)
        self.vocab_size = vocab_size
        self.bidirectional = bidirectional
        self.embedding: nn.Embedding | None = (
            None if vocab_size is None else nn.Embedding(vocab_size, input_size)
        )
        self.lstm: nn.LSTM = nn.LSTM(
            input_size,
            hidden_size,
            num_layers,
            batch_first=True,
            dropout=dropout,
            bidirectional=bidirectional,
        )
        self.drop: nn.Dropout = nn.Dropout(dropout)
        self.fc: nn.Linear = nn.Linear(hidden_size * (2 if bidirectional else 1), num_classes)

    def forward(self, ctx: nn.Context, x: jax.Array, lengths: jax.Array | None = None) -> jax.Array:
        if self.embedding is not None:
            check_ndim(ctx, x, 2, "token ids", "(N, T)")
            x = self.embedding(ctx, x)
        else:
            check_ndim(ctx, x, 3, layout="(N, T, input_size)")
        _, (h_n, _) = self.lstm(ctx, x, lengths=lengths)
        features = jnp.concatenate([h_n[-2], h_n[-1]], -1) if self.bidirectional else h_n[-1]
        return self.fc(ctx, self.drop(ctx, features))


class TransformerClassifier(Pretrainable):
    """A Transformer encoder over token ids, mean-pooled, then a Linear.

    ``embedding(ids) + pos_embedding(positions)`` → dropout → ``encoder`` (an
    ``nn.TransformerEncoder`` of ``num_layers`` post-LN ``nn.TransformerEncoderLayer``,
    ReLU, batch-first, PyTorch's defaults) → mean over the non-padding positions → ``fc``.
    With ``pad_id``, tokens equal to it are masked as keys (``src_key_padding_mask``) and
    left out of the mean, and ``embedding``'s ``padding_idx`` is ``pad_id``, so padding
    does not change the output; a sequence of padding only gives ``fc``'s bias.
    Embeddings start N(0, 1), as ``torch.nn.Embedding``.

    Parameters: ``embedding.weight`` (vocab_size, d), ``pos_embedding.weight`` (max_len,
    d), ``encoder.layers.{i}.*`` (torch.nn.TransformerEncoderLayer's), ``fc.*``. Count,
    with d = d_model, f = dim_feedforward, L = num_layers, V = vocab_size, C =
    num_classes: ``(V + max_len)·d + L·(4d² + 2d·f + 9d + f) + d·C + C``; at the
    defaults with V = 10,000 and C = 2: 1,742,338.

    Args:
        vocab_size: the token vocabulary V.
        num_classes: output classes.
        d_model: embedding and model features.
        nhead: attention heads; must divide d_model.
        num_layers: encoder layers.
        dim_feedforward: hidden features of each feed-forward network.
        max_len: the longest sequence (rows of ``pos_embedding``).
        dropout: dropout after the embeddings and in the encoder layers, training only.
        pad_id: the padding token, or None when inputs are not padded.
        weights: a converted weights file (``.safetensors`` / ``.npz``) ``init`` returns.

    ``forward(ctx, ids)``: ids (N, T) integers, T ≤ max_len. Returns (N, num_classes)
    float32 logits.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from funcnet.models import TransformerClassifier
        >>> model = TransformerClassifier(1000, 3, d_model=32, dim_feedforward=64, pad_id=0)
        >>> params, state = model.init(jax.random.key(0))
        >>> logits, _ = model.apply(params, state, jnp.ones((4, 12), jnp.int32))
        >>> logits.shape
        (4, 3)
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        *,
        d_model: int = 128,
        nhead: int = 4,
        num_layers: int = 2,
        dim_feedforward: int = 512,
        max_len: int = 512,
        dropout: float = 0.1,
        pad_id: int | None = None,
        weights: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(weights)
        self.max_len = max_len
        self.pad_id = pad_id
        self.embedding: nn.Embedding = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.pos_embedding: nn.Embedding = nn.Embedding(max_len, d_model)
        self.drop: nn.Dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            d_model, nhead, dim_feedforward, dropout=dropout, batch_first=True
        )
        self.encoder: nn.TransformerEncoder = nn.TransformerEncoder(layer, num_layers)
        self.fc: nn.Linear = nn.Linear(d_model, num_classes)

    def forward(self, ctx: nn.Context, ids: jax.Array) -> jax.Array:
        check_ndim(ctx, ids, 2, "token ids", "(N, T)")
        check_dtype(ctx, ids, "integer", "token ids")
        length = jnp.shape(ids)[1]
        if length > self.max_len:
            raise ShapeError(
                f"{ctx.path} (TransformerClassifier): sequence length {length} exceeds "
                f"max_len {self.max_len} (ids of shape {jnp.shape(ids)})"
            )
        x = self.embedding(ctx, ids) + self.pos_embedding(ctx, jnp.arange(length))
        x = self.drop(ctx, x)
        if self.pad_id is None:
            return self.fc(ctx, jnp.mean(self.encoder(ctx, x), axis=1))
        keep = ids != self.pad_id  # (N, T), True at real tokens
        x = self.encoder(ctx, x, src_key_padding_mask=~keep)
        weights = keep.astype(x.dtype)[..., None]
        count = jnp.maximum(jnp.sum(weights, axis=1), 1.0)
        return self.fc(ctx, jnp.sum(x * weights, axis=1) / count)
