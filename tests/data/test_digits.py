"""The embedded UCI digits: contents, checksums, split, and that an MLP learns them."""

import hashlib
import importlib.resources

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from funcnet.data import DataLoader
from funcnet.data import transforms as T
from funcnet.data.datasets import load_digits

EMBEDDED = importlib.resources.files("funcnet.data").joinpath("_embedded")
SHA256 = {  # of a.tobytes(); also recorded in funcnet/data/_embedded/README.md
    "images": "8f26b2bd9d135c256808f68f14fdabddde6d9c7f869ae419704b051f0f14b3b3",
    "labels": "8ba4f891220f5e4c9c819638d1602d74b83618f167043c6da52a2a247841ddf0",
    "is_test": "5278e019c63b9e1d8090e6733d43b5988311dd4649e5e9970f88d22dc6654022",
}
CLASS_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_the_shipped_file_and_its_checksums():
    with importlib.resources.as_file(EMBEDDED.joinpath("digits.npz")) as path:
        with np.load(path, allow_pickle=False) as f:
            assert sorted(f.files) == sorted(SHA256)
            for name, digest in SHA256.items():
                assert hashlib.sha256(f[name].tobytes()).hexdigest() == digest, name
            assert f["images"].shape == (1797, 8, 8) and f["images"].dtype == np.uint8
    readme = EMBEDDED.joinpath("README.md").read_text()
    assert "CC BY 4.0" in readme and "10.24432/C50P49" in readme and "scikit-learn" in readme
    for digest in SHA256.values():
        assert digest in readme
    # pyproject's package-data ships data/_embedded/*.npz and *.md: nothing else may live there
    assert {p.name.rsplit(".", 1)[-1] for p in EMBEDDED.iterdir()} <= {"npz", "md"}


def test_all():
    ds = load_digits()
    x, y = ds.arrays
    assert len(ds) == 1797 and x.shape == (1797, 8, 8, 1) and x.dtype == np.uint8
    assert y.shape == (1797,) and y.dtype == np.int32
    assert x.min() == 0 and x.max() == 16
    assert np.bincount(y).tolist() == CLASS_COUNTS


def test_fixed_stratified_split():
    (x_train, y_train), (x_test, y_test) = load_digits("train").arrays, load_digits("test").arrays
    assert (len(y_train), len(y_test)) == (1438, 359)
    test_counts = np.bincount(y_test, minlength=10)
    np.testing.assert_array_equal(test_counts, np.round(0.2 * np.array(CLASS_COUNTS)))
    np.testing.assert_array_equal(np.bincount(y_train) + test_counts, CLASS_COUNTS)
    all_images = {row.tobytes() for row in load_digits().arrays[0]}
    assert {row.tobytes() for row in np.concatenate([x_train, x_test])} == all_images
    with pytest.raises(ValueError, match="'train', 'test' or 'all'"):
        load_digits("validation")


def test_an_mlp_learns_the_digits_through_the_loader():
    """64 -> 128 -> 10, Adam: the pipeline the examples use reaches >= 97% test accuracy."""
    train, test = load_digits("train"), load_digits("test")
    to_float = T.ToFloat(scale=1 / 16)
    loader = DataLoader(train, batch_size=32, shuffle=True, drop_last=True, transform=to_float)
    k1, k2 = jax.random.split(jax.random.key(0))
    params = {
        "w1": jax.random.uniform(k1, (64, 128), minval=-1 / 8, maxval=1 / 8),
        "b1": jnp.zeros(128),
        "w2": jax.random.uniform(k2, (128, 10), minval=-(128**-0.5), maxval=128**-0.5),
        "b2": jnp.zeros(10),
    }
    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(params)

    def logits(p, x):
        h = jax.nn.relu(x.reshape(len(x), -1) @ p["w1"] + p["b1"])
        return h @ p["w2"] + p["b2"]

    @jax.jit
    def step(p, s, x, y):
        loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(logits(p, x), y).mean()
        updates, s = optimizer.update(jax.grad(loss)(p), s)
        return optax.apply_updates(p, updates), s

    for _ in range(40):
        for x, y in loader:
            params, opt_state = step(params, opt_state, x, y)
    x_test, y_test = test.arrays
    accuracy = float(jnp.mean(jnp.argmax(logits(params, to_float(x_test)), -1) == y_test))
    assert accuracy >= 0.97, accuracy
