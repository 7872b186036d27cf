"""Checkpoints during fit, and bit-exact resume mid-epoch."""

import jax
import numpy as np
import pytest

from funcnet import checkpoint, losses, nn, optim, train
from tests.train._models import MLP, loader, tree_equal


class DropMLP(MLP):
    """Uses the step's key (dropout), so resuming must restore the PRNG stream too."""

    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.3)

    def forward(self, ctx, x):
        return super().forward(ctx, self.drop(ctx, x))


def _fit(state, train_loader, **kwargs):
    return train.fit(
        state,
        train_loader,
        3,
        loss_fn=losses.cross_entropy,
        progress="quiet",
        log_every=2,
        **kwargs,
    )


def test_resumed_run_matches_the_uninterrupted_run_bit_for_bit(key, tmp_path):
    fresh = lambda: train.TrainState.create(DropMLP(), optim.adam(1e-2), key)
    whole, _ = _fit(fresh(), loader())

    # the interrupted run: stops mid-epoch 1 (step 6 of 12), saving its checkpoint
    saver = train.ModelCheckpoint(tmp_path, every_n_steps=2)
    stopped, _ = _fit(fresh(), loader(), callbacks=[saver], max_steps=6)
    assert checkpoint.latest_step(tmp_path) == 6

    # a new process: fresh state and loader, restored from the checkpoint
    resumed_loader = loader()
    resumed = train.restore_training(tmp_path, fresh(), resumed_loader)
    assert int(resumed.step) == 6 and resumed_loader.state_dict()["epoch"] == 1
    resumed, _ = _fit(resumed, resumed_loader, initial_epoch=resumed_loader.epoch)
    assert int(resumed.step) == int(whole.step) == 12
    assert tree_equal(resumed.params, whole.params)
    assert tree_equal(resumed.opt_state, whole.opt_state)
    assert not tree_equal(stopped.params, whole.params)


def test_model_checkpoint_keeps_the_best_epoch(key, tmp_path):
    state = train.TrainState.create(MLP(), optim.sgd(0.05), key)
    saver = train.ModelCheckpoint(tmp_path, monitor="val_loss", max_to_keep=1)
    train.fit(
        state,
        loader(),
        3,
        loss_fn=losses.cross_entropy,
        eval_loader=loader(40, 40, shuffle=False),
        callbacks=[saver],
        progress="quiet",
    )
    best = saver.manager.best_step()
    assert best is not None and saver.manager.metrics(best)["val_loss"] <= min(
        saver.manager.metrics(s)["val_loss"] for s in saver.manager.all_steps()
    )


def test_restore_into_a_different_model_reports_the_difference(key, tmp_path):
    state = train.TrainState.create(MLP(), optim.sgd(0.05), key)
    train.fit(
        state,
        loader(),
        1,
        loss_fn=losses.cross_entropy,
        callbacks=[train.ModelCheckpoint(tmp_path)],
        progress="quiet",
    )
    other = train.TrainState.create(MLP(hidden=32), optim.sgd(0.05), key)
    with pytest.raises(checkpoint.CheckpointError, match=r"fc1.*weight.*\(8, 16\)"):
        train.restore_training(tmp_path, other)


def test_checkpointed_params_are_readable_by_numpy_alone(key, tmp_path):
    state = train.TrainState.create(MLP(), optim.sgd(0.05), key)
    checkpoint.save_params(tmp_path / "weights.npz", state.params)
    with np.load(tmp_path / "weights.npz", allow_pickle=False) as f:
        np.testing.assert_array_equal(f["fc1.weight"], np.asarray(state.params["fc1"]["weight"]))
    back = checkpoint.load_params(tmp_path / "weights.npz", target=state.params)
    assert tree_equal(back, jax.device_get(state.params))


def test_a_new_run_does_not_mix_with_an_older_runs_checkpoints(key, tmp_path):
    state = train.TrainState.create(MLP(), optim.sgd(0.05), key)
    train.fit(
        state,
        loader(),
        2,
        loss_fn=losses.cross_entropy,
        callbacks=[train.ModelCheckpoint(tmp_path)],
        progress="quiet",
    )
    assert checkpoint.latest_step(tmp_path) == 8
    with pytest.raises(
        checkpoint.CheckpointError, match=r"later steps \[4, 8\].*restore_training.*overwrite=True"
    ):
        train.fit(
            state,
            loader(),
            1,
            loss_fn=losses.cross_entropy,
            callbacks=[train.ModelCheckpoint(tmp_path)],
            progress="quiet",
        )
    train.fit(
        state,
        loader(),
        1,
        loss_fn=losses.cross_entropy,
        callbacks=[train.ModelCheckpoint(tmp_path, overwrite=True)],
        progress="quiet",
    )
    assert checkpoint.all_steps(tmp_path) == [4]
