"""The loss objects of funcnet.nn (nn.CrossEntropyLoss(label_smoothing=0.1), ...): each
equals its funcnet.losses function with the same options and torch.nn's class, hashes and
compares by value, refuses PyTorch's deprecated arguments, and works as a train step's
loss_fn, masks included."""

from __future__ import annotations

import dataclasses
import doctest
import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet.losses as L
from funcnet import nn, optim, train
from funcnet.errors import UsageError
from funcnet.nn import _loss as loss_module
from tests.train._models import MLP, blobs, loader

_rng = np.random.default_rng(3)
N, C = 5, 4
X, X2, X3 = (_rng.normal(size=(N, C)).astype(np.float32) for _ in range(3))
P = _rng.uniform(0.05, 0.95, size=(N, C)).astype(np.float32)
T = _rng.uniform(size=(N, C)).astype(np.float32)
Y = np.array([0, 3, 1, 2, 1])
SIGN = np.array([1.0, -1.0, 1.0, 1.0, -1.0], np.float32)
W = _rng.uniform(0.5, 2.0, size=C).astype(np.float32)
MULTI = np.array([[3, 0, -1, 1], [1, -1, 2, 0], [-1, 0, 0, 0], [0, 1, 2, 3], [2, -1, 0, 0]])
LP = np.asarray(jax.nn.log_softmax(_rng.normal(size=(2, 4, 3)).astype(np.float32), axis=-1))
CTC = (np.array([[1, 2], [2, 0]]), np.array([4, 3]), np.array([2, 1]))


def _cases():
    """(object, the same loss by its function, call arguments, torch's module and arguments)."""
    lp = np.asarray(jax.nn.log_softmax(X, axis=-1))
    counts = np.floor(np.abs(T) * 4).astype(np.float32)
    return [
        (nn.CrossEntropyLoss(W, ignore_index=1, reduction="sum", label_smoothing=0.1),
         functools.partial(L.cross_entropy, weight=W, ignore_index=1, reduction="sum",
                           label_smoothing=0.1), (X, Y)),
        (nn.NLLLoss(W, ignore_index=2), functools.partial(L.nll_loss, weight=W, ignore_index=2),
         (lp, Y)),
        (nn.MSELoss(reduction="none"), functools.partial(L.mse_loss, reduction="none"), (X, T)),
        (nn.L1Loss(reduction="sum"), functools.partial(L.l1_loss, reduction="sum"), (X, T)),
        (nn.SmoothL1Loss(beta=0.5), functools.partial(L.smooth_l1_loss, beta=0.5), (X, T)),
        (nn.HuberLoss("sum", 0.5), functools.partial(L.huber_loss, reduction="sum", delta=0.5),
         (X, T)),
        (nn.BCELoss(W), functools.partial(L.binary_cross_entropy, weight=W), (P, T)),
        (nn.BCEWithLogitsLoss(W, pos_weight=W[::-1].copy()),
         functools.partial(L.binary_cross_entropy_with_logits, weight=W, pos_weight=W[::-1]),
         (X, T)),
        (nn.KLDivLoss(reduction="batchmean", log_target=True),
         functools.partial(L.kl_div, reduction="batchmean", log_target=True), (lp, lp[::-1].copy())),
        (nn.PoissonNLLLoss(False, True, eps=1e-6),
         functools.partial(L.poisson_nll_loss, log_input=False, full=True, eps=1e-6),
         (P, counts)),
        (nn.GaussianNLLLoss(full=True, eps=1e-3),
         functools.partial(L.gaussian_nll_loss, full=True, eps=1e-3), (X, T, P)),
        (nn.SoftMarginLoss(reduction="sum"), functools.partial(L.soft_margin_loss, reduction="sum"),
         (X, np.sign(T - 0.5))),
        (nn.MultiLabelSoftMarginLoss(W), functools.partial(L.multilabel_soft_margin_loss, weight=W),
         (X, np.round(T))),
        (nn.MultiLabelMarginLoss(reduction="none"),
         functools.partial(L.multilabel_margin_loss, reduction="none"), (X, MULTI)),
        (nn.MultiMarginLoss(2, 0.5, W), functools.partial(L.multi_margin_loss, p=2, margin=0.5,
                                                           weight=W), (X, Y)),
        (nn.HingeEmbeddingLoss(0.5), functools.partial(L.hinge_embedding_loss, margin=0.5),
         (np.abs(X), np.sign(T - 0.5))),
        (nn.CosineEmbeddingLoss(0.2), functools.partial(L.cosine_embedding_loss, margin=0.2),
         (X, X2, SIGN)),
        (nn.MarginRankingLoss(0.3, reduction="none"),
         functools.partial(L.margin_ranking_loss, margin=0.3, reduction="none"),
         (X[:, 0], X2[:, 0], SIGN)),
        (nn.TripletMarginLoss(0.5, 1.0, swap=True),
         functools.partial(L.triplet_margin_loss, margin=0.5, p=1.0, swap=True), (X, X2, X3)),
        (nn.TripletMarginWithDistanceLoss(distance_function=_l1, margin=2.0, swap=True),
         functools.partial(L.triplet_margin_with_distance_loss, distance_function=_l1,
                           margin=2.0, swap=True), (X, X2, X3)),
        (nn.CTCLoss(blank=0, reduction="sum", zero_infinity=True),
         functools.partial(L.ctc_loss, blank=0, reduction="sum", zero_infinity=True), (LP, *CTC)),
    ]  # fmt: skip


def _l1(a, b):
    return jnp.sum(jnp.abs(a - b), axis=-1)


CASES = _cases()


@functools.cache
def _outputs():
    """Every object's loss, the function's, and the object's with a mask, in one program."""

    def program():
        mask = np.array([True, False])  # CTC's batch is 2
        out = []
        for obj, fn, args in CASES:
            rows = mask if args[0] is LP else np.arange(N) < 3
            out.append((obj(*args), fn(*args), obj(*args, mask=rows), fn(*args, mask=rows)))
        return out

    return jax.device_get(jax.jit(program)())


def test_docstring_example_runs():
    result = doctest.testmod(loss_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_every_object_is_exported_and_covered():
    names = {
        name for name, obj in vars(nn).items() if isinstance(obj, type) and name.endswith("Loss")
    }
    assert names == {type(obj).__name__ for obj, _, _ in CASES}
    for name in names:  # objects, not modules: the conformance registry does not list them
        assert not issubclass(getattr(nn, name), nn.Module), name


@pytest.mark.parametrize("i", range(len(CASES)), ids=[type(c[0]).__name__ for c in CASES])
def test_object_equals_its_function_with_the_same_options(i):
    ours, function, masked, function_masked = _outputs()[i]
    np.testing.assert_array_equal(ours, function)  # the same operations in one program
    np.testing.assert_array_equal(masked, function_masked)


def _torch_module(torch, obj):
    """torch.nn's class with the object's options (arrays as tensors, CTC's layout aside)."""
    options = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if options.get("distance_function") is _l1:
        options["distance_function"] = lambda a, b: (a - b).abs().sum(-1)
    options = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in options.items()}
    return getattr(torch.nn, type(obj).__name__)(**options)


@pytest.mark.torch
@pytest.mark.parametrize("i", range(len(CASES)), ids=[type(c[0]).__name__ for c in CASES])
def test_object_matches_torch_module(i):
    torch = pytest.importorskip("torch")
    obj, _, args = CASES[i]
    tensors = [torch.tensor(a) for a in args]
    if isinstance(obj, nn.CTCLoss):
        tensors[0] = tensors[0].transpose(0, 1)  # PyTorch is time-major: (T, N, C)
    theirs = _torch_module(torch, obj)(*tensors).numpy()
    # float32 both, sums of <= 20 terms in other orders (tests/_numerics.py)
    np.testing.assert_allclose(_outputs()[i][0], theirs, rtol=2e-5, atol=2e-6)


@pytest.mark.torch
@pytest.mark.parametrize("obj", [c[0] for c in CASES], ids=lambda o: type(o).__name__)
def test_constructor_is_pytorchs_without_the_deprecated_arguments(obj):
    torch = pytest.importorskip("torch")
    cls = type(obj)
    theirs = inspect.signature(getattr(torch.nn, cls.__name__)).parameters
    theirs = {k: p for k, p in theirs.items() if k not in ("size_average", "reduce")}
    ours = inspect.signature(cls).parameters
    assert list(ours) == list(theirs)
    for name, p in ours.items():
        assert p.default == theirs[name].default, name
        # positional where PyTorch's is positional before its first deprecated argument
        if p.kind is p.POSITIONAL_OR_KEYWORD:
            assert theirs[name].kind is p.POSITIONAL_OR_KEYWORD, name


def test_hashable_compared_by_value_and_a_static_jit_argument():
    a = nn.CrossEntropyLoss(weight=jnp.asarray(W), label_smoothing=0.1)
    b = nn.CrossEntropyLoss(weight=W.copy(), label_smoothing=0.1)
    assert a == b and hash(a) == hash(b) and a is not b
    assert a != nn.CrossEntropyLoss(weight=W * 2, label_smoothing=0.1)
    assert a != dataclasses.replace(a, label_smoothing=0.2) and a != nn.NLLLoss(weight=W)
    assert len({nn.MSELoss(), nn.MSELoss(), nn.MSELoss(reduction="sum")}) == 2
    with pytest.raises(ValueError, match="read-only"):
        b.weight[0] = 0.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.label_smoothing = 0.3
    traces = []

    @functools.partial(jax.jit, static_argnums=0)
    def loss(fn, x):
        traces.append(1)
        return fn(x, Y)

    loss(a, X)
    loss(b, X)  # equal: no new trace
    assert len(traces) == 1


@pytest.mark.parametrize("cls", [nn.CrossEntropyLoss, nn.MSELoss, nn.TripletMarginLoss, nn.CTCLoss])
def test_size_average_and_reduce_are_refused(cls):
    for kw in ({"size_average": False}, {"reduce": False}):
        with pytest.raises(
            UsageError, match=rf"{cls.__name__}: size_average and reduce .* reduction="
        ):
            cls(**kw)


def test_options_are_checked_at_construction():
    with pytest.raises(
        ValueError, match=r"MSELoss: reduction must be one of 'mean', 'sum', 'none'"
    ):
        nn.MSELoss(reduction="avg")
    nn.KLDivLoss(reduction="batchmean")
    with pytest.raises(UsageError, match="CrossEntropyLoss: weight must be a concrete array"):
        jax.jit(lambda w: nn.CrossEntropyLoss(weight=w)(X, Y))(W)
    with pytest.raises(TypeError, match="positional"):
        nn.CrossEntropyLoss(W, None, -100)  # PyTorch's size_average in second place


def _np_cross_entropy(logits, y, label_smoothing):
    logits = np.asarray(logits, np.float64)
    log_p = logits - logits.max(-1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(-1, keepdims=True))
    nll = -log_p[np.arange(len(y)), y]
    return np.mean((1 - label_smoothing) * nll - label_smoothing * log_p.mean(-1))


def test_make_train_step_and_fit_take_a_loss_object(key):
    loss = nn.CrossEntropyLoss(label_smoothing=0.1)
    step = train.make_train_step(loss)
    assert step.objective.takes_mask  # so fit pads a short batch instead of recompiling
    state = train.TrainState.create(MLP(), optim.sgd(0.0), key)  # the parameters stay put
    params = jax.device_get(state.params)
    # 40 rows: a batch of 32, then one of 8 padded to 32 and masked
    _, history = train.fit(state, loader(40, 32, shuffle=False), train_step=step, progress="quiet")
    assert len(history.steps) == 2
    x, y = blobs(40)
    hidden = np.maximum(x @ params["fc1"]["weight"] + params["fc1"]["bias"], 0.0)
    logits = hidden @ params["fc2"]["weight"] + params["fc2"]["bias"]
    # the epoch's loss is the count-weighted mean of the two steps' means: float32 sums of
    # 40 row losses of one sign, within 40 U32 relative, and a float32 forward pass
    np.testing.assert_allclose(history.epochs[0]["loss"], _np_cross_entropy(logits, y, 0.1),
                               rtol=1e-5)  # fmt: skip
