"""Dataset protocol, ArrayDataset, Subset, ConcatDataset, random_split."""

import jax.numpy as jnp
import numpy as np
import pytest

from funcnet.data import ArrayDataset, ConcatDataset, Dataset, Subset, random_split


def _ds(n=10):
    return ArrayDataset(np.arange(n * 6, dtype=np.float32).reshape(n, 2, 3), np.arange(n))


class Plain:
    """A dataset with only the protocol's two methods (no gather)."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return np.full(2, i, np.int32), i


def test_protocol():
    assert isinstance(_ds(), Dataset)
    assert isinstance(Plain(3), Dataset)
    assert not isinstance(object(), Dataset)

    class Sub(Dataset):  # subclassing, PyTorch style
        def __len__(self):
            return 1

        def __getitem__(self, i):
            return i

    assert isinstance(Sub(), Dataset) and len(Sub()) == 1


def test_array_dataset_items_and_gather():
    ds = _ds()
    x, y = ds[3]
    np.testing.assert_array_equal(x, np.arange(18, 24).reshape(2, 3))
    assert y == 3 and len(ds) == 10
    x, y = ds[-1]
    assert y == 9
    xb, yb = ds.gather(np.array([7, 2, 7]))
    assert xb.shape == (3, 2, 3) and xb.dtype == np.float32
    np.testing.assert_array_equal(yb, [7, 2, 7])
    np.testing.assert_array_equal(xb[1], ds[2][0])
    _, ys = ds.gather(slice(2, 5))
    np.testing.assert_array_equal(ys, [2, 3, 4])


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float64, np.bool_])
def test_gather_matches_take_for_all_dtypes_and_layouts(dtype):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 3, (20, 5, 4)).astype(dtype)
    idx = rng.integers(0, 20, 9)
    for a in (base, np.asfortranarray(base), base[:, ::2], base[:, :, 0]):
        (got,) = ArrayDataset(a).gather(idx)
        np.testing.assert_array_equal(got, a[idx])
        assert got.dtype == a.dtype and got.shape == (9, *a.shape[1:])


def test_array_dataset_named_and_jax_input():
    ds = ArrayDataset(image=jnp.ones((4, 2)), label=np.arange(4))
    assert isinstance(ds.arrays["image"], np.ndarray)
    sample = ds[1]
    assert set(sample) == {"image", "label"} and sample["label"] == 1
    batch = ds.gather(np.array([0, 3]))
    assert batch["image"].shape == (2, 2)


def test_array_dataset_errors():
    with pytest.raises(ValueError, match="same length along axis 0"):
        ArrayDataset(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="0-d"):
        ArrayDataset(np.float32(1))
    with pytest.raises(ValueError, match="at least one"):
        ArrayDataset()
    with pytest.raises(TypeError, match="not both"):
        ArrayDataset(np.zeros(3), y=np.zeros(3))
    with pytest.raises(IndexError, match="out of range for 10"):
        _ds()[10]
    with pytest.raises(TypeError, match="integers"):
        _ds()[1.5]
    assert "float32[10, 2, 3]" in repr(_ds())


def test_subset():
    sub = Subset(_ds(), [4, 0, 4])
    assert len(sub) == 3 and sub[0][1] == 4 and sub[-1][1] == 4
    np.testing.assert_array_equal(sub.gather(np.array([1, 2]))[1], [0, 4])
    assert not hasattr(Subset(Plain(5), [1]), "gather")
    assert Subset(Plain(5), [3])[0][1] == 3
    with pytest.raises(ValueError, match="index 10 is out of range"):
        Subset(_ds(), [1, 10])
    with pytest.raises(ValueError, match="1-d integer"):
        Subset(_ds(), [[1]])
    assert len(Subset(_ds(), [])) == 0


def test_concat():
    a, b = _ds(4), ArrayDataset(np.zeros((3, 2, 3), np.float32), np.arange(100, 103))
    cat = ConcatDataset([a, b])
    assert len(cat) == 7 and cat.cumulative_sizes == [4, 7]
    assert [cat[i][1] for i in range(7)] == [0, 1, 2, 3, 100, 101, 102]
    assert cat[-1][1] == 102
    idx = np.array([5, 0, 6, 3, 4, 1])
    xb, yb = cat.gather(idx)
    np.testing.assert_array_equal(yb, [cat[i][1] for i in idx])
    np.testing.assert_array_equal(xb, np.stack([cat[i][0] for i in idx]))
    np.testing.assert_array_equal(cat.gather(slice(3, 6))[1], [3, 100, 101])
    assert not hasattr(ConcatDataset([a, Plain(2)]), "gather")
    with pytest.raises(ValueError, match="at least one"):
        ConcatDataset([])
    with pytest.raises(IndexError):
        cat.gather(np.array([7]))


def test_random_split_lengths_and_determinism():
    ds = _ds(10)
    parts = random_split(ds, [3, 7], seed=1)
    assert [len(p) for p in parts] == [3, 7]
    together = np.sort(np.concatenate([p.indices for p in parts]))
    np.testing.assert_array_equal(together, np.arange(10))
    again = random_split(ds, [3, 7], seed=1)
    np.testing.assert_array_equal(parts[0].indices, again[0].indices)
    other = random_split(ds, [3, 7], seed=2)
    assert not np.array_equal(parts[1].indices, other[1].indices)
    with pytest.raises(ValueError, match="sum to the dataset's 10"):
        random_split(ds, [3, 8])
    with pytest.raises(ValueError, match="sum to 1"):
        random_split(ds, [0.5, 0.6])


@pytest.mark.torch
def test_random_split_fractions_match_torch():
    torch = pytest.importorskip("torch")
    for n, fractions in [(10, [0.33, 0.33, 0.34]), (7, [0.5, 0.5]), (101, [0.8, 0.1, 0.1])]:
        ours = [len(p) for p in random_split(_ds(n), fractions)]
        theirs = [len(p) for p in torch.utils.data.random_split(range(n), fractions)]
        assert ours == theirs
