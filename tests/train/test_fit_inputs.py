"""fit with what a PyTorch user brings: a plain loss, lists and torch loaders, batches that
are not (x, y) pairs, streaming metrics."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet.functional as F
from funcnet import losses, metrics, nn, optim, train
from funcnet.data import ArrayDataset, DataLoader
from tests._numerics import to_float64
from tests.train._models import MLP, blobs, loader, tree_equal


def plain_cross_entropy(outputs, targets):
    """A user's loss: no mask=, no reduction=."""
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(outputs), targets[:, None], 1))


def _fit(state, train_loader, epochs=2, **kwargs):
    kwargs.setdefault("loss_fn", losses.cross_entropy)
    return train.fit(state, train_loader, epochs, progress="quiet", **kwargs)


@pytest.fixture
def state(key):
    return train.TrainState.create(MLP(), optim.sgd(0.05, momentum=0.9), key)


@pytest.mark.parametrize("drop_last", [False, True])
def test_a_plain_loss_function_trains_exactly(key, drop_last):
    # in float64: the 4-row last batch and the padded 32-row one sum in other orders
    with jax.enable_x64(True):
        model = MLP()
        params = to_float64(model.init(key)[0])
        state = train.TrainState.create(model, optim.sgd(0.05, momentum=0.9), key, params)
        float64 = {"drop_last": drop_last, "transform": lambda x: x.astype(np.float64)}
        new, history = _fit(state, loader(**float64), loss_fn=plain_cross_entropy)
        masked, _ = _fit(state, loader(**float64))  # funcnet's loss, padded last batch
    steps = 3 if drop_last else 4
    assert int(new.step) == 2 * steps and len(history.steps) == 2 * steps
    leaves = jax.tree.leaves(new.params)
    assert {a.dtype for a in leaves} == {np.dtype(np.float64)}
    for a, b in zip(leaves, jax.tree.leaves(masked.params)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_a_plain_loss_with_a_padding_loader_says_what_to_do(state):
    with pytest.raises(TypeError, match=r"plain_cross_entropy\) takes no mask=.*mask=None"):
        _fit(state, loader(pad_last=True), loss_fn=plain_cross_entropy)


def test_a_list_of_batches_is_a_loader(state):
    x, y = blobs(96)
    batches = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 96, 32)]
    new, history = _fit(state, batches, epochs=3)
    assert int(new.step) == 9 and [r["epoch"] for r in history.epochs] == [0, 1, 2]
    reference, _ = _fit(state, loader(96, shuffle=False), epochs=3)
    assert tree_equal(new.params, reference.params)


def test_a_torch_dataloader_trains_like_the_funcnet_one(state):
    torch = pytest.importorskip("torch")
    x, y = blobs(100)
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y).long())
    torch_loader = torch.utils.data.DataLoader(dataset, batch_size=32)
    new, _ = _fit(state, torch_loader, metrics={"accuracy": metrics.accuracy})
    reference, _ = _fit(state, loader(shuffle=False), metrics={"accuracy": metrics.accuracy})
    assert tree_equal(new.params, reference.params)
    assert train.evaluate(new, torch_loader, metrics={"acc": metrics.accuracy})["acc"] > 0.9


def test_an_iterator_is_refused_with_the_reason(state):
    x, y = blobs(64)
    with pytest.raises(TypeError, match="re-iterable.*runs out after one epoch"):
        _fit(state, ((x[i : i + 32], y[i : i + 32]) for i in (0, 32)))


class AutoEncoder(nn.Module):
    def __init__(self):
        self.encode, self.decode = nn.Linear(8, 3), nn.Linear(3, 8)

    def forward(self, ctx, x):
        return self.decode(ctx, F.relu(self.encode(ctx, x)))


def test_unlabeled_batches_train_an_autoencoder(key):
    x, _ = blobs(100)
    state = train.TrainState.create(AutoEncoder(), optim.adam(1e-2), key)
    unlabeled = DataLoader(ArrayDataset(x), batch_size=32, shuffle=True)
    new, history = _fit(
        state, unlabeled, epochs=5, loss_fn=losses.mse_loss, batch_fn=lambda b: (b[0], b[0])
    )
    assert history.epochs[-1]["loss"] < 0.8 * history.epochs[0]["loss"]
    assert int(new.step) == 20  # mse_loss takes mask=: the short batch was padded


class TwoHeads(nn.Module):
    """A shared trunk, a classifier head and a regression head."""

    def __init__(self):
        self.trunk = nn.Linear(8, 16)
        self.classify, self.regress = nn.Linear(16, 3), nn.Linear(16, 1)

    def forward(self, ctx, x):
        h = F.relu(self.trunk(ctx, x))
        return self.classify(ctx, h), self.regress(ctx, h)[:, 0]


def multi_task_loss(outputs, targets):
    (logits, value), (label, target) = outputs, targets
    return losses.cross_entropy(logits, label) + losses.mse_loss(value, target)


def test_three_field_batches_train_a_multi_task_model(key):
    x, y = blobs(100)
    state = train.TrainState.create(TwoHeads(), optim.adam(1e-2), key)
    data = DataLoader(ArrayDataset(x, y, x.sum(axis=1)), batch_size=32, shuffle=True)
    _, history = _fit(
        state, data, epochs=5, loss_fn=multi_task_loss, batch_fn=lambda b: (b[0], b[1:])
    )
    assert history.epochs[-1]["loss"] < 0.8 * history.epochs[0]["loss"]


def test_dict_batches_with_any_keys(state):
    x, y = blobs(100)
    data = DataLoader(ArrayDataset(image=x, label=y), batch_size=32)
    new, _ = _fit(state, data, batch_fn=lambda b: (b["image"], b["label"]))
    reference, _ = _fit(state, loader(shuffle=False))
    assert tree_equal(new.params, reference.params)


def test_batches_that_are_not_pairs_name_batch_fn(state):
    x, y = blobs(100)
    data = DataLoader(ArrayDataset(x, y, y), batch_size=32)
    with pytest.raises(TypeError, match=r"a tuple of 3. Pass batch_fn=.*\(b\[0\], b\[1:\]\)"):
        _fit(state, data)


def test_streaming_metrics_give_exact_epoch_values(key):
    x, y = blobs(100)
    # lr 0: the parameters do not move, so the epoch's training F1 is the F1 of the whole
    # set under the initial parameters, which a mean of per-batch F1s is not
    state = train.TrainState.create(MLP(), optim.sgd(0.0), key)
    f1 = metrics.F1Score(num_classes=3, average="macro")
    per_class = metrics.Recall(num_classes=3, average=None)
    logits, _ = state.model.apply(state.params, state.model_state, jnp.asarray(x))
    expected = float(metrics.f1_score(logits, y, average="macro", num_classes=3))
    recalls = metrics.recall(logits, y, average=None, num_classes=3).tolist()
    batch_mean = metrics.f1_score  # the inexact alternative, per batch
    new, history = _fit(
        state,
        loader(),
        epochs=1,
        metrics={
            "f1": f1,
            "recall": per_class,
            "f1_mean": functools.partial(batch_mean, average="macro", num_classes=3),
        },
        eval_loader=loader(shuffle=False),
    )
    record = history.epochs[0]
    assert record["f1"] == pytest.approx(expected, abs=1e-6)
    assert record["val_f1"] == pytest.approx(expected, abs=1e-6)
    assert record["recall"] == pytest.approx(recalls, abs=1e-6)
    assert abs(record["f1_mean"] - expected) > 1e-3  # the test can tell the two apart
    direct = train.evaluate(new, loader(shuffle=False), metrics={"f1": f1})
    assert direct["f1"] == pytest.approx(expected, abs=1e-6)


def test_a_grain_dataset_is_a_loader(state):
    grain = pytest.importorskip("grain")
    x, y = blobs(100)
    source = grain.MapDataset.source(list(range(100)))
    batches = source.map(lambda i: (x[i], y[i])).batch(32)
    new, history = _fit(state, batches)
    reference, _ = _fit(state, loader(shuffle=False))
    assert len(history.steps) == 8 and tree_equal(new.params, reference.params)
