"""Transformer blocks and positional embeddings against NumPy written here and PyTorch, and
a decoder-only causal language model trained on a toy next-token task."""

from __future__ import annotations

import functools
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


def np_attention(p, prefix, x, mem, causal=False, bias=None):
    """Self/cross attention on batch-first inputs, PyTorch's layout, causal optional;
    ``bias`` (broadcastable to (B, L, S)) is added to every head's logits."""
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
        if bias is not None:
            logits = logits + bias
        w = np.exp(logits - logits.max(-1, keepdims=True))
        out[..., sl] = (w / w.sum(-1, keepdims=True)) @ v[..., sl]
    return out @ p[f"{prefix}.out_proj.weight"].T + p[f"{prefix}.out_proj.bias"]


def _np_ff_and_norm(p, activation):
    def ff(y):
        h = y @ p["linear1.weight"].T + p["linear1.bias"]
        h = np.maximum(h, 0) if activation == "relu" else h * 0.5 * (1 + _erf(h / math.sqrt(2)))
        return h @ p["linear2.weight"].T + p["linear2.bias"]

    def norm(i, y):
        return np_layer_norm(y, p[f"norm{i}.weight"], p[f"norm{i}.bias"])

    return ff, norm


def np_encoder_layer(p, x, norm_first, activation, causal, bias=None):
    # in float64 (float32 operands would make NumPy's matmuls float32, CPU-dependent BLAS)
    p, x = {k: np.asarray(v, np.float64) for k, v in p.items()}, np.asarray(x, np.float64)
    ff, norm = _np_ff_and_norm(p, activation)
    if norm_first:
        x = x + np_attention(p, "self_attn", norm(1, x), norm(1, x), causal, bias)
        return x + ff(norm(2, x))
    x = norm(1, x + np_attention(p, "self_attn", x, x, causal, bias))
    return norm(2, x + ff(x))


def np_decoder_layer(p, x, mem, norm_first, self_bias, mem_bias):
    """PyTorch's TransformerDecoderLayer (relu) in float64; biases as np_attention's."""
    p, x = {k: np.asarray(v, np.float64) for k, v in p.items()}, np.asarray(x, np.float64)
    ff, norm = _np_ff_and_norm(p, "relu")

    def sa(y):
        return np_attention(p, "self_attn", y, y, bias=self_bias)

    def mha(y):
        return np_attention(p, "multihead_attn", y, mem, bias=mem_bias)

    if norm_first:
        x = x + sa(norm(1, x))
        x = x + mha(norm(2, x))
        return x + ff(norm(3, x))
    x = norm(1, x + sa(x))
    x = norm(2, x + mha(x))
    return norm(3, x + ff(x))


def np_transformer(flat, src, tgt, layers, norm_first, src_bias, tgt_bias, mem_bias):
    """PyTorch's nn.Transformer (relu) on batch-first inputs from a flat PyTorch-layout dict."""

    def sub(prefix):
        return {k.removeprefix(prefix): v for k, v in flat.items() if k.startswith(prefix)}

    def final_norm(name, y):
        return np_layer_norm(y, *(np.float64(flat[f"{name}.norm.{w}"]) for w in ("weight", "bias")))

    x = src
    for i in range(layers):
        x = np_encoder_layer(sub(f"encoder.layers.{i}."), x, norm_first, "relu", False, src_bias)
    memory = final_norm("encoder", x)
    y = tgt
    for i in range(layers):
        y = np_decoder_layer(sub(f"decoder.layers.{i}."), y, memory, norm_first, tgt_bias, mem_bias)
    return final_norm("decoder", y)


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


def _transformer_masks(rng):
    """PyTorch's masks for nn.Transformer: the additive causal tgt_mask (T, T), a boolean
    memory_mask (T, S) and key padding masks of src and memory (B, S); True = masked."""
    tgt_mask = np.asarray(F.generate_square_subsequent_mask(L))
    memory_mask = rng.random((L, S)) < 0.3
    memory_mask[:, 0] = False  # every query keeps a key
    src_kpm = np.zeros((B, S), bool)
    src_kpm[0, -2:] = True
    mem_kpm = np.zeros((B, S), bool)
    mem_kpm[2, -3:] = True
    return tgt_mask, memory_mask, src_kpm, mem_kpm


@functools.partial(jax.jit, static_argnums=(0, 1))
def _transformer(model, vmapped, params, src, tgt, tgt_mask, memory_mask, src_kpm, mem_kpm):
    """The (time-major) model's output; ``vmapped``: the unbatched model mapped over the
    batch. The NumPy and PyTorch tests share these compiled functions."""

    def run(src, tgt, src_kpm, mem_kpm):
        return model.apply(
            params, {}, src, tgt, tgt_mask=tgt_mask, memory_mask=memory_mask,
            src_key_padding_mask=src_kpm, memory_key_padding_mask=mem_kpm,
        )[0]  # fmt: skip

    if vmapped:  # each element (S, d), (T, d) with key padding masks (S,)
        run = jax.vmap(run, in_axes=(1, 1, 0, 0), out_axes=1)
    return run(src, tgt, src_kpm, mem_kpm)


def _transformer_model(norm_first):
    return nn.Transformer(D, NH, 2, 2, FF, dropout=0.0, norm_first=norm_first)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN-vmap"])
def test_transformer_matches_numpy(norm_first):
    """nn.Transformer: encoder stack + final norm, decoder stack over the memory + final
    norm, with every kind of mask; the pre-LN case maps the unbatched model with vmap."""
    model = _transformer_model(norm_first)
    flat = _random_torch_params(model)
    rng = np.random.default_rng(3)
    src = rng.standard_normal((S, B, D)).astype(np.float32)
    tgt = rng.standard_normal((L, B, D)).astype(np.float32)
    masks = _transformer_masks(rng)
    got = _transformer(model, norm_first, _flat_to_funcnet(flat), src, tgt, *masks)
    tgt_mask, memory_mask, src_kpm, mem_kpm = masks
    mem_bias = np.where(memory_mask | mem_kpm[:, None, :], -np.inf, 0.0)
    src_bias = np.where(src_kpm, -np.inf, 0.0)[:, None]
    batch_first = (src.transpose(1, 0, 2), tgt.transpose(1, 0, 2))
    want = np_transformer(flat, *batch_first, 2, norm_first, src_bias, tgt_mask, mem_bias)
    # float32 against float64: as test_encoder_layer_matches_numpy for each of the six
    # blocks and two norms (~1e-6 each in practice, renormalised by the LayerNorms);
    # 3e-7 measured, 30x inside
    np.testing.assert_allclose(got, want.transpose(1, 0, 2), rtol=1e-5, atol=1e-5)


@pytest.mark.torch
@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")
def test_transformer_matches_pytorch():
    torch = torch_or_skip()
    rng = np.random.default_rng(4)
    src = rng.standard_normal((S, B, D)).astype(np.float32)
    tgt = rng.standard_normal((L, B, D)).astype(np.float32)
    masks = _transformer_masks(rng)
    t_masks = dict(zip(("tgt_mask", "memory_mask", "src_key_padding_mask",
                        "memory_key_padding_mask"), map(torch.tensor, masks)))  # fmt: skip
    np.testing.assert_array_equal(
        nn.Transformer.generate_square_subsequent_mask(L),
        torch.nn.Transformer.generate_square_subsequent_mask(L),
    )
    for norm_first in (False, True):
        torch.manual_seed(0)
        tm = torch.nn.Transformer(D, NH, 2, 2, FF, dropout=0.0, norm_first=norm_first).eval()
        model = _transformer_model(norm_first)
        names = jax.eval_shape(model.init, jax.random.key(0))[0]
        want_names = {k: tuple(v.shape[::-1]) for k, v in tm.state_dict().items()}
        assert {k: v.shape for k, v in nn.state_dict(names).items()} == want_names
        want = tm(torch.tensor(src), torch.tensor(tgt), **t_masks).detach().numpy()
        got = _transformer(model, norm_first, _torch_to_funcnet(tm), src, tgt, *masks)
        # two float32 computations of 2 + 2 layers, each ~1e-6 off the exact values in
        # practice (test_transformer_matches_numpy): 6e-7 measured, 30x inside
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5, err_msg=f"{norm_first=}")


def test_transformer_init_names_and_errors():
    """PyTorch's names, Xavier-uniform for every >1-D parameter (the stacks' too), the
    custom encoder's, and errors naming the Transformer."""
    model = nn.Transformer(16, 2, 2, 1, 64)
    params, _ = model.init(jax.random.key(0))
    flat = nn.state_dict(params)
    assert {k.split(".")[0] for k in flat} == {"encoder", "decoder"}
    assert {"encoder.norm.weight", "decoder.norm.bias", "decoder.layers.0.norm3.weight"} <= set(
        flat
    )
    assert (
        "encoder.layers.1.self_attn.in_proj_weight" in flat
        and "decoder.layers.1.norm1.bias" not in flat
    )
    # Xavier-uniform: |w| <= sqrt(6 / (fan_in + fan_out)) and |w| / bound ~ U(0, 1) (mean
    # 1/2; 0.04 is > 10 standard errors for the ~1000+ draws per weight). Linear's default
    # U(±1/sqrt(fan_in)) would give linear2.weight (64 -> 16) mean |w| / bound 0.25.
    for name, w in flat.items():
        if w.ndim > 1:
            ratio = np.abs(np.asarray(w)) / np.sqrt(6 / sum(w.shape))
            assert ratio.max() <= 1 and abs(ratio.mean() - 0.5) < 0.04, name
        elif "norm" in name:
            assert np.all(w == (1.0 if name.endswith("weight") else 0.0)), name

    custom = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 64), 1)
    cp, _ = nn.Transformer(16, 2, 1, 1, 64, custom_encoder=custom).init(jax.random.key(0))
    assert "norm" not in cp["encoder"] and sorted(cp) == ["decoder", "encoder"]
    w = cp["encoder"]["layers"]["0"]["linear2"]["weight"]  # redrawn: Xavier, not Linear's
    assert abs(float(jnp.mean(jnp.abs(w))) / np.sqrt(6 / 80) - 0.5) < 0.04

    src, tgt = (
        jax.ShapeDtypeStruct((S, B, 16), jnp.float32),
        jax.ShapeDtypeStruct((L, B, 16), jnp.float32),
    )
    shape = lambda *a: jax.eval_shape(lambda p, *x: model.apply(p, {}, *x)[0], params, *a)
    assert shape(src, tgt).shape == (L, B, 16)
    with pytest.raises(
        ShapeError, match=r"model \(Transformer\): expected tgt with last dimension 16"
    ):
        shape(src, jax.ShapeDtypeStruct((L, B, 8), jnp.float32))
    with pytest.raises(
        ShapeError, match=r"model \(Transformer\): expected src and tgt with the same batch size"
    ):
        shape(src, jax.ShapeDtypeStruct((L, B + 1, 16), jnp.float32))
    mask = nn.Transformer.generate_square_subsequent_mask(4, jnp.bfloat16)
    assert mask.dtype == jnp.bfloat16
    np.testing.assert_array_equal(mask, F.generate_square_subsequent_mask(4, jnp.bfloat16))


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
    """A whole nn.Transformer (pre-LN): an encoder layer, a decoder layer (self- and
    cross-attention) and both final norms, in one check."""
    model = nn.Transformer(D, NH, 1, 1, FF, dropout=0.0, batch_first=True, norm_first=True)
    params = _flat_to_funcnet(_random_torch_params(model))
    src = jax.random.normal(jax.random.key(1), (2, 4, D))
    tgt = jax.random.normal(jax.random.key(2), (2, 3, D))

    def f(p, src, tgt):
        # need_weights=False inside the layers: on CPU the explicit attention runs, whose
        # logits and softmax are float64 for float64 inputs (JAX's XLA path would take them
        # in float32, and its float32 rounding would need a float32-sized bound)
        return jnp.sum(jnp.sin(model.apply(p, {}, src, tgt, tgt_is_causal=True)[0]))

    check_grads_float64(jax.jit(f), (params, src, tgt))


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
