"""Where a DataLoader's batches go: a device, a sharding over a mesh, or a sharding that
spans several processes (each process then holds only its rows of a global batch)."""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec, Sharding

from ._collate import map_batch

__all__ = ["Placement", "mask_placement"]


def mask_placement(device: Any) -> Any:
    """Where the ``(N,)`` masks of batches placed on ``device`` go: ``device`` itself, or
    for a ``NamedSharding`` the sharding of the batch axis alone, ``PartitionSpec(spec[0])``."""
    if isinstance(device, NamedSharding):
        spec = device.spec[0] if len(device.spec) else None
        return NamedSharding(device.mesh, PartitionSpec(spec))
    return device


def _row_shards(device: Any) -> int:
    """Into how many pieces ``device`` splits a batch's leading axis (1 unless named)."""
    if not isinstance(device, NamedSharding) or not len(device.spec):
        return 1
    axes = device.spec[0]
    axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
    return math.prod(device.mesh.shape[axis] for axis in axes)


class Placement:
    """Puts a loader's batches and masks where its ``device`` says, in one process or more.

    A ``NamedSharding`` splits a batch's leading axis into ``shards`` pieces; a short last
    batch that they do not divide is replicated over the mesh instead (every device holds
    it whole). A sharding that spans several processes gets global arrays: each process
    reads only its rows of a batch (:meth:`rows`) and they are assembled with
    ``jax.make_array_from_process_local_data``.

    Raises:
        ValueError: ``batch_size`` does not split evenly, or a sharding that spans several
            processes is not a ``NamedSharding``.
    """

    def __init__(self, device: Any, batch_size: int) -> None:
        self.device = device
        self.mask_device = mask_placement(device)
        self.shards = _row_shards(device)
        self.spans = isinstance(device, Sharding) and not device.is_fully_addressable
        if self.spans and not isinstance(device, NamedSharding):
            raise ValueError(
                f"DataLoader: a sharding that spans several processes must be a "
                f"jax.sharding.NamedSharding, got {device}; e.g. NamedSharding(Mesh("
                "jax.devices(), ('data',)), PartitionSpec('data'))"
            )
        if batch_size % self.shards:
            raise ValueError(
                f"DataLoader: batch_size={batch_size} does not split over the {self.shards} "
                f"devices that {device} splits the batch axis over; use a batch_size the "
                f"devices divide (a multiple of {self.shards})"
            )

    def sharding(self, count: int) -> Any:
        """Where a ``count``-row batch goes: ``device``, or replicated over its mesh when
        the devices do not divide ``count`` (a short last batch)."""
        if count % self.shards:
            return NamedSharding(self.device.mesh, PartitionSpec())
        return self.device

    def rows(self, count: int) -> np.ndarray | None:
        """The rows of a ``count``-row global batch this process holds, ascending (the
        order ``jax.make_array_from_process_local_data`` expects), or None for all."""
        if not self.spans or count % self.shards:
            return None
        index_map = self.mask_device.addressable_devices_indices_map((count,))
        spans = sorted({index[0].indices(count)[:2] for index in index_map.values()})
        rows = np.concatenate([np.arange(lo, hi) for lo, hi in spans])
        return None if len(rows) == count else rows

    def put(self, batch: Any, count: int, b: int | str) -> Any:
        """Places batch ``b`` (this process's rows of its ``count`` when spanning)."""
        return self._put(batch, count, self.sharding(count), b)

    def put_mask(self, mask: np.ndarray, count: int) -> Any:
        """Places a ``(count,)`` mask (this process's rows of it) like its batch's rows."""
        return self._put(mask, count, self.mask_device, "mask")

    def _put(self, batch: Any, count: int, sharding: Any, b: int | str) -> Any:
        if sharding is None:
            return batch
        if isinstance(sharding, Sharding):
            _check_fits(batch, count, sharding, b)
        if not self.spans:
            return jax.device_put(batch, sharding)
        return map_batch(
            lambda leaf: jax.make_array_from_process_local_data(
                sharding, leaf, (count, *np.shape(leaf)[1:])
            ),
            batch,
        )


def _check_fits(batch: Any, count: int, sharding: Sharding, b: int | str) -> None:
    """A clear error before ``device_put``'s for arrays the sharding cannot split evenly."""
    shapes: list[tuple[int, ...]] = []
    map_batch(lambda leaf: shapes.append((count, *np.shape(leaf)[1:])), batch)
    try:
        for shape in shapes:
            sharding.shard_shape(shape)
    except ValueError as e:
        raise ValueError(
            f"DataLoader: cannot place batch {b} (shapes {shapes}) with {sharding}: {e}. "
            "Every axis the sharding splits must divide evenly: use a batch_size the "
            "devices divide; with a sharding other than a NamedSharding, also drop_last=True "
            "or pad_last=True for a short last batch"
        ) from e
