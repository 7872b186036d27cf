"""BatchNorm1d/2d, LayerNorm, GroupNorm, RMSNorm and their functional forms.

References: NumPy (float64) written here, and PyTorch where installed. Jitted functions
are built once per configuration (``functools.cache``) because compilation, not running,
is what costs time in these small tests.
"""

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
from tests._numerics import check_grads_float64, to_float64

C = 3


# ----------------------------------------------------------------- NumPy references
def np_normalize(x, axes, eps):
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps)


def np_reference(module, params, x):
    """The layer's output computed in float64 NumPy from its definition."""
    x = np.asarray(x, np.float64)
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    if isinstance(module, nn.LayerNorm):
        axes = tuple(range(x.ndim - len(module.normalized_shape), x.ndim))
        y = np_normalize(x, axes, module.eps)
    elif isinstance(module, nn.GroupNorm):
        g = module.num_groups
        grouped = x.reshape(x.shape[0], -1, g, x.shape[-1] // g)
        y = np_normalize(grouped, (1, 3), module.eps).reshape(x.shape)
    elif isinstance(module, nn.RMSNorm):
        axes = tuple(range(x.ndim - len(module.normalized_shape), x.ndim))
        eps = np.finfo(np.float32).eps if module.eps is None else module.eps
        y = x / np.sqrt((x**2).mean(axis=axes, keepdims=True) + eps)
    else:
        raise TypeError(module)
    return y * p.get("weight", 1.0) + p.get("bias", 0.0)


def perturbed(params, key):
    """Parameters moved away from their (1, 0) init so the affine part is exercised."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, max(len(leaves), 1))
    moved = [v + 0.5 * jax.random.normal(k, v.shape) for v, k in zip(leaves, keys)]
    return jax.tree.unflatten(tree, moved)


def normal(seed, shape, dtype=jnp.float32):
    return jax.random.normal(jax.random.key(seed), shape, dtype)


# ------------------------------------------------------------ LayerNorm, GroupNorm, RMSNorm
CASES = {
    "LayerNorm": (lambda: nn.LayerNorm(6), (4, 6)),
    "LayerNorm-2d": (lambda: nn.LayerNorm((3, 4), eps=1e-3), (2, 3, 4)),
    "LayerNorm-nobias": (lambda: nn.LayerNorm(6, bias=False), (4, 6)),
    "LayerNorm-noaffine": (lambda: nn.LayerNorm(6, elementwise_affine=False), (4, 6)),
    "GroupNorm": (lambda: nn.GroupNorm(2, 4), (2, 3, 3, 4)),
    "GroupNorm-1d-noaffine": (lambda: nn.GroupNorm(3, 6, affine=False), (2, 5, 6)),
    "RMSNorm": (lambda: nn.RMSNorm(6), (4, 6)),
    "RMSNorm-2d-eps": (lambda: nn.RMSNorm((3, 4), eps=1e-3, elementwise_affine=False), (2, 3, 4)),
}


@functools.cache
def norm_case(name):
    """(module, params, x, r, jitted value_and_grad of sum(y·r) w.r.t. (params, x))."""
    make, shape = CASES[name]
    module = make()
    params, state = module.init(jax.random.key(0))
    params = perturbed(params, jax.random.key(1))
    x = 2.0 + 3.0 * normal(2, shape)  # offset and scale: catches a missing centring
    r = normal(3, shape)

    def loss(params, x):
        y, _ = module.apply(params, state, x)
        return jnp.sum(y * r), y

    return module, params, x, r, jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))


@pytest.mark.parametrize("name", CASES)
def test_norm_matches_numpy(name):
    module, params, x, _, fn = norm_case(name)
    (_, y), _ = fn(params, x)
    assert y.shape == x.shape and y.dtype == jnp.float32
    # float32 statistics of n <= 18 elements (mean |x| ~ 3, sigma ~ 3) are within n U32
    # mean|x| ~ 3e-6 in the worst case (U32 = 2^-24, tests/_numerics.py), so y = (x - mean)
    # / sigma * w + b is within ~2e-6 (|w| < 2): 5x inside rtol=atol=1e-5 on any CPU
    np.testing.assert_allclose(y, np_reference(module, params, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", CASES)
def test_norm_gradients(name):
    module, params, x, _, _ = norm_case(name)
    state = module.init(jax.random.key(0))[1]
    f = jax.jit(lambda x, params: module.apply(params, state, x)[0])
    check_grads_float64(f, (x, params))  # float32 differences: ~1e-3 error, machine-dependent


def to_torch(torch, module, params):
    """The equivalent torch module with our parameters, and our→torch layout functions."""
    if isinstance(module, nn.LayerNorm):
        t = torch.nn.LayerNorm(
            module.normalized_shape, module.eps, module.elementwise_affine, module.bias
        )
        to, back = (lambda a: a), (lambda a: a)
    elif isinstance(module, nn.RMSNorm):
        t = torch.nn.RMSNorm(module.normalized_shape, module.eps, module.elementwise_affine)
        to, back = (lambda a: a), (lambda a: a)
    elif isinstance(module, nn.GroupNorm):
        t = torch.nn.GroupNorm(module.num_groups, module.num_channels, module.eps, module.affine)
        to, back = (lambda a: np.moveaxis(a, -1, 1)), (lambda a: np.moveaxis(a, 1, -1))
    else:  # BatchNorm1d / BatchNorm2d
        cls = torch.nn.BatchNorm1d if isinstance(module, nn.BatchNorm1d) else torch.nn.BatchNorm2d
        t = cls(module.num_features, module.eps, module.momentum, module.affine)
        to, back = (lambda a: np.moveaxis(a, -1, 1)), (lambda a: np.moveaxis(a, 1, -1))
    with torch.no_grad():
        for pname, value in params.items():
            getattr(t, pname).copy_(torch.tensor(np.asarray(value)))
    return t, to, back


@pytest.mark.torch
@pytest.mark.parametrize("name", CASES)
def test_norm_matches_torch(name):
    torch = pytest.importorskip("torch")
    module, params, x, r, fn = norm_case(name)
    (_, y), (gparams, gx) = fn(params, x)
    t, to, back = to_torch(torch, module, params)
    tx = torch.tensor(to(np.asarray(x)), requires_grad=True)
    ty = t(tx)
    (ty * torch.tensor(to(np.asarray(r)))).sum().backward()
    # two float32 computations, outputs each within ~2e-6 (test_norm_matches_numpy); the
    # input gradients add two more sums of n <= 18 terms (|r| < 3): ~1e-6 typical, 10x
    # inside atol=1e-5 (rtol=1e-4 for the parameter gradients, sums over 4..18 rows)
    np.testing.assert_allclose(y, back(ty.detach().numpy()), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gx, back(tx.grad.numpy()), rtol=1e-4, atol=1e-5)
    assert set(gparams) == {n for n, _ in t.named_parameters()}
    for pname, g in gparams.items():
        np.testing.assert_allclose(g, getattr(t, pname).grad.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["LayerNorm", "GroupNorm", "RMSNorm"])
def test_norm_bfloat16_in_bfloat16_out(name):
    module, params, x, _, _ = norm_case(name)
    y = jax.jit(lambda x: module.apply(params, {}, x)[0])(x.astype(jnp.bfloat16))
    assert y.dtype == jnp.bfloat16
    want = np_reference(module, params, np.asarray(x.astype(jnp.bfloat16), np.float32))
    # the exact output of the bfloat16 input, rounded to bfloat16 (2^-9 = 2e-3 relative;
    # the float32 statistics add ~1e-6): 10x inside rtol=2e-2 in the worst case
    np.testing.assert_allclose(np.asarray(y, np.float32), want, rtol=2e-2, atol=2e-2)


@pytest.mark.torch
def test_rmsnorm_default_eps_is_float32s_for_bfloat16_as_torch():
    torch = pytest.importorskip("torch")
    x = 1e-4 * normal(4, (2, 6))  # small enough that eps matters
    y, _ = nn.RMSNorm(6, elementwise_affine=False).apply({}, {}, x.astype(jnp.bfloat16))
    want = torch.nn.functional.rms_norm(
        torch.tensor(np.asarray(x)).to(torch.bfloat16), (6,)
    ).float()
    # both round float32 results ~1e-6 apart to bfloat16: at most one bfloat16 ulp apart
    # (<= 2^-7 = 7.8e-3 relative) in the worst case
    np.testing.assert_allclose(np.asarray(y, np.float32), want.numpy(), rtol=1e-2)


def test_functional_norms_equal_layers():
    x = normal(5, (2, 3, 4))
    w, b = normal(6, (4,)), normal(7, (4,))
    np.testing.assert_allclose(
        F.layer_norm(x, 4, w, b), nn.LayerNorm(4).apply({"weight": w, "bias": b}, {}, x)[0]
    )
    np.testing.assert_allclose(
        F.group_norm(x, 2, w, b), nn.GroupNorm(2, 4).apply({"weight": w, "bias": b}, {}, x)[0]
    )
    rms = nn.RMSNorm((3, 4), elementwise_affine=False)
    np.testing.assert_allclose(F.rms_norm(x, (3, 4)), rms.apply({}, {}, x)[0])


# ---------------------------------------------------------------------------- BatchNorm
BN_CASES = {
    "BatchNorm1d": (nn.BatchNorm1d, (8, C)),
    "BatchNorm1d-NLC": (nn.BatchNorm1d, (4, 5, C)),
    "BatchNorm2d": (nn.BatchNorm2d, (2, 3, 3, C)),
}


@functools.cache
def bn_case(name, momentum):
    """(module, params, init state, jitted train step, jitted eval)."""
    cls, _ = BN_CASES[name]
    module = cls(C, momentum=momentum)
    params, state = module.init(jax.random.key(0))

    def loss(params, state, x, r):
        y, state = module.apply(params, state, x, train=True)
        return jnp.sum(y * r), (y, state)

    train = jax.jit(jax.value_and_grad(loss, argnums=(0, 2), has_aux=True))
    evaluate = jax.jit(lambda params, state, x: module.apply(params, state, x)[0])
    return module, perturbed(params, jax.random.key(1)), state, train, evaluate


def bn_inputs(name, steps=3):
    shape = BN_CASES[name][1]
    return [1.0 + 2.0 * normal(10 + i, shape) for i in range(steps + 1)]


def np_batch_norm_trajectory(xs, params, momentum, eps=1e-5):
    """Outputs of the train steps, the running stats after them, and the eval output."""
    w, b = (np.asarray(params[k], np.float64) for k in ("weight", "bias"))
    mean, var, outs = np.zeros(C), np.ones(C), []
    for step, x in enumerate(xs[:-1], start=1):
        x = np.asarray(x, np.float64).reshape(-1, C)
        outs.append((x - x.mean(0)) / np.sqrt(x.var(0) + eps) * w + b)
        m = 1.0 / step if momentum is None else momentum
        mean = (1 - m) * mean + m * x.mean(0)
        var = (1 - m) * var + m * x.var(0, ddof=1)  # unbiased for the running estimate
    last = np.asarray(xs[-1], np.float64).reshape(-1, C)
    return outs, mean, var, (last - mean) / np.sqrt(var + eps) * w + b


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("name", BN_CASES)
def test_batchnorm_matches_numpy_over_steps(name, momentum):
    _, params, state, train, evaluate = bn_case(name, momentum)
    xs = bn_inputs(name)
    outs, mean, var, y_eval = np_batch_norm_trajectory(xs, params, momentum)
    # float32 statistics of n <= 20 values (mean |x| ~ 2, sigma ~ 2): within n U32 mean|x|
    # ~ 2.4e-6 in the worst case, so outputs are within ~2.4e-6 (|w| < 2) and the running
    # statistics within ~3e-6 relative: rtol=1e-5 (atol 1e-5 / 1e-6) holds on any CPU
    for x, want in zip(xs[:-1], outs):
        r = jnp.ones_like(x)
        (_, (y, state)), _ = train(params, state, x, r)
        np.testing.assert_allclose(np.asarray(y).reshape(-1, C), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(state["running_mean"], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state["running_var"], var, rtol=1e-5, atol=1e-6)
    assert int(state["num_batches_tracked"]) == len(xs) - 1
    y = evaluate(params, state, xs[-1])
    np.testing.assert_allclose(np.asarray(y).reshape(-1, C), y_eval, rtol=1e-5, atol=1e-5)


@pytest.mark.torch
@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("name", BN_CASES)
def test_batchnorm_matches_torch_over_steps(name, momentum):
    torch = pytest.importorskip("torch")
    module, params, state, train, evaluate = bn_case(name, momentum)
    t, to, back = to_torch(torch, module, params)
    t.train()
    for i, x in enumerate(bn_inputs(name)[:-1]):
        r = normal(20 + i, x.shape)
        (_, (y, state)), (gparams, gx) = train(params, state, x, r)
        tx = torch.tensor(to(np.asarray(x)), requires_grad=True)
        t.zero_grad()
        ty = t(tx)
        (ty * torch.tensor(to(np.asarray(r)))).sum().backward()
        # two float32 computations, each within the bounds of the NumPy test above; the
        # gradients add sums of <= 20 terms (|r| < 3): ~1e-6 typical, 10x inside
        np.testing.assert_allclose(y, back(ty.detach().numpy()), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(gx, back(tx.grad.numpy()), rtol=1e-4, atol=1e-5)
        for pname in ("weight", "bias"):
            want = getattr(t, pname).grad.numpy()
            np.testing.assert_allclose(gparams[pname], want, rtol=1e-4, atol=1e-5)
        for sname in ("running_mean", "running_var"):
            want = getattr(t, sname).numpy()
            np.testing.assert_allclose(state[sname], want, rtol=1e-5, atol=1e-6)
        assert int(state["num_batches_tracked"]) == int(t.num_batches_tracked)
    x = bn_inputs(name)[-1]
    t.eval()
    want = back(t(torch.tensor(to(np.asarray(x)))).detach().numpy())
    np.testing.assert_allclose(evaluate(params, state, x), want, rtol=1e-5, atol=1e-5)


def test_batchnorm_train_and_eval_modes_and_state_structure():
    module, params, state, train, evaluate = bn_case("BatchNorm2d", 0.1)
    x = bn_inputs("BatchNorm2d")[0]
    (_, (y_train, new_state)), _ = train(params, state, x, jnp.ones_like(x))
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), new_state) == jax.tree.map(
        lambda a: (a.shape, a.dtype), state
    )
    assert state["num_batches_tracked"].dtype == jnp.int32  # PyTorch: int64
    assert not np.allclose(new_state["running_mean"], state["running_mean"])
    y_eval = evaluate(params, state, x)
    assert not np.allclose(y_train, y_eval)
    # Eval leaves the state alone.
    _, eval_state = module.apply(params, new_state, x)
    chex.assert_trees_all_equal(eval_state, new_state)


def test_batchnorm_train_step_under_jit_and_grad_does_not_retrace():
    module = nn.BatchNorm1d(C, momentum=None)
    params, state = module.init(jax.random.key(0))

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, state, x):
        def loss(params):
            y, new_state = module.apply(params, state, x, train=True)
            return jnp.mean(y**2 * jnp.arange(C)), new_state

        grads, new_state = jax.grad(loss, has_aux=True)(params)
        return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), new_state

    for x in bn_inputs("BatchNorm1d"):
        params, state = step(params, state, x)
    assert int(state["num_batches_tracked"]) == 4
    assert all(np.isfinite(v).all() for v in jax.tree.leaves(params))
    assert not np.allclose(params["weight"], 1.0)


def test_batchnorm_without_running_stats_uses_batch_stats_in_eval():
    module = nn.BatchNorm2d(C, affine=False, track_running_stats=False)
    params, state = module.init(jax.random.key(0))
    assert params == {} and state == {}
    x = bn_inputs("BatchNorm2d")[0]
    fn = jax.jit(lambda x: module.apply({}, {}, x)[0])
    want = np_normalize(np.asarray(x, np.float64), (0, 1, 2), 1e-5)
    # float32 statistics of 18 values: as test_batchnorm_matches_numpy_over_steps
    np.testing.assert_allclose(fn(x), want, rtol=1e-5, atol=1e-5)


def test_batchnorm_axis_name_averages_statistics_like_one_big_batch():
    module = nn.BatchNorm1d(C, axis_name="batch")
    params, state = module.init(jax.random.key(0))
    x = bn_inputs("BatchNorm1d")[0]  # (8, C): two shards of 4
    full, full_state = nn.BatchNorm1d(C).apply(params, state, x, train=True)

    def shard(xs):
        return module.apply(params, state, xs, train=True)

    y, sharded_state = jax.vmap(shard, axis_name="batch")(x.reshape(2, 4, C))
    # the same float32 statistics summed as 4 + 4 or as 8 (|x| < 8, sigma ~ 2): a few
    # roundings of ~U32 * 8 apart, ~1e-6 of the mean in the worst case, so outputs within
    # ~5e-7 and the running statistics within ~1e-6 relative
    np.testing.assert_allclose(y.reshape(8, C), full, rtol=1e-5, atol=1e-6)
    for name in ("running_mean", "running_var"):  # identical on every member of the axis
        np.testing.assert_allclose(sharded_state[name][0], full_state[name], rtol=1e-5)
        np.testing.assert_allclose(sharded_state[name][1], full_state[name], rtol=1e-5)


def test_batchnorm_bfloat16_stats_in_float32():
    module, params, state, _, _ = bn_case("BatchNorm1d", 0.1)
    x = (100.0 + normal(30, (8, C))).astype(jnp.bfloat16)  # bf16 sums of these lose digits
    y, new_state = jax.jit(lambda x: module.apply(params, state, x, train=True))(x)
    assert y.dtype == jnp.bfloat16 and new_state["running_mean"].dtype == jnp.float32
    x64 = np.asarray(x, np.float64)
    # bfloat16 values near 100 are multiples of 0.5: their float32 sums are exact, and the
    # mean, 0.1 * mean and the variance take a few roundings each (< 5 U32 = 3e-7 relative)
    np.testing.assert_allclose(new_state["running_mean"], 0.1 * x64.mean(0), rtol=1e-6)
    np.testing.assert_allclose(new_state["running_var"], 0.9 + 0.1 * x64.var(0, ddof=1), rtol=1e-5)


# ----------------------------------------------------------------------- InstanceNorm
IN_CASES = {
    "InstanceNorm1d": (lambda: nn.InstanceNorm1d(C), (2, 5, C)),
    "InstanceNorm1d-unbatched-affine": (lambda: nn.InstanceNorm1d(C, affine=True), (6, C)),
    "InstanceNorm2d-tracked": (
        lambda: nn.InstanceNorm2d(C, affine=True, track_running_stats=True),
        (2, 3, 3, C),
    ),
    "InstanceNorm3d-tracked-unbatched": (
        lambda: nn.InstanceNorm3d(C, momentum=0.3, track_running_stats=True),
        (2, 2, 3, C),
    ),
    "InstanceNorm3d-momentum-none-nobias": (
        lambda: nn.InstanceNorm3d(
            C, momentum=None, affine=True, track_running_stats=True, bias=False
        ),
        (2, 2, 2, 2, C),
    ),
}


@functools.cache
def in_case(name):
    """(module, params, init state, jitted train step with gradients, jitted eval)."""
    make, _ = IN_CASES[name]
    module = make()
    params, state = module.init(jax.random.key(0))

    def loss(params, state, x, r):
        y, state = module.apply(params, state, x, train=True)
        return jnp.sum(y * r), (y, state)

    train = jax.jit(jax.value_and_grad(loss, argnums=(0, 2), has_aux=True))
    evaluate = jax.jit(lambda params, state, x: module.apply(params, state, x)[0])
    return module, perturbed(params, jax.random.key(1)), state, train, evaluate


def np_normal(seed, shape):
    """float32 N(0, 1) values from NumPy: a new shape costs no compilation (jax.random's
    does, about a second each on CPU)."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def in_inputs(name, steps=2):
    shape = IN_CASES[name][1]
    return [1.0 + 2.0 * np_normal(40 + i, shape) for i in range(steps + 1)]


def np_instance_norm_trajectory(module, params, xs):
    """Outputs of the train steps, the running stats after them, and the eval output."""
    w = np.asarray(params.get("weight", 1.0), np.float64)
    b = np.asarray(params.get("bias", 0.0), np.float64)
    m = module.momentum or 0.0  # PyTorch: None means 0 for InstanceNorm
    mean, var, outs = np.zeros(C), np.ones(C), []
    for x in xs[:-1]:
        x = np.asarray(x, np.float64)
        x = x if x.ndim == module._spatial + 2 else x[None]
        axes = tuple(range(1, x.ndim - 1))
        outs.append(np_normalize(x, axes, module.eps) * w + b)
        mean = (1 - m) * mean + m * x.mean(axis=axes).mean(0)
        var = (1 - m) * var + m * x.var(axis=axes, ddof=1).mean(0)  # unbiased, per instance
    last = np.asarray(xs[-1], np.float64)
    if module.track_running_stats:
        y_eval = (last - mean) / np.sqrt(var + module.eps) * w + b
    else:
        last = last if last.ndim == module._spatial + 2 else last[None]
        y_eval = np_normalize(last, tuple(range(1, last.ndim - 1)), module.eps) * w + b
    return outs, mean, var, y_eval


@pytest.mark.parametrize("name", IN_CASES)
def test_instance_norm_matches_numpy_over_steps(name):
    module, params, state, train, evaluate = in_case(name)
    xs = in_inputs(name)
    outs, mean, var, y_eval = np_instance_norm_trajectory(module, params, xs)
    # float32 statistics of n <= 12 values (mean |x| ~ 2, sigma ~ 2): within n U32 mean|x|
    # ~ 1.5e-6 in the worst case, so outputs are within ~3e-6 (|w| < 2) and the running
    # statistics within ~2e-6 relative: rtol=1e-5 (atol 1e-5 / 1e-6) holds on any CPU
    for x, want in zip(xs[:-1], outs):
        (_, (y, state)), _ = train(params, state, x, np.ones_like(x))
        assert y.shape == x.shape and y.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(y).reshape(want.shape), want, rtol=1e-5, atol=1e-5)
    if module.track_running_stats:
        np.testing.assert_allclose(state["running_mean"], mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(state["running_var"], var, rtol=1e-5, atol=1e-6)
        assert int(state["num_batches_tracked"]) == 0  # PyTorch never counts for InstanceNorm
    else:
        assert state == {}
    y = evaluate(params, state, xs[-1])
    np.testing.assert_allclose(np.asarray(y).reshape(y_eval.shape), y_eval, rtol=1e-5, atol=1e-5)


def instance_to_torch(torch, module, params):
    """The torch InstanceNorm with our parameters, and our→torch layout functions."""
    cls = getattr(torch.nn, type(module).__name__)
    t = cls(
        C,
        module.eps,
        module.momentum,
        module.affine,
        module.track_running_stats,
        bias=module.bias,
    )
    with torch.no_grad():
        for pname, value in params.items():
            getattr(t, pname).copy_(torch.tensor(np.asarray(value)))
    s = module._spatial  # channels go to axis 1 (batched) or 0 (unbatched)
    # contiguous copies: torch 2.13's CPU instance_norm returns a wrong input gradient when
    # the incoming gradient's memory format (a moved axis reads as channels_last) differs
    # from the input's
    to = lambda a: np.ascontiguousarray(np.moveaxis(a, -1, a.ndim - 1 - s))
    back = lambda a: np.moveaxis(a, a.ndim - 1 - s, -1)
    return t, to, back


@pytest.mark.torch
@pytest.mark.parametrize("name", IN_CASES)
def test_instance_norm_matches_torch_over_steps(name):
    torch = pytest.importorskip("torch")
    module, params, state, train, evaluate = in_case(name)
    t, to, back = instance_to_torch(torch, module, params)
    t.train()
    xs = in_inputs(name)
    for i, x in enumerate(xs[:-1]):
        r = np_normal(50 + i, x.shape)
        (_, (y, state)), (gparams, gx) = train(params, state, x, r)
        tx = torch.tensor(to(np.asarray(x)), requires_grad=True)
        t.zero_grad()
        ty = t(tx)
        (ty * torch.tensor(to(np.asarray(r)))).sum().backward()
        ty = ty.detach().numpy()
        # two float32 computations, each within the bounds of the NumPy test above; the
        # gradients add sums of <= 12 terms (|r| < 3): ~1e-6 typical, 10x inside
        np.testing.assert_allclose(y, back(ty), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(gx, back(tx.grad.numpy()), rtol=1e-4, atol=1e-5)
        assert set(gparams) == {n for n, _ in t.named_parameters()}
        for pname, g in gparams.items():
            np.testing.assert_allclose(g, getattr(t, pname).grad.numpy(), rtol=1e-4, atol=1e-5)
    flat = nn.state_dict(params, state)
    assert set(flat) == set(t.state_dict())  # checkpoints load both ways
    for sname, value in state.items():
        np.testing.assert_allclose(value, getattr(t, sname).numpy(), rtol=1e-5, atol=1e-6)
    t.eval()
    want = back(t(torch.tensor(to(np.asarray(xs[-1])))).detach().numpy())
    np.testing.assert_allclose(evaluate(params, state, xs[-1]), want, rtol=1e-5, atol=1e-5)


def test_instance_norm_gradients():
    module, params, state, _, _ = in_case("InstanceNorm2d-tracked")
    x = in_inputs("InstanceNorm2d-tracked")[0]
    f = jax.jit(lambda x, params: module.apply(params, state, x, train=True)[0])
    check_grads_float64(f, (x, params))


def test_instance_norm_vmap_and_functional_form():
    _, params, state, train, _ = in_case("InstanceNorm2d-tracked")
    x = in_inputs("InstanceNorm2d-tracked")[0]
    (_, (y, new_state)), _ = train(params, state, x, np.ones_like(x))
    # vmap over the batch axis of unbatched samples: each sample is normalised alone, so
    # the vmapped unbatched layer equals the batched one (same float32 ops: ~1 rounding)
    stateless = nn.InstanceNorm2d(C, affine=True)
    per_sample = jax.vmap(lambda xi: stateless.apply(params, {}, xi)[0])
    np.testing.assert_allclose(per_sample(x), y, rtol=1e-6, atol=1e-6)
    fy, fmean, fvar = F.instance_norm(
        x, state["running_mean"], state["running_var"], params["weight"], params["bias"]
    )
    # the same float32 operations: identical up to XLA's fusion (~1 rounding)
    np.testing.assert_allclose(fy, y, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fmean, new_state["running_mean"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(fvar, new_state["running_var"], rtol=1e-6)
    fy, m, v = F.instance_norm(x, fmean, fvar, use_input_stats=False)
    assert m is fmean and v is fvar
    want = (np.asarray(x, np.float64) - np.asarray(fmean)) / np.sqrt(np.asarray(fvar) + 1e-5)
    np.testing.assert_allclose(fy, want, rtol=1e-5, atol=1e-5)  # running stats normalise


def test_instance_norm_bfloat16_in_bfloat16_out_with_float32_statistics():
    x = jnp.asarray(
        100.0 + np_normal(60, (2, 8, C)), jnp.bfloat16
    )  # bf16 sums of these lose digits
    y, _ = nn.InstanceNorm1d(C).apply({}, {}, x)
    assert y.dtype == jnp.bfloat16
    want = np_normalize(np.asarray(x, np.float64), (1,), 1e-5)
    # the exact output of the bfloat16 input rounded to bfloat16 (2^-9 relative, |y| < 3):
    # float32 statistics add ~1e-6; bfloat16 statistics would be off by ~0.1
    np.testing.assert_allclose(np.asarray(y, np.float32), want, rtol=0, atol=1.5e-2)


# ------------------------------------------------------------------ LocalResponseNorm
def np_local_response_norm(x, size, alpha, beta, k):
    """PyTorch's definition, channel by channel: the window [c - size//2, c + (size-1)//2]
    clipped to the channels, its sum of squares always divided by size."""
    x = np.asarray(x, np.float64)
    channels = x.shape[-1]
    div = np.empty_like(x)
    for c in range(channels):
        lo, hi = max(0, c - size // 2), min(channels, c + (size - 1) // 2 + 1)
        div[..., c] = (x[..., lo:hi] ** 2).sum(axis=-1) / size
    return x / (k + alpha * div) ** beta


LRN_CASES = [  # (size, alpha, beta, k, input shape): even, odd and wider-than-C windows
    (2, 0.5, 0.75, 1.0, (2, 3, 4, 5)),
    (3, 1.0, 0.5, 2.0, (1, 2, 2, 2, 5)),
    (7, 0.3, 1.5, 0.5, (2, 3, 5)),
]


@functools.cache
def lrn_case(i):
    """(layer, x, r, jitted value_and_grad of sum(y·r) w.r.t. x with y as aux)."""
    size, alpha, beta, k, shape = LRN_CASES[i]
    layer = nn.LocalResponseNorm(size, alpha, beta, k)
    x, r = 1.5 * np_normal(70 + i, shape), np_normal(90 + i, shape)

    def loss(x):
        y = layer.apply({}, {}, x)[0]
        return jnp.sum(y * r), y

    return layer, x, r, jax.jit(jax.value_and_grad(loss, has_aux=True))


@pytest.mark.parametrize("i", range(len(LRN_CASES)))
def test_local_response_norm_matches_numpy(i):
    layer, x, _, fn = lrn_case(i)
    (_, y), _ = fn(x)
    assert y.shape == x.shape and y.dtype == jnp.float32
    want = np_local_response_norm(x, layer.size, layer.alpha, layer.beta, layer.k)
    # a window sum of <= 7 squares, then a power and a division: a few U32 relative
    np.testing.assert_allclose(y, want, rtol=1e-5)


def test_local_response_norm_grads_vmap_and_functional_form():
    size, alpha, beta, k, shape = LRN_CASES[0]
    f = jax.jit(lambda x: nn.LocalResponseNorm(size, alpha, beta, k).apply({}, {}, x)[0])
    check_grads_float64(f, (np_normal(80, shape),))
    xs = np_normal(81, (3, *shape))
    batched = jax.vmap(f)(xs)  # vmap over an extra leading axis
    np.testing.assert_allclose(batched[1], f(xs[1]), rtol=1e-6)
    # eager against jitted: the same float32 ops, fused or not (~1 rounding apart)
    np.testing.assert_allclose(
        F.local_response_norm(xs[1], size, alpha, beta, k), f(xs[1]), rtol=1e-6
    )


@pytest.mark.torch
@pytest.mark.parametrize("i", range(len(LRN_CASES)))
def test_local_response_norm_matches_torch(i):
    torch = pytest.importorskip("torch")
    layer, x, r, fn = lrn_case(i)
    (_, y), gx = fn(x)
    to = lambda a: torch.tensor(np.ascontiguousarray(np.moveaxis(a, -1, 1)))
    tx = to(x).requires_grad_()
    ty = torch.nn.LocalResponseNorm(layer.size, layer.alpha, layer.beta, layer.k)(tx)
    (ty * to(r)).sum().backward()
    # two float32 computations of a short window sum and a power: a few U32 apart
    np.testing.assert_allclose(y, np.moveaxis(ty.detach().numpy(), 1, -1), rtol=1e-5)
    np.testing.assert_allclose(gx, np.moveaxis(tx.grad.numpy(), 1, -1), rtol=1e-4, atol=1e-6)


def test_local_response_norm_bfloat16_computes_in_float32():
    x = jnp.asarray(30.0 * np_normal(95, (2, 3, 5)), jnp.bfloat16)  # squares ~1e3
    y = nn.LocalResponseNorm(3, alpha=0.1).apply({}, {}, x)[0]
    assert y.dtype == jnp.bfloat16
    want = np_local_response_norm(np.asarray(x, np.float64), 3, 0.1, 0.75, 1)
    # one bfloat16 rounding of the output (at most 2^-8 = 3.9e-3 relative); float32 inside
    # adds ~1e-6 (computed in bfloat16 throughout, this input is 7.8e-3 off)
    np.testing.assert_allclose(np.asarray(y, np.float32), want, rtol=4e-3)


# ------------------------------------------------------------- jit, promotion, errors
class JitTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_same_result_with_and_without_jit(self):
        # In float64: fused or op by op, XLA may sum the statistics in other orders, in
        # float32 up to ~5e-6 apart in the worst case (1e-7 measured against the 1e-6
        # bound); float64's ~1e-15 is 1000x inside 1e-12 whatever the CPU.
        with jax.enable_x64(True):
            for name in ("LayerNorm-2d", "GroupNorm", "RMSNorm"):
                module, params, x, _, fn = norm_case(name)
                params, x = to_float64((params, x))
                (_, want), _ = fn(params, x)
                y = self.variant(lambda params, x, m=module: m.apply(params, {}, x)[0])(params, x)
                assert y.dtype == want.dtype == jnp.float64
                np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
            module, params, state, train, _ = bn_case("BatchNorm2d", None)
            params, state, x = to_float64((params, state, bn_inputs("BatchNorm2d")[0]))
            (_, (want, want_state)), _ = train(params, state, x, jnp.ones_like(x))
            apply = self.variant(lambda p, s, x: module.apply(p, s, x, train=True))
            y, new_state = apply(params, state, x)
        assert y.dtype == want.dtype == new_state["running_var"].dtype == jnp.float64
        np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
        chex.assert_trees_all_close(new_state, want_state, rtol=1e-12)


ALL = {
    **{name: (make, shape, False) for name, (make, shape) in CASES.items()},
    "BatchNorm1d": (lambda: nn.BatchNorm1d(C, momentum=None), (4, 5, C), True),
    "BatchNorm2d-eval": (lambda: nn.BatchNorm2d(C), (2, 3, 3, C), False),
    "InstanceNorm2d-tracked": (
        lambda: nn.InstanceNorm2d(C, affine=True, track_running_stats=True),
        (2, 3, 3, C),
        True,
    ),
    "InstanceNorm1d-unbatched": (lambda: nn.InstanceNorm1d(C), (5, C), False),
    "LocalResponseNorm": (lambda: nn.LocalResponseNorm(3), (2, 3, C), False),
}


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("name", ALL)
def test_strict_dtype_and_rank_promotion(name, dtype):
    make, shape, train = ALL[name]
    module = make()
    params, state = module.init(jax.random.key(0))
    x = jax.ShapeDtypeStruct(shape, dtype)
    with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
        y, new_state = jax.eval_shape(lambda x: module.apply(params, state, x, train=train), x)
    assert (y.shape, y.dtype) == (shape, dtype)
    assert jax.tree.map(lambda a: a.dtype, new_state) == jax.tree.map(lambda a: a.dtype, state)


class Wrap(nn.Module):
    """Puts a layer at path ``model.inner`` so messages show a nested path."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, ctx, x):
        return self.inner(ctx, x)


def bad(layer, shape, message, dtype="float32", train=False):
    return pytest.param(layer, shape, dtype, train, message, id=type(layer).__name__)


ERRORS = [
    bad(nn.BatchNorm1d(3), (4, 5), "expected input with last dimension 3, got shape (4, 5)"),
    bad(nn.BatchNorm1d(3), (2, 2, 2, 3), "expected 2 or 3-D input (N, C) or (N, L, C), got"),
    bad(nn.BatchNorm2d(3), (4, 3), "expected 4-D input (N, H, W, C), got shape (4, 3)"),
    bad(nn.BatchNorm2d(3), (2, 2, 2, 3), "expected floating input, got dtype int32", "int32"),
    bad(
        nn.BatchNorm1d(3),
        (1, 3),
        "expected more than 1 value per channel when training, got input shape (1, 3)",
        train=True,
    ),
    bad(nn.BatchNorm1d(3, track_running_stats=False), (1, 3), "expected more than 1 value"),
    bad(nn.LayerNorm((3, 4)), (2, 4, 3), "expected input with trailing dimensions (3, 4), got"),
    bad(nn.LayerNorm(4), (), "expected input with trailing dimensions (4,), got shape ()"),
    bad(nn.GroupNorm(2, 4), (2, 3, 6), "expected input with last dimension 4, got shape (2, 3, 6)"),
    bad(nn.GroupNorm(2, 4), (4,), "expected input (N, *, C) with at least 2 dimensions, got"),
    bad(nn.RMSNorm(4), (2, 5), "expected input with trailing dimensions (4,), got shape (2, 5)"),
    bad(nn.RMSNorm(4), (2, 4), "expected floating input, got dtype int32", "int32"),
    bad(
        nn.InstanceNorm1d(3), (2, 5, 4), "expected input with last dimension 3, got shape (2, 5, 4)"
    ),
    bad(nn.InstanceNorm2d(3), (2, 3), "expected 3 or 4-D input (N, H, W, C) or (H, W, C), got"),
    bad(nn.InstanceNorm3d(3), (2, 2, 2, 3), "expected floating input, got dtype int32", "int32"),
    bad(nn.InstanceNorm1d(3), (2, 1, 3), "expected more than 1 spatial element when training, got"),
    bad(
        nn.InstanceNorm2d(3, track_running_stats=True),
        (1, 1, 3),
        "expected more than 1 spatial element when training, got input shape (1, 1, 3)",
        train=True,
    ),
    bad(
        nn.LocalResponseNorm(2), (4, 3), "expected input (N, *, C) with at least 3 dimensions, got"
    ),
    bad(nn.LocalResponseNorm(2), (2, 4, 3), "expected floating input, got dtype int32", "int32"),
]


@pytest.mark.parametrize("layer, shape, dtype, train, message", ERRORS)
def test_shape_errors_name_the_layer(layer, shape, dtype, train, message):
    model = Wrap(layer)
    params, state = model.init(jax.random.key(0))
    expected = f"model.inner ({type(layer).__name__}): {message}"
    with pytest.raises(ShapeError, match=re.escape(expected)):
        model.apply(params, state, jnp.zeros(shape, dtype), train=train)


@pytest.mark.parametrize(
    "layer, shape, hint",
    [
        (nn.BatchNorm2d(3), (8, 3, 5, 5), "(NHWC) and this looks like NCHW: pass x.transpose(0, 2, 3, 1)"),
        (nn.BatchNorm1d(4), (8, 4, 10), "(NLC) and this looks like NCL: pass x.transpose(0, 2, 1)"),
        (nn.GroupNorm(2, 4), (8, 4, 5, 5), "(NHWC) and this looks like NCHW: pass x.transpose(0, 2, 3, 1)"),
        (nn.BatchNorm1d(4), (4, 10), None),  # (N, C) has no channels-first form
        (nn.BatchNorm2d(3), (8, 5, 5, 2), None),
        (nn.InstanceNorm2d(3), (8, 3, 5, 5), "(NHWC) and this looks like NCHW: pass x.transpose(0, 2, 3, 1)"),
        (nn.InstanceNorm1d(4), (4, 10), "(LC) and this looks like CL: pass x.transpose(1, 0)"),
        (nn.InstanceNorm3d(2), (2, 4, 4, 4, 3), None),
    ],
    ids=[
        "BatchNorm2d-NCHW", "BatchNorm1d-NCL", "GroupNorm-NCHW", "BatchNorm1d-NC", "BatchNorm2d-NHWC",
        "InstanceNorm2d-NCHW", "InstanceNorm1d-unbatched-CL", "InstanceNorm3d-NDHWC",
    ],
)  # fmt: skip
def test_channels_first_images_get_the_transpose_to_write(layer, shape, hint):
    model = Wrap(layer)
    params, state = model.init(jax.random.key(0))
    size = getattr(layer, "num_features", None) or layer.num_channels
    message = f"expected input with last dimension {size}, got shape {shape}"
    message += f"; funcnet is channels-last {hint}" if hint else ""
    with pytest.raises(ShapeError, match=re.escape(message) + "(\n|$)"):
        model.apply(params, state, jnp.zeros(shape))


def test_missing_state_is_reported_with_the_layer_path():
    model = Wrap(nn.BatchNorm1d(3))
    params, _ = model.init(jax.random.key(0))
    expected = "model.inner (BatchNorm1d): no state entry 'running_mean'"
    with pytest.raises(ShapeError, match=re.escape(expected)):
        model.apply(params, {}, jnp.zeros((4, 3)))


def test_constructor_errors():
    expected = "GroupNorm: num_channels (6) must be divisible by num_groups (4)"
    with pytest.raises(ValueError, match=re.escape(expected)):
        nn.GroupNorm(4, 6)
    with pytest.raises(ValueError, match=r"LayerNorm: normalized_shape must be"):
        nn.LayerNorm(())
    with pytest.raises(ValueError, match=r"RMSNorm: normalized_shape must be"):
        nn.RMSNorm((4, 0))
    expected = "group_norm: expected input (N, *, C) with C divisible by num_groups=2"
    with pytest.raises(ShapeError, match=re.escape(expected)):
        F.group_norm(jnp.zeros((2, 5)), 2)
    with pytest.raises(ValueError, match=re.escape("LocalResponseNorm: size must be a positive")):
        nn.LocalResponseNorm(0)
    expected = "local_response_norm: expected input (N, *, C) with at least 3 dimensions, got"
    with pytest.raises(ShapeError, match=re.escape(expected)):
        F.local_response_norm(jnp.zeros((2, 5)), 2)
    with pytest.raises(ValueError, match="instance_norm: pass both running_mean and running_var"):
        F.instance_norm(jnp.zeros((2, 3, 4)), jnp.zeros(4))
    with pytest.raises(ValueError, match="instance_norm: use_input_stats=False needs running"):
        F.instance_norm(jnp.zeros((2, 3, 4)), use_input_stats=False)
    expected = "instance_norm: expected input (N, *spatial, C) with at least 3 dimensions, got"
    with pytest.raises(ShapeError, match=re.escape(expected)):
        F.instance_norm(jnp.zeros((2, 4)))
    expected = "instance_norm: expected more than 1 spatial element when training, got input"
    with pytest.raises(ShapeError, match=re.escape(expected)):
        F.instance_norm(jnp.zeros((2, 1, 1, 4)))


def test_docstring_examples_run():
    import funcnet.nn._normalization as layers

    result = doctest.testmod(layers)
    assert result.attempted > 0 and result.failed == 0
