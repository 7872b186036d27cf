"""Training: TrainState, compiled train/eval steps, the fit loop, callbacks.

    state = TrainState.create(model, optim.adam(1e-3), jax.random.key(0))
    state, history = fit(state, train_loader, epochs=5, loss_fn=losses.cross_entropy,
                         metrics={"accuracy": metrics.accuracy}, eval_loader=test_loader)

The step builders (``make_train_step``, ``make_eval_step``) also serve hand-written loops,
and ``TrainState.apply_gradients`` serves hand-written steps.
"""

from funcnet.train._callbacks import *
from funcnet.train._fit import *
from funcnet.train._history import History as History
from funcnet.train._loop import Loop as Loop
from funcnet.train._loop import NonFiniteLossError as NonFiniteLossError
from funcnet.train._progress import Progress as Progress
from funcnet.train._resume import restore_training as restore_training
from funcnet.train._state import TrainState as TrainState
from funcnet.train._step import *
from funcnet.train._tensorboard import TensorBoard as TensorBoard
