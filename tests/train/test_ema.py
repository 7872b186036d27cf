"""Training with an exponential moving average of the parameters, evaluated on it."""

import jax
import numpy as np
import pytest

from funcnet import losses, optim, train
from tests.train._models import MLP, loader, tree_equal


def test_swap_ema_weights_evaluates_the_average_and_trains_on(key):
    state = train.TrainState.create(MLP(), optim.with_ema(optim.adam(1e-2), decay=0.9), key)
    eval_loader = loader(40, 40, shuffle=False)
    seen = []
    probe = train.LambdaCallback(on_evaluate_begin=lambda loop: seen.append(loop.state.params))
    new, history = train.fit(
        state,
        loader(),
        2,
        loss_fn=losses.cross_entropy,
        eval_loader=eval_loader,
        callbacks=[train.SwapEMAWeights(), probe],
        progress="quiet",
    )
    average = optim.ema_params(new.opt_state)
    assert tree_equal(seen[-1], average)  # evaluation saw the average...
    assert not tree_equal(new.params, average)  # ...and training kept its own parameters
    on_average = train.evaluate(
        new.replace(params=average), eval_loader, loss_fn=losses.cross_entropy
    )
    assert history.epochs[-1]["val_loss"] == pytest.approx(on_average["loss"], rel=1e-6)
    plain, _ = train.fit(state, loader(), 2, loss_fn=losses.cross_entropy, progress="quiet")
    for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(new.params)):
        np.testing.assert_array_equal(a, b)  # the average does not change the training
