"""state_dict and load_state_dict: the arrays loaded belong to funcnet."""

import jax
import numpy as np
import pytest

from funcnet import nn


def _aligned(values: np.ndarray, alignment: int = 64) -> np.ndarray:
    """A copy of ``values`` whose buffer starts on an ``alignment``-byte boundary: the kind
    of NumPy array ``jnp.asarray`` may wrap without copying on the CPU backend."""
    buffer = np.empty(values.nbytes + alignment, np.uint8)
    start = -buffer.ctypes.data % alignment
    out = buffer[start : start + values.nbytes].view(values.dtype).reshape(values.shape)
    out[...] = values
    return out


def _model():
    return nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32))


def _snapshot(tree):
    return jax.tree_util.tree_map(np.array, tree)


def _assert_unchanged(tree, snapshot):
    for leaf, saved in zip(jax.tree_util.tree_leaves(tree), jax.tree_util.tree_leaves(snapshot)):
        np.testing.assert_array_equal(np.asarray(leaf), saved)


def test_loaded_arrays_do_not_alias_numpy_sources(key):
    model = _model()
    flat = {k: _aligned(np.asarray(v)) for k, v in nn.state_dict(*model.init(key)).items()}
    params, state = nn.load_state_dict(model, flat)
    loaded = _snapshot((params, state))
    for source in flat.values():
        source += 1  # in place, as an optimizer step on the source model would
    _assert_unchanged((params, state), loaded)


@pytest.mark.torch
def test_loaded_arrays_do_not_alias_torch_tensors():
    torch = pytest.importorskip("torch")
    model = _model()
    reference = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.BatchNorm1d(32))
    flat = {
        k: v.numpy().T if k.endswith("0.weight") else v.numpy()  # Linear's (out, in) -> (in, out)
        for k, v in reference.state_dict().items()
    }
    params, state = nn.load_state_dict(model, flat)
    np.testing.assert_array_equal(params["0"]["bias"], reference[0].bias.detach().numpy())
    loaded = _snapshot((params, state))
    with torch.no_grad():
        for tensor in reference.state_dict().values():
            tensor.add_(1)  # the .numpy() arrays above are views of these tensors
    _assert_unchanged((params, state), loaded)


def test_loaded_jax_arrays_keep_their_values(key):
    model = _model()
    params, state = model.init(key)
    again = nn.load_state_dict(model, nn.state_dict(params, state))
    _assert_unchanged(again, _snapshot((params, state)))
    dtypes = [leaf.dtype for leaf in jax.tree_util.tree_leaves((params, state))]
    assert [leaf.dtype for leaf in jax.tree_util.tree_leaves(again)] == dtypes
