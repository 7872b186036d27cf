"""Dropout, Dropout2d and F.dropout / F.dropout2d."""

import doctest
import functools
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnet import ShapeError, nn
from funcnet import functional as F
from tests._numerics import sum_error_bound

N = 20_000  # elements for the statistics; 5σ of the keep-rate is < 0.018


@functools.cache
def train_fn(cls, p, shape):
    """A jitted ``apply`` in train mode for ``cls(p)`` on ``shape`` (compiled once)."""
    layer = cls(p)
    return jax.jit(lambda x, key: layer.apply({}, {}, x, train=True, key=key)[0])


def ones(shape=(N,), dtype=jnp.float32):
    return jnp.ones(shape, dtype)


def five_sigma(p, n):
    return 5 * np.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_keep_rate_and_scaling(p):
    y = np.asarray(train_fn(nn.Dropout, p, (N,))(ones(), jax.random.key(1)))
    kept = y != 0
    assert abs(kept.mean() - (1 - p)) < five_sigma(p, N)
    # float32 1 / (1 - p) against the scaling in float32: <= 2 roundings (2.4e-7) apart
    np.testing.assert_allclose(y[kept], np.float32(1) / np.float32(1 - p), rtol=1e-6)
    assert abs(y.mean() - 1.0) < five_sigma(p, N) / (1 - p)  # inverted scaling: E[y] = x


def test_eval_is_identity_and_needs_no_key():
    x = jax.random.normal(jax.random.key(0), (4, 5))
    for layer in (nn.Dropout(0.5), nn.Dropout2d(0.5)):
        x_in = x.reshape(1, 2, 2, 5) if isinstance(layer, nn.Dropout2d) else x
        y, state = layer.apply({}, {}, x_in)
        assert y is x_in and state == {}
    assert F.dropout(x, 0.5, None, training=False) is x


def test_p_zero_is_identity_and_p_one_gives_zeros():
    x = jax.random.normal(jax.random.key(0), (4, 5))
    assert nn.Dropout(0.0).apply({}, {}, x, train=True)[0] is x  # no key needed
    y, _ = nn.Dropout(1.0).apply({}, {}, x, train=True, key=jax.random.key(1))
    chex.assert_trees_all_equal(y, jnp.zeros_like(x))
    chex.assert_trees_all_equal(F.dropout(x, 1.0), jnp.zeros_like(x))


def test_training_without_key_is_a_clear_error():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.drop = nn.Dropout(0.1)

        def forward(self, ctx, x):
            return self.drop(ctx, x)

    expected = "model.drop (Dropout) needs a PRNG key in this mode: pass key=... to apply"
    with pytest.raises(ValueError, match=re.escape(expected)):
        Model().apply({}, {}, jnp.ones(3), train=True)
    with pytest.raises(ValueError, match=re.escape("dropout: training with p=0.1 needs a PRNG")):
        F.dropout(jnp.ones(3), 0.1)


class TwoDropouts(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Dropout(0.5)
        self.b = nn.Dropout(0.5)

    def forward(self, ctx, x):
        return self.a(ctx, x), self.b(ctx, x), self.a(ctx, x)


def test_masks_are_deterministic_per_key_and_distinct_per_layer_and_call():
    model = TwoDropouts()
    fn = jax.jit(lambda x, key: model.apply({}, {}, x, train=True, key=key)[0])
    x = ones((256,))
    a1, b1, a2 = (np.asarray(y) != 0 for y in fn(x, jax.random.key(1)))
    again = [np.asarray(y) != 0 for y in fn(x, jax.random.key(1))]
    other = [np.asarray(y) != 0 for y in fn(x, jax.random.key(2))]
    np.testing.assert_array_equal(again[0], a1)  # same key, same masks
    np.testing.assert_array_equal(again[1], b1)
    assert (a1 != b1).any()  # two layers in one model
    assert (a1 != a2).any()  # two calls of one layer
    assert (other[0] != a1).any()  # another key


def test_functional_dropout_is_deterministic_per_key():
    fn = jax.jit(lambda x, key: F.dropout(x, 0.5, key))
    x = ones((256,))
    k1, k2 = jax.random.key(1), jax.random.key(2)
    chex.assert_trees_all_equal(fn(x, k1), fn(x, k1))
    assert (np.asarray(fn(x, k1)) != np.asarray(fn(x, k2))).any()


def test_gradient_is_the_scaled_mask():
    layer = nn.Dropout(0.25)
    key = jax.random.key(3)
    x = jax.random.normal(jax.random.key(0), (64,))
    f = lambda x: jnp.sum(layer.apply({}, {}, x, train=True, key=key)[0])
    y, g = jax.jit(jax.value_and_grad(f))(x)
    mask = np.asarray(layer.apply({}, {}, ones((64,)), train=True, key=key)[0])
    np.testing.assert_allclose(g, mask, rtol=1e-6)  # the same float32 scale: <= 2 roundings
    # a float32 sum of 64 float32 products, within the worst case in any order (rtol=1e-5
    # of this cancelling sum, |y| ~ 0.5 of sum|terms| ~ 50, had a 4x margin only)
    terms = np.asarray(x, np.float64) * mask
    np.testing.assert_allclose(y, terms.sum(), rtol=0, atol=sum_error_bound(terms))


def test_dropout2d_drops_whole_channels():
    p, shape = 0.5, (64, 2, 3, 64)
    y = np.asarray(train_fn(nn.Dropout2d, p, shape)(ones(shape), jax.random.key(4)))
    per_channel = y[:, :1, :1, :]
    np.testing.assert_array_equal(y, np.broadcast_to(per_channel, shape))  # mask (N, 1, 1, C)
    assert set(np.unique(y)) == {0.0, 2.0}
    n = shape[0] * shape[-1]
    assert abs((per_channel != 0).mean() - (1 - p)) < five_sigma(p, n)
    assert ((per_channel != 0).mean(axis=0) < 1).all()  # channels are dropped per sample


@pytest.mark.parametrize("cls, shape", [(nn.Dropout, (4, 8)), (nn.Dropout2d, (2, 3, 3, 8))])
def test_bfloat16_stays_bfloat16_and_is_scaled_in_float32(cls, shape):
    x = jax.random.normal(jax.random.key(0), shape, jnp.bfloat16)
    y, _ = cls(0.1).apply({}, {}, x, train=True, key=jax.random.key(1))
    assert y.dtype == jnp.bfloat16
    kept = np.asarray(y) != 0
    scaled = (np.asarray(x, np.float32) * np.float32(1 / 0.9)).astype(jnp.bfloat16)
    np.testing.assert_array_equal(np.asarray(y)[kept], scaled[kept])  # not x / bf16(0.9)


@pytest.mark.parametrize("cls, shape", [(nn.Dropout, (4, 8)), (nn.Dropout2d, (2, 3, 3, 8))])
def test_strict_dtype_and_rank_promotion(cls, shape):
    layer = cls(0.3)
    for dtype in (jnp.float32, jnp.bfloat16):
        x = jax.ShapeDtypeStruct(shape, dtype)
        with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
            y = jax.eval_shape(
                lambda x: layer.apply({}, {}, x, train=True, key=jax.random.key(0)), x
            )
        assert (y[0].shape, y[0].dtype) == (shape, dtype)


class JitTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_same_mask_with_and_without_jit(self):
        key = jax.random.key(5)
        for cls, shape in ((nn.Dropout, (4, 8)), (nn.Dropout2d, (2, 3, 3, 8))):
            want = train_fn(cls, 0.5, shape)(ones(shape), key)
            layer = cls(0.5)
            y = self.variant(lambda x, k, m=layer: m.apply({}, {}, x, train=True, key=k)[0])(
                ones(shape), key
            )
            chex.assert_trees_all_equal(y, want)


def test_errors():
    with pytest.raises(ValueError, match=r"Dropout: dropout probability has to be between 0 and 1"):
        nn.Dropout(1.5)
    with pytest.raises(ValueError, match=r"Dropout2d: dropout probability .* but got -0.1"):
        nn.Dropout2d(-0.1)
    with pytest.raises(ValueError, match=r"dropout: dropout probability has to be between"):
        F.dropout(jnp.ones(3), 2.0, jax.random.key(0))
    with pytest.raises(ShapeError, match=re.escape("model (Dropout2d): expected 4-D input")):
        nn.Dropout2d(0.5).apply({}, {}, jnp.ones((2, 3, 4)))
    with pytest.raises(ShapeError, match=re.escape("model (Dropout): expected floating input")):
        nn.Dropout(0.5).apply({}, {}, jnp.ones((2, 3), jnp.int32))
    with pytest.raises(ShapeError, match=re.escape("dropout2d: expected 4-D input (N, H, W, C)")):
        F.dropout2d(jnp.ones((2, 3)), 0.5, jax.random.key(0))


@pytest.mark.torch
@pytest.mark.parametrize("p", [0.2, 0.6])
def test_statistics_match_torch(p):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    ours = np.asarray(train_fn(nn.Dropout, p, (N,))(ones(), jax.random.key(6)))
    theirs = torch.nn.functional.dropout(torch.ones(N), p, training=True).numpy()
    for y in (ours, theirs):
        assert abs((y != 0).mean() - (1 - p)) < five_sigma(p, N)
    np.testing.assert_array_equal(np.unique(ours), np.unique(theirs))  # {0, 1/(1-p)}
    x = np.arange(6, dtype=np.float32)
    t_eval = torch.nn.Dropout(p).eval()(torch.tensor(x)).numpy()
    np.testing.assert_array_equal(nn.Dropout(p).apply({}, {}, jnp.asarray(x))[0], t_eval)


def test_docstring_examples_run():
    import funcnet.nn._dropout as layers

    result = doctest.testmod(layers)
    assert result.attempted > 0 and result.failed == 0
