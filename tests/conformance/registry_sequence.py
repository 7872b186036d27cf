"""Conformance entries for the sequence layers: recurrent, attention, transformer blocks."""

import jax.numpy as jnp

from funcnet import nn
from tests.conformance._entry import Entry

F32 = "float32"
SEQ = ((5, 2, 3), F32)  # (T, B, input_size)
SEQ_BF = ((2, 5, 3), F32)  # batch-first
TOKENS = ((5, 2, 8), F32)  # (L, B, d_model)
MEMORY = ((6, 2, 8), F32)


def _bad(name: str) -> str:
    return rf"model \({name}\): expected input with last dimension 3"


ENTRIES = [
    Entry("RNN", lambda: nn.RNN(3, 4), (SEQ,), (((5, 2, 4), F32),), _bad("RNN")),
    Entry(
        "RNN-relu-2layer-bidirectional-dropout-batch_first",
        lambda: nn.RNN(3, 4, 2, "relu", batch_first=True, dropout=0.5, bidirectional=True),
        (SEQ_BF,),
        train=True,
    ),
    Entry("LSTM", lambda: nn.LSTM(3, 4), (SEQ,), (((5, 2, 4), F32),), _bad("LSTM")),
    Entry(
        "LSTM-proj_size-2layer-bidirectional-dropout-batch_first-lengths",
        lambda: nn.LSTM(3, 4, 2, batch_first=True, dropout=0.3, bidirectional=True, proj_size=2),
        (SEQ_BF,),
        train=True,
        kwargs={"lengths": jnp.array([5, 2])},
    ),
    Entry(
        "LSTM-hoisted-unbatched-cell_state",
        lambda: nn.LSTM(3, 4, input_projection="hoisted"),
        (((5, 3), F32),),
        (((5, 2, 2, 3), F32),),
        r"model \(LSTM\): expected 2 or 3-D input",
        output=lambda out: out[1][1],
    ),
    Entry("GRU", lambda: nn.GRU(3, 4), (SEQ,), (((5, 2, 4), F32),), _bad("GRU")),
    Entry(
        "GRU-bidirectional-lengths-nobias-h_n",
        lambda: nn.GRU(3, 4, bias=False, bidirectional=True),
        (SEQ,),
        kwargs={"lengths": jnp.array([3, 5])},
        output=lambda out: out[1],
    ),
    Entry("RNNCell", lambda: nn.RNNCell(3, 4), (((2, 3), F32),), (((2, 4), F32),), _bad("RNNCell")),
    Entry(
        "LSTMCell", lambda: nn.LSTMCell(3, 4), (((2, 3), F32),), (((2, 4), F32),), _bad("LSTMCell")
    ),
    Entry("GRUCell", lambda: nn.GRUCell(3, 4), (((2, 3), F32),), (((2, 4), F32),), _bad("GRUCell")),
    Entry(
        "MultiheadAttention",
        lambda: nn.MultiheadAttention(8, 2),
        (TOKENS, TOKENS, TOKENS),
        (((5, 2, 7), F32), TOKENS, TOKENS),
        r"model \(MultiheadAttention\): expected query with last dimension 8",
    ),
    Entry(
        "MultiheadAttention-add_bias_kv-add_zero_attn-key_padding-weights-per-head",
        lambda: nn.MultiheadAttention(8, 2, dropout=0.2, add_bias_kv=True, add_zero_attn=True),
        (TOKENS, MEMORY, MEMORY),
        (TOKENS, MEMORY, ((6, 2, 5), F32)),
        r"model \(MultiheadAttention\): expected value with last dimension 8",
        train=True,
        kwargs={
            "average_attn_weights": False,
            "key_padding_mask": jnp.array([[False] * 6, [False] * 4 + [True] * 2]),
        },
        output=lambda out: out[1],  # (B, num_heads, L, S + 2)
    ),
    Entry(
        "MultiheadAttention-fused-causal-batch_first-dropout",
        lambda: nn.MultiheadAttention(8, 2, dropout=0.2, batch_first=True),
        (((2, 5, 8), F32),) * 3,
        train=True,
        kwargs={"need_weights": False, "is_causal": True},
    ),
    Entry(
        "MultiheadAttention-kdim-vdim-nobias",
        lambda: nn.MultiheadAttention(8, 2, bias=False, kdim=3, vdim=5),
        (TOKENS, ((6, 2, 3), F32), ((6, 2, 5), F32)),
        (TOKENS, ((6, 2, 8), F32), ((6, 2, 5), F32)),
        r"model \(MultiheadAttention\): expected key with last dimension 3",
    ),
    Entry(
        "TransformerEncoderLayer",
        lambda: nn.TransformerEncoderLayer(8, 2, 16),
        (TOKENS,),
        (((5, 2, 6), F32),),
        r"model \(TransformerEncoderLayer\): expected src with last dimension 8",
        train=True,
    ),
    Entry(
        "TransformerEncoderLayer-prenorm-gelu-causal",
        lambda: nn.TransformerEncoderLayer(8, 2, 16, activation="gelu", norm_first=True),
        (TOKENS,),
        kwargs={"is_causal": True},
    ),
    Entry(
        "TransformerDecoderLayer",
        lambda: nn.TransformerDecoderLayer(8, 2, 16, batch_first=True),
        (((2, 5, 8), F32), ((2, 6, 8), F32)),
        (((2, 5, 8), F32), ((2, 6, 4), F32)),
        r"model \(TransformerDecoderLayer\): expected memory with last dimension 8",
        train=True,
        kwargs={"tgt_is_causal": True},
    ),
    Entry(
        "TransformerEncoder",
        lambda: nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16), 2, nn.LayerNorm(8)),
        (TOKENS,),
        (((5, 2, 6), F32),),
        r"model\.layers\.0 \(TransformerEncoderLayer\)",
        train=True,
    ),
    Entry(
        "TransformerDecoder",
        lambda: nn.TransformerDecoder(nn.TransformerDecoderLayer(8, 2, 16, norm_first=True), 2),
        (TOKENS, MEMORY),
        (TOKENS, ((6, 2, 5), F32)),
        r"model\.layers\.0 \(TransformerDecoderLayer\): expected memory",
    ),
    Entry(
        "Transformer",
        lambda: nn.Transformer(8, 2, 1, 1, 16),
        (MEMORY, TOKENS),
        (MEMORY, ((5, 2, 6), F32)),
        r"model \(Transformer\): expected tgt with last dimension 8",
        kwargs={"tgt_is_causal": True},
    ),
    Entry(
        "SinusoidalPositionalEmbedding",
        lambda: nn.SinusoidalPositionalEmbedding(8),
        (TOKENS,),
        (((5, 2, 6), F32),),
        r"model \(SinusoidalPositionalEmbedding\): expected input with last dimension 8",
        grad=False,
    ),
    Entry(
        "LearnedPositionalEmbedding",
        lambda: nn.LearnedPositionalEmbedding(6, 8, batch_first=True),
        (((2, 5, 8), F32),),
        (((2, 7, 8), F32),),
        r"model \(LearnedPositionalEmbedding\): sequence length 7 exceeds max_len 6",
    ),
]
