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
from tests._numerics import U32, check_grads_float64

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
    ids = jax.ShapeDtypeStruct((2, 5), jnp.int32)
    flat, offsets = jax.ShapeDtypeStruct((10,), jnp.int32), jnp.array([0, 4])
    psw = jax.ShapeDtypeStruct((10,), jnp.float32)
    cases = [
        (nn.Embedding(V, D, padding_idx=3), (ids,), (2, 5, D)),
        (nn.Embedding(V, D, max_norm=1.0, scale_grad_by_freq=True), (ids,), (2, 5, D)),
        (nn.EmbeddingBag(V, D, padding_idx=3), (ids,), (2, D)),
        (nn.EmbeddingBag(V, D, mode="max"), (flat, offsets), (2, D)),
        (nn.EmbeddingBag(V, D, max_norm=2.0, mode="sum"), (flat, offsets, psw), (2, D)),
    ]
    for layer, args, shape in cases:
        params, _ = layer.init(jax.random.key(0))
        with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
            y, _ = jax.eval_shape(lambda *a, m=layer, p=params: m.apply(p, {}, *a), *args)
        assert (y.shape, y.dtype) == (shape, jnp.float32)


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


# ------------------------------------------------------ max_norm, scale_grad_by_freq, sparse
def std_normal(seed, shape):
    """float32 N(0, 1) values from NumPy (no compilation, unlike a new jax.random shape)."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def np_renorm(rows, max_norm, norm_type):
    """PyTorch's embedding_renorm_ on looked-up rows, in float64."""
    rows = np.asarray(rows, np.float64)
    norm = np.linalg.norm(rows, ord=norm_type, axis=-1, keepdims=True)
    return np.where(norm > max_norm, rows * (max_norm / (norm + 1e-7)), rows)


def np_counts(ids):
    """How many times each position's id occurs in ``ids``."""
    ids = np.asarray(ids)
    _, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    return counts[inverse].reshape(ids.shape)


def test_max_norm_renormalises_the_returned_rows():
    ids = jnp.array([[2, 9, 2, 0], [9, 3, 3, 7]])
    r = std_normal(1, (*ids.shape, D))
    for max_norm, norm_type, padding_idx in ((1.0, 2.0, None), (2.0, 1.0, 3), (1.5, np.inf, None)):
        layer = nn.Embedding(V, D, padding_idx, max_norm=max_norm, norm_type=norm_type)
        params, _ = layer.init(jax.random.key(0))
        params = {"weight": 2.0 * params["weight"] + 0.5}  # most rows above max_norm
        before = np.asarray(params["weight"])
        f = jax.jit(lambda p, m=layer: jnp.sum(m.apply(p, {}, ids)[0] * r))
        y, _ = layer.apply(params, {}, ids)
        want = np_renorm(before[np.asarray(ids)], max_norm, norm_type)
        # a float32 norm of 4 values (a few U32) and one product: within 1e-6 relative
        np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-7)
        assert (np.abs(want - before[np.asarray(ids)]) > 1e-3).any()  # some rows rescaled
        grad = jax.grad(f)(params)["weight"]
        # PyTorch's gradient: as if the rescaled rows were stored (sums of <= 2 rows of r)
        np.testing.assert_allclose(grad, np_grad(ids, r, layer.padding_idx), rtol=0, atol=1e-6)


def test_scale_grad_by_freq_divides_each_gradient_by_the_id_count():
    ids = jnp.array([[2, 9, 2, 0], [9, 2, 3, 5]])  # 2 thrice, 9 twice
    r = std_normal(2, (*ids.shape, D))
    for padding_idx in (None, 9):
        layer = nn.Embedding(V, D, padding_idx, scale_grad_by_freq=True)
        params, _ = layer.init(jax.random.key(0))
        grad = jax.jit(jax.grad(lambda p, m=layer: jnp.sum(m.apply(p, {}, ids)[0] * r)))(params)
        want = np_grad(ids, np.asarray(r) / np_counts(ids)[..., None], layer.padding_idx)
        # float32 sums of <= 3 scaled cotangent rows: within the worst case, 3 U32 sum|r|
        bound = ids.size * U32 * np_grad(ids, np.abs(r), None).max()
        np.testing.assert_allclose(grad["weight"], want, rtol=0, atol=bound)
        y, _ = layer.apply(params, {}, ids)
        np.testing.assert_array_equal(y, np.asarray(params["weight"])[np.asarray(ids)])
    f = lambda w: F.embedding(ids, w, scale_grad_by_freq=True)
    _, tangent = jax.jvp(f, (params["weight"],), (jnp.ones((V, D)),))  # forward mode works
    np.testing.assert_allclose(tangent[..., 0], 1.0 / np_counts(ids), rtol=1e-6)


def test_sparse_true_is_a_clear_error():
    expected = "sparse=True is not supported: it selects PyTorch's sparse gradient tensors"
    for make in (
        lambda: nn.Embedding(V, D, sparse=True),
        lambda: nn.EmbeddingBag(V, D, sparse=True),
        lambda: F.embedding(jnp.array([1]), jnp.ones((V, D)), sparse=True),
        lambda: F.embedding_bag(jnp.array([[1]]), jnp.ones((V, D)), sparse=True),
    ):
        with pytest.raises(ValueError, match=re.escape(expected)):
            make()


@pytest.mark.torch
def test_max_norm_and_scale_grad_by_freq_match_torch():
    torch = pytest.importorskip("torch")
    ids = np.array([[3, 1, 8, 3], [8, 8, 0, 5]])
    r = std_normal(3, (*ids.shape, D))
    for max_norm, norm_type, scale, padding_idx in ((1.0, 2.0, True, None), (2.0, 3.0, True, 8)):
        layer = nn.Embedding(V, D, padding_idx, max_norm, norm_type, scale_grad_by_freq=scale)
        params, _ = layer.init(jax.random.key(0))
        f = lambda p, m=layer: jnp.sum(m.apply(p, {}, jnp.asarray(ids))[0] * r)
        grad = jax.grad(f)(params)["weight"]
        y, _ = layer.apply(params, {}, jnp.asarray(ids))
        t = torch.nn.Embedding(V, D, padding_idx, max_norm, norm_type, scale_grad_by_freq=scale)
        with torch.no_grad():
            t.weight.copy_(torch.tensor(np.asarray(params["weight"])))
        ty = t(torch.tensor(ids))
        (ty * torch.tensor(r)).sum().backward()
        # the same rescaling in float32 (torch's scale in float64): ~2 roundings apart
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(grad, t.weight.grad.numpy(), rtol=1e-6, atol=1e-6)
        changed = (t.weight.detach().numpy() != np.asarray(params["weight"])).any(axis=1)
        assert changed.any()  # torch rescaled its weight in place; ours is unchanged


# ------------------------------------------------------------------------- EmbeddingBag
IDS = np.array([1, 2, 4, 5, 4, 3, 2, 9, 0, 1])


def np_embedding_bag(ids, weight, offsets=None, mode="mean", per_sample_weights=None,
                     include_last_offset=False, padding_idx=None):  # fmt: skip
    """PyTorch's embedding_bag from its definition, bag by bag, in float64."""
    ids, w = np.asarray(ids), np.asarray(weight, np.float64)
    psw = per_sample_weights
    psw = np.ones(ids.shape) if psw is None else np.asarray(psw, np.float64)
    if ids.ndim == 2:
        bags = list(zip(ids, psw))
    else:
        starts = list(np.asarray(offsets))
        ends = starts[1:] + ([] if include_last_offset else [len(ids)])
        starts = starts[:-1] if include_last_offset else starts
        bags = [(ids[s:e], psw[s:e]) for s, e in zip(starts, ends)]
    out = np.zeros((len(bags), w.shape[1]))
    for b, (bag, scale) in enumerate(bags):
        keep = bag != padding_idx
        rows = w[bag[keep]] * scale[keep][:, None]
        if len(rows):
            out[b] = {"sum": rows.sum(0), "mean": rows.mean(0), "max": rows.max(0)}[mode]
    return out


def bag_configs():
    """(kwargs of embedding_bag but weight): 2-D ids, offsets with an empty bag, trailing
    ids past include_last_offset's end, padding, per-sample weights, in every mode."""
    psw = std_normal(5, IDS.shape)
    for mode in ("sum", "mean", "max"):
        yield dict(ids=IDS[:9].reshape(3, 3), mode=mode, padding_idx=2)
        yield dict(ids=IDS, offsets=np.array([0, 2, 2, 5]), mode=mode, padding_idx=4)
        yield dict(ids=IDS, offsets=np.array([0, 3, 7, 9]), mode=mode, include_last_offset=True)
    yield dict(ids=IDS, offsets=np.array([0, 4]), mode="sum", per_sample_weights=psw)
    yield dict(ids=IDS.reshape(2, 5), mode="sum", per_sample_weights=psw.reshape(2, 5))


def test_embedding_bag_matches_numpy_in_every_mode():
    weight = std_normal(0, (V, D))
    configs = list(bag_configs())
    # one compilation for every configuration (ids, offsets and weights as constants)
    outs = jax.jit(lambda w: [F.embedding_bag(weight=w, **kw) for kw in configs])(weight)
    for y, kwargs in zip(outs, configs):
        want = np_embedding_bag(weight=weight, **kwargs)
        assert y.shape == want.shape and y.dtype == jnp.float32
        # float32 sums (or means) of <= 5 rows of N(0, 1) values: within 1e-6 absolute
        np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6, err_msg=str(kwargs))


class ThreeBags(nn.Module):
    """EmbeddingBag in every mode: jit, grad and vmap compiled once for all three."""

    def __init__(self):
        super().__init__()
        self.max = nn.EmbeddingBag(V, D, mode="max", padding_idx=4)
        self.sum = nn.EmbeddingBag(V, D, mode="sum")
        self.mean = nn.EmbeddingBag(V, D, padding_idx=2)

    def forward(self, ctx, ids, offsets, psw):
        pairs = ids.reshape(2, 5)
        return self.max(ctx, ids, offsets), self.sum(ctx, pairs, None, psw), self.mean(ctx, pairs)


def test_embedding_bag_gradients_jit_and_vmap():
    model = ThreeBags()
    params, _ = model.init(jax.random.key(0))
    ids, offsets = jnp.asarray(IDS), jnp.array([0, 2, 2, 5])
    psw = np.linspace(0.5, 1.5, 10).reshape(2, 5)
    f = jax.jit(lambda p, ids, offsets: model.apply(p, {}, ids, offsets, psw)[0])
    weight = params["max"]["weight"]
    want = np_embedding_bag(IDS, weight, offsets, "max", padding_idx=4)
    np.testing.assert_allclose(f(params, ids, offsets)[0], want, rtol=1e-6)  # traced offsets
    # (scale_grad_by_freq is deliberately not a gradient: tested against its definition)
    check_grads_float64(lambda p: f(p, ids, offsets), (params,))
    batch = jnp.stack([ids, ids[::-1]])
    stacked = jax.vmap(f, in_axes=(None, 0, None))(params, batch, offsets)  # over id batches
    for a, b in zip(stacked, f(params, batch[1], offsets)):
        np.testing.assert_allclose(a[1], b, rtol=1e-6, atol=1e-7)  # ~1 rounding (fusion)


def test_embedding_bag_scale_grad_by_freq_and_bfloat16():
    weight = std_normal(0, (V, D))
    offsets = jnp.array([0, 3])
    r = std_normal(1, (2, D))
    f = lambda w: jnp.sum(
        F.embedding_bag(jnp.asarray(IDS), w, offsets, mode="mean", scale_grad_by_freq=True) * r
    )
    bag_of = np.searchsorted(np.asarray(offsets), np.arange(len(IDS)), side="right") - 1
    sizes = np.bincount(bag_of)
    per_position = np.asarray(r)[bag_of] / (sizes[bag_of] * np_counts(IDS))[:, None]
    # sums of <= 3 float32 cotangent shares of |r| < 3: well within 1e-6
    np.testing.assert_allclose(jax.grad(f)(weight), np_grad(IDS, per_position, None), atol=1e-6)
    table = jnp.asarray(weight, jnp.bfloat16) * 64 + 256  # bfloat16 sums of these lose digits
    assert table.dtype == jnp.bfloat16  # (NumPy 2.0 with ml_dtypes 0.5 promotes to float32)
    y = F.embedding_bag(jnp.asarray(IDS), table, offsets, mode="sum")
    assert y.dtype == jnp.bfloat16
    # bfloat16 values in [0, 512) are multiples of 2^-6 or coarser: their float32 sums (and
    # float64 ones) are exact, so a float32 sum rounded once to bfloat16 is the exact sum
    # rounded once; a bfloat16 accumulation would round each partial sum
    want = np_embedding_bag(IDS, np.asarray(table, np.float64), offsets, "sum")
    np.testing.assert_array_equal(y, want.astype(np.float32).astype(jnp.bfloat16))


def torch_bag_configs():
    """bag_configs() where torch 2.13's CPU kernel is right: every id twice (its backward
    divides by the wrong id's count when counts differ, pytorch#190063) and no ids after
    include_last_offset's end (mishandled there)."""
    ids = np.array([1, 2, 4, 5, 4, 2, 5, 9, 9, 1])
    for kwargs in bag_configs():
        kwargs["ids"] = ids if "offsets" in kwargs else ids.reshape(2, 5)
        if kwargs.get("include_last_offset"):
            kwargs["offsets"] = np.array([0, 3, 7, 10])
        if kwargs.get("per_sample_weights") is not None:
            kwargs["per_sample_weights"] = kwargs["per_sample_weights"].reshape(kwargs["ids"].shape)
        yield dict(kwargs, max_norm=2.0, scale_grad_by_freq=kwargs["mode"] != "max")


@pytest.mark.torch
def test_embedding_bag_matches_torch_values_and_gradients():
    torch = pytest.importorskip("torch")
    weight = std_normal(0, (V, D))
    configs = list(torch_bag_configs())
    rs = [std_normal(2, (len(kw["offsets"]) - kw.get("include_last_offset", 0), D))
          if "offsets" in kw else std_normal(2, (2, D)) for kw in configs]  # fmt: skip

    def values_and_grads(w):
        f = lambda w, kw: F.embedding_bag(weight=w, **kw)
        return [jax.value_and_grad(lambda w, kw=kw, r=r: jnp.sum(f(w, kw) * r))(w)
                for kw, r in zip(configs, rs)] + [f(w, kw) for kw in configs]  # fmt: skip

    results = jax.jit(values_and_grads)(weight)  # one compilation for every configuration
    for kwargs, r, (_, grad), y in zip(configs, rs, results, results[len(configs) :]):
        tw = torch.tensor(weight, requires_grad=True)
        tkw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
        ty = torch.nn.functional.embedding_bag(tkw.pop("ids"), tw, tkw.pop("offsets", None), **tkw)
        (ty * torch.tensor(r)).sum().backward()
        # two float32 reductions of <= 5 rescaled rows, each within ~1e-6
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-5, atol=2e-6)
        np.testing.assert_allclose(grad, tw.grad.numpy(), rtol=1e-5, atol=2e-6)
    t = torch.nn.EmbeddingBag(V, D, padding_idx=-1)
    assert nn.EmbeddingBag(V, D, padding_idx=-1).padding_idx == t.padding_idx


def test_embedding_bag_init_and_errors():
    layer = nn.EmbeddingBag(V, D, mode="sum", padding_idx=-2)
    params, _ = layer.init(jax.random.key(0))
    assert layer.padding_idx == V - 2 and params["weight"].shape == (V, D)
    np.testing.assert_array_equal(params["weight"][V - 2], 0.0)
    ids = jnp.asarray(IDS)
    where = "model (EmbeddingBag): "
    cases = [
        (ValueError, "2-D ids (B, N) are B bags of N ids, so offsets has to be None", (ids.reshape(2, 5), jnp.array([0]))),
        (ValueError, "1-D ids need offsets (the index in ids where each bag starts)", (ids,)),
        (ShapeError, "expected 1-D ids with offsets or 2-D ids (B, N), got shape (1, 2, 5)", (ids.reshape(1, 2, 5),)),
        (ShapeError, "expected integer offsets, got dtype float32", (ids, jnp.array([0.0]))),
        (ShapeError, "expected 1-D offsets, got shape (1, 1)", (ids, jnp.array([[0]]))),
        (ValueError, "offsets must start at 0, never decrease and not pass the number of ids (10), got [1, 4]", (ids, jnp.array([1, 4]))),
        (ValueError, "offsets must start at 0, never decrease", (ids, jnp.array([0, 11]))),
        (ShapeError, "expected per_sample_weights of the ids' shape (10,), got shape (9,)", (ids, jnp.array([0]), jnp.ones(9))),
        (ShapeError, "expected integer ids, got dtype float32", (ids.astype(jnp.float32), jnp.array([0]))),
        (IndexError, "index out of range: expected indices in [0, 10), got min 0, max 10", (ids.at[0].set(10), jnp.array([0]))),
    ]  # fmt: skip
    for error, message, args in cases:
        with pytest.raises(error, match=re.escape(where + message)):
            layer.apply(params, {}, *args)
    mean = nn.EmbeddingBag(V, D)
    expected = "per_sample_weights is only supported for mode='sum' (got mode='mean')"
    with pytest.raises(ValueError, match=re.escape(where + expected)):
        mean.apply(params, {}, ids, jnp.array([0]), jnp.ones(10))
    with pytest.raises(ValueError, match=re.escape("EmbeddingBag: mode has to be one of sum")):
        nn.EmbeddingBag(V, D, mode="median")
    expected = "EmbeddingBag: max mode does not support scaling the gradient by the frequency"
    with pytest.raises(ValueError, match=re.escape(expected)):
        nn.EmbeddingBag(V, D, mode="max", scale_grad_by_freq=True)
    with pytest.raises(ValueError, match=re.escape("embedding_bag: padding_idx must be within")):
        F.embedding_bag(ids.reshape(2, 5), params["weight"], padding_idx=V)
    expected = "embedding_bag: expected 1-D offsets with at least 1 entry, got shape (0,)"
    with pytest.raises(ShapeError, match=re.escape(expected)):
        F.embedding_bag(ids, params["weight"], jnp.zeros((0,), int), include_last_offset=True)
