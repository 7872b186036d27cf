"""Tests of funcnet.losses against NumPy references written here and torch.nn.functional.

Shapes are shared across tests (XLA compiles once per shape): classification inputs are
(N, d1, C) = (4, 3, 5) with targets (4, 3), channels last.
"""

from __future__ import annotations

import doctest

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import funcnet.losses as L
from funcnet.errors import ShapeError
from tests._numerics import check_grads_float64, to_float64

REDUCTIONS = ("mean", "sum", "none")
SHAPE = (4, 3, 5)  # (N, d1, C)
C = SHAPE[-1]
IGNORE = -100

_rng = np.random.default_rng(20261123)
LOGITS = (_rng.normal(size=SHAPE) * 3).astype(np.float32)
LABELS = _rng.integers(0, C, size=SHAPE[:-1]).astype(np.int32)
LABELS_IGN = LABELS.copy()
LABELS_IGN[0, 0] = LABELS_IGN[2, 1] = IGNORE
PROBS = _rng.dirichlet(np.ones(C), size=SHAPE[:-1]).astype(np.float32)
CLASS_W = _rng.uniform(0.2, 2.0, size=C).astype(np.float32)
# Elementwise losses: differences spread over (-3, 3) so both branches of huber and
# smooth-L1 are hit; none sits exactly on a threshold.
PRED = (_rng.normal(size=SHAPE) * 1.5).astype(np.float32)
TARGET = (_rng.normal(size=SHAPE) * 1.5).astype(np.float32)
PROB_IN = _rng.uniform(0.02, 0.98, size=SHAPE).astype(np.float32)
BIN_T = _rng.uniform(0.0, 1.0, size=SHAPE).astype(np.float32)
ELEM_W = _rng.uniform(0.5, 1.5, size=SHAPE[-1:]).astype(np.float32)  # broadcasts
POS_W = _rng.uniform(0.5, 3.0, size=SHAPE[-1:]).astype(np.float32)
HIDDEN = _rng.normal(size=(*SHAPE[:-1], 6)).astype(np.float32)  # linear_cross_entropy
PROJ = _rng.normal(size=(6, C)).astype(np.float32)
PROJ_B = _rng.normal(size=C).astype(np.float32)


# ----------------------------------------------------------------------------------------
# NumPy references, float64, written element by element (not mirroring the library)
# ----------------------------------------------------------------------------------------


def np_reduce(loss, reduction):
    return {"mean": np.mean, "sum": np.sum, "none": np.asarray}[reduction](loss)


def np_log_softmax(row):
    row = np.asarray(row, np.float64)
    m = row.max()
    return row - m - np.log(np.sum(np.exp(row - m)))


def np_cross_entropy_index(x, y, weight=None, ignore_index=IGNORE, reduction="mean", ls=0.0):
    x2, y1 = x.reshape(-1, x.shape[-1]), y.reshape(-1)
    n_classes = x.shape[-1]
    w = np.ones(n_classes) if weight is None else np.asarray(weight, np.float64)
    losses, denom = [], 0.0
    for row, label in zip(x2, y1):
        if label == ignore_index:
            losses.append(0.0)
            continue
        lp = np_log_softmax(row)
        nll = -w[label] * lp[label]
        smooth = sum(-w[c] * lp[c] for c in range(n_classes))
        losses.append((1 - ls) * nll + ls / n_classes * smooth)
        denom += w[label]
    losses = np.array(losses).reshape(y.shape)
    if reduction == "mean":
        return losses.sum() / denom if denom else np.nan
    return np_reduce(losses, reduction)


def np_cross_entropy_probs(x, p, weight=None, reduction="mean", ls=0.0):
    n_classes = x.shape[-1]
    w = np.ones(n_classes) if weight is None else np.asarray(weight, np.float64)
    x2, p2 = x.reshape(-1, n_classes), p.reshape(-1, n_classes).astype(np.float64)
    losses = []
    for row, q in zip(x2, p2):
        q = (1 - ls) * q + ls / n_classes
        losses.append(-np.sum(w * q * np_log_softmax(row)))
    return np_reduce(np.array(losses).reshape(x.shape[:-1]), reduction)


def np_nll(lp, y, weight=None, ignore_index=IGNORE, reduction="mean"):
    n_classes = lp.shape[-1]
    w = np.ones(n_classes) if weight is None else np.asarray(weight, np.float64)
    losses, denom = [], 0.0
    for row, label in zip(lp.reshape(-1, n_classes).astype(np.float64), y.reshape(-1)):
        if label == ignore_index:
            losses.append(0.0)
        else:
            losses.append(-w[label] * row[label])
            denom += w[label]
    losses = np.array(losses).reshape(y.shape)
    if reduction == "mean":
        return losses.sum() / denom if denom else np.nan
    return np_reduce(losses, reduction)


def np_elementwise(name, x, t, **kw):
    d = np.abs(np.asarray(x, np.float64) - np.asarray(t, np.float64))
    if name == "mse_loss":
        return d**2
    if name == "l1_loss":
        return d
    if name == "smooth_l1_loss":
        beta = kw.get("beta", 1.0)
        if beta == 0:
            return d
        return np.where(d < beta, 0.5 * d**2 / beta, d - 0.5 * beta)
    delta = kw.get("delta", 1.0)
    return np.where(d <= delta, 0.5 * d**2, delta * (d - 0.5 * delta))


def np_bce(p, t, w=None):
    p, t = np.asarray(p, np.float64), np.asarray(t, np.float64)
    with np.errstate(divide="ignore"):
        log_p, log_1mp = np.maximum(np.log(p), -100), np.maximum(np.log(1 - p), -100)
    loss = -(t * log_p + (1 - t) * log_1mp)
    return loss if w is None else loss * w


def np_bce_logits(x, t, w=None, pos_weight=None):
    x, t = np.asarray(x, np.float64), np.asarray(t, np.float64)
    sig = 1 / (1 + np.exp(-x))
    pw = 1.0 if pos_weight is None else pos_weight
    loss = -(pw * t * np.log(sig) + (1 - t) * np.log(1 - sig))
    return loss if w is None else loss * w


def np_kl(lp, t, log_target=False, reduction="mean"):
    lp, t = np.asarray(lp, np.float64), np.asarray(t, np.float64)
    if log_target:
        loss = np.exp(t) * (t - lp)
    else:
        loss = np.array(
            [ti * (np.log(ti) - li) if ti > 0 else 0.0 for ti, li in zip(t.ravel(), lp.ravel())]
        )
        loss = loss.reshape(t.shape)
    if reduction == "batchmean":
        return loss.sum() / lp.shape[0]
    return np_reduce(loss, reduction)


def assert_close(actual, expected, rtol=2e-5, atol=2e-5):
    """A float32 loss against its float64 reference (tests/_numerics.py): per-element
    terms within a few ulp, reduced by sums of <= 60 terms with sum|terms| <= 5 |sum| here
    (1 for the non-negative losses, 2.8 for kl_div, 5.2 for nll): within
    60 U32 * 5 ~ 2e-5 relative in the worst case, whatever the order (< 5e-7 measured)."""
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------------------
# Values against NumPy
# ----------------------------------------------------------------------------------------

ELEMENTWISE = [
    ("mse_loss", {}),
    ("l1_loss", {}),
    ("smooth_l1_loss", {}),
    ("smooth_l1_loss", {"beta": 0.5}),
    ("smooth_l1_loss", {"beta": 0.0}),
    ("huber_loss", {}),
    ("huber_loss", {"delta": 2.0}),
]


@pytest.mark.parametrize("name,kw", ELEMENTWISE, ids=lambda v: str(v))
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_elementwise_losses_match_numpy(name, kw, reduction):
    out = getattr(L, name)(PRED, TARGET, reduction=reduction, **kw)
    expected = np_reduce(np_elementwise(name, PRED, TARGET, **kw), reduction)
    assert out.shape == np.shape(expected) and out.dtype == jnp.float32
    assert_close(out, expected)


def test_smooth_l1_is_huber_over_beta():
    a = L.smooth_l1_loss(PRED, TARGET, beta=0.5, reduction="none")
    b = L.huber_loss(PRED, TARGET, delta=0.5, reduction="none") / 0.5
    assert_close(a, np.asarray(b, np.float64))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ls", [0.0, 0.2])
def test_cross_entropy_index_targets_match_numpy(reduction, weighted, ls):
    w = CLASS_W if weighted else None
    out = L.cross_entropy(LOGITS, LABELS_IGN, w, reduction=reduction, label_smoothing=ls)
    expected = np_cross_entropy_index(LOGITS, LABELS_IGN, w, reduction=reduction, ls=ls)
    assert out.shape == np.shape(expected)
    assert_close(out, expected)


def test_cross_entropy_keeps_no_log_probabilities_for_the_backward_pass():
    """Index targets without smoothing take the lean form (logsumexp - logit[y]): the
    compiled value-and-gradient needs no (N, C) temporaries (XLA's own accounting, so
    independent of the machine's load); log_softmax + nll needs two."""
    x = jax.ShapeDtypeStruct((512, 8192), jnp.float32)
    y = jax.ShapeDtypeStruct((512,), jnp.int32)

    def temporaries(loss):
        compiled = jax.jit(jax.value_and_grad(loss)).lower(x, y).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    logits_bytes = 512 * 8192 * 4
    assert temporaries(L.cross_entropy) < logits_bytes // 4
    assert temporaries(lambda a, b: L.nll_loss(jax.nn.log_softmax(a), b)) >= logits_bytes


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("chunks", [1, 3, 5, 12, 13])  # 5 and 13 do not divide the 12 rows
def test_linear_cross_entropy_is_the_cross_entropy_of_the_projection(reduction, chunks):
    logits = HIDDEN.astype(np.float64) @ PROJ + PROJ_B
    out = L.linear_cross_entropy(
        HIDDEN, PROJ, LABELS_IGN, PROJ_B, chunks=chunks, reduction=reduction
    )
    assert out.dtype == jnp.float32
    assert_close(out, np_cross_entropy_index(logits, LABELS_IGN, reduction=reduction))


def test_linear_cross_entropy_gradients_equal_the_unfused_forms():
    rows = np.array([True, True, False, True])
    args = (HIDDEN, PROJ, PROJ_B)
    plain = lambda x, w, b: L.cross_entropy(x @ w + b, LABELS_IGN, mask=rows)
    # The reference: the unfused form's gradient in float64, itself checked against finite
    # differences. linear_cross_entropy computes its logits and loss in float32 whatever
    # its inputs, so float64 differences cannot check it, and float32 ones (here before,
    # at 1e-2) carry ~1e-3 of rounding that depends on the CPU (tests/_numerics.py).
    check_grads_float64(plain, args)
    with jax.enable_x64(True):
        want = jax.grad(plain, argnums=(0, 1, 2))(*to_float64(args))
    for chunks in (3, 4, 5):  # 5 chunks of 3 rows: the last one padded with 3 absent rows
        fused = lambda x, w, b, c=chunks: L.linear_cross_entropy(
            x, w, LABELS_IGN, b, chunks=c, mask=rows
        )
        got = jax.grad(fused, argnums=(0, 1, 2))(*args)
        for g, r in zip(got, want):
            # float32 against float64: 7-term logits (sum|x w| + |b| < 10) and softmax
            # over 5 classes, then sums over <= 12 rows or 5 classes of terms < 1: ~1e-7
            # typical (sqrt(n) U32 sum|terms|), 4e-8 measured, 10x inside atol=1e-6
            np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)
        assert np.all(np.asarray(got[0])[2] == 0)  # the masked row gets no gradient


def test_linear_cross_entropy_never_holds_all_the_logits():
    """With 16 chunks, value-and-gradient keeps a sixteenth of the logits (XLA's own
    accounting); unchunked it keeps them all, as cross_entropy(x @ w) does."""
    x = jax.ShapeDtypeStruct((2048, 32), jnp.float32)
    w = jax.ShapeDtypeStruct((32, 4096), jnp.float32)
    y = jax.ShapeDtypeStruct((2048,), jnp.int32)

    def temporaries(chunks):
        loss = lambda x, w, y: L.linear_cross_entropy(x, w, y, chunks=chunks)
        step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
        return step.lower(x, w, y).compile().memory_analysis().temp_size_in_bytes

    logits_bytes = 2048 * 4096 * 4
    assert temporaries(16) < logits_bytes // 4
    assert temporaries(1) >= logits_bytes


def test_linear_cross_entropy_in_bfloat16_and_under_vmap():
    x, w = jnp.asarray(HIDDEN, jnp.bfloat16), jnp.asarray(PROJ, jnp.bfloat16)
    out = L.linear_cross_entropy(x, w, LABELS, chunks=2, logits_dtype=jnp.bfloat16)
    assert out.dtype == jnp.float32
    ref = np_cross_entropy_index(np.asarray(x, np.float64) @ np.asarray(w, np.float64), LABELS)
    # bfloat16 logits (rounded by 2^-9 relative, |logits| < 10: < 0.02 absolute) move the
    # mean loss (~2) by < 0.04 in the worst case: rtol=2e-2 holds with 1e-4 of it measured
    np.testing.assert_allclose(out, ref, rtol=2e-2)
    per_row = jax.vmap(lambda h, t: L.linear_cross_entropy(h, PROJ, t, chunks=3))(HIDDEN, LABELS)
    none = L.linear_cross_entropy(HIDDEN, PROJ, LABELS, reduction="none")
    # the same float32 per-row losses, averaged over 3 in float32 or float64: < 4 U32
    np.testing.assert_allclose(per_row, np.mean(np.asarray(none), axis=1), rtol=1e-5)


def test_linear_cross_entropy_errors_name_the_problem():
    with pytest.raises(ValueError, match="chunks must be a positive int, got 0"):
        L.linear_cross_entropy(HIDDEN, PROJ, LABELS, chunks=0)
    with pytest.raises(ShapeError, match=r"expected weight of shape \(6, C\).*got \(5, 6\)"):
        L.linear_cross_entropy(HIDDEN, PROJ.T, LABELS)
    with pytest.raises(ShapeError, match="expected integer target"):
        L.linear_cross_entropy(HIDDEN, PROJ, LABELS.astype(np.float32))
    with pytest.raises(ShapeError, match=r"expected target of shape \(4, 3\)"):
        L.linear_cross_entropy(HIDDEN, PROJ, LABELS[:2])


def test_cross_entropy_custom_ignore_index_and_2d_input():
    x, y = LOGITS[0], np.array([1, 3, 1])
    out = L.cross_entropy(x, y, ignore_index=1)
    assert_close(out, np_cross_entropy_index(x, y, ignore_index=1))
    # An unbatched (C,) input with a scalar target, as PyTorch.
    assert_close(L.cross_entropy(x[0], np.int32(2)), -np_log_softmax(x[0])[2])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ls", [0.0, 0.2])
def test_cross_entropy_probability_targets_match_numpy(reduction, weighted, ls):
    w = CLASS_W if weighted else None
    out = L.cross_entropy(LOGITS, PROBS, w, reduction=reduction, label_smoothing=ls)
    assert_close(out, np_cross_entropy_probs(LOGITS, PROBS, w, reduction=reduction, ls=ls))


def test_cross_entropy_one_hot_probabilities_equal_indices():
    one_hot = np.eye(C, dtype=np.float32)[LABELS]
    assert_close(L.cross_entropy(LOGITS, one_hot), float(L.cross_entropy(LOGITS, LABELS)))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_loss_matches_numpy_and_cross_entropy(reduction, weighted):
    w = CLASS_W if weighted else None
    lp = np.asarray(jax.nn.log_softmax(LOGITS, axis=-1))
    out = L.nll_loss(lp, LABELS_IGN, w, reduction=reduction)
    assert_close(out, np_nll(lp, LABELS_IGN, w, reduction=reduction))
    ce = L.cross_entropy(LOGITS, LABELS_IGN, w, reduction=reduction)
    assert_close(out, np.asarray(ce, np.float64))


@pytest.mark.parametrize("fn", ["cross_entropy", "nll_loss"])
@pytest.mark.parametrize("weighted", [False, True])
def test_all_targets_ignored_gives_nan_mean_and_zero_sum(fn, weighted):
    w = CLASS_W if weighted else None
    ignored = np.full(SHAPE[:-1], IGNORE, np.int32)
    f = getattr(L, fn)
    assert np.isnan(float(f(LOGITS, ignored, w)))  # PyTorch: 0 / 0 = nan
    assert float(f(LOGITS, ignored, w, reduction="sum")) == 0.0
    assert np.all(np.asarray(f(LOGITS, ignored, w, reduction="none")) == 0.0)


@pytest.mark.parametrize("bad", [C, -1])
def test_out_of_range_class_index_gives_nan(bad):
    y = LABELS.copy()
    y[1, 2] = bad
    per = np.asarray(L.cross_entropy(LOGITS, y, reduction="none"))
    assert np.isnan(per[1, 2]) and np.isfinite(np.delete(per.ravel(), 5)).all()
    assert np.isnan(float(L.nll_loss(LOGITS, y)))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_binary_cross_entropy_matches_numpy(reduction, weighted):
    w = ELEM_W if weighted else None
    out = L.binary_cross_entropy(PROB_IN, BIN_T, w, reduction=reduction)
    assert_close(out, np_reduce(np_bce(PROB_IN, BIN_T, w), reduction))


def test_binary_cross_entropy_clamps_log_at_minus_100():
    p = np.array([0.0, 1.0, 0.0, 1.0], np.float32)
    t = np.array([1.0, 0.0, 0.0, 1.0], np.float32)
    out = L.binary_cross_entropy(p, t, reduction="none")
    assert_close(out, [100.0, 100.0, 0.0, 0.0])
    # PyTorch's gradient (p - t) / max(p (1 - p), 1e-12): finite where the logs are clamped.
    g = jax.grad(lambda q: L.binary_cross_entropy(q, t, reduction="sum"))(jnp.asarray(p))
    assert_close(g, [-1e12, 1e12, 0.0, 0.0], rtol=1e-6)  # a quotient by 1e-12: a few ulp


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("pos", [False, True])
def test_bce_with_logits_matches_numpy(reduction, weighted, pos):
    w = ELEM_W if weighted else None
    pw = POS_W if pos else None
    out = L.binary_cross_entropy_with_logits(PRED, BIN_T, w, reduction=reduction, pos_weight=pw)
    assert_close(out, np_reduce(np_bce_logits(PRED, BIN_T, w, pw), reduction))


@pytest.mark.parametrize("reduction", ("mean", "batchmean", "sum", "none"))
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_matches_numpy(reduction, log_target):
    lp = np.asarray(jax.nn.log_softmax(LOGITS, axis=-1))
    if log_target:
        target = np.log(PROBS)
    else:
        target = PROBS.copy()
        target[0, 0] = np.eye(C)[1]  # zeros in the target contribute 0, not nan
    out = L.kl_div(lp, target, reduction=reduction, log_target=log_target)
    assert_close(out, np_kl(lp, target, log_target=log_target, reduction=reduction))


def test_integer_and_bool_targets_are_accepted_by_elementwise_losses():
    t = (BIN_T > 0.5).astype(np.int32)
    a = L.binary_cross_entropy_with_logits(PRED, t)
    assert_close(a, float(L.binary_cross_entropy_with_logits(PRED, t.astype(np.float32))))
    assert_close(L.mse_loss(PRED, t.astype(bool)), float(L.mse_loss(PRED, t.astype(np.float32))))


# ----------------------------------------------------------------------------------------
# PyTorch parity
# ----------------------------------------------------------------------------------------


def _torch_case(torch, name):
    """(funcnet call, torch call) on the shared data; torch gets channels-first tensors."""
    F = torch.nn.functional
    t = torch.tensor
    cf = lambda a: t(np.moveaxis(a, -1, 1))  # (N, d1, C) -> (N, C, d1)
    cases = {
        "mse": (
            lambda r: L.mse_loss(PRED, TARGET, reduction=r),
            lambda r: F.mse_loss(t(PRED), t(TARGET), reduction=r),
        ),
        "l1": (
            lambda r: L.l1_loss(PRED, TARGET, reduction=r),
            lambda r: F.l1_loss(t(PRED), t(TARGET), reduction=r),
        ),
        "smooth_l1": (
            lambda r: L.smooth_l1_loss(PRED, TARGET, reduction=r, beta=0.7),
            lambda r: F.smooth_l1_loss(t(PRED), t(TARGET), reduction=r, beta=0.7),
        ),
        "huber": (
            lambda r: L.huber_loss(PRED, TARGET, reduction=r, delta=1.3),
            lambda r: F.huber_loss(t(PRED), t(TARGET), reduction=r, delta=1.3),
        ),
        "ce_index": (
            lambda r: L.cross_entropy(
                LOGITS, LABELS_IGN, CLASS_W, reduction=r, label_smoothing=0.1
            ),
            lambda r: F.cross_entropy(
                cf(LOGITS), t(LABELS_IGN).long(), t(CLASS_W), reduction=r, label_smoothing=0.1
            ),
        ),
        "ce_probs": (
            lambda r: L.cross_entropy(LOGITS, PROBS, CLASS_W, reduction=r, label_smoothing=0.1),
            lambda r: F.cross_entropy(
                cf(LOGITS), cf(PROBS), t(CLASS_W), reduction=r, label_smoothing=0.1
            ),
        ),
        "ce_2d": (
            lambda r: L.cross_entropy(LOGITS[:, 0], LABELS[:, 0], reduction=r),
            lambda r: F.cross_entropy(t(LOGITS[:, 0]), t(LABELS[:, 0]).long(), reduction=r),
        ),
        "nll": (
            lambda r: L.nll_loss(LOGITS, LABELS_IGN, CLASS_W, reduction=r),
            lambda r: F.nll_loss(cf(LOGITS), t(LABELS_IGN).long(), t(CLASS_W), reduction=r),
        ),
        "bce": (
            lambda r: L.binary_cross_entropy(PROB_IN, BIN_T, ELEM_W, reduction=r),
            lambda r: F.binary_cross_entropy(t(PROB_IN), t(BIN_T), t(ELEM_W), reduction=r),
        ),
        "bce_logits": (
            lambda r: L.binary_cross_entropy_with_logits(
                PRED, BIN_T, ELEM_W, reduction=r, pos_weight=POS_W
            ),
            lambda r: F.binary_cross_entropy_with_logits(
                t(PRED), t(BIN_T), t(ELEM_W), reduction=r, pos_weight=t(POS_W)
            ),
        ),
    }
    return cases[name]


@pytest.mark.torch
@pytest.mark.parametrize(
    "name",
    [
        "mse",
        "l1",
        "smooth_l1",
        "huber",
        "ce_index",
        "ce_probs",
        "ce_2d",
        "nll",
        "bce",
        "bce_logits",
    ],
)
def test_matches_torch(name):
    torch = pytest.importorskip("torch")
    ours, theirs = _torch_case(torch, name)
    for reduction in REDUCTIONS:
        # two float32 losses, each within ~5e-7 (measured) of the exact one (assert_close)
        assert_close(
            ours(reduction), np.asarray(theirs(reduction), np.float64), rtol=1e-5, atol=1e-5
        )


@pytest.mark.torch
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_matches_torch(log_target):
    torch = pytest.importorskip("torch")
    lp = np.asarray(jax.nn.log_softmax(LOGITS, axis=-1))
    target = np.log(PROBS) if log_target else PROBS
    for reduction in ("batchmean", "sum", "none"):  # torch warns on "mean"
        theirs = torch.nn.functional.kl_div(
            torch.tensor(lp), torch.tensor(target), reduction=reduction, log_target=log_target
        )
        assert_close(
            L.kl_div(lp, target, reduction=reduction, log_target=log_target), theirs.numpy()
        )


@pytest.mark.torch
def test_all_ignored_nan_and_bce_gradients_match_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    ignored = np.full(SHAPE[:-1], IGNORE, np.int64)
    theirs = F.cross_entropy(
        torch.tensor(np.moveaxis(LOGITS, -1, 1)), torch.tensor(ignored), label_smoothing=0.1
    )
    assert np.isnan(theirs.item()) and np.isnan(
        float(L.cross_entropy(LOGITS, ignored, label_smoothing=0.1))
    )

    p = np.array([0.0, 1.0, 1e-8, 0.3], np.float32)
    t = np.array([1.0, 0.0, 0.0, 0.6], np.float32)
    tp, tt = torch.tensor(p, requires_grad=True), torch.tensor(t, requires_grad=True)
    F.binary_cross_entropy(tp, tt).backward()
    gp, gt = jax.grad(L.binary_cross_entropy, argnums=(0, 1))(jnp.asarray(p), jnp.asarray(t))
    assert_close(gp, tp.grad.numpy(), rtol=1e-5)  # float32 quotients: a few ulp apart
    # d/dt: PyTorch does not clamp the logs here (inf at p = 0 or 1); funcnet differentiates
    # its clamped forward, giving the finite slope -/+100 / N there.
    assert_close(gt[2:], tt.grad.numpy()[2:], rtol=1e-5)  # float32 quotients, as gp
    assert_close(gt[:2], [25.0, -25.0])


# ----------------------------------------------------------------------------------------
# Gradients (float64, scoped), jit, bf16
# ----------------------------------------------------------------------------------------

GRAD_CASES = {
    "mse": lambda x: L.mse_loss(x, TARGET),
    "l1": lambda x: L.l1_loss(x, TARGET, reduction="sum"),
    "smooth_l1": lambda x: L.smooth_l1_loss(x, TARGET, beta=0.5),
    "smooth_l1_beta0": lambda x: L.smooth_l1_loss(x, TARGET, beta=0.0),  # no 0 / 0
    "huber": lambda x: L.huber_loss(x, TARGET, delta=1.3),
    "ce_index": lambda x: L.cross_entropy(x, LABELS_IGN, CLASS_W, label_smoothing=0.1),
    "ce_probs": lambda x: L.cross_entropy(x, PROBS, CLASS_W, label_smoothing=0.1),
    "nll": lambda x: L.nll_loss(x, LABELS_IGN, CLASS_W, reduction="sum"),
    "bce": lambda x: L.binary_cross_entropy(jax.nn.sigmoid(x), BIN_T, ELEM_W),
    "bce_logits": lambda x: L.binary_cross_entropy_with_logits(x, BIN_T, ELEM_W, pos_weight=POS_W),
    "kl_div": lambda x: L.kl_div(jax.nn.log_softmax(x, axis=-1), PROBS, reduction="batchmean"),
}


@pytest.mark.parametrize("name", sorted(GRAD_CASES))
def test_gradients_match_finite_differences(name):
    # float64 (scoped) so that central differences are accurate to ~1e-8; the kinks of
    # l1/huber/smooth-l1 are more than eps away from every data point.
    with jax.enable_x64(True):
        x = jnp.asarray(
            LOGITS if name in ("ce_index", "ce_probs", "nll", "kl_div") else PRED, jnp.float64
        )
        check_grads(GRAD_CASES[name], (x,), order=1, modes=("fwd", "rev"), eps=1e-6)


def test_bce_gradient_with_respect_to_target():
    with jax.enable_x64(True):
        p, t = jnp.asarray(PROB_IN, jnp.float64), jnp.asarray(BIN_T, jnp.float64)
        check_grads(lambda q, s: L.binary_cross_entropy(q, s, ELEM_W), (p, t), order=1, eps=1e-6)


ALL_LOSSES = {
    "mse": lambda: L.mse_loss(PRED, TARGET, reduction="none"),
    "l1": lambda: L.l1_loss(PRED, TARGET, reduction="sum"),
    "smooth_l1": lambda: L.smooth_l1_loss(PRED, TARGET, beta=0.5),
    "huber": lambda: L.huber_loss(PRED, TARGET, delta=1.3),
    "ce_index": lambda: L.cross_entropy(LOGITS, LABELS_IGN, CLASS_W, label_smoothing=0.1),
    "ce_probs": lambda: L.cross_entropy(LOGITS, PROBS, reduction="none", label_smoothing=0.1),
    "nll": lambda: L.nll_loss(LOGITS, LABELS_IGN, CLASS_W),
    "bce": lambda: L.binary_cross_entropy(PROB_IN, BIN_T, ELEM_W, reduction="none"),
    "bce_logits": lambda: L.binary_cross_entropy_with_logits(PRED, BIN_T, pos_weight=POS_W),
    "kl_div": lambda: L.kl_div(LOGITS, PROBS, reduction="batchmean"),
    "linear_ce": lambda: L.linear_cross_entropy(HIDDEN, PROJ, LABELS_IGN, PROJ_B, chunks=3),
}


class JitTest(chex.TestCase):
    """Every loss gives the same value with and without jit (one program for all)."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_jit_and_eager_agree(self):
        run_all = self.variant(lambda: {k: f() for k, f in ALL_LOSSES.items()})
        out = run_all()
        expected = {k: f() for k, f in ALL_LOSSES.items()}
        for k in ALL_LOSSES:
            # the same float32 terms, reduced in possibly other orders (fused or op by op):
            # sums of <= 60 terms with sum|terms| <= 3 |sum| (5 for nll's 12) are within
            # 2 * 60 U32 * 3 ~ 2.2e-5 relative in the worst case (rtol=1e-6 held with a
            # 6x margin on one CPU only)
            np.testing.assert_allclose(out[k], expected[k], rtol=3e-5, atol=1e-6, err_msg=k)


def test_vmap_gives_per_example_losses():
    # The per-example pattern (e.g. per-example gradients): vmap over N equals "none".
    per_example = jax.vmap(lambda x, y: L.cross_entropy(x, y, CLASS_W, reduction="sum"))(
        LOGITS, LABELS_IGN
    )
    none = L.cross_entropy(LOGITS, LABELS_IGN, CLASS_W, reduction="none")
    assert_close(per_example, np.asarray(none, np.float64).sum(axis=1))
    grads = jax.vmap(jax.grad(lambda x, t: L.mse_loss(x, t)))(PRED, TARGET)
    # a float32 difference, product and quotient each, against the same in float32 NumPy:
    # a few ulp (< 4 U32) apart
    assert_close(grads, 2 * (PRED - TARGET) / np.prod(SHAPE[1:]), rtol=1e-5)


def test_strict_dtype_and_rank_promotion():
    # The library casts and broadcasts explicitly, so it runs under Equinox-style strict
    # promotion (a silent upcast or an accidental broadcast would raise here).
    with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
        out = jax.jit(lambda: {k: f() for k, f in ALL_LOSSES.items()})()
    for k, f in ALL_LOSSES.items():
        # jitted against eager: the bound of JitTest.test_jit_and_eager_agree
        np.testing.assert_allclose(out[k], f(), rtol=3e-5, atol=1e-6, err_msg=k)


def test_traced_label_smoothing_and_no_retrace():
    @jax.jit
    @chex.assert_max_traces(n=1)
    def loss(x, ls):
        return L.cross_entropy(x, LABELS_IGN, label_smoothing=ls)

    for ls in (0.0, 0.2):
        expected = np_cross_entropy_index(LOGITS, LABELS_IGN, ls=ls)
        assert_close(loss(jnp.asarray(LOGITS), ls), expected)


@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_bfloat16_logits_are_stable_and_return_float32(scale):
    x16 = jnp.asarray(LOGITS * scale, jnp.bfloat16)
    exact = np.asarray(x16.astype(jnp.float32))  # the values the bf16 input really holds
    out = L.cross_entropy(x16, LABELS_IGN, CLASS_W, label_smoothing=0.1)
    assert out.dtype == jnp.float32
    # float32 on the exact values the bfloat16 input holds, against float64: a few ulp of
    # logsumexps of values up to 1e4 * 9 and sums of <= 12 terms, ~1e-6 relative at most
    assert_close(out, np_cross_entropy_index(exact, LABELS_IGN, CLASS_W, ls=0.1), rtol=1e-5)
    probs = L.cross_entropy(x16, PROBS, reduction="none")
    assert probs.dtype == jnp.float32 and np.isfinite(np.asarray(probs)).all()
    assert_close(probs, np_cross_entropy_probs(exact, PROBS, reduction="none"), rtol=1e-5)
    bce = L.binary_cross_entropy_with_logits(x16, BIN_T, pos_weight=POS_W, reduction="none")
    assert bce.dtype == jnp.float32
    assert_close(bce, np_bce_logits_stable(exact, BIN_T, POS_W), rtol=1e-5, atol=1e-6)


def np_bce_logits_stable(x, t, pos_weight):
    # log(1 + exp(z)) via logaddexp: the reference itself must not overflow at 1e4.
    x, t = np.asarray(x, np.float64), np.asarray(t, np.float64)
    return (1 - t) * np.logaddexp(0, x) + pos_weight * t * np.logaddexp(0, -x)


def test_bfloat16_gradients_are_finite():
    x16 = jnp.asarray(LOGITS * 1e4, jnp.bfloat16)
    g = jax.grad(lambda x: L.cross_entropy(x, LABELS_IGN))(x16)
    assert g.dtype == jnp.bfloat16 and np.isfinite(np.asarray(g, np.float32)).all()


# ----------------------------------------------------------------------------------------
# Validation at trace time
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call,match",
    [
        (
            lambda: L.mse_loss(PRED, TARGET[0]),
            r"mse_loss: expected target of shape \(4, 3, 5\).*got \(3, 5\)",
        ),
        (
            lambda: L.huber_loss(PRED, TARGET[..., :2]),
            r"huber_loss: expected target of shape \(4, 3, 5\)",
        ),
        (
            lambda: L.cross_entropy(LOGITS, LABELS[:, :2]),
            r"cross_entropy: expected class-index target of shape \(4, 3\).*got \(4, 2\)",
        ),
        (
            lambda: L.cross_entropy(LOGITS, PROBS[..., :4]),
            r"cross_entropy: expected probability target of shape \(4, 3, 5\).*got \(4, 3, 4\)",
        ),
        (
            lambda: L.cross_entropy(LOGITS, LABELS, CLASS_W[:4]),
            r"cross_entropy: expected weight of shape \(5,\)",
        ),
        (
            lambda: L.cross_entropy(LOGITS, LABELS > 2),
            r"cross_entropy: expected an integer .* got dtype bool",
        ),
        (
            lambda: L.cross_entropy(LABELS, LABELS),
            r"cross_entropy: expected floating input, got dtype int32",
        ),
        (
            lambda: L.nll_loss(LOGITS, PROBS),
            r"nll_loss: expected integer target, got dtype float32",
        ),
        (
            lambda: L.binary_cross_entropy(PROB_IN, BIN_T, np.ones(4, np.float32)),
            r"binary_cross_entropy: expected weight broadcastable to the input's shape \(4, 3, 5\), got shape \(4,\)",
        ),
        (
            lambda: L.binary_cross_entropy_with_logits(PRED, BIN_T, pos_weight=np.ones((2, 5))),
            r"binary_cross_entropy_with_logits: expected pos_weight broadcastable",
        ),
        (lambda: L.kl_div(LOGITS, PROBS[:2]), r"kl_div: expected target of shape \(4, 3, 5\)"),
    ],
)
def test_wrong_shapes_and_dtypes_raise_shape_error(call, match):
    with pytest.raises(ShapeError, match=match):
        call()


@pytest.mark.parametrize(
    "call,match",
    [
        (
            lambda: L.mse_loss(PRED, TARGET, reduction="avg"),
            r"mse_loss: reduction must be one of 'mean', 'sum', 'none'; got 'avg'",
        ),
        (
            lambda: L.cross_entropy(LOGITS, LABELS, reduction="batchmean"),
            r"cross_entropy: reduction must be",
        ),
        (
            lambda: L.kl_div(LOGITS, PROBS, reduction="avg"),
            r"kl_div: reduction must be one of 'mean', 'batchmean'",
        ),
        (
            lambda: L.cross_entropy(LOGITS, LABELS, label_smoothing=1.5),
            r"label_smoothing must be in \[0, 1\], got 1.5",
        ),
        (
            lambda: L.cross_entropy(LOGITS, PROBS, ignore_index=0),
            r"ignore_index is not supported for probability",
        ),
        (lambda: L.smooth_l1_loss(PRED, TARGET, beta=-1.0), r"smooth_l1_loss: beta must be >= 0"),
        (lambda: L.huber_loss(PRED, TARGET, delta=0.0), r"huber_loss: delta must be > 0"),
    ],
)
def test_invalid_options_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_shape_error_is_raised_while_tracing():
    with pytest.raises(ShapeError, match="cross_entropy"):
        jax.eval_shape(L.cross_entropy, LOGITS, LABELS[:, :2])


def test_docstring_examples_run():
    result = doctest.testmod(L, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# --- masks: padded rows count in neither the sum nor the mean's denominator ----------------

_RNG = np.random.default_rng(42)
_X = _RNG.normal(size=(6, 4)).astype(np.float32)
_Y = _RNG.integers(0, 4, 6)
_P = (_RNG.uniform(size=(6, 4)) * 0.8 + 0.1).astype(np.float32)
_T = _RNG.uniform(size=(6, 4)).astype(np.float32)
_MASK = np.array([True, True, False, True, False, True])
_W = np.array([0.5, 2.0, 1.0, 3.0], np.float32)


@pytest.mark.parametrize(
    "name, call",
    [
        ("mse", lambda x, y, **k: L.mse_loss(x, y, **k)),
        ("l1", lambda x, y, **k: L.l1_loss(x, y, **k)),
        ("smooth_l1", lambda x, y, **k: L.smooth_l1_loss(x, y, beta=0.5, **k)),
        ("huber", lambda x, y, **k: L.huber_loss(x, y, delta=0.5, **k)),
        ("bce", lambda x, y, **k: L.binary_cross_entropy(jax.nn.sigmoid(x), y, **k)),
        (
            "bce_logits",
            lambda x, y, **k: L.binary_cross_entropy_with_logits(x, y, pos_weight=_W, **k),
        ),
        (
            "kl_batchmean",
            lambda x, y, **k: L.kl_div(x, y, reduction=k.pop("reduction", "batchmean"), **k),
        ),
        ("ce_prob", lambda x, y, **k: L.cross_entropy(x, y, weight=_W, label_smoothing=0.1, **k)),
    ],
)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mask_equals_dropping_the_rows_elementwise(name, call, reduction):
    if name == "kl_batchmean" and reduction == "mean":
        reduction = "batchmean"
    full = call(_X, _T, reduction=reduction, mask=_MASK)
    kept = call(_X[_MASK], _T[_MASK], reduction=reduction)
    # the same float32 terms summed as 24 (with zeros) or as 16, in any order: within
    # (24 + 16) U32 sum|terms| <= 40 U32 * 3.3 |sum| ~ 8e-6 relative (kl's terms cancel
    # most: sum|terms| = 3.3 |sum|); rtol=1e-6 held with a 7x margin on one CPU only
    np.testing.assert_allclose(full, kept, rtol=1e-5)


@pytest.mark.parametrize("fn", ["cross_entropy", "nll_loss"])
def test_mask_with_class_weights_and_ignore_index_matches_pytorch_mean(fn):
    y = _Y.copy()
    y[0] = -100  # ignored as well as masked rows
    loss = getattr(L, fn)
    x = _X if fn == "cross_entropy" else jax.nn.log_softmax(_X)
    full = loss(x, y, _W, mask=_MASK)
    kept = loss(np.asarray(x)[_MASK], y[_MASK], _W)
    # non-negative weighted terms summed over 6 or 4 rows, and their weights: as above
    np.testing.assert_allclose(full, kept, rtol=1e-5)
    none = loss(x, y, _W, reduction="none", mask=_MASK)
    assert np.all(np.asarray(none)[~_MASK] == 0)


def test_masked_rows_may_hold_nan():
    x = _X.copy()
    x[~_MASK] = np.nan
    assert np.isfinite(L.cross_entropy(x, _Y, mask=_MASK))
    assert np.isfinite(L.mse_loss(x, _T, mask=_MASK))


def test_bad_mask_is_reported():
    with pytest.raises(ShapeError, match="mask"):
        L.mse_loss(_X, _T, mask=np.ones(5, bool))
    with pytest.raises(ShapeError, match="mask"):
        L.mse_loss(_X, _T, mask=np.ones(6))
