"""The sequence zoo: LSTM and Transformer classifiers, GPT-2.

Parameter counts against formulas written here and GPT-2 small's published count; outputs
against PyTorch models written here (GPT-2 with Hugging Face's key names and Conv1D
(in, out) weights), loaded through each module's ``convert_torch``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnet import models, nn
from funcnet.errors import ShapeError
from funcnet.models import (
    GPT2,
    LSTMClassifier,
    TransformerClassifier,
    generate,
    gpt2_small,
    save_weights,
)

# A small GPT-2 for forward checks (Hugging Face's config names).
TINY = {"vocab_size": 100, "n_positions": 32, "n_embd": 64, "n_layer": 2, "n_head": 4}


def _count(model):
    return nn.num_parameters(jax.eval_shape(model.init, jax.random.key(0))[0])


def _ids(shape, vocab, seed=0, low=0):
    return jnp.asarray(np.random.default_rng(seed).integers(low, vocab, shape), jnp.int32)


def _eval(model):
    """``model``'s jitted eval-mode forward, ``(params, *inputs) -> output``."""
    return jax.jit(lambda params, *inputs: model.apply(params, {}, *inputs)[0])


# ------------------------------------------------------------------ parameter counts
def test_gpt2_small_parameter_count():
    # Hugging Face's gpt2: 124,439,808 parameters (lm_head tied to wte).
    assert _count(gpt2_small()) == 124_439_808


def test_gpt2_parameter_names_are_hugging_faces():
    shapes, state = jax.eval_shape(GPT2(**TINY).init, jax.random.key(0))
    flat = nn.state_dict(shapes)
    assert state == {}
    assert flat["h.attn.c_attn.weight"].shape == (2, 64, 192)  # (n_layer, in, out)
    assert flat["h.mlp.c_fc.weight"].shape == (2, 64, 256)
    want = {"wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias"}
    for name in ("ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj"):
        want |= {f"h.{name}.weight", f"h.{name}.bias"}
    assert set(flat) == want


def _lstm_count(input_size, hidden, classes, layers=1, vocab=None, bidirectional=False):
    d = 2 if bidirectional else 1
    total = (vocab or 0) * input_size + d * hidden * classes + classes
    for k in range(layers):
        n_in = input_size if k == 0 else d * hidden
        total += d * (4 * hidden * (n_in + hidden) + 8 * hidden)
    return total


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"num_layers": 2, "bidirectional": True}, {"vocab_size": 50, "num_layers": 3}],
)
def test_lstm_classifier_parameter_count(kwargs):
    model = LSTMClassifier(8, 16, 5, **kwargs)
    want = _lstm_count(
        8, 16, 5, kwargs.get("num_layers", 1), kwargs.get("vocab_size"),
        kwargs.get("bidirectional", False),
    )  # fmt: skip
    assert _count(model) == want


def test_transformer_classifier_parameter_count():
    v, c, d, f, layers, max_len = 10_000, 2, 128, 512, 2, 512
    per_layer = (3 * d * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d) + 4 * d
    want = (v + max_len) * d + layers * per_layer + d * c + c
    assert want == 1_742_338  # the count the docstring states
    assert _count(TransformerClassifier(v, c)) == want


# ------------------------------------------------------------------ shapes, jit, train
@pytest.fixture(scope="module")
def gpt2_tiny():
    """A small GPT-2, its parameters and its jitted eval forward (shared: compiled once)."""
    model = GPT2(**TINY)
    return model, model.init(jax.random.key(0))[0], _eval(model)


@pytest.fixture(scope="module")
def classifier():
    """A one-layer TransformerClassifier with pad_id 0, its parameters, eval forward."""
    model = TransformerClassifier(
        50, 3, d_model=16, nhead=2, num_layers=1, dim_feedforward=32, max_len=12, pad_id=0
    )
    return model, model.init(jax.random.key(0))[0], _eval(model)


def test_lstm_classifier_shapes_jit_and_dropout():
    model = LSTMClassifier(6, 12, 3, num_layers=2, dropout=0.5)
    params, state = model.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (4, 7, 6))

    @jax.jit
    def run(params, x, key):
        return model.apply(params, state, x, train=True, key=key)[0]

    eval_out = _eval(model)(params, x)
    assert eval_out.shape == (4, 3) and eval_out.dtype == jnp.float32
    a, b = run(params, x, jax.random.key(2)), run(params, x, jax.random.key(3))
    assert a.shape == (4, 3)
    assert not np.allclose(a, b) and not np.allclose(a, eval_out)
    vocab = LSTMClassifier(6, 12, 3, vocab_size=10)
    with pytest.raises(ShapeError, match="token ids"):
        vocab.apply(*vocab.init(jax.random.key(0)), x)


def test_lstm_classifier_lengths_ignore_padding():
    model = LSTMClassifier(4, 8, 2, vocab_size=20, bidirectional=True)
    params, _ = model.init(jax.random.key(0))
    ids = _ids((2, 5), 20, low=1)
    padded = jnp.concatenate([ids, jnp.zeros((2, 3), jnp.int32)], axis=1)
    run = _eval(model)
    want = run(params, ids)
    np.testing.assert_allclose(run(params, padded, jnp.array([5, 5])), want, rtol=1e-5, atol=1e-6)


def test_transformer_classifier_jit_and_dropout(classifier):
    model, params, _ = classifier
    ids = _ids((2, 12), 50)
    run = jax.jit(lambda p, ids, k: model.apply(p, {}, ids, train=True, key=k)[0])
    a, b = run(params, ids, jax.random.key(1)), run(params, ids, jax.random.key(2))
    assert a.shape == (2, 3) and a.dtype == jnp.float32 and not np.allclose(a, b)
    with pytest.raises(ValueError, match="PRNG key"):
        model.apply(params, {}, ids, train=True)
    with pytest.raises(ShapeError, match="max_len 12"):
        model.apply(params, {}, _ids((2, 13), 50))


def test_transformer_classifier_padding_does_not_change_output(classifier):
    _, params, run = classifier
    ids = _ids((2, 9), 50, low=1)
    ids = ids.at[1, 6:].set(0)  # row 1 is 6 tokens long
    padded = jnp.concatenate([ids, jnp.zeros((2, 3), jnp.int32)], axis=1)
    np.testing.assert_allclose(run(params, padded), run(params, ids), rtol=1e-5, atol=1e-5)
    # Without pad_id the padding is attended to and averaged: the outputs differ.
    unmasked = _eval(
        TransformerClassifier(
            50, 3, d_model=16, nhead=2, num_layers=1, dim_feedforward=32, max_len=12
        )
    )
    assert not np.allclose(unmasked(params, ids), unmasked(params, padded), atol=1e-3)


def test_gpt2_causal_jit_and_dropout(gpt2_tiny):
    model, params, run = gpt2_tiny
    ids = _ids((2, 9), 100)
    changed = ids.at[:, 5].set((ids[:, 5] + 1) % 100)
    a, b = run(params, ids), run(params, changed)
    assert a.shape == (2, 9, 100) and a.dtype == jnp.float32
    np.testing.assert_array_equal(a[:, :5], b[:, :5])  # earlier positions never see it
    assert not np.allclose(a[:, 5:], b[:, 5:])
    train = jax.jit(lambda p, ids, k: model.apply(p, {}, ids, train=True, key=k)[0])
    t1, t2 = train(params, ids, jax.random.key(1)), train(params, ids, jax.random.key(1))
    np.testing.assert_array_equal(t1, t2)  # the same key, the same dropout masks
    assert not np.allclose(t1, a, atol=1e-3)
    with pytest.raises(ShapeError, match="n_positions 32"):
        model.apply(params, {}, _ids((1, 33), 100))


def test_gpt2_weights_file_round_trip(gpt2_tiny, tmp_path):
    _, params, _ = gpt2_tiny
    path = save_weights(tmp_path / "gpt.npz", params)
    loaded, _ = GPT2(**TINY, weights=path).init(jax.random.key(1))
    jax.tree.map(np.testing.assert_array_equal, loaded, params)


def test_generate_is_greedy_and_top_k_one_is_greedy(gpt2_tiny):
    model, params, run = gpt2_tiny
    prompt = _ids((2, 4), 100)
    out = generate(model, params, prompt, 5)
    assert out.shape == (2, 9) and out.dtype == jnp.int32
    np.testing.assert_array_equal(out[:, :4], prompt)
    # Causality: logits at j depend on tokens <= j only, so greedy means argmax(logits[j])
    # is token j + 1 throughout the generated part.
    np.testing.assert_array_equal(jnp.argmax(run(params, out)[:, 3:-1], -1), out[:, 4:])
    sampled = generate(model, params, prompt, 5, key=jax.random.key(1), top_k=1)
    np.testing.assert_array_equal(sampled, out)


# ------------------------------------------------------------------ PyTorch parity
# Float32 on CPU in both: the same operations in possibly different summation orders
# (matmuls over at most 128 terms, softmax, LayerNorm statistics), so the outputs, of
# order 1, differ by a few float32 ulps per operation: 1e-5 relative (about 100 ulps)
# with a 1e-5 absolute floor for values near zero.
RTOL = ATOL = 1e-5


def _torch_lstm_classifier(torch, input_size, hidden, classes, layers, vocab, bidirectional):
    class Classifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(vocab, input_size) if vocab else None
            self.lstm = torch.nn.LSTM(
                input_size, hidden, layers, batch_first=True, bidirectional=bidirectional
            )
            self.fc = torch.nn.Linear(hidden * (2 if bidirectional else 1), classes)

        def forward(self, x):
            if self.embedding is not None:
                x = self.embedding(x)
            output, _ = self.lstm(x)
            if bidirectional:  # forward direction's last step, backward's first
                return self.fc(torch.cat([output[:, -1, :hidden], output[:, 0, hidden:]], 1))
            return self.fc(output[:, -1])

    return Classifier().eval()


@pytest.mark.torch
@pytest.mark.one_version
@pytest.mark.parametrize("vocab, layers, bidirectional", [(None, 1, False), (30, 2, True)])
def test_lstm_classifier_matches_torch(vocab, layers, bidirectional):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    ref = _torch_lstm_classifier(torch, 6, 10, 4, layers, vocab, bidirectional)
    model = LSTMClassifier(
        6, 10, 4, num_layers=layers, vocab_size=vocab, bidirectional=bidirectional
    )
    assert _count(model) == sum(p.numel() for p in ref.parameters())
    params, _ = models.from_torch(model, ref.state_dict())
    rng = np.random.default_rng(1)
    if vocab:
        x = rng.integers(0, vocab, (3, 7)).astype(np.int32)
        tx = torch.from_numpy(x.astype(np.int64))
    else:
        x = rng.standard_normal((3, 7, 6)).astype(np.float32)
        tx = torch.from_numpy(x)
    got = _eval(model)(params, jnp.asarray(x))
    with torch.no_grad():
        want = ref(tx).numpy()
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.torch
@pytest.mark.one_version
def test_transformer_classifier_matches_torch():
    torch = pytest.importorskip("torch")
    vocab, classes, d, heads, ff, layers, max_len, pad = 40, 3, 32, 4, 64, 2, 16, 0

    class Classifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(vocab, d, padding_idx=pad)
            self.pos_embedding = torch.nn.Embedding(max_len, d)
            layer = torch.nn.TransformerEncoderLayer(d, heads, ff, 0.1, batch_first=True)
            self.encoder = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.fc = torch.nn.Linear(d, classes)

        def forward(self, ids):
            positions = torch.arange(ids.shape[1])
            x = self.embedding(ids) + self.pos_embedding(positions)
            x = self.encoder(x, src_key_padding_mask=ids == pad)
            keep = (ids != pad).unsqueeze(-1).float()
            return self.fc((x * keep).sum(1) / keep.sum(1))

    torch.manual_seed(0)
    ref = Classifier().eval()
    model = TransformerClassifier(
        vocab, classes, d_model=d, nhead=heads, num_layers=layers, dim_feedforward=ff,
        max_len=max_len, pad_id=pad,
    )  # fmt: skip
    assert _count(model) == sum(p.numel() for p in ref.parameters())
    params, _ = models.from_torch(model, ref.state_dict())
    ids = np.random.default_rng(1).integers(1, vocab, (3, 12))
    ids[1, 8:] = pad
    ids[2, 3:] = pad
    got = _eval(model)(params, jnp.asarray(ids, jnp.int32))
    with torch.no_grad():
        want = ref(torch.from_numpy(ids)).numpy()
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def _torch_gpt2(torch, vocab_size, n_positions, n_embd, n_layer, n_head):
    """GPT2LMHeadModel as Hugging Face writes it: Conv1D weights (in, out), the causal
    mask a buffer ``attn.bias``, ``lm_head`` tied to ``transformer.wte``."""
    tnn = torch.nn

    class Conv1D(tnn.Module):
        def __init__(self, nf, nx):
            super().__init__()
            self.weight = tnn.Parameter(torch.randn(nx, nf) * 0.1)
            self.bias = tnn.Parameter(torch.randn(nf) * 0.1)

        def forward(self, x):
            return x @ self.weight + self.bias

    class Attention(tnn.Module):
        def __init__(self):
            super().__init__()
            mask = torch.tril(torch.ones(n_positions, n_positions, dtype=torch.bool))
            self.register_buffer("bias", mask.view(1, 1, n_positions, n_positions))
            self.c_attn = Conv1D(3 * n_embd, n_embd)
            self.c_proj = Conv1D(n_embd, n_embd)

        def forward(self, x):
            b, t, _ = x.shape
            heads = [
                y.view(b, t, n_head, -1).transpose(1, 2) for y in self.c_attn(x).split(n_embd, 2)
            ]
            q, k, v = heads
            w = q @ k.transpose(-1, -2) / math.sqrt(v.shape[-1])
            w = torch.where(self.bias[:, :, :t, :t], w, torch.finfo(w.dtype).min)
            out = (w.softmax(-1) @ v).transpose(1, 2).reshape(b, t, n_embd)
            return self.c_proj(out)

    class MLP(tnn.Module):
        def __init__(self):
            super().__init__()
            self.c_fc = Conv1D(4 * n_embd, n_embd)
            self.c_proj = Conv1D(n_embd, 4 * n_embd)

        def forward(self, x):  # gelu_new
            h = self.c_fc(x)
            h = 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)))
            return self.c_proj(h)

    def layer_norm():
        ln = tnn.LayerNorm(n_embd)
        tnn.init.normal_(ln.weight, 1.0, 0.1)
        tnn.init.normal_(ln.bias, 0.0, 0.1)
        return ln

    class Block(tnn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.attn, self.ln_2, self.mlp = (
                layer_norm(),
                Attention(),
                layer_norm(),
                MLP(),
            )

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class Transformer(tnn.Module):
        def __init__(self):
            super().__init__()
            # N(0, 0.1²) embeddings: logits x · wteᵀ of order 1, as the tolerance assumes.
            self.wte = tnn.Embedding(
                vocab_size, n_embd, _weight=torch.randn(vocab_size, n_embd) * 0.1
            )
            self.wpe = tnn.Embedding(
                n_positions, n_embd, _weight=torch.randn(n_positions, n_embd) * 0.1
            )
            self.h = tnn.ModuleList(Block() for _ in range(n_layer))
            self.ln_f = layer_norm()

        def forward(self, ids):
            x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
            for block in self.h:
                x = block(x)
            return self.ln_f(x)

    class LMHead(tnn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = Transformer()
            self.lm_head = tnn.Linear(n_embd, vocab_size, bias=False)
            self.lm_head.weight = self.transformer.wte.weight  # tied, as Hugging Face's

        def forward(self, ids):
            return self.lm_head(self.transformer(ids))

    return LMHead().eval()


@pytest.mark.torch
@pytest.mark.one_version
def test_gpt2_matches_torch_hugging_face_layout():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    ref = _torch_gpt2(torch, **TINY)
    sd = ref.state_dict()
    assert "lm_head.weight" in sd and "transformer.h.1.attn.bias" in sd
    assert sd["transformer.h.0.attn.c_attn.weight"].shape == (64, 192)  # Conv1D: (in, out)
    model = GPT2(**TINY)
    n_ref = sum(p.numel() for p in ref.parameters())  # the tied weight counted once
    assert _count(model) == n_ref
    params, _ = models.from_torch(model, sd)
    ids = np.random.default_rng(1).integers(0, 100, (2, 16))
    got = _eval(model)(params, jnp.asarray(ids, jnp.int32))
    with torch.no_grad():
        want = ref(torch.from_numpy(ids)).numpy()
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)

    # GPT2Model's keys (no prefix, no lm_head) as NumPy arrays give the same parameters.
    bare = {
        k.removeprefix("transformer."): v.numpy()
        for k, v in sd.items()
        if k.startswith("transformer.")
    }
    again, _ = models.from_torch(model, bare)
    jax.tree.map(np.testing.assert_array_equal, again, params)
    untied = dict(sd, **{"lm_head.weight": sd["lm_head.weight"] + 1})
    with pytest.raises(ValueError, match="lm_head.weight differs"):
        models.from_torch(model, untied)
