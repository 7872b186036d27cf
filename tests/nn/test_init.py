"""Initialisers: fans, distributions and PyTorch's gains."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnet.nn import init


def test_fans_follow_pytorch_in_jax_layout():
    assert init.fans((784, 128)) == (784, 128)  # Linear (in, out)
    assert init.fans((3, 3, 16, 32)) == (16 * 9, 32 * 9)  # conv HWIO
    with pytest.raises(ValueError, match="at least 2"):
        init.fans((5,))


@pytest.mark.parametrize(
    "fn, kwargs, std",
    [
        (init.normal, {"std": 0.02}, 0.02),
        (init.uniform, {"a": -1.0, "b": 1.0}, 1 / math.sqrt(3)),
        (init.xavier_uniform, {}, math.sqrt(2 / (200 + 300))),
        (init.xavier_normal, {"gain": 2.0}, 2 * math.sqrt(2 / (200 + 300))),
        (init.kaiming_uniform, {"nonlinearity": "relu"}, math.sqrt(2 / 200)),
        (init.kaiming_normal, {"mode": "fan_out", "nonlinearity": "relu"}, math.sqrt(2 / 300)),
        (init.kaiming_uniform, {"a": math.sqrt(5)}, 1 / math.sqrt(200) / math.sqrt(3)),
    ],
)
def test_distributions_have_the_pytorch_std(key, fn, kwargs, std):
    w = fn(key, (200, 300), **kwargs)
    assert w.shape == (200, 300) and w.dtype == jnp.float32
    np.testing.assert_allclose(float(jnp.std(w)), std, rtol=0.03)


def test_constants(key):
    np.testing.assert_array_equal(init.zeros(key, (2,)), [0, 0])
    np.testing.assert_array_equal(init.ones(key, (2,), jnp.bfloat16), [1, 1])
    np.testing.assert_array_equal(init.constant(key, (2,), value=3.0), [3, 3])


def test_trunc_normal_stays_in_absolute_bounds(key):
    w = init.trunc_normal(key, (10_000,), mean=1.0, std=2.0, a=0.0, b=3.0)
    assert float(w.min()) >= 0.0 and float(w.max()) <= 3.0


@pytest.mark.parametrize("shape", [(64, 32), (32, 64), (3, 3, 4, 8)])
def test_orthogonal(key, shape):
    w = np.asarray(init.orthogonal(key, shape, gain=2.0), np.float64).reshape(-1, shape[-1])
    small = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T  # in float64: no BLAS rounding
    # a float32 Householder QR is orthogonal to ~sqrt(n) U32 per entry in practice
    # (n <= 96, times gain^2 = 4: ~3e-6; 1.9e-6 measured), 30x inside atol=1e-4
    np.testing.assert_allclose(small, 4 * np.eye(small.shape[0]), atol=1e-4)


def test_calculate_gain():
    assert init.calculate_gain("relu") == math.sqrt(2)
    assert init.calculate_gain("leaky_relu", 0.2) == math.sqrt(2 / 1.04)
    assert init.calculate_gain("tanh") == 5 / 3
    with pytest.raises(ValueError):
        init.calculate_gain("swishy")


@pytest.mark.torch
def test_gains_match_torch():
    torch = pytest.importorskip("torch")
    for name, param in [
        ("relu", None),
        ("leaky_relu", None),
        ("leaky_relu", 0.3),
        ("tanh", None),
        ("selu", None),
        ("linear", None),
    ]:
        assert init.calculate_gain(name, param) == pytest.approx(
            torch.nn.init.calculate_gain(name, param)
        )


def test_initialisers_work_under_jit(key):
    w = jax.jit(lambda k: init.kaiming_normal(k, (8, 4)))(key)
    assert w.shape == (8, 4)
