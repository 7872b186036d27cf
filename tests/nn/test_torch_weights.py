"""PyTorch weights in and out: ``load_state_dict(from_torch=True)``, ``torch_state_dict``,
the layout rule of every layer, the Flatten trap and the one error report.

References: PyTorch's own layers (outputs in float32, state dicts exactly) and, without
torch, NumPy implementations of PyTorch's conventions written here (channels-first
convolution and transposed convolution by loops, ``x @ W.T + b``, an LSTM step with
PyTorch's gate order, attention with the packed ``in_proj_weight``, a ``(C, H, W)``
flatten), compared in float64 so the Python 3.12 run (no torch) checks the numerics too.
"""

from __future__ import annotations

import contextlib
import doctest
import io
import math
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet.nn._state_dict
from funcnet import nn
from funcnet.errors import StateDictError
from funcnet.nn._module import Module, Parameter
from funcnet.nn._torch_layout import rule_for, torch_slots
from tests.conformance.test_conformance import ENTRIES

RNG = np.random.default_rng(0)
DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "pytorch-weights.md"


def normal(*shape, scale=1.0):
    return (scale * RNG.standard_normal(shape)).astype(np.float32)


def _random_like(specs):
    """Random arrays of ``specs``' shapes and dtypes (integers: small non-negative)."""

    def fill(spec):
        if jnp.issubdtype(spec.dtype, jnp.integer):
            return RNG.integers(0, 100, spec.shape).astype(spec.dtype)
        return RNG.standard_normal(spec.shape).astype(spec.dtype)

    return jax.tree.map(fill, specs)


def _assert_trees_equal(got, want):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ------------------------------------------------------------------ every layer


def test_every_parametrised_layer_has_a_rule_and_round_trips_exactly():
    """Over the whole conformance registry: every funcnet.nn layer with parameters or state
    has a rule (torch_slots raises for one without), and funcnet → PyTorch → funcnet gives
    back the same arrays, bit for bit."""
    covered = set()
    for entry in ENTRIES:
        model = entry.make()
        specs = jax.eval_shape(model.init, jax.random.key(0))
        if not jax.tree.leaves(specs):
            continue
        for _, module in model.named_modules():
            if rule_for(type(module)) is not None:
                covered.add(type(module).__name__)
        params, state = _random_like(specs)
        flat = nn.torch_state_dict(model, params, state)
        slots = {s.torch_key: s for s in torch_slots(model, *specs)}
        assert set(flat) == set(slots), entry.id
        for key, value in flat.items():
            assert value.shape == slots[key].layout.torch_shape, (entry.id, key)
        again = nn.load_state_dict(model, flat, from_torch=True)
        _assert_trees_equal(again, (params, state))
    # the registry reached the layers this file checks against PyTorch
    assert {"Linear", "Conv2d", "ConvTranspose2d", "LSTM", "MultiheadAttention"} <= covered
    assert {"BatchNorm2d", "LayerNorm", "Embedding", "GroupNorm", "RMSNorm"} <= covered


def test_a_funcnet_layer_without_a_rule_raises():
    """The check above can fail: a parametrised class of funcnet.nn with no rule raises."""

    class Scale(Module):
        def __init__(self):
            self.weight = Parameter((3,), init=nn.init.ones)

    Scale.__module__ = "funcnet.nn._future"
    model = nn.Sequential(Scale())
    with pytest.raises(
        NotImplementedError, match=r"model\.0 \(Scale\): funcnet has no PyTorch layout"
    ):
        nn.torch_state_dict(model, {"0": {"weight": np.ones(3)}})

    class Linear2(nn.Linear):  # a funcnet class whose rule lacks an entry
        pass

    Linear2.__module__ = "funcnet.nn._future"
    model = Linear2(3, 2)
    params = {"weight": np.ones((3, 2)), "bias": np.ones(2), "extra": np.ones(2)}
    with pytest.raises(NotImplementedError, match="does not know the entry 'extra'"):
        torch_slots(model, params, {})


def test_user_modules_keep_their_layout_and_subclasses_inherit_rules():
    class Mine(Module):
        def __init__(self):
            self.table = Parameter((3, 2), init=nn.init.ones)  # the author's layout
            self.fc = nn.Linear(2, 4)

    class MyLinear(nn.Linear):
        pass

    model = nn.Sequential(Mine(), MyLinear(4, 5))
    params, state = _random_like(jax.eval_shape(model.init, jax.random.key(0)))
    flat = nn.torch_state_dict(model, params, state)
    np.testing.assert_array_equal(flat["0.table"], params["0"]["table"])
    np.testing.assert_array_equal(flat["0.fc.weight"], params["0"]["fc"]["weight"].T)
    np.testing.assert_array_equal(flat["1.weight"], params["1"]["weight"].T)


def test_torch_shapes_are_pytorchs():
    """PyTorch's shapes, written out from its documentation (no torch needed)."""
    cases = [
        (nn.Linear(3, 5), {"weight": (5, 3), "bias": (5,)}),
        (nn.Bilinear(3, 4, 5), {"weight": (5, 3, 4), "bias": (5,)}),
        (nn.Conv1d(4, 6, 3, groups=2), {"weight": (6, 2, 3)}),
        (nn.Conv2d(4, 6, (3, 2), groups=2), {"weight": (6, 2, 3, 2)}),
        (nn.Conv3d(2, 4, (3, 2, 1)), {"weight": (4, 2, 3, 2, 1)}),
        (nn.ConvTranspose2d(4, 6, (3, 2), groups=2), {"weight": (4, 3, 3, 2)}),
        (
            nn.LSTM(3, 5, num_layers=2, bidirectional=True),
            {"weight_ih_l0": (20, 3), "weight_hh_l0": (20, 5), "weight_ih_l1_reverse": (20, 10)},
        ),
        (nn.LSTM(3, 5, proj_size=2), {"weight_hh_l0": (20, 2), "weight_hr_l0": (2, 5)}),
        (nn.GRUCell(3, 4), {"weight_ih": (12, 3), "bias_hh": (12,)}),
        (nn.MultiheadAttention(8, 2), {"in_proj_weight": (24, 8), "out_proj.weight": (8, 8)}),
        (
            nn.MultiheadAttention(8, 2, kdim=3, vdim=5, add_bias_kv=True),
            {"k_proj_weight": (8, 3), "v_proj_weight": (8, 5), "bias_k": (1, 1, 8)},
        ),
        (nn.BatchNorm2d(4), {"running_var": (4,), "num_batches_tracked": ()}),
        (nn.LayerNorm((4, 5)), {"weight": (4, 5)}),
        (nn.Embedding(10, 4), {"weight": (10, 4)}),
        (nn.LayerStack(nn.Linear(4, 6), 3), {"0.weight": (6, 4), "2.bias": (6,)}),
    ]
    for model, want in cases:
        flat = nn.torch_state_dict(
            model, *_random_like(jax.eval_shape(model.init, jax.random.key(0)))
        )
        assert {k: flat[k].shape for k in want} == want, model
    assert flat["1.weight"].dtype == np.float32
    counter = nn.torch_state_dict(nn.BatchNorm1d(3), *nn.BatchNorm1d(3).init(jax.random.key(0)))
    assert counter["num_batches_tracked"].dtype == np.int64  # PyTorch's dtype


# ---------------------------------------------------- NumPy references (no torch)


def np_conv(x, w, b, stride, padding, groups):
    """PyTorch's Conv2d on NCHW ``x`` with its (C_out, C_in // groups, kh, kw) ``w``."""
    n, _, h, wd = x.shape
    cout, cin_g, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho, wo = (h + 2 * padding - kh) // stride + 1, (wd + 2 * padding - kw) // stride + 1
    out = np.zeros((n, cout, ho, wo))
    cout_g = cout // groups
    for g in range(groups):
        xs, ws = xp[:, g * cin_g : (g + 1) * cin_g], w[g * cout_g : (g + 1) * cout_g]
        for i in range(ho):
            for j in range(wo):
                patch = xs[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
                out[:, g * cout_g : (g + 1) * cout_g, i, j] = np.einsum("nchw,ochw->no", patch, ws)
    return out + b[None, :, None, None]


def np_conv_transpose(x, w, b, stride, padding, groups):
    """PyTorch's ConvTranspose2d by its definition, a scatter, with its (C_in, C_out //
    groups, kh, kw) ``w``."""
    n, cin, h, wd = x.shape
    _, cout_g, kh, kw = w.shape
    cin_g = cin // groups
    full = np.zeros((n, cout_g * groups, (h - 1) * stride + kh, (wd - 1) * stride + kw))
    for g in range(groups):
        xs, ws = x[:, g * cin_g : (g + 1) * cin_g], w[g * cin_g : (g + 1) * cin_g]
        for i in range(h):
            for j in range(wd):
                window = full[:, g * cout_g : (g + 1) * cout_g]
                window = window[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
                window += np.einsum("nc,cohw->nohw", xs[:, :, i, j], ws)
    cropped = full[:, :, padding : full.shape[2] - padding, padding : full.shape[3] - padding]
    return cropped + b[None, :, None, None]


def np_lstm(x, sd, hidden):
    """One-layer PyTorch LSTM over (T, B, I): gates i, f, g, o of x Wᵢₕᵀ + bᵢₕ + h Wₕₕᵀ + bₕₕ."""
    sigmoid = lambda z: 1 / (1 + np.exp(-z))
    h = c = np.zeros((x.shape[1], hidden))
    outs = []
    for x_t in x:
        z = (
            x_t @ sd["weight_ih_l0"].T
            + sd["bias_ih_l0"]
            + h @ sd["weight_hh_l0"].T
            + sd["bias_hh_l0"]
        )
        i, f, g, o = np.split(z, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        outs.append(h)
    return np.stack(outs), h[None], c[None]


def np_attention(x, sd, heads):
    """PyTorch's batch-first self-attention with the packed (3E, E) ``in_proj_weight``."""
    b, length, e = x.shape
    qkv = x @ sd["in_proj_weight"].T + sd["in_proj_bias"]
    q, k, v = (a.reshape(b, length, heads, e // heads) for a in np.split(qkv, 3, axis=-1))
    logits = np.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(e // heads)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    out = np.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, length, e)
    return out @ sd["out_proj.weight"].T + sd["out_proj.bias"], weights.mean(1)


def _cnn(channels=3, hidden=4, side=6):
    """A PyTorch-style CNN: conv, ReLU, pool, conv, ReLU, Flatten, Linear, ReLU, Linear."""
    return nn.Sequential(
        nn.Conv2d(channels, hidden, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(hidden, 2 * hidden, 3, stride=1, padding=1, groups=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(2 * hidden * (side // 2) ** 2, 5),
        nn.ReLU(),
        nn.Linear(5, 3),
    )


def np_cnn(x, sd):
    """The CNN in PyTorch's conventions: NCHW ``x``, (C, H, W) flatten, (out, in) weights."""
    y = np.maximum(np_conv(x, sd["0.weight"], sd["0.bias"], 1, 1, 1), 0)
    n, c, h, w = y.shape
    y = y.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))
    y = np.maximum(np_conv(y, sd["3.weight"], sd["3.bias"], 1, 1, 2), 0).reshape(n, -1)
    y = np.maximum(y @ sd["6.weight"].T + sd["6.bias"], 0)
    return y @ sd["8.weight"].T + sd["8.bias"]


def _torch_layout_arrays(model, scale=0.5):
    """Random weights in PyTorch's layouts (keys and shapes from the rules)."""
    specs = jax.eval_shape(model.init, jax.random.key(0))
    out = {}
    for slot in torch_slots(model, *specs):
        if slot.layout.torch_dtype is not None:
            out[slot.torch_key] = np.asarray(3, slot.layout.torch_dtype)
        else:
            out[slot.torch_key] = normal(*slot.layout.torch_shape, scale=scale)
    return out


def _f64(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def test_layouts_match_numpy_references_of_pytorchs_conventions():
    """Weights in PyTorch's layouts, loaded with from_torch, compute what PyTorch's
    definitions compute (NumPy, float64; funcnet run in float64 on the same values)."""
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
    up = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=2)
    lstm = nn.LSTM(3, 5)
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    bil = nn.Bilinear(3, 4, 2)
    models = (conv, up, lstm, mha, bil)
    sds = [_torch_layout_arrays(m) for m in models]
    x_img, x_seq, x_tok = normal(2, 5, 5, 4), normal(4, 2, 3), normal(2, 3, 8)
    x1, x2 = normal(6, 3), normal(6, 4)
    inputs = ((x_img,), (x_img,), (x_seq,), (x_tok, x_tok, x_tok), (x1, x2))
    nchw = x_img.transpose(0, 3, 1, 2)
    d = _f64(sds)
    want = [
        np_conv(nchw, d[0]["weight"], d[0]["bias"], 2, 1, 2).transpose(0, 2, 3, 1),
        np_conv_transpose(nchw, d[1]["weight"], d[1]["bias"], 2, 1, 2).transpose(0, 2, 3, 1),
        np_lstm(x_seq.astype(np.float64), d[2], 5),
        np_attention(x_tok.astype(np.float64), d[3], 2),
        np.einsum("ni,oij,nj->no", x1, d[4]["weight"], x2) + d[4]["bias"],
    ]
    with jax.enable_x64(True):
        loaded = [_f64(nn.load_state_dict(m, sd, from_torch=True)) for m, sd in zip(models, sds)]
        run = jax.jit(lambda ps, xs: [m.apply(*p, *x)[0] for m, p, x in zip(models, ps, xs)])
        got = run(loaded, _f64(inputs))
    for g, w in zip(got, want):
        for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(w)):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


def test_flatten_inputs_reorder_the_rows_and_a_cnn_matches_end_to_end():
    """The Flatten trap: PyTorch flattens (C, H, W), funcnet (H, W, C). With
    flatten_inputs the whole CNN matches PyTorch's definition; without it, it does not."""
    model = _cnn()
    sd = _torch_layout_arrays(model)
    x = normal(2, 6, 6, 3)
    want = np_cnn(x.transpose(0, 3, 1, 2).astype(np.float64), _f64(sd))
    flatten = {"6": (8, 3, 3)}
    with jax.enable_x64(True):
        apply = jax.jit(lambda p, s, x: model.apply(p, s, x)[0])
        right = nn.load_state_dict(model, sd, from_torch=True, flatten_inputs=flatten)
        wrong = nn.load_state_dict(model, sd, from_torch=True)
        got = apply(*_f64(right), x.astype(np.float64))
        trap = apply(*_f64(wrong), x.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    assert np.abs(np.asarray(trap) - want).max() > 1e-2  # the trap is real
    back = nn.torch_state_dict(model, *right, flatten_inputs=flatten)
    assert set(back) == set(sd)
    for key in sd:
        np.testing.assert_array_equal(back[key], sd[key])
    # closed form: PyTorch's input feature (c, h, w) is funcnet's row (h·W + w)·C + c
    w = right[0]["6"]["weight"]
    c, h, col = 5, 2, 1
    np.testing.assert_array_equal(w[(h * 3 + col) * 8 + c], sd["6.weight"][:, c * 9 + h * 3 + col])


def test_layer_stack_reads_pytorchs_module_list_and_remat_adds_no_level():
    class Encoder(Module):
        def __init__(self):
            self.layers = nn.LayerStack(nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)), 3)
            self.head = nn.Remat(nn.Linear(4, 2))

        def forward(self, ctx, x):
            return self.head(ctx, self.layers(ctx, x))

    model = Encoder()
    sd = _torch_layout_arrays(model)
    assert sorted(sd) == sorted(
        [f"layers.{i}.{k}" for i in range(3) for k in ("0.weight", "0.bias", "1.weight", "1.bias")]
        + ["head.weight", "head.bias"]
    )
    params, _ = nn.load_state_dict(model, sd, from_torch=True)
    assert params["layers"]["0"]["weight"].shape == (3, 4, 4)
    for i in range(3):
        np.testing.assert_array_equal(
            params["layers"]["0"]["weight"][i], sd[f"layers.{i}.0.weight"].T
        )
    np.testing.assert_array_equal(params["head"]["weight"], sd["head.weight"].T)
    back = nn.torch_state_dict(model, params)
    assert all(np.array_equal(back[k], sd[k]) for k in sd)


# ------------------------------------------------------------------------ errors


def test_one_report_lists_missing_unexpected_and_mis_shaped_keys_with_both_layouts():
    model = nn.Sequential(nn.Linear(4, 3), nn.Conv2d(3, 2, 3))
    sd = _torch_layout_arrays(model)
    broken = {**sd, "extra.weight": np.zeros(2), "0.weight": sd["0.weight"].T}
    del broken["1.bias"]
    with pytest.raises(StateDictError) as info:
        nn.load_state_dict(model, broken, from_torch=True)
    message = str(info.value)
    assert message.startswith("Error(s) in loading state_dict for Sequential:")
    assert "missing keys: 1.bias" in message
    assert "unexpected keys: extra.weight" in message
    assert "0.weight: expected PyTorch shape (3, 4) (funcnet's (4, 3)), got (4, 3)" in message
    # strict=False: unexpected keys ignored, missing ones from `into`
    into = _random_like(jax.eval_shape(model.init, jax.random.key(0)))
    partial = {k: v for k, v in sd.items() if k != "1.bias"}
    params, _ = nn.load_state_dict(
        model, {**partial, "x": 1}, from_torch=True, strict=False, into=into
    )
    np.testing.assert_array_equal(params["1"]["bias"], into[0]["1"]["bias"])
    np.testing.assert_array_equal(params["1"]["weight"], sd["1.weight"].transpose(2, 3, 1, 0))
    with pytest.raises(StateDictError, match=r"missing keys: 1\.bias"):
        nn.load_state_dict(model, partial, from_torch=True, strict=False)


def test_a_pytorch_state_dict_loaded_without_from_torch_says_so():
    model = nn.Sequential(nn.Linear(4, 3), nn.Embedding(5, 3))
    sd = _torch_layout_arrays(model)
    with pytest.raises(StateDictError, match="PyTorch's layouts: pass from_torch=True"):
        nn.load_state_dict(model, sd)
    wrong = {**sd, "0.weight": np.zeros((7, 7))}
    with pytest.raises(StateDictError) as info:
        nn.load_state_dict(model, wrong)
    assert "from_torch" not in str(info.value)


def test_flatten_inputs_errors_name_the_problem():
    model = _cnn()
    sd = _torch_layout_arrays(model)
    cases = [
        ({"9": (8, 3, 3)}, r"no Linear at \['9'\]"),
        ({"0": (8, 3, 3)}, r"flatten_inputs\['0'\]: 0 is a Conv2d, not a Linear"),
        ({"6": (8, 3, 4)}, r"\(8, 3, 4\) holds 96 features but 6 \(Linear\) has in_features=72"),
        ({"6": 72}, r"expected PyTorch's \(C, \*spatial\) shape"),
    ]
    for flatten, match in cases:
        with pytest.raises(ValueError, match=match):
            nn.load_state_dict(model, sd, from_torch=True, flatten_inputs=flatten)
    with pytest.raises(ValueError, match="pass from_torch=True"):
        nn.load_state_dict(model, sd, flatten_inputs={"6": (8, 3, 3)})


def test_torch_state_dict_of_params_of_another_model_raises():
    model = nn.Sequential(nn.Linear(4, 3))
    other = nn.Sequential(nn.Linear(5, 3), nn.Linear(3, 1))
    params, _ = _random_like(jax.eval_shape(other.init, jax.random.key(0)))
    with pytest.raises(StateDictError) as info:
        nn.torch_state_dict(model, params)
    message = str(info.value)
    assert "do not match Sequential" in message
    unexpected = next(line for line in message.splitlines() if "unexpected keys:" in line)
    assert sorted(unexpected.split(": ")[1].split(", ")) == ["1.bias", "1.weight"]
    assert "0.weight: expected shape (4, 3), got (5, 3)" in message


def test_loaded_arrays_do_not_alias_the_sources():
    model = nn.Linear(4, 3)
    sd = _torch_layout_arrays(model)
    params, _ = nn.load_state_dict(model, sd, from_torch=True)
    saved = np.array(params["weight"])
    sd["weight"] += 1  # in place; the loaded weight was a transposed view before the copy
    np.testing.assert_array_equal(params["weight"], saved)
    flat = nn.torch_state_dict(model, params)
    assert flat["weight"].flags.writeable and flat["weight"].flags.c_contiguous


# ------------------------------------------------------------------------ PyTorch


def _randomize(torch, module, scale=0.3):
    """Random values in every parameter and buffer (PyTorch's init leaves norms at 1/0)."""
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("num_batches_tracked"):
                tensor.fill_(7)
            elif name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0)
            else:
                tensor.normal_(0.0, scale)
    return module.eval()


def _torch_cases(torch):
    """(torch layer, funcnet layer, funcnet inputs, image layout) for every layer with a
    PyTorch counterpart; images are channels-last here and channels-first in PyTorch."""
    t = torch.nn
    img1, img2, img3 = normal(2, 7, 4), normal(2, 5, 6, 4), normal(1, 4, 5, 3, 2)
    seq, tok = normal(3, 2, 3), normal(2, 4, 8)
    cases = [
        (t.Linear(5, 3), nn.Linear(5, 3), (normal(2, 5),), False),
        (t.Bilinear(3, 4, 2), nn.Bilinear(3, 4, 2), (normal(2, 3), normal(2, 4)), False),
        (t.Conv1d(4, 6, 3, stride=2, groups=2), nn.Conv1d(4, 6, 3, stride=2, groups=2), (img1,), True),
        (t.Conv2d(4, 6, (3, 2), padding=1, groups=2), nn.Conv2d(4, 6, (3, 2), padding=1, groups=2), (img2,), True),
        (t.Conv3d(2, 4, (3, 2, 2)), nn.Conv3d(2, 4, (3, 2, 2)), (img3,), True),
        (t.ConvTranspose1d(4, 6, 3, stride=2, groups=2), nn.ConvTranspose1d(4, 6, 3, stride=2, groups=2), (img1,), True),
        (
            t.ConvTranspose2d(4, 6, (3, 2), stride=2, padding=1, output_padding=1, groups=2),
            nn.ConvTranspose2d(4, 6, (3, 2), stride=2, padding=1, output_padding=1, groups=2),
            (img2,),
            True,
        ),
        (t.ConvTranspose3d(2, 4, (2, 3, 2), stride=2), nn.ConvTranspose3d(2, 4, (2, 3, 2), stride=2), (img3,), True),
        (t.RNN(3, 4, nonlinearity="relu"), nn.RNN(3, 4, nonlinearity="relu"), (seq,), False),
        (t.LSTM(3, 4, num_layers=2, bidirectional=True), nn.LSTM(3, 4, num_layers=2, bidirectional=True), (seq,), False),
        (t.LSTM(3, 4, proj_size=2), nn.LSTM(3, 4, proj_size=2), (seq,), False),
        (t.GRU(3, 4, batch_first=True), nn.GRU(3, 4, batch_first=True), (seq,), False),
        (t.RNNCell(3, 4), nn.RNNCell(3, 4), (seq[0],), False),
        (t.LSTMCell(3, 4), nn.LSTMCell(3, 4), (seq[0],), False),
        (t.GRUCell(3, 4), nn.GRUCell(3, 4), (seq[0],), False),
        (t.MultiheadAttention(8, 2, batch_first=True), nn.MultiheadAttention(8, 2, batch_first=True), (tok, tok, tok), False),
        (
            t.MultiheadAttention(8, 2, kdim=3, vdim=5, add_bias_kv=True, batch_first=True),
            nn.MultiheadAttention(8, 2, kdim=3, vdim=5, add_bias_kv=True, batch_first=True),
            (tok, normal(2, 3, 3), normal(2, 3, 5)),
            False,
        ),
        (t.BatchNorm1d(4), nn.BatchNorm1d(4), (img1,), True),
        (t.BatchNorm2d(4), nn.BatchNorm2d(4), (img2,), True),
        (t.InstanceNorm2d(4, affine=True, track_running_stats=True), nn.InstanceNorm2d(4, affine=True, track_running_stats=True), (img2,), True),
        (t.GroupNorm(2, 4), nn.GroupNorm(2, 4), (img2,), True),
        (t.LayerNorm((6, 4)), nn.LayerNorm((6, 4)), (img2,), False),
        (t.RMSNorm((6, 4)), nn.RMSNorm((6, 4)), (img2,), False),
        (t.PReLU(4), nn.PReLU(4), (img2,), True),
        (t.Embedding(10, 4, padding_idx=0), nn.Embedding(10, 4, padding_idx=0), (np.array([[1, 0, 9]]),), False),
    ]  # fmt: skip
    return cases


def _composite_cases(torch):
    """Layers made of the layers above (their outputs follow from their parts'; a
    TransformerEncoderLayer's is checked through LayerStack below): state dicts only."""
    t = torch.nn
    encoder = t.TransformerEncoder(
        t.TransformerEncoderLayer(8, 2, 16), 2, norm=t.LayerNorm(8), enable_nested_tensor=False
    )
    cases = [
        (t.TransformerDecoderLayer(8, 2, 16), nn.TransformerDecoderLayer(8, 2, 16)),
        (
            encoder,
            nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16), 2, norm=nn.LayerNorm(8)),
        ),
        (t.SyncBatchNorm(4), nn.SyncBatchNorm(4)),
        (t.EmbeddingBag(10, 4), nn.EmbeddingBag(10, 4)),
    ]
    if hasattr(nn, "Transformer"):  # being added alongside this file
        kwargs = {"dim_feedforward": 16, "batch_first": True}
        cases.append((t.Transformer(8, 2, 1, 1, **kwargs), nn.Transformer(8, 2, 1, 1, **kwargs)))
    return cases


def _check_round_trip(torch, tm, fm):
    """PyTorch → funcnet → PyTorch gives PyTorch's state_dict back exactly (keys, shapes,
    dtypes, values); returns the loaded (params, state)."""
    sd = _randomize(torch, tm).state_dict()
    params, state = nn.load_state_dict(fm, sd, from_torch=True)
    back = nn.torch_state_dict(fm, params, state)
    assert set(back) == set(sd), type(fm).__name__
    for key, tensor in sd.items():
        want = tensor.numpy()
        assert back[key].dtype == want.dtype and back[key].shape == want.shape, key
        np.testing.assert_array_equal(back[key], want, err_msg=f"{type(fm).__name__} {key}")
    return params, state


def _to_torch_input(torch, x, image):
    x = np.asarray(x)
    if image and x.ndim > 2:
        x = np.moveaxis(x, -1, 1)
    return torch.from_numpy(np.ascontiguousarray(x))


def _from_torch_output(t, image):
    t = t.detach().numpy()
    return np.moveaxis(t, 1, -1) if image and t.ndim > 2 else t


@pytest.mark.torch
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_every_layer_matches_pytorch_in_and_round_trips_its_state_dict():
    """Random PyTorch weights and buffers, loaded with from_torch: the outputs match
    PyTorch's in float32, and torch_state_dict gives back PyTorch's state_dict exactly
    (keys, shapes, dtypes, values). All layers run in one jitted program."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    for tm, fm in _composite_cases(torch):
        _check_round_trip(torch, tm, fm)
    cases = _torch_cases(torch)
    loaded = [_check_round_trip(torch, tm, fm) for tm, fm, _, _ in cases]
    run = jax.jit(
        lambda ps, xs: [fm.apply(*p, *x)[0] for (_, fm, _, _), p, x in zip(cases, ps, xs)]
    )
    outputs = run(loaded, [x for _, _, x, _ in cases])
    for (tm, fm, xs, image), got in zip(cases, outputs):
        with torch.no_grad():
            want = tm(*(_to_torch_input(torch, x, image) for x in xs))
        got_leaves, want_leaves = jax.tree.leaves(got), jax.tree.leaves(want)
        assert len(got_leaves) == len(want_leaves), type(fm).__name__
        for g, w in zip(got_leaves, want_leaves):
            # float32 sums of <= 48 terms of size <= ~1 in either library's order: within
            # ~sqrt(48)·U32·48 ≈ 2e-5 of each other, so 1e-4 holds with margin
            np.testing.assert_allclose(
                g, _from_torch_output(w, image), rtol=1e-4, atol=1e-4, err_msg=type(fm).__name__
            )


@pytest.mark.torch
def test_a_torch_cnn_with_a_flatten_matches_end_to_end_with_gradients():
    """A whole PyTorch CNN: outputs, the exported state dict, and the gradients exported
    with torch_state_dict (a gradient has its parameter's layout) match PyTorch's."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    t = torch.nn

    def torch_cnn():
        return t.Sequential(
            t.Conv2d(3, 4, 3, padding=1), t.BatchNorm2d(4), t.ReLU(), t.MaxPool2d(2),
            t.Conv2d(4, 8, 3, padding=1, groups=2), t.ReLU(), t.Flatten(),
            t.Linear(72, 5), t.ReLU(), t.Linear(5, 3),
        )  # fmt: skip

    tm = _randomize(torch, torch_cnn(), scale=0.5)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3, padding=1, groups=2), nn.ReLU(), nn.Flatten(),
        nn.Linear(72, 5), nn.ReLU(), nn.Linear(5, 3),
    )  # fmt: skip
    flatten = {"7": (8, 3, 3)}
    params, state = nn.load_state_dict(
        model, tm.state_dict(), from_torch=True, flatten_inputs=flatten
    )
    x = normal(2, 6, 6, 3)

    def loss(params, x):
        return jnp.sum(model.apply(params, state, x)[0] ** 2)

    value, grads = jax.jit(jax.value_and_grad(loss))(params, x)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    want = (tm(xt) ** 2).sum()
    want.backward()
    np.testing.assert_allclose(value, want.item(), rtol=1e-5)
    exported = nn.torch_state_dict(model, grads, state, flatten_inputs=flatten)
    for name, p in tm.named_parameters():
        np.testing.assert_allclose(
            exported[name], p.grad.numpy(), rtol=1e-4, atol=1e-5, err_msg=name
        )
    back = nn.torch_state_dict(model, params, state, flatten_inputs=flatten)
    for key, tensor in tm.state_dict().items():
        np.testing.assert_array_equal(back[key], tensor.numpy())
    fresh = torch_cnn().eval()
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()})
    with torch.no_grad():
        np.testing.assert_array_equal(fresh(xt).numpy(), tm(xt).numpy())


@pytest.mark.torch
def test_a_layer_stack_loads_pytorchs_transformer_encoder():
    torch = pytest.importorskip("torch")
    torch.manual_seed(2)
    block = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    tm = _randomize(torch, torch.nn.TransformerEncoder(block, 3, enable_nested_tensor=False))

    class Encoder(Module):
        def __init__(self):
            layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
            self.layers = nn.LayerStack(layer, 3)

        def forward(self, ctx, x):
            return self.layers(ctx, x)

    model = Encoder()
    params, state = nn.load_state_dict(model, tm.state_dict(), from_torch=True)
    x = normal(2, 4, 8)
    y, _ = jax.jit(model.apply)(params, state, x)
    with torch.no_grad():
        want = tm(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)
    back = nn.torch_state_dict(model, params, state)
    assert all(np.array_equal(back[k], v.numpy()) for k, v in tm.state_dict().items())


@pytest.mark.torch
def test_the_pages_code_runs_and_prints_what_it_shows(tmp_path, monkeypatch):
    """docs/pytorch-weights.md: its python blocks run in order; a text block right after
    one is its output, and the error shown is the one raised (``py`` blocks need files
    the page does not make)."""
    pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    text = DOC.read_text()
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    output, end, compared = None, -1, 0
    for block in re.finditer(r"```(\w+)\n(.*?)```", text, flags=re.DOTALL):
        language, code = block.groups()
        if language == "python":
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                exec(compile(code, str(DOC), "exec"), namespace)
            output, end = buffer.getvalue(), block.end()
        elif language == "text" and output is not None and not text[end : block.start()].strip():
            assert output.strip() == code.strip()
            compared += 1
    assert compared == 3
    sd = dict(namespace["torch_model"].state_dict())
    del sd["1.num_batches_tracked"]
    sd["fc.weight"], sd["5.weight"] = sd["5.weight"], sd["5.weight"].T
    with pytest.raises(StateDictError) as info:
        nn.load_state_dict(namespace["model"], sd, from_torch=True)
    shown = re.search(r"```text\n(funcnet.errors.StateDictError: .*?)```", text, re.DOTALL)
    assert f"funcnet.errors.StateDictError: {info.value}" == shown.group(1).strip()


def test_docstring_examples():
    result = doctest.testmod(funcnet.nn._state_dict)
    assert result.attempted >= 8 and result.failed == 0
