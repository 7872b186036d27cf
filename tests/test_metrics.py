"""Tests of funcnet.metrics against NumPy references of scikit-learn's definitions.

scikit-learn is not a dependency: the references below re-implement its documented
definitions (label sets, zero_division=0, force_finite R2) sample by sample.
Data shapes are shared across tests (XLA compiles once per shape): N = 24 samples,
C = 4 classes, streamed as 3 batches of 8.
"""

from __future__ import annotations

import doctest
import functools
import inspect
import pathlib
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet.metrics as M
from funcnet.errors import ShapeError
from funcnet.metrics import _classification, _metric, _regression

N, C, B = 24, 4, 8  # samples, classes, batch size
_rng = np.random.default_rng(7)
LOGITS = _rng.normal(size=(N, C)).astype(np.float32)
# Targets agree with the argmax ~60% of the time, so every score is far from 0 and 1.
TARGETS = np.where(_rng.random(N) < 0.6, LOGITS.argmax(-1), _rng.integers(0, C, N)).astype(np.int32)
PRED_LABELS = LOGITS.argmax(-1).astype(np.int32)
MASK = np.ones(N, bool)
MASK[-5:] = False  # a padded last batch
WEIGHTS = _rng.uniform(0.2, 2.0, N).astype(np.float32)
BIN_PRED = (_rng.random(N) < 0.5).astype(np.int32)
BIN_TARGET = np.where(_rng.random(N) < 0.7, BIN_PRED, 1 - BIN_PRED).astype(np.int32)
# Regression: 2 outputs, targets with a large mean against their spread.
Y = (_rng.normal(size=(N, 2)) + np.array([3.0, -1.0])).astype(np.float32)
YHAT = (Y + 0.5 * _rng.normal(size=(N, 2))).astype(np.float32)

AVERAGES = ("micro", "macro", "weighted", None)


# ----------------------------------------------------------------------------------------
# NumPy references (scikit-learn's definitions)
# ----------------------------------------------------------------------------------------


def np_div(a, b):
    return a / b if b != 0 else 0.0


def np_counts(y_true, y_pred, labels, w):
    """Per label (tp, fp, fn, support), as sklearn's multilabel_confusion_matrix."""
    w = np.ones(len(y_true)) if w is None else np.asarray(w, np.float64)
    rows = []
    for label in labels:
        t, p = y_true == label, y_pred == label
        rows.append(
            (np.sum(w * (t & p)), np.sum(w * (~t & p)), np.sum(w * (t & ~p)), np.sum(w * t))
        )
    return np.array(rows).reshape(-1, 4)


def np_prf(metric, y_true, y_pred, average, num_classes=None, pos_label=1, w=None):
    if average == "binary":
        labels = [pos_label]
    elif average is None:
        labels = list(range(num_classes))  # sklearn with labels=range(C)
    else:
        labels = sorted(set(y_true.tolist()) | set(y_pred.tolist()))  # sklearn's default
    tp, fp, fn, support = np_counts(y_true, y_pred, labels, w).T
    if average == "micro":
        tp, fp, fn = [tp.sum()], [fp.sum()], [fn.sum()]

    def score(tp, fp, fn):
        if metric == "precision":
            return np_div(tp, tp + fp)
        if metric == "recall":
            return np_div(tp, tp + fn)
        return np_div(2 * tp, 2 * tp + fp + fn)

    scores = np.array([score(*z) for z in zip(tp, fp, fn)])
    if average is None:
        return scores
    if average == "weighted":
        return np_div(np.sum(scores * support), np.sum(support))
    return scores.mean() if len(scores) else 0.0


def np_confusion(y_true, y_pred, num_classes, w=None):
    cm = np.zeros((num_classes, num_classes))
    for i, (t, p) in enumerate(zip(y_true, y_pred)):
        if 0 <= t < num_classes and 0 <= p < num_classes:
            cm[t, p] += 1 if w is None else w[i]
    return cm


def np_accuracy(y_true, scores_or_labels, top_k=1, w=None):
    w = np.ones(len(y_true)) if w is None else np.asarray(w, np.float64)
    hits = []
    for t, s in zip(y_true, scores_or_labels):
        if np.ndim(s) == 0:
            hits.append(s == t)
        else:  # no ties in random float scores
            hits.append(t in np.argsort(-s)[:top_k])
    return np_div(np.sum(w * np.array(hits)), np.sum(w))


def np_regression(metric, y, yhat, w=None, multioutput="uniform_average"):
    y, yhat = np.asarray(y, np.float64), np.asarray(yhat, np.float64)
    w = np.ones(len(y)) if w is None else np.asarray(w, np.float64)
    if metric == "mse":
        raw = np.average((y - yhat) ** 2, axis=0, weights=w)
    elif metric == "mae":
        raw = np.average(np.abs(y - yhat), axis=0, weights=w)
    else:
        if len(y) < 2:
            return np.nan
        num = (w[:, None] * (y - yhat) ** 2).sum(0) if y.ndim > 1 else (w * (y - yhat) ** 2).sum()
        mean = np.average(y, axis=0, weights=w)
        den = (w[:, None] * (y - mean) ** 2).sum(0) if y.ndim > 1 else (w * (y - mean) ** 2).sum()
        num, den = np.atleast_1d(num), np.atleast_1d(den)
        raw = np.ones_like(num)
        ok = (den != 0) & (num != 0)
        raw[ok] = 1 - num[ok] / den[ok]
        raw[(num != 0) & (den == 0)] = 0.0
        if multioutput == "variance_weighted" and np.any(den != 0):
            return np.average(raw, weights=den)
        raw = raw if y.ndim > 1 else raw[0]
    return raw if multioutput == "raw_values" else np.mean(raw)


def assert_close(actual, expected, rtol=1e-5, atol=1e-6):
    """A float32 metric against its float64 reference (tests/_numerics.py): counts are exact,
    and sums over <= 24 samples (x 2 outputs) with sum|terms| <= 3 |sum| are within
    48 U32 * 3 ~ 9e-6 relative in the worst case, whatever the order (< 2e-7 measured)."""
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------------------
# One-shot classification metrics
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_accuracy_matches_numpy_with_mask_and_weights(top_k):
    assert_close(M.accuracy(LOGITS, TARGETS, top_k), np_accuracy(TARGETS, LOGITS, top_k))
    masked = M.accuracy(LOGITS, TARGETS, top_k, mask=MASK)
    assert_close(masked, np_accuracy(TARGETS[MASK], LOGITS[MASK], top_k))
    weighted = M.accuracy(LOGITS, TARGETS, top_k, mask=MASK, sample_weight=WEIGHTS)
    assert_close(weighted, np_accuracy(TARGETS[MASK], LOGITS[MASK], top_k, WEIGHTS[MASK]))
    assert masked.dtype == weighted.dtype == jnp.float32


def test_accuracy_of_labels_equals_accuracy_of_scores():
    assert_close(M.accuracy(PRED_LABELS, TARGETS), float(M.accuracy(LOGITS, TARGETS)))
    assert_close(M.accuracy(PRED_LABELS, TARGETS), np_accuracy(TARGETS, PRED_LABELS))


def test_accuracy_ties_go_to_the_lower_class_index():
    scores = np.array([[1.0, 3.0, 3.0, 0.0]], np.float32)
    assert float(M.accuracy(scores, np.array([1]))) == 1.0
    assert float(M.accuracy(scores, np.array([2]))) == 0.0
    assert (
        float(M.accuracy(np.array([[3.0, 1.0, 3.0, 3.0]], np.float32), np.array([2]), top_k=2))
        == 1.0
    )


def test_sequence_targets_with_per_sample_mask():
    # (N, T) token targets; a (N,) mask drops whole sequences, a (N, T) mask single tokens.
    scores, targets = LOGITS.reshape(6, 4, C), TARGETS.reshape(6, 4)
    row_mask = np.array([True] * 5 + [False])
    expected = np_accuracy(targets[:5].ravel(), scores[:5].reshape(-1, C))
    assert_close(M.accuracy(scores, targets, mask=row_mask), expected)
    assert_close(M.accuracy(scores, targets, mask=np.repeat(row_mask[:, None], 4, 1)), expected)


@pytest.mark.parametrize("weighted", [False, True])
def test_confusion_matrix_matches_numpy(weighted):
    w = WEIGHTS if weighted else None
    cm = M.confusion_matrix(LOGITS, TARGETS, C, mask=MASK, sample_weight=w)
    expected = np_confusion(TARGETS[MASK], PRED_LABELS[MASK], C, None if w is None else w[MASK])
    assert cm.dtype == (jnp.float32 if weighted else jnp.int32)
    assert_close(cm, expected)
    assert_close(M.confusion_matrix(PRED_LABELS, TARGETS, C, mask=MASK, sample_weight=w), expected)


def test_confusion_matrix_rows_are_true_classes_and_drops_out_of_range():
    cm = M.confusion_matrix(np.array([1, 1, 2, 0]), np.array([0, 0, -100, 3]), num_classes=3)
    np.testing.assert_array_equal(cm, [[0, 2, 0], [0, 0, 0], [0, 0, 0]])


@pytest.mark.parametrize("metric", ["precision", "recall", "f1"])
@pytest.mark.parametrize("average", AVERAGES)
def test_prf_match_numpy(metric, average):
    fn = getattr(M, "f1_score" if metric == "f1" else metric)
    out = fn(LOGITS, TARGETS, average=average)  # num_classes from the scores
    assert_close(out, np_prf(metric, TARGETS, PRED_LABELS, average, C))
    out = fn(PRED_LABELS, TARGETS, average=average, num_classes=C, mask=MASK, sample_weight=WEIGHTS)
    m = MASK
    assert_close(out, np_prf(metric, TARGETS[m], PRED_LABELS[m], average, C, w=WEIGHTS[m]))


@pytest.mark.parametrize("metric", ["precision", "recall", "f1"])
@pytest.mark.parametrize("pos_label", [0, 1])
def test_binary_prf_match_numpy(metric, pos_label):
    fn = getattr(M, "f1_score" if metric == "f1" else metric)
    out = fn(BIN_PRED, BIN_TARGET, pos_label=pos_label, mask=MASK)
    assert_close(
        out, np_prf(metric, BIN_TARGET[MASK], BIN_PRED[MASK], "binary", pos_label=pos_label)
    )
    # Two-class scores give the same labels through argmax.
    scores = np.eye(2, dtype=np.float32)[BIN_PRED]
    assert_close(fn(scores, BIN_TARGET, pos_label=pos_label, mask=MASK), float(out))


def test_macro_averages_over_present_classes_only():
    # Class 3 occurs in neither targets nor predictions: sklearn's default label set skips it.
    preds, targets = np.array([0, 1, 1, 2, 2, 0]), np.array([0, 1, 2, 2, 1, 0])
    for metric, fn in (("precision", M.precision), ("recall", M.recall), ("f1", M.f1_score)):
        expected = np_prf(metric, targets, preds, "macro")
        assert_close(fn(preds, targets, average="macro", num_classes=4), expected)
        per_class = np.asarray(fn(preds, targets, average=None, num_classes=4))
        assert per_class[3] == 0.0 and not np.isclose(per_class.mean(), expected)


def test_zero_division_gives_zero():
    preds, targets = np.zeros(4, np.int32), np.zeros(4, np.int32)
    for fn in (M.precision, M.recall, M.f1_score):  # class 1 never predicted nor true
        assert float(fn(preds, targets)) == 0.0
    nothing = np.zeros(4, bool)
    assert float(M.accuracy(preds, targets, mask=nothing)) == 0.0
    assert float(M.f1_score(preds, targets, average="weighted", num_classes=2, mask=nothing)) == 0.0
    assert float(M.precision(preds, targets, average="macro", num_classes=2, mask=nothing)) == 0.0


# ----------------------------------------------------------------------------------------
# One-shot regression metrics
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["mse", "mae", "r2"])
@pytest.mark.parametrize("multioutput", ["uniform_average", "raw_values"])
def test_regression_matches_numpy(metric, multioutput):
    fn = {"mse": M.mean_squared_error, "mae": M.mean_absolute_error, "r2": M.r2_score}[metric]
    assert_close(
        fn(YHAT, Y, multioutput=multioutput),
        np_regression(metric, Y, YHAT, multioutput=multioutput),
    )
    out = fn(YHAT, Y, mask=MASK, sample_weight=WEIGHTS, multioutput=multioutput)
    expected = np_regression(metric, Y[MASK], YHAT[MASK], WEIGHTS[MASK], multioutput)
    assert out.shape == np.shape(expected) and out.dtype == jnp.float32
    assert_close(out, expected)
    assert_close(fn(YHAT[:, 0], Y[:, 0]), np_regression(metric, Y[:, 0], YHAT[:, 0]))


def test_r2_variance_weighted_and_edge_cases():
    expected = np_regression("r2", Y, YHAT, multioutput="variance_weighted")
    assert_close(M.r2_score(YHAT, Y, multioutput="variance_weighted"), expected)
    const = np.full(4, 2.0, np.float32)
    assert float(M.r2_score(const, const)) == 1.0  # perfect on constant targets
    assert float(M.r2_score(const + 1, const)) == 0.0  # force_finite
    one = np.array([True, False, False, False])
    assert np.isnan(float(M.r2_score(const + 1, const, mask=one)))  # < 2 samples


def test_regression_ignores_garbage_in_masked_rows():
    bad = YHAT.copy()
    bad[~MASK] = np.inf
    for fn in (M.mean_squared_error, M.mean_absolute_error, M.r2_score):
        assert_close(fn(bad, Y, mask=MASK), float(fn(YHAT[MASK], Y[MASK])))
    assert np.isnan(float(M.mean_squared_error(YHAT, Y, mask=np.zeros(N, bool))))


# ----------------------------------------------------------------------------------------
# Streaming accumulators
# ----------------------------------------------------------------------------------------


def batches(*arrays):
    """Split arrays of N samples into N // B batches stacked on a new leading axis."""
    return [np.stack(np.split(a, N // B)) for a in arrays]


CLASSIFIERS = {
    "acc": (M.Accuracy(), lambda: M.accuracy(LOGITS[MASK], TARGETS[MASK])),
    "top2": (M.Accuracy(top_k=2), lambda: M.accuracy(LOGITS[MASK], TARGETS[MASK], top_k=2)),
    "cm": (M.ConfusionMatrix(C), lambda: M.confusion_matrix(LOGITS[MASK], TARGETS[MASK], C)),
    **{
        f"{cls.__name__}-{avg}": (
            cls(num_classes=C, average=avg),
            lambda fn=fn, avg=avg: fn(LOGITS[MASK], TARGETS[MASK], average=avg),
        )
        for cls, fn in ((M.Precision, M.precision), (M.Recall, M.recall), (M.F1Score, M.f1_score))
        for avg in AVERAGES
    },
}


BINARY = {
    f"{cls.__name__}-binary-{pos}": (cls(pos_label=pos), fn, pos)
    for cls, fn in ((M.Precision, M.precision), (M.Recall, M.recall), (M.F1Score, M.f1_score))
    for pos in (0, 1)
}


@pytest.mark.parametrize("name", sorted(BINARY))
def test_streaming_binary_equals_one_shot(name):
    metric, fn, pos_label = BINARY[name]
    state = metric.init()
    for preds, targets, mask in zip(*batches(BIN_PRED, BIN_TARGET, MASK)):
        state = metric.update(state, preds, targets, mask=mask)
    expected = np_prf(
        metric._metric, BIN_TARGET[MASK], BIN_PRED[MASK], "binary", pos_label=pos_label
    )
    assert_close(metric.compute(state), expected)
    assert_close(
        metric.compute(state), float(fn(BIN_PRED, BIN_TARGET, pos_label=pos_label, mask=MASK))
    )


ACCUMULATORS = [
    (M.Mean(), (Y,), {"weights": WEIGHTS, "mask": MASK}),
    (M.Accuracy(top_k=2), (LOGITS, TARGETS), {"mask": MASK}),
    (M.ConfusionMatrix(C), (LOGITS, TARGETS), {"mask": MASK}),
    (M.F1Score(C, "macro"), (PRED_LABELS, TARGETS), {"mask": MASK}),
    (M.MeanSquaredError((2,)), (YHAT, Y), {"mask": MASK, "sample_weight": WEIGHTS}),
    (M.MeanAbsoluteError((2,)), (YHAT, Y), {"sample_weight": WEIGHTS}),
    (M.R2Score((2,)), (YHAT, Y), {"mask": MASK, "sample_weight": WEIGHTS}),
    (M.MetricCollection({"a": M.Accuracy(), "p": M.Precision(C, None)}), (LOGITS, TARGETS), {}),
]


@pytest.mark.parametrize("x64", [False, True])
def test_update_keeps_state_shapes_and_dtypes(x64):
    # What lax.scan carries and donation need; checked abstractly (no compilation), also
    # with x64 enabled, where integer sums would otherwise widen to int64.
    def signature(tree):
        return jax.tree.map(lambda a: (a.shape, jnp.dtype(a.dtype)), tree)

    with jax.enable_x64(x64):
        for metric, args, kwargs in ACCUMULATORS:
            init = jax.eval_shape(metric.init)
            update = functools.partial(metric.update, **kwargs)
            assert signature(jax.eval_shape(update, init, *args)) == signature(init), metric
            assert signature(jax.eval_shape(metric.merge, init, init)) == signature(init), metric


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_streaming_classification_equals_one_shot(name):
    metric, one_shot = CLASSIFIERS[name]
    state = metric.init()
    for logits, targets, mask in zip(*batches(LOGITS, TARGETS, MASK)):
        state = metric.update(state, logits, targets, mask=mask)
    assert_close(metric.compute(state), np.asarray(one_shot(), np.float64))


def test_confusion_matrix_accumulator_gives_every_average():
    m = M.ConfusionMatrix(C)
    state = m.update(m.init(), LOGITS, TARGETS, mask=MASK)
    assert_close(m.accuracy(state), float(M.accuracy(LOGITS, TARGETS, mask=MASK)))
    for average in AVERAGES:
        for metric, fn in (
            ("precision", M.precision),
            ("recall", M.recall),
            ("f1_score", M.f1_score),
        ):
            expected = np.asarray(fn(LOGITS, TARGETS, average=average, mask=MASK), np.float64)
            assert_close(getattr(m, metric)(state, average=average), expected)
    binary = M.ConfusionMatrix(2)
    s = binary.update(binary.init(), BIN_PRED, BIN_TARGET)
    assert_close(
        binary.f1_score(s, average="binary", pos_label=0),
        float(M.f1_score(BIN_PRED, BIN_TARGET, pos_label=0)),
    )


REGRESSORS = {
    "mse": (M.MeanSquaredError, M.mean_squared_error),
    "mae": (M.MeanAbsoluteError, M.mean_absolute_error),
    "r2": (M.R2Score, M.r2_score),
}


@pytest.mark.parametrize("name", sorted(REGRESSORS))
@pytest.mark.parametrize("multioutput", ["uniform_average", "raw_values"])
def test_streaming_regression_equals_one_shot(name, multioutput):
    cls, fn = REGRESSORS[name]
    metric = cls(output_shape=(2,), multioutput=multioutput)
    state = metric.init()
    for yhat, y, mask, w in zip(*batches(YHAT, Y, MASK, WEIGHTS)):
        state = metric.update(state, yhat, y, mask=mask, sample_weight=w)
    expected = fn(YHAT, Y, mask=MASK, sample_weight=WEIGHTS, multioutput=multioutput)
    assert_close(metric.compute(state), np.asarray(expected, np.float64))


def test_streaming_r2_is_accurate_in_float32_for_offset_targets():
    # Targets 1e4 +- 1: raw moments in float32 would lose the variance entirely
    # (sum y**2 ~ 2.4e9, 1 ulp ~ 256); Chan's merge keeps it.
    y = (1e4 + _rng.normal(size=N)).astype(np.float32)
    yhat = (y + 0.3 * _rng.normal(size=N)).astype(np.float32)
    metric = M.R2Score()
    state = metric.init()
    for a, b in zip(*batches(yhat, y)):
        state = metric.update(state, a, b)
    # Each float32 batch mean of 8 targets ~1e4 is within 8 U32 * 1e4 ~ 5e-3 in the worst
    # case (any order); Chan's merge weighs the means' differences (~0.35) into SStot (~23)
    # through ~3 * 8 * 2 * 0.35 * 5e-3 ~ 0.08, so 1 - R2 (~0.09) moves by up to 3.5e-3 of
    # itself: 3e-4. rtol=1e-4 passed on one CPU with 3x margin (2.7e-5); raw moments would
    # be off by ~100 %.
    assert_close(metric.compute(state), np_regression("r2", y, yhat), rtol=5e-4)


def test_mean_with_weights_mask_and_garbage_in_padding():
    m = M.Mean()
    values = np.array([1.0, 2.0, 3.0, np.nan], np.float32)
    s = m.update(m.init(), values, mask=np.array([True, True, True, False]))
    s = m.update(s, np.float32(10.0), weights=2.0)
    s = m.update(s, values[:2], weights=np.array([1.0, 0.0], np.float32))
    assert_close(m.compute(s), (1 + 2 + 3 + 20 + 1) / 6)
    assert np.isnan(float(m.compute(m.init())))


def test_merge_of_partial_states_equals_one_stream():
    for metric, args in (
        (M.F1Score(num_classes=C, average="macro"), (LOGITS, TARGETS)),
        (M.R2Score(output_shape=(2,)), (YHAT, Y)),
        (M.Mean(), (Y[:, 0],)),
    ):
        split = list(zip(*batches(*args)))
        first = metric.update(metric.init(), *split[0])
        second = metric.update(metric.update(metric.init(), *split[1]), *split[2])
        whole = metric.init()
        for batch in split:
            whole = metric.update(whole, *batch)
        merged = metric.compute(metric.merge(first, second))
        assert_close(merged, np.asarray(metric.compute(whole), np.float64))


def test_metric_collection():
    coll = M.MetricCollection(
        {
            "acc": M.Accuracy(),
            "f1": M.F1Score(num_classes=C, average="macro"),
            "cm": M.ConfusionMatrix(C),
        }
    )
    state = coll.init()
    for logits, targets, mask in zip(*batches(LOGITS, TARGETS, MASK)):
        state = coll.update(state, logits, targets, mask=mask)
    out = coll.compute(state)
    assert list(out) == ["acc", "f1", "cm"] and list(coll) == ["acc", "f1", "cm"]
    assert_close(out["acc"], float(M.accuracy(LOGITS, TARGETS, mask=MASK)))
    assert_close(out["f1"], float(M.f1_score(LOGITS, TARGETS, average="macro", mask=MASK)))
    assert_close(out["cm"], np.asarray(M.confusion_matrix(LOGITS, TARGETS, C, mask=MASK)))
    same = M.MetricCollection(
        {
            "acc": M.Accuracy(),
            "f1": M.F1Score(num_classes=C, average="macro"),
            "cm": M.ConfusionMatrix(C),
        }
    )
    assert hash(coll) == hash(same) and coll == same and coll["acc"] == M.Accuracy()
    with pytest.raises(TypeError, match="MetricCollection: expected a mapping of str to Metric"):
        M.MetricCollection({"acc": M.accuracy})


def test_states_are_fixed_pytrees_under_jit_scan_and_donation():
    coll = M.MetricCollection({"acc": M.Accuracy(), "cm": M.ConfusionMatrix(C)})
    r2, mae = M.R2Score(output_shape=(2,)), M.MeanAbsoluteError(output_shape=(2,))
    init = {"coll": coll.init(), "r2": r2.init(), "mae": mae.init(), "mean": M.Mean().init()}
    xs = batches(LOGITS, TARGETS, MASK, YHAT, Y)

    def step(state, batch):
        logits, targets, mask, yhat, y = batch
        return {
            "coll": coll.update(state["coll"], logits, targets, mask=mask),
            "r2": r2.update(state["r2"], yhat, y, mask=mask),
            "mae": mae.update(state["mae"], yhat, y, mask=mask),
            "mean": M.Mean().update(state["mean"], y[:, 0], mask=mask),
        }, None

    # lax.scan requires the carry to keep its exact structure, shapes and dtypes.
    final, _ = jax.jit(lambda s, xs: jax.lax.scan(step, s, xs))(init, xs)
    assert jax.tree.structure(final) == jax.tree.structure(init)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), final) == jax.tree.map(
        lambda a: (a.shape, a.dtype), init
    )
    out = coll.compute(final["coll"])
    assert_close(out["acc"], float(M.accuracy(LOGITS, TARGETS, mask=MASK)))
    assert_close(r2.compute(final["r2"]), float(M.r2_score(YHAT, Y, mask=MASK)))
    assert_close(M.Mean().compute(final["mean"]), float(np.mean(Y[MASK, 0])))

    # Donating the state is accepted (no "donated buffers were not usable" warning, which
    # the suite turns into an error) and gives the same result.
    update = jax.jit(lambda s, b: step(s, b)[0], donate_argnums=0)
    state = init
    for batch in zip(*xs):
        state = update(state, batch)
    assert_close(coll.compute(state["coll"])["acc"], float(out["acc"]))


def test_update_does_not_retrace_across_batches():
    metric = M.F1Score(num_classes=C, average="macro")

    @jax.jit
    @chex.assert_max_traces(n=1)
    def update(state, logits, targets, mask):
        return metric.update(state, logits, targets, mask=mask)

    state = metric.init()
    for logits, targets, mask in zip(*batches(LOGITS, TARGETS, MASK)):
        state = update(state, logits, targets, mask)
    assert_close(
        metric.compute(state), float(M.f1_score(LOGITS, TARGETS, average="macro", mask=MASK))
    )


def test_vmap_over_models():
    # Two "models" scored on the same targets: vmap the one-shot metric and the accumulator.
    logits = np.stack([LOGITS, -LOGITS])
    acc = jax.vmap(lambda x: M.accuracy(x, TARGETS, mask=MASK))(logits)
    assert_close(acc, [float(M.accuracy(x, TARGETS, mask=MASK)) for x in logits])
    metric = M.Accuracy()
    states = jax.vmap(lambda _: metric.init())(jnp.arange(2))
    states = jax.vmap(lambda s, x: metric.update(s, x, TARGETS, mask=MASK))(states, logits)
    assert_close(jax.vmap(metric.compute)(states), np.asarray(acc, np.float64))


def run_all(logits, targets, mask, yhat, y):
    """Every one-shot metric and accumulator once, for the jit and strictness tests."""
    r2, mean = M.R2Score(output_shape=(2,), multioutput="variance_weighted"), M.Mean()
    coll = M.MetricCollection({"acc": M.Accuracy(top_k=2), "f1": M.F1Score(C, "micro")})
    return {
        "acc": M.accuracy(logits, targets, 2, mask=mask, sample_weight=WEIGHTS),
        "cm": M.confusion_matrix(logits, targets, C, mask=mask),
        "f1": M.f1_score(logits, targets, average="macro", mask=mask),
        "p": M.precision(logits, targets, average=None, mask=mask),
        "r": M.recall(logits, targets, average="weighted", sample_weight=WEIGHTS),
        "mse": M.mean_squared_error(yhat, y, mask=mask, sample_weight=WEIGHTS),
        "mae": M.mean_absolute_error(yhat, y, mask=mask),
        "r2": M.r2_score(yhat, y, mask=mask, multioutput="raw_values"),
        "R2Score": r2.compute(r2.update(r2.init(), yhat, y, mask=mask)),
        "Mean": mean.compute(mean.update(mean.init(), y, weights=WEIGHTS, mask=mask)),
        "coll": coll.compute(coll.update(coll.init(), logits, targets, mask=mask)),
    }


def test_strict_dtype_and_rank_promotion():
    # The library casts and broadcasts explicitly, so it runs under Equinox-style strict
    # promotion (a silent upcast or an accidental broadcast would raise here).
    with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
        out = jax.jit(run_all)(LOGITS, TARGETS, MASK, YHAT, Y)
    # jitted against eager: the bound of JitTest.test_jit_and_eager_agree
    chex.assert_trees_all_close(out, run_all(LOGITS, TARGETS, MASK, YHAT, Y), rtol=3e-5)


class JitTest(chex.TestCase):
    """The metrics give the same value with and without jit (one program)."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_jit_and_eager_agree(self):
        out = self.variant(run_all)(LOGITS, TARGETS, MASK, YHAT, Y)
        # the same float32 terms, summed in possibly other orders (fused or op by op): sums
        # of <= 38 terms with sum|terms| <= 2.8 |sum| (the weighted Mean's; 1 for the
        # non-negative sums) are within 2 * 38 U32 * 2.8 ~ 1.3e-5 relative in the worst
        # case; rtol=1e-6 held with a 12x margin on one CPU only
        chex.assert_trees_all_close(out, run_all(LOGITS, TARGETS, MASK, YHAT, Y), rtol=3e-5)


# ----------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call,match",
    [
        (
            lambda: M.accuracy(LOGITS, TARGETS[:5]),
            r"accuracy: expected floating scores of shape targets.shape \+ \(C,\)",
        ),
        (lambda: M.accuracy(LOGITS[:, 0], TARGETS), r"threshold binary probabilities first"),
        (
            lambda: M.accuracy(PRED_LABELS[:5], TARGETS),
            r"accuracy: expected integer label preds of the targets' shape \(24,\), got \(5,\)",
        ),
        (
            lambda: M.accuracy(LOGITS, LOGITS[:, 0]),
            r"accuracy: expected integer class-label targets, got dtype float32",
        ),
        (
            lambda: M.accuracy(LOGITS, TARGETS, mask=MASK[:5]),
            r"accuracy: expected mask of shape \(24,\), got \(5,\)",
        ),
        (
            lambda: M.accuracy(LOGITS, TARGETS, mask=WEIGHTS),
            r"accuracy: expected a boolean mask .* got dtype float32",
        ),
        (
            lambda: M.confusion_matrix(LOGITS, TARGETS, 3),
            r"confusion_matrix: expected scores with last \(class\) dimension 3",
        ),
        (
            lambda: M.f1_score(LOGITS, TARGETS, average="macro", num_classes=5),
            r"f1_score: expected scores with last \(class\) dimension 5",
        ),
        (
            lambda: M.mean_squared_error(YHAT, Y[:, 0]),
            r"mean_squared_error: expected preds and targets of the same shape",
        ),
        (
            lambda: M.r2_score(PRED_LABELS, TARGETS),
            r"r2_score: expected floating preds, got dtype int32",
        ),
        (
            lambda: M.r2_score(YHAT, Y, sample_weight=WEIGHTS[:3]),
            r"r2_score: expected sample_weight of shape \(24, 2\) or a leading part",
        ),
        (
            lambda: M.Accuracy().update(M.Accuracy().init(), LOGITS, TARGETS[:3]),
            r"Accuracy.update: expected floating scores",
        ),
        (
            lambda: M.ConfusionMatrix(3).update(M.ConfusionMatrix(3).init(), LOGITS, TARGETS),
            r"ConfusionMatrix.update: expected scores with last",
        ),
        (
            lambda: M.MeanSquaredError().update(M.MeanSquaredError().init(), YHAT, Y),
            r"MeanSquaredError.update: expected preds of shape \(N, \*output_shape\) = \(N, \), got \(24, 2\); construct MeanSquaredError\(output_shape=\(2,\)\)",
        ),
        (
            lambda: M.Mean().update(M.Mean().init(), Y, mask=MASK[:3]),
            r"Mean.update: expected mask of shape",
        ),
    ],
)
def test_wrong_shapes_and_dtypes_raise_shape_error(call, match):
    with pytest.raises(ShapeError, match=match):
        call()


@pytest.mark.parametrize(
    "call,match",
    [
        (
            lambda: M.f1_score(LOGITS, TARGETS),
            r"f1_score: average='binary' is for two classes, got num_classes=4; pass average=",
        ),
        (
            lambda: M.F1Score(num_classes=10),
            r"F1Score: average='binary' is for two classes, got num_classes=10",
        ),
        (
            lambda: M.precision(PRED_LABELS, TARGETS, average="macro"),
            r"precision: num_classes is required for average='macro'",
        ),
        (
            lambda: M.recall(PRED_LABELS, TARGETS, average="samples", num_classes=C),
            r"recall: average must be one of",
        ),
        (lambda: M.Precision(pos_label=2), r"Precision: pos_label must be 0 or 1"),
        (lambda: M.ConfusionMatrix(0), r"ConfusionMatrix: num_classes must be a positive int"),
        (
            lambda: M.confusion_matrix(PRED_LABELS, TARGETS, True),
            r"confusion_matrix: num_classes must be a positive int, got True",
        ),
        (
            lambda: M.accuracy(LOGITS, TARGETS, top_k=5),
            r"accuracy: top_k=5 exceeds the number of classes 4",
        ),
        (
            lambda: M.accuracy(PRED_LABELS, TARGETS, top_k=2),
            r"accuracy: top_k=2 needs floating scores",
        ),
        (
            lambda: M.mean_absolute_error(YHAT, Y, multioutput="variance_weighted"),
            r"mean_absolute_error: multioutput must be one of",
        ),
        (lambda: M.R2Score(output_shape=2), r"R2Score: output_shape must be a tuple of ints"),
        (
            lambda: M.ConfusionMatrix(C).precision(M.ConfusionMatrix(C).init(), average="binary"),
            r"ConfusionMatrix.precision: average='binary' is for two classes",
        ),
    ],
)
def test_invalid_options_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_accumulators_are_hashable_static_options():
    assert M.F1Score(num_classes=C, average="macro") == M.F1Score(C, "macro")
    assert len({M.Accuracy(), M.Accuracy(), M.R2Score(output_shape=[2])}) == 2
    assert M.Precision().num_classes == 2  # binary default


@pytest.mark.parametrize("module", [_classification, _metric, _regression])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_docs_page_examples_run():
    page = pathlib.Path(__file__).resolve().parent.parent / "docs" / "losses-and-metrics.md"
    namespace: dict = {}
    for block in re.findall(r"```python\n(.*?)```", page.read_text(), re.S):
        exec(compile(block, str(page), "exec"), namespace)
    assert float(namespace["acc"]) == 0.5
    results = namespace["results"]
    assert set(results) == {"loss", "accuracy", "f1", "confusion"}
    assert int(results["confusion"].sum()) == 21 and np.isfinite(float(results["loss"]))


def test_public_names_and_methods_have_docstrings():
    for name in M.__all__:
        obj = getattr(M, name)
        assert obj.__doc__, name
        if isinstance(obj, type):
            for method in ("init", "update", "merge", "compute"):
                assert inspect.getdoc(getattr(obj, method)), f"{name}.{method}"
