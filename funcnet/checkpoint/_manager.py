"""CheckpointManager: one directory of checkpoints, keeping the last N and the best."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from funcnet.checkpoint import _format, _layout, _multihost
from funcnet.checkpoint._errors import CheckpointError
from funcnet.checkpoint._restore import Checkpoint, _warn_skipped, restore_checkpoint
from funcnet.checkpoint._save import check_step, save

__all__ = ["CheckpointManager"]


class CheckpointManager:
    """Saves checkpoints into one directory and deletes old ones after each save.

    After every successful save it keeps the ``max_to_keep`` newest steps plus the
    ``keep_best`` best by ``metrics[best_metric]`` and deletes the others (atomically, so
    a crash leaves every step either complete or absent). Its state lives on disk (the
    metrics are in each checkpoint's manifest), so a new manager on the same directory,
    e.g. after a restart, carries on where the old one stopped.

    In a run of several processes, every process makes the same manager and calls
    ``save`` (and ``delete``) at the same steps; process 0 writes and deletes, the others
    wait for it (see ``funcnet.checkpoint.save``).

    Args:
        directory: the checkpoint directory, created on the first save. One manager (one
            run) writes to it at a time.
        max_to_keep: how many of the newest steps to keep; None keeps all.
        best_metric: the name of the metric that ranks checkpoints, e.g. ``"val_loss"``;
            None keeps no best ones.
        best_mode: ``"min"`` (lower is better, e.g. a loss) or ``"max"`` (e.g. accuracy).
        keep_best: how many of the best steps to keep in addition to the newest.

    Raises:
        ValueError: an argument is out of range.

    Examples:
        >>> import tempfile, jax.numpy as jnp
        >>> from funcnet.checkpoint import CheckpointManager
        >>> tmp = tempfile.TemporaryDirectory()
        >>> manager = CheckpointManager(tmp.name, max_to_keep=2, best_metric="val_loss")
        >>> for step, loss in [(1, 0.5), (2, 0.2), (3, 0.4), (4, 0.3)]:
        ...     _ = manager.save(step, {"w": jnp.full((2,), step)}, metrics={"val_loss": loss})
        >>> manager.all_steps(), manager.best_step(), manager.latest_step()
        ([2, 3, 4], 2, 4)
        >>> manager.restore()["w"].tolist()
        [4, 4]
        >>> tmp.cleanup()
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        max_to_keep: int | None = 3,
        best_metric: str | None = None,
        best_mode: str = "min",
        keep_best: int = 1,
    ) -> None:
        if max_to_keep is not None and (isinstance(max_to_keep, bool) or max_to_keep < 1):
            raise ValueError(f"max_to_keep must be a positive int or None, got {max_to_keep!r}")
        if best_mode not in ("min", "max"):
            raise ValueError(f"best_mode must be 'min' or 'max', got {best_mode!r}")
        if isinstance(keep_best, bool) or keep_best < 0:
            raise ValueError(f"keep_best must be a non-negative int, got {keep_best!r}")
        if best_metric is not None and not isinstance(best_metric, str):
            raise ValueError(f"best_metric must be a metric name, got {best_metric!r}")
        self.directory: Path = Path(directory)
        self.max_to_keep = max_to_keep
        self.best_metric = best_metric
        self.best_mode = best_mode
        self.keep_best = keep_best

    def __repr__(self) -> str:
        return (
            f"CheckpointManager({str(self.directory)!r}, max_to_keep={self.max_to_keep}, "
            f"best_metric={self.best_metric!r}, best_mode={self.best_mode!r}, "
            f"keep_best={self.keep_best})"
        )

    def save(
        self,
        step: int,
        tree: Any,
        metrics: Mapping[str, float] | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        overwrite: bool = False,
        keep: Iterable[int] = (),
    ) -> Path:
        """Saves ``tree`` as ``step`` (see ``funcnet.checkpoint.save``), then prunes.

        Args:
            step: the training step; must not be below the newest saved step (the
                manager keeps the highest steps, so an older one would displace them).
            tree: the pytree to save.
            metrics: metric name -> number. With ``best_metric`` set, a save without
                metrics is simply not ranked, but metrics that lack ``best_metric`` are an
                error (a misspelt name would otherwise never keep a best checkpoint).
            metadata: JSON-able data saved with the checkpoint.
            overwrite: replace an existing checkpoint of the same step.
            keep: steps this save's pruning must not delete, beyond the newest and best
                ones (``ModelCheckpoint`` keeps the last checkpoint with finite
                parameters this way).

        Returns:
            The checkpoint's directory.

        Raises:
            CheckpointError: the step exists (without ``overwrite``), is below the newest
                step, or writing failed.
            ValueError: ``metrics`` lacks ``best_metric``.
        """
        step = check_step(step)
        if metrics is not None and self.best_metric is not None and self.best_metric not in metrics:
            raise ValueError(
                f"metrics has no {self.best_metric!r} (the manager's best_metric); got "
                f"{sorted(metrics)}"
            )
        latest = self.latest_step()
        if latest is not None and step < latest:
            raise CheckpointError(
                f"cannot save step {step} into {self.directory}: it already holds the later "
                f"step {latest}; save into a new directory, or delete the later steps"
            )
        path = save(
            self.directory, tree, step, metadata=metadata, metrics=metrics, overwrite=overwrite
        )
        protected = {check_step(s) for s in keep}
        _multihost.write_once(lambda: self._prune(protected), f"funcnet.checkpoint.prune:{step}")
        return path

    def _ranked(self, entries: Mapping[int, tuple[Path, _format.Manifest]]) -> list[int]:
        """Steps with the best metric first (ties: the earlier step); NaN is never ranked."""
        if self.best_metric is None:
            return []
        sign = 1.0 if self.best_mode == "min" else -1.0
        scored = [
            (sign * value, step)
            for step, (_, manifest) in entries.items()
            if (value := manifest.metrics.get(self.best_metric)) is not None
            and not math.isnan(value)
        ]
        return [step for _, step in sorted(scored)]

    def _prune(self, protected: set[int]) -> None:
        entries = _layout.complete_steps(self.directory)
        steps = sorted(entries)
        keep = set(steps if self.max_to_keep is None else steps[-self.max_to_keep :])
        keep.update(self._ranked(entries)[: self.keep_best])
        keep.update(protected)
        for step in steps:
            if step not in keep:
                _layout.delete_step(self.directory, step)

    def restore(
        self,
        step: int | None = None,
        target: Any = None,
        *,
        strict: bool = True,
        as_numpy: bool = False,
    ) -> Any:
        """Restores ``step`` (None: the newest); see ``funcnet.checkpoint.restore``."""
        ckpt = self.restore_checkpoint(step, target, strict=strict, as_numpy=as_numpy)
        _warn_skipped(f"checkpoint {ckpt.path}", ckpt.skipped, stacklevel=2)
        return ckpt.tree

    def restore_checkpoint(
        self,
        step: int | None = None,
        target: Any = None,
        *,
        strict: bool = True,
        as_numpy: bool = False,
    ) -> Checkpoint:
        """Restores ``step`` with its metadata and metrics; see ``restore_checkpoint``."""
        return restore_checkpoint(self.directory, target, step, strict=strict, as_numpy=as_numpy)

    def restore_metadata(self, step: int | None = None) -> dict[str, Any]:
        """The metadata saved with ``step`` (None: the newest)."""
        step = None if step is None else check_step(step)
        return _layout.find(self.directory, step)[2].metadata

    def metrics(self, step: int) -> dict[str, float]:
        """The metrics saved with ``step``."""
        return _layout.find(self.directory, check_step(step))[2].metrics

    def delete(self, step: int) -> None:
        """Deletes the checkpoint of ``step`` (atomically: renamed away, then removed).

        Raises:
            CheckpointError: there is no checkpoint of that step.
        """

        def remove() -> None:
            # Checked in the writing process only: another process's look at the
            # directory could come after this deletion and disagree.
            if step not in self.all_steps():
                raise CheckpointError(f"{self.directory}: no checkpoint of step {step} to delete")
            _layout.delete_step(self.directory, step)

        _multihost.write_once(remove, f"funcnet.checkpoint.delete:{step}")

    def all_steps(self) -> list[int]:
        """The complete checkpoints' steps, ascending."""
        return list(_layout.complete_steps(self.directory))

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None."""
        steps = self.all_steps()
        return steps[-1] if steps else None

    def best_step(self) -> int | None:
        """The kept step with the best ``best_metric``, or None (no metric, or none saved)."""
        ranked = self._ranked(_layout.complete_steps(self.directory))
        return ranked[0] if ranked else None
