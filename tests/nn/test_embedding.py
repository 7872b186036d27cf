"""Embedding and F.embedding: lookup, initialisation, padding_idx, errors."""

import doctest
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnet import ShapeError, nn
from funcnet import functional as F
from tests._numerics import U32

V, D = 10, 4


def ids_of(shape, seed=0):
    return jax.random.randint(jax.random.key(seed), shape, 0, V)


def np_grad(ids, cotangent, padding_idx):
    """d sum(out · cotangent) / d weight: rows accumulate, except the padding row."""
    grad = np.zeros((V, D))
    np.add.at(grad, np.asarray(ids).reshape(-1), np.asarray(cotangent).reshape(-1, D))
    if padding_idx is not None:
        grad[padding_idx] = 0.0
    return grad


def test_init_is_standard_normal_with_zero_padding_row():
    weight = nn.Embedding(2000, 16, padding_idx=3).init(jax.random.key(0))[0]["weight"]
    assert weight.shape == (2000, 16) and weight.dtype == jnp.float32
    np.testing.assert_array_equal(weight[3], 0.0)
    rest = np.delete(np.asarray(weight), 3, axis=0)
    assert abs(rest.mean()) < 0.01 and abs(rest.std() - 1.0) < 0.01  # N(0, 1), as PyTorch


def test_negative_padding_idx_is_normalized_and_out_of_range_rejected():
    layer = nn.Embedding(V, D, padding_idx=-1)
    assert layer.padding_idx == V - 1
    np.testing.assert_array_equal(layer.init(jax.random.key(0))[0]["weight"][V - 1], 0.0)
    for bad in (V, -V - 1):
        with pytest.raises(ValueError, match=r"Embedding: padding_idx must be within"):
            nn.Embedding(V, D, padding_idx=bad)


@pytest.mark.parametrize("shape", [(), (5,), (2, 3)])
def test_lookup_matches_numpy_for_any_index_shape(shape):
    layer = nn.Embedding(V, D)
    params, _ = layer.init(jax.random.key(0))
    ids = ids_of(shape)
    y, _ = layer.apply(params, {}, ids)
    assert y.shape == (*shape, D)
    np.testing.assert_array_equal(y, np.asarray(params["weight"])[np.asarray(ids)])


@pytest.mark.parametrize("padding_idx", [None, 2, -1])
def test_padding_row_gets_no_gradient(padding_idx):
    layer = nn.Embedding(V, D, padding_idx=padding_idx)
    params, _ = layer.init(jax.random.key(0))
    params = {"weight": params["weight"] + 1.0}  # a non-zero padding row is still returned
    ids = jnp.array([[2, 9, 2, 0], [9, 3, 3, 2]])
    r = jax.random.normal(jax.random.key(1), (*ids.shape, D))
    f = lambda params: jnp.sum(layer.apply(params, {}, ids)[0] * r)
    grad = jax.jit(jax.grad(f))(params)["weight"]
    # float32 sums of the cotangent rows of repeated ids (up to 3): within the worst case
    # in any order, (n - 1) U32 sum|r| (rtol=atol=1e-6 could fail where they cancel)
    bound = ids.size * U32 * np_grad(ids, np.abs(r), layer.padding_idx).max()
    np.testing.assert_allclose(grad, np_grad(ids, r, layer.padding_idx), rtol=0, atol=bound)
    y = layer.apply(params, {}, ids)[0]
    np.testing.assert_array_equal(y, np.asarray(params["weight"])[np.asarray(ids)])


def test_functional_embedding_equals_layer():
    layer = nn.Embedding(V, D, padding_idx=-2)
    params, _ = layer.init(jax.random.key(0))
    ids = ids_of((2, 3))

    w = params["weight"]
    functional = lambda w: F.embedding(ids, w, padding_idx=-2)
    module = lambda w: layer.apply({"weight": w}, {}, ids)[0]
    chex.assert_trees_all_equal(functional(w), module(w))
    grads = [
        jax.grad(lambda w, f=f: jnp.sum(f(w) * jnp.arange(D)))(w) for f in (functional, module)
    ]
    chex.assert_trees_all_equal(*grads)
    np.testing.assert_array_equal(grads[0][V - 2], 0.0)
    assert np.asarray(grads[0]).any()


def test_out_of_range_ids_raise_eagerly_and_give_nan_under_jit():
    layer = nn.Embedding(V, D)
    params, _ = layer.init(jax.random.key(0))
    for bad in (V, -1):
        ids = jnp.array([1, bad])
        expected = f"model (Embedding): index out of range: expected indices in [0, {V}), got"
        with pytest.raises(IndexError, match=re.escape(expected)):
            layer.apply(params, {}, ids)
        with pytest.raises(IndexError, match="^" + re.escape("embedding: index out of range")):
            F.embedding(ids, params["weight"])
    y = jax.jit(lambda ids: layer.apply(params, {}, ids)[0])(jnp.array([1, V, -1]))
    np.testing.assert_array_equal(y[0], params["weight"][1])
    assert np.isnan(y[1:]).all()  # PyTorch raises; JAX cannot under jit, so NaN is loud


@pytest.mark.parametrize("dtype", ["float32", "bool"])
def test_non_integer_ids_are_a_shape_error_naming_the_layer(dtype):
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(V, D)

        def forward(self, ctx, ids):
            return self.emb(ctx, ids)

    model = Model()
    params, _ = model.init(jax.random.key(0))
    expected = f"model.emb (Embedding): expected integer ids, got dtype {dtype}"
    with pytest.raises(ShapeError, match=re.escape(expected)):
        model.apply(params, {}, jnp.zeros((2, 3), dtype))
    with pytest.raises(
        ShapeError, match="^" + re.escape("embedding: expected integer ids, got dtype")
    ):
        F.embedding(jnp.zeros((2,), dtype), params["emb"]["weight"])


def test_custom_init_and_dtype():
    layer = nn.Embedding(V, D, padding_idx=0, weight_init=nn.init.ones, dtype=jnp.bfloat16)
    params, _ = layer.init(jax.random.key(0))
    assert params["weight"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(params["weight"][0], 0.0)
    np.testing.assert_array_equal(params["weight"][1:], 1.0)
    y, _ = layer.apply(params, {}, jnp.array([0, 1], jnp.uint8))
    assert y.dtype == jnp.bfloat16 and y.shape == (2, D)


class JitTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_same_result_with_and_without_jit(self):
        layer = nn.Embedding(V, D, padding_idx=1)
        params, _ = layer.init(jax.random.key(0))
        ids = ids_of((2, 3))
        y = self.variant(lambda params, ids: layer.apply(params, {}, ids)[0])(params, ids)
        np.testing.assert_array_equal(y, np.asarray(params["weight"])[np.asarray(ids)])


def test_strict_dtype_and_rank_promotion():
    layer = nn.Embedding(V, D, padding_idx=3)
    params, _ = layer.init(jax.random.key(0))
    ids = jax.ShapeDtypeStruct((2, 5), jnp.int32)
    with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
        y, _ = jax.eval_shape(lambda ids: layer.apply(params, {}, ids), ids)
    assert (y.shape, y.dtype) == ((2, 5, D), jnp.float32)


@pytest.mark.torch
@pytest.mark.parametrize("padding_idx", [None, 3, -2])
def test_matches_torch_values_and_gradients(padding_idx):
    torch = pytest.importorskip("torch")
    layer = nn.Embedding(V, D, padding_idx=padding_idx)
    params, _ = layer.init(jax.random.key(0))
    ids = jnp.array([[3, 1, 8, 3], [8, 8, 0, 5]])
    r = jax.random.normal(jax.random.key(1), (*ids.shape, D))
    f = lambda params: jnp.sum(layer.apply(params, {}, ids)[0] * r)
    grad = jax.jit(jax.grad(f))(params)["weight"]
    t = torch.nn.Embedding(V, D, padding_idx=padding_idx)
    with torch.no_grad():
        t.weight.copy_(torch.tensor(np.asarray(params["weight"])))
    ty = t(torch.tensor(np.asarray(ids), dtype=torch.long))
    (ty * torch.tensor(np.asarray(r))).sum().backward()
    assert t.padding_idx == layer.padding_idx
    np.testing.assert_array_equal(layer.apply(params, {}, ids)[0], ty.detach().numpy())
    # two float32 sums of repeated ids' cotangent rows: twice the worst case of one
    bound = 2 * ids.size * U32 * np_grad(ids, np.abs(r), layer.padding_idx).max()
    np.testing.assert_allclose(grad, t.weight.grad.numpy(), rtol=0, atol=bound)


def test_docstring_examples_run():
    import funcnet.nn._embedding as layers

    result = doctest.testmod(layers)
    assert result.attempted > 0 and result.failed == 0
