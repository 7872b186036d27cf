"""Non-finite steps during fit: skipped steps are counted and said; ModelCheckpoint keeps
the last checkpoint whose parameters are finite."""

import logging

import jax
import numpy as np

from funcnet import checkpoint, losses, optim, train
from funcnet.data import ArrayDataset, DataLoader
from tests.train._models import MLP, blobs

_BATCH = 16


def _poisoned_loader(bad_batches=(1,), batches=4):
    """Batches of 16 rows in a fixed order; the rows of ``bad_batches`` hold NaN inputs."""
    x, y = blobs(_BATCH * batches)
    for b in bad_batches:
        x[b * _BATCH : (b + 1) * _BATCH] = np.nan
    return DataLoader(ArrayDataset(x, y), _BATCH, shuffle=False)


def test_skipped_steps_are_counted_per_epoch_and_warned_once_per_epoch(key, caplog):
    state = train.TrainState.create(MLP(), optim.sgd(0.1), key)
    with caplog.at_level(logging.WARNING, logger="funcnet.train"):
        state, history = train.fit(
            state,
            _poisoned_loader(bad_batches=(1, 3)),
            2,
            loss_fn=losses.cross_entropy,
            on_nonfinite="skip",
            progress="quiet",
        )
    assert [e["skipped_steps"] for e in history.epochs] == [2, 2]
    assert [s["skipped"] for s in history.steps] == [0.0, 1.0, 0.0, 1.0] * 2
    warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(warnings) == 2
    assert "epoch 0: 2 step(s) skipped" in warnings[0]
    assert "epoch 1: 2 step(s) skipped" in warnings[1]
    assert all(np.all(np.isfinite(p)) for p in jax.tree_util.tree_leaves(state.params))


def test_an_epoch_without_skips_counts_zero_and_says_nothing(key, caplog):
    state = train.TrainState.create(MLP(), optim.sgd(0.1), key)
    with caplog.at_level(logging.WARNING, logger="funcnet.train"):
        _, history = train.fit(
            state,
            _poisoned_loader(bad_batches=()),
            1,
            loss_fn=losses.cross_entropy,
            on_nonfinite="skip",
            progress="quiet",
        )
    assert history.epochs[0]["skipped_steps"] == 0
    assert not caplog.records


def test_model_checkpoint_keeps_the_last_finite_checkpoint_under_ignore(key, tmp_path, caplog):
    # Epoch 0 is finite; from epoch 1 on, a NaN batch poisons the parameters for good.
    state = train.TrainState.create(MLP(), optim.sgd(0.1), key)
    state, _ = train.fit(
        state,
        _poisoned_loader(bad_batches=()),
        1,
        loss_fn=losses.cross_entropy,
        progress="quiet",
        callbacks=[train.ModelCheckpoint(tmp_path, max_to_keep=1)],
    )
    saver = train.ModelCheckpoint(tmp_path, max_to_keep=1)
    with caplog.at_level(logging.WARNING, logger="funcnet.train"):
        train.fit(
            state,
            _poisoned_loader(bad_batches=(0,)),
            3,
            initial_epoch=1,
            loss_fn=losses.cross_entropy,
            on_nonfinite="ignore",
            progress="quiet",
            callbacks=[saver],
        )
    steps = checkpoint.all_steps(tmp_path)
    assert steps == [4, 12]  # the finite step 4 survives max_to_keep=1; 8 was pruned
    finite = checkpoint.restore(tmp_path, step=4)["params"]
    assert all(np.all(np.isfinite(p)) for p in jax.tree_util.tree_leaves(finite))
    assert checkpoint.restore_metadata(tmp_path, step=12)["params_finite"] is False
    kept = [r.getMessage() for r in caplog.records if "keeping step 4" in r.getMessage()]
    assert len(kept) == 1 and "max_to_keep=1" in kept[0]
