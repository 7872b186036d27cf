"""`ReduceLROnPlateau`: a host-side lr schedule driven by a validation metric."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from ._base import OptState
from ._hyperparams import _LR_NAMES, _is_node, _nodes


class ReduceLROnPlateau:
    """Lower the lr stored in the optimizer state when a metric stops improving.

    PyTorch's ``torch.optim.lr_scheduler.ReduceLROnPlateau``, same arguments and rule, but
    host-side and functional: it keeps its counters (``best``, ``num_bad_epochs``,
    ``cooldown_counter``) as Python attributes and returns a new optimizer state rather
    than mutating an optimizer. The lr lives in the state (every funcnet optimizer keeps it
    there), so a jitted train step sees a new value, not a new program.

    How a training loop drives it, once per epoch after validation::

        plateau = ReduceLROnPlateau(mode="min", factor=0.1, patience=10)
        for epoch in range(epochs):
            ...  # train: opt_state flows through the jitted train step
            opt_state = plateau.step(val_loss, opt_state)    # returns the new state
            log(lr=float(current_lr(opt_state)))
        checkpoint["plateau"] = plateau.state_dict()         # and load_state_dict() on resume

    Every stored group's lr is reduced (PyTorch's param groups). The lr must be a constant
    in the state: a schedule-driven lr is recomputed by its schedule at every step, so a
    reduction would last one step.

    Args:
        mode: ``"min"`` (lower metric is better) or ``"max"``.
        factor: new lr = lr * factor (``< 1``).
        patience: epochs without improvement tolerated before reducing.
        threshold: the smallest change that counts as an improvement.
        threshold_mode: ``"rel"`` (best * (1 -/+ threshold)) or ``"abs"`` (best -/+ threshold).
        cooldown: epochs to wait after a reduction before counting bad epochs again.
        min_lr: floor of the lr, one float or one per stored group.
        eps: a reduction smaller than this is skipped.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import optim
        >>> state = optim.adam(1e-3).init({"w": jnp.zeros(2)})
        >>> plateau = optim.ReduceLROnPlateau(factor=0.5, patience=1)
        >>> for val_loss in [1.0, 0.9, 0.95, 0.95]:
        ...     state = plateau.step(val_loss, state)
        >>> plateau.get_last_lr()
        [0.0005000000237487257]
    """

    def __init__(
        self,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float | Sequence[float] = 0.0,
        eps: float = 1e-8,
    ) -> None:
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be < 1, got {factor}")
        if mode not in ("min", "max"):
            raise ValueError(f"ReduceLROnPlateau: mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(
                f"ReduceLROnPlateau: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}"
            )
        self.mode = mode
        self.factor = factor
        self.patience = patience
        self.threshold = threshold
        self.threshold_mode = threshold_mode
        self.cooldown = cooldown
        self.min_lr = min_lr
        self.eps = eps
        self.best: float = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs: int = 0
        self.cooldown_counter: int = 0
        self.last_epoch: int = 0
        self._last_lr: list[float] = []

    def is_better(self, current: float, best: float) -> bool:
        """Whether ``current`` improves on ``best`` by more than the threshold."""
        if self.mode == "min" and self.threshold_mode == "rel":
            return current < best * (1.0 - self.threshold)
        if self.mode == "min":
            return current < best - self.threshold
        if self.threshold_mode == "rel":
            return current > best * (self.threshold + 1.0)
        return current > best + self.threshold

    def step(self, metric: Any, opt_state: OptState) -> OptState:
        """Record one epoch's metric; return the state, with lower lr(s) if it plateaued.

        Args:
            metric: the epoch's validation metric (a number or a JAX scalar; read on the
                host once per epoch).
            opt_state: the optimizer state holding the lr.

        Returns:
            ``opt_state`` itself when nothing changes, else a copy with every group's lr
            multiplied by ``factor`` (floored at ``min_lr``), dtype and shape kept.

        Raises:
            ValueError: the state holds no lr, or ``min_lr`` has the wrong length.
        """
        current = float(metric)  # host-side, once per epoch
        lrs = [float(lr) for lr in _lrs(opt_state)]  # host-side, once per epoch
        floors = self._floors(len(lrs))
        self.last_epoch += 1
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            opt_state, lrs = self._reduce(opt_state, lrs, floors)
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = lrs
        return opt_state

    def _floors(self, groups: int) -> list[float]:
        if not isinstance(self.min_lr, Sequence):
            return [self.min_lr] * groups
        if len(self.min_lr) != groups:
            raise ValueError(
                f"ReduceLROnPlateau: {len(self.min_lr)} min_lr values for {groups} lr groups"
            )
        return list(self.min_lr)

    def _reduce(
        self, opt_state: OptState, old: list[float], floors: list[float]
    ) -> tuple[OptState, list[float]]:
        new = []
        for lr, floor in zip(old, floors):
            candidate = max(lr * self.factor, floor)
            new.append(candidate if lr - candidate > self.eps else lr)
        if new == old:
            return opt_state, old
        values = iter(new)

        def replace(node: Any) -> Any:
            if not _is_node(node):
                return node
            hyperparams = dict(node.hyperparams)
            for key in _LR_NAMES:
                if key in hyperparams:
                    stored = hyperparams[key]
                    hyperparams[key] = jnp.asarray(next(values), dtype=stored.dtype)
                    return node._replace(hyperparams=hyperparams)
            return node

        new_state = jax.tree.map(replace, opt_state, is_leaf=_is_node)
        return new_state, [float(lr) for lr in _lrs(new_state)]  # host-side, once per reduction

    def get_last_lr(self) -> list[float]:
        """The lr of each stored group after the last `step` (PyTorch's ``get_last_lr``)."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """The counters, for a checkpoint (PyTorch's ``state_dict``)."""
        return {
            "best": self.best,
            "num_bad_epochs": self.num_bad_epochs,
            "cooldown_counter": self.cooldown_counter,
            "last_epoch": self.last_epoch,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the counters saved by `state_dict`."""
        self.best = float(state_dict["best"])
        self.num_bad_epochs = int(state_dict["num_bad_epochs"])
        self.cooldown_counter = int(state_dict["cooldown_counter"])
        self.last_epoch = int(state_dict["last_epoch"])


def _lrs(opt_state: OptState) -> list[Any]:
    """The lr of every hyper-parameter node that stores one, in state order."""
    lrs = []
    for node in _nodes(opt_state):
        key = next((k for k in _LR_NAMES if k in node.hyperparams), None)
        if key is not None:
            lrs.append(node.hyperparams[key])
    if not lrs:
        raise ValueError(
            "ReduceLROnPlateau: no lr in this optimizer state (see funcnet.optim.current_lr)"
        )
    return lrs
