"""default_collate: structures, dtypes, errors."""

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import pytest

from funcnet.data import default_collate


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
