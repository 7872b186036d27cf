"""Activations (functions and layers) against NumPy and PyTorch."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet.functional as F
from funcnet import nn
from tests._numerics import check_grads_float64

X = np.linspace(-30, 30, 61).astype(np.float32)


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
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_layer_matches_numpy(name):
    layer, ref = REFERENCES[name]
    x = X.reshape(1, -1) / (10 if "softmax" in name else 1)
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
    ],
)
def test_gradients(fn):
    x = jnp.array([[-1.5, -0.3, 0.4, 2.0]])  # no kink (relu, leaky_relu, elu at 0) near x
    check_grads_float64(fn, (x,))


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
        ]
    for ours, theirs in pairs:
        assert ours.dtype == theirs.numpy().dtype == np.float64
        # a few ulp of |y| < 13 (1e-14), and cancellations lose <= |x| * 1e-15 absolute
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-12, atol=1e-13)
