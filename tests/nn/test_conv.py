"""Conv1d/2d/3d and ConvTranspose1d/2d/3d, and their functional forms.

References: direct convolution by loops over output positions (NumPy, written here), a
transposed convolution written as the scatter it is by definition (not as the flipped
forward convolution the library uses), and PyTorch. Shapes are tiny and each check is
one jitted program, so the file stays fast.
"""

import doctest
import functools
import math
import pathlib
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import funcnet.functional._conv
import funcnet.nn._conv
from funcnet import functional as F
from funcnet import nn
from funcnet.errors import ShapeError
from tests._numerics import U32, check_grads_float64, to_float64

RNG = np.random.default_rng(0)


def normal(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


# ---------------------------------------------------------------------- references


def ref_conv(x, w, b, stride, padding, dilation, groups):
    """Direct convolution, channels-last, by loops over output and kernel positions."""
    nd = x.ndim - 2
    x = np.pad(x.astype(np.float64), [(0, 0), *padding, (0, 0)])
    kernel, cin_g, cout = w.shape[:nd], w.shape[nd], w.shape[-1]
    cout_g = cout // groups
    out = [(x.shape[1 + i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(nd)]
    y = np.zeros((x.shape[0], *out, cout))
    for o in np.ndindex(*out):
        for k in np.ndindex(*kernel):
            at = tuple(o[i] * stride[i] + k[i] * dilation[i] for i in range(nd))
            patch = x[(slice(None), *at)]  # (N, C_in)
            for g in range(groups):
                xs = patch[:, g * cin_g : (g + 1) * cin_g]
                ws = w[k][:, g * cout_g : (g + 1) * cout_g]
                y[(slice(None), *o, slice(g * cout_g, (g + 1) * cout_g))] += xs @ ws
    return y if b is None else y + b


def ref_conv_transpose(x, w, b, stride, padding, output_padding, dilation, groups):
    """Transposed convolution as a scatter: input pixel i adds x[i]·w[k] at i·s + k·d − p.

    ``w`` is funcnet's layout (*kernel, C_out // groups, C_in).
    """
    nd = x.ndim - 2
    kernel, cout_g, cin = w.shape[:nd], w.shape[nd], w.shape[-1]
    cin_g = cin // groups
    full = [
        (x.shape[1 + i] - 1) * stride[i] + dilation[i] * (kernel[i] - 1) + 1 + output_padding[i]
        for i in range(nd)
    ]
    y = np.zeros((x.shape[0], *full, cout_g * groups))
    for i in np.ndindex(*x.shape[1:-1]):
        for k in np.ndindex(*kernel):
            at = tuple(i[a] * stride[a] + k[a] * dilation[a] for a in range(nd))
            for g in range(groups):
                xs = x[(slice(None), *i, slice(g * cin_g, (g + 1) * cin_g))].astype(np.float64)
                ws = w[k][:, g * cin_g : (g + 1) * cin_g]  # (C_out // groups, C_in // groups)
                y[(slice(None), *at, slice(g * cout_g, (g + 1) * cout_g))] += xs @ ws.T
    crop = tuple(slice(p, n - p) for p, n in zip(padding, full))
    y = y[(slice(None), *crop)]
    return y if b is None else y + b


CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
LAYER = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}

# (nd, spatial, C_in, C_out, kernel, stride, padding, dilation, groups)
CONV_CASES = [
    (1, (9,), 3, 4, (3,), (2,), 1, (2,), 1),
    (2, (6, 7), 4, 6, (3, 2), (2, 1), (1, 0), (1, 2), 2),
    (2, (5, 6), 2, 3, (2, 2), (1, 1), "same", (2, 1), 1),
    (2, (4, 5), 3, 2, (3, 3), (1, 1), "valid", (1, 1), 1),
    (3, (4, 5, 4), 4, 2, (2, 3, 2), (2, 1, 2), 1, (1, 1, 1), 2),
]


def _pads(padding, kernel, dilation, nd):
    if padding == "valid":
        return [(0, 0)] * nd
    if padding == "same":
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return [(t // 2, t - t // 2) for t in totals]
    p = (padding,) * nd if isinstance(padding, int) else padding
    return [(q, q) for q in p]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"{c[0]}d-{c[6]}-g{c[8]}")
def test_conv_matches_direct_loops(case):
    nd, spatial, cin, cout, kernel, stride, padding, dilation, groups = case
    x, w, b = normal(2, *spatial, cin), normal(*kernel, cin // groups, cout), normal(cout)
    conv = functools.partial(
        CONV[nd], stride=stride, padding=padding, dilation=dilation, groups=groups
    )
    # float64: the loops' maths, whatever algorithm and summation order XLA's CPU backend
    # picks for float32 convolutions on this CPU (float32 is compared in TestJit, to torch)
    with jax.enable_x64(True):
        y = jax.jit(conv)(*to_float64((x, w, b)))
    want = ref_conv(x, w, b, stride, _pads(padding, kernel, dilation, nd), dilation, groups)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)


CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
LAYER_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}

# (spatial, C_in, C_out, kernel, stride, padding, output_padding, dilation, groups)
TRANSPOSE_CASES = [
    ((3, 4), 4, 6, (3, 3), (2, 2), (1, 1), (1, 1), (1, 1), 2),
    ((3, 2), 2, 3, (3, 2), (3, 2), (2, 0), (2, 1), (2, 1), 1),  # padding > dilation·(k−1)
    ((2, 3), 3, 2, (2, 3), (1, 2), (0, 1), (0, 0), (1, 1), 1),
    ((5,), 4, 6, (3,), (2,), (1,), (1,), (1,), 2),
    ((4,), 3, 2, (4,), (3,), (2,), (2,), (2,), 1),
    ((3, 2, 3), 2, 4, (2, 3, 2), (2, 1, 2), (0, 1, 1), (1, 0, 1), (1, 1, 2), 2),
    ((2, 3, 2), 3, 3, (3, 2, 2), (1, 2, 3), (1, 0, 2), (0, 1, 2), (2, 1, 1), 3),
]


def _transpose_id(case):
    return f"{len(case[0])}d-s{case[4]}-op{case[6]}-g{case[8]}"


@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=_transpose_id)
def test_conv_transpose_matches_scatter_definition(case):
    spatial, cin, cout, kernel, stride, padding, output_padding, dilation, groups = case
    x, w, b = normal(2, *spatial, cin), normal(*kernel, cout // groups, cin), normal(cout)
    conv = functools.partial(
        CONV_T[len(spatial)],
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        groups=groups,
        dilation=dilation,
    )
    with jax.enable_x64(True):  # float64, as test_conv_matches_direct_loops
        y = jax.jit(conv)(*to_float64((x, w, b)))
    want = ref_conv_transpose(x, w, b, stride, padding, output_padding, dilation, groups)
    assert y.shape == want.shape and y.dtype == np.float64
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)


def test_conv_transpose_is_the_adjoint_of_conv():
    """<conv(x), y> == <x, conv_transpose(y)> with the same weight, stride, padding, groups."""
    x, w = normal(1, 7, 6, 4), normal(3, 3, 2, 6)  # conv: 4 -> 6 channels, groups 2
    kw = {"stride": 2, "padding": 1, "groups": 2}
    y = normal(1, 4, 3, 6)

    @jax.jit
    def both(x, y):
        forward = F.conv2d(x, w, **kw)
        back = F.conv_transpose2d(y, w, **kw, output_padding=(0, 1))
        return jnp.vdot(forward, y), jnp.vdot(x, back)

    # float64: in float32 each side is a sum of ~1300 products (sum|terms| in the hundreds) that
    # cancel to |lhs| ~ 20, so its rounding in a CPU's order is not bounded inside rtol=1e-5
    with jax.enable_x64(True):
        x, y, w = to_float64((x, y, w))  # w: both() reads it when traced
        lhs, rhs = both(x, y)
    assert lhs.dtype == np.float64
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)


# ---------------------------------------------------------------------- gradients


def test_gradients_float64():
    with jax.enable_x64(True):
        x = RNG.standard_normal((1, 5, 4, 4))
        w = RNG.standard_normal((3, 2, 2, 6))
        wt = RNG.standard_normal((2, 3, 3, 4))
        b = RNG.standard_normal(6)

        def conv(x, w, b):
            return F.conv2d(x, w, b, stride=(2, 1), padding=1, dilation=(1, 2), groups=2)

        def conv_t(x, w, b):
            return F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1, groups=2)

        check_grads(jax.jit(conv), (x, w, b), order=1, modes=("rev",))
        check_grads(jax.jit(conv_t), (x, wt, b), order=1, modes=("rev",))


def test_conv_transpose_1d_3d_gradients_float64():
    args1 = (normal(2, 5, 4), normal(3, 3, 4), normal(6))
    args3 = (normal(1, 3, 2, 3, 2), normal(2, 3, 2, 2, 2), normal(4))
    kw1 = {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2, "dilation": 2}
    kw3 = {"stride": (2, 1, 2), "padding": (0, 1, 1), "output_padding": (1, 0, 1), "groups": 2}
    check_grads_float64(jax.jit(functools.partial(F.conv_transpose1d, **kw1)), args1)
    check_grads_float64(jax.jit(functools.partial(F.conv_transpose3d, **kw3)), args3)


# ------------------------------------------------------------------------ layers


class TestJit(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_conv2d(self):
        model = nn.Conv2d(4, 6, (3, 2), stride=2, padding=1, groups=2)
        params, state = model.init(jax.random.key(1))
        x = normal(2, 5, 6, 4)
        y, _ = self.variant(lambda p, x: model.apply(p, state, x))(params, x)
        w, b = np.asarray(params["weight"]), np.asarray(params["bias"])
        want = ref_conv(x, w, b, (2, 2), [(1, 1), (1, 1)], (1, 1), 2)
        # float32 against float64: 12-term dot products (init |w| < 0.3, sum|x w| ~ 1.5),
        # ~sqrt(13) U32 * 1.5 ~ 3e-7 in any order (7e-8 measured): 30x inside
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_conv_transpose2d(self):
        model = nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1)
        params, state = model.init(jax.random.key(2))
        x = normal(2, 3, 2, 4)
        y, _ = self.variant(lambda p, x: model.apply(p, state, x))(params, x)
        w, b = np.asarray(params["weight"]), np.asarray(params["bias"])
        want = ref_conv_transpose(x, w, b, (2, 2), (1, 1), (1, 1), (1, 1), 1)
        # float32: sums of <= 36 products (init |w| < 0.17): ~sqrt(36) U32 * 2 ~ 7e-7, 10x in
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


# (layer, args, kwargs, weight shape, bias shape, PyTorch's fan_in)
INIT_CASES = [
    ("Conv1d", (6, 33, 5), {"groups": 3}, (5, 2, 33), (33,), 2 * 5),
    ("Conv2d", (6, 64, 3), {"groups": 2}, (3, 3, 3, 64), (64,), 3 * 9),
    ("Conv3d", (2, 16, (1, 2, 3)), {}, (1, 2, 3, 2, 16), (16,), 2 * 6),
    # for a transposed convolution PyTorch's fan_in is out_channels // groups · k
    ("ConvTranspose2d", (16, 6, 3), {"groups": 2}, (3, 3, 3, 16), (6,), 3 * 9),
    ("ConvTranspose1d", (6, 8, 5), {"groups": 2}, (5, 4, 6), (8,), 4 * 5),
    ("ConvTranspose3d", (4, 6, (2, 2, 3)), {"groups": 2}, (2, 2, 3, 3, 4), (6,), 3 * 12),
]


@pytest.mark.parametrize("case", INIT_CASES, ids=lambda c: c[0])
def test_default_init_is_pytorchs(case):
    name, args, kwargs, weight_shape, bias_shape, fan_in = case
    params, state = getattr(nn, name)(*args, **kwargs).init(jax.random.key(0))
    assert state == {}
    assert params["weight"].shape == weight_shape and params["bias"].shape == bias_shape
    bound = 1 / math.sqrt(fan_in)
    w, b = np.asarray(params["weight"]), np.asarray(params["bias"])
    assert 0.9 * bound < np.abs(w).max() <= bound
    assert np.abs(b).max() <= bound
    np.testing.assert_allclose(w.std(), bound / math.sqrt(3), rtol=0.15)  # uniform's std


@pytest.mark.torch
@pytest.mark.parametrize("case", INIT_CASES[1:], ids=lambda c: c[0])
def test_pytorch_default_init_has_our_bound(case):
    """PyTorch's own initial weights fill the same interval ±1/sqrt(fan_in)."""
    torch = pytest.importorskip("torch")
    name, args, kwargs, _, _, fan_in = case
    torch.manual_seed(0)
    layer = getattr(torch.nn, name)(*args, **kwargs)
    bound = 1 / math.sqrt(fan_in)
    assert 0.9 * bound < layer.weight.detach().abs().max().item() <= bound
    assert layer.bias.detach().abs().max().item() <= bound


def test_init_overrides_and_dtype():
    model = nn.Conv2d(
        3, 4, 3, weight_init=nn.init.ones, bias_init=nn.init.zeros, dtype=jnp.bfloat16
    )
    params, _ = model.init(jax.random.key(0))
    assert params["weight"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(params["weight"], np.ones((3, 3, 3, 4)))
    np.testing.assert_array_equal(params["bias"], np.zeros(4))
    assert set(nn.Conv2d(3, 4, 3, bias=False).init(jax.random.key(0))[0]) == {"weight"}


def test_bfloat16_in_bfloat16_out():
    model = nn.Conv2d(3, 4, 3, padding=1)
    params, state = model.init(jax.random.key(0))
    x = normal(2, 4, 4, 3)
    run = jax.jit(lambda p, x: model.apply(p, state, x)[0])
    y16, y32 = run(params, x.astype(jnp.bfloat16)), run(params, x)
    assert y16.dtype == jnp.bfloat16 and y32.dtype == jnp.float32
    # bfloat16 inputs, weights and output (2^-9 relative each) on 27-term sums with
    # sum|x w| ~ 2.5 (init |w| < 0.2): ~2^-8 * 2.5 + 2^-9 |y| ~ 0.015 worst case with float32
    # accumulation, ~0.03 typical even if a CPU accumulated in bfloat16 (0.008 measured)
    np.testing.assert_allclose(y16.astype(np.float32), y32, atol=0.1)


def test_unbatched_input_and_vmap():
    model = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    up = nn.ConvTranspose2d(4, 2, 2, stride=2)
    params, state = model.init(jax.random.key(0))
    up_params, _ = up.init(jax.random.key(1))
    x = normal(3, 5, 5, 3)

    @jax.jit
    def run(x):
        def one(image):  # (H, W, C), as PyTorch's unbatched (C, H, W)
            h, _ = model.apply(params, state, image)
            return up.apply(up_params, {}, h)[0]

        batched = up.apply(up_params, {}, model.apply(params, state, x)[0])[0]
        return batched, jax.vmap(one)(x), one(x[1])

    # float64: batched, vmapped and single-image convolutions may take kernels that sum in
    # other orders; float32 sums of 27 terms could then be ~1e-6 apart, the size of atol
    with jax.enable_x64(True):
        params, up_params, x = to_float64((params, up_params, x))  # run() reads them traced
        batched, mapped, single = run(x)
    assert batched.shape == (3, 6, 6, 2) and batched.dtype == np.float64
    np.testing.assert_allclose(mapped, batched, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(single, batched[1], rtol=1e-12, atol=1e-12)


def _transpose_bound(x, w, b, *args):
    """Worst-case error of a float32 transposed convolution (any summation order): each
    output sums at most C_in/groups·prod(kernel) products and the bias, so it is within
    (n + 1)·U32 of the same scatter over |x|, |w|, |b| (tests/_numerics.py)."""
    nd = x.ndim - 2
    n = w.shape[-1] // args[-1] * math.prod(w.shape[:nd]) + 1
    mags = ref_conv_transpose(np.abs(x), np.abs(w), None if b is None else np.abs(b), *args)
    return (n + 1) * U32 * float(mags.max())


@pytest.mark.parametrize("nd", [1, 3])
def test_conv_transpose_1d_3d_layers_jit_grad_vmap(nd):
    model = LAYER_T[nd](4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
    params, state = model.init(jax.random.key(3))
    assert params["weight"].shape == (*(3,) * nd, 3, 4) and params["bias"].shape == (6,)
    x = normal(3, *(4, 3, 2)[:nd], 4)

    @jax.jit
    def run(params, x):
        one = lambda image: model.apply(params, state, image)[0]  # unbatched (*spatial, C)
        loss = lambda params: jnp.sum(model.apply(params, state, x)[0] ** 2)
        return model.apply(params, state, x)[0], jax.vmap(one)(x), one(x[1]), jax.grad(loss)(params)

    # float64: the reference's maths, whatever order XLA sums in (float32 is compared with
    # PyTorch in test_conv_transpose_nd_matches_pytorch_float32)
    with jax.enable_x64(True):
        batched, mapped, single, grads = run(*to_float64((params, x)))
    w, b = np.asarray(params["weight"]), np.asarray(params["bias"])
    ones = (1,) * nd
    want = ref_conv_transpose(x, w, b, (2,) * nd, ones, ones, ones, 2)
    assert batched.shape == want.shape == (3, *[2 * n for n in x.shape[1:-1]], 6)
    assert batched.dtype == np.float64
    np.testing.assert_allclose(batched, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(mapped, batched, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(single, batched[1], rtol=1e-12, atol=1e-12)
    # d/db sum(y^2) = 2 sum(y) over positions: a closed form for the bias gradient
    np.testing.assert_allclose(grads["bias"], 2 * want.sum(axis=tuple(range(nd + 1))), rtol=1e-10)
    assert grads["weight"].shape == w.shape and float(np.abs(grads["weight"]).sum()) > 0


# ------------------------------------------------------------------------ errors


class Net(nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.conv1 = layer

    def forward(self, ctx, x):
        return self.conv1(ctx, x)


def _error_id(value):
    if isinstance(value, nn.Module):
        return type(value).__name__
    if isinstance(value, tuple):
        return "x".join(map(str, value))
    return value if len(value) < 4 else "msg"  # a dtype, or the expected message


@pytest.mark.parametrize(
    "layer, shape, match",
    [
        (
            nn.Conv2d(3, 8, 3),
            (2, 8, 8, 4),
            r"^model\.conv1 \(Conv2d\): expected input with last dimension 3, got shape "
            r"\(2, 8, 8, 4\)",
        ),
        (
            nn.Conv2d(3, 8, 3),
            (8, 8, 4),
            r"model\.conv1 \(Conv2d\): .*last dimension 3.*\(8, 8, 4\)",
        ),
        (
            nn.Conv2d(3, 8, 3),
            (8, 8),
            r"model\.conv1 \(Conv2d\): expected 4 or 3-D input \(N, H, W, C\) or unbatched "
            r"\(H, W, C\), got shape \(8, 8\)",
        ),
        (nn.Conv1d(3, 8, 3), (2, 8, 8, 3), r"model\.conv1 \(Conv1d\): expected 3 or 2-D input"),
        (nn.Conv3d(3, 8, 3), (8, 8, 3), r"model\.conv1 \(Conv3d\): expected 5 or 4-D input"),
        (
            nn.Conv2d(3, 8, 3, dilation=2, padding=(0, 1)),
            (4, 6, 3),
            r"model\.conv1 \(Conv2d\): kernel \(3, 3\) with dilation \(2, 2\) spans \(5, 5\), "
            r"larger than the padded input \(4, 8\); got input shape \(4, 6, 3\)",
        ),
        (
            nn.Conv2d(3, 8, 3, padding=3, padding_mode="reflect"),
            (1, 3, 3, 3),
            r"model\.conv1 \(Conv2d\): reflect padding .* must be smaller than the spatial size",
        ),
        (
            nn.ConvTranspose2d(3, 8, 3),
            (1, 4, 4, 2),
            r"model\.conv1 \(ConvTranspose2d\): expected input with last dimension 3",
        ),
        (
            nn.ConvTranspose2d(3, 8, 2, padding=1),
            (1, 1, 4, 3),
            r"model\.conv1 \(ConvTranspose2d\): padding \(1, 1\) leaves an empty output",
        ),
        (
            nn.ConvTranspose1d(3, 8, 3),
            (2, 9, 4),
            r"^model\.conv1 \(ConvTranspose1d\): expected input with last dimension 3, got "
            r"shape \(2, 9, 4\)",
        ),
        (
            nn.ConvTranspose1d(3, 8, 3),
            (1, 2, 9, 3),
            r"^model\.conv1 \(ConvTranspose1d\): expected 3 or 2-D input \(N, L, C\) or "
            r"unbatched \(L, C\), got shape \(1, 2, 9, 3\)",
        ),
        (
            nn.ConvTranspose3d(2, 4, 3),
            (4, 4, 2),
            r"^model\.conv1 \(ConvTranspose3d\): expected 5 or 4-D input \(N, D, H, W, C\)",
        ),
        (
            nn.ConvTranspose3d(2, 4, 2, padding=(0, 1, 0)),
            (1, 3, 1, 3, 2),
            r"^model\.conv1 \(ConvTranspose3d\): padding \(0, 1, 0\) leaves an empty output "
            r"\(4, 0, 4\) for input shape \(1, 3, 1, 3, 2\)",
        ),
    ],
    ids=_error_id,
)
def test_shape_errors_name_the_layer(layer, shape, match):
    model = Net(layer)
    params, state = model.init(jax.random.key(0))
    with pytest.raises(ShapeError, match=match):
        jax.eval_shape(lambda x: model.apply(params, state, x), jax.ShapeDtypeStruct(shape, "f4"))


@pytest.mark.parametrize(
    "layer, shape, hint",
    [
        (nn.Conv2d(1, 8, 3), (8, 1, 28, 28), "(NHWC) and this looks like NCHW: pass x.transpose(0, 2, 3, 1)"),
        (nn.Conv2d(3, 8, 3), (3, 32, 32), "(HWC) and this looks like CHW: pass x.transpose(1, 2, 0)"),
        (nn.Conv1d(4, 8, 3), (2, 4, 16), "(NLC) and this looks like NCL: pass x.transpose(0, 2, 1)"),
        (nn.Conv1d(4, 8, 3), (4, 16), "(LC) and this looks like CL: pass x.transpose(1, 0)"),
        (nn.Conv3d(2, 4, 3), (1, 2, 5, 6, 7), "(NDHWC) and this looks like NCDHW: pass x.transpose(0, 2, 3, 4, 1)"),
        (nn.ConvTranspose2d(3, 4, 3), (2, 3, 8, 8), "(NHWC) and this looks like NCHW: pass x.transpose(0, 2, 3, 1)"),
        (nn.ConvTranspose1d(4, 8, 3), (2, 4, 16), "(NLC) and this looks like NCL: pass x.transpose(0, 2, 1)"),
        (nn.ConvTranspose3d(2, 4, 3), (1, 2, 5, 6, 7), "(NDHWC) and this looks like NCDHW: pass x.transpose(0, 2, 3, 4, 1)"),
    ],
    ids=_error_id,
)  # fmt: skip
def test_channels_first_input_gets_the_transpose_to_write(layer, shape, hint):
    model = Net(layer)
    params, state = model.init(jax.random.key(0))
    message = (
        f"model.conv1 ({type(layer).__name__}): expected input with last dimension "
        f"{layer.in_channels}, got shape {shape}; funcnet is channels-last {hint}"
    )
    with pytest.raises(ShapeError, match=f"^{re.escape(message)}(\n|$)"):  # (jit appends lines)
        jax.eval_shape(lambda x: model.apply(params, state, x), jax.ShapeDtypeStruct(shape, "f4"))


@pytest.mark.parametrize(
    "layer, shape",
    [(nn.Conv2d(1, 8, 3), (8, 28, 28, 2)), (nn.Conv2d(1, 8, 3), (8, 5, 28, 28))],
    ids=_error_id,
)
def test_channels_last_input_of_the_wrong_width_gets_no_transpose_hint(layer, shape):
    model = Net(layer)
    params, state = model.init(jax.random.key(0))
    with pytest.raises(ShapeError, match=re.escape(f"got shape {shape}") + "(\n|$)"):
        jax.eval_shape(lambda x: model.apply(params, state, x), jax.ShapeDtypeStruct(shape, "f4"))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: nn.Conv2d(3, 8, 3, groups=2), r"Conv2d: in_channels=3 must be divisible by"),
        (lambda: nn.Conv1d(4, 6, 3, groups=4), r"Conv1d: out_channels=6 must be divisible by"),
        (lambda: nn.Conv2d(4, 8, 3, stride=2, padding="same"), "not supported for strided"),
        (lambda: nn.Conv2d(4, 8, 3, padding="full"), "padding must be 'same', 'valid'"),
        (lambda: nn.Conv2d(4, 8, (3, 3, 3)), "kernel_size must be .* tuple of 2"),
        (lambda: nn.Conv2d(4, 8, 3, stride=0), "stride must be an int >= 1"),
        (lambda: nn.Conv3d(4, 8, 3, padding=-1), "padding must be an int >= 0"),
        (lambda: nn.Conv2d(4, 8, 3, padding_mode="mirror"), "padding_mode must be one of"),
        (lambda: nn.ConvTranspose2d(4, 6, 3, groups=4), r"out_channels=6 must be divisible"),
        (lambda: nn.ConvTranspose2d(4, 4, 3, stride=2, output_padding=2), "output_padding"),
        (lambda: nn.ConvTranspose2d(4, 4, 3, padding_mode="reflect"), '"zeros" padding_mode'),
        (
            lambda: nn.ConvTranspose1d(4, 4, 3, stride=2, output_padding=2),
            r"^ConvTranspose1d: output_padding \(2,\) must be smaller than either stride \(2,\)",
        ),
        (lambda: nn.ConvTranspose1d(4, 6, 3, groups=4), r"^ConvTranspose1d: out_channels=6"),
        (lambda: nn.ConvTranspose3d(4, 4, (3, 3)), r"^ConvTranspose3d: kernel_size must be .* 3"),
        (lambda: nn.ConvTranspose3d(4, 4, 3, padding=-1), r"^ConvTranspose3d: padding must be"),
        (lambda: nn.ConvTranspose3d(4, 4, 3, padding_mode="circular"), '"zeros" padding_mode'),
    ],
)
def test_construction_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_functional_errors_name_the_function():
    x = jnp.zeros((1, 5, 5, 4))
    with pytest.raises(ShapeError, match=r"^conv2d: expected input with last dimension 6"):
        F.conv2d(x, jnp.zeros((3, 3, 3, 8)), groups=2)
    with pytest.raises(ShapeError, match=r"^conv2d: expected 4-D weight"):
        F.conv2d(x, jnp.zeros((3, 4, 8)))
    with pytest.raises(ShapeError, match=r"^conv2d: expected bias of shape \(8,\)"):
        F.conv2d(x, jnp.zeros((3, 3, 4, 8)), jnp.zeros(4))
    with pytest.raises(ShapeError, match=r"^conv_transpose2d: groups=3 must be >= 1 and divide"):
        F.conv_transpose2d(x, jnp.zeros((3, 3, 2, 4)), groups=3)
    with pytest.raises(ShapeError, match=r"^conv_transpose1d: expected 3-D weight"):
        F.conv_transpose1d(jnp.zeros((1, 5, 4)), jnp.zeros((3, 3, 2, 4)))
    with pytest.raises(ShapeError, match=r"^conv_transpose1d: expected bias of shape \(2,\)"):
        F.conv_transpose1d(jnp.zeros((1, 5, 4)), jnp.zeros((3, 2, 4)), jnp.zeros(4))
    with pytest.raises(ShapeError, match=r"^conv_transpose3d: expected input with last dim"):
        F.conv_transpose3d(jnp.zeros((1, 3, 3, 3, 2)), jnp.zeros((2, 2, 2, 2, 4)))
    with pytest.raises(ValueError, match=r"^conv_transpose3d: output_padding \(0, 2, 0\)"):
        F.conv_transpose3d(
            jnp.zeros((3, 3, 3, 4)), jnp.zeros((2, 2, 2, 2, 4)), output_padding=(0, 2, 0), stride=2
        )


def test_docstring_examples():
    for module in (funcnet.functional._conv, funcnet.nn._conv):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted and not result.failed, module.__name__


# ----------------------------------------------------------------------- PyTorch


def _to_torch(torch, x):
    return torch.tensor(np.moveaxis(np.asarray(x), -1, 1))


def _from_torch(t):
    return np.moveaxis(t.detach().numpy(), 1, -1)


@pytest.mark.torch
@pytest.mark.parametrize(
    "nd, kwargs",
    [
        (1, {"stride": 2, "padding": 2, "dilation": 2, "groups": 2}),
        (2, {"stride": (2, 1), "padding": (1, 2), "groups": 2, "padding_mode": "reflect"}),
        (2, {"padding": "same", "dilation": (1, 2), "padding_mode": "replicate"}),
        (2, {"padding": (2, 1), "padding_mode": "circular", "bias": False}),
        (3, {"stride": 2, "padding": 1, "groups": 2}),
    ],
    ids=lambda v: str(v) if isinstance(v, int) else "-".join(map(str, v.values())),
)
def test_conv_matches_pytorch(nd, kwargs):
    torch = pytest.importorskip("torch")
    torch_layer = getattr(torch.nn, f"Conv{nd}d")(4, 6, (3, 2, 2)[:nd] if nd > 1 else 3, **kwargs)
    ours = LAYER[nd](4, 6, (3, 2, 2)[:nd] if nd > 1 else 3, **kwargs)
    params = {"weight": torch_layer.weight.detach().numpy().transpose(*range(2, nd + 2), 1, 0)}
    if torch_layer.bias is not None:
        params["bias"] = torch_layer.bias.detach().numpy()
    x = normal(2, *(7, 6, 5)[:nd], 4)
    y, _ = jax.jit(lambda p, x: ours.apply(p, {}, x))(params, x)
    with torch.no_grad():
        want = _from_torch(torch_layer(_to_torch(torch, x)))
    # two float32 convolutions of <= 24-term sums (|w| < 0.3, sum|x w| ~ 2): each within
    # ~sqrt(25) U32 * 2 ~ 6e-7 in its order, 10x inside atol=1e-5 (2.4e-7 measured)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)


@pytest.mark.torch
@pytest.mark.parametrize(
    "kwargs",
    [
        {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2},
        {"stride": (3, 2), "padding": (2, 0), "output_padding": (2, 1), "dilation": (2, 1)},
        {"stride": 1, "padding": 0, "groups": 1, "bias": False},
    ],
    ids=lambda v: "-".join(map(str, v.values())),
)
def test_conv_transpose_matches_pytorch(kwargs):
    torch = pytest.importorskip("torch")
    torch_layer = torch.nn.ConvTranspose2d(4, 6, (3, 2), **kwargs)
    ours = nn.ConvTranspose2d(4, 6, (3, 2), **kwargs)
    # PyTorch (C_in, C_out // groups, kh, kw) -> funcnet (kh, kw, C_out // groups, C_in)
    params = {"weight": torch_layer.weight.detach().numpy().transpose(2, 3, 1, 0)}
    if torch_layer.bias is not None:
        params["bias"] = torch_layer.bias.detach().numpy()
    assert params["weight"].shape == ours.init(jax.random.key(0))[0]["weight"].shape
    x = normal(2, 3, 4, 4)
    y, _ = jax.jit(lambda p, x: ours.apply(p, {}, x))(params, x)
    with torch.no_grad():
        want = _from_torch(torch_layer(_to_torch(torch, x)))
    assert y.shape == want.shape
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)  # as test_conv_matches_pytorch


# (nd, kernel_size, kwargs): odd sizes, strides, padding beyond dilation·(k − 1),
# output_padding below stride or dilation, dilation, groups, no bias
TORCH_TRANSPOSE_CASES = [
    (1, 3, {}),
    (1, 4, {"stride": 3, "padding": 2, "output_padding": 2, "groups": 2}),
    (1, 3, {"stride": 2, "padding": 3, "output_padding": 1, "dilation": 2, "bias": False}),
    (2, (3, 2), {"stride": (1, 3), "padding": (2, 1), "output_padding": (1, 2), "dilation": 2}),
    (3, 2, {"stride": 2, "output_padding": 1, "groups": 2}),
    (3, (3, 2, 3), {"stride": (2, 1, 3), "padding": (1, 0, 2), "output_padding": (1, 0, 2)}),
    (3, (1, 3, 2), {"padding": (0, 2, 1), "dilation": (1, 2, 3), "groups": 2, "bias": False}),
]


@pytest.mark.torch
def test_conv_transpose_nd_matches_pytorch_float32():
    """Random PyTorch weights, converted by ``w.permute(*range(2, nd + 2), 1, 0)`` (a
    transpose, no flip), give PyTorch's outputs in float32 for ConvTranspose1d/2d/3d."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    cases = []
    for nd, kernel_size, kwargs in TORCH_TRANSPOSE_CASES:
        torch_layer = getattr(torch.nn, f"ConvTranspose{nd}d")(4, 6, kernel_size, **kwargs)
        ours = LAYER_T[nd](4, 6, kernel_size, **kwargs)
        w = torch_layer.weight.detach().numpy()  # (C_in, C_out // groups, *kernel)
        params = {"weight": w.transpose(*range(2, nd + 2), 1, 0)}
        if torch_layer.bias is not None:
            params["bias"] = torch_layer.bias.detach().numpy()
        shapes = jax.tree.map(jnp.shape, jax.eval_shape(ours.init, jax.random.key(0))[0])
        assert jax.tree.map(np.shape, params) == shapes, (nd, kwargs)
        cases.append((torch_layer, ours, params, normal(2, *(5, 3, 4)[:nd], 4)))

    @jax.jit
    def run(params, xs):  # one program for every case
        return [ours.apply(p, {}, x)[0] for (_, ours, _, _), p, x in zip(cases, params, xs)]

    outs = run([c[2] for c in cases], [c[3] for c in cases])
    for (torch_layer, ours, params, x), y in zip(cases, outs):
        with torch.no_grad():
            want = _from_torch(torch_layer(_to_torch(torch, x)))
        assert y.shape == want.shape, ours
        # float32, two summation orders of the same <= C_in/g·prod(k) + 1 terms: each
        # within the worst-case bound of any order, so they differ by at most twice it
        nd = x.ndim - 2
        geometry = [_ntuple(getattr(ours, name), nd) for name in _GEOMETRY]
        bound = _transpose_bound(x, params["weight"], params.get("bias"), *geometry, ours.groups)
        np.testing.assert_allclose(y, want, rtol=0, atol=2 * bound, err_msg=repr(ours))


_GEOMETRY = ("stride", "padding", "output_padding", "dilation")


def _ntuple(value, nd):
    return (value,) * nd if isinstance(value, int) else tuple(value)


def test_docs_page_code_runs():
    """docs/layers-conv-pool.md's python blocks run top to bottom, without torch."""
    page = pathlib.Path(__file__).resolve().parents[2] / "docs" / "layers-conv-pool.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL)
    namespace: dict = {}
    for code in blocks:
        exec(compile(code, str(page), "exec"), namespace)
    assert len(blocks) == 3
    assert namespace["logits"].shape == (8, 10) and namespace["clip"].shape == (2, 1, 4, 2, 3)
