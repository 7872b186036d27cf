"""Activations (functions and layers) against NumPy and PyTorch."""

import dataclasses
import math
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet.functional as F
from funcnet import nn
from funcnet.errors import ShapeError
from tests._numerics import check_grads_float64

X = np.linspace(-30, 30, 61).astype(np.float32)
DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "layers.md"


def _np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


_erf = np.vectorize(math.erf)
REFERENCES = {
    "relu": (nn.ReLU(), lambda x: np.maximum(x, 0)),
    "leaky_relu": (nn.LeakyReLU(0.2), lambda x: np.where(x >= 0, x, 0.2 * x)),
    "elu": (nn.ELU(0.5), lambda x: np.where(x > 0, x, 0.5 * np.expm1(x))),
    "gelu": (nn.GELU(), lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(2)))),
    "gelu_tanh": (
        nn.GELU("tanh"),
        lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),
    ),
    "silu": (nn.SiLU(), lambda x: x / (1 + np.exp(-x))),
    "tanh": (nn.Tanh(), np.tanh),
    "sigmoid": (nn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    "softplus": (
        nn.Softplus(beta=2.0, threshold=10.0),
        lambda x: np.where(2 * x > 10, x, np.log1p(np.exp(2 * x)) / 2),
    ),
    "softmax": (nn.Softmax(), _np_softmax),
    "log_softmax": (nn.LogSoftmax(), lambda x: np.log(_np_softmax(x))),
    "softmin": (nn.Softmin(), lambda x: _np_softmax(-x)),
    # X holds every integer in [-30, 30]: the kinks at 0, ±1, ±3 and 6 are on the grid
    "relu6": (nn.ReLU6(), lambda x: np.clip(x, 0, 6)),
    "hardtanh": (nn.Hardtanh(-2.0, 1.5), lambda x: np.clip(x, -2, 1.5)),
    "hardsigmoid": (nn.Hardsigmoid(), lambda x: np.clip(x + 3, 0, 6) / 6),
    "hardswish": (nn.Hardswish(), lambda x: x * np.clip(x + 3, 0, 6) / 6),
    "threshold": (nn.Threshold(1.0, -2.0), lambda x: np.where(x > 1, x, -2.0)),
    "hardshrink": (nn.Hardshrink(1.0), lambda x: np.where(np.abs(x) > 1, x, 0)),
    "softshrink": (nn.Softshrink(1.0), lambda x: np.sign(x) * np.maximum(np.abs(x) - 1, 0)),
    "rrelu_eval": (nn.RReLU(0.1, 0.3), lambda x: np.where(x > 0, x, 0.2 * x)),
    "mish": (nn.Mish(), lambda x: x * np.tanh(np.log1p(np.exp(x)))),
    "selu": (
        nn.SELU(),
        lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(x)),
    ),
    "celu": (nn.CELU(0.7), lambda x: np.where(x > 0, x, 0.7 * np.expm1(x / 0.7))),
    "logsigmoid": (nn.LogSigmoid(), lambda x: -np.logaddexp(0, -x)),
    "softsign": (nn.Softsign(), lambda x: x / (1 + np.abs(x))),
    "tanhshrink": (nn.Tanhshrink(), lambda x: x - np.tanh(x)),
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_layer_matches_numpy(name):
    layer, ref = REFERENCES[name]
    x = X.reshape(1, -1) / (10 if name in ("softmax", "log_softmax", "softmin") else 1)
    y, _ = jax.jit(layer.apply)({}, {}, x)
    expected = ref(x.astype(np.float64))
    # float32 against float64: XLA's elementwise functions are within a few ulp (4 ulp =
    # 2.4e-7 relative, 40x inside rtol). Where a formula cancels the error is absolute:
    # gelu_tanh's 1 + tanh(z) -> 0 (-6 < x < -3) loses <= |x|/2 * 4 ulp(1) ~ 7e-7 < atol;
    # log_softmax's x - logsumexp(x) (|lse| < 8) loses a few ulp(8) ~ 2e-6 < its atol 1e-5.
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6 if name != "log_softmax" else 1e-5)


@pytest.mark.parametrize(
    "fn",
    [
        F.relu,
        F.leaky_relu,
        F.elu,
        F.gelu,
        F.silu,
        F.tanh,
        F.sigmoid,
        F.softplus,
        F.softmax,
        F.log_softmax,
        F.softmin,
        F.mish,
        F.selu,
        F.celu,
        F.logsigmoid,
        F.softsign,
        F.tanhshrink,
        F.glu,
    ],
)
def test_gradients(fn):
    x = jnp.array([[-1.5, -0.3, 0.4, 2.0]])  # no kink (relu, leaky_relu, elu at 0) near x
    check_grads_float64(jax.jit(fn), (x,))  # jitted: compiled once, not op by op


def test_gelu_rejects_unknown_approximation():
    with pytest.raises(ValueError, match="approximate"):
        nn.GELU("fast")


@pytest.mark.torch
def test_matches_torch():
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    # Both in float64: parity of the definitions (alpha, beta, threshold, approximate)
    # without two libraries' float32 rounding, which differs between CPUs (in float32 the
    # gelu's cancelling 1 + tanh left 3x margin); float32 accuracy is tested above.
    x = np.random.default_rng(0).normal(size=(3, 7)) * 4
    t = torch.tensor(x)
    with jax.enable_x64(True):
        pairs = [
            (F.relu(x), tf.relu(t)),
            (F.leaky_relu(x, 0.1), tf.leaky_relu(t, 0.1)),
            (F.elu(x, 0.7), tf.elu(t, 0.7)),
            (F.gelu(x), tf.gelu(t)),
            (F.gelu(x, "tanh"), tf.gelu(t, approximate="tanh")),
            (F.silu(x), tf.silu(t)),
            (F.softplus(x, 1.5, 5.0), tf.softplus(t, 1.5, 5.0)),
            (F.softmax(x), tf.softmax(t, -1)),
            (F.log_softmax(x), tf.log_softmax(t, -1)),
            (F.softmin(x), tf.softmin(t, -1)),
            (F.relu6(x), tf.relu6(t)),
            (F.hardtanh(x, -2.0, 3.0), tf.hardtanh(t, -2.0, 3.0)),
            (F.hardsigmoid(x), tf.hardsigmoid(t)),
            (F.hardswish(x), tf.hardswish(t)),
            (F.threshold(x, 0.5, -3.0), tf.threshold(t, 0.5, -3.0)),
            (F.hardshrink(x, 2.0), tf.hardshrink(t, 2.0)),
            (F.softshrink(x, 2.0), tf.softshrink(t, 2.0)),
            (F.rrelu(x, 0.1, 0.4), tf.rrelu(t, 0.1, 0.4)),
            (F.mish(x), tf.mish(t)),
            (F.selu(x), tf.selu(t)),
            (F.celu(x, 0.6), tf.celu(t, 0.6)),
            (F.logsigmoid(x), tf.logsigmoid(t)),
            (F.softsign(x), tf.softsign(t)),
            (F.tanhshrink(x), tf.tanhshrink(t)),
            (F.glu(x[:, :6]), tf.glu(t[:, :6])),
            (F.glu(x[:2], 0), tf.glu(t[:2], 0)),
        ]
    for ours, theirs in pairs:
        assert ours.dtype == theirs.numpy().dtype == np.float64
        # a few ulp of |y| < 13 (1e-14), and cancellations lose <= |x| * 1e-15 absolute
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-12, atol=1e-13)


# Gradients at the kinks, from PyTorch's backward formulas: 0 on a clamped boundary, the
# negative side's slope at 0, and hardswish's own (0 at -3, 1 at 3).
_SELU = 1.0507009873554805 * 1.6732632423543772
KINKS = {
    "hardtanh": (F.hardtanh, [-2.0, -1.0, 0.0, 1.0, 2.0], [0, 0, 1, 0, 0]),
    "relu6": (F.relu6, [-1.0, 0.0, 3.0, 6.0, 7.0], [0, 0, 1, 0, 0]),
    "hardsigmoid": (F.hardsigmoid, [-4.0, -3.0, 0.0, 3.0, 4.0], [0, 0, 1 / 6, 0, 0]),
    "hardswish": (F.hardswish, [-4.0, -3.0, 1.0, 3.0, 4.0], [0, 0, 1 / 3 + 0.5, 1, 1]),
    "threshold": (lambda x: F.threshold(x, 1.0, -2.0), [0.0, 1.0, 2.0], [0, 0, 1]),
    "hardshrink": (F.hardshrink, [-0.5, 0.0, 0.5, 0.6, -0.6], [0, 0, 0, 1, 1]),
    "softshrink": (F.softshrink, [-0.5, 0.0, 0.5, 0.6, -0.6], [0, 0, 0, 1, 1]),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.1), [-1.0, 0.0, 1.0], [0.1, 0.1, 1]),
    "relu": (F.relu, [-1.0, 0.0, 1.0], [0, 0, 1]),
    "prelu": (lambda x: F.prelu(x, jnp.array([0.25])), [-1.0, 0.0, 1.0], [0.25, 0.25, 1]),
    "rrelu": (lambda x: F.rrelu(x, 0.1, 0.3), [-1.0, 0.0, 1.0], [0.2, 0.2, 1]),
    "elu": (F.elu, [0.0], [1]),
    "celu": (lambda x: F.celu(x, 2.0), [0.0], [1]),
    "selu": (F.selu, [-0.0, 0.0], [_SELU, _SELU]),
}


@jax.jit
def _kink_grads():
    """Every KINKS gradient, in one compilation (vmap of grad: one point per element)."""
    return {
        name: jax.vmap(jax.grad(fn))(jnp.array(points)) for name, (fn, points, _) in KINKS.items()
    }


def test_gradients_at_kinks_are_pytorchs():
    grads = _kink_grads()
    for name, (_, _, expected) in KINKS.items():
        np.testing.assert_allclose(grads[name], expected, rtol=1e-6, atol=0, err_msg=name)


@pytest.mark.torch
def test_gradients_at_kinks_match_torch():
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    ours = {
        "hardtanh": tf.hardtanh,
        "relu6": tf.relu6,
        "hardsigmoid": tf.hardsigmoid,
        "hardswish": tf.hardswish,
        "threshold": lambda t: tf.threshold(t, 1.0, -2.0),
        "hardshrink": tf.hardshrink,
        "softshrink": tf.softshrink,
        "leaky_relu": lambda t: tf.leaky_relu(t, 0.1),
        "relu": tf.relu,
        "prelu": lambda t: tf.prelu(t, torch.tensor([0.25])),
        "rrelu": lambda t: tf.rrelu(t, 0.1, 0.3),
        "elu": tf.elu,
        "celu": lambda t: tf.celu(t, 2.0),
        "selu": tf.selu,
    }
    assert ours.keys() == KINKS.keys()
    grads = _kink_grads()
    for name, (_, points, _) in KINKS.items():
        t = torch.tensor(points, requires_grad=True)
        ours[name](t).sum().backward()
        # float32 both; hardsigmoid's 1/6 is rounded by each
        np.testing.assert_allclose(grads[name], t.grad.numpy(), rtol=1e-6, atol=0, err_msg=name)


def test_glu_and_softmax2d_match_numpy():
    x = np.random.default_rng(1).normal(size=(2, 3, 3, 4)).astype(np.float32)
    x64 = x.astype(np.float64)
    y, _ = jax.jit(nn.GLU().apply)({}, {}, x)
    expected = x64[..., :2] / (1 + np.exp(-x64[..., 2:]))
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-7)  # a few ulp
    y, _ = nn.GLU(dim=1).apply({}, {}, x[:, :2])
    np.testing.assert_allclose(y, x64[:, :1] / (1 + np.exp(-x64[:, 1:2])), rtol=1e-6, atol=1e-7)
    y, _ = jax.jit(nn.Softmax2d().apply)({}, {}, x)  # over the channels of each pixel
    np.testing.assert_allclose(y, _np_softmax(x64), rtol=1e-6, atol=1e-7)
    y, _ = nn.Softmax2d().apply({}, {}, x[0])  # unbatched (H, W, C)
    np.testing.assert_allclose(y, _np_softmax(x64[0]), rtol=1e-6, atol=1e-7)


def test_shape_errors_name_the_layer():
    cases = [
        (
            nn.GLU(),
            (2, 5),
            r"model \(GLU\): expected input with an even size on axis -1 \(halved into value and "
            r"gate\), got shape \(2, 5\)",
        ),
        (nn.GLU(2), (2, 4), r"model \(GLU\): axis 2 does not exist in input of shape \(2, 4\)"),
        (
            nn.Softmax2d(),
            (2, 4),
            r"model \(Softmax2d\): expected 4 or 3-D input .*got shape \(2, 4\)",
        ),
        (
            nn.PReLU(3),
            (2, 4),
            r"model \(PReLU\): expected input with last dimension 3, got shape \(2, 4\)",
        ),
        # a channels-first image gets the transpose to write
        (
            nn.PReLU(3),
            (2, 3, 5, 5),
            r"got shape \(2, 3, 5, 5\); funcnet is channels-last .*\(0, 2, 3, 1\)",
        ),
    ]
    for layer, shape, match in cases:
        params, state = layer.init(jax.random.key(0))
        with pytest.raises(ShapeError, match=match):
            layer.apply(params, state, jnp.zeros(shape))
    with pytest.raises(ShapeError, match=r"glu: expected input with an even size on axis 0"):
        F.glu(jnp.zeros((3, 2)), 0)
    with pytest.raises(ShapeError, match=r"prelu: expected weight of shape \(\), \(1,\) or \(4,\)"):
        F.prelu(jnp.zeros((2, 4)), jnp.ones(3))


def test_invalid_arguments_raise_value_error():
    for make, match in [
        (lambda: nn.Hardtanh(1.0, 1.0), r"Hardtanh: max_val \(1.0\) must be greater than min_val"),
        (lambda: nn.CELU(0.0), "CELU: alpha cannot be 0"),
        (lambda: nn.Softshrink(-0.1), "Softshrink: lambd must be >= 0"),
        (lambda: nn.RReLU(0.5, 0.1), "RReLU: lower bound should be less than or equal"),
        (lambda: nn.PReLU(0), "PReLU: num_parameters must be a positive int"),
        (lambda: nn.PReLU(3, 0.5, init=0.1), "PReLU: got init=0.1 and init_value=0.5"),
        (lambda: F.celu(jnp.ones(2), 0.0), "celu: alpha cannot be 0"),
        (lambda: F.softshrink(jnp.ones(2), -1.0), "softshrink: lambd"),
        (lambda: F.rrelu(jnp.ones(2), 0.5, 0.1), "rrelu: lower bound"),
        (lambda: F.rrelu(jnp.ones(2), training=True), "rrelu: training .* needs a PRNG key"),
    ]:
        with pytest.raises(ValueError, match=match):
            make()


def test_softmin_computes_16_bit_floats_in_float32():
    x = jnp.linspace(-16, 16, 9, dtype=jnp.bfloat16)
    y = F.softmin(x)
    assert y.dtype == jnp.bfloat16
    np.testing.assert_array_equal(y, F.softmin(x.astype(jnp.float32)).astype(jnp.bfloat16))


# ---------------------------------------------------------------------------- PReLU


def test_prelu_has_pytorchs_arguments_and_one_slope_per_last_axis_channel():
    assert nn.PReLU(3, init=0.1) == nn.PReLU(3, 0.1) == nn.PReLU(3, init_value=0.1)
    layer = nn.PReLU(4, init=0.1)
    assert (
        dataclasses.replace(layer) == layer
        and repr(layer) == "PReLU(num_parameters=4, init_value=0.1)"
    )
    params, state = layer.init(jax.random.key(0))
    np.testing.assert_array_equal(params["weight"], np.full(4, 0.1, np.float32))
    w = np.array([0.1, -0.2, 0.3, 0.5], np.float32)
    x = np.random.default_rng(2).normal(size=(2, 3, 4)).astype(np.float32)
    y, _ = jax.jit(layer.apply)({"weight": w}, state, x)
    np.testing.assert_allclose(y, np.where(x > 0, x, w * x), rtol=1e-7, atol=0)  # one product
    shared, _ = nn.PReLU().init(jax.random.key(0))
    assert shared["weight"].shape == (1,) and float(shared["weight"][0]) == 0.25
    y, _ = nn.PReLU().apply(shared, {}, x)
    np.testing.assert_allclose(y, np.where(x > 0, x, np.float32(0.25) * x), rtol=1e-7, atol=0)
    assert nn.PReLU().apply(shared, {}, jnp.float32(-2.0))[0].shape == ()  # stays a scalar
    y, _ = layer.apply({"weight": w}, state, x.astype(jnp.bfloat16))
    assert y.dtype == jnp.bfloat16  # the weight is cast to the input's dtype


def test_prelu_gradients_and_vmap():
    x = jnp.array([[-1.5, -0.3, 0.4, 2.0], [0.7, -2.1, -0.9, 1.2]])  # no kink near 0
    w = jnp.array([0.1, 0.2, 0.3, 0.4])
    check_grads_float64(jax.jit(F.prelu), (x, w))
    batched = jax.vmap(F.prelu, in_axes=(0, None))(x, w)
    np.testing.assert_array_equal(batched, F.prelu(x, w))
    # dL/dw_c = sum over negative x of channel c: hand-computed from x
    np.testing.assert_allclose(jax.grad(lambda w: F.prelu(x, w).sum())(w), [-1.5, -2.4, -0.9, 0])


@pytest.mark.torch
def test_prelu_matches_torch_with_channels_moved_last():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(3).normal(size=(2, 3, 5, 4))  # NHWC
    w = np.array([0.1, -0.2, 0.3, 0.5])
    ref = torch.nn.PReLU(4).double()
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(w))
    t = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)  # NCHW
    out = ref(t)
    (out * torch.tensor(x.transpose(0, 3, 1, 2))).sum().backward()
    with jax.enable_x64(True):
        y, vjp = jax.vjp(F.prelu, jnp.asarray(x), jnp.asarray(w))
        gx, gw = vjp(jnp.asarray(x))
    np.testing.assert_allclose(y, out.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-15)
    np.testing.assert_allclose(gx, t.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-15)
    np.testing.assert_allclose(gw, ref.weight.grad.numpy(), rtol=1e-12)  # 30-term sums


# ---------------------------------------------------------------------------- RReLU


def test_rrelu_draws_slopes_in_training_and_uses_their_mean_in_eval():
    layer = nn.RReLU(0.1, 0.3)
    x = -jnp.linspace(0.5, 2.0, 4000).reshape(40, 100)
    train = jax.jit(lambda x, key: layer.apply({}, {}, x, train=True, key=key)[0])
    y = train(x, jax.random.key(0))
    slopes = np.asarray(y / x)
    assert 0.1 <= slopes.min() and slopes.max() <= 0.3
    # U(0.1, 0.3): mean 0.2, standard deviation 0.2 / sqrt(12) = 0.058; the mean of 4000
    # is within 0.005 (5.5 standard errors) and the spread within 0.006 of it (5 s.e.)
    assert abs(slopes.mean() - 0.2) < 0.005 and abs(slopes.std() - 0.0577) < 0.006
    np.testing.assert_array_equal(train(x, jax.random.key(0)), y)  # same key, same slopes
    assert not np.array_equal(train(x, jax.random.key(1)), y)
    np.testing.assert_array_equal(train(-x, jax.random.key(0)), -x)  # positives pass
    # the gradient is each element's slope (the mean's in eval, see KINKS)
    grads = jax.grad(lambda x: train(x, jax.random.key(0)).sum())(x)
    np.testing.assert_allclose(grads, slopes, rtol=1e-6)
    y_eval, _ = layer.apply({}, {}, x)
    np.testing.assert_allclose(y_eval, 0.2 * x, rtol=1e-6)
    with pytest.raises(ValueError, match=r"model \(RReLU\) needs a PRNG key"):
        layer.apply({}, {}, x, train=True)
    y16 = F.rrelu(x.astype(jnp.bfloat16), training=True, key=jax.random.key(0))
    assert y16.dtype == jnp.bfloat16


def test_the_docs_example_runs():
    text = DOC.read_text()
    start = text.index("\n### Activations, Bilinear and distances\n")
    end = text.find("\n## ", start)
    blocks = re.findall(r"```python\n(.*?)```", text[start : end if end > 0 else None], re.DOTALL)
    assert len(blocks) == 1
    namespace: dict = {}
    exec(compile(blocks[0], str(DOC), "exec"), namespace)  # its asserts check the shapes
    assert namespace["cos"].shape == (5,)
