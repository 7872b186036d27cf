"""Max, average and adaptive pooling layers and their functional forms.

References: pooling written as loops over output windows in NumPy (here), and PyTorch.
Max-pooling inputs are small integers, so windows are full of ties: the gradient must go
to the first maximal element in row-major window order, as in PyTorch, on both the
reshape fast path and the ``lax.reduce_window`` path.
"""

import doctest
import functools
import itertools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import funcnet.functional._pooling as pooling
from funcnet import functional as F
from funcnet import nn
from funcnet.errors import ShapeError
from tests._numerics import U32, check_grads_float64, to_float64

RNG = np.random.default_rng(0)


def ties(*shape):
    """Small integers as float32: most windows hold several equal maxima."""
    return RNG.integers(0, 3, shape).astype(np.float32)


def normal(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def as_tuple(v, nd):
    return (v,) * nd if isinstance(v, int) else tuple(v)


# ---------------------------------------------------------------------- references


def ref_pool(
    x, ct, mode, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
    count_include_pad=True, divisor_override=None,
):  # fmt: skip
    """PyTorch's pooling by loops over output windows; returns (y, dL/dx for cotangent ct).

    For max, the gradient goes to the first maximal element in row-major window order.
    """
    x, ct = np.asarray(x, np.float64), None if ct is None else np.asarray(ct, np.float64)
    nd = x.ndim - 2
    k = as_tuple(kernel_size, nd)
    s = k if stride is None else as_tuple(stride, nd)
    p, d = as_tuple(padding, nd), as_tuple(dilation, nd)
    spatial = x.shape[1:-1]
    outs = []
    for n, ki, si, pi, di in zip(spatial, k, s, p, d):
        span = di * (ki - 1) + 1
        o = (n + 2 * pi - span + (si - 1 if ceil_mode else 0)) // si + 1
        outs.append(o - 1 if ceil_mode and (o - 1) * si >= n + pi else o)
    y = np.zeros((x.shape[0], *outs, x.shape[-1]))
    grad = np.zeros(x.shape)
    for o in np.ndindex(*outs):
        start = [oi * si - pi for oi, si, pi in zip(o, s, p)]
        inside = [
            tuple(a + j * di for a, j, di in zip(start, offset, d))
            for offset in np.ndindex(*k)  # row-major order
        ]
        inside = [i for i in inside if all(0 <= a < n for a, n in zip(i, spatial))]
        out_at = (slice(None), *o, slice(None))
        if mode == "max":
            best = np.full((x.shape[0], x.shape[-1]), -np.inf)
            arg = np.zeros(best.shape, int)
            for j, i in enumerate(inside):
                value = x[(slice(None), *i, slice(None))]
                better = value > best  # strict: the first maximum stays
                best, arg = np.where(better, value, best), np.where(better, j, arg)
            y[out_at] = best
            for j, i in enumerate(inside if ct is not None else ()):
                grad[(slice(None), *i, slice(None))] += np.where(arg == j, ct[out_at], 0)
        else:
            if divisor_override:
                divisor = divisor_override
            elif count_include_pad:
                ends = [min(a + ki, n + pi) for a, ki, n, pi in zip(start, k, spatial, p)]
                divisor = math.prod(e - a for a, e in zip(start, ends))
            else:
                divisor = len(inside)
            for i in inside:
                y[out_at] += x[(slice(None), *i, slice(None))] / divisor
                if ct is not None:
                    grad[(slice(None), *i, slice(None))] += ct[out_at] / divisor
    return y, grad


def ref_adaptive(x, ct, mode, output_size):
    """PyTorch's adaptive bins [floor(i·n/o), ceil((i+1)·n/o)) by loops; (y, dL/dx)."""
    x, ct = np.asarray(x, np.float64), None if ct is None else np.asarray(ct, np.float64)
    spatial = x.shape[1:-1]
    sizes = as_tuple(output_size, len(spatial))
    outs = [n if o is None else o for o, n in zip(sizes, spatial)]
    y = np.zeros((x.shape[0], *outs, x.shape[-1]))
    grad = np.zeros(x.shape)
    for o in np.ndindex(*outs):
        box = [
            range(math.floor(i * n / m), math.ceil((i + 1) * n / m))
            for i, n, m in zip(o, spatial, outs)
        ]
        cells = list(itertools.product(*box))  # row-major
        at = [(slice(None), *c, slice(None)) for c in cells]
        out_at = (slice(None), *o, slice(None))
        window = np.stack([x[a] for a in at])  # (cells, N, C)
        if mode == "max":
            arg = np.argmax(window, axis=0)  # the first maximum
            y[out_at] = window.max(axis=0)
            for j, a in enumerate(at if ct is not None else ()):
                grad[a] += np.where(arg == j, ct[out_at], 0)
        else:
            y[out_at] = window.mean(axis=0)
            for a in at if ct is not None else ():
                grad[a] += ct[out_at] / len(cells)
    return y, grad


def rounding_bounds(ref, x, ct, mode, *args, n, **kwargs):
    """Worst-case errors of float32 pooling and its gradient, in any summation order: sums
    of at most ``n`` terms (a window's, or the windows that hold an element), each term or
    the sum divided once, are within (n + 1)·U32 of the largest sum of |terms|
    (tests/_numerics.py). Max pooling's values are exact; its gradient sums |ct|."""
    mags = ref(np.abs(x) if mode == "avg" else x, np.abs(ct), mode, *args, **kwargs)
    return tuple((n + 1) * U32 * float(m.max(initial=0.0)) for m in mags)


def value_and_grad(f, x, ct):
    """One jitted program: f(x) and the gradient of <f(x), ct>."""

    @jax.jit
    def run(x, ct):
        y, vjp = jax.vjp(f, x)
        return y, vjp(ct)[0]

    return run(x, ct)


def path(f, x):
    """Which implementation the gradient of ``f`` at ``x`` went through."""
    jaxpr = jax.make_jaxpr(jax.grad(lambda x: f(x).sum()))(x).jaxpr
    names = {eqn.primitive.name for eqn in jaxpr.eqns}
    if any(name.startswith("reduce_window") for name in names):
        return "reduce_window"
    return "slices" if names & {"stack", "concatenate"} else "reshape"


# ---------------------------------------------------------------------- max / avg

MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}

# (spatial, kwargs, path: "reshape", "reduce_window" or "slices")
MAX_CASES = [
    ((6, 6), {"kernel_size": 2}, "reshape"),
    ((7, 5), {"kernel_size": 2}, "reshape"),  # floor mode drops the last row/column
    ((7, 5), {"kernel_size": 2, "ceil_mode": True}, "reshape"),
    ((7, 6), {"kernel_size": 3, "stride": 3, "padding": 1, "ceil_mode": True}, "reshape"),
    ((7, 6), {"kernel_size": 3, "stride": 2, "padding": 1}, "reduce_window"),
    ((7, 7), {"kernel_size": (2, 3), "stride": 1, "dilation": (2, 1), "ceil_mode": True}, "slices"),
    ((9,), {"kernel_size": 2}, "reshape"),
    ((9,), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}, "reduce_window"),
    ((9,), {"kernel_size": 2, "stride": 2, "dilation": 3}, "slices"),
    ((4, 5, 6), {"kernel_size": 2}, "reshape"),  # floor mode drops the last H row
    (
        (5, 4, 5),
        {"kernel_size": (3, 2, 3), "stride": 2, "padding": 1, "ceil_mode": True},
        "reduce_window",
    ),
    ((5, 5, 4), {"kernel_size": 2, "stride": (1, 2, 1), "dilation": (2, 1, 1)}, "slices"),
]


def _case_id(spatial, kwargs):
    return f"{len(spatial)}d-" + "-".join(f"{k[0]}{v}" for k, v in kwargs.items())


@pytest.mark.parametrize("case", MAX_CASES, ids=lambda c: _case_id(*c[:2]))
def test_max_pool_matches_loops_with_ties(case):
    spatial, kwargs, expected_path = case
    x = ties(2, *spatial, 3)
    pool = functools.partial(MAX[len(spatial)], **kwargs)
    ct = normal(*jax.eval_shape(pool, x).shape)
    want, want_grad = ref_pool(x, ct, "max", **kwargs)
    y, grad = value_and_grad(pool, x, ct)
    np.testing.assert_array_equal(y, want)
    # float32 sums of the ct of the windows sharing a maximum: rtol=1e-6 of a cancelling
    # sum held by luck on one CPU's order; the worst case in any order holds on all
    n = math.prod(as_tuple(kwargs["kernel_size"], len(spatial)))
    _, bound = rounding_bounds(ref_pool, x, ct, "max", n=n, **kwargs)
    np.testing.assert_allclose(grad, want_grad, rtol=0, atol=bound)
    assert path(pool, x) == expected_path


@pytest.mark.parametrize(
    "case", [c for c in MAX_CASES if c[2] == "reshape"][:4], ids=lambda c: _case_id(*c[:2])
)
def test_fast_path_equals_reduce_window(case, monkeypatch):
    spatial, kwargs, _ = case
    x = ties(2, *spatial, 3)
    pool = functools.partial(MAX[len(spatial)], **kwargs)
    ct = normal(*jax.eval_shape(pool, x).shape)
    fast = value_and_grad(pool, x, ct)
    monkeypatch.setattr(pooling, "_non_overlapping", lambda *args: False)
    assert path(pool, x) == "reduce_window"
    general = value_and_grad(pool, x, ct)
    np.testing.assert_array_equal(fast[0], general[0])
    np.testing.assert_array_equal(fast[1], general[1])


def test_max_pool_nan_is_the_maximum_and_gets_the_gradient():
    """As PyTorch: a NaN in a window makes the output NaN and takes the window's gradient
    (the fast path's mask treats NaN as maximal)."""
    x = np.arange(16.0, dtype=np.float32).reshape(1, 4, 4, 1)
    x[0, 1, 0, 0] = np.nan  # window (0, 0), not its largest position
    y, vjp = jax.vjp(lambda v: F.max_pool2d(v, 2), jnp.asarray(x))
    (grad,) = vjp(jnp.ones_like(y))
    assert np.isnan(y[0, 0, 0, 0]) and not np.isnan(y[0, 1, 1, 0])
    want = np.zeros_like(x)
    want[0, 1, 0, 0] = 1.0  # the NaN, not 5.0 at [1, 1]
    for i, j in [(1, 3), (3, 1), (3, 3)]:
        want[0, i, j, 0] = 1.0
    np.testing.assert_array_equal(grad, want)


AVG_CASES = [
    ((6, 6), {"kernel_size": 2}, True),
    ((7, 5), {"kernel_size": 2, "padding": 1, "ceil_mode": True}, True),
    ((7, 6), {"kernel_size": 3, "stride": 3, "padding": 1, "count_include_pad": False}, True),
    ((7, 6), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}, False),
    ((7, 6), {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}, False),
    ((6, 7), {"kernel_size": (2, 3), "stride": (1, 2), "divisor_override": 4}, False),
    ((9,), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}, False),
    ((9,), {"kernel_size": 2, "count_include_pad": False}, True),
    ((4, 5, 3), {"kernel_size": (2, 3, 1), "divisor_override": 5}, True),
    ((5, 4, 5), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}, False),
    (
        (5, 6, 5),
        {
            "kernel_size": (3, 2, 3),
            "stride": (2, 2, 3),
            "padding": (1, 0, 1),
            "ceil_mode": True,
            "count_include_pad": False,
        },
        False,
    ),
]


@pytest.mark.parametrize("case", AVG_CASES, ids=lambda c: _case_id(*c[:2]))
def test_avg_pool_matches_loops(case):
    spatial, kwargs, fast = case
    x = normal(2, *spatial, 3)
    pool = functools.partial(AVG[len(spatial)], **kwargs)
    ct = normal(*jax.eval_shape(pool, x).shape)
    want, want_grad = ref_pool(x, ct, "avg", **kwargs)
    y, grad = value_and_grad(pool, x, ct)
    # float32 window sums: within the worst case in any order (rtol=1e-5, atol=1e-6 was
    # not, for windows that cancel)
    n = math.prod(as_tuple(kwargs["kernel_size"], len(spatial)))
    y_bound, grad_bound = rounding_bounds(ref_pool, x, ct, "avg", n=n, **kwargs)
    np.testing.assert_allclose(y, want, rtol=0, atol=y_bound)
    np.testing.assert_allclose(grad, want_grad, rtol=0, atol=grad_bound)
    assert path(pool, x) == ("reshape" if fast else "reduce_window")


ADAPTIVE_SIZES = [(3, 4), (2, 3), (None, 4), (5, 9), 1]  # input spatial (7, 6)


@pytest.mark.parametrize("output_size", ADAPTIVE_SIZES, ids=str)
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_adaptive_pool_matches_loops(mode, output_size):
    x = ties(2, 7, 6, 3) if mode == "max" else normal(2, 7, 6, 3)
    pool = functools.partial(
        F.adaptive_max_pool2d if mode == "max" else F.adaptive_avg_pool2d,
        output_size=output_size,
    )
    ct = normal(*jax.eval_shape(pool, x).shape)
    want, want_grad = ref_adaptive(x, ct, mode, output_size)
    y, grad = value_and_grad(pool, x, ct)
    # float32 bin sums (at most the 42 cells) and gradient sums: the worst case, any order
    y_bound, grad_bound = rounding_bounds(ref_adaptive, x, ct, mode, output_size, n=7 * 6)
    np.testing.assert_allclose(y, want, rtol=0, atol=y_bound)
    np.testing.assert_allclose(grad, want_grad, rtol=0, atol=grad_bound)


# (input spatial, output_size): sizes that divide, that do not, larger outputs, None
ADAPTIVE_ND_CASES = [
    ((7,), 3),
    ((5,), (None,)),
    ((5,), 8),
    ((5, 4, 6), (2, 3, 4)),
    ((4, 4, 6), (None, 2, 3)),
    ((3, 2, 4), (4, 3, 5)),
]


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_adaptive_pool_1d_3d_matches_loops(mode):
    functions = {
        "max": {1: F.adaptive_max_pool1d, 3: F.adaptive_max_pool3d},
        "avg": {1: F.adaptive_avg_pool1d, 3: F.adaptive_avg_pool3d},
    }[mode]
    pools = [
        functools.partial(functions[len(spatial)], output_size=output_size)
        for spatial, output_size in ADAPTIVE_ND_CASES
    ]
    xs = [(ties if mode == "max" else normal)(2, *c[0], 3) for c in ADAPTIVE_ND_CASES]
    cts = [normal(*jax.eval_shape(pool, x).shape) for pool, x in zip(pools, xs)]
    # one program for all cases (compiling each alone would dominate the test's time)
    outs, grads = value_and_grad(lambda xs: [f(x) for f, x in zip(pools, xs)], xs, cts)
    for (spatial, output_size), x, ct, y, grad in zip(ADAPTIVE_ND_CASES, xs, cts, outs, grads):
        want, want_grad = ref_adaptive(x, ct, mode, output_size)
        assert y.shape == want.shape, (spatial, output_size)
        # float32 bin sums and gradient sums of at most prod(spatial) terms, any order
        n = math.prod(spatial)
        y_bound, grad_bound = rounding_bounds(ref_adaptive, x, ct, mode, output_size, n=n)
        np.testing.assert_allclose(y, want, rtol=0, atol=y_bound, err_msg=str(output_size))
        np.testing.assert_allclose(grad, want_grad, rtol=0, atol=grad_bound)


def test_gradients_float64():
    with jax.enable_x64(True):
        x = RNG.standard_normal((1, 7, 6, 2))  # distinct values: max is differentiable
        for f in [
            lambda x: F.max_pool2d(x, 2, ceil_mode=True),
            lambda x: F.max_pool2d(x, 3, 2, padding=1),
            lambda x: F.avg_pool2d(x, 3, 2, padding=1, ceil_mode=True, count_include_pad=False),
            lambda x: F.adaptive_max_pool2d(x, (3, 4)),
            lambda x: F.adaptive_avg_pool2d(x, (4, 4)),
        ]:
            check_grads(jax.jit(f), (x,), order=1, modes=("rev",))


def test_1d_3d_gradients_float64():
    def pools(x3, x1):  # one program: every new function (2-D tests cover each code path)
        return (
            F.max_pool3d(x3, 2, ceil_mode=True),
            F.avg_pool3d(x3, 3, 2, 1, ceil_mode=True, count_include_pad=False),
            F.adaptive_max_pool3d(x3, (3, 2, 4)),
            F.adaptive_avg_pool3d(x3, (2, None, 3)),
            F.adaptive_max_pool1d(x1, 3),
            F.adaptive_avg_pool1d(x1, 4),
        )

    # distinct values: max is differentiable
    x3, x1 = RNG.standard_normal((1, 5, 4, 5, 2)), RNG.standard_normal((2, 7, 3))
    check_grads_float64(jax.jit(pools), (x3, x1))


def test_fast_path_gradient_has_no_select_and_scatter():
    x = jnp.zeros((2, 8, 8, 3))
    for layer in (nn.MaxPool2d(2), nn.AvgPool2d(2), nn.AdaptiveMaxPool2d(4)):
        loss = functools.partial(lambda layer, x: layer.apply({}, {}, x)[0].sum(), layer)
        jaxpr = str(jax.make_jaxpr(jax.grad(loss))(x))
        assert "select_and_scatter" not in jaxpr and "reduce_window" not in jaxpr


def test_integer_max_pool():
    x = RNG.integers(-5, 5, (1, 5, 5, 2)).astype(np.int32)
    for kwargs in ({"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1}):
        y = F.max_pool2d(x, **kwargs)
        assert y.dtype == jnp.int32
        np.testing.assert_array_equal(y, ref_pool(x, None, "max", **kwargs)[0])


# ------------------------------------------------------------------------ layers


class TestJit(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_max_pool2d(self):
        model = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        x = ties(2, 6, 5, 3)
        y, state = self.variant(lambda x: model.apply({}, {}, x))(x)
        assert state == {}
        want, _ = ref_pool(x, None, "max", 3, 2, 1, ceil_mode=True)
        np.testing.assert_array_equal(y, want)

    @chex.variants(with_jit=True, without_jit=True)
    def test_avg_pool2d(self):
        model = nn.AvgPool2d(2, padding=1, ceil_mode=True, count_include_pad=False)
        x = normal(2, 5, 5, 3)
        y, _ = self.variant(lambda x: model.apply({}, {}, x))(x)
        want, _ = ref_pool(x, None, "avg", 2, padding=1, ceil_mode=True, count_include_pad=False)
        # float32 sums of <= 4 terms, order varies: the worst case (5 U32 * 4 max|x| / 4)
        np.testing.assert_allclose(y, want, rtol=0, atol=5 * U32 * np.abs(x).max())

    @chex.variants(with_jit=True, without_jit=True)
    def test_adaptive_max_pool2d(self):
        x = ties(2, 7, 6, 3)
        y, _ = self.variant(lambda x: nn.AdaptiveMaxPool2d((3, 4)).apply({}, {}, x))(x)
        np.testing.assert_array_equal(y, ref_adaptive(x, None, "max", (3, 4))[0])


def test_unbatched_input_and_vmap():
    layers = [nn.MaxPool2d(2), nn.AvgPool2d(3, 2, 1), nn.AdaptiveAvgPool2d((2, 3))]
    x = normal(3, 6, 7, 2)

    @jax.jit
    def run(x):
        out = []
        for layer in layers:
            one = lambda image, layer=layer: layer.apply({}, {}, image)[0]  # (H, W, C)
            out.append((layer.apply({}, {}, x)[0], jax.vmap(one)(x), one(x[2])))
        return out

    # float64: XLA may order a window's sum differently in each program; in float32 that
    # is up to ~20 U32 max|x| ~ 4e-6 apart in the worst case, float64's ~1e-15
    with jax.enable_x64(True):
        outs = run(x.astype(np.float64))
    for batched, mapped, single in outs:
        assert batched.dtype == np.float64
        np.testing.assert_allclose(mapped, batched, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(single, batched[2], rtol=1e-12, atol=1e-12)
    y, _ = nn.MaxPool1d(2).apply({}, {}, x[0, 0])  # (L, C)
    assert y.shape == (3, 2)


def test_1d_3d_layers_jit_vmap_unbatched():
    cases = [
        (nn.MaxPool3d(2), 0, (2, 2, 3)),
        (nn.AvgPool3d(3, 2, 1), 0, (2, 3, 3)),
        (nn.AdaptiveAvgPool3d((2, None, 3)), 0, (2, 5, 3)),
        (nn.AdaptiveMaxPool1d(3), 1, (3,)),
    ]
    inputs = [normal(3, 4, 5, 6, 2), normal(3, 7, 2)]

    @jax.jit
    def run(inputs):
        out = []
        for layer, i, _ in cases:
            one = lambda v, layer=layer: layer.apply({}, {}, v)[0]  # (*spatial, C)
            x = inputs[i]
            out.append((layer.apply({}, {}, x)[0], jax.vmap(one)(x), one(x[2])))
        return out

    with jax.enable_x64(True):  # float64: as test_unbatched_input_and_vmap
        outs = run(to_float64(inputs))
    for (layer, _, spatial), (batched, mapped, single) in zip(cases, outs):
        assert batched.shape == (3, *spatial, 2) and batched.dtype == np.float64, layer
        np.testing.assert_allclose(mapped, batched, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(single, batched[2], rtol=1e-12, atol=1e-12)


def test_low_precision_in_same_dtype_out():
    x = normal(2, 6, 6, 3)
    layers = [nn.MaxPool2d(2), nn.AvgPool2d(3, 1, 1), nn.AdaptiveAvgPool2d((4, 4))]

    @jax.jit
    def run(x):
        return [layer.apply({}, {}, x)[0] for layer in layers]

    for y16, y32 in zip(run(x.astype(jnp.bfloat16)), run(x)):
        assert y16.dtype == jnp.bfloat16
        # bfloat16 rounds the inputs and the output by <= 2^-9 relative: with float32
        # accumulation (XLA:CPU's for bfloat16) |y16 - y32| <= 2^-9 (max|x| + |y|) ~ 0.013
        # worst case (|x| < 4, |y| < 3); a bfloat16 accumulation of <= 9 terms would add
        # ~sqrt(9) 2^-9 mean|x| ~ 0.005 typically: inside atol=2e-2 (+ 1e-2 |y|)
        np.testing.assert_allclose(y16.astype(np.float32), y32, atol=2e-2, rtol=1e-2)


def test_repr_shows_pytorch_arguments():
    assert repr(nn.MaxPool2d(2)) == "MaxPool2d(kernel_size=2)"
    assert repr(nn.AvgPool1d(3, 2, 1)) == "AvgPool1d(kernel_size=3, stride=2, padding=1)"
    assert repr(nn.AdaptiveAvgPool2d((3, None))) == "AdaptiveAvgPool2d(output_size=(3, None))"
    assert repr(nn.MaxPool3d(2, ceil_mode=True)) == "MaxPool3d(kernel_size=2, ceil_mode=True)"
    assert repr(nn.AvgPool3d([2, 1, 2], divisor_override=3)) == (
        "AvgPool3d(kernel_size=(2, 1, 2), divisor_override=3)"
    )
    assert repr(nn.AdaptiveMaxPool1d(3)) == "AdaptiveMaxPool1d(output_size=3)"
    assert repr(nn.AdaptiveAvgPool3d([None, 2, 3])) == (
        "AdaptiveAvgPool3d(output_size=(None, 2, 3))"
    )


# ------------------------------------------------------------------------ errors


class Net(nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.pool = layer

    def forward(self, ctx, x):
        return self.pool(ctx, x)


def _error_id(value):
    if isinstance(value, nn.Module):
        return type(value).__name__
    if isinstance(value, tuple):
        return "x".join(map(str, value))
    return value if len(value) < 4 else "msg"  # a dtype, or the expected message


@pytest.mark.parametrize(
    "layer, shape, dtype, match",
    [
        (
            nn.MaxPool2d(3),
            (2, 2, 2, 3),
            "f4",
            r"model\.pool \(MaxPool2d\): window \(3, 3\) \(padding \(0, 0\), dilation \(1, 1\)\) "
            r"is larger than the input's spatial size \(2, 2\); got input shape \(2, 2, 2, 3\)",
        ),
        (nn.MaxPool1d(2, dilation=3), (3, 4), "f4", r"model\.pool \(MaxPool1d\): window \(2,\)"),
        (
            nn.MaxPool2d(2),
            (4, 4),
            "f4",
            r"model\.pool \(MaxPool2d\): expected 4 or 3-D input \(N, H, W, C\) or unbatched",
        ),
        (nn.AvgPool1d(4), (3, 2), "f4", r"model\.pool \(AvgPool1d\): window \(4,\)"),
        (nn.AvgPool2d(2), (1, 4, 4, 1), "i4", r"model\.pool \(AvgPool2d\): expected floating"),
        (nn.AdaptiveAvgPool2d(2), (4, 4), "f4", r"model\.pool \(AdaptiveAvgPool2d\): expected 4"),
        (nn.AdaptiveMaxPool2d(2), (1, 0, 4, 1), "f4", r"model\.pool \(AdaptiveMaxPool2d\): empty"),
        (
            nn.MaxPool3d((2, 3, 2), stride=1),
            (1, 4, 2, 4, 3),
            "f4",
            r"^model\.pool \(MaxPool3d\): window \(2, 3, 2\) \(padding \(0, 0, 0\), dilation "
            r"\(1, 1, 1\)\) is larger than the input's spatial size \(4, 2, 4\); got input shape "
            r"\(1, 4, 2, 4, 3\)",
        ),
        (
            nn.MaxPool3d(2),
            (4, 4, 3),
            "f4",
            r"^model\.pool \(MaxPool3d\): expected 5 or 4-D input \(N, D, H, W, C\) or unbatched "
            r"\(D, H, W, C\), got shape \(4, 4, 3\)",
        ),
        (nn.AvgPool3d(2), (1, 4, 4, 4, 1), "i4", r"^model\.pool \(AvgPool3d\): expected floating"),
        (nn.AvgPool3d(2, padding=1), (1, 4, 4, 4, 1, 1), "f4", r"^model\.pool \(AvgPool3d\): exp"),
        (
            nn.AdaptiveAvgPool1d(2),
            (1, 4, 4, 1),
            "f4",
            r"^model\.pool \(AdaptiveAvgPool1d\): expected 3",
        ),
        (
            nn.AdaptiveAvgPool3d(2),
            (1, 4, 4, 4, 1),
            "i4",
            r"^model\.pool \(AdaptiveAvgPool3d\): expected fl",
        ),
        (
            nn.AdaptiveMaxPool1d(2),
            (1, 0, 2),
            "f4",
            r"^model\.pool \(AdaptiveMaxPool1d\): empty spatial input, got shape \(1, 0, 2\)",
        ),
        (
            nn.AdaptiveMaxPool3d(2),
            (4, 4, 4),
            "f4",
            r"^model\.pool \(AdaptiveMaxPool3d\): expected 5 or 4-D",
        ),
    ],
    ids=_error_id,
)
def test_shape_errors_name_the_layer(layer, shape, dtype, match):
    model = Net(layer)
    with pytest.raises(ShapeError, match=match):
        jax.eval_shape(lambda x: model.apply({}, {}, x), jax.ShapeDtypeStruct(shape, dtype))


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: nn.MaxPool2d(3, padding=2), ValueError, r"MaxPool2d: padding \(2, 2\) must be"),
        (lambda: nn.MaxPool2d(0), ValueError, "MaxPool2d: kernel_size must be an int >= 1"),
        (lambda: nn.AvgPool1d(2, stride=0), ValueError, "AvgPool1d: stride must be"),
        (lambda: nn.AvgPool2d(2, divisor_override=0), ValueError, "divisor_override"),
        (lambda: nn.MaxPool1d(2, return_indices=True), NotImplementedError, "return_indices"),
        (lambda: nn.AdaptiveMaxPool2d(2, True), NotImplementedError, "return_indices"),
        (lambda: nn.AdaptiveAvgPool2d((2, 2, 2)), ValueError, "AdaptiveAvgPool2d: output_size"),
        (lambda: nn.AdaptiveAvgPool2d(0), ValueError, "output_size must be a positive int"),
        (
            lambda: nn.MaxPool3d(2, padding=(0, 2, 0)),
            ValueError,
            r"^MaxPool3d: padding \(0, 2, 0\)",
        ),
        (lambda: nn.MaxPool3d((2, 2)), ValueError, r"^MaxPool3d: kernel_size must be .* of 3"),
        (lambda: nn.MaxPool3d(2, return_indices=True), NotImplementedError, "^MaxPool3d: return"),
        (lambda: nn.AvgPool3d(2, stride=(1, 0, 1)), ValueError, "^AvgPool3d: stride must be"),
        (lambda: nn.AvgPool3d(2, divisor_override=0), ValueError, "^AvgPool3d: divisor_override"),
        (lambda: nn.AdaptiveAvgPool1d(None), ValueError, "^AdaptiveAvgPool1d: output_size"),
        (lambda: nn.AdaptiveAvgPool3d((2, 2)), ValueError, "^AdaptiveAvgPool3d: output_size"),
        (lambda: nn.AdaptiveMaxPool1d(2, True), NotImplementedError, "^AdaptiveMaxPool1d: return"),
        (lambda: nn.AdaptiveMaxPool3d((2, 0, 2)), ValueError, "^AdaptiveMaxPool3d: output_size"),
    ],
)
def test_construction_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_functional_errors_name_the_function():
    with pytest.raises(ShapeError, match=r"^max_pool2d: window \(3, 3\)"):
        F.max_pool2d(jnp.zeros((1, 2, 2, 1)), 3)
    with pytest.raises(ShapeError, match=r"^avg_pool1d: expected 3 or 2-D input"):
        F.avg_pool1d(jnp.zeros((1, 2, 2, 1)), 2)
    with pytest.raises(ValueError, match=r"must be at most half of kernel_size"):
        F.max_pool1d(jnp.zeros((1, 6, 1)), 2, padding=2)
    with pytest.raises(ShapeError, match=r"^max_pool3d: window \(3, 3, 3\)"):
        F.max_pool3d(jnp.zeros((1, 2, 4, 4, 1)), 3)
    with pytest.raises(ShapeError, match=r"^avg_pool3d: expected 5 or 4-D input"):
        F.avg_pool3d(jnp.zeros((4, 4, 1)), 2)
    with pytest.raises(ValueError, match=r"^avg_pool3d: divisor_override must be non-zero"):
        F.avg_pool3d(jnp.zeros((1, 4, 4, 4, 1)), 2, divisor_override=0)
    with pytest.raises(ShapeError, match=r"^adaptive_avg_pool1d: expected floating input"):
        F.adaptive_avg_pool1d(jnp.zeros((1, 4, 1), jnp.int32), 2)
    with pytest.raises(ShapeError, match=r"^adaptive_max_pool3d: empty spatial input"):
        F.adaptive_max_pool3d(jnp.zeros((2, 0, 2, 1)), 2)
    with pytest.raises(NotImplementedError, match=r"^adaptive_max_pool1d: return_indices"):
        F.adaptive_max_pool1d(jnp.zeros((1, 4, 1)), 2, return_indices=True)


def test_docstring_examples():
    result = doctest.testmod(pooling, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted and not result.failed


# ----------------------------------------------------------------------- PyTorch

TORCH_CASES = [
    ("MaxPool1d", (9,), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    ("MaxPool1d", (9,), {"kernel_size": 2}),
    ("MaxPool2d", (7, 6), {"kernel_size": 2, "ceil_mode": True}),
    ("MaxPool2d", (7, 6), {"kernel_size": 3, "stride": 2, "padding": 1, "dilation": 2}),
    ("MaxPool2d", (7, 6), {"kernel_size": (3, 2), "stride": (2, 1), "ceil_mode": True}),
    ("AvgPool1d", (9,), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    ("AvgPool1d", (9,), {"kernel_size": 4, "padding": 2, "count_include_pad": False}),
    ("AvgPool2d", (7, 6), {"kernel_size": 2, "padding": 1, "ceil_mode": True}),
    ("AvgPool2d", (7, 6), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    (
        "AvgPool2d",
        (7, 6),
        {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False},
    ),
    ("AvgPool2d", (7, 6), {"kernel_size": (3, 2), "divisor_override": 5}),
    ("AdaptiveAvgPool2d", (7, 6), {"output_size": (3, 4)}),
    ("AdaptiveAvgPool2d", (7, 6), {"output_size": (5, None)}),
    ("AdaptiveMaxPool2d", (7, 6), {"output_size": (3, 4)}),
    ("AdaptiveMaxPool2d", (7, 6), {"output_size": (4, 9)}),
]
# The 1-D/3-D layers, checked in float64 with gradients and in float32 (below)
NEW_TORCH_CASES = [
    ("MaxPool3d", (5, 4, 6), {"kernel_size": 2, "ceil_mode": True}),
    ("MaxPool3d", (5, 4, 6), {"kernel_size": 2, "padding": 1, "dilation": (1, 1, 2)}),
    ("MaxPool3d", (5, 4, 6), {"kernel_size": (3, 2, 2), "stride": (2, 1, 3), "ceil_mode": True}),
    ("AvgPool3d", (5, 4, 6), {"kernel_size": 2, "padding": 1, "ceil_mode": True}),
    ("AvgPool3d", (5, 4, 6), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    (
        "AvgPool3d",
        (5, 4, 6),
        {"kernel_size": (3, 2, 3), "stride": 2, "padding": 1, "count_include_pad": False},
    ),
    ("AvgPool3d", (5, 4, 6), {"kernel_size": (3, 2, 2), "divisor_override": 5}),
    ("AdaptiveAvgPool1d", (7,), {"output_size": 3}),
    ("AdaptiveAvgPool1d", (5,), {"output_size": 8}),
    ("AdaptiveMaxPool1d", (7,), {"output_size": 3}),
    ("AdaptiveMaxPool1d", (5,), {"output_size": (8,)}),
    ("AdaptiveAvgPool3d", (5, 4, 6), {"output_size": (2, 3, 4)}),
    ("AdaptiveAvgPool3d", (5, 4, 6), {"output_size": (None, 2, 6)}),
    ("AdaptiveMaxPool3d", (5, 4, 6), {"output_size": (3, None, 4)}),
    ("AdaptiveMaxPool3d", (5, 4, 6), {"output_size": (2, 6, 7)}),
]


@pytest.mark.torch
@pytest.mark.parametrize("case", TORCH_CASES, ids=lambda c: f"{c[0]}-{_case_id(*c[1:])}")
def test_matches_pytorch_with_gradients(case):
    torch = pytest.importorskip("torch")
    name, spatial, kwargs = case
    # Both in float64: the definitions' parity (windows, padding, divisors, ties), not two
    # libraries' float32 summation orders (window sums of <= 9 terms: ~1e-6 apart at worst)
    x = (ties if "Max" in name else normal)(2, *spatial, 3).astype(np.float64)
    ours = getattr(nn, name)(**kwargs)
    with jax.enable_x64(True):
        y, grad_fn = jax.vjp(jax.jit(lambda x: ours.apply({}, {}, x)[0]), x)
        ct = RNG.standard_normal(y.shape)
        (grad,) = grad_fn(ct)
    assert y.dtype == grad.dtype == np.float64

    xt = torch.tensor(np.moveaxis(x, -1, 1), requires_grad=True)
    yt = getattr(torch.nn, name)(**kwargs)(xt)
    yt.backward(torch.tensor(np.moveaxis(ct, -1, 1)))
    np.testing.assert_allclose(y, np.moveaxis(yt.detach().numpy(), 1, -1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad, np.moveaxis(xt.grad.numpy(), 1, -1), rtol=1e-12, atol=1e-12)


def _avg_bound(name, spatial, x, kwargs):
    """Worst case of a float32 average pooling in any order: window sums of <=
    prod(kernel) terms, or an adaptive pool's separable sums of <= prod(spatial) terms."""
    if "Adaptive" in name:
        n, mags = math.prod(spatial), ref_adaptive(np.abs(x), None, "avg", kwargs["output_size"])
    else:
        n = math.prod(as_tuple(kwargs["kernel_size"], len(spatial)))
        mags = ref_pool(np.abs(x), None, "avg", **kwargs)
    return (n + 1) * U32 * float(mags[0].max())


@pytest.mark.torch
def test_1d_3d_layers_match_pytorch():
    """Values and gradients in float64 (the definitions' parity, as
    test_matches_pytorch_with_gradients), and values in float32."""
    torch = pytest.importorskip("torch")
    layers = [getattr(nn, name)(**kwargs) for name, _, kwargs in NEW_TORCH_CASES]
    xs = [(ties if "Max" in c[0] else normal)(2, *c[1], 3) for c in NEW_TORCH_CASES]

    @jax.jit
    def run(x64s, cts, x32s):  # one program for every case
        out = []
        for layer, x64, ct, x32 in zip(layers, x64s, cts, x32s):
            y, vjp = jax.vjp(lambda x, layer=layer: layer.apply({}, {}, x)[0], x64)
            out.append((y, vjp(ct)[0], layer.apply({}, {}, x32)[0]))
        return out

    cts = [
        RNG.standard_normal(jax.eval_shape(lambda x, f=layer: f.apply({}, {}, x)[0], x).shape)
        for layer, x in zip(layers, xs)
    ]
    with jax.enable_x64(True):
        x64s = to_float64(xs)
        outs = run(x64s, cts, xs)
    for (name, spatial, kwargs), x, ct, (y, grad, y32) in zip(NEW_TORCH_CASES, xs, cts, outs):
        message = f"{name} {kwargs}"
        assert y.dtype == grad.dtype == np.float64 and y32.dtype == np.float32, message
        xt = torch.tensor(np.moveaxis(x.astype(np.float64), -1, 1), requires_grad=True)
        yt = getattr(torch.nn, name)(**kwargs)(xt)
        yt.backward(torch.tensor(np.moveaxis(ct, -1, 1)))
        want, want_grad = (
            np.moveaxis(yt.detach().numpy(), 1, -1),
            np.moveaxis(xt.grad.numpy(), 1, -1),
        )
        np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12, err_msg=message)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-12, err_msg=message)

        want32 = getattr(torch.nn, name)(**kwargs)(torch.tensor(np.moveaxis(x, -1, 1)))
        want32 = np.moveaxis(want32.numpy(), 1, -1)
        assert want32.dtype == np.float32 and y32.shape == want32.shape, message
        if "Max" in name:  # a max picks one of the inputs: exact
            np.testing.assert_array_equal(y32, want32, err_msg=message)
        else:  # each library within the worst case of any order: twice it apart at most
            bound = _avg_bound(name, spatial, x, kwargs)
            np.testing.assert_allclose(y32, want32, rtol=0, atol=2 * bound, err_msg=message)
