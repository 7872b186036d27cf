"""fit: history, progress modes, callbacks, max_steps."""

import json

import jax
import numpy as np
import pytest

from funcnet import losses, metrics, optim, train
from tests.train._models import MLP, loader


@pytest.fixture
def state(key):
    return train.TrainState.create(MLP(), optim.sgd(0.05, momentum=0.9), key)


def _fit(state, epochs=2, **kwargs):
    kwargs.setdefault("progress", "quiet")
    return train.fit(
        state,
        loader(),
        epochs,
        loss_fn=losses.cross_entropy,
        metrics={"accuracy": metrics.accuracy},
        **kwargs,
    )


def test_history_records_epochs_and_steps(state):
    new, history = _fit(state, eval_loader=loader(40, 20, shuffle=False), log_every=3)
    assert [r["epoch"] for r in history.epochs] == [0, 1]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "time", "samples_per_s"} <= set(
        history.epochs[0]
    )
    assert [s["step"] for s in history.steps] == list(range(1, 9))
    assert history.history["loss"] == [r["loss"] for r in history.epochs]
    assert history.epochs[0]["lr"] == pytest.approx(0.05)
    # the caller's state is not consumed by donation
    assert int(state.step) == 0 and int(new.step) == 8


def test_epoch_means_equal_the_mean_of_step_values(state):
    _, history = _fit(state, epochs=1)
    steps = history.steps
    counts = [32, 32, 32, 4]
    expected = sum(s["loss"] * c for s, c in zip(steps, counts)) / 100
    assert history.epochs[0]["loss"] == pytest.approx(expected, rel=1e-6)


def test_log_mode_prints_lines(state, capsys):
    _fit(state, epochs=1, progress=train.Progress("log", line_every=0), log_every=2)
    out = capsys.readouterr().out
    assert "epoch 1/1  batch 2/4" in out and "epoch 1/1 done" in out and "loss" in out


def test_bar_mode_draws_a_tqdm_bar(state, capsys):
    _fit(state, epochs=1, progress="bar")
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "4/4" in err


def test_max_steps_stops_mid_epoch_and_the_loader_keeps_its_position(state):
    train_loader = loader()
    new, _history = train.fit(
        state, train_loader, 5, loss_fn=losses.cross_entropy, max_steps=6, progress="quiet"
    )
    assert int(new.step) == 6
    assert train_loader.state_dict()["epoch"] == 1 and train_loader.state_dict()["batch_index"] == 2


def test_early_stopping_stops_and_restores_best(state):
    seen = []
    stopper = train.EarlyStopping(monitor="loss", patience=1, mode="max", restore_best=True)
    probe = train.LambdaCallback(on_epoch_end=lambda loop, logs: seen.append(loop.epoch))
    _new, history = _fit(state, epochs=10, callbacks=[stopper, probe])
    assert seen == [0, 1]  # loss falls, so "max" mode sees no improvement after epoch 0
    assert stopper.best_epoch == 0 and len(history.epochs) == 2


def test_early_stopping_names_a_missing_value(state):
    with pytest.raises(KeyError, match="val_loss.*eval_loader"):
        _fit(state, epochs=1, callbacks=[train.EarlyStopping()])


def test_csv_and_json_loggers(state, tmp_path):
    csv_path, json_path = tmp_path / "log.csv", tmp_path / "log.jsonl"
    _fit(
        state,
        callbacks=[train.CSVLogger(csv_path), train.JSONLogger(json_path, steps=True)],
        log_every=2,
    )
    rows = csv_path.read_text().splitlines()
    assert rows[0].startswith("epoch,") and len(rows) == 3
    records = [json.loads(line) for line in json_path.read_text().splitlines()]
    assert [r["type"] for r in records].count("epoch") == 2 and [r["type"] for r in records].count(
        "step"
    ) == 8


def test_reduce_lr_on_plateau_and_lr_logger(state):
    plateau = train.ReduceLROnPlateau(monitor="loss", mode="max", factor=0.5, patience=0)
    _, history = _fit(state, epochs=3, callbacks=[plateau, train.LearningRateLogger()])
    lrs = [r["lr"] for r in history.epochs]
    assert lrs[0] == pytest.approx(0.05) and lrs[-1] < lrs[0]
    assert "lr" in history.steps[-1]


def test_user_callback_can_stop_training(state):
    class StopAfterFirstFetch(train.Callback):
        def on_fetch(self, loop, logs):
            loop.stop_training = True

    new, _ = _fit(state, epochs=3, callbacks=[StopAfterFirstFetch()], log_every=1)
    assert int(new.step) == 1


def test_parameters_change_and_stay_finite(state):
    new, _ = _fit(state, epochs=1)
    before, after = jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(new.params)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))
    assert all(np.all(np.isfinite(a)) for a in after)
