"""DataLoader: batches in a deterministic, resumable order, prepared ahead in threads."""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import math
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import numpy as np

from ._collate import apply_transform, default_collate, map_batch, pad_batch, takes_key
from ._dataset import Dataset
from ._placement import Placement, mask_placement

__all__ = ["DataLoader"]

# The fast path gathers a chunk of consecutive batches with one NumPy call per array: fewer
# calls and thread hand-offs per batch. ~1 MiB chunks are fastest (they stay in cache).
_CHUNK_BYTES = 1 << 20
_MAX_CHUNK_BATCHES = 32
_THREAD_PREFIX = "funcnet-data"
_STATE_KEYS = ("seed", "epoch", "batch_index", "batch_size", "num_samples")


def _check_int(name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"DataLoader {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class DataLoader:
    """Iterates over a dataset in batches, like ``torch.utils.data.DataLoader``.

    ``for batch in loader:`` runs over one epoch, as in PyTorch; the next ``for`` runs the
    next epoch, in a new order. A batch of an
    :class:`~funcnet.data.ArrayDataset` of ``(x, y)`` is a tuple ``(x_batch, y_batch)`` of
    NumPy arrays with leading axis ``batch_size`` (``jax.Array`` when ``device`` is given); a
    dataset of dicts gives dict batches. The last batch is smaller unless ``drop_last`` or
    ``pad_last``.

    **Two paths.** A dataset with ``gather(indices)`` (``ArrayDataset``, and ``Subset`` /
    ``ConcatDataset`` of such) takes the fast path: chunks of batches gathered by index
    arrays, one NumPy call per array, no per-sample Python. Any other dataset is read with
    ``dataset[i]`` per sample and ``collate_fn`` (default :func:`default_collate`), in
    ``num_workers`` threads when that is positive. Both paths give identical batches; a
    ``collate_fn`` forces the per-sample path, since it takes a list of samples.

    **Order.** With ``shuffle``, epoch ``e`` visits the samples in the permutation drawn by
    ``numpy.random.default_rng([seed, e])``: deterministic, different every epoch, and the
    same whatever ``num_workers`` and ``prefetch`` are. The loader keeps its position
    (epoch, batch index): an epoch that completes moves it to the start of the next.
    :meth:`state_dict` reads the position (mid-epoch too, for a checkpoint) and
    :meth:`load_state_dict` restores it, so the next ``iter`` resumes mid-epoch without
    repeating or skipping a sample. An iteration left before the end of its epoch (a
    ``break``, or ``next(iter(loader))`` to look at a batch) does not move the loader on:
    the next ``iter`` starts that epoch again from its first batch.

    **Transform.** ``transform`` acts on whole batches, not on samples as a torchvision
    ``transform`` does: it gets the batch's inputs (the first field of a tuple batch; the
    whole batch when that is a single array or a dict) and returns them transformed. A
    transform that takes ``key=`` (such as the random ones in
    :mod:`funcnet.data.transforms`) gets a ``numpy.random.Generator`` seeded from
    ``(seed, epoch, batch index)``, so augmentation is reproducible and resumable too.

    **Prefetch and devices.** Batches are prepared ``prefetch`` ahead by background
    threads, and with ``device`` put on it there by ``jax.device_put``; with a
    ``jax.sharding.NamedSharding`` (e.g. ``PartitionSpec("data")``) each batch arrives
    split across the devices for data-parallel training. A short last batch that the
    devices do not divide arrives replicated (``PartitionSpec()``: every device holds it
    whole), so neither ``drop_last`` nor ``pad_last`` is needed; a jitted step compiles
    once more for its shape.

    **Several processes.** When the sharding spans the devices of several processes
    (after ``funcnet.parallel.init_distributed``), every process runs the same loader
    (same dataset, ``batch_size``, ``seed``): each reads only its own rows of every
    global batch, in the same shuffled order, and receives the global ``jax.Array``
    (``jax.make_array_from_process_local_data``). ``batch_size`` stays the global batch
    size (PyTorch's ``DistributedSampler`` makes it per process). A random transform
    draws for each process's rows separately, so augmentation depends on the number of
    processes.

    Args:
        dataset: a map-style dataset (``__len__`` and ``__getitem__``).
        batch_size: samples per batch.
        shuffle: visit the samples in a new random order each epoch.
        drop_last: leave out the last batch when it is smaller than ``batch_size``.
        seed: non-negative integer seeding the shuffle and the transform's keys.
        collate_fn: list of samples -> batch (the per-sample path only).
        transform: batch-level function of the inputs, optionally taking ``key=``.
        num_workers: threads preparing batches (0: one background thread when
            ``prefetch > 0``). Threads help when ``__getitem__`` or the transform releases
            the GIL (file reads, NumPy, image decoding), not for pure-Python work. With more
            than one, ``__getitem__`` / ``gather`` and the transform run concurrently.
        prefetch: batches to prepare ahead of the consumer; 0 prepares each batch in the
            calling thread when it is asked for. The fast path prepares whole chunks (about
            1 MiB, at most 32 batches), so it may hold more than ``prefetch`` batches.
        device: ``None`` (NumPy batches), a ``jax.Device``, or a ``jax.sharding.Sharding``
            for every array of the batch. ``batch_size`` must divide evenly over the
            sharding; a short last batch is replicated by a ``NamedSharding`` (another
            sharding needs ``drop_last`` or ``pad_last`` for it).
        pad_last: zero-pad the last batch to ``batch_size`` so every batch has the same
            shape (a jit-compiled step never recompiles), and yield ``(batch, mask)``
            pairs for every batch: ``mask`` is a ``(batch_size,)`` bool array, False for
            the padding rows, on ``device`` like the batch.

    Raises:
        ValueError: invalid sizes or seed, both ``drop_last`` and ``pad_last``, a
            ``batch_size`` that the sharding's devices do not divide, or a sharding that
            spans several processes and is not a ``NamedSharding``.
        TypeError: ``dataset`` has no ``__len__``/``__getitem__``, or ``device`` is not a
            device or sharding.

    Examples:
        >>> import numpy as np
        >>> from funcnet.data import ArrayDataset, DataLoader
        >>> ds = ArrayDataset(np.arange(10, dtype=np.float32), np.arange(10) % 2)
        >>> loader = DataLoader(ds, batch_size=4, shuffle=True, seed=0)
        >>> len(loader), [len(x) for x, y in loader]
        (3, [4, 4, 2])
        >>> loader.state_dict()["epoch"]
        1
        >>> padded = DataLoader(ds, batch_size=4, pad_last=True)
        >>> [(x.shape, int(mask.sum())) for (x, y), mask in padded][-1]
        ((4,), 2)
    """

    def __init__(
        self,
        dataset: Dataset[Any],
        batch_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        transform: Callable[..., Any] | None = None,
        num_workers: int = 0,
        prefetch: int = 2,
        device: Any = None,  # a jax.Device (which has no static type) or a Sharding
        pad_last: bool = False,
    ) -> None:
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(
                f"DataLoader needs a map-style dataset (__len__ and __getitem__), "
                f"got {type(dataset).__name__}"
            )
        if drop_last and pad_last:
            raise ValueError("DataLoader: drop_last and pad_last exclude each other; pick one")
        if device is not None and not isinstance(device, jax.Device | jax.sharding.Sharding):
            raise TypeError(
                f"DataLoader device must be None, a jax.Device or a jax.sharding.Sharding, "
                f"got {type(device).__name__}"
            )
        self.dataset = dataset
        self.batch_size: int = _check_int("batch_size", batch_size, 1)
        self.seed: int = _check_int("seed", seed, 0)
        self.num_workers: int = _check_int("num_workers", num_workers, 0)
        self.prefetch: int = _check_int("prefetch", prefetch, 0)
        self.shuffle: bool = bool(shuffle)
        self.drop_last: bool = bool(drop_last)
        self.pad_last: bool = bool(pad_last)
        self.collate_fn = collate_fn
        self.transform = transform
        self.device: Any = device
        Placement(device, self.batch_size)  # checks that batch_size splits evenly
        self._epoch = 0
        self._batch_index = 0
        self._resume = False  # load_state_dict set a mid-epoch position for the next iter
        self._active: weakref.ref[_EpochIterator] | None = None

    @property
    def fast_path(self) -> bool:
        """Whether batches are gathered by ``dataset.gather`` (no per-sample Python)."""
        return self.collate_fn is None and callable(getattr(self.dataset, "gather", None))

    @property
    def mask_device(self) -> Any:
        """Where the ``(batch_size,)`` masks go: ``device``, or for a ``NamedSharding`` the
        sharding of the batch axis alone (``PartitionSpec(spec[0])``); None without a device."""
        return mask_placement(self.device)

    @property
    def epoch(self) -> int:
        """The epoch the next batch comes from."""
        return self._epoch

    def __len__(self) -> int:
        """Batches per epoch: ``ceil(N / batch_size)``, or ``floor`` with ``drop_last``."""
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        """The batches of the current epoch: all of them, or after :meth:`load_state_dict`
        the rest from the restored position.

        A new iterator replaces the loader's previous one, which is closed (its threads
        stopped); calling ``next`` on the old one then raises ``RuntimeError``. When that
        one stopped mid-epoch, the new one starts the epoch again from its first batch.
        """
        self._supersede()
        if not self._resume:
            self._batch_index = 0
        self._resume = False
        it = _EpochIterator(self)
        self._active = weakref.ref(it)
        return it

    def set_epoch(self, epoch: int) -> None:
        """Moves to the first batch of ``epoch``, unless the loader is already in it.

        In the same epoch the position is kept, so a loop that calls
        ``loader.set_epoch(e)`` at the top of each epoch (as with PyTorch's
        ``DistributedSampler``) still resumes mid-epoch after :meth:`load_state_dict`.
        Completed epochs advance by themselves; calling this is optional.

        Args:
            epoch: non-negative epoch number; it selects the shuffle order.
        """
        epoch = _check_int("epoch", epoch, 0)
        if epoch != self._epoch:
            self._supersede()
            self._epoch, self._batch_index, self._resume = epoch, 0, False

    def state_dict(self) -> dict[str, int]:
        """The loader's position, as a small JSON-able dict of ints.

        Keys: ``seed``, ``epoch``, ``batch_index`` (batches of that epoch already handed
        out: batches prepared ahead but not yet taken do not count), and ``batch_size`` and
        ``num_samples`` (checked on load, since the position means nothing if they change).
        """
        return {
            "seed": self.seed,
            "epoch": self._epoch,
            "batch_index": self._batch_index,
            "batch_size": self.batch_size,
            "num_samples": len(self.dataset),
        }

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Restores a position saved by :meth:`state_dict`; the next ``iter`` resumes there.

        The seed is restored too, so the rest of the epoch comes in the saved order. An
        iterator open at the time is closed.

        Raises:
            ValueError: missing keys, or a dataset length or batch size other than those
                saved, or a batch index past the end of the epoch.
        """
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise ValueError(f"DataLoader.load_state_dict: state lacks {missing}")
        for key in ("num_samples", "batch_size"):
            if int(state[key]) != self.state_dict()[key]:
                raise ValueError(
                    f"DataLoader.load_state_dict: the state was saved with {key}="
                    f"{int(state[key])}, this loader has {self.state_dict()[key]}; resuming "
                    "would repeat or skip samples"
                )
        index = _check_int("batch_index", state["batch_index"], 0)
        if index >= max(len(self), 1):
            raise ValueError(
                f"DataLoader.load_state_dict: batch_index {index} is past the epoch's "
                f"{len(self)} batches"
            )
        self._supersede()
        self.seed = _check_int("seed", state["seed"], 0)
        self._epoch = _check_int("epoch", state["epoch"], 0)
        self._batch_index = index
        self._resume = index > 0

    def _supersede(self) -> None:
        old = self._active() if self._active is not None else None
        if old is not None:
            old._close(superseded=True)
        self._active = None

    def __repr__(self) -> str:
        path = "fast" if self.fast_path else "per-sample"
        return (
            f"DataLoader({type(self.dataset).__name__} of {len(self.dataset)}, "
            f"batch_size={self.batch_size}, shuffle={self.shuffle}, {path} path, "
            f"epoch={self._epoch}, batch_index={self._batch_index})"
        )


class _EpochWork:
    """Everything needed to build any batch of one epoch; jobs share nothing mutable."""

    def __init__(self, loader: DataLoader, epoch: int) -> None:
        self.dataset = loader.dataset
        self.n = len(loader.dataset)
        self.batch_size = loader.batch_size
        self.seed = loader.seed
        self.epoch = epoch
        self.fast = loader.fast_path
        self.gather = self.dataset.gather if self.fast else None  # type: ignore[attr-defined]
        self.collate = loader.collate_fn or default_collate
        self.transform = loader.transform
        self.random_transform = takes_key(loader.transform)
        self.placement = Placement(loader.device, loader.batch_size)
        self.pad_last = loader.pad_last
        self.order = (
            np.random.default_rng([self.seed, epoch]).permutation(self.n)
            if loader.shuffle
            else None
        )
        self.full_mask = None
        if self.pad_last:
            rows = self.placement.rows(self.batch_size)
            full_mask = np.ones(self.batch_size if rows is None else len(rows), dtype=bool)
            full_mask.flags.writeable = False
            self.full_mask = self.placement.put_mask(full_mask, self.batch_size)

    def chunk_batches(self) -> int:
        """Batches per job: about ``_CHUNK_BYTES`` of data on the fast path, else one."""
        if not self.fast or self.n == 0:
            return 1
        sample = self.gather(self._indices(0, 1))
        sample_bytes = sum(np.asarray(leaf).nbytes for leaf in jax.tree.leaves(sample))
        per_batch = max(1, sample_bytes * self.batch_size)
        return min(max(_CHUNK_BYTES // per_batch, 1), _MAX_CHUNK_BATCHES)

    def _indices(self, lo: int, hi: int) -> np.ndarray | slice:
        return slice(lo, hi) if self.order is None else self.order[lo:hi]

    def _ids(self, part: slice | np.ndarray) -> np.ndarray:
        """The dataset indices at ``part``'s positions of the epoch's order."""
        positions = np.arange(part.start, part.stop) if isinstance(part, slice) else part
        return positions if self.order is None else self.order[positions]

    def _layout(self, b: int) -> tuple[int, int, np.ndarray | None]:
        """``(count, real, rows)`` of batch ``b``: its rows as delivered (``batch_size``
        with ``pad_last``), the samples among them, and the rows that this process reads
        (None: all of them; see ``Placement.rows``)."""
        real = min(self.batch_size, self.n - b * self.batch_size)
        count = self.batch_size if self.pad_last else real
        return count, real, self.placement.rows(count)

    def _positions(self, b: int) -> slice | np.ndarray:
        """Positions, in the epoch's order, of the samples this process reads for batch
        ``b``. A process whose rows of a padded batch are all padding reads the batch's
        first sample, for the structure, and ``_finish`` drops it."""
        _, real, rows = self._layout(b)
        lo = b * self.batch_size
        if rows is None:
            return slice(lo, lo + real)
        mine = rows[rows < real]
        return lo + mine if len(mine) else slice(lo, lo + 1)

    def run(self, first: int, stop: int) -> list[Any]:
        """Builds batches ``first .. stop - 1`` of the epoch."""
        parts = [self._positions(b) for b in range(first, stop)]
        if self.fast:
            raw = self._gathered(parts)
        else:
            raw = (self.collate([self.dataset[int(i)] for i in self._ids(p)]) for p in parts)
        return [self._finish(b, batch) for b, batch in zip(range(first, stop), raw)]

    def _gathered(self, parts: list[slice | np.ndarray]) -> Iterator[Any]:
        """The batches at ``parts``, gathered with one call (a view when unshuffled and
        contiguous), then cut apart."""
        if all(isinstance(p, slice) for p in parts):
            chunk = self.gather(self._indices(parts[0].start, parts[-1].stop))
            sizes = [p.stop - p.start for p in parts]
        else:
            ids = [self._ids(p) for p in parts]
            chunk = self.gather(np.concatenate(ids))
            sizes = [len(i) for i in ids]
        cut = _slicer(chunk)
        bounds = np.cumsum([0, *sizes]).tolist()
        return (cut(slice(lo, hi)) for lo, hi in itertools.pairwise(bounds))

    def _finish(self, b: int, batch: Any) -> Any:
        if self.transform is not None:
            key = (
                np.random.default_rng([self.seed, self.epoch, b, 1])
                if self.random_transform
                else None
            )
            batch = apply_transform(batch, self.transform, key)
        count, real, rows = self._layout(b)
        if rows is not None and not np.any(rows < real):  # only padding here: keep none
            batch = map_batch(lambda leaf: leaf[:0], batch)
        if not self.pad_last:
            return self.placement.put(batch, count, b)
        batch, mask = pad_batch(batch, self.batch_size if rows is None else len(rows))
        if mask[-1]:
            return self.placement.put(batch, count, b), self.full_mask
        return self.placement.put(batch, count, b), self.placement.put_mask(mask, count)


def _slicer(chunk: Any) -> Callable[[slice], Any]:
    """``s -> chunk[s]`` for every array of a batch; direct for flat tuples and dicts."""
    if isinstance(chunk, np.ndarray):
        return chunk.__getitem__
    if type(chunk) is tuple:
        return lambda s: tuple([a[s] for a in chunk])
    if type(chunk) is dict:
        return lambda s: {k: a[s] for k, a in chunk.items()}
    return lambda s: map_batch(lambda a: a[s], chunk)


class _EpochIterator:
    """The batches of one epoch, from the loader's position on; see ``DataLoader``."""

    def __init__(self, loader: DataLoader) -> None:
        self._loader = loader
        self._epoch = loader._epoch
        self._next = loader._batch_index
        self._stop = len(loader)
        self._work = _EpochWork(loader, self._epoch)
        chunk = self._work.chunk_batches() if self._next < self._stop else 1
        stop = self._stop  # a list, not a generator over self: no cycle delays our __del__
        self._jobs = iter([(b, min(b + chunk, stop)) for b in range(self._next, stop, chunk)])
        self._ready: collections.deque[Any] = collections.deque()
        self._pending: collections.deque[concurrent.futures.Future] = collections.deque()
        self._state = "open"
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        threads = max(loader.num_workers, 1 if loader.prefetch else 0)
        if threads and self._next < self._stop:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                threads, thread_name_prefix=_THREAD_PREFIX
            )
            self._ahead = max(loader.num_workers, math.ceil(loader.prefetch / chunk), 2)

    def __iter__(self) -> _EpochIterator:
        return self

    def __next__(self) -> Any:
        if self._state != "open":
            if self._state == "superseded":
                raise RuntimeError(
                    "this DataLoader iterator was closed because a newer iter(loader), "
                    "set_epoch or load_state_dict replaced it"
                )
            raise StopIteration
        if self._next >= self._stop:
            self._end_epoch()
            raise StopIteration
        if not self._ready:
            self._ready.extend(self._next_job())
        batch = self._ready.popleft()
        self._next += 1
        if self._next >= self._stop:
            self._end_epoch()
        else:  # an open iterator is the loader's current one: others were closed
            self._loader._batch_index = self._next
        return batch

    def _next_job(self) -> list[Any]:
        try:
            if self._executor is None:
                return self._work.run(*next(self._jobs))
            self._submit()
            future = self._pending.popleft()
            self._submit()
            return future.result()
        except BaseException:
            self._close()  # the position stays before the failed batch
            raise

    def _submit(self) -> None:
        assert self._executor is not None
        while len(self._pending) < self._ahead:
            job = next(self._jobs, None)
            if job is None:
                return
            self._pending.append(self._executor.submit(self._work.run, *job))

    def _end_epoch(self) -> None:
        if self._state == "open":
            self._loader._epoch, self._loader._batch_index = self._epoch + 1, 0
        self._close()

    def close(self) -> None:
        """Stops the background threads; the iterator then yields nothing more.

        Called by itself when the epoch ends or the iterator is garbage-collected (e.g.
        after ``break``); call it to stop the threads at a known point.
        """
        self._close()

    def _close(self, superseded: bool = False) -> None:
        if self._state == "open":
            self._state = "superseded" if superseded else "closed"
        executor, self._executor = self._executor, None
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        self._ready.clear()
        if executor is not None:
            # A worker never waits for itself (the cyclic GC may finalise us on any thread).
            own_thread = threading.current_thread().name.startswith(_THREAD_PREFIX)
            executor.shutdown(wait=not own_thread, cancel_futures=True)

    def __del__(self) -> None:
        if getattr(self, "_executor", None) is not None:
            self._close()
