"""How fit and evaluate read a loader: any re-iterable of batches, one epoch at a time.

A ``funcnet.data.DataLoader``, a list of batches, a ``torch.utils.data.DataLoader``, a
grain dataset: each iteration is an epoch. Tensors of other frameworks become NumPy
arrays (``data.to_numpy``); a short last batch is padded and masked (``data.pad_batch``)
when the step's loss and metrics take masks, so one compiled program serves every batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import jax
import numpy as np

from funcnet.data import DataLoader, pad_batch, to_numpy

__all__ = ["Batches"]

Item = tuple[Any, Any, int | None]
"""``(batch, mask or None, rows or None)``: rows are known on the host when unmasked."""


class Batches:
    """The batches of a loader, epoch by epoch, as the steps take them.

    Args:
        loader: a re-iterable of batches; a DataLoader with ``pad_last=True`` yields
            ``(batch, mask)`` pairs, which are passed on as they are.
        pad: pad a short batch to the full size and give every batch a mask (the step's
            functions take ``mask=``).

    Raises:
        TypeError: ``loader`` is not iterable, or is an iterator (it would run out after
            one epoch).
    """

    def __init__(self, loader: Any, pad: bool) -> None:
        if not isinstance(loader, Iterable) or isinstance(loader, Iterator):
            raise TypeError(
                f"fit and evaluate need a re-iterable of batches (a funcnet DataLoader, a "
                f"list of batches, a torch DataLoader), not {type(loader).__name__}: an "
                "iterator or generator runs out after one epoch; wrap its batches in a list"
            )
        self.loader = loader
        self.masked = bool(getattr(loader, "pad_last", False))  # the loader masks itself
        self.pad = pad and not self.masked
        self.size: int | None = getattr(loader, "batch_size", None)
        self.convert = not isinstance(loader, DataLoader)
        # Where a DataLoader puts batches and masks (None: NumPy batches, or another loader).
        self.device = None if self.convert else loader.device
        self.mask_device = None if self.convert else loader.mask_device
        self._ones: Any = None

    @property
    def epoch(self) -> int:
        """The loader's own epoch counter, or 0 for loaders without one."""
        epoch = getattr(self.loader, "epoch", None)
        return int(epoch) if isinstance(epoch, int | np.integer) else 0

    @property
    def total(self) -> int | None:
        """Batches per epoch, when the loader knows."""
        try:
            return len(self.loader)
        except TypeError:
            return None

    def set_epoch(self, epoch: int) -> None:
        """Tells the loader which epoch comes next (its shuffle order), when it can hear it."""
        set_epoch = getattr(self.loader, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)

    def iterate(self) -> tuple[Iterator[Item], int]:
        """One epoch's items, and the number of batches of it already done (a resumed
        DataLoader starts mid-epoch)."""
        it = iter(self.loader)
        start = self.loader.state_dict()["batch_index"] if not self.convert else 0
        return self._items(it), start

    def _items(self, it: Iterator[Any]) -> Iterator[Item]:
        for item in it:
            if self.masked:
                yield item[0], item[1], None
                continue
            batch = to_numpy(item) if self.convert else item
            if not self.pad:
                yield batch, None, _rows(batch)
            else:
                yield self._padded(batch)

    def _padded(self, batch: Any) -> Item:
        rows = _rows(batch)
        self.size = self.size or rows
        if rows == self.size:
            return batch, self._full_mask(rows), None
        padded, mask = pad_batch(batch, self.size)
        if self.device is not None:
            # The loader placed the short batch its own way (a NamedSharding replicates
            # it); padded, it goes back where full batches and their masks live, so the
            # step sees the same shardings and does not compile again.
            padded = jax.device_put(padded, self.device)
            mask = jax.device_put(mask, self.mask_device)
        return padded, mask, None

    def _full_mask(self, rows: int) -> Any:
        """An all-True ``(rows,)`` mask, placed once where the loader puts masks."""
        if self._ones is None or len(self._ones) != rows:
            ones = np.ones(rows, bool)
            self._ones = (
                ones if self.mask_device is None else jax.device_put(ones, self.mask_device)
            )
        return self._ones


def _rows(batch: Any) -> int:
    leaves = jax.tree_util.tree_leaves(batch)
    if not leaves or not np.ndim(leaves[0]):
        raise TypeError(
            f"a batch must hold arrays with a leading batch axis, got {type(batch).__name__}"
        )
    return int(np.shape(leaves[0])[0])
