"""Tests of the margin, ranking, embedding, probabilistic and CTC losses of funcnet.losses
against NumPy float64 references written here (for CTC, a brute-force sum over every
alignment) and torch.nn.functional.

Compilation dominates small tests, so every case (every reduction, the gradient, the masked
and the row-dropped loss) is computed in one jitted program, traced once under strict dtype
and rank promotion; the tests compare its outputs. Shapes: (N, D) = (N, C) = (5, 4).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet.losses as L
from funcnet.errors import ShapeError
from tests._numerics import check_grads_float64

REDUCTIONS = ("mean", "sum", "none")
N, D = 5, 4

_rng = np.random.default_rng(2022)
X1, X2, X3 = (_rng.normal(size=(N, D)).astype(np.float32) for _ in range(3))
SIGN = np.array([1, -1, 1, -1, -1], np.float32)  # (N,) targets of the pair losses
SIGN_ND = _rng.choice([-1.0, 1.0], size=(N, D)).astype(np.float32)
DIST = _rng.uniform(0.0, 2.0, size=(N, D)).astype(np.float32)  # both sides of the hinge
COUNTS = np.array([[0, 1, 2, 5]] * N, np.float32)  # the Stirling term is 0 for t <= 1
RATE = _rng.uniform(0.2, 3.0, size=(N, D)).astype(np.float32)
VAR = _rng.uniform(0.2, 2.0, size=(N, D)).astype(np.float32)
TINY_VAR = np.where(np.arange(D) < 2, 1e-8, 0.5).astype(np.float32)[None].repeat(N, 0)
BIN = (_rng.uniform(size=(N, D)) > 0.5).astype(np.float32)
CLASS_W = _rng.uniform(0.5, 2.0, size=D).astype(np.float32)
LABEL = np.array([0, 3, 1, 2, 3], np.int64)
# -1 ends each list of classes; row 4 lists class 2 twice (it counts twice, as in PyTorch)
MULTI = np.array([[3, 0, -1, 1], [1, -1, 2, 0], [-1, 0, 0, 0], [0, 1, 2, 3], [2, 2, -1, 3]])
MASK = np.array([True, False, True, True, False])


def np_reduce(loss, reduction):
    return {"mean": np.mean, "sum": np.sum, "none": np.asarray}[reduction](loss)


def assert_close(actual, expected, rtol=2e-5, atol=2e-5):
    """float32 against a float64 reference: elementwise terms within a few ulp, then sums of
    <= 20 terms, mostly of one sign (sum|terms| <= 3 |sum| here): within 20 U32 * 3 ~ 4e-6
    relative in the worst case, whatever the order (tests/_numerics.py)."""
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------------------
# NumPy references, float64, written from the definitions (loops where they read better)
# ----------------------------------------------------------------------------------------


def np_cosine_embedding(x1, x2, y, margin=0.0):
    out = []
    for a, b, t in zip(x1, x2, y):
        cos = a @ b / math.sqrt((a @ a + 1e-12) * (b @ b + 1e-12))
        out.append(1 - cos if t == 1 else max(0.0, cos - margin))
    return np.array(out)


def np_margin_ranking(x1, x2, y, margin=0.0):
    return np.maximum(0.0, -y * (x1 - x2) + margin)


def np_hinge_embedding(x, y, margin=1.0):
    return np.where(y == 1, x, np.maximum(0.0, margin - x))


def np_triplet(anchor, positive, negative, margin=1.0, p=2.0, swap=False, eps=1e-6, distance=None):
    def dist(u, v):
        if distance is not None:
            return distance(u, v)
        return np.linalg.norm(u - v + eps, ord=p, axis=-1)

    d_neg = dist(anchor, negative)
    if swap:
        d_neg = np.minimum(d_neg, dist(positive, negative))
    return np.maximum(0.0, margin + dist(anchor, positive) - d_neg)


def np_cosine_distance(u, v):
    return 1 - np.sum(u * v, -1) / (np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1))


def jax_cosine_distance(u, v):
    return 1 - jnp.sum(u * v, -1) / (jnp.linalg.norm(u, axis=-1) * jnp.linalg.norm(v, axis=-1))


def np_poisson(x, t, log_input=True, full=False, eps=1e-8):
    loss = np.exp(x) - t * x if log_input else x - t * np.log(x + eps)
    if full:
        stirling = [ti * np.log(ti) - ti + 0.5 * np.log(2 * np.pi * ti) if ti > 1 else 0.0
                    for ti in t.ravel()]  # fmt: skip
        loss = loss + np.reshape(stirling, t.shape)
    return loss


def np_gaussian(x, t, var, full=False, eps=1e-6):
    if np.ndim(var) == x.ndim - 1:
        var = var[..., None]  # one variance per row of the last axis
    v = np.maximum(var, eps)
    return 0.5 * (np.log(v) + (x - t) ** 2 / v) + (0.5 * np.log(2 * np.pi) if full else 0.0)


def np_multilabel_soft_margin(x, t, w=None):
    sig = 1 / (1 + np.exp(-x))
    loss = -(t * np.log(sig) + (1 - t) * np.log(1 - sig))
    return (loss if w is None else loss * w).mean(axis=-1)


def np_multi_margin(x, y, p=1, margin=1.0, weight=None):
    out = []
    for row, label in zip(x, y):
        terms = [max(0.0, margin - row[label] + row[j]) ** p for j in range(len(row)) if j != label]
        out.append(sum(terms) * (1.0 if weight is None else weight[label]) / len(row))
    return np.array(out)


def np_multilabel_margin(x, target):
    out = []
    for row, tgt in zip(x, target):
        listed = list(itertools.takewhile(lambda k: k >= 0, tgt))
        others = [j for j in range(len(row)) if j not in listed]
        out.append(sum(max(0.0, 1 - row[y] + row[j]) for y in listed for j in others) / len(row))
    return np.array(out)


# ----------------------------------------------------------------------------------------
# The cases: one function, its options, its arguments, its NumPy reference
# ----------------------------------------------------------------------------------------


class Case(NamedTuple):
    fn: Callable[..., Any]  # a funcnet.losses function; torch's has the same name
    kw: dict  # options, the same for funcnet, NumPy and torch unless torch_kw is given
    ref: Callable[..., Any]  # NumPy: (*float64 args, **kw) -> the unreduced loss
    args: tuple
    diff: tuple  # the argnums differentiated
    torch_kw: dict | None = None

    @property
    def id(self) -> str:
        opts = ",".join(f"{k}={getattr(v, '__name__', v)}" for k, v in self.kw.items())
        return f"{self.fn.__name__}({opts})"

    def __call__(self, *args, reduction="mean", mask=None):
        return self.fn(*args, reduction=reduction, mask=mask, **self.kw)


def _pairs(fn, ref, args, diff, options):
    return [Case(fn, kw, ref, args, diff) for kw in options]


CASES = [
    *_pairs(L.cosine_embedding_loss, np_cosine_embedding, (X1, X2, SIGN), (0, 1),
            [{}, {"margin": 0.3}]),
    *_pairs(L.margin_ranking_loss, np_margin_ranking, (X1[:, 0], X2[:, 0], SIGN), (0, 1),
            [{"margin": 0.5}]),
    *_pairs(L.hinge_embedding_loss, np_hinge_embedding, (DIST, SIGN_ND), (0,),
            [{}, {"margin": 0.5}]),
    *_pairs(L.triplet_margin_loss, np_triplet, (X1, X2, X3), (0, 1, 2),
            [{"margin": 0.5, "p": p, "swap": swap}
             for p, swap in ((2.0, False), (1.0, True), (math.inf, True), (0.5, False))]),
    *_pairs(L.triplet_margin_with_distance_loss, np_triplet, (X1, X2, X3), (0, 1, 2),
            [{"swap": True}]),
    Case(L.triplet_margin_with_distance_loss,
         {"distance_function": jax_cosine_distance, "margin": 0.7},
         lambda a, p, n, **kw: np_triplet(a, p, n, 0.7, distance=np_cosine_distance),
         (X1, X2, X3), (0, 1, 2),
         torch_kw={"distance_function": "cosine", "margin": 0.7}),
    *[Case(L.poisson_nll_loss, {"log_input": log, "full": full}, np_poisson,
           (X1 if log else RATE, COUNTS), (0,))
      for log, full in itertools.product((True, False), (False, True))],
    *[Case(L.gaussian_nll_loss, {"full": full}, np_gaussian, (X1, X2, var), (0, 2))
      for var, full in ((VAR, False), (VAR, True), (VAR[:, 0], False),  # (N,): one per row
                        (VAR[:1], True),  # (1, D): one axis of size 1
                        (TINY_VAR, False))],  # clamped at eps
    Case(L.soft_margin_loss, {}, lambda x, y: np.log1p(np.exp(-y * x)), (X1, SIGN_ND), (0,)),
    Case(L.multilabel_soft_margin_loss, {}, np_multilabel_soft_margin, (X1, BIN), (0,)),
    Case(L.multilabel_soft_margin_loss, {}, np_multilabel_soft_margin, (X1, BIN, CLASS_W), (0,)),
    *_pairs(L.multi_margin_loss, np_multi_margin, (X1, LABEL), (0,),
            [{}, {"p": 2, "margin": 0.5, "weight": CLASS_W}, {"margin": 2.0, "weight": CLASS_W}]),
    Case(L.multilabel_margin_loss, {}, np_multilabel_margin, (X1, MULTI), (0,)),
]  # fmt: skip
IDS = [f"{i}-{c.id}" for i, c in enumerate(CASES)]


def _per_row(case, i):
    a = case.args[i]
    var_shared = case.fn is L.gaussian_nll_loss and i == 2 and np.shape(a)[0] != N
    return np.ndim(a) > 0 and np.shape(a)[0] == N and not var_shared


def _with_rows(case, mask):
    """(padded, kept): the arguments with the masked rows holding nan, and without them."""
    padded, kept = [], []
    for i, a in enumerate(case.args):
        if not _per_row(case, i):
            padded.append(a)
            kept.append(a)
            continue
        p = np.array(a)
        if p.dtype == np.float32:
            p[~mask] = np.nan  # padding may hold anything: it must not reach the sums
        padded.append(p)
        kept.append(np.asarray(a)[mask])
    return padded, kept


def _outputs(case):
    values = {r: case(*case.args, reduction=r) for r in REDUCTIONS}
    grads = jax.grad(lambda *a: case(*a), argnums=case.diff)(*case.args)
    padded, kept = _with_rows(case, MASK)
    masked = {r: case(*padded, reduction=r, mask=MASK) for r in ("mean", "sum")}
    dropped = {r: case(*kept, reduction=r) for r in ("mean", "sum")}
    return values, grads, masked, dropped


@functools.cache
def _computed():
    """Every case's outputs from one compiled program, traced under strict promotion: the
    library casts and broadcasts explicitly (a silent upcast or rank broadcast raises)."""
    with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
        return jax.device_get(jax.jit(lambda: [_outputs(c) for c in CASES])())


@pytest.mark.parametrize("i", range(len(CASES)), ids=IDS)
def test_matches_numpy_float64(i):
    case, (values, grads, _, _) = CASES[i], _computed()[i]
    args64 = [a.astype(np.float64) if a.dtype == np.float32 else a for a in case.args]
    ref_kw = {k: v for k, v in case.kw.items() if k != "distance_function"}
    unreduced = case.ref(*args64, **ref_kw)
    for r in REDUCTIONS:
        expected = np_reduce(unreduced, r)
        assert values[r].dtype == jnp.float32 and values[r].shape == np.shape(expected), r
        assert_close(values[r], expected)
    assert all(np.isfinite(np.asarray(g)).all() for g in grads)


@pytest.mark.parametrize("i", range(len(CASES)), ids=IDS)
def test_mask_equals_dropping_the_rows(i):
    _, _, masked, dropped = _computed()[i]
    for r in ("mean", "sum"):
        # the same float32 terms summed over 5 rows (zeros for the masked ones) or over 3
        np.testing.assert_allclose(masked[r], dropped[r], rtol=1e-5, err_msg=r)


def _torch_call(torch, case, tensors, reduction):
    F = torch.nn.functional
    kw = dict(case.torch_kw if case.torch_kw is not None else case.kw)
    if kw.get("distance_function") == "cosine":
        kw["distance_function"] = lambda u, v: 1 - F.cosine_similarity(u, v)
    kw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    return getattr(F, case.fn.__name__)(*tensors, reduction=reduction, **kw)


@pytest.mark.torch
@pytest.mark.parametrize("i", range(len(CASES)), ids=IDS)
def test_matches_torch_values_and_gradients(i):
    torch = pytest.importorskip("torch")
    case, (values, grads, _, _) = CASES[i], _computed()[i]
    tensors = [torch.tensor(a) for a in case.args]
    for k in case.diff:
        tensors[k].requires_grad_(True)
    for r in REDUCTIONS:
        theirs = _torch_call(torch, case, tensors, r).detach().numpy()
        # both float32, the same terms summed in other orders: assert_close's bound
        np.testing.assert_allclose(values[r], theirs, rtol=2e-5, atol=2e-5, err_msg=r)
    _torch_call(torch, case, tensors, "mean").backward()
    for g, k in zip(grads, case.diff):
        # a few float32 roundings per element, against values of order 1 / N: 1e-6 absolute
        np.testing.assert_allclose(g, tensors[k].grad.numpy(), rtol=1e-5, atol=1e-6)


def test_gradients_in_float64():
    """Every loss's gradient (CTC's through log_softmax) against finite differences in
    float64, all in one program. The gaussian's var is not differentiated where clamped:
    there its gradient is PyTorch's straight-through one (checked against torch above)."""
    picked = [c for c in CASES if c.args[-1] is not TINY_VAR]
    picked = [c for i, c in enumerate(picked) if c.fn not in {x.fn for x in picked[:i]}]
    ctc_args = (ctc_targets(0)[:3], CTC_INPUT_LENGTHS[:3], CTC_TARGET_LENGTHS[:3])

    @jax.jit
    def losses(ctc_logits, *diff_args):
        it = iter(diff_args)
        out = []
        for c in picked:
            args = [next(it) if k in c.diff else a for k, a in enumerate(c.args)]
            out.append(c(*args, reduction="sum"))
        lp = jax.nn.log_softmax(ctc_logits, axis=-1)
        out.append(L.ctc_loss(lp, *ctc_args, reduction="sum"))
        return jnp.stack(out)

    check_grads_float64(losses, [CTC_LOGITS[:3]] + [c.args[k] for c in picked for k in c.diff])


@functools.cache
def _specifics():
    """The outputs of the tests below, from one compiled program."""

    def program():
        vmapped = jax.vmap(lambda a, p, n: L.triplet_margin_loss(a, p, n, reduction="none"))
        return {
            "vmap": vmapped(*TRIPLETS),
            "var_grad": jax.grad(lambda v: L.gaussian_nll_loss(X1[0], X2[0], v, reduction="sum"))(
                TINY_VAR[0]
            ),
            "var_float": L.gaussian_nll_loss(X1, X2, 0.5),
            "soft_big": L.soft_margin_loss(
                jnp.array([-100.0, 100.0]), jnp.array([1.0, -1.0]), reduction="none"
            ),
            "ranking_kink": jax.grad(lambda a: L.margin_ranking_loss(a, jnp.ones(1), jnp.ones(1)))(
                jnp.ones(1)
            ),
            "multi_margin_kink": jax.grad(
                lambda x: L.multi_margin_loss(x, jnp.array([1]), reduction="sum")
            )(jnp.array([[0.0, 1.0, 0.0]])),
        }

    return jax.device_get(jax.jit(program)())


TRIPLETS = [np.stack([X1, X2]), np.stack([X2, X3]), np.stack([X3, X1])]


def test_jit_equals_eager_and_vmap():
    case = CASES[2]  # margin_ranking_loss: few operations to run one by one
    jitted = jax.jit(lambda *a: case(*a))(*case.args)
    np.testing.assert_allclose(jitted, case(*case.args), rtol=1e-6)
    loop = [np_triplet(*(t[i].astype(np.float64) for t in TRIPLETS)) for i in range(2)]
    assert_close(_specifics()["vmap"], np.stack(loop))


def test_gaussian_var_is_clamped_with_a_straight_through_gradient():
    v = np.maximum(TINY_VAR[0].astype(np.float64), 1e-6)
    d2 = (X1[0].astype(np.float64) - X2[0]) ** 2
    # d/dv of 0.5 (log v + d2 / v) at the clamped v, also where var < eps (PyTorch's)
    assert_close(_specifics()["var_grad"], 0.5 * (1 / v - d2 / v**2), rtol=1e-5, atol=0)
    assert_close(_specifics()["var_float"], np.mean(np_gaussian(X1, X2, 0.5)))


def test_soft_margin_stays_finite_where_pytorch_overflows():
    np.testing.assert_allclose(_specifics()["soft_big"], [100.0, 100.0])


def test_margin_gradients_at_the_kink_follow_pytorch():
    # clamp_min passes the gradient at 0 (ranking, hinge); multi-margin's `z > 0` does not
    np.testing.assert_array_equal(_specifics()["ranking_kink"], [-1.0])
    np.testing.assert_array_equal(_specifics()["multi_margin_kink"], np.zeros((1, 3)))


# ----------------------------------------------------------------------------------------
# CTC: batch-first (N, T, C), against a brute-force sum over all C**T alignments
# ----------------------------------------------------------------------------------------

CTC_LOGITS = np.random.default_rng(7).normal(size=(5, 5, 3)).astype(np.float32)
CTC_LP = np.asarray(jax.nn.log_softmax(CTC_LOGITS, axis=-1))
CTC_INPUT_LENGTHS = np.array([5, 4, 2, 3, 3])
CTC_TARGET_LENGTHS = np.array([2, 2, 1, 0, 3])  # the last, [a a b], needs 4 frames: inf
CTC_KEEP = np.array([True, False, True, True, False])


def ctc_targets(blank):
    a, b = [k for k in range(3) if k != blank]
    return np.array([[a, b, a], [b, b, a], [a, a, b], [b, b, b], [a, a, b]])


def ctc_concatenated(blank):
    return np.concatenate([t[:s] for t, s in zip(ctc_targets(blank), CTC_TARGET_LENGTHS)])


def np_ctc_brute_force(lp, target, blank):
    """-log of the summed probability of every path of len(lp) frames that collapses
    (repeats merged, then blanks removed) to ``target``."""
    lp = np.asarray(lp, np.float64)
    total = 0.0
    for path in itertools.product(range(lp.shape[1]), repeat=lp.shape[0]):
        merged = [k for i, k in enumerate(path) if i == 0 or k != path[i - 1]]
        if [k for k in merged if k != blank] == list(target):
            total += math.exp(sum(lp[t, k] for t, k in enumerate(path)))
    return -math.log(total) if total > 0 else math.inf


@functools.cache
def ctc_expected(blank):
    targets, lengths = ctc_targets(blank), zip(CTC_INPUT_LENGTHS, CTC_TARGET_LENGTHS)
    return np.array([np_ctc_brute_force(CTC_LP[n, :t], targets[n, :s], blank)
                     for n, (t, s) in enumerate(lengths)])  # fmt: skip


def _ctc_program(lp, input_lengths, target_lengths):
    """Everything the CTC tests compare, one loss per target layout and option (each
    compiles a scan); ``input_lengths`` and ``target_lengths`` are traced (unknown)."""
    padded, flat = ctc_targets(0), ctc_concatenated(0)
    lengths = (input_lengths, target_lengths)
    none = functools.partial(L.ctc_loss, reduction="none")
    zero_inf = functools.partial(L.ctc_loss, zero_infinity=True)
    return {
        # concatenated targets, lengths known: the targets are cut at the longest
        "none": none(lp, flat, CTC_INPUT_LENGTHS, CTC_TARGET_LENGTHS),
        "blank2": none(lp, ctc_targets(2), *lengths, blank=2),
        "mean": zero_inf(lp, padded, *lengths),
        # concatenated targets, lengths traced: padded to the total length
        "sum": zero_inf(lp, flat, *lengths, reduction="sum"),
        "vmap": jax.vmap(none)(lp, padded, *lengths),  # unbatched (T, C) calls
        "masked": zero_inf(
            jnp.where(CTC_KEEP[:, None, None], lp, jnp.nan), padded, *lengths, mask=CTC_KEEP
        ),
        "grad": jax.grad(lambda x: L.ctc_loss(x, padded, *lengths, reduction="sum"))(lp),
    }


@functools.cache
def _ctc():
    return jax.device_get(jax.jit(_ctc_program)(CTC_LP, CTC_INPUT_LENGTHS, CTC_TARGET_LENGTHS))


def test_ctc_matches_brute_force_enumeration():
    out = _ctc()
    # a scan of 5 float32 log-sum-exps against float64: a few ulp of values of order 5
    assert_close(out["none"], ctc_expected(0), rtol=1e-5, atol=1e-5)
    assert_close(out["blank2"], ctc_expected(2), rtol=1e-5, atol=1e-5)
    assert np.isinf(out["none"][-1])  # impossible: inf, as PyTorch


def test_ctc_reductions_and_zero_infinity():
    out, finite = _ctc(), np.where(np.isinf(ctc_expected(0)), 0.0, ctc_expected(0))
    assert_close(out["sum"], finite.sum(), rtol=1e-5, atol=1e-5)
    per_label = finite / np.maximum(CTC_TARGET_LENGTHS, 1)  # PyTorch's "mean"
    assert_close(out["mean"], per_label.mean(), rtol=1e-5, atol=1e-5)
    assert_close(out["masked"], per_label[CTC_KEEP].mean(), rtol=1e-5, atol=1e-5)


def test_ctc_unbatched_and_vmap():
    assert jax.eval_shape(L.ctc_loss, CTC_LP[0], ctc_targets(0)[0], 5, 2).shape == ()
    unbatched = jax.eval_shape(
        functools.partial(L.ctc_loss, reduction="none"), CTC_LP[0], [1], 5, 1
    )
    assert unbatched.shape == ()
    np.testing.assert_allclose(_ctc()["vmap"], _ctc()["none"], rtol=1e-6)  # the same maths


def test_ctc_gradient_is_finite_and_zero_for_an_impossible_target():
    g = _ctc()["grad"]
    assert np.isfinite(np.asarray(g)).all() and np.all(np.any(g[:-1] != 0, axis=(1, 2)))
    np.testing.assert_array_equal(g[-1], 0.0)  # PyTorch's: nan (0 with zero_infinity)


@pytest.mark.torch
def test_ctc_matches_torch_values_and_gradients():
    torch = pytest.importorskip("torch")
    F, out = torch.nn.functional, _ctc()
    lengths = [torch.tensor(a) for a in (CTC_INPUT_LENGTHS, CTC_TARGET_LENGTHS)]
    time_major = torch.tensor(CTC_LP).transpose(0, 1)  # PyTorch's layout: (T, N, C)
    for name, targets, kw in (
        ("none", ctc_concatenated(0), {"reduction": "none"}),
        ("blank2", ctc_targets(2), {"reduction": "none", "blank": 2}),
        ("mean", ctc_targets(0), {"zero_infinity": True}),
        ("sum", ctc_concatenated(0), {"reduction": "sum", "zero_infinity": True}),
    ):
        theirs = F.ctc_loss(time_major, torch.tensor(targets), *lengths, **kw).numpy()
        # float32 log-sum-exps in both, in other orders: a few ulp of values of order 5
        np.testing.assert_allclose(out[name], theirs, rtol=1e-5, atol=1e-5, err_msg=name)
    # with respect to log_probs, PyTorch's gradient adds exp(log_probs) on the used frames, a
    # term that the backward pass of log_softmax cancels: the logits' gradients agree
    lp = time_major.clone().requires_grad_(True)
    targets = torch.tensor(ctc_targets(0))
    F.ctc_loss(lp, targets, *lengths, reduction="sum", zero_infinity=True).backward()
    theirs = lp.grad.transpose(0, 1).numpy()
    used = np.arange(5)[None, :, None] < CTC_INPUT_LENGTHS[:, None, None]
    used[-1] = False  # zero_infinity: the impossible sample's gradient is 0
    ours = out["grad"]
    np.testing.assert_allclose(ours + np.exp(CTC_LP) * used, theirs, rtol=1e-5, atol=1e-6)
    probs = np.exp(CTC_LP)  # log_softmax's backward: g - softmax * sum(g)
    to_logits = lambda g: g - probs * g.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(to_logits(ours), to_logits(theirs), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------
# Validation at trace time
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: L.cosine_embedding_loss(X1, X2[:, :3], SIGN),
         r"cosine_embedding_loss: expected input2 of shape \(5, 4\).*got \(5, 3\)"),
        (lambda: L.cosine_embedding_loss(X1, X2, SIGN[:4]),
         r"cosine_embedding_loss: expected target of shape \(5,\).*got \(4,\)"),
        (lambda: L.cosine_embedding_loss(X1[None], X2[None], SIGN[None]),
         r"cosine_embedding_loss: expected input1 of shape \(D,\) or \(N, D\), got \(1, 5, 4\)"),
        (lambda: L.margin_ranking_loss(X1[:, 0], X2[:4, 0], SIGN),
         r"margin_ranking_loss: expected input2 of shape \(5,\).*got \(4,\)"),
        (lambda: L.hinge_embedding_loss(DIST, SIGN),
         r"hinge_embedding_loss: expected target of shape \(5, 4\).*got \(5,\)"),
        (lambda: L.triplet_margin_loss(X1, X2, X3[:, :2]),
         r"triplet_margin_loss: expected negative of shape \(5, 4\).*got \(5, 2\)"),
        (lambda: L.triplet_margin_with_distance_loss(X1, X2, X3[0], distance_function=jnp.subtract),
         r"triplet_margin_with_distance_loss: expected anchor, positive and negative of one rank"),
        (lambda: L.poisson_nll_loss(X1, COUNTS[:2]),
         r"poisson_nll_loss: expected target of shape \(5, 4\).*got \(2, 4\)"),
        (lambda: L.gaussian_nll_loss(X1, X2, VAR[:, :2]),
         r"gaussian_nll_loss: expected var of the input's shape \(5, 4\).*got \(5, 2\)"),
        (lambda: L.soft_margin_loss(X1, SIGN),
         r"soft_margin_loss: expected target of shape \(5, 4\).*got \(5,\)"),
        (lambda: L.multilabel_soft_margin_loss(X1, BIN, CLASS_W[:3]),
         r"multilabel_soft_margin_loss: expected weight broadcastable .* \(5, 4\), got shape \(3,\)"),
        (lambda: L.multi_margin_loss(X1, LABEL[:3]),
         r"multi_margin_loss: expected target of shape \(5,\).*got \(3,\)"),
        (lambda: L.multi_margin_loss(X1, X2),
         r"multi_margin_loss: expected integer target, got dtype float32"),
        (lambda: L.multi_margin_loss(X1, LABEL, weight=CLASS_W[:2]),
         r"multi_margin_loss: expected weight of shape \(4,\)"),
        (lambda: L.multilabel_margin_loss(X1, MULTI[:, :2]),
         r"multilabel_margin_loss: expected target of shape \(5, 4\).*got \(5, 2\)"),
        (lambda: L.multilabel_margin_loss(X1[None], MULTI[None]),
         r"multilabel_margin_loss: expected input of shape \(N, C\) or \(C,\), got \(1, 5, 4\)"),
        (lambda: L.ctc_loss(CTC_LP[0, 0], [1], 1, 1),
         r"ctc_loss: expected log_probs of shape \(N, T, C\) or \(T, C\), got \(3,\)"),
        (lambda: L.ctc_loss(CTC_LP, ctc_targets(0)[:2], CTC_INPUT_LENGTHS, CTC_TARGET_LENGTHS),
         r"ctc_loss: expected padded targets of shape \(5, S\), got \(2, 3\)"),
        (lambda: L.ctc_loss(CTC_LP, ctc_targets(0), CTC_INPUT_LENGTHS[:3], CTC_TARGET_LENGTHS),
         r"ctc_loss: expected input_lengths of shape \(5,\) \(one per sample\), got \(3,\)"),
        (lambda: L.ctc_loss(CTC_LP, ctc_targets(0) * 1.0, CTC_INPUT_LENGTHS, CTC_TARGET_LENGTHS),
         r"ctc_loss: expected integer targets, got dtype float"),
        (lambda: L.ctc_loss(LABEL, ctc_targets(0), CTC_INPUT_LENGTHS, CTC_TARGET_LENGTHS),
         r"ctc_loss: expected floating log_probs, got dtype int"),
        (lambda: L.triplet_margin_loss(X1, X2, LABEL),
         r"triplet_margin_loss: expected floating negative, got dtype int"),
    ],
)  # fmt: skip
def test_wrong_shapes_and_dtypes_raise_shape_error(call, match):
    with pytest.raises(ShapeError, match=match):
        jax.eval_shape(call)  # raised while tracing: nothing is compiled


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: L.triplet_margin_loss(X1, X2, X3, margin=0.0),
         r"triplet_margin_loss: margin must be > 0, got 0.0"),
        (lambda: L.triplet_margin_with_distance_loss(X1, X2, X3, margin=-1.0),
         r"triplet_margin_with_distance_loss: margin must be > 0"),
        (lambda: L.multi_margin_loss(X1, LABEL, p=3),
         r"multi_margin_loss: p must be 1 or 2, got 3"),
        (lambda: L.gaussian_nll_loss(X1, X2, -1.0), r"gaussian_nll_loss: var must be >= 0"),
        (lambda: L.gaussian_nll_loss(X1, X2, -VAR), r"gaussian_nll_loss: var has negative"),
        (lambda: L.soft_margin_loss(X1, SIGN_ND, reduction="batchmean"),
         r"soft_margin_loss: reduction must be one of 'mean', 'sum', 'none'; got 'batchmean'"),
        (lambda: L.ctc_loss(CTC_LP, ctc_targets(0), CTC_INPUT_LENGTHS, CTC_TARGET_LENGTHS, blank=3),
         r"ctc_loss: blank must be an int in \[0, 3\), got 3"),
        (lambda: L.ctc_loss(CTC_LP, ctc_targets(0), CTC_INPUT_LENGTHS + 1, CTC_TARGET_LENGTHS),
         r"ctc_loss: expected input_lengths in \[0, 5\], got \[6, 5, 3, 4, 4\]"),
        (lambda: L.ctc_loss(CTC_LP, ctc_targets(0), CTC_INPUT_LENGTHS, CTC_TARGET_LENGTHS + 2),
         r"ctc_loss: expected target_lengths in \[0, 3\], got \[4, 4, 3, 2, 5\]"),
    ],
)  # fmt: skip
def test_invalid_options_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(call)
