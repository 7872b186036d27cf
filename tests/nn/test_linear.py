"""Linear, Bilinear, Flatten, Unflatten, Identity against NumPy and PyTorch."""

import functools
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet.functional as F
from funcnet import nn
from funcnet.errors import ShapeError
from tests._devices import run_with_cpu_devices
from tests._numerics import U32, check_grads_float64, matmul_error_bound


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


# ------------------------------------------------------------------------- Bilinear


def _bilinear_bound(x1, x2, w, b=None):
    """Worst case of a float32 bilinear form in any contraction order: the inner sum of
    in1 products, then in2 products of it with x2, plus the bias (one rounding each), as
    (in1 + in2 + 2) U32 times the largest |x1| |w| |x2| (+ |b|), with a 10 % allowance."""
    x1, x2, w = (np.abs(np.asarray(a, np.float64)) for a in (x1, x2, w))
    mags = np.einsum("...i,ijo,...j->...o", x1, w, x2)
    mags = mags + (0.0 if b is None else np.abs(np.asarray(b, np.float64)))
    return 1.1 * (w.shape[0] + w.shape[1] + 2) * U32 * float(mags.max(initial=0.0))


def test_bilinear_matches_numpy_under_jit_and_vmap(key):
    layer = nn.Bilinear(4, 5, 3)
    params, state = layer.init(key)
    assert params["weight"].shape == (4, 5, 3) and params["bias"].shape == (3,)
    rng = np.random.default_rng(4)
    x1 = rng.normal(size=(2, 6, 4)).astype(np.float32)
    x2 = rng.normal(size=(2, 6, 5)).astype(np.float32)
    y, _ = jax.jit(layer.apply)(params, state, x1, x2)
    w, b = np.asarray(params["weight"], np.float64), np.asarray(params["bias"], np.float64)
    expected = np.einsum("...i,ijo,...j->...o", x1.astype(np.float64), w, x2) + b
    bound = _bilinear_bound(x1, x2, w, b)
    np.testing.assert_allclose(y, expected, rtol=0, atol=bound)
    batched = jax.vmap(F.bilinear, in_axes=(0, 0, None, None))(x1, x2, w.astype(np.float32), b)
    np.testing.assert_allclose(batched, expected, rtol=0, atol=bound)
    y, _ = layer.apply(params, state, x1[0, 0], x2[0, 0])  # unbatched (in1,), (in2,)
    np.testing.assert_allclose(y, expected[0, 0], rtol=0, atol=bound)


def test_bilinear_default_init_is_pytorch_uniform(key):
    params, _ = nn.Bilinear(40, 30, 20).init(key)
    bound = 1 / np.sqrt(40)  # PyTorch: 1/sqrt(in1_features), for weight and bias
    for leaf in (params["weight"], params["bias"]):
        assert float(jnp.max(jnp.abs(leaf))) <= bound
    assert float(jnp.max(jnp.abs(params["weight"]))) > 0.99 * bound
    np.testing.assert_allclose(float(jnp.std(params["weight"])), bound / np.sqrt(3), rtol=0.02)


def test_bilinear_without_bias_with_init_override_and_bfloat16(key):
    constant = functools.partial(nn.init.constant, value=0.5)
    layer = nn.Bilinear(3, 2, 4, bias=False, weight_init=constant)
    params, state = layer.init(key)
    assert list(params) == ["weight"]
    x1, x2 = jnp.ones((1, 3), jnp.bfloat16), jnp.ones((1, 2), jnp.bfloat16)
    y, _ = layer.apply(params, state, x1, x2)
    assert y.dtype == jnp.bfloat16 and params["weight"].dtype == jnp.float32
    np.testing.assert_array_equal(y, np.full((1, 4), 3.0))  # 6 terms of 0.5, exact


def test_bilinear_gradients(key):
    k1, k2, k3 = jax.random.split(key, 3)
    x1, x2 = jax.random.normal(k1, (3, 4)), jax.random.normal(k2, (3, 5))
    w, b = jax.random.normal(k3, (4, 5, 2)), jnp.ones(2)
    check_grads_float64(jax.jit(F.bilinear), (x1, x2, w, b))


def test_bilinear_shape_errors_name_the_layer(key):
    layer = nn.Bilinear(4, 5, 3)
    params, state = layer.init(key)
    for shapes, match in [
        (
            ((3, 6), (3, 5)),
            r"model \(Bilinear\): expected input1 with last dimension 4, got shape \(3, 6\)",
        ),
        (
            ((3, 4), (3, 2)),
            r"model \(Bilinear\): expected input2 with last dimension 5, got shape \(3, 2\)",
        ),
        (
            ((3, 4), (1, 5)),
            r"model \(Bilinear\): expected input1 and input2 with the same leading dimensions, "
            r"got shapes \(3, 4\) and \(1, 5\)",
        ),
    ]:
        with pytest.raises(ShapeError, match=match):
            layer.apply(params, state, *(jnp.zeros(s) for s in shapes))
    with pytest.raises(ShapeError, match=r"bilinear: expected 3-D weight .*got shape \(4, 5\)"):
        F.bilinear(jnp.zeros((3, 4)), jnp.zeros((3, 5)), jnp.zeros((4, 5)))


@pytest.mark.torch
def test_bilinear_matches_torch_with_permuted_weight(key):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x1, x2 = rng.normal(size=(6, 4)), rng.normal(size=(6, 5))
    w, b = rng.normal(size=(4, 5, 3)), rng.normal(size=(3,))
    ref = torch.nn.Bilinear(4, 5, 3).double()
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(w.transpose(2, 0, 1)))  # PyTorch's (out, in1, in2)
        ref.bias.copy_(torch.tensor(b))
    assert np.array_equal(ref.weight.detach().numpy().transpose(1, 2, 0), w)  # the import rule
    t1, t2 = torch.tensor(x1, requires_grad=True), torch.tensor(x2, requires_grad=True)
    out = ref(t1, t2)
    out.pow(2).sum().backward()
    with jax.enable_x64(True):
        loss = lambda x1, x2, w, b: jnp.sum(F.bilinear(x1, x2, w, b) ** 2)
        y = F.bilinear(x1, x2, w, b)
        g1, g2, gw, gb = jax.grad(loss, argnums=(0, 1, 2, 3))(x1, x2, w, b)
    # float64 sums of at most 36 terms, in different orders: ~1e-15 relative to their size
    np.testing.assert_allclose(y, out.detach().numpy(), rtol=1e-12, atol=1e-12)
    for ours, theirs in [
        (g1, t1.grad.numpy()),
        (g2, t2.grad.numpy()),
        (gw, ref.weight.grad.numpy().transpose(1, 2, 0)),
        (gb, ref.bias.grad.numpy()),
    ]:
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
