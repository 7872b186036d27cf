"""MultiheadAttention, scaled_dot_product_attention and rotary embeddings against NumPy
written here and against PyTorch.

References take PyTorch's layouts (``in_proj_weight`` (3E, E), ``out_proj.weight``
(E, E) as (out, in)); ``_to_funcnet`` transposes the 2-D weights explicitly.
"""

from __future__ import annotations

import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet.functional as F
from funcnet import nn
from funcnet.errors import ShapeError
from funcnet.functional import _attention
from funcnet.nn import _attention as mha_layers
from tests._numerics import U32, check_grads_float64
from tests.conftest import torch_or_skip

E, N, L, S, B = 8, 2, 5, 6, 3
RNG = np.random.default_rng(0)
KPM = np.zeros((B, S), bool)
KPM[0, -2:] = True
KPM[2, -1] = True
AM_BOOL = RNG.random((L, S)) < 0.3
AM_BOOL[:, 0] = False  # every query keeps one key
AM_FLOAT3 = RNG.standard_normal((B * N, L, S)).astype(np.float32)
MASKS = {
    "none": {},
    "key_padding_bool": {"key_padding_mask": KPM},
    "key_padding_float": {"key_padding_mask": np.where(KPM, -1e4, 0.0).astype(np.float32)},
    "attn_bool_2d": {"attn_mask": AM_BOOL},
    "attn_float_3d": {"attn_mask": AM_FLOAT3},
    "causal": {"is_causal": True},
    "attn_and_padding": {"attn_mask": AM_BOOL, "key_padding_mask": KPM},
}


# ------------------------------------------------------------------ NumPy reference
def torch_layout_params(kdim=E, vdim=E, seed=0, add_bias_kv=False):
    rng = np.random.default_rng(seed)
    params = {
        "in_proj_bias": rng.standard_normal(3 * E).astype(np.float32) * 0.1,
        "out_proj": {
            "weight": rng.standard_normal((E, E)).astype(np.float32) * 0.3,
            "bias": rng.standard_normal(E).astype(np.float32) * 0.1,
        },
    }
    if kdim == vdim == E:
        params["in_proj_weight"] = rng.standard_normal((3 * E, E)).astype(np.float32) * 0.3
    else:
        params["q_proj_weight"] = rng.standard_normal((E, E)).astype(np.float32) * 0.3
        params["k_proj_weight"] = rng.standard_normal((E, kdim)).astype(np.float32) * 0.3
        params["v_proj_weight"] = rng.standard_normal((E, vdim)).astype(np.float32) * 0.3
    if add_bias_kv:  # PyTorch's shape (1, 1, E), funcnet's too
        params["bias_k"] = rng.standard_normal((1, 1, E)).astype(np.float32) * 0.5
        params["bias_v"] = rng.standard_normal((1, 1, E)).astype(np.float32) * 0.5
    return params


def _to_funcnet(tree):
    return {
        k: _to_funcnet(v) if isinstance(v, dict) else jnp.asarray(v.T if v.ndim == 2 else v)
        for k, v in tree.items()
    }


def np_mha(p, q, k, v, key_padding_mask=None, attn_mask=None, is_causal=False, add_zero_attn=False):
    """Batch-first (B, L, E) inputs, a loop over batch and heads; returns (out, weights).

    With ``bias_k`` / ``bias_v`` in ``p`` (PyTorch's (1, 1, E)) and ``add_zero_attn``, the
    projected keys and values get those rows appended; the masks and ``is_causal`` apply
    to the S given keys only, the appended ones are always attended."""
    # in float64 (float32 inputs would make NumPy's matmuls float32, i.e. CPU-dependent BLAS)
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    if "in_proj_weight" in p:
        wq, wk, wv = np.split(p["in_proj_weight"], 3)
    else:
        wq, wk, wv = p["q_proj_weight"], p["k_proj_weight"], p["v_proj_weight"]
    bq, bk, bv = np.split(p["in_proj_bias"], 3)
    d = E // N
    s = k.shape[1]
    extra = [p[n].reshape(1, E) for n in ("bias_k", "bias_v") if n in p]
    zero = [np.zeros((1, E))] if add_zero_attn else []
    out = np.zeros((q.shape[0], q.shape[1], E))
    weights = np.zeros((q.shape[0], N, q.shape[1], s + len(extra) // 2 + len(zero)))
    for b in range(q.shape[0]):
        qb, kb, vb = q[b] @ wq.T + bq, k[b] @ wk.T + bk, v[b] @ wv.T + bv
        kb = np.concatenate([kb, *extra[:1], *zero])
        vb = np.concatenate([vb, *extra[1:], *zero])
        for h in range(N):
            sl = slice(h * d, (h + 1) * d)
            logits = qb[:, sl] @ kb[:, sl].T / np.sqrt(d)
            given = logits[:, :s]  # a view: the masks apply to the given keys
            if attn_mask is not None:
                am = attn_mask if attn_mask.ndim == 2 else attn_mask[b * N + h]
                given[...] = np.where(am, -np.inf, given) if am.dtype == bool else given + am
            if key_padding_mask is not None:
                kpm = key_padding_mask[b]
                given[...] = np.where(kpm, -np.inf, given) if kpm.dtype == bool else given + kpm
            if is_causal:
                given[...] = np.where(np.tril(np.ones(given.shape, bool)), given, -np.inf)
            w = np.exp(logits - logits.max(-1, keepdims=True))
            w /= w.sum(-1, keepdims=True)
            weights[b, h] = w
            out[b, :, sl] = w @ vb[:, sl]
    return out @ p["out_proj"]["weight"].T + p["out_proj"]["bias"], weights


def _inputs(kdim=E, vdim=E, seed=1):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((B, L, E)).astype(np.float32)
    k = rng.standard_normal((B, S, kdim)).astype(np.float32)
    v = rng.standard_normal((B, S, vdim)).astype(np.float32)
    return q, k, v


def _run(model, params, *args, train=False, key=None, **kwargs):
    """Jitted ``model.apply(...)[0]``; boolean keyword arguments are static."""
    arrays = {k: jnp.asarray(v) for k, v in kwargs.items() if not isinstance(v, bool)}
    static = {k: v for k, v in kwargs.items() if isinstance(v, bool)}
    fn = jax.jit(lambda p, a, kw, k: model.apply(p, {}, *a, train=train, key=k, **kw, **static)[0])
    return fn(params, tuple(map(jnp.asarray, args)), arrays, key)


# --------------------------------------------------------------------------- tests
@pytest.mark.parametrize("need_weights", [True, False], ids=["weights", "fused"])
@pytest.mark.parametrize("mask", list(MASKS))
def test_multihead_attention_matches_numpy(mask, need_weights):
    tp = torch_layout_params()
    q, k, v = _inputs()
    model = nn.MultiheadAttention(E, N, batch_first=True)
    out, weights = _run(
        model, _to_funcnet(tp), q, k, v, need_weights=need_weights, average_attn_weights=False,
        **MASKS[mask],
    )  # fmt: skip
    ref_out, ref_w = np_mha(tp, q, k, v, **MASKS[mask])
    # float32 against float64 (tests/_numerics.py): projections, logits and outputs are
    # sums of <= 8 terms of size < 1, each within ~sqrt(8) U32 * 8 ~ 1e-6 in any order;
    # through the softmax over 6 keys the outputs and weights stay within ~1e-6 (2e-7
    # measured), 10x inside rtol=atol=1e-5.
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-5)
    if need_weights:
        np.testing.assert_allclose(weights, ref_w, rtol=1e-5, atol=1e-6)
    else:
        assert weights is None


# (add_bias_kv, add_zero_attn, mask, need_weights) of the bias_kv / zero_attn tests; the
# NumPy and PyTorch tests run the same compiled functions (_mha_extra)
EXTRA_CASES = [
    (True, False, "attn_and_padding", True),
    (False, True, "attn_float_3d", True),
    (True, True, "key_padding_float", False),
    (True, True, "causal", True),
]


@functools.partial(jax.jit, static_argnames=("model", "need_weights", "is_causal"))
def _mha_extra(model, params, q, k, v, masks, need_weights, is_causal=False):
    out, weights = model.apply(
        params, {}, q, k, v, need_weights=need_weights, average_attn_weights=False,
        is_causal=is_causal, **masks,
    )[0]  # fmt: skip
    return out, weights


def _extra_case(bias_kv, zero_attn, mask):
    model = nn.MultiheadAttention(
        E, N, batch_first=True, add_bias_kv=bias_kv, add_zero_attn=zero_attn
    )
    masks = {k: jnp.asarray(m) for k, m in MASKS[mask].items() if k != "is_causal"}
    return model, masks, {"is_causal": True} if mask == "causal" else {}


@pytest.mark.parametrize(("bias_kv", "zero_attn", "mask", "need_weights"), EXTRA_CASES)
def test_bias_kv_and_zero_attn_match_numpy(bias_kv, zero_attn, mask, need_weights):
    """add_bias_kv / add_zero_attn append one or two key positions after the projection;
    the masks (S columns) are extended with attended columns."""
    q, k, v = _inputs()
    tp = torch_layout_params(add_bias_kv=bias_kv)
    model, masks, causal = _extra_case(bias_kv, zero_attn, mask)
    out, weights = _mha_extra(model, _to_funcnet(tp), q, k, v, masks, need_weights, **causal)
    ref_out, ref_w = np_mha(tp, q, k, v, add_zero_attn=zero_attn, **MASKS[mask])
    # as test_multihead_attention_matches_numpy: sums of <= 8 terms, ~1e-6 at most
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-5)
    if need_weights:
        assert weights.shape == (B, N, L, S + bias_kv + zero_attn)
        np.testing.assert_allclose(weights, ref_w, rtol=1e-5, atol=1e-6)


def test_bias_kv_and_zero_attn_vmap_over_unbatched_inputs():
    q, k, v = _inputs()
    tp = torch_layout_params(add_bias_kv=True)
    model = nn.MultiheadAttention(E, N, add_bias_kv=True, add_zero_attn=True)
    params = _to_funcnet(tp)
    run = lambda q, k, v, m: model.apply(params, {}, q, k, v, key_padding_mask=m)[0]
    out, weights = jax.jit(jax.vmap(run))(*map(jnp.asarray, (q, k, v, KPM)))  # each (L, E)
    ref_out, ref_w = np_mha(tp, q, k, v, key_padding_mask=KPM, add_zero_attn=True)
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-5)  # bounds as above
    np.testing.assert_allclose(weights, ref_w.mean(1), rtol=1e-5, atol=1e-6)


@pytest.mark.torch
def test_bias_kv_and_zero_attn_match_pytorch():
    torch = torch_or_skip()
    q, k, v = _inputs()
    causal = np.triu(np.ones((L, S), bool), 1)  # PyTorch's True = masked
    for bias_kv, zero_attn, mask, need_weights in EXTRA_CASES:
        torch.manual_seed(0)
        tm = torch.nn.MultiheadAttention(
            E, N, add_bias_kv=bias_kv, add_zero_attn=zero_attn, batch_first=True
        )
        flat = {key: value.numpy() for key, value in tm.state_dict().items()}
        params = _to_funcnet(nn.unflatten_dict(flat))
        # funcnet's is_causal is PyTorch's explicit causal attn_mask (is_causal only a hint)
        t_masks = {"attn_mask": causal} if mask == "causal" else MASKS[mask]
        want, want_w = tm(
            *map(torch.tensor, (q, k, v)), need_weights=need_weights, average_attn_weights=False,
            **{a: torch.tensor(m) for a, m in t_masks.items()},
        )  # fmt: skip
        model, masks, is_causal = _extra_case(bias_kv, zero_attn, mask)
        out, weights = _mha_extra(model, params, q, k, v, masks, need_weights, **is_causal)
        # two float32 computations, each within ~1e-6 of the exact values (see
        # test_multihead_attention_matches_numpy): 10x inside the bounds
        np.testing.assert_allclose(out, want.detach().numpy(), rtol=1e-5, atol=1e-5)
        if need_weights:
            np.testing.assert_allclose(weights, want_w.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_bias_kv_init():
    model = nn.MultiheadAttention(E, N, add_bias_kv=True, add_zero_attn=True, batch_first=True)
    shapes = jax.eval_shape(model.init, jax.random.key(0))[0]
    assert shapes["bias_k"].shape == shapes["bias_v"].shape == (1, 1, E)
    # PyTorch's xavier_normal_ of a (1, 1, E) tensor: N(0, 1/E); 4096 draws put the sample
    # std within 5% (4.5 standard errors of ~1.1%)
    wide = mha_layers._bias_kv_init(jax.random.key(1), (1, 1, 4096))
    np.testing.assert_allclose(float(jnp.std(wide)), 1 / 64, rtol=0.05)
    assert float(jnp.abs(jnp.mean(wide))) < 5 / 64 / 64  # 5 standard errors of the mean


def test_kdim_vdim_sequence_first_and_averaged_weights_match_numpy():
    tp = torch_layout_params(kdim=3, vdim=5)
    q, k, v = _inputs(kdim=3, vdim=5)
    model = nn.MultiheadAttention(E, N, kdim=3, vdim=5)
    seq_first = [x.transpose(1, 0, 2) for x in (q, k, v)]
    out, weights = _run(model, _to_funcnet(tp), *seq_first, key_padding_mask=KPM)
    ref_out, ref_w = np_mha(tp, q, k, v, key_padding_mask=KPM)
    # bounds as in test_multihead_attention_matches_numpy (dot products of <= 8 terms)
    np.testing.assert_allclose(out, ref_out.transpose(1, 0, 2), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(weights, ref_w.mean(1), rtol=1e-5, atol=1e-6)
    # unbatched (L, E) input gives the first batch element's result
    out1, w1 = _run(model, _to_funcnet(tp), q[0], k[0], v[0])
    ref1, _ = np_mha(tp, q[:1], k[:1], v[:1])
    np.testing.assert_allclose(out1, ref1[0], rtol=1e-5, atol=1e-5)
    assert w1.shape == (L, S)


@pytest.mark.torch
@pytest.mark.parametrize("mask", ["key_padding_bool", "attn_float_3d", "attn_and_padding"])
def test_multihead_attention_matches_pytorch(mask):
    torch = torch_or_skip()
    torch.manual_seed(0)
    tm = torch.nn.MultiheadAttention(E, N)
    params = _to_funcnet(nn.unflatten_dict({k: v.numpy() for k, v in tm.state_dict().items()}))
    q, k, v = (x.transpose(1, 0, 2) for x in _inputs())
    kwargs = MASKS[mask]
    want, want_w = tm(
        *map(torch.tensor, (q, k, v)), **{a: torch.tensor(m) for a, m in kwargs.items()}
    )
    out, weights = _run(nn.MultiheadAttention(E, N), params, q, k, v, **kwargs)
    # two float32 computations, each within ~1e-6 of the exact outputs and weights (see
    # test_multihead_attention_matches_numpy): 10x inside the bounds
    np.testing.assert_allclose(out, want.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(weights, want_w.detach().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.torch
def test_default_init_and_names_match_pytorch(key):
    torch = torch_or_skip()
    for kw in ({}, {"kdim": 3, "vdim": 5}, {"bias": False}, {"add_bias_kv": True}):
        tm = torch.nn.MultiheadAttention(E, N, **kw)
        params, state = nn.MultiheadAttention(E, N, **kw).init(key)
        flat = nn.state_dict(params, state)
        assert {k: v.shape for k, v in flat.items()} == {  # bias_k (1, 1, E) as PyTorch's
            k: tuple(v.shape[::-1]) if v.ndim == 2 else tuple(v.shape)
            for k, v in tm.state_dict().items()
        }
    params, _ = nn.MultiheadAttention(E, N).init(key)
    assert float(jnp.max(jnp.abs(params["in_proj_weight"]))) <= np.sqrt(6 / (4 * E))
    assert not jnp.any(params["in_proj_bias"]) and not jnp.any(params["out_proj"]["bias"])
    # bias_k's init: PyTorch's fans of a (1, 1, E) tensor are E and E (std 1/sqrt(E))
    wide = torch.empty(1, 1, 4096)
    torch.nn.init.xavier_normal_(wide)
    np.testing.assert_allclose(float(wide.std()), 1 / 64, rtol=0.05)  # as test_bias_kv_init


def test_gradients_match_finite_differences_and_the_fused_path():
    """Finite differences in float64 for the plain layer and one with add_bias_kv and
    add_zero_attn (one check, one compilation); the fused path's gradient matches."""
    tp = torch_layout_params()
    model = nn.MultiheadAttention(E, N, batch_first=True)
    extra = nn.MultiheadAttention(E, N, batch_first=True, add_bias_kv=True, add_zero_attn=True)
    kpm = jnp.asarray(KPM)

    def loss(p, q, k, v, need_weights, model=model):
        (out, _), _ = model.apply(p, {}, q, k, v, key_padding_mask=kpm, need_weights=need_weights)
        return jnp.sum(jnp.sin(out))

    # JAX's dot_product_attention takes its softmax in float32 even for float64 inputs, so
    # finite differences check the explicit path; the fused path's gradient must match it.
    params = {"plain": _to_funcnet(tp), "extra": _to_funcnet(torch_layout_params(add_bias_kv=True))}
    q, k, v = map(jnp.asarray, _inputs())

    def both(p, q, k, v):
        return loss(p["plain"], q, k, v, True) + loss(p["extra"], q, k, v, True, extra)

    check_grads_float64(jax.jit(both), (params, q, k, v))
    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)), static_argnums=4)
    args = (_to_funcnet(tp), *map(jnp.asarray, _inputs()))
    for a, b in zip(jax.tree.leaves(grad(*args, True)), jax.tree.leaves(grad(*args, False))):
        # the same float32 operations in both (float32 inputs never take cuDNN): at most a
        # few roundings apart on any CPU (identical on this one)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch_first", [True, False])
def test_fused_in_projection_equals_the_separate_one(batch_first):
    """Self-attention with one (E, 3E) matmul gives the values and gradients of three."""
    params = _to_funcnet(torch_layout_params())
    x = jnp.asarray(_inputs()[0])
    x = x if batch_first else jnp.swapaxes(x, 0, 1)
    kpm = jnp.asarray(KPM[:, :L])  # self-attention: the keys are the L queries

    def make(mode):
        model = nn.MultiheadAttention(E, N, batch_first=batch_first, in_projection=mode)

        def loss(p, x):
            out = model.apply(p, {}, x, x, x, key_padding_mask=kpm, need_weights=False)[0][0]
            return jnp.sum(jnp.sin(out)), out

        return jax.jit(jax.value_and_grad(loss, has_aux=True))

    # In float64: the two forms' matmuls may sum in different orders, in float32 up to
    # 2e-6 apart in the worst case (over atol=1e-6); float64's ~1e-15 is 1000x inside 1e-12.
    with jax.enable_x64(True):
        args = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), (params, x))
        (_, fused), fused_grads = make("fused")(*args)
        (_, separate), separate_grads = make("separate")(*args)
    assert fused.dtype == separate.dtype == jnp.float64
    np.testing.assert_allclose(fused, separate, rtol=1e-12, atol=1e-12)
    for a, b in zip(jax.tree.leaves(fused_grads), jax.tree.leaves(separate_grads)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)

    def matmuls(mode):  # dot_generals in the forward pass's jaxpr
        model = nn.MultiheadAttention(E, N, batch_first=batch_first, in_projection=mode)
        jaxpr = jax.make_jaxpr(lambda p: model.apply(p, {}, x, x, x, need_weights=False))(params)
        return str(jaxpr).count("dot_general")

    assert matmuls("separate") == matmuls("fused") + 2


def test_in_projection_choice(monkeypatch):
    model = nn.MultiheadAttention(E, N)
    assert not model._fused_projection(True)  # auto on CPU: separate
    assert nn.MultiheadAttention(E, N, in_projection="fused")._fused_projection(True)
    assert not nn.MultiheadAttention(E, N, in_projection="fused")._fused_projection(False)
    assert not nn.MultiheadAttention(E, N, kdim=3, in_projection="fused")._fused_projection(True)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert model._fused_projection(True)
    assert not nn.MultiheadAttention(E, N, in_projection="separate")._fused_projection(True)
    with pytest.raises(ValueError, match="in_projection"):
        nn.MultiheadAttention(E, N, in_projection="packed")


def test_dropout_on_weights_only_in_training():
    model = nn.MultiheadAttention(E, N, dropout=0.5, batch_first=True)
    params, _ = model.init(jax.random.key(0))
    q, _, _ = _inputs()
    plain = _run(model, params, q, q, q)
    fused = _run(model, params, q, q, q, need_weights=False)
    # float32 inputs take the explicit path either way: the same operations, identical here
    np.testing.assert_allclose(plain[0], fused[0], rtol=1e-5, atol=1e-6)
    a = _run(model, params, q, q, q, train=True, key=jax.random.key(1))
    b = _run(model, params, q, q, q, train=True, key=jax.random.key(1))
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.allclose(a[0], plain[0])
    assert np.all(np.isfinite(a[1]))
    with pytest.raises(ValueError, match="needs a PRNG key"):
        model.apply(params, {}, jnp.asarray(q), jnp.asarray(q), jnp.asarray(q), train=True)


@pytest.mark.torch
def test_scaled_dot_product_attention_matches_pytorch():
    torch = torch_or_skip()
    tf = torch.nn.functional
    rng = np.random.default_rng(7)
    q = rng.standard_normal((B, 4, L, 8)).astype(np.float32)
    k = rng.standard_normal((B, 2, S, 8)).astype(np.float32)
    v = rng.standard_normal((B, 2, S, 8)).astype(np.float32)
    keep = rng.random((B, 1, L, S)) > 0.3
    keep[..., 0] = True
    bias = rng.standard_normal((L, S)).astype(np.float32)
    cases = [{"attn_mask": keep}, {"attn_mask": bias}, {"is_causal": True}, {"scale": 0.3}]
    tq, tk, tv = map(torch.tensor, (q, k, v))
    sdpa = jax.jit(
        F.scaled_dot_product_attention, static_argnames=("is_causal", "scale", "enable_gqa")
    )
    for kwargs in cases:
        t_kwargs = {
            a: torch.tensor(m) if isinstance(m, np.ndarray) else m for a, m in kwargs.items()
        }
        want = tf.scaled_dot_product_attention(tq, tk, tv, enable_gqa=True, **t_kwargs).numpy()
        got = sdpa(q, k, v, enable_gqa=True, **kwargs)
        # two float32 computations: logits are 8-term dot products (sum|q k| * scale ~ 2,
        # ~sqrt(8) U32 * 2 ~ 4e-7 in any order), so weights agree to ~1e-6 relative and the
        # outputs (weighted means of |v| < 4) to ~1e-6: 10x inside (3.6e-7 measured)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=str(kwargs))
    # 3-D (B, L, E) inputs
    want = tf.scaled_dot_product_attention(tq[:, 0], tk[:, 0], tv[:, 0]).numpy()
    got = sdpa(q[:, 0], k[:, 0], v[:, 0])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)  # bounds as above
    with pytest.raises(ShapeError, match="enable_gqa"):
        F.scaled_dot_product_attention(q, k, v)


def test_fully_masked_rows_stay_finite():
    q, _, _ = _inputs()
    model = nn.MultiheadAttention(E, N, batch_first=True)
    params, _ = model.init(jax.random.key(0))
    all_masked = np.ones((B, L), bool)
    for nw in (True, False):
        out, _ = _run(model, params, q, q, q, key_padding_mask=all_masked, need_weights=nw)
        assert np.all(np.isfinite(out))


def test_fused_implementation_choice(monkeypatch):
    bf16 = jax.ShapeDtypeStruct((1, 4, 2, 64), jnp.bfloat16)
    f32 = jax.ShapeDtypeStruct((1, 4, 2, 64), jnp.float32)
    odd = jax.ShapeDtypeStruct((1, 4, 2, 12), jnp.bfloat16)
    assert _attention.fused_implementation(bf16, None) == "xla"  # CPU
    monkeypatch.setattr(_attention, "_on_gpu", lambda: True)
    assert _attention.fused_implementation(bf16, None) == "cudnn"
    assert _attention.fused_implementation(f32, None) == "xla"
    assert _attention.fused_implementation(odd, None) == "xla"
    assert _attention.fused_implementation(f32, "xla") == "xla"
    with pytest.raises(ValueError, match="implementation"):
        _attention.fused_implementation(f32, "flash")
    # auto falls back to the explicit path, with the numerics of JAX's XLA path, when
    # cuDNN refuses (here: no cuDNN); "cudnn" raises instead
    x = jax.random.normal(jax.random.key(0), (1, 4, 2, 16), jnp.bfloat16)
    out, _ = _attention.attention(x, x, x, is_causal=True)
    want = jax.nn.dot_product_attention(x, x, x, is_causal=True, implementation="xla")
    np.testing.assert_array_equal(out, want)
    if jax.default_backend() != "gpu":
        with pytest.raises(RuntimeError, match="cuDNN"):
            _attention.attention(x, x, x, implementation="cudnn")


def _muls_of_size(fn, size, *args):
    """The ``mul`` equations with ``size`` output elements in ``fn``'s jaxpr (nested too)."""
    text = str(jax.make_jaxpr(fn)(*args))
    found = re.findall(r"\[([\d,]+)\] = mul ", text)
    return [dims for dims in found if math.prod(int(d) for d in dims.split(",")) == size]


def test_attention_scales_queries_not_logits():
    """Without cuDNN the attention is two einsums and a softmax with q scaled first, as
    Flax and the benchmark's raw JAX write it: a scale of the (B, N, T, S) logits is fused
    into XLA:CPU's matmul as a broadcast constant of the logits' size (two per layer with
    JAX's own XLA path, 5% of the transformer step's bytes). Same values as that path;
    ``implementation="xla"`` still asks for it."""
    b, t, n, d = 2, 8, 4, 32  # scale 1/sqrt(32) is not a power of two
    q, k, v = jax.random.normal(jax.random.key(0), (3, b, t, n, d))
    auto = lambda q, k, v: _attention.attention(q, k, v)[0]
    assert _muls_of_size(auto, b * n * t * t, q, k, v) == []
    want = jax.nn.dot_product_attention(q, k, v, implementation="xla")
    out, _ = _attention.attention(q, k, v, implementation="xla")
    np.testing.assert_array_equal(out, want)
    # Same values as JAX's path, compared in float64 (in float32 their matmuls round apart
    # by up to 1/4 of rtol=1e-5, atol=1e-6 here, more on another CPU's order): then only
    # JAX's softmax rounds, in float32. Logits < 4 rounded, exp within 2 ulp, a sum of 8 and
    # a division keep each weight within 50 U32 relative in the worst case, so each output
    # (a weighted mean of v) is within 50 U32 max|v|; 100 U32 max|v| ~ 2e-5.
    with jax.enable_x64(True):
        q, k, v = (a.astype(jnp.float64) for a in (q, k, v))
        for causal in (False, True):
            got = _attention.attention(q, k, v, is_causal=causal)[0]
            want = jax.nn.dot_product_attention(q, k, v, is_causal=causal, implementation="xla")
            assert got.dtype == want.dtype == jnp.float64
            bound = 100 * U32 * float(jnp.abs(v).max())
            np.testing.assert_allclose(got, want, rtol=0, atol=bound, err_msg=f"{causal=}")


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="needs a CUDA GPU with cuDNN")
def test_cudnn_fused_kernel_is_used_on_gpu():
    model = nn.MultiheadAttention(128, 2, batch_first=True)
    params, _ = model.init(jax.random.key(0))
    x = jnp.zeros((2, 256, 128), jnp.bfloat16)
    for causal in (False, True):
        fn = jax.jit(
            lambda p, x, c=causal: model.apply(p, {}, x, x, x, need_weights=False, is_causal=c)[0][
                0
            ]
        )
        hlo = fn.lower(params, x).compile().as_text()
        assert "__cudnn$fmha" in hlo, "cuDNN flash attention custom call not found"


def np_rope(x, positions, interleaved, base=10000.0):
    d = x.shape[-1]
    out = np.empty_like(x)
    for i in range(d // 2):
        theta = positions * base ** (-2 * i / d)
        a, b = (2 * i, 2 * i + 1) if interleaved else (i, i + d // 2)
        out[..., a] = x[..., a] * np.cos(theta) - x[..., b] * np.sin(theta)
        out[..., b] = x[..., a] * np.sin(theta) + x[..., b] * np.cos(theta)
    return out


@pytest.mark.parametrize("interleaved", [False, True])
def test_rotary_embedding_matches_numpy_and_is_relative(interleaved):
    x = np.random.default_rng(8).standard_normal((2, L, N, 8)).astype(np.float32)
    got = F.rotary_embedding(jnp.asarray(x), interleaved=interleaved)
    ref = np_rope(x, np.arange(L)[:, None].astype(np.float64), interleaved)
    # float32 angles (< 5 rad, within ~3 U32 * 5), cos/sin within 2 ulp, two products and
    # a difference: each output within ~20 U32 (|x_a| + |x_b| < 8) < 1e-5 in the worst case
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    heads_first = F.rotary_embedding(jnp.asarray(x.transpose(0, 2, 1, 3)), interleaved=interleaved, seq_axis=-2)  # fmt: skip
    np.testing.assert_allclose(heads_first, ref.transpose(0, 2, 1, 3), rtol=1e-5, atol=1e-5)
    # q·k depends only on the offset between positions
    q, k = x[0, 0, 0], x[0, 1, 0]

    def dot(pq, pk):
        rq = F.rotary_embedding(jnp.asarray(q)[None], jnp.array([pq]), interleaved=interleaved)
        rk = F.rotary_embedding(jnp.asarray(k)[None], jnp.array([pk]), interleaved=interleaved)
        return float(jnp.sum(rq * rk))

    # worst case: angles pos * freq (< 11) rounded, cos/sin within 2 ulp, so each rotated
    # element is within ~15 U32 (|x_a| + |x_b|) and each 8-term dot (|dot| ~ 0.9, sum of
    # |q_i| |k_j| ~ 5) within ~60 U32 * 5 ~ 2e-5: two apart < rtol * |dot| ~ 9e-5
    np.testing.assert_allclose(dot(3, 1), dot(10, 8), rtol=1e-4)


def test_errors_name_the_layer():
    model = nn.MultiheadAttention(E, N, batch_first=True)
    params, _ = model.init(jax.random.key(0))
    x = jnp.zeros((B, L, E))
    with pytest.raises(ShapeError, match=r"model \(MultiheadAttention\): expected key with last dimension 8"):  # fmt: skip
        model.apply(params, {}, x, jnp.zeros((B, S, 3)), jnp.zeros((B, S, E)))
    with pytest.raises(ShapeError, match=r"expected key_padding_mask of shape \(3, 5\)"):
        model.apply(params, {}, x, x, x, key_padding_mask=jnp.zeros((B, S), bool))
    with pytest.raises(ShapeError, match=r"expected attn_mask of shape \(5, 5\) or \(6, 5, 5\)"):
        model.apply(params, {}, x, x, x, attn_mask=jnp.zeros((L, S), bool))
    with pytest.raises(ShapeError, match="one batch size"):
        model.apply(params, {}, x, x[:2], x[:2])
    with pytest.raises(ValueError, match="divisible by num_heads"):
        nn.MultiheadAttention(E, 3)
    extra = nn.MultiheadAttention(E, N, batch_first=True, add_bias_kv=True, add_zero_attn=True)
    eparams, _ = extra.init(jax.random.key(0))
    with pytest.raises(
        ShapeError,
        match=r"model \(MultiheadAttention\): expected key_padding_mask of shape \(3, 5\)",
    ):  # the given keys' S, not S + 2
        extra.apply(eparams, {}, x, x, x, key_padding_mask=jnp.zeros((B, L + 2), bool))


def test_docstring_examples_run():
    import doctest

    import funcnet.nn._attention as layers

    result = doctest.testmod(layers)
    assert result.attempted > 0 and result.failed == 0
