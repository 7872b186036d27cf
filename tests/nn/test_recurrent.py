"""RNN, LSTM, GRU and their cells against NumPy loops written here and against PyTorch.

The references take weights in PyTorch's layout ``(gates * hidden, in)``; funcnet's are the
transposes, and every test converts explicitly with ``_to_funcnet``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet.functional as F
from funcnet import nn
from funcnet.errors import ShapeError
from tests._numerics import check_grads_float64, to_float64
from tests.conftest import torch_or_skip

GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}
IN, H, T, B = 3, 4, 5, 3
P = 2  # LSTM proj_size
LENGTHS = np.array([5, 2, 4])


# ------------------------------------------------------------------ NumPy reference
def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_cell(kind, x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr=None, nonlinearity="tanh"):
    """One step in PyTorch's layout and equations; returns (h', c'). ``w_hr`` (P, H) is
    PyTorch's LSTM projection ``weight_hr``."""
    # in float64 (float32 operands would make NumPy's matmuls float32, CPU-dependent BLAS)
    x, h, c, w_ih, w_hh, b_ih, b_hh = (
        np.asarray(a, np.float64) for a in (x, h, c, w_ih, w_hh, b_ih, b_hh)
    )
    gx, gh = w_ih @ x + b_ih, w_hh @ h + b_hh
    if kind == "LSTM":
        i, f, g, o = np.split(gx + gh, 4)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        return (h if w_hr is None else np.asarray(w_hr, np.float64) @ h), c
    if kind == "GRU":
        r = _sigmoid(gx[:H] + gh[:H])
        z = _sigmoid(gx[H : 2 * H] + gh[H : 2 * H])
        n = np.tanh(gx[2 * H :] + r * gh[2 * H :])
        return (1 - z) * n + z * h, c
    pre = gx + gh
    return (np.tanh(pre) if nonlinearity == "tanh" else np.maximum(pre, 0)), c


def np_rnn(kind, x, params, num_layers, directions, lengths, h0=None, c0=None, proj=0, **kw):
    """Loops over each sequence's valid steps only: x (T, B, IN) -> output, h_n, c_n.
    ``proj`` > 0: an LSTM with ``weight_hr_l{k}`` in ``params`` (h has ``proj`` features)."""
    steps, batch = x.shape[:2]
    size = proj or H
    out = x
    h_n, c_n = [], []
    for layer in range(num_layers):
        per_dir = []
        for d in range(directions):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            w = [params[f"{n}{sfx}"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            w_hr = params[f"weight_hr{sfx}"] if proj else None
            ys = np.zeros((steps, batch, size))
            row = layer * directions + d
            for b in range(batch):
                h = np.zeros(size) if h0 is None else h0[row, b]
                c = np.zeros(H) if c0 is None else c0[row, b]
                order = range(lengths[b]) if d == 0 else reversed(range(lengths[b]))
                for t in order:
                    h, c = np_cell(kind, out[t, b], h, c, *w, w_hr, **kw)
                    ys[t, b] = h
                h_n.append(h)
                c_n.append(c)
            per_dir.append(ys)
        out = np.concatenate(per_dir, axis=-1)
    rows = num_layers * directions
    # h_n was appended per (layer, direction, batch): regroup
    return out, np.reshape(h_n, (rows, batch, size)), np.reshape(c_n, (rows, batch, H))


def torch_layout_params(kind, num_layers, directions, seed=0, input_size=IN, proj=0):
    rng = np.random.default_rng(seed)
    g = GATES[kind] * H
    size = proj or H
    params = {}
    for layer in range(num_layers):
        n_in = input_size if layer == 0 else size * directions
        for d in range(directions):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            params[f"weight_ih{sfx}"] = rng.uniform(-0.6, 0.6, (g, n_in)).astype(np.float32)
            params[f"weight_hh{sfx}"] = rng.uniform(-0.6, 0.6, (g, size)).astype(np.float32)
            params[f"bias_ih{sfx}"] = rng.uniform(-0.6, 0.6, (g,)).astype(np.float32)
            params[f"bias_hh{sfx}"] = rng.uniform(-0.6, 0.6, (g,)).astype(np.float32)
            if proj:
                params[f"weight_hr{sfx}"] = rng.uniform(-0.6, 0.6, (proj, H)).astype(np.float32)
    return params


def _to_funcnet(torch_params):
    """PyTorch's (gates*hidden, in) weights -> funcnet's (in, gates*hidden); biases as-is."""
    return {
        k: jnp.asarray(np.asarray(v).T if np.ndim(v) == 2 else v) for k, v in torch_params.items()
    }


def _make(kind, **kw):
    if kind.startswith("RNN"):
        nonlinearity = "relu" if kind == "RNN-relu" else "tanh"
        return nn.RNN(IN, H, nonlinearity=nonlinearity, **kw)
    return getattr(nn, kind)(IN, H, **kw)


def _apply(model, params, *args, train=False, key=None, **kwargs):
    fn = jax.jit(lambda p, a, k: model.apply(p, {}, *a, train=train, key=k, **kwargs)[0])
    return fn(params, args, key)


# --------------------------------------------------------------------------- tests
@pytest.mark.parametrize("projection", ["hoisted", "per_step"])
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN", "RNN-relu"])
def test_bidirectional_multilayer_with_lengths_matches_numpy(kind, projection):
    base = kind.split("-")[0]
    tp = torch_layout_params(base, 2, 2)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, T, IN)).astype(np.float32)
    h0 = rng.standard_normal((4, B, H)).astype(np.float32)
    c0 = rng.standard_normal((4, B, H)).astype(np.float32)
    model = _make(
        kind, num_layers=2, bidirectional=True, batch_first=True, input_projection=projection
    )
    hx = (jnp.asarray(h0), jnp.asarray(c0)) if base == "LSTM" else jnp.asarray(h0)
    out, state = _apply(model, _to_funcnet(tp), jnp.asarray(x), hx, jnp.asarray(LENGTHS))

    nl = "relu" if kind == "RNN-relu" else "tanh"
    kw = {"nonlinearity": nl} if base == "RNN" else {}
    ref_out, ref_h, ref_c = np_rnn(base, x.transpose(1, 0, 2), tp, 2, 2, LENGTHS, h0, c0, **kw)
    # float32 against float64: each step's gates are sums of <= 14 terms (|w| < 0.6, sum of
    # |terms| < 8), ~sqrt(14) U32 * 8 ~ 2e-6 at most in practice and damped by tanh and
    # sigmoid over the 5 steps; 3e-7 measured, 30x inside rtol=atol=1e-5 (tests/_numerics.py)
    np.testing.assert_allclose(out, ref_out.transpose(1, 0, 2), rtol=1e-5, atol=1e-5)
    if base == "LSTM":
        np.testing.assert_allclose(state[0], ref_h, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(state[1], ref_c, rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_allclose(state, ref_h, rtol=1e-5, atol=1e-5)
    assert out.shape == (B, T, 2 * H)
    assert np.all(np.asarray(out)[1, 2:] == 0)  # padded steps output zeros


def test_time_major_without_lengths_matches_numpy():
    tp = torch_layout_params("LSTM", 1, 1)
    x = np.random.default_rng(2).standard_normal((T, B, IN)).astype(np.float32)
    out, (h, c) = _apply(nn.LSTM(IN, H), _to_funcnet(tp), jnp.asarray(x))
    ref_out, ref_h, _ = np_rnn("LSTM", x, tp, 1, 1, [T] * B)
    # as test_bidirectional_multilayer_with_lengths_matches_numpy (8e-8 measured)
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h, ref_h, rtol=1e-5, atol=1e-5)
    assert out.shape == (T, B, H) and h.shape == c.shape == (1, B, H)


# (bidirectional, vmapped over the batch, input_projection) of the proj_size tests; the NumPy
# and PyTorch tests run the same compiled functions (_lstm_proj)
PROJ_CASES = [(True, False, "hoisted"), (False, True, "per_step")]


@functools.partial(jax.jit, static_argnums=(0, 1))
def _lstm_proj(model, vmapped, params, x, h0, c0, lengths):
    """The batch-first LSTM's ``(output, (h_n, c_n))``; ``vmapped``: the unbatched layer
    mapped over the batch (x, h0, c0 and lengths)."""

    def run(x, h0, c0, lengths):
        return model.apply(params, {}, x, (h0, c0), lengths=lengths)[0]

    if vmapped:
        run = jax.vmap(run, in_axes=(0, 1, 1, 0), out_axes=(0, (1, 1)))
    return run(x, h0, c0, lengths)


def _proj_model(bidirectional, projection):
    return nn.LSTM(
        IN, H, 2, batch_first=True, bidirectional=bidirectional, proj_size=P,
        input_projection=projection,
    )  # fmt: skip


def _proj_inputs(directions, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, IN)).astype(np.float32)
    h0 = rng.standard_normal((2 * directions, B, P)).astype(np.float32)
    c0 = rng.standard_normal((2 * directions, B, H)).astype(np.float32)
    return x, h0, c0


@pytest.mark.parametrize(("bidirectional", "vmapped", "projection"), PROJ_CASES)
def test_lstm_projection_matches_numpy(bidirectional, vmapped, projection):
    """proj_size: h and each direction's output have P features, c keeps hidden_size."""
    d = 2 if bidirectional else 1
    tp = torch_layout_params("LSTM", 2, d, proj=P)
    x, h0, c0 = _proj_inputs(d, 8)
    model = _proj_model(bidirectional, projection)
    args = tuple(map(jnp.asarray, (x, h0, c0, LENGTHS)))
    out, (h, c) = _lstm_proj(model, vmapped, _to_funcnet(tp), *args)
    ref_out, ref_h, ref_c = np_rnn("LSTM", x.transpose(1, 0, 2), tp, 2, d, LENGTHS, h0, c0, proj=P)
    assert out.shape == (B, T, d * P) and h.shape == (2 * d, B, P) and c.shape == (2 * d, B, H)
    # float32 against float64: the gate sums have <= 13 terms (|w| < 0.6, sum of |terms|
    # < 8) and the projection 4, as in test_bidirectional_multilayer_with_lengths_matches_numpy
    # (~sqrt(13) U32 * 8 ~ 2e-6 at most in practice, damped by tanh and sigmoid); 1e-7
    # measured, 100x inside rtol=atol=1e-5
    np.testing.assert_allclose(out, ref_out.transpose(1, 0, 2), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h, ref_h, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(c, ref_c, rtol=1e-5, atol=1e-5)
    assert np.all(np.asarray(out)[1, 2:] == 0)  # padded steps output zeros


@pytest.mark.torch
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")
def test_lstm_projection_matches_pytorch():
    torch = torch_or_skip()
    for bidirectional, vmapped, projection in PROJ_CASES:
        d = 2 if bidirectional else 1
        torch.manual_seed(d)
        tm = torch.nn.LSTM(IN, H, 2, batch_first=True, bidirectional=bidirectional, proj_size=P)
        x, h0, c0 = _proj_inputs(d, 9)
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            torch.tensor(x), torch.tensor(LENGTHS), batch_first=True, enforce_sorted=False
        )
        with torch.no_grad():
            out_t, (h_t, c_t) = tm(packed, (torch.tensor(h0), torch.tensor(c0)))
        out_t, _ = torch.nn.utils.rnn.pad_packed_sequence(out_t, True, total_length=T)

        params = _to_funcnet({k: v.numpy() for k, v in tm.state_dict().items()})
        args = tuple(map(jnp.asarray, (x, h0, c0, LENGTHS)))
        model = _proj_model(bidirectional, projection)
        out, (h, c) = _lstm_proj(model, vmapped, params, *args)
        # two float32 computations, each ~1e-7 off the exact values (the NumPy test above):
        # 3e-7 measured, 30x inside
        np.testing.assert_allclose(out, out_t.numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(h, h_t.numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(c, c_t.numpy(), rtol=1e-5, atol=1e-5)


def test_lstm_projection_parameter_shapes():
    # init's names and shapes: PyTorch's (written in torch_layout_params) transposed
    model = nn.LSTM(IN, H, 2, bidirectional=True, proj_size=P)
    shapes = jax.eval_shape(model.init, jax.random.key(0))[0]
    params = torch_layout_params("LSTM", 2, 2, proj=P)
    assert {k: v.shape for k, v in shapes.items()} == {k: v.shape[::-1] for k, v in params.items()}
    assert shapes["weight_hr_l1_reverse"].shape == (H, P)
    assert shapes["weight_ih_l1"].shape == (2 * P, 4 * H)  # layer 1 reads D * P features
    assert shapes["weight_hh_l0"].shape == (P, 4 * H)


@pytest.mark.torch
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_matches_pytorch_packed_sequences_and_gradients(kind):
    torch = torch_or_skip()
    torch.manual_seed(0)
    tm = getattr(torch.nn, kind)(IN, H, num_layers=2, bidirectional=True)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((T, B, IN)).astype(np.float32)
    h0 = rng.standard_normal((4, B, H)).astype(np.float32)
    c0 = rng.standard_normal((4, B, H)).astype(np.float32)
    w_out = rng.standard_normal((T, B, 2 * H)).astype(np.float32)

    xt = torch.tensor(x, requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        xt, torch.tensor(LENGTHS), enforce_sorted=False
    )
    hx_t = (torch.tensor(h0), torch.tensor(c0)) if kind == "LSTM" else torch.tensor(h0)
    out_t, hn_t = tm(packed, hx_t)
    out_t, _ = torch.nn.utils.rnn.pad_packed_sequence(out_t, total_length=T)
    h_t = hn_t[0] if kind == "LSTM" else hn_t
    loss_t = (out_t * torch.tensor(w_out)).sum() + h_t.square().sum()
    loss_t.backward()

    model = getattr(nn, kind)(IN, H, num_layers=2, bidirectional=True)
    params = _to_funcnet({k: v.detach().numpy() for k, v in tm.named_parameters()})
    hx = (jnp.asarray(h0), jnp.asarray(c0)) if kind == "LSTM" else jnp.asarray(h0)

    def loss(p, x):
        (out, hn), _ = model.apply(p, {}, x, hx, lengths=jnp.asarray(LENGTHS))
        h = hn[0] if kind == "LSTM" else hn
        return jnp.sum(out * w_out) + jnp.sum(h**2), out

    (value, out), (g_params, g_x) = jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True))(
        params, jnp.asarray(x)
    )
    # two float32 computations, each ~1e-7 off the exact outputs (see the NumPy tests); the
    # loss sums 120 terms of size < 3 (~sqrt(120) U32 * 5 ~ 3e-6 typical, |loss| ~ 6) and
    # the gradients run the same steps back: 2e-6 measured, 20x inside all the bounds
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(value, loss_t.item(), rtol=1e-5)
    np.testing.assert_allclose(g_x, xt.grad.numpy(), rtol=1e-4, atol=1e-5)
    for name, p in tm.named_parameters():
        want = p.grad.numpy().T if p.ndim == 2 else p.grad.numpy()
        np.testing.assert_allclose(g_params[name], want, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.torch
def test_parameter_names_shapes_and_default_init_match_pytorch(key):
    torch = torch_or_skip()
    configs = [(kind, {}) for kind in ("RNN", "LSTM", "GRU")] + [("LSTM", {"proj_size": P})]
    for kind, kw in configs:
        tm = getattr(torch.nn, kind)(IN, H, num_layers=2, bidirectional=True, **kw)
        params, state = getattr(nn, kind)(IN, H, num_layers=2, bidirectional=True, **kw).init(key)
        want = {k: tuple(v.shape[::-1]) for k, v in tm.state_dict().items()}
        assert {k: v.shape for k, v in nn.state_dict(params, state).items()} == want
        bound = 1 / np.sqrt(H)
        assert all(float(jnp.max(jnp.abs(v))) <= bound for v in params.values())
    cells = {"RNNCell": nn.RNNCell, "LSTMCell": nn.LSTMCell, "GRUCell": nn.GRUCell}
    for name, cls in cells.items():
        tm = getattr(torch.nn, name)(IN, H)
        params, _ = cls(IN, H).init(key)
        assert {k: v.shape for k, v in params.items()} == {
            k: tuple(v.shape[::-1]) for k, v in tm.state_dict().items()
        }


@pytest.mark.parametrize("kind", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cells_match_numpy_and_a_sequence_step(kind):
    base = kind.removesuffix("Cell")
    tp = torch_layout_params(base, 1, 1)
    cell_tp = {k.removesuffix("_l0"): v for k, v in tp.items()}
    rng = np.random.default_rng(4)
    x = rng.standard_normal((B, IN)).astype(np.float32)
    h = rng.standard_normal((B, H)).astype(np.float32)
    c = rng.standard_normal((B, H)).astype(np.float32)
    cell = getattr(nn, kind)(IN, H)
    # In float64: in float32 a gate's 9-term sum (sum|terms| up to ~10) is ~1e-6 off, the
    # size of atol=1e-6 for outputs near 0 (1/7 of it measured on one CPU)
    with jax.enable_x64(True):
        params, x, h, c = to_float64((_to_funcnet(cell_tp), x, h, c))
        hx = (h, c) if base == "LSTM" else h
        got, _ = cell.apply(params, {}, x, hx)
        # unbatched input, default zero state
        single, _ = cell.apply(params, {}, x[0])
    assert jax.tree.leaves((got, single))[0].dtype == jnp.float64
    w = [cell_tp[n] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    ref = [np_cell(base, x[b], h[b], c[b], *w) for b in range(B)]
    if base == "LSTM":
        np.testing.assert_allclose(got[0], [r[0] for r in ref], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got[1], [r[1] for r in ref], rtol=1e-12, atol=1e-12)
    else:
        np.testing.assert_allclose(got, [r[0] for r in ref], rtol=1e-12, atol=1e-12)
    zero = np_cell(base, x[0], np.zeros(H), np.zeros(H), *w)
    np.testing.assert_allclose(single[0] if base == "LSTM" else single, zero[0], atol=1e-12)


@pytest.mark.torch
def test_cells_match_pytorch():
    torch = torch_or_skip()
    rng = np.random.default_rng(5)
    # Both in float64, as test_cells_match_numpy_and_a_sequence_step: the equations' parity
    # without two libraries' float32 roundings (~1e-6 apart near 0 at atol=1e-6)
    x = rng.standard_normal((B, IN))
    h = rng.standard_normal((B, H))
    for kind, kw in (("RNNCell", {"nonlinearity": "relu"}), ("LSTMCell", {}), ("GRUCell", {})):
        tm = getattr(torch.nn, kind)(IN, H, **kw).double()
        params = _to_funcnet({k: v.detach().numpy() for k, v in tm.named_parameters()})
        hx = (h, h) if kind == "LSTMCell" else h
        want = tm(
            torch.tensor(x), tuple(map(torch.tensor, hx)) if kind == "LSTMCell" else torch.tensor(h)
        )
        with jax.enable_x64(True):
            got, _ = getattr(nn, kind)(IN, H, **kw).apply(params, {}, jnp.asarray(x), hx)
        if kind == "LSTMCell":
            got, want = got[1], want[1]
        assert got.dtype == jnp.float64
        np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_gradients_match_finite_differences():
    """A bidirectional GRU and an LSTM with proj_size, with lengths, in one check (one
    compilation)."""
    gru = nn.GRU(IN, H, bidirectional=True, batch_first=True)
    lstm = nn.LSTM(IN, H, batch_first=True, proj_size=P)
    params = {
        "gru": _to_funcnet(torch_layout_params("GRU", 1, 2)),
        "lstm": _to_funcnet(torch_layout_params("LSTM", 1, 1, proj=P)),
    }
    lengths = jnp.asarray([4, 2])
    x = jax.random.normal(jax.random.key(0), (2, 4, IN))

    def f(p, x):
        (out, h), _ = gru.apply(p["gru"], {}, x, lengths=lengths)
        (out_p, (h_p, c_p)), _ = lstm.apply(p["lstm"], {}, x, lengths=lengths)
        projected = jnp.sum(jnp.sin(out_p)) + jnp.sum(h_p**2) + jnp.sum(c_p**2)
        return jnp.sum(jnp.sin(out)) + jnp.sum(h**2) + projected

    check_grads_float64(jax.jit(f), (params, x))


@pytest.mark.parametrize("projection", ["hoisted", "per_step"])
def test_program_size_does_not_grow_with_sequence_length(projection):
    model = nn.LSTM(IN, H, num_layers=2, batch_first=True, input_projection=projection)
    params, _ = model.init(jax.random.key(0))

    def size(steps):
        fn = jax.jit(lambda p, x: model.apply(p, {}, x)[0][0])
        hlo = (
            fn.lower(params, jax.ShapeDtypeStruct((2, steps, IN), jnp.float32)).compile().as_text()
        )
        return sum(1 for line in hlo.splitlines() if " = " in line)  # HLO instructions

    assert size(16) == size(512)


def test_dropout_between_layers_only_in_training():
    model = nn.LSTM(IN, H, num_layers=2, dropout=0.5)
    plain = nn.LSTM(IN, H, num_layers=2)
    params, _ = model.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (T, B, IN))
    eval_out = _apply(model, params, x)[0]
    # the same float32 operations (no dropout in eval): identical, or a few roundings apart
    np.testing.assert_allclose(eval_out, _apply(plain, params, x)[0], atol=1e-6)
    a = _apply(model, params, x, train=True, key=jax.random.key(2))[0]
    b = _apply(model, params, x, train=True, key=jax.random.key(2))[0]
    c = _apply(model, params, x, train=True, key=jax.random.key(3))[0]
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c) and not np.allclose(a, eval_out)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        model.apply(params, {}, x, train=True)


def test_unbatched_input_matches_a_batch_of_one():
    model = nn.LSTM(IN, H, num_layers=2, bidirectional=True, batch_first=True)
    params, _ = model.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (T, IN))
    h0 = jax.random.normal(jax.random.key(2), (4, H))
    # float64: with and without the batch axis XLA may pick other dot kernels (another
    # summation order), in float32 ~1e-6 apart after 5 steps, the size of atol=1e-6
    with jax.enable_x64(True):
        params, x, h0 = to_float64((params, x, h0))
        (out, (h, c)), _ = model.apply(params, {}, x, (h0, h0))
        (out_b, (_, c_b)), _ = model.apply(params, {}, x[None], (h0[:, None], h0[:, None]))
    assert out.shape == (T, 2 * H) and h.shape == c.shape == (4, H)
    assert out.dtype == c.dtype == jnp.float64
    np.testing.assert_allclose(out, out_b[0], atol=1e-12)
    np.testing.assert_allclose(c, c_b[:, 0], atol=1e-12)


def test_functional_layers_match_numpy():
    tp = torch_layout_params("GRU", 1, 2)
    x = np.random.default_rng(6).standard_normal((B, T, IN)).astype(np.float32)
    ref_out, ref_h, _ = np_rnn("GRU", x.transpose(1, 0, 2), tp, 1, 2, LENGTHS)
    fp = _to_funcnet(tp)
    weights = [fp[f"{n}_l0_reverse"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    out, h = F.gru(jnp.asarray(x), None, *weights, lengths=jnp.asarray(LENGTHS), reverse=True, batch_first=True)  # fmt: skip
    # float32 against float64, 7e-8 measured (see the NumPy test above): 14x inside atol=1e-6
    np.testing.assert_allclose(out, ref_out.transpose(1, 0, 2)[..., H:], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h, ref_h[1], rtol=1e-5, atol=1e-6)


def test_functional_lstm_with_projection_matches_numpy():
    tp = torch_layout_params("LSTM", 1, 1, proj=P)
    x = np.random.default_rng(10).standard_normal((T, B, IN)).astype(np.float32)
    fp = _to_funcnet(tp)
    weights = [fp[f"{n}_l0"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    lengths = jnp.asarray(LENGTHS)
    out, (h, c) = F.lstm(
        jnp.asarray(x), None, *weights, lengths=lengths, weight_hr=fp["weight_hr_l0"]
    )
    ref_out, ref_h, ref_c = np_rnn("LSTM", x, tp, 1, 1, LENGTHS, proj=P)
    assert out.shape == (T, B, P) and h.shape == (B, P) and c.shape == (B, H)
    # float32 against float64, as test_lstm_projection_matches_numpy (1e-7 measured)
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h, ref_h[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(c, ref_c[0], rtol=1e-5, atol=1e-5)


def test_shape_errors_name_the_layer():
    model = nn.LSTM(IN, H, num_layers=2)
    params, _ = model.init(jax.random.key(0))
    x = jnp.zeros((T, B, IN))
    with pytest.raises(ShapeError, match=r"model \(LSTM\): expected input with last dimension 3"):
        model.apply(params, {}, jnp.zeros((T, B, IN + 1)))
    with pytest.raises(ShapeError, match=r"model \(LSTM\): expected h_0 of shape \(2, 3, 4\)"):
        model.apply(params, {}, x, (jnp.zeros((1, B, H)), jnp.zeros((2, B, H))))
    with pytest.raises(ShapeError, match=r"model \(LSTM\): expected lengths of shape \(3,\)"):
        model.apply(params, {}, x, lengths=jnp.array([1, 2]))
    with pytest.raises(ShapeError, match=r"model \(LSTM\): expected integer lengths"):
        model.apply(params, {}, x, lengths=jnp.ones(B))
    with pytest.raises(ShapeError, match=r"model \(GRU\): expected 2 or 3-D input"):
        nn.GRU(IN, H).apply(nn.GRU(IN, H).init(jax.random.key(0))[0], {}, jnp.zeros((1, T, B, IN)))
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.RNN(IN, H, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="LSTM: proj_size must be smaller than hidden_size"):
        nn.LSTM(IN, H, proj_size=H)
    with pytest.raises(ValueError, match="LSTM: proj_size must be a positive integer or zero"):
        nn.LSTM(IN, H, proj_size=-1)
    proj = nn.LSTM(IN, H, num_layers=2, proj_size=2)
    pparams, _ = proj.init(jax.random.key(0))
    with pytest.raises(
        ShapeError, match=r"model \(LSTM\): expected h_0 of shape \(2, 3, 2\) .*proj_size\)"
    ):
        proj.apply(pparams, {}, x, (jnp.zeros((2, B, H)), jnp.zeros((2, B, H))))
    with pytest.raises(
        ShapeError, match=r"model \(LSTM\): expected c_0 of shape \(2, 3, 4\) .*hidden_size\)"
    ):
        proj.apply(pparams, {}, x, (jnp.zeros((2, B, 2)), jnp.zeros((2, B, 2))))
    w = [pparams[f"{n}_l0"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    with pytest.raises(ShapeError, match=r"lstm: expected weight_hr of shape \(4, 2\)"):
        F.lstm(x, None, *w, weight_hr=pparams["weight_hr_l0"].T)
    with pytest.raises(ValueError, match="input_projection"):
        nn.GRU(IN, H, input_projection="fused")


def test_docstring_examples_run():
    import doctest

    import funcnet.nn._recurrent as layers

    result = doctest.testmod(layers)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("projection", ["hoisted", "per_step"])
def test_gru_without_bias_matches_numpy(projection):
    tp = {k: v for k, v in torch_layout_params("GRU", 1, 1).items() if k.startswith("weight")}
    x = np.random.default_rng(7).standard_normal((T, B, IN)).astype(np.float32)
    model = nn.GRU(IN, H, bias=False, input_projection=projection)
    out, h = _apply(model, _to_funcnet(tp), jnp.asarray(x))
    zero = np.zeros(3 * H, np.float32)
    ref_out, ref_h, _ = np_rnn(
        "GRU", x, {**tp, "bias_ih_l0": zero, "bias_hh_l0": zero}, 1, 1, [T] * B
    )
    # float32 against float64, 7e-8 measured (see the NumPy tests above): 13x inside
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h, ref_h, rtol=1e-5, atol=1e-6)


def _all_eqns(jaxpr):
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for sub in value if isinstance(value, tuple | list) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _all_eqns(inner)


def test_hoisted_input_projection_gradient_contracts_one_axis(monkeypatch):
    # On CPU the hoisted x @ weight_ih runs on the (batch·time, in) view (F.linear's reason:
    # XLA:CPU compiles a gradient contracting batch and time as a copy and a slower matmul).
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    model = nn.LSTM(IN, H, batch_first=True, input_projection="hoisted")
    params, _ = model.init(jax.random.key(0))
    x = jnp.ones((B, T, IN))
    loss = lambda p: jnp.sum(model.apply(p, {}, x)[0][0])
    dots = [
        e
        for e in _all_eqns(jax.make_jaxpr(jax.grad(loss))(params).jaxpr)
        if e.primitive.name == "dot_general"
    ]
    assert dots
    for eqn in dots:
        (lhs_contract, _), _ = eqn.params["dimension_numbers"]
        assert len(lhs_contract) == 1, eqn
