"""DataParallel: PyTorch's data-parallel habit on ``jax.pmap`` or ``jax.shard_map``.

The steps of :func:`funcnet.train.make_train_step` with ``axis_name`` run on every device,
each on its slice of the batch, with one replicated copy of the TrainState; a wrapper
splits the batch (padding it with a mask when the devices do not divide it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from funcnet.data import pad_batch
from funcnet.mixed_precision import Policy
from funcnet.train import make_eval_step, make_train_step
from funcnet.train._objective import LossFn, MetricFns, Objective

__all__ = ["DataParallel", "ParallelStep"]

BACKENDS = ("pmap", "shard_map")


class DataParallel:
    """Data parallelism over local devices, as ``torch.nn.parallel.DistributedDataParallel``.

    Every device holds the same parameters and optimizer state and runs the step on its
    slice of each batch; one all-reduce per step combines the devices' gradients, loss
    and metrics into the global batch's, and every device applies the same update. The
    steps take and return an ordinary (unreplicated) :class:`funcnet.train.TrainState`,
    so ``train.fit``, ``ModelCheckpoint`` and ``restore_training`` work unchanged.

    The gradient is that of the global batch's mean loss: each device's mean is weighted
    by its valid rows (exact with a padded last batch), where DDP averages the devices'
    gradients unweighted. For a synchronised BatchNorm (PyTorch's ``SyncBatchNorm``) give
    the layer the same ``axis_name``; without it each device normalises with its own
    slice's statistics and the running statistics kept are device 0's, as in DDP.

    ``jax.jit`` with a batch-sharded input (``DataLoader(device=parallel.batch_sharding(
    mesh))``) gives the same training with the collectives left to XLA; this class writes
    them out.

    Args:
        devices: the devices to use, default ``jax.local_devices()``. On a CPU, simulate
            several with ``JAX_NUM_CPU_DEVICES=4`` set before JAX starts.
        axis_name: the name of the device axis; a model's ``BatchNorm(axis_name=...)``
            uses it to synchronise batch statistics.
        backend: ``"pmap"`` (``jax.pmap`` over the devices, the batch reshaped to
            ``(devices, rows / devices, ...)``) or ``"shard_map"`` (``jax.jit`` of
            ``jax.shard_map`` over a one-axis mesh, the batch sharded along its rows).
            Both compile the same per-device program and give the same results.

    Raises:
        ValueError: an unknown backend or an empty device list.

    Examples:
        >>> import jax, numpy as np
        >>> from funcnet import losses, nn, optim, parallel, train
        >>> dp = parallel.DataParallel()  # every local device
        >>> state = train.TrainState.create(nn.Linear(3, 2), optim.sgd(0.1), jax.random.key(0))
        >>> step = dp.make_train_step(losses.cross_entropy)
        >>> x, y = np.ones((8, 3), np.float32), np.zeros(8, np.int32)
        >>> state, m = step(state, (x, y))  # each device takes 8 / devices rows
        >>> int(state.step), m["loss"].shape
        (1, ())

        ``train.fit(state, loader, train_step=step, eval_step=dp.make_eval_step(...))``
        trains with it.
    """

    def __init__(
        self,
        devices: Sequence[Any] | None = None,  # jax.Device: jaxlib ships no type for it
        *,
        axis_name: str = "data",
        backend: str = "pmap",
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"DataParallel: backend must be one of {BACKENDS}, got {backend!r}")
        self.devices: tuple[Any, ...] = tuple(jax.local_devices() if devices is None else devices)
        if not self.devices:
            raise ValueError("DataParallel: devices is empty; pass None for all local devices")
        self.axis_name: str = axis_name
        self.backend: str = backend
        self.mesh: Mesh = Mesh(np.array(self.devices), (axis_name,))

    @property
    def num_devices(self) -> int:
        """The number of devices a batch is split over."""
        return len(self.devices)

    def __repr__(self) -> str:
        return (
            f"DataParallel({self.num_devices} devices, axis_name={self.axis_name!r}, "
            f"backend={self.backend!r})"
        )

    def make_train_step(
        self,
        loss_fn: LossFn,
        *,
        metrics: MetricFns | None = None,
        has_aux: bool = False,
        batch_fn: Callable[[Any], tuple[Any, Any]] | None = None,
        on_nonfinite: str = "error",
        donate: bool = True,
        precision: str | Policy | None = None,
    ) -> ParallelStep:
        """``step(state, batch, mask=None) -> (state, metrics)`` on all the devices.

        The arguments are :func:`funcnet.train.make_train_step`'s, with its meaning of
        every value: ``metrics`` are the global batch's (count-weighted means, streaming
        states merged), ``count`` the global number of valid rows. ``precision`` (with
        the optimizer in ``mixed_precision.with_loss_scale`` for float16) applies on
        every device; the overflow check is the global batch's, so all devices skip the
        same steps.

        Returns:
            A :class:`ParallelStep`; the state it returns is replicated on the devices.
        """
        local = make_train_step(
            loss_fn,
            metrics=metrics,
            has_aux=has_aux,
            batch_fn=batch_fn,
            on_nonfinite=on_nonfinite,
            jit=False,
            axis_name=self.axis_name,
            precision=precision,
        )
        return ParallelStep(self, local, train=True, donate=donate)

    def make_eval_step(
        self,
        loss_fn: LossFn | None = None,
        *,
        metrics: MetricFns | None = None,
        has_aux: bool = False,
        batch_fn: Callable[[Any], tuple[Any, Any]] | None = None,
        precision: str | Policy | None = None,
    ) -> ParallelStep:
        """``eval_step(state, batch, mask=None) -> metrics`` on all the devices, with
        :func:`funcnet.train.make_eval_step`'s arguments and the global batch's values."""
        local = make_eval_step(
            loss_fn,
            metrics=metrics,
            has_aux=has_aux,
            batch_fn=batch_fn,
            jit=False,
            axis_name=self.axis_name,
            precision=precision,
        )
        return ParallelStep(self, local, train=False, donate=False)

    def _compile(self, fn: Callable[..., Any], train: bool, donate: bool) -> Callable[..., Any]:
        """``fn(state, batch, mask)`` (one device's step) run on every device: state
        replicated, batch and mask split along their rows, outputs replicated."""
        donated = (0,) if donate else ()
        if self.backend == "pmap":
            return jax.pmap(
                fn,
                axis_name=self.axis_name,
                in_axes=(None, 0, 0),
                out_axes=(None, None) if train else None,
                devices=self.devices,
                donate_argnums=donated,
            )
        rows, whole = PartitionSpec(self.axis_name), PartitionSpec()
        mapped = jax.shard_map(
            fn,
            mesh=self.mesh,
            in_specs=(whole, rows, rows),
            out_specs=(whole, whole) if train else whole,
        )
        return jax.jit(mapped, donate_argnums=donated)


class ParallelStep:
    """A step of :class:`DataParallel`: ``step(state, batch, mask=None)``, as the step of
    ``train.make_train_step`` / ``make_eval_step`` it runs on every device.

    A batch of ``rows`` whose leading axis the devices do not divide is zero-padded to
    the next multiple and masked, when the loss and metrics take ``mask=``.

    On CPU devices each call waits until its step has run: XLA:CPU deadlocks when many
    steps with collectives are in flight over more simulated devices than cores.

    Attributes:
        objective: the step's loss, metrics and batch split (``fit`` reads it to decide
            whether to pad the last batch).
        data_parallel: the :class:`DataParallel` that made it.
    """

    def __init__(
        self, data_parallel: DataParallel, local: Callable[..., Any], train: bool, donate: bool
    ) -> None:
        self.data_parallel = data_parallel
        self.objective: Objective = local.objective  # type: ignore[attr-defined]
        self._compiled = data_parallel._compile(local, train, donate)
        self._wait = all(d.platform == "cpu" for d in data_parallel.devices)

    def __call__(self, state: Any, batch: Any, mask: Any = None) -> Any:
        out = self._compiled(state, *self.split(batch, mask))
        return jax.block_until_ready(out) if self._wait else out

    def lower(self, state: Any, batch: Any, mask: Any = None) -> Any:
        """``jax.stages.Lowered`` of the step for these arguments (``.compile().as_text()``
        shows the program each device runs, collectives included)."""
        return self._compiled.lower(state, *self.split(batch, mask))

    def split(self, batch: Any, mask: Any = None) -> tuple[Any, Any]:
        """``(batch, mask)`` as the devices take them: padded to a multiple of the device
        count (with a mask) when needed; for ``pmap``, leaves reshaped to
        ``(devices, rows / devices, ...)``.

        Raises:
            ValueError: the devices do not divide the batch and the loss or a metric takes
                no ``mask=``, so it cannot be padded.
        """
        n = self.data_parallel.num_devices
        rows = _rows(batch)
        if rows % n:
            batch, mask = self._padded(batch, mask, rows, -(-rows // n) * n)
        if self.data_parallel.backend == "pmap":
            batch, mask = jax.tree_util.tree_map(
                lambda a: a.reshape(n, -1, *a.shape[1:]), (batch, mask)
            )
        return batch, mask

    def _padded(self, batch: Any, mask: Any, rows: int, size: int) -> tuple[Any, Any]:
        if mask is None and not self.objective.takes_mask:
            raise ValueError(
                f"DataParallel over {self.data_parallel.num_devices} devices: a batch of "
                f"{rows} rows does not split evenly, and it can only be padded when the loss "
                "and every metric take mask= (funcnet.losses and funcnet.metrics do). Use a "
                "batch size the devices divide with DataLoader(drop_last=True), or a loss and "
                "metrics with a mask=None parameter"
            )
        if mask is None:
            return pad_batch(batch, size)
        (batch, mask), _ = pad_batch((batch, mask), size)
        return batch, mask


def _rows(batch: Any) -> int:
    leaves = jax.tree_util.tree_leaves(batch)
    if not leaves or not np.ndim(leaves[0]):
        raise TypeError(
            f"DataParallel: a batch must hold arrays with a leading batch axis, got "
            f"{type(batch).__name__}"
        )
    return int(np.shape(leaves[0])[0])
