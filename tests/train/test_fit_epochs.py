"""What `epochs` means: each fit call trains that many; resuming is explicit; a call
that would train nothing says why."""

import pytest

from funcnet import losses, optim, train
from tests.train._models import MLP, loader, tree_equal


def _fit(state, train_loader, epochs=3, **kwargs):
    return train.fit(
        state, train_loader, epochs, loss_fn=losses.cross_entropy, progress="quiet", **kwargs
    )


def _fresh(key):
    return train.TrainState.create(MLP(), optim.sgd(0.05, momentum=0.9), key)


def test_a_second_fit_trains_as_many_epochs_again(key):
    data = loader()
    state, first = _fit(_fresh(key), data)
    state, second = _fit(state, data)
    assert int(state.step) == 24
    assert [r["epoch"] for r in first.epochs] == [0, 1, 2]
    assert [r["epoch"] for r in second.epochs] == [3, 4, 5]  # new shuffle orders
    six, _ = _fit(_fresh(key), loader(), epochs=6)
    assert tree_equal(state.params, six.params)


def test_a_new_model_on_a_used_loader_trains_all_its_epochs(key):
    data = loader()
    _fit(_fresh(key), data)
    state, history = _fit(_fresh(key), data)
    assert int(state.step) == 12 and len(history.epochs) == 3


def test_peeking_at_a_batch_first_changes_nothing(key):
    data = loader()
    x, _ = next(iter(data))
    assert x.shape == (32, 8)
    peeked, _ = _fit(_fresh(key), data)
    reference, _ = _fit(_fresh(key), loader())
    assert int(peeked.step) == 12 and tree_equal(peeked.params, reference.params)


def test_initial_epoch_has_keras_meaning(key):
    data = loader()
    state, history = _fit(_fresh(key), data, epochs=3, initial_epoch=1)
    assert int(state.step) == 8 and [r["epoch"] for r in history.epochs] == [1, 2]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": 0}, r"epochs=0 trains nothing"),
        (
            {"epochs": 3, "initial_epoch": 3},
            r"initial_epoch=3 with epochs=3 trains nothing.*epochs=4",
        ),
        ({"max_steps": 0}, r"taken 0 steps, so max_steps=0"),
    ],
)
def test_a_call_that_would_train_nothing_says_why(key, kwargs, message):
    with pytest.raises(ValueError, match=message):
        _fit(_fresh(key), loader(), **kwargs)


def test_an_empty_loader_says_so(key):
    with pytest.raises(ValueError, match="yielded no batches in epoch 0"):
        _fit(_fresh(key), loader(10, drop_last=True))
    with pytest.raises(ValueError, match="yielded no batches"):
        _fit(_fresh(key), [])
