"""Dropout, Dropout1d/2d/3d, AlphaDropout, FeatureAlphaDropout and their functional forms."""

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
SELU_SATURATION = 1.7580993408473766  # SELU's scale · alpha


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
    shapes = {nn.Dropout2d: (1, 2, 2, 5), nn.Dropout3d: (1, 2, 2, 1, 5), nn.Dropout1d: (1, 4, 5)}
    for cls in (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout):
        x_in = x.reshape(shapes.get(cls, x.shape))
        y, state = cls(0.5).apply({}, {}, x_in)
        assert y is x_in and state == {}
    assert nn.FeatureAlphaDropout(0.5).apply({}, {}, x)[0] is x
    assert F.dropout(x, 0.5, None, training=False) is x
    assert F.alpha_dropout(x, 0.5) is x  # training=False is PyTorch's default here
    assert F.feature_alpha_dropout(x, 0.5) is x
    assert F.dropout1d(x, 0.5, training=False) is x
    x4 = x.reshape(1, 2, 2, 5)  # unbatched (D, H, W, C)
    assert F.dropout3d(x4, 0.5, training=False) is x4


def test_p_zero_is_identity_and_p_one_gives_zeros():
    x = jax.random.normal(jax.random.key(0), (4, 5))
    assert nn.Dropout(0.0).apply({}, {}, x, train=True)[0] is x  # no key needed
    y, _ = nn.Dropout(1.0).apply({}, {}, x, train=True, key=jax.random.key(1))
    chex.assert_trees_all_equal(y, jnp.zeros_like(x))
    chex.assert_trees_all_equal(F.dropout(x, 1.0), jnp.zeros_like(x))
    for cls in (nn.AlphaDropout, nn.FeatureAlphaDropout, nn.Dropout1d):
        assert cls(0.0).apply({}, {}, x, train=True)[0] is x
        y, _ = cls(1.0).apply({}, {}, x, train=True, key=jax.random.key(1))
        chex.assert_trees_all_equal(y, jnp.zeros_like(x))  # PyTorch: input * 0


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


class ChannelDropouts(nn.Module):
    """Dropout1d and Dropout3d on batched and unbatched inputs: one compilation for all."""

    def __init__(self, p):
        super().__init__()
        self.d1 = nn.Dropout1d(p)
        self.d3 = nn.Dropout3d(p)

    def forward(self, ctx, a, b, c, d):
        return self.d1(ctx, a), self.d1(ctx, b), self.d3(ctx, c), self.d3(ctx, d)


CHANNEL_SHAPES = [  # (input shape, mask shape): Dropout1d (N, L, C), (L, C); Dropout3d ...
    ((64, 3, 32), (64, 1, 32)),
    ((5, 512), (1, 512)),
    ((16, 2, 2, 2, 32), (16, 1, 1, 1, 32)),
    ((2, 3, 2, 512), (1, 1, 1, 512)),
]


def test_dropout1d_and_dropout3d_drop_whole_channels():
    p, model = 0.5, ChannelDropouts(0.5)
    fn = jax.jit(lambda xs, key: model.apply({}, {}, *xs, train=True, key=key)[0])
    outs = fn([ones(shape) for shape, _ in CHANNEL_SHAPES], jax.random.key(4))
    for y, (shape, mask_shape) in zip(outs, CHANNEL_SHAPES):
        y = np.asarray(y)
        per_channel = y[tuple(slice(0, m) for m in mask_shape)]  # one position per channel
        np.testing.assert_array_equal(y, np.broadcast_to(per_channel, shape))  # mask shape
        assert set(np.unique(y)) == {0.0, 2.0}
        n = per_channel.size  # independent draws, one per (sample, channel): >= 512
        assert abs((per_channel != 0).mean() - (1 - p)) < five_sigma(p, n)
        if mask_shape[0] > 1:
            assert ((per_channel != 0).mean(axis=0) < 1).all()  # dropped per sample


def test_channel_dropout_functional_form_under_vmap():
    x = jnp.ones((4, 6, 8))
    keys = jax.random.split(jax.random.key(1), 2)
    one = jax.jit(lambda k: F.dropout1d(x, 0.3, k))
    batched = jax.jit(jax.vmap(one))(keys)
    for i, k in enumerate(keys):  # vmap over keys: each key its own mask, as one at a time
        chex.assert_trees_all_equal(batched[i], one(k))
    assert (np.asarray(batched[0]) != np.asarray(batched[1])).any()


def alpha_reference(x, p, dropped):
    """PyTorch's alpha dropout in float64 from its definition, given the dropped mask."""
    a = ((SELU_SATURATION**2 * p + 1) * (1 - p)) ** -0.5
    x = np.asarray(x, np.float64)
    kept = a * x + a * SELU_SATURATION * p
    return np.where(dropped, -a * SELU_SATURATION * (1 - p), kept), a


def std_normal(seed, shape):
    """float32 N(0, 1) values from NumPy (no compilation, unlike a new jax.random shape)."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_alpha_dropout_values_rate_and_self_normalising_moments():
    p, x = 0.2, std_normal(7, (N,))
    y = np.asarray(train_fn(nn.AlphaDropout, p, (N,))(x, jax.random.key(8)), np.float64)
    dropped_value = alpha_reference(0.0, p, True)[0]
    dropped = np.isclose(y, dropped_value, rtol=1e-6, atol=0)
    want, a = alpha_reference(x, p, dropped)
    # a·x + shift in float32: two roundings of values ~|3|, within 1e-6 relative + 1e-6
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)
    assert abs(dropped.mean() - p) < five_sigma(p, N)
    # For x ~ N(0, 1), y has mean 0 and variance 1 exactly (the point of alpha dropout), so
    # the sample mean is within 5/sqrt(N) = 0.035; the sample second moment has standard
    # deviation sqrt((E[y^4] - 1) / N), E[y^4] computed here from the two-part mixture.
    c = SELU_SATURATION * p
    fourth = (1 - p) * a**4 * (c**4 + 6 * c**2 + 3) + p * (a * SELU_SATURATION * (1 - p)) ** 4
    assert abs(y.mean()) < 5 / np.sqrt(N)
    assert abs((y**2).mean() - 1.0) < 5 * np.sqrt((fourth - 1) / N)


FEATURE_SHAPE = (32, 3, 2, 32)


def test_feature_alpha_dropout_drops_whole_channels():
    p, x = 0.5, std_normal(9, FEATURE_SHAPE)
    y = np.asarray(train_fn(nn.FeatureAlphaDropout, p, FEATURE_SHAPE)(x, jax.random.key(10)))
    dropped = np.isclose(y, alpha_reference(0.0, p, True)[0], rtol=1e-6, atol=0)
    per_channel = dropped[:, :1, :1, :]
    np.testing.assert_array_equal(dropped, np.broadcast_to(per_channel, FEATURE_SHAPE))
    np.testing.assert_allclose(y, alpha_reference(x, p, dropped)[0], rtol=1e-6, atol=1e-6)
    assert abs(per_channel.mean() - p) < five_sigma(p, per_channel.size)


class ThreeDropouts(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.alpha = nn.AlphaDropout(p)
        self.feature = nn.FeatureAlphaDropout(p)
        self.d1 = nn.Dropout1d(p)

    def forward(self, ctx, x):
        return self.alpha(ctx, x), self.feature(ctx, x), self.d1(ctx, x)


def test_alpha_and_channel_dropout_gradients_are_the_scaled_masks():
    p, key, x = 0.3, jax.random.key(11), std_normal(12, (3, 4, 5))
    r = std_normal(13, (3, *x.shape))
    model = ThreeDropouts(p)

    def loss(x):
        ys = model.apply({}, {}, x, train=True, key=key)[0]
        return sum(jnp.sum(y * ri) for y, ri in zip(ys, r)), ys

    (_, (ya, yf, y1)), grad = jax.jit(jax.value_and_grad(loss, has_aux=True))(x)
    dropped_value, a = alpha_reference(0.0, p, True)
    keep_a, keep_f = (~np.isclose(y, dropped_value, rtol=1e-6, atol=0) for y in (ya, yf))
    keep_1 = np.asarray(y1) != 0  # x is never 0
    # piecewise linear in x: d/dx is a on kept elements (alpha dropouts), 1/(1 - p) on kept
    # channels (Dropout1d), 0 elsewhere; three float32 products summed: a few roundings
    want = r[0] * a * keep_a + r[1] * a * keep_f + r[2] * keep_1 / (1 - p)
    np.testing.assert_allclose(grad, want, rtol=1e-6, atol=1e-6)
    assert keep_a.any() and (~keep_a).any() and (~keep_f).any() and (~keep_1).any()


@pytest.mark.parametrize("cls, shape", [(nn.Dropout, (4, 8)), (nn.Dropout2d, (2, 3, 3, 8))])
def test_bfloat16_stays_bfloat16_and_is_scaled_in_float32(cls, shape):
    x = jax.random.normal(jax.random.key(0), shape, jnp.bfloat16)
    y, _ = cls(0.1).apply({}, {}, x, train=True, key=jax.random.key(1))
    assert y.dtype == jnp.bfloat16
    kept = np.asarray(y) != 0
    scaled = (np.asarray(x, np.float32) * np.float32(1 / 0.9)).astype(jnp.bfloat16)
    np.testing.assert_array_equal(np.asarray(y)[kept], scaled[kept])  # not x / bf16(0.9)


def test_alpha_dropout_bfloat16_is_computed_in_float32():
    x = jnp.asarray(std_normal(0, (4, 8)), jnp.bfloat16)
    y, _ = nn.AlphaDropout(0.1).apply({}, {}, x, train=True, key=jax.random.key(1))
    assert y.dtype == jnp.bfloat16
    dropped_value = np.float32(alpha_reference(0.0, 0.1, True)[0])
    dropped = np.asarray(y) == dropped_value.astype(jnp.bfloat16)
    a = np.float32(alpha_reference(0.0, 0.1, True)[1])
    kept = np.asarray(x, np.float32) * a + np.float32(a * SELU_SATURATION * 0.1)
    # float32 arithmetic rounded once to bfloat16, not bfloat16 arithmetic
    np.testing.assert_array_equal(np.asarray(y)[~dropped], kept.astype(jnp.bfloat16)[~dropped])


STRICT_CASES = [
    (nn.Dropout, (4, 8)),
    (nn.Dropout1d, (2, 3, 8)),
    (nn.Dropout2d, (2, 3, 3, 8)),
    (nn.Dropout3d, (2, 3, 3, 8)),
    (nn.AlphaDropout, (4, 8)),
    (nn.FeatureAlphaDropout, (2, 3, 8)),
]


@pytest.mark.parametrize("cls, shape", STRICT_CASES)
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
    with pytest.raises(ShapeError, match=re.escape("model (Dropout1d): expected 2 or 3-D input")):
        nn.Dropout1d(0.5).apply({}, {}, jnp.ones((2, 3, 4, 5)))
    expected = "model (Dropout3d): expected 4 or 5-D input (N, D, H, W, C) or (D, H, W, C), got"
    with pytest.raises(ShapeError, match=re.escape(expected)):
        nn.Dropout3d(0.5).apply({}, {}, jnp.ones((2, 3, 4)))
    expected = "model (FeatureAlphaDropout): expected input (N, *, C) with at least 2 dimensions"
    with pytest.raises(ShapeError, match=re.escape(expected)):
        nn.FeatureAlphaDropout(0.5).apply({}, {}, jnp.ones((3,)))
    with pytest.raises(ShapeError, match=re.escape("model (AlphaDropout): expected floating")):
        nn.AlphaDropout(0.5).apply({}, {}, jnp.ones((2, 3), jnp.int32))
    with pytest.raises(ValueError, match=r"AlphaDropout: dropout probability .* but got 1.5"):
        nn.AlphaDropout(1.5)
    expected = "dropout1d: expected 2 or 3-D input (N, L, C) or (L, C), got shape (2,)"
    with pytest.raises(ShapeError, match=re.escape(expected)):
        F.dropout1d(jnp.ones((2,)), 0.5, jax.random.key(0))
    with pytest.raises(ShapeError, match=re.escape("dropout3d: expected 4 or 5-D input")):
        F.dropout3d(jnp.ones((2, 3)), 0.5, jax.random.key(0))
    expected = "feature_alpha_dropout: expected input (N, *, C) with at least 2 dimensions"
    with pytest.raises(ShapeError, match=re.escape(expected)):
        F.feature_alpha_dropout(jnp.ones((3,)), 0.5, jax.random.key(0), training=True)
    expected = "alpha_dropout: training with p=0.1 needs a PRNG key"
    with pytest.raises(ValueError, match=re.escape(expected)):
        F.alpha_dropout(jnp.ones(3), 0.1, training=True)


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


@pytest.mark.torch
def test_alpha_dropouts_match_torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    p, x = 0.2, std_normal(7, (N,))
    ours = np.asarray(train_fn(nn.AlphaDropout, p, (N,))(x, jax.random.key(14)))
    theirs = torch.nn.functional.alpha_dropout(torch.tensor(x), p, training=True).numpy()
    values, counts = np.unique(theirs, return_counts=True)
    dropped_value = values[counts.argmax()]  # the one value every dropped element takes
    # the same float32 formula, a rounding or two apart (|value| < 4)
    np.testing.assert_allclose(dropped_value, alpha_reference(0.0, p, True)[0], rtol=1e-6)
    both_kept = (theirs != dropped_value) & ~np.isclose(ours, dropped_value, rtol=1e-6, atol=0)
    np.testing.assert_allclose(ours[both_kept], theirs[both_kept], rtol=1e-6, atol=1e-6)
    for y in (ours, theirs):
        assert abs(np.isclose(y, dropped_value, rtol=1e-6).mean() - p) < five_sigma(p, N)
    # FeatureAlphaDropout: one draw per (sample, channel); torch's (N, C, H, W) is our NHWC
    p, xf = 0.5, std_normal(9, FEATURE_SHAPE)
    tf = torch.nn.FeatureAlphaDropout(p).train()(torch.tensor(xf.transpose(0, 3, 1, 2)))
    ours_f = np.asarray(train_fn(nn.FeatureAlphaDropout, p, FEATURE_SHAPE)(xf, jax.random.key(16)))
    dropped_value = alpha_reference(0.0, p, True)[0]
    tdropped = np.isclose(tf.numpy(), dropped_value, rtol=1e-6, atol=0).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(tdropped, np.broadcast_to(tdropped[:, :1, :1], FEATURE_SHAPE))
    odropped = np.isclose(ours_f, dropped_value, rtol=1e-6, atol=0)
    for dropped in (tdropped[:, 0, 0], odropped[:, 0, 0]):
        assert abs(dropped.mean() - p) < five_sigma(p, dropped.size)
    kept = ~tdropped & ~odropped
    want = tf.numpy().transpose(0, 2, 3, 1)[kept]  # a·x + shift: as above, ~2 roundings
    np.testing.assert_allclose(ours_f[kept], want, rtol=1e-6, atol=1e-6)
    t_eval = torch.nn.AlphaDropout(p).eval()(torch.tensor(x[:6])).numpy()
    np.testing.assert_array_equal(nn.AlphaDropout(p).apply({}, {}, jnp.asarray(x[:6]))[0], t_eval)


def test_docstring_examples_run():
    import funcnet.nn._dropout as layers

    result = doctest.testmod(layers)
    assert result.attempted > 0 and result.failed == 0
