"""Linear, Flatten, Unflatten, Identity against NumPy and PyTorch."""

import functools
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet.functional as F
from funcnet import nn
from tests._devices import run_with_cpu_devices
from tests._numerics import check_grads_float64, matmul_error_bound


class TestLinear(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_numpy(self):
        layer = nn.Linear(5, 3)
        params, state = layer.init(jax.random.key(0))
        x = np.random.default_rng(0).normal(size=(2, 4, 5)).astype(np.float32)
        y, _ = self.variant(layer.apply)(params, state, x)
        w, b = np.asarray(params["weight"], np.float64), np.asarray(params["bias"], np.float64)
        # float32 against float64 (a float32 NumPy reference would be BLAS's, CPU-dependent):
        # within the worst case of a 5-term dot product plus bias, ~1e-6 here
        np.testing.assert_allclose(y, x @ w + b, rtol=0, atol=matmul_error_bound(x, w, b))
        chex.assert_shape(y, (2, 4, 3))


def test_default_init_is_pytorch_uniform(key):
    params, _ = nn.Linear(400, 300).init(key)
    bound = 1 / np.sqrt(400)
    for leaf in (params["weight"], params["bias"]):
        assert float(jnp.max(jnp.abs(leaf))) <= bound
    assert float(jnp.max(jnp.abs(params["weight"]))) > 0.99 * bound
    np.testing.assert_allclose(float(jnp.std(params["weight"])), bound / np.sqrt(3), rtol=0.02)


def test_init_overrides_and_no_bias(key):
    layer = nn.Linear(3, 2, bias=False, weight_init=functools.partial(nn.init.constant, value=0.5))
    params, _ = layer.init(key)
    assert list(params) == ["weight"]
    np.testing.assert_array_equal(params["weight"], np.full((3, 2), 0.5))


def test_bfloat16_input_computes_in_bfloat16(key):
    layer = nn.Linear(4, 2)
    params, state = layer.init(key)
    y, _ = layer.apply(params, state, jnp.ones((1, 4), jnp.bfloat16))
    assert y.dtype == jnp.bfloat16 and params["weight"].dtype == jnp.float32


def test_gradients(key):
    x = jax.random.normal(key, (3, 4))
    w = jax.random.normal(jax.random.fold_in(key, 1), (4, 2))
    b = jnp.ones(2)
    check_grads_float64(F.linear, (x, w, b), order=2, modes=("fwd", "rev"))


def _dot_generals(jaxpr) -> list:
    return [e for e in jaxpr.eqns if e.primitive.name == "dot_general"]


def test_weight_gradient_of_a_sequence_input_is_one_plain_matmul(key, monkeypatch):
    # XLA:CPU compiles a weight gradient that contracts two or more axes (batch and
    # time) as a transposed copy of the whole output gradient and a slower matmul; on CPU
    # F.linear merges the leading axes first so the gradient contracts exactly one axis.
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    x = jax.random.normal(key, (8, 6, 5))
    w = jax.random.normal(jax.random.fold_in(key, 1), (5, 3))
    g = jnp.ones((8, 6, 3))
    jaxpr = jax.make_jaxpr(lambda x, w: jax.vjp(F.linear, x, w)[1](g))(x, w).jaxpr
    dots = _dot_generals(jaxpr)
    assert len(dots) == 3  # forward, input gradient, weight gradient
    for eqn in dots:
        (lhs_contract, rhs_contract), _ = eqn.params["dimension_numbers"]
        assert len(lhs_contract) == len(rhs_contract) == 1, eqn
        assert all(v.aval.ndim == 2 for v in eqn.invars), eqn


_SEQUENCE_SHARDED = textwrap.dedent(
    """
    import jax, jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import funcnet.functional as F

    mesh = Mesh(jax.devices(), ("seq",))
    x = jax.device_put(jnp.ones((2, 8, 4)), NamedSharding(mesh, P(None, "seq", None)))
    w = jnp.ones((4, 3))
    jax.default_backend = lambda: "gpu"  # the path every backend but CPU takes
    grad = jax.grad(lambda x, w: jnp.sum(F.linear(x, w) ** 2), argnums=(0, 1))
    text = jax.jit(grad).lower(x, w).compile().as_text()
    assert "all-gather" not in text and "all-reduce" in text, text
    print("ok")
    """
)


def test_off_cpu_a_sequence_sharded_input_is_not_gathered():
    """Off CPU, F.linear keeps ``x @ w``: merging (B, T) when only T is sharded would make
    XLA gather the whole input onto every device (4 simulated devices, subprocess)."""
    assert run_with_cpu_devices(_SEQUENCE_SHARDED).strip() == "ok"


@pytest.mark.parametrize("shape", [(7, 5), (2, 3, 4, 5), (0, 4, 5), (3, 0, 5)])
def test_any_leading_axes_match_numpy_with_gradients(key, shape):
    x = jax.random.normal(key, shape)
    w = jax.random.normal(jax.random.fold_in(key, 1), (5, 3))
    b = jnp.arange(3.0)
    y = F.linear(x, w, b)
    assert y.shape == (*shape[:-1], 3)
    # float32 against float64 references (float32 NumPy would be BLAS's, CPU-dependent)
    x64, w64, b64 = (np.asarray(a, np.float64) for a in (x, w, b))
    y_bound = matmul_error_bound(x64, w64, b64)  # 5-term dot products: < 1e-5 worst case
    np.testing.assert_allclose(y, x64 @ w64 + b64, rtol=0, atol=y_bound)
    gx, gw = jax.grad(lambda x, w: jnp.sum(jnp.sin(F.linear(x, w, b))), argnums=(0, 1))(x, w)
    cos = np.cos(x64 @ w64 + b64)
    # From float32 y (typically ~sqrt(6) U32 * 4 ~ 6e-7 off), gx sums 3 terms cos * w and
    # gw up to 24 rows x * cos: typically ~1e-6 and ~6e-6 off (sqrt(n) U32 sum|terms| plus
    # the propagated error), 10x inside atol 1e-5 and 1e-4 (1e-7 / 1e-6 measured)
    np.testing.assert_allclose(gx, cos @ w64.T, rtol=1e-5, atol=1e-5)
    flat_x, flat_cos = x64.reshape(-1, 5), cos.reshape(-1, 3)
    np.testing.assert_allclose(gw, flat_x.T @ flat_cos, rtol=1e-4, atol=1e-4)


def test_a_vector_weight_gives_what_matmul_gives(key):
    """``x @ w`` with a (in,) weight drops the last axis; the 2-D view must too."""
    x = jax.random.normal(key, (2, 3, 4))
    w = jnp.arange(4.0)
    x64, w64 = np.asarray(x, np.float64), np.asarray(w, np.float64)
    # worst case of a float32 4-term dot product (rtol=1e-6 of a cancelling sum was luck)
    np.testing.assert_allclose(F.linear(x, w), x64 @ w64, rtol=0, atol=matmul_error_bound(x, w))


def test_sequence_input_under_vmap_and_check_grads(key):
    x = jax.random.normal(key, (4, 3, 2, 5))
    w = jax.random.normal(jax.random.fold_in(key, 1), (5, 3))
    b = jnp.ones(3)
    batched = jax.vmap(F.linear, in_axes=(1, None, None), out_axes=1)(x, w, b)
    # the same 5-term dot products, at most summed in another order: twice the worst case
    bound = 2 * matmul_error_bound(x, w, b)
    np.testing.assert_allclose(batched, F.linear(x, w, b), rtol=0, atol=bound)
    check_grads_float64(F.linear, (x[:2], w, b), order=2, modes=("fwd", "rev"))


@pytest.mark.torch
def test_matches_torch(key):
    torch = pytest.importorskip("torch")
    layer = nn.Linear(5, 3)
    params, state = layer.init(key)
    ref = torch.nn.Linear(5, 3)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(np.asarray(params["weight"]).T))  # PyTorch stores (out, in)
        ref.bias.copy_(torch.tensor(np.asarray(params["bias"])))
    x = np.random.default_rng(1).normal(size=(4, 5)).astype(np.float32)
    # two float32 5-term dot products plus bias, each within the worst case of the exact one
    np.testing.assert_allclose(
        layer.apply(params, state, x)[0],
        ref(torch.tensor(x)).detach().numpy(),
        rtol=0,
        atol=2 * matmul_error_bound(x, params["weight"], params["bias"]),
    )


def test_flatten_unflatten_identity():
    x = jnp.arange(2 * 3 * 4 * 5.0).reshape(2, 3, 4, 5)
    y, _ = nn.Flatten().apply({}, {}, x)
    np.testing.assert_array_equal(y, np.asarray(x).reshape(2, 60))
    y, _ = nn.Flatten(1, 2).apply({}, {}, x)
    assert y.shape == (2, 12, 5)
    z, _ = nn.Unflatten(1, (3, 20)).apply({}, {}, nn.Flatten().apply({}, {}, x)[0])
    np.testing.assert_array_equal(z, np.asarray(x).reshape(2, 3, 20))
    assert nn.Identity().apply({}, {}, x)[0] is x
