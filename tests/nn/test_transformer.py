"""Transformer blocks and positional embeddings against NumPy written here and PyTorch, and
a decoder-only causal language model trained on a toy next-token task."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet.functional as F
from funcnet import nn, optim
from funcnet.errors import ShapeError
from tests._numerics import check_grads_float64
from tests.conftest import torch_or_skip

D, NH, FF, L, S, B = 8, 2, 16, 5, 6, 3


def _flat_to_funcnet(flat):
    """PyTorch state_dict (flat, (out, in) weights) -> funcnet params (nested, (in, out))."""
    return nn.unflatten_dict({k: jnp.asarray(v.T if v.ndim == 2 else v) for k, v in flat.items()})


def _random_torch_params(model, seed=0):
    """A PyTorch-layout flat dict for ``model`` with random values (no torch needed)."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.key(0))[0]
    return {
        k: (rng.standard_normal(v.shape[::-1]) * 0.3).astype(np.float32)
        for k, v in nn.state_dict(shapes).items()
    }


# ------------------------------------------------------------------ NumPy reference
def np_layer_norm(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def np_attention(p, prefix, x, mem, causal=False):
    """Self/cross attention on batch-first inputs, PyTorch's layout, causal optional."""
    wq, wk, wv = np.split(p[f"{prefix}.in_proj_weight"], 3)
    bq, bk, bv = np.split(p[f"{prefix}.in_proj_bias"], 3)
    q, k, v = x @ wq.T + bq, mem @ wk.T + bk, mem @ wv.T + bv
    d = D // NH
    out = np.zeros_like(q)
    for h in range(NH):
        sl = slice(h * d, (h + 1) * d)
        logits = q[..., sl] @ np.swapaxes(k[..., sl], -1, -2) / math.sqrt(d)
        if causal:
            logits = np.where(np.tril(np.ones(logits.shape[-2:], bool)), logits, -np.inf)
        w = np.exp(logits - logits.max(-1, keepdims=True))
        out[..., sl] = (w / w.sum(-1, keepdims=True)) @ v[..., sl]
    return out @ p[f"{prefix}.out_proj.weight"].T + p[f"{prefix}.out_proj.bias"]


def np_encoder_layer(p, x, norm_first, activation, causal):
    # in float64 (float32 operands would make NumPy's matmuls float32, CPU-dependent BLAS)
    p, x = {k: np.asarray(v, np.float64) for k, v in p.items()}, np.asarray(x, np.float64)

    def ff(y):
        h = y @ p["linear1.weight"].T + p["linear1.bias"]
        h = np.maximum(h, 0) if activation == "relu" else h * 0.5 * (1 + _erf(h / math.sqrt(2)))
        return h @ p["linear2.weight"].T + p["linear2.bias"]

    def norm(i, y):
        return np_layer_norm(y, p[f"norm{i}.weight"], p[f"norm{i}.bias"])

    if norm_first:
        x = x + np_attention(p, "self_attn", norm(1, x), norm(1, x), causal)
        return x + ff(norm(2, x))
    x = norm(1, x + np_attention(p, "self_attn", x, x, causal))
    return norm(2, x + ff(x))


_erf = np.vectorize(math.erf)


def _jit_apply(model, params, *args, train=False, key=None, **static):
    fn = jax.jit(lambda p, a, k: model.apply(p, {}, *a, train=train, key=k, **static)[0])
    return fn(params, tuple(jnp.asarray(a) for a in args), key)


# --------------------------------------------------------------------------- tests
@pytest.mark.parametrize(
    ("norm_first", "activation"), [(False, "relu"), (True, "gelu")], ids=["post-relu", "pre-gelu"]
)
def test_encoder_layer_matches_numpy(norm_first, activation):
    model = nn.TransformerEncoderLayer(
        D, NH, FF, dropout=0.0, activation=activation, norm_first=norm_first, batch_first=True
    )
    flat = _random_torch_params(model)
    x = np.random.default_rng(1).standard_normal((B, L, D)).astype(np.float32)
    got = _jit_apply(model, _flat_to_funcnet(flat), x, is_causal=True)
    want = np_encoder_layer(flat, x, norm_first, activation, causal=True)
    # float32 against float64: sums of <= 16 terms (|w| < 1.2, sum|terms| < 10) in the
    # projections, attention, feed-forward and layer norms, ~sqrt(16) U32 * 10 ~ 2e-6 at
    # most in practice; 1.6e-7 measured, 60x inside rtol=atol=1e-5 (tests/_numerics.py)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _torch_to_funcnet(tm):
    return _flat_to_funcnet({k: v.numpy() for k, v in tm.state_dict().items()})


@pytest.mark.torch
@pytest.mark.parametrize(
    ("norm_first", "activation"), [(False, "relu"), (True, "gelu")], ids=["post-relu", "pre-gelu"]
)
def test_stacks_match_pytorch(norm_first, activation):
    torch = torch_or_skip()
    torch.manual_seed(0)
    kw = {"dropout": 0.0, "activation": activation, "norm_first": norm_first}
    t_enc = torch.nn.TransformerEncoder(
        torch.nn.TransformerEncoderLayer(D, NH, FF, **kw),
        2,
        norm=torch.nn.LayerNorm(D),
        enable_nested_tensor=False,
    ).eval()
    t_dec = torch.nn.TransformerDecoder(torch.nn.TransformerDecoderLayer(D, NH, FF, **kw), 2).eval()
    enc = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(D, NH, FF, **kw), 2, norm=nn.LayerNorm(D)
    )
    dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(D, NH, FF, **kw), 2)
    for f_model, t_model in ((enc, t_enc), (dec, t_dec)):  # PyTorch's names and shapes (transposed)
        names = {k: v.shape for k, v in nn.state_dict(f_model.init(jax.random.key(0))[0]).items()}
        assert names == {k: tuple(v.shape[::-1]) for k, v in t_model.state_dict().items()}

    rng = np.random.default_rng(2)
    src = rng.standard_normal((L, B, D)).astype(np.float32)
    mem = rng.standard_normal((S, B, D)).astype(np.float32)
    src_kpm = np.zeros((B, L), bool)
    src_kpm[0, -2:] = True
    mem_kpm = np.zeros((B, S), bool)
    mem_kpm[1, -3:] = True
    src_kpm_float = np.where(src_kpm, -np.inf, 0).astype(np.float32)  # same kind as causal
    causal = torch.nn.Transformer.generate_square_subsequent_mask(L)
    np.testing.assert_array_equal(F.generate_square_subsequent_mask(L), causal.numpy())
    with torch.no_grad():
        want_enc = t_enc(
            torch.tensor(src), mask=causal, src_key_padding_mask=torch.tensor(src_kpm_float)
        )
        want_dec = t_dec(
            torch.tensor(src),
            torch.tensor(mem),
            tgt_mask=causal,
            memory_key_padding_mask=torch.tensor(mem_kpm),
        )
    got_enc = jax.jit(
        lambda p, x, m: enc.apply(p, {}, x, src_key_padding_mask=m, is_causal=True)[0]
    )(_torch_to_funcnet(t_enc), src, src_kpm_float)
    got_dec = jax.jit(
        lambda p, x, m, k: dec.apply(p, {}, x, m, tgt_is_causal=True, memory_key_padding_mask=k)[0]
    )(_torch_to_funcnet(t_dec), src, mem, mem_kpm)
    # two float32 computations of stacks of 2 layers (as test_encoder_layer_matches_numpy,
    # each ~1e-6 off the exact values in practice): 5e-7 measured, 40x inside
    np.testing.assert_allclose(got_enc, want_enc.numpy(), rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(got_dec, want_dec.numpy(), rtol=1e-5, atol=2e-5)


def test_stack_layers_are_independent_copies():
    layer = nn.TransformerEncoderLayer(D, NH, FF)
    enc = nn.TransformerEncoder(layer, 3)
    params, _ = enc.init(jax.random.key(0))
    assert sorted(params["layers"]) == ["0", "1", "2"]
    w0 = params["layers"]["0"]["linear1"]["weight"]
    assert not np.allclose(w0, params["layers"]["1"]["linear1"]["weight"])

    class Custom(nn.Module):  # not a dataclass: copied with deepcopy
        def __init__(self):
            self.inner = nn.Linear(D, D)

        def forward(self, ctx, x, src_mask=None, src_key_padding_mask=None, is_causal=False):
            return self.inner(ctx, x)

    custom = Custom()
    custom.init(jax.random.key(0))
    stack = nn.TransformerEncoder(custom, 2)
    p, _ = stack.init(jax.random.key(0))
    out, _ = stack.apply(p, {}, jnp.ones((L, D)))
    assert out.shape == (L, D) and sorted(p["layers"]) == ["0", "1"]


def test_dropout_is_active_only_in_training():
    model = nn.TransformerDecoderLayer(D, NH, FF, dropout=0.3, batch_first=True)
    params, _ = model.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (B, L, D))
    mem = jax.random.normal(jax.random.key(2), (B, S, D))
    ev = _jit_apply(model, params, x, mem)
    t1 = _jit_apply(model, params, x, mem, train=True, key=jax.random.key(3))
    t2 = _jit_apply(model, params, x, mem, train=True, key=jax.random.key(3))
    np.testing.assert_array_equal(t1, t2)
    assert not np.allclose(t1, ev)


def test_gradients_match_finite_differences():
    model = nn.TransformerEncoderLayer(D, NH, FF, dropout=0.0, batch_first=True, norm_first=True)
    params = _flat_to_funcnet(_random_torch_params(model))
    x = jax.random.normal(jax.random.key(1), (2, 4, D))

    def f(p, x):
        # need_weights=False inside the layer: on CPU the explicit attention runs, whose
        # logits and softmax are float64 for float64 inputs (JAX's XLA path would take them
        # in float32, and its float32 rounding would need a float32-sized bound)
        return jnp.sum(jnp.sin(model.apply(p, {}, x)[0]))

    check_grads_float64(jax.jit(f), (params, x))


class TinyLM(nn.Module):
    """A decoder-only (GPT-style) model: token + learned position embeddings, a causal
    pre-LN stack, a vocabulary head."""

    def __init__(self, vocab, d_model, layers, max_len):
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.LearnedPositionalEmbedding(max_len, d_model, batch_first=True)
        block = nn.TransformerEncoderLayer(
            d_model, 4, 2 * d_model, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(block, layers, norm=nn.LayerNorm(d_model))
        self.head = nn.Linear(d_model, vocab)

    def forward(self, ctx, ids):
        x = self.pos(ctx, self.embed(ctx, ids))
        return self.head(ctx, self.blocks(ctx, x, is_causal=True))


def test_causal_language_model_learns_to_copy():
    """Sequences [a b c d a b c d]: the second half is predictable only by attending four
    tokens back, so a causal model reaches high accuracy there only if attention works."""
    vocab, half = 8, 4
    model = TinyLM(vocab, 32, 2, 2 * half)
    params, _ = model.init(jax.random.key(0))
    opt = optim.adam(1e-2)
    opt_state = opt.init(params)

    def batch(key):
        first = jax.random.randint(key, (64, half), 0, vocab)
        return jnp.concatenate([first, first], axis=1)

    def loss_fn(p, ids):
        logits, _ = model.apply(p, {}, ids[:, :-1])
        logp = jax.nn.log_softmax(logits[:, half - 1 :])
        target = ids[:, half:]
        return -jnp.mean(jnp.take_along_axis(logp, target[..., None], -1)), logits

    @jax.jit
    def step(p, s, key):
        (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, batch(key))
        updates, s = opt.update(grads, s, p)
        return optim.apply_updates(p, updates), s, loss

    for i in range(200):
        params, opt_state, loss = step(params, opt_state, jax.random.key(i + 1))
    predict = jax.jit(lambda p, ids: model.apply(p, {}, ids[:, :-1])[0])
    ids = batch(jax.random.key(10_000))
    logits = predict(params, ids)
    accuracy = float(jnp.mean(jnp.argmax(logits[:, half - 1 :], -1) == ids[:, half:]))
    assert accuracy > 0.95, (accuracy, float(loss))

    # causality: changing later tokens does not change earlier logits
    changed = ids.at[:, 5:].set((ids[:, 5:] + 1) % vocab)
    later = predict(params, changed)
    # masked keys add exact zeros, so the earlier logits are computed by the same float32
    # operations on the same values: identical (atol only allows a reordering)
    np.testing.assert_allclose(later[:, :5], logits[:, :5], atol=1e-5)
    assert not np.allclose(later[:, 5:], logits[:, 5:])


def test_sinusoidal_embedding_matches_the_pytorch_tutorial_formula():
    max_len, d = 7, 6
    position = np.arange(max_len)[:, None]
    div_term = np.exp(np.arange(0, d, 2) * (-math.log(10000.0) / d))
    pe = np.zeros((max_len, d))
    pe[:, 0::2] = np.sin(position * div_term)
    pe[:, 1::2] = np.cos(position * div_term)
    # float32 angles pos * f: f = 1 (exact) for the first pair, else f < 0.05, pos < 7, so
    # angles are within 3 U32 * 0.3 and sin/cos within ~1e-7 in the worst case
    np.testing.assert_allclose(F.sinusoidal_embedding(jnp.arange(max_len), d), pe, atol=1e-6)

    x = jax.random.normal(jax.random.key(0), (max_len, 2, d))
    layer = nn.SinusoidalPositionalEmbedding(d)
    y, _ = layer.apply({}, {}, x)
    # float32 sums x + pe (|x| < 4): each side rounded once (U32 * 5) plus the ~1e-7 of pe
    np.testing.assert_allclose(y, x + pe[:, None].astype(np.float32), atol=1e-6)
    bf, _ = nn.SinusoidalPositionalEmbedding(d, batch_first=True).apply({}, {}, x.swapaxes(0, 1))
    np.testing.assert_allclose(bf, y.swapaxes(0, 1), atol=1e-6)  # the same sums, transposed
    shifted, _ = layer.apply({}, {}, x[:3], positions=jnp.arange(4, 7)[:, None])
    np.testing.assert_allclose(shifted, x[:3] + pe[4:7, None].astype(np.float32), atol=1e-6)  # as y


def test_learned_positional_embedding():
    layer = nn.LearnedPositionalEmbedding(6, D, batch_first=True)
    params, _ = layer.init(jax.random.key(0))
    assert params["weight"].shape == (6, D) and float(jnp.std(params["weight"])) < 0.05
    x = jnp.zeros((B, 4, D))
    y, _ = layer.apply(params, {}, x)
    np.testing.assert_allclose(y, jnp.broadcast_to(params["weight"][:4], (B, 4, D)))
    with pytest.raises(
        ShapeError, match=r"model \(LearnedPositionalEmbedding\): sequence length 7"
    ):
        layer.apply(params, {}, jnp.zeros((B, 7, D)))
    with pytest.raises(ShapeError, match=r"model \(LearnedPositionalEmbedding\): expected input"):
        layer.apply(params, {}, jnp.zeros((B, 4, D + 1)))


def test_errors_name_the_layer():
    model = nn.TransformerEncoderLayer(D, NH, FF)
    params, _ = model.init(jax.random.key(0))
    with pytest.raises(ShapeError, match=r"model \(TransformerEncoderLayer\): expected src with"):
        model.apply(params, {}, jnp.zeros((L, B, D + 1)))
    dec = nn.TransformerDecoderLayer(D, NH, FF)
    dparams, _ = dec.init(jax.random.key(0))
    with pytest.raises(ShapeError, match=r"model \(TransformerDecoderLayer\): expected memory"):
        dec.apply(dparams, {}, jnp.zeros((L, B, D)), jnp.zeros((S, B, D - 1)))
    with pytest.raises(ValueError, match="activation"):
        nn.TransformerEncoderLayer(D, NH, activation="swish")
    with pytest.raises(ValueError, match="divisible by num_heads"):
        nn.TransformerEncoderLayer(D, 3)


def test_docstring_examples_run():
    import doctest

    import funcnet.nn._transformer as layers

    result = doctest.testmod(layers)
    assert result.attempted > 0 and result.failed == 0
