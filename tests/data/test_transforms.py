"""Batch transforms on NumPy (host) and JAX (inside jit) inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnet.data import transforms as T


def _images(n=6, h=5, w=4, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)


def _both(x):
    """The batch as NumPy and as JAX, to run one check on both backends."""
    return [("numpy", x), ("jax", jnp.asarray(x))]


def _key(backend, seed=0):
    return np.random.default_rng(seed) if backend == "numpy" else jax.random.key(seed)


def test_to_float_scales_by_the_dtype_range():
    x = _images()
    for backend, xb in _both(x):
        out = T.ToFloat()(xb)
        assert out.dtype == np.float32 and out.shape == x.shape, backend
        np.testing.assert_allclose(out, x / 255, rtol=1e-6)  # one float32 rounding: < 6e-8
    assert T.ToFloat()(np.arange(3, dtype=np.float32)).tolist() == [0, 1, 2]
    np.testing.assert_allclose(T.ToFloat(scale=1 / 16)(np.array([16], np.uint8)), [1.0])
    assert T.ToFloat(dtype=np.float16)(x).dtype == np.float16


@pytest.mark.parametrize("mean, std", [(0.5, 0.25), ((0.1, 0.2, 0.3), (0.5, 0.6, 0.7))])
def test_normalize_matches_the_formula(mean, std):
    x = _images().astype(np.float32) / 255
    expected = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    for backend, xb in _both(x):
        out = T.Normalize(mean, std)(xb)
        assert out.dtype == np.float32, backend
        # elementwise float32 (a difference and a quotient by std >= 0.2) on both sides: a
        # few roundings of values < 5, < 1e-6 absolute where x - mean cancels
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_normalize_errors():
    with pytest.raises(ValueError, match="non-zero"):
        T.Normalize(0.0, (1.0, 0.0))
    with pytest.raises(ValueError, match="length 2 do not match the last axis"):
        T.Normalize((0, 0), (1, 1))(_images())


def test_compose_fuses_to_float_and_normalize():
    x = _images()
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    composed = T.Compose([T.ToFloat(), T.Normalize(mean, std)])
    expected = (x / 255.0 - np.array(mean)) / np.array(std)
    for backend, xb in _both(x):
        out = composed(xb)
        assert out.dtype == np.float32, backend
        # float32 against float64: x / 255 and the float32 mean and std are within U32
        # relative, moving (x / 255 - mean) / std (std > 0.24) by < 1e-6: 10x inside
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    assert not composed.random


def _is_crop(out, padded):
    h, w = out.shape[:2]
    return any(
        np.array_equal(out, padded[i : i + h, j : j + w])
        for i in range(padded.shape[0] - h + 1)
        for j in range(padded.shape[1] - w + 1)
    )


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_random_crop_gives_crops_of_the_padded_images(backend):
    x = _images(n=16)
    crop = T.RandomCrop((4, 3), padding=2, fill=7)
    out = crop(dict(_both(x))[backend], key=_key(backend))
    assert out.shape == (16, 4, 3, 3) and out.dtype == np.uint8
    padded = np.pad(x, [(0, 0), (2, 2), (2, 2), (0, 0)], constant_values=7)
    out = np.asarray(out)
    assert all(_is_crop(out[i], padded[i]) for i in range(16))
    offsets = {tuple(np.argwhere(out[i] != 7)[0]) for i in range(16) if (out[i] != 7).any()}
    assert len(offsets) > 1  # samples get their own offsets


def test_random_crop_without_padding_and_grey_images():
    x = _images(c=1)[..., 0]  # (N, H, W)
    out = T.RandomCrop((5, 4))(x, key=np.random.default_rng(0))
    np.testing.assert_array_equal(out, x)
    with pytest.raises(ValueError, match="larger than the padded images"):
        T.RandomCrop(9, padding=1)(x, key=np.random.default_rng(0))
    with pytest.raises(ValueError, match="batch of images"):
        T.RandomCrop(2)(x[0], key=np.random.default_rng(0))


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_random_horizontal_flip(backend):
    x = _images(n=32)
    xb = dict(_both(x))[backend]
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=0.0)(xb, key=_key(backend)), x)
    np.testing.assert_array_equal(
        T.RandomHorizontalFlip(p=1.0)(xb, key=_key(backend)), x[:, :, ::-1]
    )
    out = np.asarray(T.RandomHorizontalFlip()(xb, key=_key(backend)))
    flipped = [np.array_equal(out[i], x[i, :, ::-1]) for i in range(32)]
    kept = [np.array_equal(out[i], x[i]) for i in range(32)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 0 < sum(flipped) < 32


def test_random_transforms_need_the_right_key():
    x = _images()
    with pytest.raises(ValueError, match="is random: pass key="):
        T.RandomHorizontalFlip()(x)
    with pytest.raises(TypeError, match="needs key=numpy.random.Generator"):
        T.RandomCrop(2)(x, key=jax.random.key(0))
    with pytest.raises(TypeError, match="needs a jax.random key"):
        T.RandomCrop(2)(jnp.asarray(x), key=np.random.default_rng(0))
    with pytest.raises(ValueError, match="pass key="):
        T.Compose([T.RandomHorizontalFlip()])(x)


def test_augmentation_inside_jit_with_an_explicit_key():
    augment = T.Compose(
        [
            T.RandomCrop(4, padding=1),
            T.RandomHorizontalFlip(),
            T.ToFloat(),
            T.Normalize((0.5, 0.4, 0.3), 0.25),
        ]
    )
    traces = []

    @jax.jit
    def step(x, key):
        traces.append(1)
        return augment(x, key=key)

    x = jnp.asarray(_images(n=8))
    with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
        a = step(x, jax.random.key(1))
        b = step(x, jax.random.key(1))
        c = step(x, jax.random.key(2))
    assert a.shape == (8, 4, 4, 3) and a.dtype == jnp.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert len(traces) == 1  # no retrace for a new key
    assert augment.random


def test_numpy_random_transforms_are_reproducible():
    x = _images(n=8)
    augment = T.Compose([T.RandomCrop(4, padding=1), T.RandomHorizontalFlip()])
    a = augment(x, key=np.random.default_rng(3))
    b = augment(x, key=np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert "RandomCrop" in repr(augment)
