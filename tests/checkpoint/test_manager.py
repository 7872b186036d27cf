"""CheckpointManager: keep the last N and the best by a metric; restore the latest."""

from __future__ import annotations

import math

import jax.numpy as jnp
import pytest

from funcnet import checkpoint
from funcnet.checkpoint import CheckpointManager


def _tree(step):
    return {"w": jnp.full(2, float(step)), "step": step}


def test_keeps_the_last_n(tmp_path):
    manager = CheckpointManager(tmp_path, max_to_keep=2)
    for step in range(1, 6):
        manager.save(step, _tree(step))
    assert manager.all_steps() == [4, 5] == checkpoint.all_steps(tmp_path)
    assert manager.latest_step() == 5 and manager.best_step() is None
    assert manager.restore()["step"] == 5 and manager.restore(step=4)["step"] == 4


@pytest.mark.parametrize(
    ("mode", "losses", "kept", "best"),
    [
        ("min", [0.9, 0.2, 0.5, 0.3, 0.4, 0.6], [2, 4, 5, 6], 2),
        ("max", [0.9, 0.2, 0.5, 0.3, 0.4, 0.6], [1, 5, 6], 1),
        ("min", [math.nan, 0.8, 0.7, 0.9, 0.95, 0.99], [2, 3, 5, 6], 3),
    ],
)
def test_keeps_the_best_by_a_metric(tmp_path, mode, losses, kept, best):
    manager = CheckpointManager(
        tmp_path, max_to_keep=2, best_metric="loss", best_mode=mode, keep_best=2
    )
    for step, loss in enumerate(losses, start=1):
        manager.save(step, _tree(step), metrics={"loss": loss, "acc": 1.0})
    assert manager.all_steps() == kept
    assert manager.best_step() == best
    assert manager.metrics(best)["loss"] == losses[best - 1]


def test_a_new_manager_carries_on_from_the_directory(tmp_path):
    first = CheckpointManager(tmp_path, max_to_keep=1, best_metric="acc", best_mode="max")
    first.save(1, _tree(1), metrics={"acc": 0.9}, metadata={"loader": {"epoch": 0}})
    first.save(2, _tree(2), metrics={"acc": 0.5})
    second = CheckpointManager(tmp_path, max_to_keep=1, best_metric="acc", best_mode="max")
    assert second.best_step() == 1 and second.latest_step() == 2
    second.save(3, _tree(3), metrics={"acc": 0.6})
    assert second.all_steps() == [1, 3]
    assert second.restore_metadata(1) == {"loader": {"epoch": 0}}
    ckpt = second.restore_checkpoint(step=1, target=_tree(0))
    assert (ckpt.step, ckpt.metrics, ckpt.tree["step"]) == (1, {"acc": 0.9}, 1)


def test_saves_without_metrics_are_kept_as_latest_but_never_best(tmp_path):
    manager = CheckpointManager(tmp_path, max_to_keep=1, best_metric="loss")
    manager.save(1, _tree(1), metrics={"loss": 0.1})
    manager.save(2, _tree(2))
    manager.save(3, _tree(3))
    assert manager.all_steps() == [1, 3] and manager.best_step() == 1


def test_max_to_keep_none_keeps_everything(tmp_path):
    manager = CheckpointManager(tmp_path, max_to_keep=None)
    for step in range(4):
        manager.save(step, _tree(step))
    assert manager.all_steps() == [0, 1, 2, 3]


def test_misuse_is_reported(tmp_path):
    manager = CheckpointManager(tmp_path, best_metric="val_loss")
    manager.save(10, _tree(10), metrics={"val_loss": 1.0})
    with pytest.raises(ValueError, match=r"metrics has no 'val_loss'.*\['loss'\]"):
        manager.save(11, _tree(11), metrics={"loss": 1.0})
    with pytest.raises(checkpoint.CheckpointError, match="already holds the later step 10"):
        manager.save(5, _tree(5))
    with pytest.raises(checkpoint.CheckpointError, match="already exists"):
        manager.save(10, _tree(10))
    with pytest.raises(TypeError, match=r"pass the target as target="):
        manager.restore(_tree(0))
    with pytest.raises(checkpoint.CheckpointNotFoundError):
        CheckpointManager(tmp_path / "empty").restore()
    for kwargs in ({"max_to_keep": 0}, {"best_mode": "lowest"}, {"keep_best": -1}):
        with pytest.raises(ValueError):
            CheckpointManager(tmp_path, **kwargs)
    assert "max_to_keep=3" in repr(manager)
