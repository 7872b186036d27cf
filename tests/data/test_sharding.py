"""Batches delivered already split across devices (4 simulated CPU devices, subprocess)."""

import textwrap

from tests._devices import run_with_cpu_devices

SCRIPT = textwrap.dedent(
    """
    import jax, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from funcnet.data import ArrayDataset, DataLoader

    assert len(jax.devices()) == 4
    sharding = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), P("data"))
    x = np.arange(10 * 3, dtype=np.float32).reshape(10, 3)
    ds = ArrayDataset(x, np.arange(10, dtype=np.int32))

    batches = list(DataLoader(ds, batch_size=8, shuffle=True, pad_last=True, device=sharding))
    seen = []
    for (xb, yb), mask in batches:
        for a in (xb, yb, mask):
            assert a.sharding.is_equivalent_to(sharding, a.ndim), a.sharding
            assert sorted(s.data.shape[0] for s in a.addressable_shards) == [2, 2, 2, 2]
        np.testing.assert_array_equal(np.asarray(xb)[:, 0], np.asarray(yb) * 3 * np.asarray(mask))
        seen += np.asarray(yb)[np.asarray(mask)].tolist()
    assert sorted(seen) == list(range(10))

    full, short = DataLoader(ds, batch_size=8, device=sharding)  # no drop_last/pad_last
    assert full[0].sharding.is_equivalent_to(sharding, 2)
    for a in short:  # 2 rows do not split over 4 devices: every device holds them whole
        assert a.sharding.is_fully_replicated and len(a.sharding.device_set) == 4, a.sharding
    np.testing.assert_array_equal(np.asarray(short[1]), [8, 9])
    try:
        list(DataLoader(ds, batch_size=6, pad_last=True, device=sharding))
    except ValueError as e:
        assert "a batch_size the devices divide" in str(e), e
    else:
        raise AssertionError("6 rows cannot split over 4 devices")
    assert len(list(DataLoader(ds, batch_size=4, drop_last=True, device=sharding))) == 2
    print("ok")
    """
)


def test_named_sharding_splits_batches_and_masks_across_devices():
    assert run_with_cpu_devices(SCRIPT).strip() == "ok"
