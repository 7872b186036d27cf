"""CosineSimilarity, PairwiseDistance (layers and functions) against NumPy and PyTorch."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet.functional as F
from funcnet import nn
from funcnet.errors import ShapeError
from tests._numerics import check_grads_float64

P_VALUES = [2.0, 1.0, 3.0, 0.5, math.inf, -math.inf, 0.0, -1.0]


def _np_cosine(x1, x2, dim=-1, eps=1e-8):
    """PyTorch's implementation: each input divided by its own norm, clamped to eps."""
    x1, x2 = np.broadcast_arrays(np.asarray(x1, np.float64), np.asarray(x2, np.float64))
    n1 = np.maximum(np.linalg.norm(x1, axis=dim, keepdims=True), eps)
    n2 = np.maximum(np.linalg.norm(x2, axis=dim, keepdims=True), eps)
    return np.sum(x1 / n1 * (x2 / n2), axis=dim)


def _np_pairwise(x1, x2, p=2.0, eps=1e-6, keepdim=False):
    d = np.asarray(x1, np.float64) - np.asarray(x2, np.float64) + eps
    return np.linalg.norm(d, ord=p, axis=-1, keepdims=keepdim)


def _inputs(*shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=shape).astype(np.float32) for shape in shapes]


def test_cosine_similarity_matches_numpy():
    x1, x2, x3 = _inputs((4, 6), (4, 6), (2, 1, 6))
    # unit vectors: 6 products summing to at most 1 in magnitude, each factor a few
    # roundings from its float64 value: under 20 U32 = 1.2e-6 in the worst case
    tol = dict(rtol=0, atol=2e-6)
    y, _ = jax.jit(nn.CosineSimilarity().apply)({}, {}, x1, x2)  # default dim -1
    np.testing.assert_allclose(y, _np_cosine(x1, x2), **tol)
    np.testing.assert_allclose(F.cosine_similarity(x3, x1), _np_cosine(x3, x1), **tol)  # (2, 4)
    y, _ = nn.CosineSimilarity(dim=0).apply({}, {}, x1, x2)
    np.testing.assert_allclose(y, _np_cosine(x1, x2, dim=0), **tol)
    # eps clamps each norm on its own: two parallel vectors of norm 1e-5 (product 1e-10,
    # below eps) still have cosine 1; a norm below eps is replaced by eps; zero gives 0
    small = np.array([[1e-5, 0.0], [1e-9, 0.0], [0.0, 0.0]], np.float32)
    other = np.array([[1e-5, 0.0], [1.0, 0.0], [1.0, 1.0]], np.float32)
    np.testing.assert_allclose(F.cosine_similarity(small, other), [1.0, 0.1, 0.0], rtol=1e-6)
    assert F.cosine_similarity(jnp.arange(3), jnp.ones(3, jnp.int32)).dtype == jnp.float32


def test_cosine_similarity_gradients_ignore_the_clamp_as_pytorchs():
    with jax.enable_x64(True):
        b = jnp.array([1.0, 0.0])
        grad = jax.jit(jax.grad(lambda a: F.cosine_similarity(a, b)))
        # f = a·b̂ / max(‖a‖, eps), differentiated with d max(‖a‖, eps) = d‖a‖:
        # b̂ / eps − (a·b̂) / eps² · a / ‖a‖ = (1e8 − 1e7, 0) at a = (1e-9, 0)
        np.testing.assert_allclose(grad(jnp.array([1e-9, 0.0])), [9e7, 0.0], rtol=1e-12)
        # a zero vector: the norm's gradient is 0 (not NaN), leaving b̂ / eps
        np.testing.assert_allclose(grad(jnp.zeros(2)), [1e8, 0.0], rtol=1e-12)
    x1, x2 = _inputs((3, 5), (3, 5), seed=1)
    check_grads_float64(jax.jit(F.cosine_similarity), (x1, x2))
    batched = jax.vmap(F.cosine_similarity)(x1, x2)
    np.testing.assert_allclose(batched, F.cosine_similarity(x1, x2), rtol=0, atol=2e-6)


def test_pairwise_distance_matches_numpy():
    x1, x2, x3 = _inputs((4, 6), (4, 6), (2, 1, 6))
    for p in P_VALUES:
        layer = nn.PairwiseDistance(p=p)
        y, _ = jax.jit(layer.apply)({}, {}, x1, x2)
        # 6-term sums, a power and a root in float32: a few tens of U32 at most (1e-5 =
        # 170 U32); max, min and the count are exact up to the subtraction
        np.testing.assert_allclose(y, _np_pairwise(x1, x2, p), rtol=1e-5, err_msg=str(p))
    y = F.pairwise_distance(x3, x1, 3.0, eps=0.1, keepdim=True)  # broadcast, eps added
    assert y.shape == (2, 4, 1)
    np.testing.assert_allclose(y, _np_pairwise(x3, x1, 3.0, 0.1, keepdim=True), rtol=1e-5)
    assert F.pairwise_distance(x1[0], x2[0]).shape == ()  # (D,) vectors give a scalar


def test_pairwise_distance_gradients():
    x1, x2 = _inputs((3, 5), (3, 5), seed=2)
    for p in (2.0, 3.0):
        check_grads_float64(jax.jit(lambda a, b, p=p: F.pairwise_distance(a, b, p)), (x1, x2))
    # the gradient with respect to x1 is d / ‖d‖, d = x1 − x2 + eps; for equal vectors
    # every d is eps, so each coordinate's is 1 / sqrt(D), as PyTorch's
    grad = jax.jit(jax.grad(lambda a, b: F.pairwise_distance(a, b).sum()))
    d = x1.astype(np.float64) - x2 + 1e-6
    np.testing.assert_allclose(
        grad(x1, x2), d / np.linalg.norm(d, axis=-1, keepdims=True), rtol=1e-5
    )
    np.testing.assert_allclose(grad(x1, x1), np.full_like(x1, 1 / np.sqrt(5)), rtol=1e-6)


def test_16_bit_inputs_are_computed_in_float32():
    x1, x2 = (jnp.asarray(a, jnp.bfloat16) for a in _inputs((4, 6), (4, 6)))
    f32 = [a.astype(jnp.float32) for a in (x1, x2)]
    for fn in (F.cosine_similarity, F.pairwise_distance):
        y = fn(x1, x2)
        assert y.dtype == jnp.bfloat16
        np.testing.assert_array_equal(y, fn(*f32).astype(jnp.bfloat16))


def test_shape_errors_name_the_layer():
    a, b = jnp.zeros((3, 6)), jnp.zeros((2, 6))
    for layer in (nn.CosineSimilarity(), nn.PairwiseDistance()):
        name = type(layer).__name__
        match = rf"model \({name}\): expected x1 and x2 of broadcastable shapes, got \(3, 6\) and \(2, 6\)"
        with pytest.raises(ShapeError, match=match):
            layer.apply({}, {}, a, b)
    with pytest.raises(ShapeError, match=r"model \(CosineSimilarity\): axis 2 does not exist in"):
        nn.CosineSimilarity(dim=2).apply({}, {}, a, a)
    with pytest.raises(ShapeError, match=r"pairwise_distance: expected inputs with at least 1"):
        F.pairwise_distance(jnp.float32(1), jnp.float32(2))
    with pytest.raises(ShapeError, match=r"cosine_similarity: expected x1 and x2 of broadcastable"):
        F.cosine_similarity(a, b)


@pytest.mark.torch
def test_match_torch_values_and_gradients():
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    x1, x2, x3 = (a.astype(np.float64) for a in _inputs((4, 6), (4, 6), (2, 1, 6), seed=3))
    x1[0, :] = 1e-9 * x2[0, :]  # a norm below eps: clamped, and a gradient past the clamp
    x1[1, :] = x2[1, :]  # equal vectors: pairwise_distance's eps keeps it differentiable
    cases = [
        (lambda a, b: F.cosine_similarity(a, b), lambda a, b: tf.cosine_similarity(a, b, -1)),
        (
            lambda a, b: F.cosine_similarity(a, b, 0, 0.5),
            lambda a, b: tf.cosine_similarity(a, b, 0, 0.5),
        ),
    ]
    for p in P_VALUES:
        cases.append(
            (
                lambda a, b, p=p: F.pairwise_distance(a, b, p, keepdim=True),
                lambda a, b, p=p: tf.pairwise_distance(a, b, p, keepdim=True),
            )
        )
    with jax.enable_x64(True):

        @jax.jit
        def run(a, b):  # one compilation for every case
            value_and_grad = lambda f: jax.value_and_grad(lambda a, b: f(a, b).sum(), (0, 1))
            return [(ours(a, b), value_and_grad(ours)(a, b)[1]) for ours, _ in cases]

        results = {"same": run(x1, x2), "broadcast": run(x3, x1)}
    for pair, (a, b) in {"same": (x1, x2), "broadcast": (x3, x1)}.items():
        for (_, theirs), (y, grads) in zip(cases, results[pair]):
            ta, tb = (torch.tensor(v, requires_grad=True) for v in (a, b))
            out = theirs(ta, tb)
            if out.requires_grad:  # p = 0 counts: no gradient in PyTorch, zeros in JAX
                out.sum().backward()
            ref_grads = [
                np.zeros_like(v) if t.grad is None else t.grad.numpy()
                for v, t in ((a, ta), (b, tb))
            ]
            # float64: a few ulp of values up to ~1e8 (the clamped norm's gradient)
            for mine, ref in zip((y, *grads), (out.detach().numpy(), *ref_grads)):
                np.testing.assert_allclose(mine, ref, rtol=1e-9, atol=1e-9, err_msg=pair)
