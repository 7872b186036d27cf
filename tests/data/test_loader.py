"""DataLoader: both paths, order, epochs, resume, padding, prefetch threads, devices."""

import gc
import json
import threading

import jax
import numpy as np
import pytest

from funcnet.data import ArrayDataset, ConcatDataset, DataLoader, Subset, default_collate
from funcnet.data import transforms as T

N = 50


def _arrays(n=N):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 6, 5, 3), dtype=np.uint8), np.arange(n, dtype=np.int32)


class PerItem:
    """The same samples as ArrayDataset(*_arrays()) but without gather: the per-item path."""

    def __init__(self, *arrays):
        self.arrays = arrays

    def __len__(self):
        return len(self.arrays[0])

    def __getitem__(self, i):
        return tuple(a[i] for a in self.arrays)


def _threads():
    return [t for t in threading.enumerate() if t.name.startswith("funcnet-data")]


def _assert_same(batches_a, batches_b):
    assert len(batches_a) == len(batches_b)
    for a, b in zip(batches_a, batches_b):
        leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
        assert jax.tree.structure(a) == jax.tree.structure(b)
        for x, y in zip(leaves_a, leaves_b):
            assert x.dtype == y.dtype and x.shape == y.shape
            np.testing.assert_array_equal(x, y)


AUGMENT = T.Compose([T.RandomCrop(4, padding=1), T.RandomHorizontalFlip(), T.ToFloat()])


@pytest.mark.parametrize(
    "options",
    [
        dict(batch_size=8),
        dict(batch_size=8, shuffle=True, drop_last=True),
        dict(batch_size=7, shuffle=True, pad_last=True),
        dict(batch_size=16, shuffle=True, transform=AUGMENT, num_workers=2),
        dict(batch_size=1, shuffle=True, prefetch=0, seed=3),
        dict(batch_size=64, shuffle=True, transform=T.Normalize(128.0, 64.0), prefetch=5),
    ],
)
def test_fast_and_per_item_paths_give_identical_batches(options):
    fast = DataLoader(ArrayDataset(*_arrays()), **options)
    slow = DataLoader(PerItem(*_arrays()), **options)
    assert fast.fast_path and not slow.fast_path
    for _ in range(2):  # two epochs
        _assert_same(list(fast), list(slow))
    assert fast.epoch == slow.epoch == 2


class PerItemDict(PerItem):
    def __getitem__(self, i):
        return {"label": self.arrays[1][i], "image": self.arrays[0][i]}


@pytest.mark.parametrize("pad_last", [False, True])
def test_dict_batches_are_identical_and_keep_key_order(pad_last):
    x, y = _arrays()
    fast = DataLoader(ArrayDataset(label=y, image=x), batch_size=8, shuffle=True, pad_last=pad_last)
    slow = DataLoader(PerItemDict(x, y), batch_size=8, shuffle=True, pad_last=pad_last)
    fast_batches, slow_batches = list(fast), list(slow)
    _assert_same(fast_batches, slow_batches)
    for batch in fast_batches + slow_batches:
        assert list(batch[0] if pad_last else batch) == ["label", "image"]


def test_collate_fn_forces_per_item_path():
    loader = DataLoader(ArrayDataset(*_arrays()), batch_size=8, collate_fn=default_collate)
    assert not loader.fast_path
    _assert_same(list(loader), list(DataLoader(ArrayDataset(*_arrays()), batch_size=8)))


@pytest.mark.parametrize("workers", [0, 2])
def test_each_sample_once_per_epoch_in_a_new_order(workers):
    loader = DataLoader(ArrayDataset(*_arrays()), batch_size=8, shuffle=True, num_workers=workers)
    orders = []
    for epoch in range(3):
        assert loader.epoch == epoch
        ids = np.concatenate([y for _, y in loader])
        np.testing.assert_array_equal(np.sort(ids), np.arange(N))
        orders.append(ids)
    assert not np.array_equal(orders[0], orders[1])
    assert not np.array_equal(orders[1], orders[2])
    assert not np.array_equal(orders[0], np.arange(N))


def test_no_shuffle_is_in_order_and_the_same_each_epoch():
    loader = DataLoader(ArrayDataset(*_arrays()), batch_size=8)
    for _ in range(2):
        np.testing.assert_array_equal(np.concatenate([y for _, y in loader]), np.arange(N))


@pytest.mark.parametrize("n, batch_size", [(50, 8), (48, 8), (5, 8), (0, 4), (1, 1)])
def test_len_and_drop_last(n, batch_size):
    ds = ArrayDataset(*_arrays(n))
    keep = DataLoader(ds, batch_size=batch_size)
    drop = DataLoader(ds, batch_size=batch_size, drop_last=True)
    sizes = [len(y) for _, y in keep]
    assert len(keep) == len(sizes) == -(-n // batch_size)
    assert sum(sizes) == n and all(s == batch_size for s in sizes[:-1])
    drop_sizes = [len(y) for _, y in drop]
    assert len(drop) == len(drop_sizes) == n // batch_size
    assert all(s == batch_size for s in drop_sizes)


@pytest.mark.torch
def test_len_matches_torch():
    torch = pytest.importorskip("torch")
    for n, bs, drop in [(50, 8, False), (50, 8, True), (48, 8, False), (3, 8, True)]:
        ours = DataLoader(ArrayDataset(np.zeros(n)), batch_size=bs, drop_last=drop)
        theirs = torch.utils.data.DataLoader(range(n), batch_size=bs, drop_last=drop)
        assert len(ours) == len(theirs)


def test_seed_determinism():
    def epoch_ids(seed, epoch):
        loader = DataLoader(ArrayDataset(*_arrays()), batch_size=10, shuffle=True, seed=seed)
        loader.set_epoch(epoch)
        return np.concatenate([y for _, y in loader])

    np.testing.assert_array_equal(epoch_ids(5, 2), epoch_ids(5, 2))
    assert not np.array_equal(epoch_ids(5, 2), epoch_ids(6, 2))
    assert not np.array_equal(epoch_ids(5, 2), epoch_ids(5, 3))


@pytest.mark.parametrize("path", ["fast", "per-item"])
@pytest.mark.parametrize("workers, prefetch", [(0, 0), (0, 2), (2, 3)])
def test_resume_mid_epoch_repeats_and_skips_nothing(path, workers, prefetch):
    def make():
        ds = ArrayDataset(*_arrays()) if path == "fast" else PerItem(*_arrays())
        return DataLoader(
            ds,
            batch_size=6,
            shuffle=True,
            seed=11,
            transform=AUGMENT,
            num_workers=workers,
            prefetch=prefetch,
        )

    reference = make()
    expected = list(reference) + list(reference)  # two whole epochs

    crashed = make()
    got = []
    it = iter(crashed)
    for _ in range(4):
        got.append(next(it))
    saved = json.loads(json.dumps(crashed.state_dict()))  # what a checkpoint stores
    assert saved == {"seed": 11, "epoch": 0, "batch_index": 4, "batch_size": 6, "num_samples": N}
    del it, crashed  # the crash

    resumed = make()
    resumed.load_state_dict(saved)
    got += list(resumed) + list(resumed)
    _assert_same(got, expected[: len(got)])
    assert len(got) == len(expected) and resumed.epoch == 2


def test_state_after_the_last_batch_is_the_next_epoch():
    loader = DataLoader(ArrayDataset(*_arrays()), batch_size=25, shuffle=True)
    it = iter(loader)
    next(it)
    assert loader.state_dict()["batch_index"] == 1
    next(it)  # the epoch's last batch, before the loop asks for StopIteration
    assert (loader.epoch, loader.state_dict()["batch_index"]) == (1, 0)
    with pytest.raises(StopIteration):
        next(it)


def test_set_epoch_keeps_position_within_the_same_epoch():
    loader = DataLoader(ArrayDataset(*_arrays()), batch_size=10, shuffle=True)
    it = iter(loader)
    first = next(it)[1]
    loader.set_epoch(0)  # already in epoch 0: keeps the position
    assert next(it)[1].tolist() != first.tolist()
    assert loader.state_dict()["batch_index"] == 2
    loader.set_epoch(3)
    assert (loader.epoch, loader.state_dict()["batch_index"]) == (3, 0)
    with pytest.raises(RuntimeError, match="replaced it"):
        next(it)
    loader.set_epoch(0)
    np.testing.assert_array_equal(next(iter(loader))[1], first)


def test_trainer_loop_with_set_epoch_resumes_exactly():
    def run(loader, start_epoch, num_epochs, stop_after=None):
        seen = []
        for epoch in range(start_epoch, num_epochs):
            loader.set_epoch(epoch)
            for _, y in loader:
                seen.append(y.tolist())
                if stop_after is not None and len(seen) == stop_after:
                    return seen
        return seen

    make = lambda: DataLoader(ArrayDataset(*_arrays()), batch_size=8, shuffle=True)
    full = run(make(), 0, 3)
    first = make()
    part = run(first, 0, 3, stop_after=10)
    state = first.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    assert part + run(resumed, resumed.epoch, 3) == full


def test_load_state_dict_validates():
    loader = DataLoader(ArrayDataset(*_arrays()), batch_size=10)
    state = loader.state_dict()
    with pytest.raises(ValueError, match="lacks"):
        loader.load_state_dict({"epoch": 1})
    with pytest.raises(ValueError, match="num_samples=49"):
        loader.load_state_dict({**state, "num_samples": 49})
    with pytest.raises(ValueError, match="batch_size=8"):
        loader.load_state_dict({**state, "batch_size": 8})
    with pytest.raises(ValueError, match="past the epoch's 5 batches"):
        loader.load_state_dict({**state, "batch_index": 5})


def test_constructor_validates():
    ds = ArrayDataset(*_arrays())
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        DataLoader(ds, batch_size=0)
    with pytest.raises(ValueError, match="seed"):
        DataLoader(ds, seed=-1)
    with pytest.raises(ValueError, match="exclude each other"):
        DataLoader(ds, drop_last=True, pad_last=True)
    with pytest.raises(TypeError, match="map-style"):
        DataLoader(iter([1, 2]))
    with pytest.raises(TypeError, match="device"):
        DataLoader(ds, device="cpu")


def test_empty_epoch_still_advances():
    loader = DataLoader(ArrayDataset(*_arrays(3)), batch_size=4, drop_last=True)
    assert list(loader) == [] and loader.epoch == 1


@pytest.mark.parametrize("path", ["fast", "per-item"])
def test_pad_last_pads_and_masks(path):
    x, y = _arrays(10)
    ds = ArrayDataset(x, y) if path == "fast" else PerItem(x, y)
    out = list(DataLoader(ds, batch_size=4, pad_last=True))
    assert len(out) == 3
    for (xb, yb), mask in out:
        assert xb.shape == (4, 6, 5, 3) and yb.shape == (4,) and mask.shape == (4,)
        assert mask.dtype == np.bool_
    (xb, yb), mask = out[-1]
    assert mask.tolist() == [True, True, False, False]
    np.testing.assert_array_equal(yb, [8, 9, 0, 0])
    assert not xb[2:].any()
    np.testing.assert_array_equal(xb[:2], x[8:])
    assert all(m.all() for _, m in out[:-1])


def test_transform_applies_to_inputs_and_dict_batches():
    x, y = _arrays()
    loader = DataLoader(
        ArrayDataset(x, y), batch_size=10, transform=lambda a: a.astype(np.float32) / 2
    )
    xb, yb = next(iter(loader))
    np.testing.assert_allclose(xb, x[:10] / 2)
    assert yb.dtype == np.int32
    named = DataLoader(
        ArrayDataset(image=x, label=y),
        batch_size=10,
        transform=lambda b: {**b, "image": b["image"][:, :2]},
    )
    batch = next(iter(named))
    assert set(batch) == {"image", "label"} and batch["image"].shape == (10, 2, 5, 3)


def test_random_transform_keys_depend_on_seed_epoch_and_batch():
    def draws(seed, epochs=2):
        seen = []

        def record(x, key):
            seen.append(int(key.integers(0, 2**31)))
            return x

        loader = DataLoader(ArrayDataset(*_arrays()), batch_size=25, transform=record, seed=seed)
        for _ in range(epochs):
            list(loader)
        return seen

    assert len(set(draws(1))) == 4  # 2 batches x 2 epochs, all different
    assert draws(1) == draws(1)
    assert draws(1) != draws(2)


def test_concat_and_subset_paths_agree():
    x, y = _arrays()
    fast = ConcatDataset(
        [Subset(ArrayDataset(x, y), np.arange(0, N, 3)), ArrayDataset(x[:7], y[:7])]
    )
    slow = ConcatDataset([Subset(PerItem(x, y), np.arange(0, N, 3)), PerItem(x[:7], y[:7])])
    loaders = [DataLoader(ds, batch_size=4, shuffle=True, pad_last=True) for ds in (fast, slow)]
    assert loaders[0].fast_path and not loaders[1].fast_path
    _assert_same(*[list(loader) for loader in loaders])


def test_subset_of_array_dataset_takes_fast_path():
    ds = ArrayDataset(*_arrays())
    sub = Subset(ds, np.arange(0, N, 2))
    loader = DataLoader(sub, batch_size=5)
    assert loader.fast_path
    np.testing.assert_array_equal(np.concatenate([y for _, y in loader]), np.arange(0, N, 2))


@pytest.fixture
def no_cyclic_gc():
    """Threads must stop by reference counting alone, without waiting for the cyclic GC."""
    gc.collect()
    gc.disable()
    yield
    gc.enable()


@pytest.mark.parametrize("workers, prefetch", [(0, 2), (2, 2), (3, 0)])
def test_abandoned_iteration_stops_its_threads(workers, prefetch, no_cyclic_gc):
    before = len(_threads())
    for ds in (ArrayDataset(*_arrays()), PerItem(*_arrays())):
        loader = DataLoader(ds, batch_size=2, shuffle=True, num_workers=workers, prefetch=prefetch)
        for _ in loader:
            assert len(_threads()) > before
            break
        assert len(_threads()) == before
        it = iter(loader)
        next(it)
        it.close()
        assert len(_threads()) == before
        with pytest.raises(StopIteration):
            next(it)
        list(loader)  # a whole epoch ends its threads too
        assert len(_threads()) == before


def test_new_iterator_replaces_the_old_one():
    loader = DataLoader(ArrayDataset(*_arrays()), batch_size=5, prefetch=3)
    before = len(_threads())
    first = iter(loader)
    next(first)
    second = iter(loader)  # the first one stopped mid-epoch: the epoch starts again
    assert len(_threads()) <= before + 1
    with pytest.raises(RuntimeError, match="newer iter"):
        next(first)
    np.testing.assert_array_equal(next(second)[1], np.arange(0, 5))
    second.close()


@pytest.mark.parametrize("shuffle", [False, True])
def test_peeking_at_a_batch_drops_nothing(shuffle):
    make = lambda: DataLoader(ArrayDataset(*_arrays()), batch_size=8, shuffle=shuffle)
    expected = [y.tolist() for _, y in make_and_run(make(), 2)]
    loader = make()
    peeked = next(iter(loader))[1].tolist()
    got = [y.tolist() for _, y in make_and_run(loader, 2)]
    assert got == expected and peeked == expected[0] and loader.epoch == 2


def make_and_run(loader, epochs):
    """The batches of ``epochs`` epochs, as a PyTorch loop writes them."""
    return [batch for _ in range(epochs) for batch in loader]


def test_a_break_restarts_the_epoch_and_state_dict_keeps_the_position():
    loader = DataLoader(ArrayDataset(*_arrays()), batch_size=10)
    for i, _ in enumerate(loader):
        if i == 2:
            break
    assert loader.state_dict()["batch_index"] == 3  # what a checkpoint taken now records
    assert [y[0] for _, y in loader] == [0, 10, 20, 30, 40] and loader.epoch == 1


def test_dataset_errors_reach_the_consumer_and_stop_threads():
    class Broken(PerItem):
        def __getitem__(self, i):
            if i == 17:
                raise KeyError("sample 17 is broken")
            return super().__getitem__(i)

    before = len(_threads())
    for workers, prefetch in [(2, 2), (0, 0)]:
        loader = DataLoader(
            Broken(*_arrays()), batch_size=5, num_workers=workers, prefetch=prefetch
        )
        got = []
        it = iter(loader)
        with pytest.raises(KeyError, match="sample 17"):
            for batch in it:
                got.append(batch)
        assert len(got) == 3 and len(_threads()) == before
        assert loader.state_dict()["batch_index"] == 3  # resuming retries the failed batch
        with pytest.raises(StopIteration):
            next(it)


def test_device_put_gives_jax_arrays_with_mask():
    device = jax.devices()[0]
    loader = DataLoader(ArrayDataset(*_arrays(10)), batch_size=4, device=device, pad_last=True)
    out = list(loader)
    (xb, yb), mask = out[-1]
    assert isinstance(xb, jax.Array) and isinstance(mask, jax.Array)
    assert yb.tolist() == [8, 9, 0, 0]
    assert xb.devices() == {device} and mask.tolist() == [True, True, False, False]
    sharded = DataLoader(
        ArrayDataset(*_arrays(10)), batch_size=4, device=_single_device_sharding(device)
    )
    assert [len(y) for _, y in sharded] == [4, 4, 2]


def test_masks_go_where_the_batch_axis_goes():
    ds = ArrayDataset(*_arrays(10))
    assert DataLoader(ds, batch_size=4).mask_device is None
    device = jax.devices()[0]
    assert DataLoader(ds, batch_size=4, device=device).mask_device == device
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]).reshape(1, 1), ("data", "model"))
    spec = jax.sharding.PartitionSpec("data", None, "model")  # (N, H, W, C) images
    loader = DataLoader(ds, batch_size=4, device=jax.sharding.NamedSharding(mesh, spec))
    assert loader.mask_device == jax.sharding.NamedSharding(
        mesh, jax.sharding.PartitionSpec("data")
    )
    images = ArrayDataset(_arrays(10)[0])  # a sharding of rank 3 fits images alone
    (x,), mask = next(iter(DataLoader(images, 4, pad_last=True, device=loader.device)))
    assert x.sharding == loader.device and mask.sharding == loader.mask_device


def test_repr():
    assert "fast path" in repr(DataLoader(ArrayDataset(*_arrays()), batch_size=4))
    assert "per-sample path" in repr(DataLoader(PerItem(*_arrays()), batch_size=4))


def _single_device_sharding(device):
    """jax >= 0.12.1 deprecates constructing ``SingleDeviceSharding`` directly."""
    make = getattr(jax.sharding, "make_single_device_sharding", None)
    return make(device) if make is not None else jax.sharding.SingleDeviceSharding(device)
