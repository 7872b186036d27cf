"""interpolate/Upsample, pad and the padding layers, pixel (un)shuffle, fold/unfold.

References: NumPy written here from the definitions (exact rational source coordinates for
interpolation, index formulas for padding, loops for pixel shuffle and fold/unfold),
run in float64 without torch; and PyTorch on the channels-first tensor (interpolation in
float32 with gradients, the rest in float64). Each test runs its configurations in one
jitted program (compilation dominates these tests' time).
"""

import doctest
import math
import pathlib
import re
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet.functional._resample as resample
from funcnet import functional as F
from funcnet import nn
from funcnet.errors import ShapeError
from tests._numerics import U32, check_grads_float64

RNG = np.random.default_rng(0)
DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "layers-resample.md"


def normal(*shape, dtype=np.float64):
    return RNG.standard_normal(shape).astype(dtype)


def to_nchw(x):
    return np.moveaxis(x, -1, 1)


def to_nhwc(x):
    return np.moveaxis(np.asarray(x), 1, -1)


# ------------------------------------------------------------ interpolation reference


def ref_weights(n, o, mode, align_corners=False, scale=None):
    """(o, n) matrix resampling one axis, from the definitions with exact coordinates.

    ``scale`` is the given scale_factor (coordinates step 1/scale_factor), or None (n/o).
    """
    step = Fraction(n, o) if scale is None else 1 / Fraction(scale)
    if align_corners:
        step = Fraction(n - 1, o - 1) if o > 1 else Fraction(0)
    m = np.zeros((o, n))
    for i in range(o):
        if mode == "nearest":
            m[i, min(math.floor(i * step), n - 1)] = 1
        elif mode == "nearest-exact":
            m[i, min(math.floor((i + Fraction(1, 2)) * step), n - 1)] = 1
        elif mode == "area":
            start, end = (i * n) // o, -((-(i + 1) * n) // o)
            m[i, start:end] = 1 / (end - start)
        else:
            src = i * step if align_corners else (i + Fraction(1, 2)) * step - Fraction(1, 2)
            if mode == "linear":
                src = max(src, 0)
            low = math.floor(src)
            for k in range(-1, 3):  # the taps around src; linear uses two of them
                d = float(abs(src - (low + k)))
                if mode == "linear":
                    w = max(1 - d, 0.0)
                else:  # Keys' cubic with PyTorch's A = -0.75, taps clamped to the border
                    a = -0.75
                    w = (
                        (a + 2) * d**3 - (a + 3) * d**2 + 1
                        if d <= 1
                        else a * (d - 1) * (d - 2) ** 2
                    )
                    w = w if d < 2 else 0.0
                m[i, min(max(low + k, 0), n - 1)] += w
    return m


def ref_antialias_weights(n, o, cubic):
    """Pillow's resampling filter (PyTorch's antialias=True, align_corners=False)."""
    scale = n / o
    support = (2 if cubic else 1) * max(scale, 1)
    m = np.zeros((o, n))
    for i in range(o):
        center = (i + 0.5) * scale
        lo, hi = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), n)
        for j in range(lo, hi):
            d = abs(j - center + 0.5) / max(scale, 1)
            if cubic:  # Keys' a = -0.5, as Pillow
                w = 1.5 * d**3 - 2.5 * d**2 + 1 if d < 1 else -0.5 * (d - 1) * (d - 2) ** 2
                w = w if d < 2 else 0.0
            else:
                w = max(1 - d, 0.0)
            m[i, j] = w
        m[i] /= m[i].sum()
    return m


def ref_interpolate(x, outs, mode, **kwargs):
    """Resamples each spatial axis of (N, *spatial, C) float64 ``x`` by its matrix."""
    y = np.asarray(x, np.float64)
    for axis, o in enumerate(outs, start=1):
        n = y.shape[axis]
        if kwargs.get("antialias"):
            m = ref_antialias_weights(n, o, mode == "bicubic") if n != o else np.eye(n)
        else:
            kind = {"bilinear": "linear", "trilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
            scales = kwargs.get("scales")
            m = ref_weights(
                n, o, kind, kwargs.get("align_corners", False), scales and scales[axis - 1]
            )
        y = np.moveaxis(np.tensordot(m, y, axes=(1, axis)), 0, axis)
    return y


# (input spatial, interpolate kwargs, output spatial, reference kwargs)
INTERP_CASES = [
    ((5,), {"scale_factor": 2, "mode": "nearest"}, (10,), {}),
    ((6,), {"size": 4, "mode": "nearest"}, (4,), {}),
    ((5, 4), {"size": (7, 3), "mode": "nearest"}, (7, 3), {}),
    (
        (3, 4, 2),
        {"scale_factor": (1.5, 0.5, 2), "mode": "nearest"},
        (4, 2, 4),
        {"scales": (1.5, 0.5, 2)},
    ),
    ((5,), {"size": 7, "mode": "nearest-exact"}, (7,), {}),
    ((6, 5), {"scale_factor": 0.5, "mode": "nearest-exact"}, (3, 2), {"scales": (0.5, 0.5)}),
    ((5,), {"size": 8, "mode": "linear"}, (8,), {}),
    ((5,), {"size": 8, "mode": "linear", "align_corners": True}, (8,), {"align_corners": True}),
    ((4, 5), {"scale_factor": 2.5, "mode": "bilinear"}, (10, 12), {"scales": (2.5, 2.5)}),
    (
        (4, 5),
        {"scale_factor": 2.5, "mode": "bilinear", "recompute_scale_factor": True},
        (10, 12),
        {},
    ),
    (
        (6, 5),
        {"size": (4, 9), "mode": "bilinear", "align_corners": True},
        (4, 9),
        {"align_corners": True},
    ),
    ((6, 5), {"size": (9, 3), "mode": "bicubic"}, (9, 3), {}),
    (
        (4, 5),
        {"size": (7, 8), "mode": "bicubic", "align_corners": True},
        (7, 8),
        {"align_corners": True},
    ),
    ((3, 4, 3), {"size": (5, 3, 6), "mode": "trilinear"}, (5, 3, 6), {}),
    ((7, 6), {"size": (3, 4), "mode": "area"}, (3, 4), {}),
    ((7,), {"scale_factor": 0.5, "mode": "area"}, (3,), {}),
    ((9, 7), {"size": (4, 3), "mode": "bilinear", "antialias": True}, (4, 3), {"antialias": True}),
    ((9, 7), {"size": (3, 7), "mode": "bicubic", "antialias": True}, (3, 7), {"antialias": True}),
    ((4, 5), {"size": (8, 6), "mode": "bicubic", "antialias": True}, (8, 6), {"antialias": True}),
]


def test_interpolate_matches_numpy_reference():
    xs = [normal(2, *spatial, 3) for spatial, *_ in INTERP_CASES]
    with jax.enable_x64(True):
        ys = jax.jit(lambda xs: [F.interpolate(x, **c[1]) for x, c in zip(xs, INTERP_CASES)])(xs)
    for x, y, (_, kwargs, outs, ref_kwargs) in zip(xs, ys, INTERP_CASES):
        assert y.shape == (2, *outs, 3) and y.dtype == np.float64, kwargs
        # float64 arithmetic against exact coordinates: a few float64 roundings apart
        want = ref_interpolate(x, outs, kwargs["mode"], **ref_kwargs)
        np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12, err_msg=str(kwargs))


def test_interpolate_keeps_narrow_dtypes_and_takes_integers_when_nearest():
    x = normal(1, 4, 4, 2, dtype=np.float32)
    ints = np.arange(6, dtype=np.int32).reshape(1, 2, 3, 1)

    @jax.jit
    def run(x, ints):
        bilinear = lambda x: F.interpolate(x, scale_factor=2, mode="bilinear")
        return bilinear(x.astype(jnp.bfloat16)), bilinear(x), F.interpolate(ints, size=(4, 3))

    y16, y32, y_ints = run(x, ints)
    assert y16.dtype == jnp.bfloat16 and y_ints.dtype == np.int32
    # bfloat16 rounds inputs and output by <= 2^-9 relative; weights sum to 1 and are
    # non-negative, so |y16 - y32| <= 2^-9 (max|x| + |y32|) <= 2^-8 max|x|
    np.testing.assert_allclose(np.float32(y16), y32, atol=2**-8 * np.abs(x).max(), rtol=0)
    np.testing.assert_array_equal(y_ints[0, :, :, 0], ints[0, [0, 0, 1, 1], :, 0])


# (input spatial, interpolate kwargs, compare gradients too): PyTorch's kernels, with
# their special cases; gradients once per kind of tap table
TORCH_INTERP_CASES = [
    ((7,), {"scale_factor": 1.2, "mode": "nearest"}, True),  # 1-D: floor(i / 1.2)
    ((4, 5), {"scale_factor": (1.2, 2.05), "mode": "nearest"}, True),  # H copied, W i // 2
    ((3, 4, 5), {"scale_factor": (2.5, 1.6, 0.7), "mode": "nearest"}, False),
    ((5, 7), {"scale_factor": (1.1, 0.6), "mode": "nearest-exact"}, False),
    ((5,), {"scale_factor": 1.3, "mode": "linear"}, True),
    ((5,), {"scale_factor": 1.1, "mode": "linear"}, False),  # L keeps its size: a copy
    ((5, 6), {"scale_factor": (1.7, 0.6), "mode": "bilinear"}, False),
    ((5, 6), {"scale_factor": 1.7, "mode": "bilinear", "recompute_scale_factor": True}, False),
    ((1, 6), {"size": (3, 4), "mode": "bilinear", "align_corners": True}, False),
    ((5, 6), {"scale_factor": (1.2, 1.7), "mode": "bicubic"}, True),  # H keeps its size
    ((5, 6), {"size": (9, 4), "mode": "bicubic", "align_corners": True}, False),
    ((3, 4, 5), {"scale_factor": 1.5, "mode": "trilinear"}, False),
    ((3, 4, 5), {"size": (2, 6, 1), "mode": "trilinear", "align_corners": True}, True),
    ((7, 6), {"scale_factor": 0.6, "mode": "area"}, True),
    ((5, 4, 6), {"size": (2, 3, 4), "mode": "area"}, False),
    ((11, 8), {"size": (4, 3), "mode": "bilinear", "antialias": True}, False),
    ((11, 8), {"scale_factor": (0.3, 1.6), "mode": "bicubic", "antialias": True}, True),
    ((6, 8), {"size": (3, 3), "mode": "bilinear", "antialias": True, "align_corners": True}, False),
]


@pytest.mark.torch
def test_interpolate_matches_pytorch_with_gradients():
    torch = pytest.importorskip("torch")
    xs = [normal(2, *spatial, 3, dtype=np.float32) for spatial, *_ in TORCH_INTERP_CASES]
    shapes = [
        jax.eval_shape(lambda x, k=k: F.interpolate(x, **k), x).shape
        for x, (_, k, _) in zip(xs, TORCH_INTERP_CASES)
    ]
    cts = [normal(*shape, dtype=np.float32) for shape in shapes]

    def run(xs, cts):
        out = []
        for x, ct, (_, kwargs, grad) in zip(xs, cts, TORCH_INTERP_CASES):
            y, vjp = jax.vjp(lambda x, k=kwargs: F.interpolate(x, **k), x)
            out.append((y, vjp(ct)[0] if grad else None))
        return out

    for x, ct, (y, grad), (_, kwargs, _) in zip(xs, cts, jax.jit(run)(xs, cts), TORCH_INTERP_CASES):
        xt = torch.tensor(to_nchw(x), requires_grad=True)
        yt = torch.nn.functional.interpolate(xt, **kwargs)
        assert y.dtype == np.float32
        # The same taps and weights (float32 as PyTorch's; antialias weights in float64,
        # PyTorch's in float32: U32 apart). An output sums at most 15 x 5 taps (bicubic
        # antialias at a factor 1/0.3) with sum |w| <= 1.5: within 75 * 1.5 U32 max|x| on
        # PyTorch's side in the worst case (one sum), less on ours (one sum per axis)
        atol = 256 * U32 * np.abs(x).max()
        np.testing.assert_allclose(y, to_nhwc(yt.detach()), rtol=0, atol=atol, err_msg=str(kwargs))
        if grad is not None:
            yt.backward(torch.tensor(to_nchw(ct)))
            # an input's gradient sums the cotangents of the outputs reading it, with
            # weights summing to at most 4 here (bicubic upsampling by 1.7 in 2-D)
            grad_atol = 4 * 256 * U32 * np.abs(ct).max()
            np.testing.assert_allclose(
                grad, to_nhwc(xt.grad), rtol=0, atol=grad_atol, err_msg=str(kwargs)
            )


# ---------------------------------------------------------------------------- padding


def ref_pad(x, pad, mode, value=0.0):
    """PyTorch's F.pad by index formulas: output j of an axis padded (lo, hi) reads input
    position p = j - lo (reflected, clamped or filled outside); circular crops first, then
    wraps what is left."""
    y = np.asarray(x)
    for k in range(len(pad) // 2):
        axis, (lo, hi) = y.ndim - 1 - k, pad[2 * k : 2 * k + 2]
        n = y.shape[axis]
        p = np.arange(n + lo + hi) - lo
        if mode == "circular":
            start, m = max(-lo, 0), n - max(-lo, 0) - max(-hi, 0)
            index = start + (np.arange(n + lo + hi) - max(lo, 0)) % m
        elif mode == "reflect":
            index = np.where(p < 0, -p, np.where(p >= n, 2 * (n - 1) - p, p))
        else:
            index = np.clip(p, 0, n - 1)
        taken = np.take(y, index, axis=axis)
        if mode == "constant":
            inside = ((p >= 0) & (p < n)).reshape([-1 if a == axis else 1 for a in range(y.ndim)])
            taken = np.where(inside, taken, value)
        y = taken
    return y


PAD_CASES = [
    ((3, 5), (2, 1), "reflect", None),
    ((3, 5), (-2, 4), "reflect", None),  # pads the whole axis, then crops
    ((2, 4, 5), (1, 2, 3, 0), "reflect", None),
    ((2, 3, 4, 5), (0, 0, 2, 1, 1, 2), "reflect", None),  # H and W of an NHWC image
    ((2, 3, 4, 5), (1, 1, 2, 0, 0, 2), "replicate", None),
    ((3, 5), (-2, 4), "replicate", None),
    ((2, 4, 5), (2, 5, -1, 4), "circular", None),  # crops first, then wraps
    ((2, 3, 4, 5), (1, 0, 2, 3, 1, 1), "circular", None),
    ((2, 3, 4), (1, -2, 0, 1, 2, 0), "constant", 2.5),
    ((3, 5), (1, 1), "constant", None),
]

PAD_LAYERS = [  # (name, arguments, spatial shape)
    ("ConstantPad1d", ((1, 2), 1.5), (7,)),
    ("ConstantPad2d", ((1, -1, 0, 2), -2.0), (4, 5)),
    ("ConstantPad3d", (1, 0.5), (2, 3, 4)),
    ("ZeroPad1d", (2,), (4,)),
    ("ZeroPad2d", ((1, 2, 3, 0),), (4, 5)),
    ("ZeroPad3d", ((0, 1, 1, 0, 2, 1),), (2, 3, 4)),
    ("ReflectionPad1d", ((3, 1),), (5,)),
    ("ReflectionPad2d", ((1, 2, 3, 0),), (4, 5)),
    ("ReflectionPad3d", (1,), (2, 3, 4)),
    ("ReplicationPad1d", ((0, 3),), (4,)),
    ("ReplicationPad2d", ((2, 1, 0, 3),), (4, 5)),
    ("ReplicationPad3d", ((1, 0, 2, 1, 0, 2),), (2, 3, 4)),
    ("CircularPad1d", ((2, 4),), (5,)),
    ("CircularPad2d", ((1, 2, 3, 1),), (4, 5)),
    ("CircularPad3d", ((1, 1, 0, 2, 2, 0),), (2, 3, 4)),
]
LAYER_MODES = {"Refl": "reflect", "Repl": "replicate", "Circ": "circular"}


def _apply(layer, x):
    return layer.apply({}, {}, x)[0]


@pytest.fixture(scope="module")
def padded():
    """F.pad on PAD_CASES and every padding layer (batched and unbatched), in float64,
    from one compiled program: (xs, ys, layers, layer_xs, layer_ys)."""
    xs = [normal(*shape) for shape, *_ in PAD_CASES]
    layers = [getattr(nn, name)(*args) for name, args, _ in PAD_LAYERS]
    layer_xs = [normal(2, *spatial, 3) for *_, spatial in PAD_LAYERS]

    def run(xs, layer_xs):
        ys = [F.pad(x, pad, mode, value) for x, (_, pad, mode, value) in zip(xs, PAD_CASES)]
        return ys, [(_apply(m, x), _apply(m, x[0])) for m, x in zip(layers, layer_xs)]

    with jax.enable_x64(True):
        ys, layer_ys = jax.jit(run)(xs, layer_xs)
    return xs, ys, layers, layer_xs, layer_ys


def test_pad_matches_numpy_reference(padded):
    xs, ys = padded[:2]
    for x, y, (_, pad, mode, value) in zip(xs, ys, PAD_CASES):
        want = ref_pad(x, pad, mode, value or 0.0)
        np.testing.assert_array_equal(y, want, err_msg=f"{pad} {mode}")
    assert F.pad(np.arange(3, dtype=np.int32), (1, 2), value=7).tolist() == [7, 0, 1, 2, 7, 7]


def test_padding_layers_pad_the_spatial_axes_in_pytorchs_order(padded):
    """A layer's tuple is PyTorch's, the last spatial axis (W) first, and C is never
    padded: F.pad with (0, 0) for C prepended. Unbatched inputs give the same."""
    *_, layers, xs, ys = padded
    for layer, x, (y, y0), (name, *_) in zip(layers, xs, ys, PAD_LAYERS):
        mode = LAYER_MODES.get(name[:4], "constant")
        want = ref_pad(x, (0, 0, *layer.padding), mode, getattr(layer, "value", 0.0))
        np.testing.assert_array_equal(y, want, err_msg=name)
        np.testing.assert_array_equal(y0, want[0], err_msg=name)


@pytest.mark.torch
def test_pad_and_padding_layers_match_pytorch(padded):
    """F.pad is PyTorch's F.pad on the same array; a layer on NHWC is PyTorch's layer
    on NCHW."""
    torch = pytest.importorskip("torch")
    xs, ys, _, layer_xs, layer_ys = padded
    for x, y, (_, pad, mode, value) in zip(xs, ys, PAD_CASES):
        want = torch.nn.functional.pad(torch.tensor(x), pad, mode=mode, value=value)
        np.testing.assert_array_equal(y, want.numpy(), err_msg=f"{pad} {mode}")
    for x, (y, _), (name, args, _) in zip(layer_xs, layer_ys, PAD_LAYERS):
        want = to_nhwc(getattr(torch.nn, name)(*args)(torch.tensor(to_nchw(x))))
        np.testing.assert_array_equal(y, want, err_msg=name)


# -------------------------------------------------- pixel shuffle and fold/unfold

BLOCK_CASES = [  # (H, W), kernel_size, dilation, padding, stride
    ((5, 6), 2, 1, 0, 1),
    ((6, 7), (2, 3), (1, 2), (1, 0), (2, 1)),
    ((6, 6), 3, 1, 1, 3),  # blocks tile the padded input: the reshape path
    ((5, 7), 2, 1, 1, 2),
    ((7, 5), 3, 2, 2, 2),
]


def ref_unfold(x, kernel, dilation, padding, stride):
    """(N, H, W, C) → (N, L, C·kh·kw) by loops, the last axis c·kh·kw + i·kw + j."""
    kh, kw = kernel
    xp = np.pad(x, [(0, 0), (padding[0],) * 2, (padding[1],) * 2, (0, 0)])
    bh = (xp.shape[1] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    bw = (xp.shape[2] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    c = x.shape[-1]
    out = np.zeros((x.shape[0], bh * bw, c * kh * kw))
    for a, b, ch, i, j in np.ndindex(bh, bw, c, kh, kw):
        h, w = a * stride[0] + i * dilation[0], b * stride[1] + j * dilation[1]
        out[:, a * bw + b, ch * kh * kw + i * kw + j] = xp[:, h, w, ch]
    return out


def ref_fold(cols, size, kernel, dilation, padding, stride):
    """The adjoint of ref_unfold: every block element added back where it came from."""
    n, length, ck = cols.shape
    kh, kw = kernel
    padded = np.zeros((n, size[0] + 2 * padding[0], size[1] + 2 * padding[1], ck // (kh * kw)))
    bw = (padded.shape[2] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    for block, ch, i, j in np.ndindex(length, ck // (kh * kw), kh, kw):
        h = (block // bw) * stride[0] + i * dilation[0]
        w = (block % bw) * stride[1] + j * dilation[1]
        padded[:, h, w, ch] += cols[:, block, ch * kh * kw + i * kw + j]
    return padded[:, padding[0] : padding[0] + size[0], padding[1] : padding[1] + size[1]]


def _pairs(*values):
    return [(v, v) if isinstance(v, int) else tuple(v) for v in values]


@pytest.fixture(scope="module")
def blocks():
    """unfold, fold of it (batched and unbatched), pixel (un)shuffle, in float64 from one
    compiled program: (xs, [(cols, folded, folded0)], shuffle input, shuffled, back)."""
    xs = [normal(2, *size, 3) for size, *_ in BLOCK_CASES]
    pixels = normal(2, 2, 3, 4, 2 * 9)  # r = 3, two batch axes

    def run(xs, pixels):
        out = []
        for x, (size, *args) in zip(xs, BLOCK_CASES):
            cols = F.unfold(x, *args)
            out.append((cols, F.fold(cols, size, *args), F.fold(cols[0], size, *args)))
        shuffled = F.pixel_shuffle(pixels, 3)
        return out, shuffled, F.pixel_unshuffle(shuffled, 3)

    with jax.enable_x64(True):
        results, shuffled, back = jax.jit(run)(xs, pixels)
    return xs, results, pixels, shuffled, back


def test_unfold_and_fold_match_loops(blocks):
    xs, results = blocks[:2]
    for x, (cols, folded, folded0), (size, *args) in zip(xs, results, BLOCK_CASES):
        args = _pairs(*args)
        want = ref_unfold(x, *args)
        np.testing.assert_array_equal(cols, want, err_msg=str(args))
        # fold(unfold(x)) is x times the number of blocks covering each pixel; sums of at
        # most 4 float64 terms, so a few float64 roundings apart
        counts = ref_fold(ref_unfold(np.ones_like(x), *args), size, *args)
        np.testing.assert_allclose(folded, ref_fold(want, size, *args), rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(folded, x * counts, rtol=1e-14, atol=1e-14)
        np.testing.assert_array_equal(folded0, folded[0])


def test_pixel_shuffle_and_unshuffle_match_loops(blocks):
    *_, x, y, back = blocks
    r = 3
    want = np.zeros((2, 2, 9, 12, 2))
    for h, w, c, i, j in np.ndindex(3, 4, 2, r, r):
        want[:, :, h * r + i, w * r + j, c] = x[:, :, h, w, c * r * r + i * r + j]
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(back, x)


@pytest.mark.torch
def test_blocks_and_pixel_shuffle_match_pytorch(blocks):
    """PyTorch's unfold is ours transposed; fold and pixel (un)shuffle on NCHW are ours
    on NHWC."""
    torch = pytest.importorskip("torch")
    xs, results, pixels, shuffled, back = blocks
    for x, (cols, folded, _), (size, *args) in zip(xs, results, BLOCK_CASES):
        want = torch.nn.functional.unfold(torch.tensor(to_nchw(x)), *args)
        np.testing.assert_array_equal(cols, want.numpy().transpose(0, 2, 1))
        want = to_nhwc(torch.nn.functional.fold(want, size, *args))
        np.testing.assert_allclose(folded, want, rtol=1e-14, atol=1e-14)
    want = torch.nn.functional.pixel_shuffle(torch.tensor(np.moveaxis(pixels, -1, -3)), 3)
    np.testing.assert_array_equal(shuffled, np.moveaxis(want.numpy(), -3, -1))
    want = torch.nn.functional.pixel_unshuffle(want, 3)
    np.testing.assert_array_equal(back, np.moveaxis(want.numpy(), -3, -1))


# ------------------------------------------------------------------------ the layers


@pytest.mark.torch
def test_layers_match_pytorch_layers():
    torch = pytest.importorskip("torch")
    cases = [  # (name, keyword arguments, input shape)
        ("Upsample", {"scale_factor": 1.5, "mode": "bicubic", "align_corners": True}, (1, 4, 5, 2)),
        ("Upsample", {"size": (3, 7, 2), "mode": "trilinear"}, (1, 2, 3, 4, 2)),
        ("Upsample", {"scale_factor": 3}, (1, 4, 2)),
        ("UpsamplingNearest2d", {"size": (5, 7)}, (2, 3, 4, 2)),
        ("UpsamplingBilinear2d", {"scale_factor": 2}, (2, 3, 4, 2)),
        ("PixelShuffle", {"upscale_factor": 2}, (2, 3, 4, 8)),
        ("PixelUnshuffle", {"downscale_factor": 2}, (2, 4, 6, 3)),
        ("Unfold", {"kernel_size": (2, 3), "dilation": (2, 1), "padding": 1}, (2, 5, 6, 3)),
        ("Fold", {"output_size": (4, 5), "kernel_size": 2, "stride": (1, 2)}, (2, 6, 12)),
    ]
    layers = [getattr(nn, name)(**kwargs) for name, kwargs, _ in cases]
    xs = [normal(*shape) for *_, shape in cases]
    with jax.enable_x64(True):
        ys = jax.jit(lambda xs: [_apply(m, x) for m, x in zip(layers, xs)])(xs)
    for (name, kwargs, _), x, y in zip(cases, xs, ys):
        layer = getattr(torch.nn, name)(**kwargs)
        if name == "Fold":  # PyTorch's (N, C·kh·kw, L) is ours transposed
            want = to_nhwc(layer(torch.tensor(x.transpose(0, 2, 1))))
        elif name == "Unfold":
            want = layer(torch.tensor(to_nchw(x))).numpy().transpose(0, 2, 1)
        else:
            want = to_nhwc(layer(torch.tensor(to_nchw(x))))
        # float64 on both sides: at most 16 taps, a few roundings apart
        np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12, err_msg=name)


def test_gradients_match_finite_differences():
    """Every path's gradient (gathers with and without weights, pad, crop and wrap, block
    slices and their sums, reshapes), checked in float64."""

    def f(x):
        image = x[:, :4]  # (2, 4, 5, 3)
        return (
            F.interpolate(image, size=(7, 3), mode="bicubic", align_corners=True),
            F.interpolate(image, size=(2, 3), mode="bicubic", antialias=True),
            F.interpolate(image, scale_factor=(2.5, 0.6), mode="nearest"),
            F.pad(x, (0, 0, 2, -1, 1, 3), mode="reflect"),
            F.pad(x, (0, 0, -1, 2, 2, 1), mode="circular"),
            F.fold(
                F.unfold(x, 2, padding=1, dilation=(1, 2)), (6, 5), 2, padding=1, dilation=(1, 2)
            ),
            F.pixel_unshuffle(x[:, :4, :4], 2),
        )

    check_grads_float64(jax.jit(f), (normal(2, 6, 5, 3),), modes=("rev",))


def test_jit_vmap_and_unbatched_inputs_agree():
    model = nn.Sequential(nn.ReflectionPad2d((1, 1, 0, 2)), nn.PixelUnshuffle(2), nn.Unfold(2))
    run = lambda x: model.apply({}, {}, x)[0]
    up = lambda x: F.interpolate(x, scale_factor=2, mode="bilinear")
    x = normal(3, 4, 6, 2, dtype=np.float32)

    @jax.jit
    def both(x):
        one_by_one = jax.vmap(lambda image: (run(image), up(image[None])[0]))(x)
        return (run(x), up(x)), one_by_one

    batched, one_by_one = both(x)
    assert batched[0].shape == (3, 6, 32)
    np.testing.assert_array_equal(one_by_one[0], batched[0])
    np.testing.assert_array_equal(one_by_one[1], batched[1])


def test_repr_shows_pytorch_arguments():
    assert repr(nn.Upsample(scale_factor=2, mode="bilinear")) == (
        "Upsample(scale_factor=2.0, mode='bilinear')"
    )
    assert repr(nn.UpsamplingNearest2d((3, 4))) == "UpsamplingNearest2d(size=(3, 4))"
    assert repr(nn.ConstantPad2d(1, 3.5)) == "ConstantPad2d(padding=(1, 1, 1, 1), value=3.5)"
    assert repr(nn.ReflectionPad1d([2, 1])) == "ReflectionPad1d(padding=(2, 1))"
    assert repr(nn.Fold(4, 2, stride=2)) == "Fold(output_size=4, kernel_size=2, stride=2)"
    assert repr(nn.PixelShuffle(3)) == "PixelShuffle(upscale_factor=3)"
    assert nn.ZeroPad2d(1) == nn.ZeroPad2d((1, 1, 1, 1))


# ------------------------------------------------------------------------ errors


class Net(nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, ctx, x):
        return self.layer(ctx, x)


@pytest.mark.parametrize(
    "layer, shape, dtype, match",
    [
        (
            nn.Upsample(scale_factor=2, mode="bilinear"),
            (2, 5, 3),
            "f4",
            r"model\.layer \(Upsample\): expected 4-D input \(N, H, W, C\) for mode 'bilinear', "
            r"got shape \(2, 5, 3\)",
        ),
        (
            nn.Upsample(size=(4, 4)),
            (2, 5, 3),
            "f4",
            r"model\.layer \(Upsample\): size \(4, 4\) must have 1 entries, one per spatial axis; "
            r"got input shape \(2, 5, 3\)",
        ),
        (
            nn.Upsample(scale_factor=0.1),
            (2, 5, 3),
            "f4",
            r"model\.layer \(Upsample\): input and output sizes must be positive, got output size "
            r"\(0,\) for input shape \(2, 5, 3\)",
        ),
        (nn.Upsample(size=3, mode="linear"), (2, 5, 3), "i4", r"\(Upsample\): expected floating"),
        (
            nn.UpsamplingBilinear2d(size=3),
            (5, 4, 3),
            "f4",
            r"\(UpsamplingBilinear2d\): expected 4-D",
        ),
        (
            nn.ReflectionPad2d((1, 1, 3, 0)),
            (1, 3, 4, 2),
            "f4",
            r"model\.layer \(ReflectionPad2d\): reflect padding \(3, 0\) of axis 1 must be smaller "
            r"than its size 3; got input shape \(1, 3, 4, 2\)",
        ),
        (nn.CircularPad1d(4), (2, 3, 2), "f4", r"\(CircularPad1d\): circular padding \(4, 4\)"),
        (nn.ConstantPad3d(1, 0.0), (3, 4), "f4", r"\(ConstantPad3d\): expected 5 or 4-D input"),
        (
            nn.PixelShuffle(2),
            (2, 3, 3, 6),
            "f4",
            r"model\.layer \(PixelShuffle\): expected input \(\*, H, W, C·r²\) with a last "
            r"dimension divisible by upscale_factor² = 4, got shape \(2, 3, 3, 6\)",
        ),
        (nn.PixelUnshuffle(2), (2, 3, 4, 6), "f4", r"\(PixelUnshuffle\): .* by downscale_factor 2"),
        (
            nn.Unfold(3, dilation=2),
            (1, 4, 5, 2),
            "f4",
            r"model\.layer \(Unfold\): kernel_size \(3, 3\) with dilation \(2, 2\) and padding "
            r"\(0, 0\) does not fit in the spatial size \(4, 5\); got shape \(1, 4, 5, 2\)",
        ),
        (
            nn.Fold((4, 5), 2),
            (1, 11, 8),
            "f4",
            r"model\.layer \(Fold\): expected input \(N, L, C·kh·kw\) with L = 3·4 = 12 blocks "
            r"and a last dimension divisible by kh·kw = 4, got shape \(1, 11, 8\)",
        ),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else None,
)
def test_shape_errors_name_the_layer(layer, shape, dtype, match):
    model = Net(layer)
    with pytest.raises(ShapeError, match=match):
        jax.eval_shape(lambda x: model.apply({}, {}, x), jax.ShapeDtypeStruct(shape, dtype))


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: nn.Upsample(), ValueError, "Upsample: either size or scale_factor"),
        (lambda: nn.Upsample(2, 2), ValueError, "Upsample: only one of size or scale_factor"),
        (lambda: nn.Upsample(scale_factor=2, align_corners=True), ValueError, "align_corners"),
        (lambda: nn.Upsample(3, mode="cubic"), ValueError, r"Upsample: mode must be one of"),
        (lambda: nn.Upsample(3, recompute_scale_factor=True), ValueError, "not meaningful"),
        (lambda: nn.Upsample(scale_factor=-1.0), ValueError, "scale_factor must be positive"),
        (lambda: nn.Upsample(size=2.5), ValueError, "size must be positive ints"),
        (lambda: nn.Upsample(2, mode="lanczos"), NotImplementedError, "lanczos"),
        (lambda: nn.UpsamplingNearest2d(), ValueError, "UpsamplingNearest2d: either size"),
        (
            lambda: nn.ReflectionPad2d((1, 2, 3)),
            ValueError,
            r"ReflectionPad2d: padding must be .* 4",
        ),
        (lambda: nn.ConstantPad1d("2", 0.0), ValueError, "ConstantPad1d: padding must be an int"),
        (lambda: nn.PixelShuffle(0), ValueError, "PixelShuffle: upscale_factor must be a positive"),
        (lambda: nn.Unfold(0), ValueError, "Unfold: kernel_size must be an int >= 1"),
        (lambda: nn.Fold((4, 4, 4), 2), ValueError, "Fold: output_size must be"),
    ],
)
def test_construction_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_functional_errors_name_the_function():
    x = jnp.zeros((1, 3, 4, 2))
    with pytest.raises(ShapeError, match=r"^interpolate: expected 5-D input \(N, D, H, W, C\)"):
        F.interpolate(x, scale_factor=2, mode="trilinear")
    with pytest.raises(ValueError, match="antialias=True needs mode 'bilinear' or 'bicubic'"):
        F.interpolate(x, scale_factor=2, antialias=True)
    with pytest.raises(ValueError, match="pad must have an even length"):
        F.pad(x, (1, 2, 3))
    with pytest.raises(ValueError, match="padding mode 'reflect' does not take a value"):
        F.pad(x, (1, 1), mode="reflect", value=1.0)
    with pytest.raises(ValueError, match="mode must be one of"):
        F.pad(x, (1, 1), mode="symmetric")
    with pytest.raises(ShapeError, match=r"^pad: pad \(1, 1, 1, 1, 1, 1, 1, 1, 1, 1\) pads 5"):
        F.pad(x, (1,) * 10)
    with pytest.raises(
        ShapeError, match=r"^pad: constant padding \(-3, -2\) of axis 3 crops more than"
    ):
        F.pad(x, (-3, -2))
    with pytest.raises(ShapeError, match=r"^pixel_unshuffle: .* divisible by downscale_factor 3"):
        F.pixel_unshuffle(x, 3)


# -------------------------------------------------------------------------- docs


def test_docstring_examples():
    result = doctest.testmod(resample, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted and not result.failed


def test_the_pages_code_runs():
    """docs/layers-resample.md's python blocks run in order; each asserts what it shows."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    namespace: dict = {}
    for code in blocks:
        exec(compile(code, str(DOC), "exec"), namespace)
    assert len(blocks) >= 2
