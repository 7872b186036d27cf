"""default_collate: structures, dtypes, errors."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnet.data import default_collate, pad_batch, to_numpy


class Pair(NamedTuple):
    image: np.ndarray
    label: int


def test_structures_are_kept():
    samples = [{"x": np.full((2, 3), i, np.float32), "meta": (i, [i * 0.5, "a"])} for i in range(4)]
    batch = default_collate(samples)
    assert list(batch) == ["x", "meta"] and batch["x"].shape == (4, 2, 3)
    label, (half, text) = batch["meta"]
    assert isinstance(batch["meta"], tuple) and isinstance(batch["meta"][1], list)
    assert label.dtype == np.int32 and half.dtype == np.float32 and text.tolist() == ["a"] * 4
    pairs = default_collate([Pair(np.zeros(2), 1), Pair(np.ones(2), 2)])
    assert isinstance(pairs, Pair) and pairs.label.tolist() == [1, 2]


@pytest.mark.parametrize(
    "values, dtype",
    [
        ([True, False], np.bool_),
        ([1, 2], np.int32),
        ([1.5, 2.0], np.float32),
        ([np.uint8(3), np.uint8(4)], np.uint8),
        ([np.float64(1.0), np.float64(2.0)], np.float64),
        ([jnp.int8(1), jnp.int8(2)], np.int8),
    ],
)
def test_leaf_dtypes(values, dtype):
    out = default_collate(values)
    assert out.dtype == dtype and out.shape == (2,)


def test_errors():
    with pytest.raises(ValueError, match="at least one sample"):
        default_collate([])
    with pytest.raises(ValueError, match=r"sample\[0\]s have different shapes \[\(2,\), \(3,\)\]"):
        default_collate([(np.zeros(2), 1), (np.zeros(3), 1)])
    with pytest.raises(ValueError, match="samples differ"):
        default_collate([(1, 2), (1,)])
    with pytest.raises(ValueError, match="keys"):
        default_collate([{"a": 1}, {"b": 1}])
    with pytest.raises(TypeError, match="pass a collate_fn"):
        default_collate([object(), object()])
    with pytest.raises(OverflowError):
        default_collate([2**40, 1])


def test_torch_tensors_collate_and_convert():
    torch = pytest.importorskip("torch")
    samples = [(torch.full((2,), float(i), requires_grad=True), torch.tensor(i)) for i in range(3)]
    x, y = default_collate(samples)
    assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.shape == (3, 2)
    assert y.dtype == np.int64 and y.tolist() == [0, 1, 2]
    batch = to_numpy([torch.ones(2, dtype=torch.bfloat16), {"y": torch.arange(3)}, "label"])
    assert isinstance(batch, list) and batch[0].dtype == jnp.bfloat16 and batch[2] == "label"
    np.testing.assert_array_equal(batch[1]["y"], np.arange(3))


def test_to_numpy_leaves_numpy_and_jax_alone():
    x, j = np.zeros(2), jnp.ones(2)
    out = to_numpy((x, {"j": j, "n": 3}))
    assert out[0] is x and out[1]["j"] is j and out[1]["n"] == 3


class _Tensor:
    """Another framework's tensor: __array__ and shape, no NumPy base class."""

    def __init__(self, values):
        self.values = np.asarray(values, np.float32)
        self.shape = self.values.shape

    def __array__(self, dtype=None, copy=None):
        return self.values


def test_any_array_like_with_a_shape_converts():
    assert default_collate([_Tensor([1, 2]), _Tensor([3, 4])]).tolist() == [[1, 2], [3, 4]]
    assert to_numpy({"x": _Tensor([1])})["x"].dtype == np.float32


@pytest.mark.parametrize("rows", [4, 2])
def test_pad_batch_pads_numpy_and_jax_leaves_and_masks(rows):
    batch = {"x": np.ones((rows, 3), np.float32), "y": jnp.arange(rows)}
    padded, mask = pad_batch(batch, 4)
    assert padded["x"].shape == (4, 3) and isinstance(padded["y"], jax.Array)
    assert mask.dtype == np.bool_ and mask.tolist() == [i < rows for i in range(4)]
    np.testing.assert_array_equal(padded["y"], [*range(rows), *[0] * (4 - rows)])
    with pytest.raises(ValueError, match="5 rows, more than 4"):
        pad_batch(np.zeros(5), 4)
