"""Batches delivered already split across devices (4 simulated CPU devices, subprocess)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

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

    try:
        list(DataLoader(ds, batch_size=8, device=sharding))
    except ValueError as e:
        assert "pad_last=True" in str(e), e
    else:
        raise AssertionError("a last batch of 2 cannot split over 4 devices")
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
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": "4", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"
